"""The analyzer and the three branches it fans out to."""

from __future__ import annotations

import math
from collections import defaultdict

from genie import BaseAgent, Context, Message, Risk, handler

from .models import (
    AnalysisResult,
    Anomalies,
    Anomaly,
    CategoryTotal,
    EnrichedTransactions,
    ForecastResult,
    Recommendation,
    Recommendations,
)

__all__ = ["Analyzer", "AnomalyDetector", "Forecaster", "Recommender", "analyze"]


def analyze(payload: EnrichedTransactions) -> AnalysisResult:
    """Totals, spend by category (debits only, largest first) and the top three categories."""
    txns = payload.transactions
    income = sum(t.amount_cents for t in txns if t.amount_cents > 0)
    expense = -sum(t.amount_cents for t in txns if t.amount_cents < 0)
    totals: dict[str, list[int]] = {}
    for t in txns:
        if t.amount_cents < 0:
            entry = totals.setdefault(t.category, [0, 0])
            entry[0] -= t.amount_cents
            entry[1] += 1
    # Stable sort: ties keep first-seen order.
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])
    by_category = tuple(CategoryTotal(category=c, amount_cents=a, count=n) for c, (a, n) in ranked)
    return AnalysisResult(
        total_income_cents=income,
        total_expense_cents=expense,
        net_cents=income - expense,
        currency=txns[0].currency if txns else "",
        by_category=by_category,
        top_overspend=tuple(c.category for c in by_category[:3]),
        transactions=txns,
    )


class Analyzer(BaseAgent):
    """Aggregates enriched transactions into one analysis result (routes fan it out)."""

    capabilities = ("analyze_transactions",)
    produces = (AnalysisResult,)

    @handler
    async def on_enriched(self, payload: EnrichedTransactions, ctx: Context) -> Message:
        return ctx.emit(analyze(payload))


class Forecaster(BaseAgent):
    """Projects the period's net: one, three and six months."""

    capabilities = ("forecast_cashflow",)
    produces = (ForecastResult,)

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        net = payload.net_cents
        return ctx.emit(
            ForecastResult(
                currency=payload.currency,
                monthly_net_cents=net,
                horizon_1m_cents=net,
                horizon_3m_cents=3 * net,
                horizon_6m_cents=6 * net,
            )
        )


class AnomalyDetector(BaseAgent):
    """Flags debits whose z-score (population sigma, per category) reaches ``threshold``.

    A category needs at least two debits and a non-zero sigma; with population sigma a
    category needs five debits before any z can reach 2.0.
    """

    capabilities = ("detect_anomalies",)
    produces = (Anomalies,)

    def __init__(self, id: str, *, threshold: float = 2.0) -> None:
        super().__init__(id)
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.threshold = threshold

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        return ctx.emit(Anomalies(anomalies=self.detect(payload)))

    def detect(self, payload: AnalysisResult) -> tuple[Anomaly, ...] | None:
        txns = payload.transactions
        if len(txns) < 2:
            return None
        debits: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for t in txns:
            if t.amount_cents < 0:
                debits[t.category].append((t.transaction_id, -t.amount_cents))
        found = []
        for category, items in debits.items():
            if len(items) < 2:
                continue
            amounts = [a for _, a in items]
            mean = sum(amounts) / len(amounts)
            sigma = math.sqrt(sum((a - mean) ** 2 for a in amounts) / len(amounts))
            if sigma == 0:
                continue
            for txn_id, amount in items:
                z = (amount - mean) / sigma
                if z >= self.threshold:
                    found.append(
                        Anomaly(
                            transaction_id=txn_id,
                            category=category,
                            amount_cents=amount,
                            # Rounded: a float's 15-16 digits in a row read as an account
                            # number to the PII policy, which then denied the whole branch.
                            z_score=round(z, 4),
                            reason="amount > mean + threshold*stddev for category",
                        )
                    )
        return tuple(found)


class Recommender(BaseAgent):
    """Budget suggestions: a warning first when spending exceeds income, then one per top
    category (impact a tenth of its spend)."""

    capabilities = ("recommend_actions",)
    risk = Risk.MEDIUM
    produces = (Recommendations,)

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        items = []
        net = payload.net_cents
        if net < 0:
            items.append(
                Recommendation(
                    title="Spending exceeds income this period",
                    impact_cents=-net,
                    confidence="high",
                    action="review_largest_categories",
                    rationale=f"Net cashflow is {net} {payload.currency} (negative).",
                    informational=True,
                )
            )
        items += [
            Recommendation(
                title=f'Consider trimming "{cat.category}"',
                category=cat.category,
                impact_cents=cat.amount_cents // 10,
                confidence="medium",
                action="set_budget",
                rationale=f'{cat.count} txns in "{cat.category}" this period.',
                informational=True,
            )
            for cat in payload.by_category[:3]
        ]
        return ctx.emit(Recommendations(currency=payload.currency, recommendations=tuple(items)))
