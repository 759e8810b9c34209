"""Retry: try a failed call again, after the wait the provider asked for or a backoff."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager

import anyio

from .._base.resilience import at_least, backoff_after
from ._errors import LLMError, ProviderError
from ._killswitch import count_attempt
from ._provider import Provider, a_provider, open_attempt
from ._types import Request, Response, StreamEvent

__all__ = ["Retry"]

Sleep = Callable[[float], Awaitable[None]]


class Retry:
    """Retries what ``LLMError.retryable`` allows (408, 409, 429, 5xx, a failed connection).

    The wait before attempt n+1 is ``Retry-After`` / ``retry-after-ms`` when the provider sent
    one, else ``backoff * multiplier**(n-1)`` capped at ``max_backoff``, less a random part of
    up to ``jitter`` of it (a seeded ``random.Random``: runs are reproducible). A provider asking
    for more than ``max_retry_after`` seconds gets no retry: the error is raised at once. A
    stream is retried only until its first event; after that the error goes to the reader.
    ``sleep`` is how waits happen (inject a recorder to test without waiting).
    """

    def __init__(
        self,
        inner: Provider,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        multiplier: float = 2.0,
        max_backoff: float = 20.0,
        jitter: float = 0.25,
        max_retry_after: float = 60.0,
        seed: int | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not all(at_least(w, 0) for w in (backoff, multiplier, max_backoff, max_retry_after)):
            raise ValueError(  # NaN too: anyio refused it at the first wait
                "backoff, multiplier, max_backoff and max_retry_after must be numbers of at "
                f"least 0, not {backoff}, {multiplier}, {max_backoff}, {max_retry_after}"
            )
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        self.inner = a_provider(inner, "Retry(inner)")
        self.attempts = attempts
        self.backoff = backoff
        self.multiplier = multiplier
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.max_retry_after = max_retry_after
        self._rng = random.Random(seed)
        self._sleep = sleep

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def delay(self, attempt: int, error: LLMError) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1-based), None to give up."""
        if attempt >= self.attempts or not error.retryable:
            return None
        asked = error.retry_after if isinstance(error, ProviderError) else None
        if asked is not None:
            return asked if asked <= self.max_retry_after else None
        grown = backoff_after(attempt, self.backoff, self.multiplier, self.max_backoff)
        return grown * (1 - self.jitter * self._rng.random())

    async def complete(self, request: Request) -> Response:
        attempt = 1
        while True:
            try:
                return await self.inner.complete(request)
            except LLMError as exc:
                wait = self.delay(attempt, exc)
                if wait is None:
                    raise
                await self._sleep(wait)
                count_attempt(exc)  # the switch above charges it, and may refuse the next
            attempt += 1

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        attempt = 1
        while True:
            try:
                opened, events = await open_attempt(self.inner, request)
            except LLMError as exc:
                wait = self.delay(attempt, exc)
                if wait is None:
                    raise
                await self._sleep(wait)
                count_attempt(exc)
            else:
                break
            attempt += 1
        async with opened, aclosing(events) as reader:
            yield reader
