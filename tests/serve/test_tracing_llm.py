"""A span per LLM call, under the span of the delivery that made it."""

from __future__ import annotations

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from genie import BaseAgent, Context, Message, Runtime, TestContext, handler
from genie.llm import (
    CallContext,
    ChatMessage,
    Provider,
    ProviderConnectionError,
    Request,
    Response,
    ScriptedProvider,
    Usage,
)
from genie.otel import SpanObserver, TracedProvider, trace_runtime

from ..conftest import Ping, Pong


class Relay(BaseAgent):
    """Asks the asker about every Ping: the call is then one hop below the request."""

    produces = (Ping, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await ctx.request("asker", payload, timeout=5)
        return ctx.reply(Pong(n=payload.n))


class Asker(BaseAgent):
    """Asks its model about every Ping through ``ctx.llm``, streaming too, and replies Pong."""

    produces = (Pong,)

    def __init__(self, id: str, model: Provider) -> None:
        super().__init__(id)
        self.model = model

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        model = ctx.llm(self.model)
        request = Request(messages=(ChatMessage.user("hello"),), model="tiny")
        await model.complete(request)
        async with model.stream(request) as events:
            async for _ in events:
                pass
        return ctx.reply(Pong(n=payload.n))


class OwnContext(Asker):
    """Calls its model directly, with a context of its own naming the message only."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        request = Request(
            messages=(ChatMessage.user("hello"),), model="tiny", context=CallContext.of(ctx.message)
        )
        await self.model.complete(request)
        return ctx.reply(Pong(n=payload.n))


def _traced() -> tuple[Runtime, SpanObserver, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = Runtime()
    return rt, trace_runtime(rt, provider), exporter


def _delivery(spans: tuple[ReadableSpan, ...], agent: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.kind is SpanKind.CONSUMER and s.name == f"process {agent}"]
    return span


async def test_an_llm_call_is_a_child_of_the_delivery_that_made_it() -> None:
    rt, spans, exporter = _traced()
    rt.add(Relay("relay"))
    rt.add(Asker("asker", TracedProvider(ScriptedProvider(["hi there"], name="scripted"), spans)))
    async with rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="relay"), timeout=5)
        await rt.wait_idle()
    assert result.replies
    finished = exporter.get_finished_spans()
    calls = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert [s.name for s in calls] == ["chat tiny", "chat tiny"]
    (root,) = [s for s in finished if s.kind is SpanKind.PRODUCER]
    asker, relay = _delivery(finished, "asker"), _delivery(finished, "relay")
    assert asker.parent is not None
    assert asker.parent.span_id == relay.context.span_id
    for call in calls:
        assert call.context.trace_id == root.context.trace_id
        assert call.parent is not None
        assert call.parent.span_id == asker.context.span_id  # not the request's, nor relay's
    attrs = calls[0].attributes or {}
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == "scripted"
    assert attrs["gen_ai.request.model"] == "tiny"
    assert attrs["gen_ai.agent.id"] == "asker"
    assert attrs["gen_ai.conversation.id"] == result.correlation_id
    assert "gen_ai.usage.input_tokens" in attrs


async def test_a_streamed_calls_span_records_its_usage_and_finish_as_a_completed_one() -> None:
    """A streamed call's span said nothing of what the call cost or how it ended."""
    rt, spans, exporter = _traced()
    answer = Response(
        text="hi there", usage=Usage(input_tokens=7, output_tokens=3), finish_reason="length"
    )
    rt.add(Asker("asker", TracedProvider(ScriptedProvider([answer], name="scripted"), spans)))
    async with rt:
        await rt.ask(rt.message(Ping(n=1), recipient="asker"), timeout=5)
        await rt.wait_idle()
    completed, streamed = (
        s.attributes or {} for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT
    )
    for name in (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.response.model",
    ):
        assert streamed.get(name) == completed[name], name
    assert streamed["gen_ai.usage.input_tokens"] == 7
    assert streamed["gen_ai.response.finish_reasons"] == ("length",)


async def test_two_requests_calls_stay_under_their_own_deliveries() -> None:
    rt, spans, exporter = _traced()
    rt.add(Asker("asker", TracedProvider(ScriptedProvider(["a", "b", "c", "d"]), spans)))
    async with rt:
        for n in (1, 2):
            await rt.ask(rt.message(Ping(n=n), recipient="asker"), timeout=5)
        await rt.wait_idle()
    finished = exporter.get_finished_spans()
    deliveries = [s for s in finished if s.kind is SpanKind.CONSUMER]
    assert len(deliveries) == 2
    for delivery in deliveries:
        under = [
            s
            for s in finished
            if s.kind is SpanKind.CLIENT
            and s.parent is not None
            and s.parent.span_id == delivery.context.span_id
        ]
        assert len(under) == 2
        assert {s.context.trace_id for s in under} == {delivery.context.trace_id}


async def test_a_context_naming_only_the_message_still_finds_its_delivery() -> None:
    rt, spans, exporter = _traced()
    rt.add(OwnContext("asker", TracedProvider(ScriptedProvider(["hi"]), spans)))
    async with rt:
        await rt.ask(rt.message(Ping(n=1), recipient="asker"), timeout=5)
        await rt.wait_idle()
    finished = exporter.get_finished_spans()
    (call,) = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert call.parent is not None
    assert call.parent.span_id == _delivery(finished, "asker").context.span_id


async def test_ctx_llm_names_the_delivery_even_over_a_callers_context() -> None:
    """Whatever context the handler set, the call is its delivery's (and correlation's)."""
    msg = Runtime().message(Ping(n=1), recipient="asker")
    scripted = ScriptedProvider(["x", "y"])
    model = TestContext("asker", msg).llm(scripted)
    other = CallContext(principal="someone", correlation_id="else", message_id="m", agent_id="a")
    await model.complete(Request(messages=(ChatMessage.user("hi"),)))
    await model.complete(Request(messages=(ChatMessage.user("hi"),), context=other))
    seen = [r.context for r in scripted.requests]
    assert len(seen) == 2
    for context in seen:
        assert (context.message_id, context.agent_id) == (msg.id, "asker")
        assert context.correlation_id == msg.correlation_id
    assert seen[1].principal == "someone"  # what is not the delivery's stays the caller's


async def test_a_call_outside_any_traced_request_is_a_root_span() -> None:
    _rt, spans, exporter = _traced()
    traced = TracedProvider(ScriptedProvider(["hi"]), spans)
    context = CallContext(correlation_id="nowhere", message_id="gone", agent_id="nobody")
    await traced.complete(Request(messages=(ChatMessage.user("hi"),), context=context))
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


async def test_a_failed_llm_call_is_an_error_span() -> None:
    _rt, spans, exporter = _traced()
    boom = ScriptedProvider([ProviderConnectionError("model down", provider="scripted")])
    traced = TracedProvider(boom, spans)
    with pytest.raises(ProviderConnectionError, match="model down"):
        await traced.complete(Request(messages=(ChatMessage.user("hi"),)))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ProviderConnectionError"


class _Unprintable(Exception):
    """An error of a provider's own whose ``str`` fails (an API error reading a dict)."""

    def __str__(self) -> str:
        raise KeyError("message")


class _FailsUnprintably(ScriptedProvider):
    async def complete(self, request: Request) -> Response:
        raise _Unprintable("down")


class _Stalls(ScriptedProvider):
    async def complete(self, request: Request) -> Response:
        await anyio.sleep_forever()
        raise AssertionError("never")


async def test_a_cancelled_or_unprintable_llm_call_is_an_error_span() -> None:
    """A call cut by a deadline ended as a span with no error at all, and an error whose
    ``__str__`` raises was replaced by that ``KeyError`` as it left the tracing wrapper."""
    _rt, spans, exporter = _traced()
    with anyio.move_on_after(0.01):
        await TracedProvider(_Stalls(), spans).complete(Request(messages=(ChatMessage.user("hi"),)))
    with pytest.raises(_Unprintable):
        await TracedProvider(_FailsUnprintably(), spans).complete(
            Request(messages=(ChatMessage.user("hi"),))
        )
    cut, failed = exporter.get_finished_spans()
    assert cut.status.status_code is StatusCode.ERROR
    assert (cut.attributes or {})["error.type"] == anyio.get_cancelled_exc_class().__qualname__
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "_Unprintable: <its str() raised KeyError>"
