"""``ctx.tool`` against a real MCP server over streamable HTTP on 127.0.0.1 (the SDK's
``MCPServer`` on uvicorn, started here), answering in one JSON body or in a stream."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer

from genie import ConfigurationError, Runtime
from genie.mcp import McpServer
from genie.pipeline import load_pipeline

from ..serve.conftest import free_socket
from .test_tool_calls import Answer, Caller, ask


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the server runs on uvicorn, which needs asyncio


def blobs() -> MCPServer:
    server = MCPServer("blobs")

    @server.tool()
    def blob(size: int) -> str:
        return "x" * size

    return server


Headers = list[tuple[bytes, bytes]]


def rewritten(app: Any, rewrite: Callable[[Headers, bytes], tuple[Headers, bytes]]) -> Any:
    """``app``, each HTTP answer held whole and sent as ``rewrite`` makes it of its headers
    and body."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def held(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers, whole = rewrite(start["headers"], b"".join(body))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": whole})

        await app(scope, receive, held if scope["type"] == "http" else send)

    return asgi


def as_stream(app: Any) -> Any:
    """``app``, its JSON answers sent as a stream of one event each (the transport's other
    form, which the SDK's server here does not choose on its own)."""

    def streamed(headers: Headers, whole: bytes) -> tuple[Headers, bytes]:
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        if dict(headers).get(b"content-type", b"").startswith(b"application/json"):
            headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            headers.append((b"content-type", b"text/event-stream"))
            whole = b"event: message\ndata: " + whole + b"\n\n"
        return headers, whole

    return rewritten(app, streamed)


@asynccontextmanager
async def served(server: MCPServer, *, json_response: bool) -> AsyncIterator[str]:
    """``server`` over streamable HTTP on a free port of 127.0.0.1: its URL."""
    sock = free_socket()  # listening already: a call before uvicorn accepts waits its turn
    app = server.streamable_http_app()
    if not json_response:
        app = as_stream(app)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(uv.serve, [sock])
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
            uv.should_exit = True
    finally:
        sock.close()


@pytest.mark.parametrize("json_response", [True, False], ids=["json", "stream"])
async def test_an_answer_over_max_answer_is_refused_and_reaches_the_dead_letter(
    json_response: bool,
) -> None:
    """The answer was bounded in time only: a server could send a body without end, all of it
    held in memory. Past ``max_answer`` the call fails, saying so, and its handler's message
    is a dead letter; a call answered within it is answered as before."""
    async with served(blobs(), json_response=json_response) as url:
        server = McpServer(url=url, timeout=20, max_answer=4096)
        async with Runtime([Caller("caller")], tools={"broker": server}) as rt:
            with anyio.fail_after(60):
                small = await ask(rt, "blob", size=100)
                big = await ask(rt, "blob", size=100_000)
                after = await ask(rt, "blob", size=100)
            letters = list(rt.dead_letters)
    assert isinstance(small, Answer)
    assert small.text == "x" * 100
    assert big.reason.startswith("ToolCallError: tool 'blob' of http://127.0.0.1:"), big.reason
    limit = "max_answer, 4096 bytes" if json_response else "exceeded the 4096 byte limit"
    assert limit in big.reason, big.reason
    assert [d.reason for d in letters] == [big.reason]
    assert isinstance(after, Answer)
    assert after.text == "x" * 100


async def test_a_pipeline_files_max_answer_bounds_its_servers_answers(tmp_path: Path) -> None:
    async with served(blobs(), json_response=True) as url:
        (tmp_path / "p.yaml").write_text(
            f"""
name: tools
agents:
  - id: caller
    use: tests.mcp.test_tool_calls:Caller
tools:
  broker: {{url: "{url}", max_answer: 4096}}
entry: {{type: ask_tool, to: caller, payload: {{tool: blob, arguments: {{size: 100000}}}}}}
output: tool_answer
"""
        )
        pipeline = load_pipeline(tmp_path / "p.yaml")
        async with pipeline.runtime() as rt:
            with anyio.fail_after(60):
                result = await pipeline.ask(rt, pipeline.entry_payload(None))
    assert result.output is None
    [letter] = result.dead_letters
    assert "its answer is over max_answer, 4096 bytes" in letter.reason, letter.reason


async def test_a_tool_list_over_max_answer_fails_the_opening_naming_it() -> None:
    server = MCPServer("wordy")

    @server.tool(description="x" * 10_000)
    def blob(size: int) -> str:
        return "x" * size

    async with served(server, json_response=True) as url:
        broker = McpServer(url=url, timeout=20, max_answer=4096)
        async with Runtime([Caller("caller")], tools={"broker": broker}) as rt:
            with anyio.fail_after(60):
                refused = await ask(rt, "blob", size=1)
    assert refused.reason.startswith("ToolCallError: tool server 'broker': "), refused.reason
    assert "its answer is over max_answer, 4096 bytes" in refused.reason


def gzipped(app: Any) -> Any:
    """``app``, its answers to a tool call compressed whatever the client asked for."""

    def compressed(headers: Headers, whole: bytes) -> tuple[Headers, bytes]:
        if b'"content":[' in whole:  # a tool's answer
            whole = gzip.compress(whole)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers += [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(whole))]
        return headers, whole

    return rewritten(app, compressed)


async def test_an_answer_compressed_though_asked_unencoded_is_refused() -> None:
    """A bound on compressed bytes bounds nothing: a few kilobytes of gzip unpack to
    gigabytes. Genie asks for the answer unencoded; one compressed anyway is refused."""
    sock = free_socket()
    uv = uvicorn.Server(uvicorn.Config(gzipped(blobs().streamable_http_app()), log_level="warning"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(uv.serve, [sock])
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
            server = McpServer(url=url, timeout=20, max_answer=1 << 20)
            async with Runtime([Caller("caller")], tools={"broker": server}) as rt:
                with anyio.fail_after(60):
                    refused = await ask(rt, "blob", size=10)
            uv.should_exit = True
    finally:
        sock.close()
    assert refused.reason.startswith("ToolCallError: "), refused.reason
    assert "its answer came encoded (gzip), though asked for unencoded" in refused.reason


def as_proxy(app: Any, seen: list[str]) -> Any:
    """``app`` as the HTTP proxy of a host that does not exist: a request through a proxy
    names its whole URL (``POST http://host/mcp``); ``seen`` keeps the hosts asked for."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            target = urlsplit(scope["path"])
            seen.append(target.netloc)
            # As the host's own server would be asked: its DNS-rebinding guard checks Host.
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            headers.append((b"host", b"127.0.0.1:80"))
            path = target.path
            scope = {**scope, "path": path, "raw_path": path.encode(), "headers": headers}
        await app(scope, receive, send)

    return asgi


async def test_a_server_behind_the_environments_proxy_is_reached_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HTTP client takes its proxy from the environment (``HTTP_PROXY``), as httpx does,
    and the bound on the answer holds through it."""
    seen: list[str] = []
    sock = free_socket()
    app = as_proxy(blobs().streamable_http_app(), seen)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{sock.getsockname()[1]}")
    server = McpServer(url="http://broker.invalid/mcp", timeout=20, max_answer=4096)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(uv.serve, [sock])
            async with Runtime([Caller("caller")], tools={"broker": server}) as rt:
                with anyio.fail_after(60):
                    small = await ask(rt, "blob", size=100)
                    big = await ask(rt, "blob", size=100_000)
            uv.should_exit = True
    finally:
        sock.close()
    assert isinstance(small, Answer), small
    assert "max_answer, 4096 bytes" in big.reason, big.reason
    assert set(seen) == {"broker.invalid"}


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "1024"])
def test_a_max_answer_that_bounds_nothing_is_refused_naming_it(size: object) -> None:
    with pytest.raises(ConfigurationError, match="max_answer must be a whole number of bytes"):
        McpServer(url="http://127.0.0.1/mcp", max_answer=size)  # type: ignore[arg-type]
