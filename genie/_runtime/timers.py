"""Timers (``ctx.schedule``): a pending timer is a delivery in flight, with its own outcome.

Scheduling counts one delivery (to the timer). It ends handled when the timer fires (its
message is then routed like any other) or when the agent withdraws it (``Timer.cancel()``), and
as a cancelled dead letter when its request is cancelled or the runtime closes first. A timer
whose agent's session a store keeps for the next start (a pending approval's deadline) is not
lost when the runtime closes: that start sets it again. It is counted ``kept``, and stays
pending and in flight here, with no outcome in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from .._agent.context import Timer
from .._base.clock import Clock
from .._errors import RuntimeClosedError
from .._message.envelope import Message
from .correlator import Correlator, _Correlation
from .ledger import Ledger

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["Timers"]


class Timers:
    def __init__(
        self, ledger: Ledger, correlator: Correlator, clock: Clock, fire: Callable[[Message], None]
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._correlator = correlator
        self._fire = fire
        self._tg: TaskGroup | None = None
        self.pending: dict[Timer, str] = {}  # timer -> its correlation id
        self.cut_short = 0  # pending timers the shutdown cancelled
        self.kept = 0  # pending timers the shutdown left to the store's next start
        # Whether a store keeps the session of an agent in a correlation for the next start,
        # which sets the agent's timers in it again (``Keeper.keeps_session``).
        self.keeps_session: Callable[[str, str], bool] | None = None
        # Every timer is a delivery: these tell the runtime's ``delivered`` and ``handled``
        # apart from the agents' deliveries and handler calls in a report.
        self.scheduled = 0
        self.handled = 0  # timers that fired or were withdrawn
        # Told each timer's message once its outcome is recorded (a transport that reports
        # outcomes to another process, genie/_nats.py).
        self.on_end: Callable[[Message], None] | None = None

    def start(self, tg: TaskGroup) -> None:
        self._tg = tg

    def stop(self) -> None:
        """The runtime closed: a context kept past it sets no timer."""
        self._tg = None

    def schedule(self, msg: Message, delay: float) -> Timer:
        if self._tg is None:
            raise RuntimeClosedError("ctx.schedule() refused: the runtime is closed")
        corr = self._correlator.in_flight_here(msg.correlation_id, "ctx.schedule()")
        self._ledger.opened(corr)
        self.scheduled += 1
        timer = Timer(lambda: self._withdrawn(timer, msg, corr))
        self.pending[timer] = corr.id
        self._tg.start_soon(self._wait, timer, msg, corr, delay)
        return timer

    def cancel(self, correlation_id: str) -> None:
        """The request was cancelled: its pending timers end as cancelled dead letters."""
        for timer, cid in list(self.pending.items()):
            if cid == correlation_id and timer._scope is not None:
                timer._scope.cancel()

    def _withdrawn(self, timer: Timer, msg: Message, corr: _Correlation) -> None:
        if self.pending.pop(timer, None) is not None:  # withdrawn by its agent: its outcome
            self.handled += 1
            self._ledger.closed(corr, msg)
            if self.on_end is not None:
                self.on_end(msg)

    async def _wait(self, timer: Timer, msg: Message, corr: _Correlation, delay: float) -> None:
        agent = msg.sender
        try:
            with anyio.CancelScope() as scope:
                timer._scope = scope
                if not timer.cancelled and not corr.cancelled:
                    await self._clock.sleep(delay)
        except BaseException:
            keeps = self.keeps_session
            if timer in self.pending and keeps is not None and keeps(agent, corr.id):
                self.kept += 1
            elif self.pending.pop(timer, None) is not None:
                self.cut_short += 1
                reason = "timer pending at shutdown"
                self._ledger.dead_letter(agent, msg, corr, "cancelled", reason, None, 0)
                if self.on_end is not None:
                    self.on_end(msg)
            raise
        if self.pending.pop(timer, None) is None:
            return  # withdrawn, and recorded then
        if corr.cancelled:
            reason = "timer of a cancelled request"
            self._ledger.dead_letter(agent, msg, corr, "cancelled", reason, None, 0)
        else:
            self._fire(msg)  # routed before the timer closes, so the request never looks idle
            self.handled += 1
            self._ledger.closed(corr, msg)
        if self.on_end is not None:
            self.on_end(msg)
