"""Lending agents: EMI and DSCR, underwriting signals, prepayment, payoff, the SME workflow.
Each expected number is worked out in the comment next to it."""

from __future__ import annotations

import re
from math import inf, nan
from typing import Any

import pytest
from genie_agents.lending import (
    CashflowUnderwriter,
    DebtOptimizer,
    LoanAdvisor,
    PrepaymentAdvisor,
    SmeLoanWorkflow,
)
from genie_agents.lending.loans import amortize
from genie_agents.lending.models import (
    DebtPayoffRequest,
    PrepaymentRequest,
    SimulateLoan,
    SmeLoanRequest,
    UnderwriteRequest,
)

from genie import InvalidMessageError, MessageTypes, NoReplyError, Payload

from .helpers import ask, one


# --- loan_advisor -----------------------------------------------------------------------------
async def test_emi_total_interest_and_dscr() -> None:
    # r = 10 %/12; EMI = P r (1+r)^60 / ((1+r)^60 - 1) = 10,623.52 -> 10,624
    loan = SimulateLoan(principal=500_000, annual_rate_pct=10, months=60, monthly_net_income=13_280)
    out = await one(LoanAdvisor("loan_advisor"), loan)
    assert (out.emi, out.total_interest) == (10_624, 10_624 * 60 - 500_000)
    assert (out.dscr, out.eligible) == (1.25, True)  # 13,280 / 10,623.52 = 1.25005
    short = await one(LoanAdvisor("l"), loan.model_copy(update={"monthly_net_income": 13_279}))
    assert (short.dscr, short.eligible) == (1.25, False)  # 1.24996 shows as 1.25 but fails


async def test_dscr_is_computed_on_the_exact_emi() -> None:
    # 13,279.50 / 10,623.52 = 1.25001: eligible. On the EMI rounded to the rupee first it
    # would be 13,279.50 / 10,624 = 1.24995, ineligible (issue 23).
    loan = SimulateLoan(
        principal=500_000, annual_rate_pct=10, months=60, monthly_net_income=13_279.50
    )
    out = await one(LoanAdvisor("l"), loan)
    assert (out.emi, out.dscr, out.eligible) == (10_624, 1.25, True)
    assert 13_279.50 / 10_624 < 1.25  # the rounded EMI would have refused it


async def test_zero_rate_divides_evenly() -> None:
    out = await one(LoanAdvisor("l"), SimulateLoan(principal=120_000, annual_rate_pct=0, months=12))
    assert (out.emi, out.total_interest, out.dscr, out.eligible) == (10_000, 0, 0.0, False)


@pytest.mark.parametrize(
    "bad",
    [
        {"principal": 0, "annual_rate_pct": 10, "months": 12},
        {"principal": 1000, "annual_rate_pct": 10, "months": 0},
        {"principal": 1000, "annual_rate_pct": -1, "months": 12},
    ],
)
async def test_invalid_loan_parameters(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"^invalid loan parameters$"):
        await one(LoanAdvisor("l"), SimulateLoan(**bad))


# --- cashflow_underwriter ---------------------------------------------------------------------
def underwrite(**changes: Any) -> UnderwriteRequest:
    base: dict[str, Any] = {
        "applicant_id": "A-1",
        "monthly_inflows": (100_000, 100_000, 100_000),
        "monthly_outflows": (70_000, 70_000, 70_000),
        "tenure_months": 36,
    }
    return UnderwriteRequest(**(base | changes))


async def test_perfect_cash_flows_score_900() -> None:
    out = await one(CashflowUnderwriter("cashflow_underwriter"), underwrite())
    assert (out.score, out.band) == (900, "prime")
    assert set(out.signals.values()) == {100.0}


async def test_weighted_signals() -> None:
    out = await one(
        CashflowUnderwriter("u"),
        underwrite(
            monthly_inflows=(80_000, 100_000, 120_000),  # cv = 16,329.93 / 100,000
            monthly_outflows=(90_000, 90_000, 90_000),  # saves 10 %: 10/30 of full marks
            monthly_debt_service=25_000,  # DTI 25 %: half of the 50 % ceiling
            bounces=2,
            tenure_months=18,
        ),
    )
    assert out.signals == {
        "inflow_stability": 83.67,
        "savings_rate": 33.33,
        "debt_burden": 50.0,
        "bounce_rate": 50.0,
        "expense_volatility": 100.0,
        "tenure": 50.0,
    }
    # .25 x 83.67 + .2 x 33.33 + .2 x 50 + .15 x 50 + .1 x 100 + .1 x 50 = 60.084;
    # 300 + 6 x 60.084 = 660.5 -> 661
    assert (out.score, out.band) == (661, "near_prime")


async def test_underwriting_errors() -> None:
    with pytest.raises(ValueError, match="cover different months"):
        await one(CashflowUnderwriter("u"), underwrite(monthly_outflows=(1, 2, 3, 4)))
    with pytest.raises(ValueError, match="no inflows to underwrite"):
        await one(CashflowUnderwriter("u"), underwrite(monthly_inflows=(0, 0, 0)))
    types = MessageTypes([UnderwriteRequest])
    with pytest.raises(InvalidMessageError, match="field 'monthly_inflows'"):
        types.parse_payload(
            "underwrite_request",
            {"applicant_id": "a", "monthly_inflows": [1, 2], "monthly_outflows": [1, 2, 3]},
        )


# --- prepayment_advisor -----------------------------------------------------------------------
def test_amortize_by_hand() -> None:
    # 20,000 at 1 %/month, EMI 10,000: 200 -> 10,200; 102 -> 302; 3.02 -> paid off.
    months, interest = amortize(20_000, 12, 10_000)
    assert (months, round(interest, 2)) == (3, 305.02)
    with pytest.raises(ValueError, match="does not cover the monthly interest"):
        amortize(100_000, 12, 1_000)


async def test_prepayment_options_best_first() -> None:
    req = PrepaymentRequest.model_validate(
        {
            "lump_sum": 10_000,
            "loans": [
                {"loan_id": "free", "outstanding": 10_000, "annual_rate_pct": 0, "emi": 5_000},
                {
                    "loan_id": "A",
                    "outstanding": 20_000,
                    "annual_rate_pct": 12,
                    "emi": 10_000,
                    "foreclosure_penalty_pct": 2,
                },
            ],
        }
    )
    plan = await one(PrepaymentAdvisor("prepayment_advisor"), req)
    a, free = plan.options
    # A: 305.02 interest before; 10,000 left: 100 -> 100; 1 -> paid: 101 after.
    assert (a.loan_id, a.interest_saved, a.penalty, a.net_saving, a.months_saved) == (
        "A",
        204.02,
        200.0,
        4.02,
        1,
    )
    assert not a.forecloses
    assert (free.interest_saved, free.months_saved, free.forecloses) == (0.0, 2, True)
    assert plan.best == "A"


async def test_prepayment_names_a_loan_that_never_amortizes() -> None:
    req = PrepaymentRequest.model_validate(
        {
            "lump_sum": 1,
            "loans": [
                {"loan_id": "bad", "outstanding": 100_000, "annual_rate_pct": 12, "emi": 1_000}
            ],
        }
    )
    with pytest.raises(ValueError, match="loan bad: the EMI does not cover"):
        await one(PrepaymentAdvisor("p"), req)


# --- debt_optimizer ---------------------------------------------------------------------------
DEBTS = [
    {"name": "card", "balance": 1_000, "annual_rate_pct": 24, "min_payment": 100},
    {"name": "personal", "balance": 500, "annual_rate_pct": 12, "min_payment": 50},
]


async def payoff(strategy: str, budget: float = 400, debts: Any = DEBTS) -> Any:
    req = DebtPayoffRequest.model_validate(
        {"debts": debts, "monthly_budget": budget, "strategy": strategy}
    )
    return await one(DebtOptimizer("debt_optimizer"), req)


async def test_avalanche_by_hand() -> None:
    # m1: card 1,020 -> 920 -> 670 (extra 250); personal 505 -> 455
    # m2: card 683.40 -> 583.40 -> 333.40; personal 459.55 -> 409.55
    # m3: card 340.068 -> paid (240.068 + 100), 9.932 left over to personal: 353.7135
    # m4: personal 357.25 -> paid.  Interest: card 20 + 13.4 + 6.668, personal 17.1826
    plan = await payoff("avalanche")
    assert [(p.name, p.month, p.interest) for p in plan.payoffs] == [
        ("card", 3, 40.07),
        ("personal", 4, 17.18),
    ]
    assert (plan.months, plan.total_interest, plan.capped) == (4, 57.25, False)


async def test_snowball_by_hand() -> None:
    # m1: personal 505 -> 455 -> 205; card 1,020 -> 920
    # m2: personal 207.05 -> paid, 92.95 to card: 938.40 -> 838.40 -> 745.45
    # m3: 760.359 -> 360.359; m4: 367.566 -> paid.  Card interest 20 + 18.4 + 14.909 + 7.207
    plan = await payoff("snowball")
    assert [(p.name, p.month, p.interest) for p in plan.payoffs] == [
        ("personal", 2, 7.05),
        ("card", 4, 60.52),
    ]
    assert plan.total_interest == 67.57


async def test_payoff_cap_and_budget_error() -> None:
    slow = await payoff(
        "avalanche",
        budget=1,
        debts=[{"name": "x", "balance": 1_000_000, "annual_rate_pct": 0, "min_payment": 1}],
    )
    assert (slow.months, slow.capped, slow.payoffs) == (600, True, ())
    with pytest.raises(ValueError, match=r"budget 149\.00 is below the minimum payments 150\.00"):
        await payoff("avalanche", budget=149)


async def test_a_budget_of_the_minimums_is_enough_to_the_paisa() -> None:
    # Fifty minimums of 0.01 add up to 0.5000000000000002 in floats: a budget of 0.50 was
    # refused as "below the minimum payments 0.50".
    debts = [
        {"name": f"d{i}", "balance": 1, "annual_rate_pct": 0, "min_payment": 0.01}
        for i in range(50)
    ]
    plan = await payoff("avalanche", budget=0.5, debts=debts)
    assert (plan.months, plan.capped) == (100, False)


# --- sme_loan_workflow ------------------------------------------------------------------------
def sme(**changes: Any) -> SmeLoanRequest:
    base: dict[str, Any] = {
        "business_id": "B-1",
        "gstin": "27AAPFU0939F1ZV",
        "annual_turnover": 10_000_000,
        "requested_amount": 2_000_000,
        "monthly_inflows": (1_000_000,) * 3,
        "monthly_outflows": (800_000,) * 3,
        "existing_emi": 50_000,
        "gst_returns_on_time": 9,
    }
    return SmeLoanRequest(**(base | changes))


def statuses(offer: Any) -> list[tuple[str, str]]:
    return [(s.name, s.status) for s in offer.steps]


async def test_sme_sanctioned_end_to_end() -> None:
    # surplus 1,000,000 - 800,000 - 50,000 = 150,000; half services 3.49 M over 60 months at
    # 10.5 %; 30 % of turnover is 3 M; the 2 M asked is the least. EMI 2 M x 0.0214939 = 42,988.
    offer = await one(SmeLoanWorkflow("sme_loan_workflow"), sme())
    assert (offer.status, offer.amount, offer.annual_rate_pct, offer.emi, offer.cgtmse) == (
        "sanctioned",
        2_000_000,
        10.5,
        42_988,
        True,
    )
    assert all(status == "done" for _, status in statuses(offer))
    assert offer.sanction_letter == (
        "Sanctioned to B-1: Rs 2,000,000 at 10.5% a year for 60 months, EMI Rs 42,988, "
        "CGTMSE guarantee cover."
    )


async def test_sme_offer_capped_at_30_percent_of_turnover_without_guarantee() -> None:
    offer = await one(SmeLoanWorkflow("s"), sme(requested_amount=4_000_000, micro_or_small=False))
    assert (offer.amount, offer.annual_rate_pct, offer.cgtmse) == (3_000_000, 12.0, False)
    assert offer.steps[3].detail == "Rs 3,000,000 at 12.0% for 60 months (reduced from the request)"


@pytest.mark.parametrize(
    ("changes", "failed", "detail"),
    [
        ({"gstin": "27AAPFU0939F1Z"}, "gst_fetch", "GSTIN '27AAPFU0939F1Z' is not valid"),
        ({"gst_returns_on_time": 8}, "gst_fetch", "8/12 GST returns on time (needs 9)"),
        (
            {"existing_emi": 200_000},
            "cashflow_analysis",
            "monthly surplus 0.00 after existing EMIs",
        ),
    ],
)
async def test_sme_declines_at_the_failed_step(
    changes: dict[str, Any], failed: str, detail: str
) -> None:
    offer = await one(SmeLoanWorkflow("s"), sme(**changes))
    assert offer.status == "declined"
    failed_step = next(s for s in offer.steps if s.status == "failed")
    assert (failed_step.name, failed_step.detail) == (failed, detail)
    after = [s.status for s in offer.steps[offer.steps.index(failed_step) + 1 :]]
    assert after
    assert set(after) == {"skipped"}
    assert (offer.amount, offer.sanction_letter) == (0.0, "")


async def test_sme_waits_for_a_human_when_not_auto_approved() -> None:
    offer = await one(SmeLoanWorkflow("s", auto_approve=False), sme())
    assert offer.status == "awaiting_approval"
    assert statuses(offer)[-2:] == [("human_approval", "waiting"), ("sanction_letter", "skipped")]
    assert offer.sanction_letter == ""


# --- hostile but well-formed requests: a right answer or a refusal naming the field ------------
LOAN_X = {"loan_id": "x", "outstanding": 100_000, "annual_rate_pct": 12, "emi": 5_000}
DEBT_A = {"name": "a", "balance": 1_000, "annual_rate_pct": 12, "min_payment": 100}


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        # The same debt twice was kept once: a schedule for half the debt.
        (DebtPayoffRequest, {"debts": [DEBT_A, DEBT_A], "monthly_budget": 500}, "debts"),
        (PrepaymentRequest, {"loans": [LOAN_X, LOAN_X], "lump_sum": 1_000}, "loans"),
        # NaN and infinity scored as a perfect signal (a NaN compares false to the clamp's
        # bounds) or priced a loan.
        (
            UnderwriteRequest,
            {"applicant_id": "a", "monthly_inflows": [nan, nan, nan], "monthly_outflows": [1] * 3},
            "monthly_inflows.0",
        ),
        (PrepaymentRequest, {"loans": [LOAN_X | {"emi": inf}], "lump_sum": 1}, "loans.0.emi"),
        (
            SimulateLoan,
            {"principal": 1, "annual_rate_pct": 1, "months": 1, "monthly_net_income": inf},
            "monthly_net_income",
        ),
        # An annuity over more than 100 years (the amortization's cap) is no loan's EMI.
        (
            PrepaymentRequest,
            {"loans": [LOAN_X | {"emi": None, "months_remaining": 1_201}], "lump_sum": 1},
            "loans.0.months_remaining",
        ),
    ],
)
def test_a_hostile_request_is_refused_naming_the_field(
    model: type[Payload], data: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidMessageError, match=f"field '{re.escape(field)}'"):
        MessageTypes([model]).parse_payload(model.message_type, data)


async def test_an_emi_at_a_usurious_rate_is_the_interest_not_an_overflow() -> None:
    # (1 + r)^n overflows a float for n = 1,200 at 100,000 % a year (r = 83.33 a month); the
    # annuity tends to P x r: 100,000 x 1,000 / 12 = 8,333,333.33 -> 8,333,333.
    out = await ask(
        "loan_advisor",
        SimulateLoan(principal=100_000, annual_rate_pct=100_000, months=1_200),
    )
    assert out.emi == 8_333_333


async def test_a_term_past_100_years_is_an_invalid_loan() -> None:
    # 10^400 months is no float: the advisor failed on an OverflowError, not on the loan. The
    # refusal says why, without the 400 digits.
    for months in (1_201, 10**400):
        loan = SimulateLoan(principal=1, annual_rate_pct=10, months=months)
        with pytest.raises(
            NoReplyError, match=r"invalid loan parameters: a term over 1,200 months\)$"
        ):
            await ask("loan_advisor", loan)


async def test_a_principal_under_a_paisa_is_an_invalid_loan() -> None:
    # Its EMI is so small that the cover ratio was infinite, and the answer failed its model.
    loan = SimulateLoan(principal=1e-300, annual_rate_pct=0, months=12, monthly_net_income=1e12)
    with pytest.raises(NoReplyError, match=r"invalid loan parameters: a principal under a paisa"):
        await ask("loan_advisor", loan)
    smallest = loan.model_copy(update={"principal": 0.01})
    assert (await ask("loan_advisor", smallest)).eligible


async def test_a_loan_that_outlasts_the_cap_is_refused_not_cut_short() -> None:
    # Interest 100,000 a month against an EMI of 100,000.10: n = ln(1,000,001) / ln(1.01)
    # = 1,388.5 months, past the 1,200 the amortization runs: its interest was cut short.
    slow = LOAN_X | {"outstanding": 10_000_000, "emi": 100_000.10}
    with pytest.raises(NoReplyError, match="loan x: not repaid within 1,200 months"):
        await ask(
            "prepayment_advisor", PrepaymentRequest.model_validate({"loans": [slow], "lump_sum": 1})
        )
