"""Daily token budget per principal, reserved before each call like the kill switch's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime

from ._killswitch import KillSwitch
from ._ledger import BudgetLedger
from ._provider import Provider, a_provider
from ._types import CallContext, Request, Response, StreamEvent

__all__ = ["DailyTokenBudget"]


def _today() -> date:
    return datetime.now(UTC).date()


class DailyTokenBudget:
    """At most ``tokens_per_day`` tokens per principal (the call context's) per UTC day.

    Each call reserves its worst case first, so a principal with too little left is refused
    with :class:`BudgetExceededError` (limit ``daily_tokens``, key ``<principal> on <date>``)
    before anything is sent. Pass one ``ledger`` to several wrappers (every provider of a
    fallback chain, every stack) so the limit is the principal's, not each provider's. When
    ``today()`` changes, the previous days' accounts are dropped.
    """

    def __init__(
        self,
        inner: Provider,
        tokens_per_day: int | None = None,
        *,
        ledger: BudgetLedger | None = None,
        today: Callable[[], date] = _today,
    ) -> None:
        if (tokens_per_day is None) == (ledger is None):
            raise ValueError("give tokens_per_day or a shared ledger, not both")
        self.ledger = ledger or BudgetLedger(max_tokens=tokens_per_day, name="daily")
        self.inner = a_provider(inner, "DailyTokenBudget(inner)")
        self._today = today
        self._day = today()
        self._switch = KillSwitch(inner, self.ledger, key=self._key)

    def _key(self, context: CallContext) -> str:
        return f"{context.principal} on {self._day.isoformat()}"

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            suffix = f" on {today.isoformat()}"
            for key in self.ledger.accounts():
                if not key.endswith(suffix):
                    self.ledger.forget(key)

    async def complete(self, request: Request) -> Response:
        self._roll()
        return await self._switch.complete(request)

    def stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        self._roll()
        return self._switch.stream(request)
