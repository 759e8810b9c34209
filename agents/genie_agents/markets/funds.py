"""Mutual-fund screening (the Go system's filter and composite score) and SIP against lumpsum
(seeded Monte Carlo)."""

from __future__ import annotations

import math
import random
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from genie import BaseAgent, Context, Message, Payload, Risk, handler

from .._common import Record, money
from .._go import UNUSED, GoName, go_names, unit_share

__all__ = [
    "Fund",
    "FundFilter",
    "FundScore",
    "MfScreenRequest",
    "MfScreenResults",
    "MfScreener",
    "SipLumpsumRequest",
    "SipLumpsumResult",
    "SipVsLumpsum",
    "score_fund",
    "simulate_sip_lumpsum",
]

# The Go system's composite: each part's weight and the value that earns it full marks (for
# the expense ratio and the negative quarters, the value that earns nothing).
WEIGHTS = {"cagr_5y": 0.40, "sharpe": 0.25, "expense": 0.20, "consistency": 0.15}
FULL_CAGR_5Y_PCT = 25.0
FULL_SHARPE = 1.5
ZERO_EXPENSE_PCT = 2.0
ZERO_NEGATIVE_QUARTERS = 8
RISK_FREE_PCT = 7.0


def _go_cut(value: Any) -> Any:
    """Go's filter thresholds: 0 (omitted) is no cut, a share of one otherwise."""
    return None if value == 0 else unit_share(value)


class Fund(Record):
    name: str = Field(min_length=1)
    category: str = ""
    aum_crore: float = Field(0.0, ge=0)
    expense_ratio_pct: float = Field(ge=0, le=10)
    cagr_3y_pct: float = Field(ge=-100, le=1000)
    cagr_5y_pct: float = Field(ge=-100, le=1000)
    # A Sharpe ratio needs a deviation: Go scored a missing one (0) as a Sharpe of 0.
    std_dev_pct: float = Field(gt=0, le=500)
    negative_quarters_5y: int = Field(ge=0, le=20)  # 20 quarters in five years

    _go = go_names(
        {
            "scheme": "name",
            "nav": UNUSED,
            "expense_ratio": GoName("expense_ratio_pct", unit_share),
            "three_year_cagr": GoName("cagr_3y_pct", unit_share),
            "five_year_cagr": GoName("cagr_5y_pct", unit_share),
            "std_dev": GoName("std_dev_pct", unit_share),
            "neg_quarters_last_5yr": "negative_quarters_5y",
        }
    )


class FundFilter(Record):
    """Hard cuts before scoring; a cut left out (None, or a blank category) keeps every fund."""

    category: str = ""
    min_aum_crore: float = Field(0.0, ge=0)
    max_expense_ratio_pct: float | None = Field(None, ge=0)
    min_cagr_3y_pct: float | None = None

    _go = go_names(
        {
            "max_expense_ratio": GoName("max_expense_ratio_pct", _go_cut),
            "min_three_yr_cagr": GoName("min_cagr_3y_pct", _go_cut),
        }
    )

    def keeps(self, fund: Fund) -> bool:
        return (
            (not self.category or fund.category == self.category)
            and fund.aum_crore >= self.min_aum_crore
            and (
                self.max_expense_ratio_pct is None
                or fund.expense_ratio_pct <= self.max_expense_ratio_pct
            )
            and (self.min_cagr_3y_pct is None or fund.cagr_3y_pct >= self.min_cagr_3y_pct)
        )


class MfScreenRequest(Payload):
    message_type = "mf_screen_request"
    funds: tuple[Fund, ...] = Field(min_length=1, max_length=1000)
    filter: FundFilter = FundFilter()
    top: int | None = Field(None, ge=1)

    @field_validator("funds")
    @classmethod
    def _distinct(cls, funds: tuple[Fund, ...]) -> tuple[Fund, ...]:
        names = [f.name for f in funds]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"fund names must be distinct; repeated: {', '.join(dupes)}")
        return funds


class FundScore(Record):
    rank: int
    name: str
    score: float
    sharpe: float
    cagr_5y_part: float
    sharpe_part: float
    expense_part: float
    consistency_part: float


class MfScreenResults(Payload):
    message_type = "mf_screen_results"
    funds: tuple[FundScore, ...]
    filtered_out: int


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def score_fund(fund: Fund, risk_free_pct: float = RISK_FREE_PCT) -> dict[str, float]:
    """The Sharpe ratio, each part of the composite in 0..1 and the composite in 0..100 (not
    rounded)."""
    sharpe = (fund.cagr_5y_pct - risk_free_pct) / fund.std_dev_pct
    parts = {
        "cagr_5y": _clamp(fund.cagr_5y_pct / FULL_CAGR_5Y_PCT),
        "sharpe": _clamp(sharpe / FULL_SHARPE),
        "expense": _clamp(1 - fund.expense_ratio_pct / ZERO_EXPENSE_PCT),
        "consistency": _clamp(1 - fund.negative_quarters_5y / ZERO_NEGATIVE_QUARTERS),
    }
    return parts | {
        "score": 100 * sum(WEIGHTS[k] * parts[k] for k in WEIGHTS),
        "sharpe_ratio": sharpe,
    }


class MfScreener(BaseAgent):
    """Screens mutual funds, then ranks the survivors by a composite score out of 100 (the Go
    system's). The filter's cuts: category, minimum AUM (crore), maximum expense ratio,
    minimum 3-year CAGR. The score: 5-year CAGR 40 % (full marks at 25 %), Sharpe ratio 25 %
    ((5-year CAGR - ``risk_free_pct``, 7) / standard deviation, full marks at 1.5), expense
    ratio 20 % (0 % full marks, 2 % or more none), consistency 15 % (no negative quarter in
    five years full marks, 8 or more none); each part is kept within 0-1. Funds with equal
    (rounded) scores keep the order they were given in; ``top`` keeps the best n."""

    capabilities = ("mf_screening",)
    risk = Risk.MEDIUM
    produces = (MfScreenResults,)

    def __init__(self, id: str, *, risk_free_pct: float = RISK_FREE_PCT) -> None:
        super().__init__(id)
        self.risk_free_pct = risk_free_pct

    @handler
    async def on_request(self, payload: MfScreenRequest, ctx: Context) -> Message:
        kept = [f for f in payload.funds if payload.filter.keeps(f)]
        scored = [(f.name, score_fund(f, self.risk_free_pct)) for f in kept]
        # Rank on the rounded score (a stable sort), so funds shown equal keep the given order.
        scored.sort(key=lambda item: -round(item[1]["score"], 2))
        ranked = tuple(
            FundScore(
                rank=i,
                name=name,
                score=round(parts["score"], 2),
                sharpe=round(parts["sharpe_ratio"], 2),
                **{f"{k}_part": round(parts[k], 4) for k in WEIGHTS},
            )
            for i, (name, parts) in enumerate(scored[: payload.top], start=1)
        )
        return ctx.emit(MfScreenResults(funds=ranked, filtered_out=len(payload.funds) - len(kept)))


# 20 years of 1,000 paths is ~0.5 s of CPU on the event loop; more would stall every other
# agent of the runtime for seconds.
MAX_PATH_MONTHS = 240_000
WIN_AT = 0.70  # the lumpsum wins on at least this share of paths: lumpsum
LOSE_AT = 0.30  # on at most this share: SIP; between the two, a toss-up


def _go_sip(go: Any, data: dict[str, Any]) -> dict[str, Any]:
    # Go read a zero (a field its client left out) as its default: 1,000 paths, seed 42.
    defaults = {"paths": 1000, "seed": 42}
    return data | {k: v for k, v in defaults.items() if data.get(k, 0) == 0}


class SipLumpsumRequest(Payload):
    message_type = "sip_lumpsum_request"
    amount: float = Field(gt=0)
    sip_months: int = Field(12, ge=1, le=120)
    horizon_months: int = Field(12, ge=1, le=240)
    expected_return_pct: float = Field(12.0, gt=-100, le=100)
    volatility_pct: float = Field(15.0, ge=0, le=100)
    paths: int = Field(1000, ge=1, le=10_000)
    seed: int = 42

    _go = go_names(
        {
            "amount_rupees": "amount",
            "expected_annual_return": GoName("expected_return_pct", unit_share),
            "annual_volatility": GoName("volatility_pct", unit_share),
        },
        then=_go_sip,
    )

    @field_validator("horizon_months")
    @classmethod
    def _covers_the_sip(cls, horizon: int, info: ValidationInfo) -> int:
        sip = info.data.get("sip_months")
        if sip is not None and horizon < sip:
            raise ValueError(f"must be at least sip_months ({sip})")
        return horizon

    @model_validator(mode="after")
    def _bounded(self) -> SipLumpsumRequest:
        if self.paths * self.horizon_months > MAX_PATH_MONTHS:
            raise ValueError(
                f"paths x horizon_months is at most {MAX_PATH_MONTHS:,} "
                f"(got {self.paths} x {self.horizon_months})"
            )
        return self


class SipLumpsumResult(Payload):
    message_type = "sip_lumpsum_result"
    paths: int
    lumpsum_p10: float
    lumpsum_p50: float
    lumpsum_p90: float
    sip_p10: float
    sip_p50: float
    sip_p90: float
    lumpsum_win_probability: float
    expected_regret_at_p50: float
    recommendation: Literal["lumpsum", "sip", "toss_up"]
    rationale: str


def simulate_sip_lumpsum(req: SipLumpsumRequest) -> list[tuple[float, float]]:
    """(lumpsum, sip) final value of each path. Both strategies ride the same monthly growth,
    lognormal with the Go system's mean (``1 + return / 12`` a month) and sigma ``volatility
    / sqrt(12)``; the lumpsum is invested at the start, the SIP puts ``amount / sip_months``
    in at the end of each of the first ``sip_months`` months (as Go), and money waiting to
    be invested earns nothing."""
    s = req.volatility_pct / 100 / math.sqrt(12)
    m = math.log1p(req.expected_return_pct / 100 / 12) - s * s / 2
    instalment = req.amount / req.sip_months
    rng = random.Random(req.seed)
    finals = []
    for _ in range(req.paths):
        lumpsum, sip = req.amount, 0.0
        for month in range(req.horizon_months):
            growth = math.exp(m + s * rng.gauss())
            lumpsum *= growth
            sip *= growth
            if month < req.sip_months:
                sip += instalment
        finals.append((lumpsum, sip))
    return finals


class SipVsLumpsum(BaseAgent):
    """Lumpsum against a SIP of the same amount over ``sip_months`` (12), on ``paths`` (1000)
    Monte Carlo paths from ``seed`` (42) that both strategies share (the Go system's model,
    with lognormal growth). Recommends the lumpsum when it ends above the SIP on 70 % of the
    paths or more, the SIP at 30 % or less, else calls it a toss-up; the expected regret is
    the gap between the two medians."""

    capabilities = ("sip_vs_lumpsum",)
    risk = Risk.MEDIUM
    produces = (SipLumpsumResult,)

    @handler
    async def on_request(self, payload: SipLumpsumRequest, ctx: Context) -> Message:
        finals = simulate_sip_lumpsum(payload)
        lump = sorted(f[0] for f in finals)
        sip = sorted(f[1] for f in finals)

        def pct(values: list[float], q: float) -> float:
            return money(values[round(q * (len(values) - 1))])

        # The median is Go's: the value at index paths / 2.
        lump50, sip50 = lump[payload.paths // 2], sip[payload.paths // 2]
        wins = round(sum(ls > sp for ls, sp in finals) / payload.paths, 4)
        choice: Literal["lumpsum", "sip", "toss_up"] = (
            "lumpsum" if wins >= WIN_AT else "sip" if wins <= LOSE_AT else "toss_up"
        )
        rationale = (
            f"the lumpsum ends above the SIP on {wins:.1%} of {payload.paths} paths; "
            f"median {money(lump50):,.2f} against {money(sip50):,.2f}"
        )
        return ctx.emit(
            SipLumpsumResult(
                paths=payload.paths,
                lumpsum_p10=pct(lump, 0.1),
                lumpsum_p50=money(lump50),
                lumpsum_p90=pct(lump, 0.9),
                sip_p10=pct(sip, 0.1),
                sip_p50=money(sip50),
                sip_p90=pct(sip, 0.9),
                lumpsum_win_probability=wins,
                expected_regret_at_p50=money(abs(lump50 - sip50)),
                recommendation=choice,
                rationale=rationale,
            )
        )
