"""The runtime clock: the only source of time for handlers, deadlines and timestamps."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import anyio

__all__ = ["Clock"]


def _loop_time() -> Callable[[], float]:
    """The running backend's clock, looked up once (``anyio.current_time`` asks sniffio each
    call, which costs more than a whole hop's worth of bookkeeping)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not on asyncio: trio (whose MockClock makes it virtual), or ask anyio
        pass
    else:
        # The base loop's ``time`` is ``time.monotonic()`` behind a method: the clock reads the
        # same time without it (a message is stamped once a hop).
        if getattr(loop.time, "__func__", None) is asyncio.BaseEventLoop.time:
            return time.monotonic
        return loop.time
    try:
        import trio

        trio.current_time()
    except (ImportError, RuntimeError):
        return anyio.current_time
    return trio.current_time


class Clock:
    """Reads time from the running event loop, so trio's ``MockClock`` makes it virtual.

    ``now()`` is ``epoch`` plus the loop time elapsed since the runtime started. With a fixed
    ``epoch`` and a virtual loop clock, timestamps are reproducible.
    """

    def __init__(self, epoch: datetime | None = None) -> None:
        self._epoch = epoch
        self.monotonic: Callable[[], float] = _unstarted
        # ``now()``: the wall clock until the runtime starts, then ``epoch`` plus loop time. An
        # attribute set by ``start`` rather than a method that tests which applies: a message
        # is stamped with it on every hop.
        self.now: Callable[[], datetime] = _wall_now
        # ``now()`` as a POSIX timestamp: what a message is stamped with (``created_at`` becomes
        # a datetime only when read, and most never are).
        self.timestamp: Callable[[], float] = time.time
        # What ``timestamp()`` adds to ``monotonic()`` once started: a handler's context reads
        # the two and adds them itself (``RuntimeContext.reply``).
        # ``timestamp`` is defined as exactly that sum, so both give the same float.
        self.base = 0.0

    def start(self) -> None:
        monotonic = self.monotonic = _loop_time()
        epoch = self._epoch or datetime.now(UTC)
        base = self.base = epoch.timestamp() - monotonic()
        fromtimestamp = datetime.fromtimestamp

        def now() -> datetime:
            return fromtimestamp(base + monotonic(), UTC)

        def timestamp() -> float:
            return base + monotonic()

        self.now = now
        self.timestamp = timestamp

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def _wall_now() -> datetime:
    return datetime.now(UTC)


def _unstarted() -> float:
    raise RuntimeError("the clock starts with its runtime")
