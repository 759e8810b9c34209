"""The budget ledger: reserve a call's worst case before it is sent, settle what it used."""

from __future__ import annotations

from dataclasses import dataclass

from .._base.resilience import at_least
from ._errors import BudgetExceededError

__all__ = ["BudgetLedger", "LedgerStatistics", "Remaining", "Reservation"]


@dataclass(frozen=True, slots=True)
class Remaining:
    """What a key may still spend; None where there is no limit."""

    tokens: int | None
    cost: float | None


@dataclass(frozen=True, slots=True)
class LedgerStatistics:
    keys: int
    open_reservations: int
    tokens_used: int
    cost_used: float
    refusals: int
    usage_violations: int = 0
    """Answers whose reported usage could not be true, charged their reservation instead."""


class _Account:
    __slots__ = ("cost_reserved", "cost_used", "open", "tokens_reserved", "tokens_used")

    def __init__(self) -> None:
        self.tokens_used = 0
        self.tokens_reserved = 0
        self.cost_used = 0.0
        self.cost_reserved = 0.0
        self.open = 0


class BudgetLedger:
    """Token and cost budgets per key (a correlation id, a principal and day).

    ``reserve`` holds a call's worst case against the key's remaining budget, or raises
    :class:`BudgetExceededError` naming the limit (``<name>_tokens`` or ``<name>_cost``) when
    it does not fit, so the call is never sent. Reservations held by calls in flight count
    against the budget, so concurrent calls cannot overrun it together. ``settle`` replaces a
    reservation by what the call used; a call that used more than it reserved is charged in
    full (later calls are refused). The ledger is plain bookkeeping with no awaits: safe on
    one event loop without a lock.
    """

    def __init__(
        self, *, max_tokens: int | None = None, max_cost: float | None = None, name: str = "budget"
    ) -> None:
        # NaN is refused too: no count is above it, so it refused nothing.
        if not all(b is None or at_least(b, 0) for b in (max_tokens, max_cost)):
            raise ValueError(f"budgets must be numbers of at least 0, not {max_tokens}, {max_cost}")
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.name = name
        self._accounts: dict[str, _Account] = {}
        self._refusals = 0
        self._violations = 0

    def remaining(self, key: str) -> Remaining:
        a = self._accounts.get(key) or _Account()
        return Remaining(
            None
            if self.max_tokens is None
            else max(0, self.max_tokens - a.tokens_used - a.tokens_reserved),
            None
            if self.max_cost is None
            else max(0.0, self.max_cost - a.cost_used - a.cost_reserved),
        )

    def reserve(
        self,
        key: str,
        *,
        tokens: int,
        cost: float = 0.0,
        provider: str = "",
        correlation_id: str | None = None,
    ) -> Reservation:
        account = self._accounts.get(key)
        if account is None:
            account = self._accounts[key] = _Account()
        refused = self._refusal(key, account, tokens, cost, provider, correlation_id)
        if refused is not None:
            if not account.open and not (account.tokens_used or account.cost_used):
                del self._accounts[key]  # a refusal opens no account
            raise refused
        account.tokens_reserved += tokens
        account.cost_reserved += cost
        account.open += 1
        return Reservation(self, key, tokens, cost)

    def _refusal(
        self,
        key: str,
        account: _Account,
        tokens: int,
        cost: float,
        provider: str,
        correlation_id: str | None,
        held: tuple[int, float] = (0, 0.0),
    ) -> BudgetExceededError | None:
        """The refusal of ``tokens`` and ``cost`` beside what ``account`` used and holds
        (less ``held``, the asker's own reservation), or None when they fit."""
        for limit, asked, most, spent in (
            ("tokens", tokens, self.max_tokens, account.tokens_used + account.tokens_reserved),
            ("cost", cost, self.max_cost, account.cost_used + account.cost_reserved),
        ):
            spent -= held[0] if limit == "tokens" else held[1]
            if most is not None and asked > most - spent:
                self._refusals += 1
                return BudgetExceededError(
                    limit=f"{self.name}_{limit}",
                    key=key,
                    requested=asked,
                    remaining=max(0, most - spent),
                    provider=provider,
                    correlation_id=correlation_id,
                )
        return None

    def _spend(
        self, r: Reservation, tokens: int, cost: float, provider: str, correlation_id: str | None
    ) -> None:
        account = self._accounts.get(r.key)
        if account is None:  # forgotten while the call was in flight
            return
        account.tokens_used += tokens
        account.cost_used += cost
        refused = self._refusal(
            r.key, account, r.tokens, r.cost, provider, correlation_id, held=(r.tokens, r.cost)
        )
        if refused is not None:
            raise refused

    def _settle(self, r: Reservation, tokens: int, cost: float) -> None:
        account = self._accounts.get(r.key)
        if account is None:  # forgotten while the call was in flight
            return
        account.tokens_reserved -= r.tokens
        account.cost_reserved -= r.cost
        account.open -= 1
        account.tokens_used += tokens
        account.cost_used += cost

    def accounts(self) -> list[str]:
        """The keys with an account (those that reserved since they were last forgotten)."""
        return list(self._accounts)

    def forget(self, key: str) -> None:
        """Drop a finished key's account (a correlation that ended), so the ledger stays
        bounded. Its open reservations, if any, settle into nothing."""
        self._accounts.pop(key, None)

    def statistics(self) -> LedgerStatistics:
        accounts = self._accounts.values()
        return LedgerStatistics(
            keys=len(self._accounts),
            open_reservations=sum(a.open for a in accounts),
            tokens_used=sum(a.tokens_used for a in accounts),
            cost_used=sum(a.cost_used for a in accounts),
            refusals=self._refusals,
            usage_violations=self._violations,
        )


class Reservation:
    """A worst case held in a ledger until :meth:`settle` (or :meth:`release`, for a call
    that was not charged). Settling twice is an error: a cost must not be counted twice.
    Once settled, ``used_tokens`` and ``used_cost`` are what it was charged."""

    __slots__ = (
        "_ledger",
        "_spent",
        "cost",
        "key",
        "settled",
        "tokens",
        "used_cost",
        "used_tokens",
    )

    def __init__(self, ledger: BudgetLedger, key: str, tokens: int, cost: float) -> None:
        self._ledger = ledger
        self.key = key
        self.tokens = tokens
        self.cost = cost
        self.settled = False
        self.used_tokens = 0
        self.used_cost = 0.0
        self._spent = (0, 0.0)

    def spend(
        self,
        *,
        tokens: int,
        cost: float = 0.0,
        provider: str = "",
        correlation_id: str | None = None,
    ) -> None:
        """Charges now what an attempt of the call spent before its next one (an attempt its
        provider may have billed), and raises :class:`BudgetExceededError` when the call's
        worst case, still held for the next attempt, no longer fits beside it: the next attempt
        is then not sent. What was spent is part of ``used_tokens`` and ``used_cost`` once
        the reservation settles, a release included."""
        self._spent = (self._spent[0] + tokens, self._spent[1] + cost)
        self._ledger._spend(self, tokens, cost, provider, correlation_id)

    def settle(self, *, tokens: int, cost: float = 0.0) -> None:
        if self.settled:
            raise RuntimeError(f"the reservation for {self.key!r} is already settled")
        self.settled = True
        self.used_tokens, self.used_cost = tokens + self._spent[0], cost + self._spent[1]
        self._ledger._settle(self, tokens, cost)

    def release(self) -> None:
        self.settle(tokens=0, cost=0.0)

    def violated(self) -> None:
        """Charges the whole reservation for a call whose reported usage was not believed,
        and counts it in the ledger's ``usage_violations``."""
        self.settle(tokens=self.tokens, cost=self.cost)
        self._ledger._violations += 1
