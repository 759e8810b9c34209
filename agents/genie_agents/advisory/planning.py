"""Planning for people: goals (Monte Carlo), emergency fund, asset mix, dividends, glossary."""

from __future__ import annotations

import math
import random

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import median, money
from .models import (
    AssetAllocationPlan,
    AssetAllocationRequest,
    DividendProjection,
    DividendRequest,
    DividendYear,
    EmergencyFundPlan,
    EmergencyFundRequest,
    ExplainFinance,
    FinanceExplanation,
    GoalPlan,
    GoalRequest,
)

__all__ = [
    "AssetAllocator",
    "DividendPlanner",
    "EmergencyFundAdvisor",
    "FinancialEducator",
    "GoalPlanner",
    "simulate_goal",
]


def simulate_goal(req: GoalRequest, *, paths: int, seed: int) -> list[float]:
    """Final corpus of each path, sorted. Monthly log-returns are normal with the mean that
    makes the expected yearly growth ``1 + return`` and a sigma of ``volatility / sqrt(12)``;
    the contribution is added at each month's end."""
    s = req.volatility_pct / 100 / math.sqrt(12)
    m = math.log1p(req.expected_return_pct / 100) / 12 - s * s / 2
    rng = random.Random(seed)
    finals = []
    for _ in range(paths):
        corpus = req.current_corpus
        for _ in range(12 * req.years):
            corpus = corpus * math.exp(m + s * rng.gauss()) + req.monthly_contribution
        finals.append(corpus)
    return sorted(finals)


class GoalPlanner(BaseAgent):
    """Chance of reaching a goal: ``paths`` (1000) lognormal Monte Carlo paths from a fixed
    ``seed`` (42), so the same request always gets the same answer; success probability and
    the 10th/50th/90th percentile of the final corpus."""

    capabilities = ("goal_planning",)
    risk = Risk.MEDIUM
    produces = (GoalPlan,)

    def __init__(self, id: str, *, paths: int = 1000, seed: int = 42) -> None:
        super().__init__(id)
        if paths < 1:
            raise ValueError("paths must be at least 1")
        self.paths, self.seed = paths, seed

    @handler
    async def on_goal(self, payload: GoalRequest, ctx: Context) -> Message:
        finals = simulate_goal(payload, paths=self.paths, seed=self.seed)

        def pct(q: float) -> float:
            return money(finals[round(q * (len(finals) - 1))])

        hits = sum(f >= payload.target for f in finals)
        plan = GoalPlan(
            goal=payload.goal,
            paths=self.paths,
            success_probability=round(hits / self.paths, 4),
            p10=pct(0.10),
            p50=pct(0.50),
            p90=pct(0.90),
        )
        return ctx.emit(plan)


class EmergencyFundAdvisor(BaseAgent):
    """Emergency fund from the median monthly expense: 3 months minimum, 6 recommended, 9
    comfortable; how many months current savings cover and the gap to six."""

    capabilities = ("emergency_fund",)
    produces = (EmergencyFundPlan,)

    @handler
    async def on_request(self, payload: EmergencyFundRequest, ctx: Context) -> Message:
        need = median(payload.monthly_expenses)
        if need <= 0:
            raise ValueError("monthly expenses must be positive")
        plan = EmergencyFundPlan(
            monthly_need=money(need),
            minimum=money(3 * need),
            recommended=money(6 * need),
            comfortable=money(9 * need),
            months_covered=round(payload.current_savings / need, 1),
            gap_to_recommended=money(max(0.0, 6 * need - payload.current_savings)),
        )
        return ctx.emit(plan)


RISK_TILT = {"conservative": -15, "moderate": 0, "aggressive": 15}
LONG_HORIZON_YEARS, LONG_HORIZON_TILT = 10, 5


class AssetAllocator(BaseAgent):
    """Equity share = 100 - age, -15/0/+15 points for a conservative/moderate/aggressive
    profile, +5 for a horizon of 10 years or more, kept within 0-100; the rest in debt. With
    current holdings, the buys and sells that reach the target."""

    capabilities = ("asset_allocation",)
    risk = Risk.MEDIUM
    produces = (AssetAllocationPlan,)

    @handler
    async def on_request(self, payload: AssetAllocationRequest, ctx: Context) -> Message:
        p = payload
        equity = 100 - p.age + RISK_TILT[p.risk_profile]
        if p.horizon_years >= LONG_HORIZON_YEARS:
            equity += LONG_HORIZON_TILT
        equity = max(0, min(100, equity))
        total = sum(p.holdings.values())
        target = {
            "equity": money(total * equity / 100),
            "debt": money(total * (100 - equity) / 100),
        }
        trades = {
            "equity": money(target["equity"] - p.holdings.get("equity", 0.0)),
            "debt": money(target["debt"] - p.holdings.get("debt", 0.0)),
        }
        plan = AssetAllocationPlan(
            equity_pct=equity, debt_pct=100 - equity, target=target, trades=trades
        )
        return ctx.emit(plan)


class DividendPlanner(BaseAgent):
    """Year-by-year dividend projection: dividend per share grows at the dividend growth rate,
    the price at the price growth rate; dividends are taxed at the slab rate and, with
    ``reinvest``, the net dividend buys shares at the year-end price (DRIP). Reinvested shares
    that outgrow a float (a dividend growing as the price falls) are refused, naming the
    year."""

    capabilities = ("dividend_projection",)
    produces = (DividendProjection,)

    @handler
    async def on_request(self, payload: DividendRequest, ctx: Context) -> Message:
        p = payload
        shares, dps = p.shares, p.price * p.dividend_yield_pct / 100
        rows, grossed = [], 0.0
        for year in range(1, p.years + 1):
            price = p.price * (1 + p.price_growth_pct / 100) ** year
            gross = shares * dps * (1 + p.dividend_growth_pct / 100) ** (year - 1)
            net = gross * (1 - p.slab_rate_pct / 100)
            if p.reinvest:
                shares += net / price
            grossed += gross
            if not math.isfinite(shares * price + grossed):
                # a dividend growing faster than a falling price buys ever more shares
                raise ValueError(
                    f"the reinvested shares outgrow any number by year {year}: dividend "
                    f"growth {p.dividend_growth_pct:g} % against price growth "
                    f"{p.price_growth_pct:g} % a year; project fewer years"
                )
            rows.append(
                DividendYear(
                    year=year,
                    shares=round(shares, 4),
                    price=money(price),
                    gross_dividend=money(gross),
                    net_dividend=money(net),
                    value=money(shares * price),
                )
            )
        out = DividendProjection(
            rows=tuple(rows),
            total_gross=money(sum(r.gross_dividend for r in rows)),
            total_net=money(sum(r.net_dividend for r in rows)),
        )
        return ctx.emit(out)


GLOSSARY = {
    "sip": "A systematic investment plan invests a fixed amount in a mutual fund at regular "
    "intervals, averaging the purchase price over time.",
    "emi": "An equated monthly instalment is the fixed monthly payment that repays a loan's "
    "principal and interest over its tenure.",
    "compound interest": "Interest earned on both the principal and the interest already "
    "added to it, so growth accelerates over time.",
    "emergency fund": "Cash kept aside for unexpected expenses, usually three to six months "
    "of living costs, in a safe and liquid place.",
    "asset allocation": "How a portfolio is split between asset classes such as equity, debt "
    "and gold, to balance risk and return.",
    "ppf": "The Public Provident Fund is a 15-year government-backed savings scheme with "
    "tax-free interest and 80C deduction on deposits.",
    "nps": "The National Pension System is a retirement scheme investing in equity and debt, "
    "with extra deduction under section 80CCD(1B).",
    "index fund": "A fund that tracks a market index such as the Nifty 50 at low cost instead "
    "of picking stocks.",
}


class FinancialEducator(BaseAgent):
    """Explains a finance term from an 8-entry glossary (sip, emi, compound interest,
    emergency fund, asset allocation, ppf, nps, index fund); otherwise lists the known ones."""

    capabilities = ("explain_finance",)
    produces = (FinanceExplanation,)

    @handler
    async def on_term(self, payload: ExplainFinance, ctx: Context) -> Message:
        term = " ".join(payload.term.casefold().split())
        text = GLOSSARY.get(term)
        if text is None:
            text = "No glossary entry yet. Try one of: " + ", ".join(GLOSSARY)
        return ctx.emit(FinanceExplanation(term=term, found=term in GLOSSARY, text=text))
