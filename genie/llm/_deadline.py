"""Deadline: one cancel scope over the whole call, every attempt and wait inside it."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager

import anyio

from .._base.resilience import at_least
from ._clock import loop_time
from ._errors import LLMTimeoutError
from ._provider import Provider, a_provider
from ._types import Request, Response, StreamEvent

__all__ = ["Deadline"]


class Deadline:
    """Cancels the call at the earlier of ``timeout`` seconds from its start and the call
    context's ``deadline``, and raises :class:`LLMTimeoutError`. For a stream the deadline
    covers opening it and reading it to the end."""

    def __init__(self, inner: Provider, timeout: float | None = 30.0) -> None:
        if timeout is not None and not at_least(timeout, 0, strictly=True):  # NaN too
            raise ValueError(f"timeout must be positive (seconds) or None, not {timeout}")
        self.inner = a_provider(inner, "Deadline(inner)")
        self.timeout = timeout

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def _deadline(self, request: Request) -> float:
        ends = loop_time() + self.timeout if self.timeout is not None else math.inf
        given = request.context.deadline
        return ends if given is None or given > ends else given

    def _timed_out(self, request: Request) -> LLMTimeoutError:
        return LLMTimeoutError(
            f"{self.name}: the call ran past its deadline and was cancelled",
            provider=self.name,
            correlation_id=request.context.correlation_id,
        )

    async def complete(self, request: Request) -> Response:
        with anyio.CancelScope(deadline=self._deadline(request)):
            return await self.inner.complete(request)
        # Only a fired deadline leaves the scope without a return.
        raise self._timed_out(request)

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        deadline = self._deadline(request)
        async with AsyncExitStack() as stack:
            with anyio.CancelScope(deadline=deadline) as scope:
                events = await stack.enter_async_context(self.inner.stream(request))
            if scope.cancelled_caught:
                raise self._timed_out(request)
            async with aclosing(self._within(events, deadline, request)) as reader:
                yield reader

    async def _within(
        self, events: AsyncIterator[StreamEvent], deadline: float, request: Request
    ) -> AsyncGenerator[StreamEvent, None]:
        # A cancel scope may not stay open across a yield to the reader, so each read gets its
        # own scope with the same absolute deadline.
        while True:
            with anyio.CancelScope(deadline=deadline) as scope:
                event = await anext(events, None)
            if scope.cancelled_caught:
                raise self._timed_out(request)
            if event is None:
                return
            yield event
