"""Virtual time: an asyncio event loop whose clock jumps to the next timer when nothing is ready.

Why asyncio and not trio's ``MockClock``: a reproducible run needs a scheduler whose order
is a function of the program. asyncio runs ready callbacks in the order they were scheduled
(documented for ``call_soon``), where trio reverses each batch of ready tasks at random and
offers no public switch to stop it (its ``_r`` stream is private). Only public asyncio API is
used here: ``SelectorEventLoop(selector)``, a ``selectors`` implementation, and the loop's
``time`` and ``call_at`` methods.

Ties are made impossible rather than broken: asyncio leaves the order of callbacks scheduled
for the exact same time undefined, so ``call_at`` never schedules two timers for one instant.
A timer asked for an instant already taken is due one float step later (``math.nextafter``),
so timers asked for the same instant fire in the order they were set. A step is about 1e-16
of the time, far below the microsecond the report shows.

Work done outside the loop (a handler's thread, a child process, a tool's server, a model
over HTTP) is invisible to a selector that finds nothing ready: it would jump to the next
timer, a handler's deadline say, while the thread is still working. So the program announces
it (``waiting_outside``, which genie's runtime does through ``genie._base.clock``) and, while
any is announced, virtual time stands still: the loop waits for the work in real time. Each
piece of work gets ``OUTSIDE_GRACE`` seconds of real time so; past that it is taken as hung,
and time goes on without it, so that its deadline still fires. A thread that waits on the
loop in turn (a ``ctx.sleep``) pauses its piece meanwhile (``Outside.paused``). Work that is
polled from the loop (a tool server's stop, checked every few milliseconds of the clock) is
announced ``paced``: the clock goes on with it, at the pace of real time.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import selectors
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import Context
from typing import TypeVarTuple, Unpack

__all__ = ["OUTSIDE_GRACE", "Outside", "VirtualTimeLoop"]

_Ts = TypeVarTuple("_Ts")

# Real seconds a piece of outside work may take with virtual time standing still: far above
# a thread's or a tool call's milliseconds, or a tool server's start, and what a hung one costs.
OUTSIDE_GRACE = 5.0


class Outside:
    """One piece of work outside the loop that the program waits for, announced to the loop
    since ``since`` (real time); paused while its thread waits on the loop in turn."""

    __slots__ = ("_loop", "ended", "paced", "since")

    def __init__(self, loop: VirtualTimeLoop, paced: bool) -> None:
        self._loop = loop
        self.since = time.monotonic()
        self.ended = False
        self.paced = paced

    @contextmanager
    def paused(self) -> Iterator[None]:
        """While in this block the work waits on the loop (a thread's ``ctx.sleep``): time
        may go on; its grace starts again when it resumes."""
        pending = self._loop.outside
        pending.discard(self)
        try:
            yield
        finally:
            self.since = time.monotonic()
            if not self.ended:  # its wait ended meanwhile (a deadline gave the thread up)
                pending.add(self)


class _JumpingSelector(selectors.DefaultSelector):
    """Where the loop would block until its next timer, virtual time jumps to that timer.

    The loop blocks only when no callback is ready; I/O that is already ready (a thread's
    wake-up) is served first, without a jump. While work outside the loop is announced and
    within its grace, the selector waits for it in real time instead. With no timer at all
    (``timeout is None``), or only timers never due (at infinity: ``anyio.sleep_forever``), it
    really blocks: only a thread or a signal can wake a program then, on any clock.
    """

    def __init__(self, jump: Callable[[], bool], outside: set[Outside]) -> None:
        super().__init__()
        self._jump = jump
        self._outside = outside

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            return super().select(None)
        ready = super().select(0)
        if ready or timeout <= 0:
            return ready
        if self._outside:
            newest = max((w.since for w in self._outside if not w.paced), default=-math.inf)
            left = newest + OUTSIDE_GRACE - time.monotonic()
            if left > 0:
                return super().select(left)  # the clock stands still meanwhile
            if any(w.paced for w in self._outside):  # the next timer, in real time
                ready = super().select(timeout)
                if ready:
                    return ready
        if not self._jump():  # only timers that are never due: nothing but a thread wakes it
            return super().select(None)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time starting at 0, for ``anyio.run(..., backend_options=
    {"loop_factory": VirtualTimeLoop})``. Timers never tie (see the module docstring)."""

    def __init__(self) -> None:
        self.outside: set[Outside] = set()  # the work outside the loop the program waits for
        super().__init__(_JumpingSelector(self._jump, self.outside))
        self._now = 0.0
        # Every timer set and not yet passed, by instant: the jump lands exactly on the next
        # one (adding the loop's ``timeout`` would drift by rounding), and an instant held by
        # a timer that is not cancelled is not given to a second one.
        self._timers: list[tuple[float, asyncio.TimerHandle]] = []
        self._taken: dict[float, asyncio.TimerHandle] = {}
        # Most timers are cancelled long before their instant (a session timeout, a handler
        # deadline): past this many, the cancelled ones are dropped, as asyncio does with its own.
        self._purge_at = 100

    def time(self) -> float:
        return self._now

    @contextmanager
    def waiting_outside(self, paced: bool = False) -> Iterator[Outside]:
        """While in this block the program waits for work outside the loop (see the module
        docstring): the clock stands still, for at most ``OUTSIDE_GRACE`` of real time; or,
        ``paced``, it goes on at the pace of real time."""
        work = Outside(self, paced)
        self.outside.add(work)
        try:
            yield work
        finally:
            work.ended = True
            self.outside.discard(work)

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[_Ts]], object],
        *args: *_Ts,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        when = max(when, self._now)  # every past instant is "due now": one instant, untied
        if when == math.inf:
            # Never due (``anyio.sleep_forever``, ``ctx.sleep(math.inf)``): no tie to break,
            # and none could be (the step after infinity is infinity), and no jump lands on it.
            return super().call_at(when, callback, *args, context=context)
        while (held := self._taken.get(when)) is not None and not held.cancelled():
            when = math.nextafter(when, math.inf)
        handle = super().call_at(when, callback, *args, context=context)
        self._taken[when] = handle
        heapq.heappush(self._timers, (when, handle))
        if len(self._timers) > self._purge_at:
            self._purge()
        return handle

    def _purge(self) -> None:
        self._timers = [(w, h) for w, h in self._timers if not h.cancelled()]
        heapq.heapify(self._timers)
        self._taken = dict(self._timers)
        self._purge_at = max(100, 2 * len(self._timers))

    def _jump(self) -> bool:
        """Moves the clock to the next timer; False when there is none that will come due."""
        timers = self._timers
        while timers and (timers[0][0] <= self._now or timers[0][1].cancelled()):
            when, handle = heapq.heappop(timers)
            if self._taken.get(when) is handle:
                del self._taken[when]
        # The loop waits for its earliest live timer, which is the head here: every timer
        # it has came through call_at (call_later does too), and those not kept here are
        # at infinity.
        if not timers:
            return False
        self._now = timers[0][0]
        return True
