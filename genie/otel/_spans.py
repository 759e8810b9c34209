"""Spans from the observer hook.

One trace per request: a ``publish`` span for the request message (a child of the caller's
``traceparent`` when its metadata holds one: ``genie serve`` writes it there), and one
``process`` span per delivery, from the moment the message is queued for the agent to the end
of the handler call. A delivery's parent is the delivery that produced its message (the
message's ``causation_id`` handled by its ``sender``), so the trace is the causation chain.
Attributes follow the OpenTelemetry messaging conventions (``messaging.*``) and the GenAI
agent conventions (``gen_ai.agent.*``, ``gen_ai.conversation.id``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)

from .._base.tracecontext import TraceParent
from .._message.envelope import Message
from .._runtime.correlator import GatherResult
from .._runtime.deadletter import DeadLetter
from .._runtime.observe.observer import Observer
from .._runtime.runtime import Runtime

__all__ = ["SpanObserver", "trace_runtime"]

SYSTEM = "genie"


def _remote(traceparent: object) -> SpanContext | None:
    """The caller's span a message's ``traceparent`` names, read as the W3C spec reads the
    header (as ``genie serve`` reads it), or None: an invalid one starts a new trace."""
    parent = TraceParent.parse(traceparent) if isinstance(traceparent, str) else None
    if parent is None:
        return None
    return SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
    )


class SpanObserver(Observer):
    """Turns what the runtime tells its observers into spans (see the module docstring).

    Contexts of finished deliveries are kept until their request settles, so late outputs
    still find their parent; spans still open when the runtime closes end with an error
    status saying so."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        # (message id, agent): the spans of its deliveries still open, oldest first. Mostly
        # one; a message redelivered, or published again while its first delivery runs, has
        # a span for each delivery, and the hook names a delivery by message and agent only.
        self._open: dict[tuple[str, str], list[Span]] = {}
        self._done: dict[tuple[str, str], SpanContext] = {}
        self._requests: dict[str, Span] = {}  # correlation id: the request's publish span
        self._by_correlation: dict[str, list[tuple[str, str]]] = {}

    # --- parents -----------------------------------------------------------------------------
    def _parent(self, msg: Message) -> Context | None:
        ctx: SpanContext | None = None
        if msg.causation_id is not None:
            key = (msg.causation_id, msg.sender)
            span = self._oldest(key)
            ctx = span.get_span_context() if span is not None else self._done.get(key)
        if ctx is None:
            root = self._requests.get(msg.correlation_id)
            if root is not None:
                ctx = root.get_span_context()
        if ctx is None:
            ctx = _remote(msg.metadata.get("traceparent"))
        return trace.set_span_in_context(NonRecordingSpan(ctx)) if ctx is not None else None

    def _attributes(self, msg: Message, agent_id: str, operation: str) -> Mapping[str, Any]:
        return {
            "messaging.system": SYSTEM,
            "messaging.operation.type": operation,
            "messaging.operation.name": operation,
            "messaging.destination.name": agent_id,
            "messaging.message.id": msg.id,
            "messaging.message.conversation_id": msg.correlation_id,
            "gen_ai.agent.id": agent_id,
            "gen_ai.agent.name": agent_id,
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.conversation.id": msg.correlation_id,
            "genie.message.type": msg.type,
            "genie.message.sender": msg.sender,
            "genie.hops": msg.hops,
            "genie.trace_id": msg.trace_id,
        }

    def _start(self, msg: Message, agent_id: str, start: int | None = None) -> Span:
        span = self._tracer.start_span(
            f"process {agent_id}",
            context=self._parent(msg),
            kind=SpanKind.CONSUMER,
            attributes=self._attributes(msg, agent_id, "process"),
            start_time=start,
        )
        key = (msg.id, agent_id)
        self._open.setdefault(key, []).append(span)
        self._by_correlation.setdefault(msg.correlation_id, []).append(key)
        return span

    def _oldest(self, key: tuple[str, str]) -> Span | None:
        spans = self._open.get(key)
        return spans[0] if spans else None

    def _take(self, key: tuple[str, str], span: Span | None = None) -> Span | None:
        """``span`` (else the oldest open span of ``key``), no longer open."""
        spans = self._open.get(key)
        if not spans:
            return None
        if span is None:
            span = spans.pop(0)
        else:
            spans.remove(span)
        if not spans:
            del self._open[key]
        return span

    def _end(self, key: tuple[str, str], span: Span) -> None:
        span.end()
        self._done[key] = span.get_span_context()

    def start_child(
        self,
        name: str,
        correlation_id: str | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        *,
        message_id: str | None = None,
        agent_id: str | None = None,
    ) -> Span:
        """A span for work a delivery does beside the bus (an LLM call); the caller ends it.

        Its parent is the delivery of ``message_id`` to ``agent_id`` (to any agent when
        ``agent_id`` is None), else the request ``correlation_id``'s span, else none: a root
        of its own when the request is not traced here."""
        ctx = self._delivery(correlation_id, message_id, agent_id)
        if ctx is None and correlation_id is not None:
            root = self._requests.get(correlation_id)
            ctx = root.get_span_context() if root is not None else None
        context = trace.set_span_in_context(NonRecordingSpan(ctx)) if ctx is not None else None
        return self._tracer.start_span(name, context=context, kind=kind, attributes=attributes)

    def _delivery(
        self, correlation_id: str | None, message_id: str | None, agent_id: str | None
    ) -> SpanContext | None:
        if message_id is None:
            return None
        if agent_id is not None:
            span = self._oldest((message_id, agent_id))
            return (
                span.get_span_context()
                if span is not None
                else self._done.get((message_id, agent_id))
            )
        keys = self._by_correlation.get(correlation_id, ()) if correlation_id else ()
        for key in keys:  # one request's deliveries: a short list
            if key[0] == message_id:
                span = self._oldest(key)
                return span.get_span_context() if span is not None else self._done.get(key)
        return None

    # --- the hook ----------------------------------------------------------------------------
    def published(self, msg: Message, recipients: int) -> None:
        if msg.causation_id is None and msg.correlation_id not in self._requests:
            remote = _remote(msg.metadata.get("traceparent"))
            context = trace.set_span_in_context(NonRecordingSpan(remote)) if remote else None
            self._requests[msg.correlation_id] = self._tracer.start_span(
                f"publish {msg.type}",
                context=context,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": SYSTEM,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "publish",
                    "messaging.destination.name": msg.recipient or msg.type,
                    "messaging.message.id": msg.id,
                    "messaging.message.conversation_id": msg.correlation_id,
                    "messaging.batch.message_count": recipients,
                    "gen_ai.conversation.id": msg.correlation_id,
                    "genie.message.type": msg.type,
                    "genie.message.sender": msg.sender,
                },
            )

    def delivered(self, msg: Message, agent_id: str) -> None:
        self._start(msg, agent_id)

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        key = (msg.id, agent_id)
        span = self._take(key)
        if span is None:  # a fallback agent: no delivery of its own, the call is the span
            span = self._start(msg, agent_id, time.time_ns() - int(duration * 1e9))
            self._take(key, span)
        span.set_attribute("genie.outputs", outputs)
        span.set_attribute("genie.handler.duration_ms", duration * 1000)
        self._end(key, span)

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        span = self._oldest((msg.id, agent_id))
        if span is None:
            span = self._start(msg, agent_id, time.time_ns() - int(duration * 1e9))
        span.record_exception(error)  # a retry, the fallback or a dead letter follows
        span.set_attribute("error.type", type(error).__qualname__)

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        span = self._start(msg, agent_id)
        span.set_attribute("genie.policy", policy)
        span.set_attribute("genie.denied_reason", reason)
        span.set_attribute("error.type", "denied")
        span.set_status(Status(StatusCode.ERROR, f"denied by {policy}: {reason}"))
        key = (msg.id, agent_id)
        self._take(key, span)
        self._end(key, span)

    def dead_lettered(self, letter: DeadLetter) -> None:
        key = (letter.message.id, letter.agent_id or "-")
        span = self._take(key)
        if span is None:
            return  # unrouted: no delivery, so no span
        span.set_attribute("error.type", letter.kind)
        span.set_status(Status(StatusCode.ERROR, f"{letter.kind}: {letter.reason}"))
        self._end(key, span)

    def gathered(self, result: GatherResult) -> None:
        root = self._requests.get(result.correlation_id)
        if root is not None:
            root.add_event("gathered", {"status": result.status, "replies": len(result.replies)})

    def settled(self, correlation_id: str) -> None:
        for key in self._by_correlation.pop(correlation_id, ()):
            self._done.pop(key, None)
            for span in self._open.pop(key, ()):
                span.end()
        root = self._requests.pop(correlation_id, None)
        if root is not None:
            root.end()

    def closed(self) -> None:
        for span in [
            *(s for spans in self._open.values() for s in spans),
            *self._requests.values(),
        ]:
            span.set_status(Status(StatusCode.ERROR, "the runtime closed first"))
            span.end()
        self._open.clear()
        self._requests.clear()
        self._done.clear()
        self._by_correlation.clear()


def trace_runtime(rt: Runtime, tracer_provider: TracerProvider | None = None) -> SpanObserver:
    """Trace ``rt`` from now on, with ``tracer_provider`` (default: the global one)."""
    tracer = trace.get_tracer("genie", tracer_provider=tracer_provider)
    observer = SpanObserver(tracer)
    rt.add_observer(observer)
    return observer
