"""A span per LLM call, in the trace of the request that caused it."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from genie import BaseAgent, Context, Message, Runtime, handler
from genie.llm import (
    CallContext,
    ChatMessage,
    Provider,
    ProviderConnectionError,
    Request,
    ScriptedProvider,
)
from genie.otel import TracedProvider, trace_runtime

from ..conftest import Ping, Pong


class Asker(BaseAgent):
    """Asks its model about every Ping, streaming too, and replies Pong."""

    produces = (Pong,)

    def __init__(self, id: str, model: Provider) -> None:
        super().__init__(id)
        self.model = model

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        request = Request(
            messages=(ChatMessage.user("hello"),),
            model="tiny",
            context=CallContext.of(ctx.message),
        )
        await self.model.complete(request)
        async with self.model.stream(request) as events:
            async for _ in events:
                pass
        return ctx.reply(Pong(n=payload.n))


async def test_llm_calls_are_client_spans_in_the_request_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = Runtime()
    spans = trace_runtime(rt, provider)
    scripted = ScriptedProvider(["hi there"], name="scripted")
    rt.add(Asker("asker", TracedProvider(scripted, spans)))
    async with rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="asker"), timeout=5)
        await rt.wait_idle()
    assert result.replies
    finished = exporter.get_finished_spans()
    calls = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert [s.name for s in calls] == ["chat tiny", "chat tiny"]
    (root,) = [s for s in finished if s.kind is SpanKind.PRODUCER]
    for call in calls:
        assert call.context.trace_id == root.context.trace_id
        assert call.parent is not None
        assert call.parent.span_id == root.context.span_id
    attrs = calls[0].attributes or {}
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == "scripted"
    assert attrs["gen_ai.request.model"] == "tiny"
    assert attrs["gen_ai.conversation.id"] == result.correlation_id
    assert "gen_ai.usage.input_tokens" in attrs


async def test_a_failed_llm_call_is_an_error_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = Runtime()
    spans = trace_runtime(rt, provider)
    boom = ScriptedProvider([ProviderConnectionError("model down", provider="scripted")])
    traced = TracedProvider(boom, spans)
    with pytest.raises(ProviderConnectionError, match="model down"):
        await traced.complete(Request(messages=(ChatMessage.user("hi"),)))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ProviderConnectionError"
