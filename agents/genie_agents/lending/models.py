"""Payloads of the lending agents (amounts in rupees, rates in percent a year)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from genie import Payload

from .._common import Record
from .._go import UNUSED, GoName, GoValueError, go_names, paise, unit_share

__all__ = [
    "Debt",
    "DebtPayoff",
    "DebtPayoffPlan",
    "DebtPayoffRequest",
    "Loan",
    "LoanSimulation",
    "PrepaymentOption",
    "PrepaymentPlan",
    "PrepaymentRequest",
    "SimulateLoan",
    "SmeLoanOffer",
    "SmeLoanRequest",
    "UnderwriteRequest",
    "UnderwriteScore",
    "WorkflowStep",
]


class SimulateLoan(Payload):
    """Checked by the agent, not the model, so that a bad loan gets Go's error text."""

    message_type = "simulate_loan"
    principal: float
    annual_rate_pct: float
    months: int
    monthly_net_income: float = 0.0

    _go = go_names(
        {
            "principal_cents": GoName("principal", paise),
            "apr_pct": "annual_rate_pct",
            "term_months": "months",
            "monthly_net_cents": GoName("monthly_net_income", paise),
        }
    )


class LoanSimulation(Payload):
    message_type = "loan_simulation"
    principal: float
    annual_rate_pct: float
    months: int
    emi: int
    total_interest: int
    dscr: float
    eligible: bool


class UnderwriteRequest(Payload):
    message_type = "underwrite_request"
    applicant_id: str
    monthly_inflows: tuple[float, ...] = Field(min_length=3)
    monthly_outflows: tuple[float, ...] = Field(min_length=3)
    monthly_debt_service: float = Field(0.0, ge=0)
    bounces: int = Field(0, ge=0, description="bounced payments in the period")
    tenure_months: int = Field(0, ge=0, description="months with the bank")


class UnderwriteScore(Payload):
    message_type = "underwrite_score"
    applicant_id: str
    score: int
    band: Literal["prime", "near_prime", "subprime"]
    signals: dict[str, float]


class Loan(Record):
    loan_id: str
    outstanding: float = Field(gt=0)
    annual_rate_pct: float = Field(ge=0)
    emi: float | None = Field(None, gt=0, description="the instalment; or months_remaining")
    months_remaining: int | None = Field(
        None, ge=1, description="instead of the EMI: the annuity that repays it in these months"
    )
    foreclosure_penalty_pct: float = Field(0.0, ge=0)
    tax_deductible: bool = Field(
        False, description="interest deducted from income (a home loan): saved after tax"
    )

    _go = go_names(
        {
            "name": "loan_id",
            "outstanding_rupees": "outstanding",
            "apr": GoName("annual_rate_pct", unit_share),
            # Go only flagged a fixed rate; the port takes the penalty itself.
            "is_fixed_rate": UNUSED,
        }
    )

    @model_validator(mode="after")
    def _one_instalment(self) -> Loan:
        if (self.emi is None) == (self.months_remaining is None):
            raise ValueError(f"loan {self.loan_id}: give emi or months_remaining (one of them)")
        return self


class PrepaymentRequest(Payload):
    message_type = "prepayment_request"
    loans: tuple[Loan, ...] = Field(min_length=1)
    lump_sum: float = Field(gt=0)
    marginal_rate_pct: float = Field(
        0.0, ge=0, lt=100, description="the borrower's slab: what tax-deductible interest costs"
    )

    _go = go_names(
        {"prepayment_amount_rupees": "lump_sum", "borrower_slab_pct": "marginal_rate_pct"}
    )


class PrepaymentOption(Record):
    loan_id: str
    prepay: float
    interest_saved: float
    penalty: float
    net_saving: float
    months_saved: int
    forecloses: bool


class PrepaymentPlan(Payload):
    message_type = "prepayment_plan"
    best: str
    options: tuple[PrepaymentOption, ...]
    allocation: tuple[PrepaymentOption, ...] = Field(
        description="the sum split across the loans, dearest after tax first"
    )
    allocation_net_saving: float


class SmeLoanRequest(Payload):
    message_type = "sme_loan_request"
    business_id: str
    gstin: str
    annual_turnover: float = Field(gt=0)
    requested_amount: float = Field(gt=0)
    monthly_inflows: tuple[float, ...] = Field(min_length=3)
    monthly_outflows: tuple[float, ...] = Field(min_length=3)
    existing_emi: float = Field(0.0, ge=0)
    gst_returns_on_time: int = Field(ge=0, le=12, description="of the last 12 monthly returns")
    micro_or_small: bool = True


class WorkflowStep(Record):
    name: str
    status: Literal["done", "failed", "waiting", "skipped"]
    detail: str


class SmeLoanOffer(Payload):
    message_type = "sme_loan_offer"
    business_id: str
    status: Literal["sanctioned", "awaiting_approval", "declined"]
    amount: float
    annual_rate_pct: float
    tenure_months: int
    emi: int
    cgtmse: bool
    steps: tuple[WorkflowStep, ...]
    sanction_letter: str = ""


class Debt(Record):
    name: str
    balance: float = Field(gt=0)
    annual_rate_pct: float = Field(ge=0)
    min_payment: float = Field(gt=0)

    _go = go_names(
        {
            "balance_rupees": "balance",
            "apr": GoName("annual_rate_pct", unit_share),  # Go: 0.12 for 12 %
            "min_payment_rupees": "min_payment",
        }
    )


def _go_budget(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go pays the minimums plus ``extra_per_month_rupees``; the port takes the whole budget.
    A blank strategy was avalanche."""
    if not out.get("strategy"):
        out["strategy"] = "avalanche"
    if "extra_per_month_rupees" not in go:
        return out
    if "monthly_budget" in out:
        raise GoValueError(
            "given twice, as 'monthly_budget' and as the Go system's 'extra_per_month_rupees' "
            "(the budget is the minimums plus the extra): send one",
            "monthly_budget",
        )
    extra, debts = go["extra_per_month_rupees"], out.get("debts")
    minimums: list[float] = []
    for debt in debts if isinstance(debts, list) else []:
        pay = (
            debt.get("min_payment_rupees", debt.get("min_payment"))
            if isinstance(debt, Mapping)
            else None
        )
        if not isinstance(pay, int | float):
            raise GoValueError("needs each debt's min_payment_rupees", "extra_per_month_rupees")
        minimums.append(pay)
    if not isinstance(extra, int | float):
        raise GoValueError("a number of rupees", "extra_per_month_rupees")
    return out | {"monthly_budget": sum(minimums) + extra}


class DebtPayoffRequest(Payload):
    message_type = "debt_payoff_request"
    debts: tuple[Debt, ...] = Field(min_length=1)
    monthly_budget: float = Field(gt=0)
    strategy: Literal["avalanche", "snowball"] = "avalanche"

    _go = go_names({"extra_per_month_rupees": UNUSED}, then=_go_budget)


class DebtPayoff(Record):
    name: str
    month: int
    interest: float


class DebtPayoffPlan(Payload):
    message_type = "debt_payoff_plan"
    strategy: str
    months: int
    total_interest: float
    payoffs: tuple[DebtPayoff, ...]
    capped: bool = Field(description="true when the 600-month cap ended the schedule")
