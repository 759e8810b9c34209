"""Tracing with the OpenTelemetry SDK's in-memory exporter: one trace per request, spans
parented as the causation chain, the caller's ``traceparent`` honoured."""

from __future__ import annotations

from pathlib import Path

import anyio
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from genie import BaseAgent, Context, Message, Observer, Payload, Runtime, handler
from genie.otel import trace_runtime
from genie.pipeline import load_pipeline
from genie.serve import ServeSettings

from .conftest import ALICE, EVE, ROOT, auth, csv_body, finance, keyring, serving

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


class Causes(Observer):
    def __init__(self) -> None:
        self.of: dict[str, tuple[str | None, str]] = {}  # message id: (causation id, sender)

    def published(self, msg: Message, recipients: int) -> None:
        self.of[msg.id] = (msg.causation_id, msg.sender)


def _key(span: ReadableSpan) -> tuple[str, str]:
    attrs = span.attributes or {}
    return str(attrs["messaging.message.id"]), str(attrs["messaging.destination.name"])


def check_causation(spans: tuple[ReadableSpan, ...], causes: Causes) -> None:
    """Every process span's parent is the span of the delivery that produced its message, or
    the request's publish span for the request message itself."""
    (root,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
    by_key = {_key(s): s for s in spans if s.kind is SpanKind.CONSUMER}
    assert by_key
    for (msg_id, _agent), span in by_key.items():
        assert span.parent is not None
        cause, sender = causes.of[msg_id]
        parent = root if cause is None else by_key[(cause, sender)]
        assert span.parent.span_id == parent.context.span_id, (msg_id, _agent)
        assert span.context.trace_id == root.context.trace_id


async def test_a_run_is_one_trace_parented_along_causation(tmp_path: Path) -> None:
    tp, exporter = provider()
    pipeline = finance(tmp_path)
    causes = Causes()
    async with pipeline.runtime() as rt:
        trace_runtime(rt, tp)
        rt.add_observer(causes)
        result = await pipeline.ask(rt, pipeline.entry_payload(csv_body()["csv"]))
        await rt.wait_idle()
    assert result.status == "ok"
    spans = exporter.get_finished_spans()
    check_causation(spans, causes)
    names = {s.name for s in spans}
    assert {"publish finance_question", "process financial_supervisor", "process reporter"} <= (
        names
    )
    reporter = next(s for s in spans if s.name == "process reporter")
    attrs = reporter.attributes or {}
    assert attrs["messaging.system"] == "genie"
    assert attrs["gen_ai.agent.name"] == "reporter"
    assert attrs["gen_ai.conversation.id"] == result.correlation_id
    assert attrs["genie.outputs"] == 1


async def test_over_http_traceparent_is_honoured_and_requests_are_separate_traces(
    tmp_path: Path,
) -> None:
    tp, exporter = provider()
    causes = Causes()
    runtimes: list[Runtime] = []

    def observe(name: str, rt: Runtime) -> None:
        trace_runtime(rt, tp)
        rt.add_observer(causes)
        runtimes.append(rt)

    header = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    async with serving([finance(tmp_path)], keyring(tmp_path), observers=observe) as client:
        traced = await client.post(
            "/v1/pipelines/finance/ask",
            json=csv_body(),
            headers={**auth(ALICE), "traceparent": header},
        )
        fresh = await client.post("/v1/pipelines/finance/ask", json=csv_body(), headers=auth(ALICE))
        with anyio.fail_after(5):
            await runtimes[0].wait_idle()  # a request's root span ends when it settles
    assert traced.status_code == fresh.status_code == 200
    spans = exporter.get_finished_spans()
    traces: dict[int, list[ReadableSpan]] = {}
    for s in spans:
        traces.setdefault(s.context.trace_id, []).append(s)
    assert len(traces) == 2
    mine = traces.pop(int(CALLER_TRACE, 16))
    (root,) = [s for s in mine if s.kind is SpanKind.PRODUCER]
    assert root.parent is not None
    assert root.parent.span_id == int(CALLER_SPAN, 16)
    assert root.parent.is_remote
    check_causation(tuple(mine), causes)
    (other,) = traces.values()
    (other_root,) = [s for s in other if s.kind is SpanKind.PRODUCER]
    assert other_root.parent is None  # no traceparent: a trace of its own
    # Every message of the traced request carries the caller's trace id.
    ids = {(s.attributes or {}).get("genie.trace_id") for s in mine if s.kind is SpanKind.CONSUMER}
    assert ids == {CALLER_TRACE}


async def test_a_malformed_traceparent_starts_a_new_trace(tmp_path: Path) -> None:
    tp, exporter = provider()
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), observers=lambda n, rt: trace_runtime(rt, tp)
    ) as client:
        r = await client.post(
            "/v1/pipelines/finance/ask",
            json=csv_body(),
            headers={**auth(ALICE), "traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"},
        )
    assert r.status_code == 200
    assert all(s.context.trace_id != 0 for s in exporter.get_finished_spans())


async def test_a_denial_is_an_error_span_naming_the_policy(tmp_path: Path) -> None:
    tp, exporter = provider()
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), observers=lambda n, rt: trace_runtime(rt, tp)
    ) as client:
        r = await client.post("/v1/pipelines/finance/ask", json=csv_body(), headers=auth(EVE))
    assert r.status_code == 403
    denied = [s for s in exporter.get_finished_spans() if s.status.status_code is StatusCode.ERROR]
    assert denied
    assert denied[0].status.description is not None
    assert denied[0].status.description.startswith("denied by rbac")


async def test_served_with_tracing_llm_calls_join_the_request_trace(tmp_path: Path) -> None:
    """The research pipeline's model (scripted, offline) is wrapped by the server: its calls
    are client spans in the request's trace."""
    tp, exporter = provider()
    research = load_pipeline(ROOT / "config/pipelines/research.yaml")
    async with serving([research], keyring(tmp_path), tracing=tp) as client:
        r = await client.post(
            "/v1/pipelines/research/ask",
            json={"question": "What must a bank report to FIU-IND?"},
            headers=auth(ALICE),
        )
    assert r.status_code == 200, r.text
    spans = exporter.get_finished_spans()
    calls = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(calls) >= 2  # the loop asks the model, searches, asks again
    (root,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert {c.context.trace_id for c in calls} == {root.context.trace_id}
    assert all((c.attributes or {})["gen_ai.operation.name"] == "chat" for c in calls)
    deliveries = {s.context.span_id: s for s in spans if s.kind is SpanKind.CONSUMER}
    for call in calls:  # under the delivery that made the call, not the request's span
        assert call.parent is not None
        made_by = deliveries[call.parent.span_id]
        attrs = call.attributes or {}
        assert attrs["gen_ai.agent.id"] == (made_by.attributes or {})["gen_ai.agent.id"]
        assert made_by.start_time is not None
        assert call.start_time is not None
        assert made_by.start_time <= call.start_time


async def test_a_traceparent_in_metadata_is_read_as_the_w3c_spec_reads_it() -> None:
    """An application that copies its callers' ``traceparent`` into a message's metadata
    (as ``genie serve`` does, after checking it) is read as the header is: what the spec calls
    invalid starts a new trace rather than joining one the header only seems to name."""
    from ..conftest import Echo, Ping

    span = CALLER_SPAN
    valid = f"00-{CALLER_TRACE}-{span}-01"
    invalid = [
        f"00-{CALLER_TRACE.upper()}-{span}-01",  # upper-case hex
        f"00-0x{CALLER_TRACE[2:]}-{span}-01",  # a number as Python reads one
        f"00-{CALLER_TRACE}-{span}-101",  # three digits of flags
        f"ff-{CALLER_TRACE}-{span}-01",  # the version that is never valid
        f"00-{'0' * 32}-{span}-01",  # no trace
    ]
    tp, exporter = provider()
    async with Runtime() as rt:
        trace_runtime(rt, tp)
        rt.add(Echo("echo"))
        for header in [valid, *invalid]:
            msg = rt.message(Ping(), recipient="echo", metadata={"traceparent": header})
            await rt.ask(msg)
    roots = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    parents = [(s.parent.trace_id, s.parent.span_id) if s.parent else None for s in roots]
    assert parents == [(int(CALLER_TRACE, 16), int(span, 16))] + [None] * len(invalid)


class Ping(Payload):
    message_type = "trace_ping"


class Held(BaseAgent):
    """Handles each ping once ``go`` is set: a second delivery queues behind the first."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id)
        self.go = anyio.Event()

    @handler
    async def on_ping(self, p: Ping, ctx: Context) -> None:
        await self.go.wait()


class Ends(SpanProcessor):
    """The spans started and the spans ended, by id."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.ended: list[int] = []

    def on_start(self, span: Span, parent_context: object = None) -> None:
        self.started.append(span.context.span_id)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.context.span_id)


async def test_a_message_delivered_twice_to_one_agent_has_a_span_per_delivery() -> None:
    """The second delivery's span took the first's place: the first was never ended (lost
    to the exporter), and the second delivery's end found no span and made one up."""
    tp, exporter = provider()
    ends = Ends()
    tp.add_span_processor(ends)
    agent = Held("held")
    async with Runtime([agent]) as rt:
        trace_runtime(rt, tp)
        msg = rt.message(Ping(), recipient="held")
        await rt.publish(msg)
        # Delivered again as a transport hands over a redelivery (an outside publish of an id
        # taken already is refused): queued behind the first, which is still being handled.
        rt._dispatcher.route(msg, False)
        agent.go.set()
        with anyio.fail_after(10):
            await rt.wait_idle()
    processed = [s for s in exporter.get_finished_spans() if s.name == "process held"]
    assert len(processed) == 2
    assert sorted(ends.started) == sorted(ends.ended)  # every span started was ended
    assert all(s.status.status_code is StatusCode.UNSET for s in processed)


async def test_an_mcp_tool_call_joins_the_callers_trace_as_an_ask_does(tmp_path: Path) -> None:
    """``/mcp`` read no ``traceparent``: a tool call over HTTP was a trace of its own, cut
    from the caller's, where an ask with the same header joins it."""
    tp, exporter = provider()
    runtimes: list[Runtime] = []

    def observe(name: str, rt: Runtime) -> None:
        trace_runtime(rt, tp)
        runtimes.append(rt)

    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "finance", "arguments": {}},
    }
    headers = {
        **auth(ALICE),
        "Accept": "application/json, text/event-stream",
        "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
    }
    settings = ServeSettings(mcp=True)
    async with serving(
        [finance(tmp_path)], keyring(tmp_path), settings, observers=observe
    ) as client:
        answer = await client.post("/mcp", json=call, headers=headers)
        with anyio.fail_after(5):
            await runtimes[0].wait_idle()  # a request's root span ends when it settles
    assert answer.status_code == 200, answer.text
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {int(CALLER_TRACE, 16)}
    (root,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
    assert root.parent is not None
    assert root.parent.span_id == int(CALLER_SPAN, 16)
    ids = {(s.attributes or {}).get("genie.trace_id") for s in spans if s.kind is SpanKind.CONSUMER}
    assert ids == {CALLER_TRACE}
