"""Specialists on a period's transactions that the Go analyzer never reached (subscriptions,
carbon), and the multi-statement merger."""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from datetime import timedelta

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import median
from .models import (
    AnalysisResult,
    BulkStatementRequest,
    CarbonFootprint,
    CategoryEmission,
    ConsolidatedCashflow,
    MonthFlow,
    Subscription,
    Subscriptions,
    Transaction,
)
from .statement import parse_statement

__all__ = ["BulkStatementAnalyzer", "CarbonEstimator", "SubscriptionDetector"]

MIN_MONTHS, MAX_DAY_SIGMA, AMOUNT_TOLERANCE, ZOMBIE_RISE = 3, 7.0, 0.05, 0.20


class SubscriptionDetector(BaseAgent):
    """Recurring debits per merchant: charged in 3+ distinct months, on days of the month with
    a population sigma of 7 or less, each charge within 5 % of the one before or a price rise.
    A subscription whose price rose 20 % or more since the first charge is a zombie."""

    capabilities = ("detect_subscriptions",)
    risk = Risk.LOW
    produces = (Subscriptions,)

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        groups: dict[str, list[Transaction]] = defaultdict(list)
        for t in payload.transactions:
            if t.amount_cents < 0:
                groups[t.merchant or t.description.strip().casefold()].append(t)
        found = []
        for merchant, charges in groups.items():
            charges.sort(key=lambda t: t.date)
            amounts = [-t.amount_cents for t in charges]
            days = [t.instant.day for t in charges]
            steady = all(b >= a * (1 - AMOUNT_TOLERANCE) for a, b in itertools.pairwise(amounts))
            months = len({t.date[:7] for t in charges})
            if months < MIN_MONTHS or statistics.pstdev(days) > MAX_DAY_SIGMA or not steady:
                continue
            rise = amounts[-1] / amounts[0] - 1
            found.append(
                Subscription(
                    merchant=merchant,
                    months=months,
                    first_cents=amounts[0],
                    latest_cents=amounts[-1],
                    day_of_month=round(median(days)),
                    price_change_pct=round(100 * rise, 2),
                    zombie=rise >= ZOMBIE_RISE,
                )
            )
        total = sum(s.latest_cents for s in found)
        return ctx.emit(Subscriptions(subscriptions=tuple(found), monthly_total_cents=total))


# kg CO2e per 1,000 units of currency spent, by the category's family (the part before ':').
EMISSION_FACTORS = {
    "transport": 2.5,
    "utilities": 3.0,
    "food": 1.2,
    "shopping": 0.9,
    "housing": 0.4,
    "entertainment": 0.3,
}
DEFAULT_FACTOR = 0.6
TIPS = {
    "transport": "Pool rides or take the metro for regular trips.",
    "utilities": "Shift heavy appliance use off-peak and check for a rooftop-solar scheme.",
    "food": "Order delivery less often; cooking in batches cuts packaging and trips.",
    "shopping": "Bundle online orders into fewer deliveries.",
    "housing": "Service air conditioners and set them at 24 C or above.",
    "entertainment": "Download instead of streaming the same titles again.",
}


class CarbonEstimator(BaseAgent):
    """Estimates the footprint of a period's spending with category emission factors (kg CO2e
    per 1,000 spent), by category and month, the month-over-month trend, and a reduction tip
    for each of the two largest emitting families."""

    capabilities = ("carbon_footprint",)
    risk = Risk.LOW
    produces = (CarbonFootprint,)

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        by_cat: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        by_month: dict[str, float] = defaultdict(float)
        for t in payload.transactions:
            if t.amount_cents >= 0:
                continue
            family = t.category.split(":", 1)[0].casefold()
            kg = -t.amount_cents / 100 * EMISSION_FACTORS.get(family, DEFAULT_FACTOR) / 1000
            by_cat[t.category][0] -= t.amount_cents
            by_cat[t.category][1] += kg
            by_month[t.date[:7]] += kg
        rows = sorted(
            (
                CategoryEmission(category=c, spend_cents=int(s), kg_co2e=round(kg, 3))
                for c, (s, kg) in by_cat.items()
            ),
            key=lambda r: -r.kg_co2e,
        )
        months = sorted(by_month)
        trend = None
        if len(months) >= 2 and by_month[months[-2]] > 0:
            trend = round(100 * (by_month[months[-1]] / by_month[months[-2]] - 1), 2)
        families = dict.fromkeys(r.category.split(":", 1)[0].casefold() for r in rows)
        tips = tuple(TIPS[f] for f in families if f in TIPS)[:2]
        out = CarbonFootprint(
            total_kg_co2e=round(sum(r.kg_co2e for r in rows), 3),
            by_category=tuple(rows),
            by_month={m: round(by_month[m], 3) for m in months},
            trend_pct=trend,
            tips=tips,
        )
        return ctx.emit(out)


DUPLICATE_WINDOW = timedelta(days=1)


class BulkStatementAnalyzer(BaseAgent):
    """Merges several statement CSVs (the ingestor's format) into one cash flow. A transaction
    that another statement already holds (same amount, same description once lower-cased and
    whitespace-collapsed, dates within a day) is counted once. A transfer between two of the
    statements (a debit in one and the same credit in another, same description, dates
    within a day, as Go matched them) is neither income nor expense: both legs go. A
    statement that does not parse fails the request, naming it."""

    capabilities = ("bulk_statements",)
    risk = Risk.MEDIUM
    produces = (ConsolidatedCashflow,)

    @handler
    async def on_request(self, payload: BulkStatementRequest, ctx: Context) -> Message:
        kept: list[tuple[int, Transaction]] = []
        duplicates = 0
        for n, text in enumerate(payload.statements, start=1):
            try:
                txns = parse_statement(text)
            except ValueError as exc:
                raise ValueError(f"statement {n}: {exc}") from None
            for t in txns:
                if any(src != n and _same(t, k) for src, k in kept):
                    duplicates += 1
                else:
                    kept.append((n, t))
        transfers = 0
        for i, (src, t) in enumerate(kept):
            other = next(
                (j for j, (s, k) in enumerate(kept) if s not in (src, 0) and _legs(t, k)), None
            )
            if src and other is not None:  # 0 marks a leg already matched
                kept[i], kept[other] = (0, t), (0, kept[other][1])
                transfers += 1
        kept = [(src, t) for src, t in kept if src]
        months: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for _, t in kept:
            months[t.date[:7]][0 if t.amount_cents > 0 else 1] += abs(t.amount_cents)
        income = sum(v[0] for v in months.values())
        expense = sum(v[1] for v in months.values())
        out = ConsolidatedCashflow(
            statements=len(payload.statements),
            transactions=len(kept),
            duplicates_removed=duplicates,
            transfers_removed=transfers,
            total_income_cents=income,
            total_expense_cents=expense,
            net_cents=income - expense,
            by_month=tuple(
                MonthFlow(month=m, income_cents=i, expense_cents=e)
                for m, (i, e) in sorted(months.items())
            ),
        )
        return ctx.emit(out)


def _same(a: Transaction, b: Transaction) -> bool:
    return a.amount_cents == b.amount_cents and _alike(a, b)


def _legs(a: Transaction, b: Transaction) -> bool:
    """The two legs of one transfer: the same amount out of one account and into another."""
    return a.amount_cents == -b.amount_cents != 0 and _alike(a, b)


def _alike(a: Transaction, b: Transaction) -> bool:
    return (
        " ".join(a.description.casefold().split()) == " ".join(b.description.casefold().split())
        and abs(a.instant - b.instant) <= DUPLICATE_WINDOW
    )
