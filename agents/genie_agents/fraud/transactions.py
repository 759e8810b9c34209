"""Detectors that read a period's transactions (an ``analysis_result``): fraud, money mules
and AML. In Go the analyzer never addressed them; here a route reaches them."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import timedelta

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import haversine_km
from ..finance.models import AnalysisResult, Transaction
from .models import AmlReport, AmlReports, FraudSignals, Level, MuleSignals, Signal

__all__ = ["AmlMonitor", "FraudDetector", "MuleDetector"]

ZERO = timedelta(0)
BURST_COUNT, BURST_WINDOW = 5, timedelta(minutes=5)
TRAVEL_KMH = 900.0
AFTER_HOURS_END = 5  # 00:00-04:59
AFTER_HOURS_PAISE = 5_000_000  # Rs 50,000
HIGH_RISK_MERCHANTS = ("crypto", "casino", "betting", "gambling", "lottery", "forex")

PASS_THROUGH_SHARE, PASS_THROUGH_WINDOW = 0.90, timedelta(hours=24)
FAN_COUNT = 5
VELOCITY_COUNT, VELOCITY_WINDOW = 10, timedelta(hours=1)

LAKH = 100_000 * 100  # paise
CTR_PAISE = 10 * LAKH  # cash at or above Rs 10 lakh: a cash transaction report
STRUCTURING_SHARE, STRUCTURING_COUNT = 0.80, 3
STRUCTURING_WINDOW = timedelta(days=7)
LTR_WIRE_PAISE = 50 * LAKH  # wires at or above Rs 50 lakh
ROUND_TRIP_WINDOW, ROUND_TRIP_TOLERANCE = timedelta(days=30), 0.05
HIGH_RISK_COUNTRIES = ("IR", "KP", "MM")  # FATF "call for action"


def _timed(txns: Iterable[Transaction]) -> list[Transaction]:
    """Transactions with a known time of day, in time order."""
    return sorted((t for t in txns if t.time), key=lambda t: t.instant)


def _windows(
    txns: Sequence[Transaction], width: timedelta, at_least: int
) -> list[list[Transaction]]:
    """Maximal runs of at least ``at_least`` transactions within ``width`` of the run's first;
    runs do not overlap."""
    found, i = [], 0
    while i < len(txns):
        j = i
        while j + 1 < len(txns) and txns[j + 1].instant - txns[i].instant <= width:
            j += 1
        if j - i + 1 >= at_least:
            found.append(list(txns[i : j + 1]))
            i = j + 1
        else:
            i += 1
    return found


def _ids(txns: Iterable[Transaction]) -> tuple[str, ...]:
    return tuple(t.transaction_id for t in txns)


def _rupees(paise: int) -> str:
    return f"Rs {abs(paise) / 100:,.2f}"


class FraudDetector(BaseAgent):
    """Card and account fraud signals: a burst of 5+ debits within 5 minutes, travel between
    two located transactions at 900 km/h or more, a debit of Rs 50,000+ between 00:00 and
    05:00, a merchant on the high-risk list. Severity: high for impossible travel or three
    kinds of signal, medium for two, low otherwise."""

    capabilities = ("detect_fraud",)
    risk = Risk.MEDIUM
    produces = (FraudSignals,)

    def __init__(self, id: str, *, high_risk_merchants: list[str] | None = None) -> None:
        super().__init__(id)
        self.high_risk_merchants = tuple(high_risk_merchants or HIGH_RISK_MERCHANTS)

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        return ctx.emit(self.assess(payload.transactions))

    def assess(self, txns: Sequence[Transaction]) -> FraudSignals:
        timed = _timed(txns)
        debits = [t for t in timed if t.amount_cents < 0]
        signals = [
            Signal(kind="burst", transaction_ids=_ids(run), detail=f"{len(run)} debits in 5 min")
            for run in _windows(debits, BURST_WINDOW, BURST_COUNT)
        ]
        located = [t for t in timed if t.latitude is not None and t.longitude is not None]
        for a, b in itertools.pairwise(located):
            km = haversine_km(a.latitude or 0, a.longitude or 0, b.latitude or 0, b.longitude or 0)
            hours = (b.instant - a.instant).total_seconds() / 3600
            if km > 0 and (hours == 0 or km / hours >= TRAVEL_KMH):
                speed = "at once" if hours == 0 else f"{km / hours:,.0f} km/h"
                detail = f"{km:,.0f} km apart, {speed}"
                signals.append(
                    Signal(kind="impossible_travel", transaction_ids=_ids((a, b)), detail=detail)
                )
        for t in debits:
            if t.instant.hour < AFTER_HOURS_END and -t.amount_cents >= AFTER_HOURS_PAISE:
                detail = f"{_rupees(t.amount_cents)} at {t.time}"
                signals.append(
                    Signal(kind="after_hours", transaction_ids=(t.transaction_id,), detail=detail)
                )
        for t in txns:
            text = f"{t.merchant} {t.category} {t.description}".lower()
            hit = next((m for m in self.high_risk_merchants if m in text), None)
            if hit is not None and t.amount_cents < 0:
                detail = f"merchant matches {hit!r}"
                signals.append(
                    Signal(
                        kind="high_risk_merchant",
                        transaction_ids=(t.transaction_id,),
                        detail=detail,
                    )
                )
        kinds = {s.kind for s in signals}
        severity: Level = (
            "high"
            if "impossible_travel" in kinds or len(kinds) >= 3
            else "medium"
            if len(kinds) == 2
            else "low"
        )
        return FraudSignals(severity=severity, signals=tuple(signals))


class MuleDetector(BaseAgent):
    """Money-mule patterns: a credit of which 90 %+ leaves again within 24 hours, money in from
    5+ counterparties or out to 5+, 10+ debits within an hour. Risk: high when pass-through
    comes with another pattern, medium for any one pattern, low for none."""

    capabilities = ("detect_mules",)
    risk = Risk.HIGH
    produces = (MuleSignals,)

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        return ctx.emit(self.assess(payload.transactions))

    def assess(self, txns: Sequence[Transaction]) -> MuleSignals:
        signals = []
        debits = [t for t in txns if t.amount_cents < 0]
        for c in (t for t in txns if t.amount_cents > 0):
            start = c.instant
            # by the difference: ``start + window`` overflows on the last day of year 9999
            out = [d for d in debits if ZERO <= d.instant - start <= PASS_THROUGH_WINDOW]
            sent = -sum(d.amount_cents for d in out)
            if out and sent >= PASS_THROUGH_SHARE * c.amount_cents:
                share = sent / c.amount_cents
                detail = f"{share:.0%} of {_rupees(c.amount_cents)} left within 24 h"
                signals.append(
                    Signal(kind="pass_through", transaction_ids=_ids([c, *out]), detail=detail)
                )
        for kind, side in (
            ("fan_in", [t for t in txns if t.amount_cents > 0]),
            ("fan_out", debits),
        ):
            parties = {t.counterparty for t in side if t.counterparty}
            if len(parties) >= FAN_COUNT:
                detail = f"{len(parties)} counterparties"
                signals.append(
                    Signal(
                        kind=kind,
                        transaction_ids=_ids(t for t in side if t.counterparty),
                        detail=detail,
                    )
                )
        signals += (
            Signal(kind="velocity", transaction_ids=_ids(run), detail=f"{len(run)} debits in 1 h")
            for run in _windows(_timed(debits), VELOCITY_WINDOW, VELOCITY_COUNT)
        )
        kinds = {s.kind for s in signals}
        risk: Level = (
            "high" if "pass_through" in kinds and len(kinds) > 1 else "medium" if kinds else "low"
        )
        return MuleSignals(risk=risk, signals=tuple(signals))


class AmlMonitor(BaseAgent):
    """Drafts suspicious transaction reports (structuring: 3+ cash deposits within 7 days each
    between 80 % and 100 % of Rs 10 lakh; round-tripping: money back from a counterparty within
    30 days, within 5 %; a high-risk jurisdiction; a counterparty on the adverse-media list)
    and threshold reports (CTR: cash of Rs 10 lakh or more; LTR: a wire of Rs 50 lakh or more)."""

    capabilities = ("aml_monitoring",)
    risk = Risk.HIGH
    produces = (AmlReports,)

    def __init__(self, id: str, *, adverse_media: list[str] | None = None) -> None:
        super().__init__(id)
        self.adverse_media = frozenset(name.casefold() for name in adverse_media or ())

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message:
        return ctx.emit(self.assess(payload.transactions))

    def assess(self, txns: Sequence[Transaction]) -> AmlReports:
        reports: list[AmlReport] = []

        def report(kind: str, items: Sequence[Transaction], narrative: str) -> None:
            total = sum(abs(t.amount_cents) for t in items)
            reports.append(
                AmlReport(
                    kind=kind, transaction_ids=_ids(items), total_paise=total, narrative=narrative
                )
            )

        cash = sorted((t for t in txns if t.channel == "cash"), key=lambda t: t.instant)
        near = [t for t in cash if STRUCTURING_SHARE * CTR_PAISE <= abs(t.amount_cents) < CTR_PAISE]
        for run in _windows(near, STRUCTURING_WINDOW, STRUCTURING_COUNT):
            report(
                "structuring",
                run,
                f"{len(run)} cash transactions just under the CTR threshold within 7 days",
            )
        for t in cash:
            if abs(t.amount_cents) >= CTR_PAISE:
                report("ctr", [t], f"cash transaction of {_rupees(t.amount_cents)}")
        for t in txns:
            if t.channel == "wire" and abs(t.amount_cents) >= LTR_WIRE_PAISE:
                report("ltr", [t], f"wire of {_rupees(t.amount_cents)}")
        for out in (t for t in txns if t.amount_cents < 0 and t.counterparty):
            back = _first_return(out, txns)
            if back is not None:
                report(
                    "round_tripping",
                    [out, back],
                    f"{_rupees(out.amount_cents)} to {out.counterparty} came back within 30 days",
                )
        for t in txns:
            if t.country.upper() in HIGH_RISK_COUNTRIES:
                report("high_risk_jurisdiction", [t], f"counterparty country {t.country.upper()}")
            if t.counterparty.casefold() in self.adverse_media:
                report("adverse_media", [t], f"{t.counterparty} appears in adverse media")
        required = any(r.kind not in ("ctr", "ltr") for r in reports)
        return AmlReports(str_required=required, reports=tuple(reports))


def _first_return(out: Transaction, txns: Sequence[Transaction]) -> Transaction | None:
    sent, start = -out.amount_cents, out.instant
    for t in txns:
        if (
            t.amount_cents > 0
            and t.counterparty == out.counterparty
            and ZERO <= t.instant - start <= ROUND_TRIP_WINDOW
            and abs(t.amount_cents - sent) <= ROUND_TRIP_TOLERANCE * sent
        ):
            return t
    return None
