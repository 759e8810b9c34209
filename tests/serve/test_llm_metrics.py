"""``/metrics`` of a served pipeline that calls a model: the model calls, tokens and latency
(``genie_llm_*``) under the pipeline's label, beside the runtime's own, and only in the
server whose pipeline made them."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from genie.pipeline import load_pipeline

from ..conftest import requires
from ..llm.server import ProviderServer, Reply, sse
from .conftest import ALICE, ROOT, auth, keyring, serving

# The research pipeline names the catalogue's MCP server (its tools: section).
pytestmark = requires("mcp", extra="mcp")

RESEARCH = ROOT / "config" / "pipelines" / "research.yaml"
QUESTION = {"question": "What is an STR?"}


def _answer() -> Reply:
    """One streamed chat completion as the OpenAI API writes it, with its usage."""
    return Reply(
        chunks=sse(
            {
                "id": "r",
                "model": "gpt-test",
                "choices": [{"index": 0, "delta": {"content": "STR."}}],
            },
            {
                "id": "r",
                "model": "gpt-test",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
            {
                "id": "r",
                "model": "gpt-test",
                "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7},
            },
            "[DONE]",
        ),
        headers={"content-type": "text/event-stream"},
    )


async def test_metrics_show_the_model_calls_of_their_own_server_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ProviderServer() as provider:
        monkeypatch.setenv("OPENAI_BASE_URL", provider.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-serve")
        monkeypatch.setenv("OPENAI_MODEL", "gpt-test")
        provider.script("/v1/chat/completions", _answer())
        keys = keyring(tmp_path)
        asked = load_pipeline(RESEARCH, variables={"LLM": "openai"})
        idle = load_pipeline(RESEARCH, variables={"LLM": "openai"})
        async with serving([asked], keys) as client, serving([idle], keys) as other:
            response = await client.post(
                "/v1/pipelines/research/ask", json=QUESTION, headers=auth(ALICE)
            )
            scraped = (await client.get("/metrics")).text
            elsewhere = (await other.get("/metrics")).text
    assert response.status_code == 200, response.text
    assert len(provider.received) == 1
    mine, theirs = _samples(scraped), _samples(elsewhere)
    model = {"pipeline": "research", "provider": "openai", "model": "gpt-test"}
    assert mine[("genie_llm_calls_total", _key(model, outcome="ok"))] == 1
    assert mine[("genie_llm_tokens_total", _key(model, kind="input"))] == 11
    assert mine[("genie_llm_tokens_total", _key(model, kind="output"))] == 7
    assert mine[("genie_llm_call_seconds_count", _key(model))] == 1
    assert any(name == "genie_messages_published_total" for name, _ in mine)  # the runtime's
    assert not [name for name, _ in theirs if name.startswith("genie_llm_calls")]


def _key(labels: dict[str, str], **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({**labels, **more}.items())


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
