"""A correlation's model budgets on counters every process of a deployment shares
(docs/llm.md, "Across processes").

Under NATS a request's handlers run in several workers, each with its own ledger: alone, each
could spend the whole budget. So each call's worst case is also added to the correlation's
shared counter of each limit (tokens; cost in ``COST_UNIT``s) before it is sent, and its
settlement after. The counters are atomic on the broker and deduplicated by a key naming the
delivery and the call's place in its handler, so a delivery run again after a crash is
charged once. A refusal adds ``TRIP``: the counter stays past any budget, so every process
refuses every later call of the correlation, and the refusal that took it from below one
``TRIP`` to below two is the first of all, the only one that fires the limit.
"""

from __future__ import annotations

from typing import Protocol

import anyio

from ._errors import BudgetExceededError
from ._ledger import BudgetLedger, Reservation

__all__ = ["COST_UNIT", "SharedBudget", "SharedCounters"]

COST_UNIT = 1e-9  # a cost is counted in whole billionths of the price table's currency
# Far more than any budget plus what settlements may add (at most USAGE_SLACK times what was
# reserved), so a tripped counter never comes back below it.
TRIP = 1 << 62
SETTLE_WAIT = 5.0  # seconds a settlement may wait for the counters (then it is not counted)


class SharedCounters(Protocol):
    """Counts every process of a deployment shares (``genie.nats``'s counter streams)."""

    async def charge(self, correlation_id: str, key: str, n: int, /, what: str) -> int:
        """Add ``n`` (negative to take away) to the correlation's count of ``what``
        (``tokens``, or ``cost`` in ``COST_UNIT``s) and return its total just after. A second
        charge with the same ``key`` adds nothing and returns what the first did (a delivery
        run again after a crash is charged once)."""
        ...


def _whole(what: str, tokens: int, cost: float) -> int:
    """A count as the counter of ``what`` keeps it."""
    return tokens if what == "tokens" else round(cost / COST_UNIT)


class SharedBudget:
    """The limits of ``ledger`` (its ``max_tokens`` and ``max_cost``) held on ``counters``."""

    def __init__(self, counters: SharedCounters, ledger: BudgetLedger) -> None:
        self.counters = counters
        self.name = ledger.name
        # Each limit set: what its counter counts, and the budget in whole units of it.
        self.limits: list[tuple[str, int]] = []
        if ledger.max_tokens is not None:
            self.limits.append(("tokens", ledger.max_tokens))
        if ledger.max_cost is not None:
            self.limits.append(("cost", _whole("cost", 0, ledger.max_cost)))

    async def hold(
        self, cid: str, key: str, reservation: Reservation, provider: str
    ) -> tuple[BudgetExceededError, bool] | None:
        """Add ``reservation`` (held in this process already) to the correlation's counters:
        None if every process together stays within the budget, else the refusal and whether
        it is the first of all (tripped here; False when another process's tripped it).
        Cut short (a cancel, a failure), what it charged is taken back before it raises."""
        charged: list[tuple[str, int]] = []
        try:
            return await self._hold(cid, key, reservation, provider, charged)
        except BaseException:
            await self._take_back(cid, key, charged)
            raise

    async def _hold(
        self,
        cid: str,
        key: str,
        reservation: Reservation,
        provider: str,
        charged: list[tuple[str, int]],
    ) -> tuple[BudgetExceededError, bool] | None:
        for what, budget in self.limits:
            limit = f"{self.name}_{what}"
            unit = 1.0 if what == "tokens" else COST_UNIT
            asked = _whole(what, reservation.tokens, reservation.cost)
            charged.append((what, asked))  # sent: it may count though no answer comes
            total = await self.counters.charge(cid, f"{key}/{what}", asked, what=what)
            if total >= TRIP:  # another process's refusal tripped it: the limit fired there
                message = (
                    f"llm call refused: the {limit} limit of correlation {cid} fired already "
                    "in another process; no further model call of it is sent"
                )
                return BudgetExceededError(
                    limit=limit,
                    key=cid,
                    requested=asked * unit,
                    remaining=0,
                    provider=provider,
                    correlation_id=cid,
                    message=message,
                ), False
            if total > budget:
                refused = BudgetExceededError(
                    limit=limit,
                    key=cid,
                    requested=asked * unit,
                    remaining=max(0, budget - (total - asked)) * unit,
                    provider=provider,
                    correlation_id=cid,
                )
                return refused, await self.trip(cid, limit, key)
        return None

    async def _take_back(self, cid: str, key: str, charged: list[tuple[str, int]]) -> None:
        """Take back the charges of a hold cut short. Whether one reached the counters is not
        known, so each is made again (its key counts it once either way), then taken away."""
        # Shielded and bounded as a settlement: with the broker away the worst case stays
        # counted (the budget errs towards stopping early).
        with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_WAIT):
            for what, asked in charged:
                await self.counters.charge(cid, f"{key}/{what}", asked, what=what)
                await self.counters.charge(cid, f"{key}/{what}/used", -asked, what=what)

    async def trip(self, cid: str, limit: str, key: str) -> bool:
        """Trip the correlation's counter of ``limit`` (refused); whether this was first."""
        what = limit.removeprefix(f"{self.name}_")
        # Shielded: a refusal cut short by a cancel still trips the counter and learns
        # whether it fired the limit, so the firing is recorded, here or nowhere. Bounded:
        # with the broker away it counts as the first: the limit recorded fired twice
        # rather than never.
        with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_WAIT):
            tripped = await self.counters.charge(cid, f"{key}/{what}/tripped", TRIP, what=what)
            return tripped < 2 * TRIP
        return True

    async def settle(self, cid: str, key: str, reservation: Reservation) -> None:
        """The settled ``reservation`` (held under ``key``) counted as what it used."""
        # Shielded: a call cut short by a cancel is settled too. Bounded: with the broker away
        # the worst case stays counted (the budget errs towards stopping early).
        with anyio.CancelScope(shield=True), anyio.move_on_after(SETTLE_WAIT):
            for what, _ in self.limits:
                used = _whole(what, reservation.used_tokens, reservation.used_cost)
                delta = used - _whole(what, reservation.tokens, reservation.cost)
                if delta:
                    await self.counters.charge(cid, f"{key}/{what}/used", delta, what=what)
