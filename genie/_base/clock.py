"""The runtime clock: the only source of time for handlers, deadlines and timestamps."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Protocol

import anyio

from .._errors import InvalidArgumentError

__all__ = [
    "REAL_TIME_LOOPS",
    "Clock",
    "OutsideWork",
    "checked_timeout",
    "seconds",
    "spelt",
    "waiting_outside",
]

# The modules of event loops whose time is the monotonic clock, read coarsely.
REAL_TIME_LOOPS = frozenset({"uvloop"})


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
        # same time without it (a message is stamped once a hop). uvloop's is libuv's loop time,
        # the same monotonic clock read once a loop turn in whole milliseconds: handler
        # durations and stamps would come out as whole milliseconds, so the clock reads the
        # monotonic clock itself (deadlines then fire up to a turn late, as libuv's timers do).
        # Any other loop's time may be virtual: it is the loop's to keep.
        if (
            getattr(loop.time, "__func__", None) is asyncio.BaseEventLoop.time
            or type(loop).__module__ in REAL_TIME_LOOPS
        ):
            return time.monotonic
        return loop.time
    try:
        import trio.lowlevel

        clock = trio.lowlevel.current_clock()
    except (ImportError, RuntimeError):
        return anyio.current_time
    # The run's clock itself (what ``trio.current_time`` asks), so that a thread of the
    # application reads it too (stamping the message it builds), as it reads asyncio's.
    return clock.current_time


class Clock:
    """Reads time from the running event loop, so trio's ``MockClock`` makes it virtual.

    Durations and deadlines read the loop's clock (``monotonic``). Timestamps (``now()``) are
    the wall clock on a real-time loop; with a fixed ``epoch``, or a loop whose clock is not
    real time (a virtual clock), they are ``epoch`` plus the loop time elapsed since the runtime
    started, so a virtual run's timestamps are reproducible.
    """

    def __init__(self, epoch: datetime | None = None) -> None:
        self._epoch = epoch
        self.monotonic: Callable[[], float] = _unstarted
        # ``now()``: the wall clock, or (see above) ``epoch`` plus loop time once started. An
        # attribute set by ``start`` rather than a method that tests which applies: a message
        # is stamped with it on every hop.
        self.now: Callable[[], datetime] = _wall_now
        # ``now()`` as a POSIX timestamp: what a message is stamped with (``created_at`` becomes
        # a datetime only when read, and most never are).
        self.timestamp: Callable[[], float] = time.time

    def start(self) -> None:
        monotonic = self.monotonic = _loop_time()
        if self._epoch is None and monotonic is time.monotonic:
            # Real time, from no fixed epoch: stamps are the wall clock itself (``now`` and
            # ``timestamp`` stay as they were before the start).
            return
        epoch = self._epoch or datetime.now(UTC)
        base = epoch.timestamp() - monotonic()
        fromtimestamp = datetime.fromtimestamp

        def now() -> datetime:
            return fromtimestamp(base + monotonic(), UTC)

        def timestamp() -> float:
            return base + monotonic()

        self.now = now
        self.timestamp = timestamp

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock, never less: the loop's timer may end a sleep before
        the clock reaches its end (uvloop counts whole milliseconds of a clock it reads once a
        loop turn), and what is left is slept again."""
        monotonic = self.monotonic
        end = monotonic() + seconds
        await anyio.sleep(seconds)
        while (left := end - monotonic()) > 0:  # noqa: ASYNC110 - a clock, not a flag
            await anyio.sleep(left)

    def left(self, since: datetime, seconds: float) -> float:
        """What is left of ``seconds`` counted from ``since``, a time this clock (or another
        process's) stamped: a restart in between does not extend a deadline. Never more than
        ``seconds``: a wall clock set back since (or the stamping host's running ahead) reads
        ``since`` as still to come, which would extend it by as much."""
        waited = max(0.0, (self.now() - since).total_seconds())
        return max(0.0, seconds - waited)


class OutsideWork(Protocol):
    """A piece of work outside the loop, as ``waiting_outside`` announced it."""

    def paused(self) -> AbstractContextManager[object]:
        """A block in which the work waits on the loop in turn (a thread's ``ctx.sleep``)."""
        ...


class _Unannounced:
    """Outside work on a loop that need not be told of it."""

    def paused(self) -> AbstractContextManager[object]:
        return nullcontext()


_UNANNOUNCED = _Unannounced()


def waiting_outside(paced: bool = False) -> AbstractContextManager[OutsideWork]:
    """Where the runtime waits for work outside its event loop (a handler's thread, a child
    process, a tool's server, a model over HTTP, a store's disk): a loop whose clock is
    virtual must not jump past that work to its next timer, so it is told, through its
    ``waiting_outside()`` (the simulation's loop has one). ``paced``: work the program polls
    on the loop's clock, which must go on with it. Any other loop: nothing to do."""
    import asyncio

    try:
        announce = getattr(asyncio.get_running_loop(), "waiting_outside", None)
    except RuntimeError:  # not on asyncio (trio): its MockClock is the test's to set
        announce = None
    return nullcontext(_UNANNOUNCED) if announce is None else announce(paced)


def _wall_now() -> datetime:
    return datetime.now(UTC)


def _unstarted() -> float:
    raise RuntimeError("the clock starts with its runtime")


def checked_timeout(timeout: float | None, what: str) -> float | None:
    """``timeout`` as ``what`` (``ctx.request``, ``rt.ask``) bounds its wait with it: None,
    or a number of seconds (0 or less: due at once; infinity: no bound). Anything else is the
    caller's mistake, told by name before anything is sent or registered."""
    if timeout is None:
        return None
    number = seconds(timeout)
    if number is None:
        raise InvalidArgumentError(
            f"{what}: the timeout must be a number of seconds or None, not {spelt(timeout)}"
        )
    return number


def seconds(value: object) -> float | None:
    """``value`` as a float number of seconds (infinity as it is), or None when it is none: a
    bool, what is not an int or a float (a string, a Decimal), NaN, or an integer no float
    holds (past 1.8e308, where ``float`` and ``math`` raise OverflowError). Where a timeout or
    a delay is given, it is read here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return None if math.isnan(number) else number


# ASCII digits only: "٣s" is 3 seconds to Python's float(), not to a reader of the file.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.ASCII)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def duration(text: str) -> float | None:
    """``text`` as seconds, the way a pipeline file and the command line write a duration:
    ``5``, ``2.5``, ``200ms``, ``5s``, ``2m``, ``1h``, ``2d``; None when it is none of these."""
    match = _DURATION.match(text)
    return None if match is None else float(match.group(1)) * _UNITS[match.group(2)]


def spelt(value: object) -> str:
    """``value`` as an error quotes a refused timeout or delay: its repr, cut to 40 characters;
    an integer no float holds is said to be one (its repr may be thousands of digits, or more
    than Python converts)."""
    if isinstance(value, int) and not isinstance(value, bool) and seconds(value) is None:
        return "an integer too large for a float"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
