"""Daily token budget per principal, reserved before each call like the kill switch's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime

from ._killswitch import KillSwitch
from ._ledger import BudgetLedger
from ._provider import Provider
from ._types import Request, Response, StreamEvent

__all__ = ["DailyTokenBudget"]


def _today() -> date:
    return datetime.now(UTC).date()


class DailyTokenBudget:
    """At most ``tokens_per_day`` tokens per principal (the call context's) per UTC day.

    Each call reserves its worst case first, so a principal with too little left is refused
    with :class:`BudgetExceededError` (limit ``daily_tokens``) before anything is sent; the
    count restarts when ``today()`` changes.
    """

    def __init__(
        self, inner: Provider, tokens_per_day: int, *, today: Callable[[], date] = _today
    ) -> None:
        self.inner = inner
        self.tokens_per_day = tokens_per_day
        self._today = today
        self._day = today()
        self._switch = self._fresh()

    def _fresh(self) -> KillSwitch:
        ledger = BudgetLedger(max_tokens=self.tokens_per_day, name="daily")
        return KillSwitch(self.inner, ledger, key=lambda ctx: ctx.principal)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    @property
    def ledger(self) -> BudgetLedger:
        self._roll()
        return self._switch.ledger

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            # Yesterday's calls still in flight settle into yesterday's ledger, which is dropped.
            self._day = today
            self._switch = self._fresh()

    async def complete(self, request: Request) -> Response:
        self._roll()
        return await self._switch.complete(request)

    def stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        self._roll()
        return self._switch.stream(request)
