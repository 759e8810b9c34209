"""A span per LLM call: a provider wrapper whose calls join the request's trace.

The call's context (filled by ``ctx.llm`` from the delivery that made it: its message id,
agent and correlation) finds that delivery's span in the ``SpanObserver``, and the call's span
is its child (the request's span when the delivery is unknown); attributes follow the GenAI
client conventions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from .._errors import described
from ..llm import Finish, Provider, Request, Response, StreamEvent, UsageEvent
from ._spans import SpanObserver

__all__ = ["TracedProvider"]


class TracedProvider:
    """``provider``, with a ``chat MODEL`` span (kind CLIENT) around each call."""

    def __init__(self, provider: Provider, observer: SpanObserver) -> None:
        self._provider = provider
        self._observer = observer

    @property
    def name(self) -> str:
        return self._provider.name

    @property
    def region(self) -> str:
        return self._provider.region

    def _start(self, request: Request) -> Any:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": self._provider.name,
            "gen_ai.request.max_tokens": request.max_tokens,
            "server.address": self._provider.region,
        }
        if request.model:
            attributes["gen_ai.request.model"] = request.model
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        context = request.context
        cid = context.correlation_id
        if cid is not None:
            attributes["gen_ai.conversation.id"] = cid
        if context.agent_id is not None:
            attributes["gen_ai.agent.id"] = context.agent_id
        return self._observer.start_child(
            f"chat {request.model or self._provider.name}",
            cid,
            SpanKind.CLIENT,
            attributes,
            message_id=context.message_id,
            agent_id=context.agent_id,
        )

    @staticmethod
    def _finish(span: Any, response: Response) -> None:
        span.set_attribute("gen_ai.response.model", response.model)
        span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason])
        span.set_attribute("gen_ai.usage.input_tokens", response.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", response.usage.output_tokens)
        if response.request_id:
            span.set_attribute("gen_ai.response.id", response.request_id)

    async def complete(self, request: Request) -> Response:
        span = self._start(request)
        try:
            response = await self._provider.complete(request)
        except BaseException as exc:  # a cancellation (a deadline, the caller gone) too
            _failed(span, exc)
            raise
        else:
            self._finish(span, response)
            return response
        finally:
            span.end()

    @asynccontextmanager
    async def _stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        span = self._start(request)
        try:
            async with self._provider.stream(request) as events:
                yield _Observed(events, span)
        except BaseException as exc:  # a cancellation (a deadline, the caller gone) too
            _failed(span, exc)
            raise
        finally:
            span.end()

    def stream(self, request: Request) -> Any:
        return self._stream(request)


class _Observed:
    """A call's stream of events, whose usage and finish its span records as they pass, as
    a completed call's span records its response's (a span of a stream said nothing of
    what the call cost)."""

    def __init__(self, events: AsyncIterator[StreamEvent], span: Any) -> None:
        self._events = events
        self._span = span

    def __aiter__(self) -> _Observed:
        return self

    async def __anext__(self) -> StreamEvent:
        event = await self._events.__anext__()
        span = self._span
        if isinstance(event, UsageEvent):
            # A later count replaces an earlier one where it is not 0 (``UsageEvent``).
            usage = event.usage
            if usage.input_tokens:
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            if usage.output_tokens:
                span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
        elif isinstance(event, Finish):
            span.set_attribute("gen_ai.response.finish_reasons", [event.reason])
            if event.model:
                span.set_attribute("gen_ai.response.model", event.model)
            if event.request_id:
                span.set_attribute("gen_ai.response.id", event.request_id)
        return event


def _failed(span: Any, exc: BaseException) -> None:
    """The span of a call that did not answer. Its error is described as a dead letter
    describes one, which never raises (the exporter's own ``record_exception`` reads
    ``str(exc)``, which a provider's error class may fail at: then it is left out)."""
    with contextlib.suppress(Exception):
        span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, described(exc)))
