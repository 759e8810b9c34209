"""Cache: the same question within the TTL gets the same answer without a call."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

from .._base.resilience import at_least
from ._clock import loop_time
from ._provider import Provider, a_provider, events_of
from ._types import Accumulator, Finish, Request, Response, StreamEvent

__all__ = ["Cache", "CacheStatistics"]


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    entries: int
    hits: int
    misses: int


class Cache:
    """Keeps answers for ``ttl`` seconds, keyed by the request's canonical JSON (the call
    context is not part of it), at most ``max_entries`` (the least recently used go first).
    Errors and streams that did not finish are not kept. A hit is served whether it was asked
    for by ``complete`` or by ``stream``: a cached stream replays as events. Put it outside
    the cost observer and the budgets, so a hit costs nothing and spends no budget."""

    def __init__(
        self,
        inner: Provider,
        *,
        ttl: float = 600.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        if not at_least(ttl, 0, strictly=True) or max_entries < 1:  # NaN too
            raise ValueError(
                f"ttl must be positive and max_entries at least 1, not {ttl}, {max_entries}"
            )
        self.inner = a_provider(inner, "Cache(inner)")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Response]] = OrderedDict()
        self._hits = 0
        self._misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(len(self._entries), self._hits, self._misses)

    @staticmethod
    def key(request: Request) -> str:
        return hashlib.sha256(request.canonical().encode()).hexdigest()

    def _get(self, key: str) -> Response | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            self._entries.pop(key, None)
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return entry[1]

    def _put(self, key: str, response: Response) -> None:
        self._entries[key] = (self._clock() + self.ttl, response)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def complete(self, request: Request) -> Response:
        key = self.key(request)
        hit = self._get(key)
        if hit is not None:
            return hit
        response = await self.inner.complete(request)
        self._put(key, response)
        return response

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        key = self.key(request)
        hit = self._get(key)
        if hit is not None:
            async with aclosing(events_of(hit)) as reader:
                yield reader
            return
        async with (
            self.inner.stream(request) as events,
            aclosing(self._recording(key, events)) as reader,
        ):
            yield reader

    async def _recording(
        self, key: str, events: AsyncIterator[StreamEvent]
    ) -> AsyncGenerator[StreamEvent, None]:
        acc = Accumulator(self.inner.name)
        async for event in events:
            acc.add(event)
            if isinstance(event, Finish) and (response := acc.watched()) is not None:
                self._put(key, response)
            yield event
