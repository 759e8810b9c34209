"""Tax agents: new-regime slabs with rebate and marginal relief, advance tax, deductions,
capital-gains harvesting. Amounts worked out in the comments."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from genie_agents.tax import AdvanceTaxPlanner, DeductionsOptimizer, TaxEstimator, TaxHarvester
from genie_agents.tax.models import (
    AdvanceTaxRequest,
    DeductionsRequest,
    TaxEstimateRequest,
    TaxHarvestRequest,
)

from genie import InvalidMessageError, MessageTypes

from .helpers import one


@pytest.mark.parametrize(
    ("gross", "salaried", "taxable", "slab", "rebate", "surcharge", "total"),
    [
        # 11.25 L: 4 L x 5 % + 3 L x 10 % + 1.25 L x 15 % = 68,750; + 4 % cess
        (1_200_000, True, 1_125_000, 68_750, 0, 0, 71_500),
        (775_000, True, 700_000, 20_000, 20_000, 0, 0),  # 87A: nothing up to 7 L
        # 7.1 L: 21,000 of tax, but no more than the 10,000 above 7 L (marginal relief)
        (710_000, False, 710_000, 21_000, 11_000, 0, 10_400),
        (800_000, False, 800_000, 30_000, 0, 0, 31_200),
        # 60 L: 20,000 + 30,000 + 30,000 + 60,000 + 45 L x 30 % = 14.9 L; 10 % surcharge
        (6_000_000, False, 6_000_000, 1_490_000, 0, 149_000, 1_704_560),
        (0, True, 0, 0, 0, 0, 0),
    ],
)
async def test_new_regime(
    gross: float,
    salaried: bool,
    taxable: float,
    slab: float,
    rebate: float,
    surcharge: float,
    total: float,
) -> None:
    req = TaxEstimateRequest(gross_income=gross, salaried=salaried)
    out = await one(TaxEstimator("tax_estimator"), req)
    assert (out.taxable_income, out.slab_tax, out.rebate, out.surcharge, out.total_tax) == (
        taxable,
        slab,
        rebate,
        surcharge,
        total,
    )


async def test_effective_rate() -> None:
    out = await one(TaxEstimator("t"), TaxEstimateRequest(gross_income=1_200_000))
    assert out.effective_rate_pct == 5.96  # 71,500 / 12 L


# --- advance_tax_planner ----------------------------------------------------------------------
async def test_advance_tax_shortfalls_and_next_instalment() -> None:
    req = AdvanceTaxRequest(
        financial_year_start=2024,
        estimated_tax=100_000,
        paid_so_far=30_000,
        as_of=date(2024, 12, 20),
    )
    plan = await one(AdvanceTaxPlanner("advance_tax_planner"), req)
    assert [(i.due, i.cumulative_due, i.shortfall, i.interest) for i in plan.instalments] == [
        (date(2024, 6, 15), 15_000, 0, 0),
        (date(2024, 9, 15), 45_000, 15_000, 450),  # 1 % x 3 months
        (date(2024, 12, 15), 75_000, 45_000, 1_350),
        (date(2025, 3, 15), 100_000, 0, 0),  # not due yet
    ]
    assert (plan.next_due, plan.next_amount) == (date(2025, 3, 15), 70_000)
    assert plan.warnings == (
        "2024-09-15: short by 15,000.00 (33% of the 45% due): "
        "interest under sections 234B/234C at 1% a month",
        "2024-12-15: short by 45,000.00 (60% of the 75% due): "
        "interest under sections 234B/234C at 1% a month",
    )


async def test_advance_tax_small_shortfall_on_the_due_date_is_not_a_warning() -> None:
    req = AdvanceTaxRequest(
        financial_year_start=2024,
        estimated_tax=100_000,
        paid_so_far=41_000,
        as_of=date(2024, 9, 15),
    )
    plan = await one(AdvanceTaxPlanner("a"), req)
    assert (plan.instalments[1].shortfall, plan.instalments[1].interest) == (4_000, 120)
    assert plan.warnings == ()  # 8.9 % short
    assert plan.next_due == date(2024, 12, 15)


async def test_no_advance_tax_under_10000() -> None:
    req = AdvanceTaxRequest(financial_year_start=2024, estimated_tax=9_999, as_of=date(2024, 6, 1))
    plan = await one(AdvanceTaxPlanner("a"), req)
    assert (plan.required, plan.instalments) == (False, ())


# --- deductions_optimizer ---------------------------------------------------------------------
async def test_unused_deductions_and_savings() -> None:
    req = DeductionsRequest(
        claimed={"80C": 100_000, "80d_self": 30_000},  # 80D self capped at 25,000
        parents_senior=True,
        marginal_rate_pct=30,
    )
    plan = await one(DeductionsOptimizer("deductions_optimizer"), req)
    assert [(g.section, g.limit, g.unused, g.tax_saving) for g in plan.gaps] == [
        ("80c", 150_000, 50_000, 15_600),  # 50,000 x 30 % x 1.04
        ("80ccd_1b", 50_000, 50_000, 15_600),
        ("80d_self", 25_000, 0, 0),
        ("80d_parents", 50_000, 50_000, 15_600),
        ("80tta", 10_000, 10_000, 3_120),
    ]
    assert (plan.total_unused, plan.total_tax_saving) == (160_000, 49_920)


async def test_unknown_section() -> None:
    req = DeductionsRequest(claimed={"80e": 1}, marginal_rate_pct=30)
    with pytest.raises(ValueError, match="unknown section '80e' \\(known: 80c, 80ccd_1b"):
        await one(DeductionsOptimizer("d"), req)


# --- tax_harvester ----------------------------------------------------------------------------
def lot(symbol: str, bought: str, qty: float, cost: float, price: float) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "bought_on": bought,
        "quantity": qty,
        "cost_per_unit": cost,
        "price": price,
    }


LOTS = [
    lot("INFY", "2024-12-01", 100, 1500, 1400),  # short-term loss 10,000
    lot("TCS", "2023-01-01", 10, 3000, 2500),  # long-term loss 5,000
    lot("HDFC", "2023-06-01", 100, 1000, 1500),  # long-term gain 50,000
    lot("ITC", "2025-02-15", 100, 500, 450),  # short-term loss 5,000, bought 14 days ago
]


async def test_harvest_losses_against_gains() -> None:
    req = TaxHarvestRequest.model_validate(
        {"as_of": "2025-03-01", "lots": LOTS, "realised_stcg": 12_000, "realised_ltcg": 150_000}
    )
    plan = await one(TaxHarvester("tax_harvester"), req)
    # before: 20 % x 12,000 + 12.5 % x (150,000 - 125,000) = 5,525
    # INFY: STCG 12,000 -> 2,000; TCS: LTCG -> 145,000; ITC: STCG -> 0, 3,000 off LTCG
    # -> 142,000; HDFC's gain would go over the exemption. after: 12.5 % x 17,000 = 2,125
    assert [(a.symbol, a.action, a.term, a.gain, a.wash_risk) for a in plan.actions] == [
        ("INFY", "sell_loss", "short", -10_000, False),
        ("TCS", "sell_loss", "long", -5_000, False),
        ("ITC", "sell_loss", "short", -5_000, True),
    ]
    assert (plan.tax_before, plan.tax_after, plan.saving) == (5_525, 2_125, 3_400)


async def test_harvest_tax_free_long_term_gains() -> None:
    req = TaxHarvestRequest.model_validate({"as_of": "2025-03-01", "lots": LOTS})
    plan = await one(TaxHarvester("t"), req)
    assert [(a.symbol, a.action, a.gain) for a in plan.actions] == [("HDFC", "sell_gain", 50_000)]
    assert (plan.tax_before, plan.tax_after) == (0, 0)


def test_a_lot_bought_after_the_day_of_the_plan_is_refused() -> None:
    # A lot dated after as_of was held a negative time: short term, and "bought in the last
    # 30 days" (a wash-sale risk), on a purchase that had not happened.
    data = {"as_of": "2025-03-01", "lots": [*LOTS, lot("WIPRO", "2025-03-02", 1, 500, 400)]}
    with pytest.raises(
        InvalidMessageError, match=r"field 'lots'.*'WIPRO' bought on 2025-03-02, after as_of"
    ):
        MessageTypes([TaxHarvestRequest]).parse_payload("tax_harvest_request", data)


async def test_365_days_is_still_short_term() -> None:
    req = TaxHarvestRequest.model_validate(
        {
            "as_of": "2025-03-01",
            "lots": [lot("X", "2024-03-01", 1, 200, 100)],
            "realised_stcg": 1_000,
        }
    )
    (action,) = (await one(TaxHarvester("t"), req)).actions
    assert action.term == "short"
