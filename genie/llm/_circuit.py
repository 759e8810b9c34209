"""Circuit: stop calling a provider that keeps failing, with the runtime's breaker."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager

from .._base.resilience import BreakerPolicy, CircuitBreaker
from ._clock import loop_time
from ._errors import (
    LLMCircuitOpenError,
    LLMError,
    LLMTimeoutError,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
)
from ._provider import Provider, a_provider
from ._types import Finish, Request, Response, StreamEvent

__all__ = ["Circuit"]

# What says the provider is unwell; a refused or malformed request of ours does not.
_PROVIDER_FAULTS = (
    ProviderUnavailableError,
    RateLimitedError,
    ProviderConnectionError,
    ProviderResponseError,
    LLMTimeoutError,
)


class Circuit:
    """After ``failure_threshold`` consecutive provider faults, calls are refused with
    :class:`LLMCircuitOpenError` (nothing is sent) for ``reset_after`` seconds; then one trial
    call goes through, and its result closes or reopens the circuit (the runtime's
    :class:`CircuitBreaker`). A cancelled trial counts as a failure, so the circuit never stays
    half-open. ``clock`` is the loop's by default (virtual under trio's ``MockClock``)."""

    def __init__(
        self,
        inner: Provider,
        *,
        failure_threshold: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self.inner = a_provider(inner, "Circuit(inner)")
        self.breaker = CircuitBreaker(BreakerPolicy(failure_threshold, reset_after))
        self._clock = clock

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    @property
    def state(self) -> str:
        return self.breaker.state

    def _admit(self) -> None:
        if not self.breaker.allow(self._clock()):
            raise LLMCircuitOpenError(
                f"{self.name}: circuit open after {self.breaker.failures} consecutive failures; "
                f"calls are refused for up to {self.breaker.policy.reset_after:g} s",
                provider=self.name,
            )

    def _record(self, error: BaseException | None) -> None:
        if error is None:
            self.breaker.record_success()
        elif isinstance(error, _PROVIDER_FAULTS) or not isinstance(error, LLMError):
            self.breaker.record_failure(self._clock())
        elif self.breaker.state == "half_open":
            # The trial told us nothing about the provider: let the next call try again.
            self.breaker.record_failure(self._clock())

    async def complete(self, request: Request) -> Response:
        self._admit()
        try:
            response = await self.inner.complete(request)
        except BaseException as exc:
            self._record(exc)
            raise
        self._record(None)
        return response

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        self._admit()
        outcome = _Outcome()
        try:
            async with (
                self.inner.stream(request) as events,
                aclosing(self._watched(events, outcome)) as reader,
            ):
                yield reader
        except BaseException as exc:
            if not outcome.recorded:
                self._record(exc)
            raise
        if not outcome.recorded:  # the reader stopped early: the provider did its part
            self._record(None)

    async def _watched(
        self, events: AsyncIterator[StreamEvent], outcome: _Outcome
    ) -> AsyncGenerator[StreamEvent, None]:
        try:
            async for event in events:
                if isinstance(event, Finish):
                    outcome.recorded = True
                    self._record(None)
                yield event
        except LLMError as exc:
            if not outcome.recorded:
                outcome.recorded = True
                self._record(exc)
            raise


class _Outcome:
    """Whether a stream's result is already in the breaker (so it is counted once)."""

    __slots__ = ("recorded",)

    def __init__(self) -> None:
        self.recorded = False
