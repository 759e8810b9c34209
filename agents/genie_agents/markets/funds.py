"""Mutual-fund screening (a composite score) and SIP against lumpsum (seeded Monte Carlo)."""

from __future__ import annotations

import math
import random
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from genie import BaseAgent, Context, Message, Payload, Risk, handler

from .._common import Record, money

__all__ = [
    "Fund",
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

# Weights of the composite (they sum to 1) and the value that earns a component full marks.
WEIGHTS = {"cagr_3y": 0.25, "cagr_5y": 0.25, "sharpe": 0.20, "expense": 0.15, "consistency": 0.15}
FULL_CAGR_PCT = 20.0
FULL_SHARPE = 2.0
ZERO_EXPENSE_PCT = 2.5  # an expense ratio this high (above SEBI's 2.25 % cap) scores 0


class Fund(Record):
    name: str = Field(min_length=1)
    cagr_3y_pct: float = Field(ge=-100, le=1000)
    cagr_5y_pct: float = Field(ge=-100, le=1000)
    sharpe: float = Field(ge=-10, le=10)
    expense_ratio_pct: float = Field(ge=0, le=10)
    yearly_returns_pct: tuple[float, ...] = Field(min_length=1, max_length=100)


class MfScreenRequest(Payload):
    message_type = "mf_screen_request"
    funds: tuple[Fund, ...] = Field(min_length=1, max_length=1000)
    benchmark_return_pct: float = 0.0
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
    cagr_3y: float
    cagr_5y: float
    sharpe: float
    expense: float
    consistency: float


class MfScreenResults(Payload):
    message_type = "mf_screen_results"
    benchmark_return_pct: float
    funds: tuple[FundScore, ...]


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def score_fund(fund: Fund, benchmark_return_pct: float) -> dict[str, float]:
    """Each component in 0..1 and the weighted composite in 0..100 (not rounded)."""
    parts = {
        "cagr_3y": _clamp(fund.cagr_3y_pct / FULL_CAGR_PCT),
        "cagr_5y": _clamp(fund.cagr_5y_pct / FULL_CAGR_PCT),
        "sharpe": _clamp(fund.sharpe / FULL_SHARPE),
        "expense": _clamp(1 - fund.expense_ratio_pct / ZERO_EXPENSE_PCT),
        "consistency": sum(r > benchmark_return_pct for r in fund.yearly_returns_pct)
        / len(fund.yearly_returns_pct),
    }
    parts["score"] = 100 * sum(WEIGHTS[k] * parts[k] for k in WEIGHTS)
    return parts


class MfScreener(BaseAgent):
    """Ranks mutual funds by a composite score out of 100: 3-year and 5-year CAGR (25 % each,
    full marks at 20 %), Sharpe ratio (20 %, full marks at 2), expense ratio (15 %, 0 % scores
    full, 2.5 % or more scores 0) and consistency (15 %, the share of yearly returns strictly
    above the benchmark); each component is kept within 0-1. Ties rank by name; ``top`` keeps
    the best n."""

    capabilities = ("mf_screening",)
    risk = Risk.MEDIUM
    produces = (MfScreenResults,)

    @handler
    async def on_request(self, payload: MfScreenRequest, ctx: Context) -> Message:
        # Rank on the rounded score, so two funds shown with equal scores are ordered by name.
        scored = sorted(
            (
                (round(parts["score"], 2), fund.name, parts)
                for fund in payload.funds
                for parts in [score_fund(fund, payload.benchmark_return_pct)]
            ),
            key=lambda item: (-item[0], item[1]),
        )
        ranked = tuple(
            FundScore(rank=i, name=name, score=score, **{k: round(parts[k], 4) for k in WEIGHTS})
            for i, (score, name, parts) in enumerate(scored[: payload.top], start=1)
        )
        return ctx.emit(
            MfScreenResults(benchmark_return_pct=payload.benchmark_return_pct, funds=ranked)
        )


class SipLumpsumRequest(Payload):
    message_type = "sip_lumpsum_request"
    amount: float = Field(gt=0)
    sip_months: int = Field(12, ge=1, le=120)
    # 20 years: 1,000 paths x 240 months is ~0.5 s of CPU on the event loop; longer would stall
    # every other agent of the runtime for seconds.
    horizon_months: int = Field(12, ge=1, le=240)
    expected_return_pct: float = Field(12.0, gt=-100, le=100)
    volatility_pct: float = Field(15.0, ge=0, le=100)

    @field_validator("horizon_months")
    @classmethod
    def _covers_the_sip(cls, horizon: int, info: ValidationInfo) -> int:
        sip = info.data.get("sip_months")
        if sip is not None and horizon < sip:
            raise ValueError(f"must be at least sip_months ({sip})")
        return horizon


class SipLumpsumResult(Payload):
    message_type = "sip_lumpsum_result"
    paths: int
    lumpsum_p10: float
    lumpsum_p50: float
    lumpsum_p90: float
    sip_p10: float
    sip_p50: float
    sip_p90: float
    regret_probability: float
    recommendation: Literal["lumpsum", "sip"]
    rationale: str


def simulate_sip_lumpsum(
    req: SipLumpsumRequest, *, paths: int, seed: int
) -> list[tuple[float, float]]:
    """(lumpsum, sip) final value of each path. Both strategies ride the same monthly
    log-returns (normal, mean chosen so the expected yearly growth is ``1 + return``, sigma
    ``volatility / sqrt(12)``); the lumpsum is invested at the start of month 1, the SIP puts
    ``amount / sip_months`` in at the start of each of the first ``sip_months`` months, and
    money waiting to be invested earns nothing."""
    s = req.volatility_pct / 100 / math.sqrt(12)
    m = math.log1p(req.expected_return_pct / 100) / 12 - s * s / 2
    instalment = req.amount / req.sip_months
    rng = random.Random(seed)
    finals = []
    for _ in range(paths):
        lumpsum, sip = req.amount, 0.0
        for month in range(req.horizon_months):
            if month < req.sip_months:
                sip += instalment
            growth = math.exp(m + s * rng.gauss())
            lumpsum *= growth
            sip *= growth
        finals.append((lumpsum, sip))
    return finals


class SipVsLumpsum(BaseAgent):
    """Lumpsum against a SIP of the same amount over ``sip_months`` (12), on ``paths`` (1000)
    Monte Carlo paths from a fixed ``seed`` (42) that both strategies share. The regret
    probability is the share of paths where the lumpsum ends below the SIP; recommends the
    lumpsum when that is under one half, else the SIP."""

    capabilities = ("sip_vs_lumpsum",)
    risk = Risk.MEDIUM
    produces = (SipLumpsumResult,)

    def __init__(self, id: str, *, paths: int = 1000, seed: int = 42) -> None:
        super().__init__(id)
        if paths < 1:
            raise ValueError("paths must be at least 1")
        self.paths, self.seed = paths, seed

    @handler
    async def on_request(self, payload: SipLumpsumRequest, ctx: Context) -> Message:
        finals = simulate_sip_lumpsum(payload, paths=self.paths, seed=self.seed)
        lump = sorted(f[0] for f in finals)
        sip = sorted(f[1] for f in finals)

        def pct(values: list[float], q: float) -> float:
            return money(values[round(q * (len(values) - 1))])

        regret = round(sum(ls < sp for ls, sp in finals) / self.paths, 4)
        choice: Literal["lumpsum", "sip"] = "lumpsum" if regret < 0.5 else "sip"
        rationale = (
            f"the lumpsum ends below the SIP on {regret:.1%} of {self.paths} paths; "
            f"median {pct(lump, 0.5):,.2f} against {pct(sip, 0.5):,.2f}"
        )
        return ctx.emit(
            SipLumpsumResult(
                paths=self.paths,
                lumpsum_p10=pct(lump, 0.1),
                lumpsum_p50=pct(lump, 0.5),
                lumpsum_p90=pct(lump, 0.9),
                sip_p10=pct(sip, 0.1),
                sip_p50=pct(sip, 0.5),
                sip_p90=pct(sip, 0.9),
                regret_probability=regret,
                recommendation=choice,
                rationale=rationale,
            )
        )
