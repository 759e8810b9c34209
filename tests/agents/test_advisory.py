"""Advisory agents: goal Monte Carlo, emergency fund, allocation, dividends, glossary."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from genie_agents.advisory import (
    AssetAllocator,
    DividendPlanner,
    EmergencyFundAdvisor,
    FinancialEducator,
    GoalPlanner,
)
from genie_agents.advisory.models import (
    AssetAllocationRequest,
    DividendRequest,
    EmergencyFundRequest,
    ExplainFinance,
    GoalRequest,
)
from genie_agents.advisory.planning import simulate_goal

from genie import NoReplyError

from .helpers import ask, one

# Rs 1,000 a month for a year at 12 % a year with no volatility: a monthly growth of
# g = 1.12^(1/12), so the corpus is 1,000 x (g^12 - 1) / (g - 1) = 12,646.50.
SURE = GoalRequest(target=12_646, years=1, monthly_contribution=1_000, volatility_pct=0)


async def test_goal_without_volatility_is_the_annuity() -> None:
    plan = await one(GoalPlanner("goal_planner"), SURE)
    assert (plan.p10, plan.p50, plan.p90) == (12_646.5, 12_646.5, 12_646.5)
    assert plan.success_probability == 1.0
    missed = await one(GoalPlanner("g"), SURE.model_copy(update={"target": 12_647}))
    assert missed.success_probability == 0.0


async def test_goal_monte_carlo_is_seeded_and_centred() -> None:
    req = GoalRequest(
        goal="house", target=1_000_000, years=10, monthly_contribution=5_000, volatility_pct=15
    )
    first = await one(GoalPlanner("g"), req)
    assert first == await one(GoalPlanner("g"), req)  # same seed, same answer
    assert first != await one(GoalPlanner("g", seed=7), req)
    assert first.paths == 1000
    assert first.p10 < first.p50 < first.p90
    # The drift is set so the expected corpus is the no-volatility annuity.
    g = 1.12 ** (1 / 12)
    expected = 5_000 * (g**120 - 1) / (g - 1)
    finals = simulate_goal(req, paths=1000, seed=42)
    assert statistics.fmean(finals) == pytest.approx(expected, rel=0.05)
    assert first.success_probability == sum(f >= 1_000_000 for f in finals) / 1000


def test_goal_paths_must_be_positive() -> None:
    with pytest.raises(ValueError, match="paths must be at least 1"):
        GoalPlanner("g", paths=0)


# --- emergency_fund_advisor -------------------------------------------------------------------
async def test_emergency_fund_from_the_median() -> None:
    req = EmergencyFundRequest(
        monthly_expenses=(30_000, 50_000, 40_000, 100_000), current_savings=90_000
    )
    plan = await one(EmergencyFundAdvisor("emergency_fund_advisor"), req)
    # median of 30k, 40k, 50k, 100k = 45k
    assert (plan.monthly_need, plan.minimum, plan.recommended, plan.comfortable) == (
        45_000,
        135_000,
        270_000,
        405_000,
    )
    assert (plan.months_covered, plan.gap_to_recommended) == (2.0, 180_000)
    with pytest.raises(ValueError, match="monthly expenses must be positive"):
        await one(EmergencyFundAdvisor("e"), EmergencyFundRequest(monthly_expenses=(0,)))


# --- asset_allocator --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("age", "profile", "horizon", "equity"),
    [
        (30, "moderate", 5, 70),
        (30, "aggressive", 10, 90),  # 70 + 15 + 5
        (40, "conservative", 9, 45),
        (90, "conservative", 0, 0),  # -5 kept at 0
        (18, "aggressive", 20, 100),  # 102 kept at 100
    ],
)
async def test_allocation(age: int, profile: Any, horizon: int, equity: int) -> None:
    req = AssetAllocationRequest(age=age, risk_profile=profile, horizon_years=horizon)
    plan = await one(AssetAllocator("asset_allocator"), req)
    assert (plan.equity_pct, plan.debt_pct) == (equity, 100 - equity)


async def test_rebalancing_trades() -> None:
    req = AssetAllocationRequest(
        age=30,
        risk_profile="moderate",
        horizon_years=5,
        holdings={"equity": 50_000, "debt": 50_000},
    )
    plan = await one(AssetAllocator("a"), req)
    assert plan.target == {"equity": 70_000, "debt": 30_000}
    assert plan.trades == {"equity": 20_000, "debt": -20_000}


# --- dividend_planner -------------------------------------------------------------------------
async def test_drip_by_hand() -> None:
    req = DividendRequest(shares=100, price=1_000, dividend_yield_pct=2, years=2, slab_rate_pct=30)
    out = await one(DividendPlanner("dividend_planner"), req)
    # year 1: 100 x 20 = 2,000 gross, 1,400 net buys 1.4 shares; year 2: 101.4 x 20 = 2,028
    assert [(r.shares, r.gross_dividend, r.net_dividend, r.value) for r in out.rows] == [
        (101.4, 2_000, 1_400, 101_400),
        (102.8196, 2_028, 1_419.6, 102_819.6),
    ]
    assert (out.total_gross, out.total_net) == (4_028, 2_819.6)
    cash = await one(DividendPlanner("d"), req.model_copy(update={"reinvest": False}))
    assert [r.gross_dividend for r in cash.rows] == [2_000, 2_000]


async def test_drip_that_outgrows_a_float_is_refused_saying_why() -> None:
    # The dividend doubles each year as the price falls 99 %: each year's reinvestment buys
    # about 200 times the shares held, past any float by year 16 (an OverflowError, or an
    # output of infinities that failed its own model).
    req = DividendRequest(
        shares=1e12,
        price=0.01,
        dividend_yield_pct=100,
        dividend_growth_pct=100,
        price_growth_pct=-99,
        years=50,
        slab_rate_pct=0,
    )
    with pytest.raises(NoReplyError, match="outgrow any number by year 16: dividend growth 100"):
        await ask("dividend_planner", req)
    cash = await ask("dividend_planner", req.model_copy(update={"reinvest": False}))
    assert cash.rows[-1].gross_dividend == pytest.approx(1e10 * 2**49)  # 1e12 x 0.01 x 2^49


# --- financial_educator -----------------------------------------------------------------------
async def test_glossary() -> None:
    agent = FinancialEducator("financial_educator")
    sip = await one(agent, ExplainFinance(term="SIP"))
    assert (sip.term, sip.found) == ("sip", True)
    assert sip.text.startswith("A systematic investment plan")
    assert (await one(agent, ExplainFinance(term="  Compound   Interest "))).found
    miss = await one(agent, ExplainFinance(term="bond"))
    assert (miss.found, miss.text) == (
        False,
        "No glossary entry yet. Try one of: sip, emi, compound interest, emergency fund, "
        "asset allocation, ppf, nps, index fund",
    )
