"""Payloads of the lending agents (amounts in rupees, rates in percent a year)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from genie import Payload

from .._common import MAX_AMOUNT, Amount, Record, once_each
from .._go import UNUSED, GoName, GoValueError, derived, go_names, paise, unit_share
from ..finance.statement import Transaction

__all__ = [
    "MAX_MONTHS",
    "CashFlows",
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
    "SmeLoanFile",
    "SmeLoanOffer",
    "SmeLoanRequest",
    "SmeOfferRelease",
    "UnderwriteRequest",
    "UnderwriteScore",
    "WorkflowStep",
]


# The longest a loan runs (100 years): an amortization stops here, an annuity is not longer.
MAX_MONTHS = 1200


class CashFlows(Payload):
    """An applicant's bank cash flows, as the underwriter reads them (the request to it, and
    the loan application the lending desk splits)."""

    applicant_id: str
    monthly_inflows: tuple[Amount, ...] = Field(min_length=3)
    monthly_outflows: tuple[Amount, ...] = Field(min_length=3)
    monthly_debt_service: float = Field(
        0.0, ge=0, description="paid out of the outflows: at most their mean"
    )
    bounces: int = Field(0, ge=0, description="bounced payments in the period")
    tenure_months: int = Field(0, ge=0, description="months with the bank")

    @field_validator("monthly_outflows")
    @classmethod
    def _same_months(cls, outflows: tuple[float, ...], info: ValidationInfo) -> tuple[float, ...]:
        inflows = info.data.get("monthly_inflows")
        if inflows is not None and len(inflows) != len(outflows):
            raise ValueError("monthly_inflows and monthly_outflows cover different months")
        return outflows

    @field_validator("monthly_debt_service")
    @classmethod
    def _paid_from_outflows(cls, debt_service: float, info: ValidationInfo) -> float:
        """A loan's EMI is a debit of the statement: a debt service above the mean outflow
        would score the applicant on spending that pays for none of it."""
        outflows = info.data.get("monthly_outflows")
        if outflows is not None and debt_service > statistics.fmean(outflows):
            raise ValueError(
                f"more than the mean monthly outflow {statistics.fmean(outflows):,.2f}, "
                "which pays it"
            )
        return debt_service


class SimulateLoan(Payload):
    """Checked by the agent, not the model, so that a bad loan gets Go's error text; the model
    bounds only the sizes no loan has (10^300 at 10^300 % overflowed the EMI)."""

    message_type = "simulate_loan"
    principal: float = Field(le=MAX_AMOUNT, description="at most 10^12")
    annual_rate_pct: float = Field(le=100_000, description="at most 100,000 % a year")
    months: int
    monthly_net_income: float = Field(
        0.0, ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="at most 10^12 either way"
    )

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


# Go's cues in a debit's description (and category): a returned payment, a loan or SIP debit.
GO_BOUNCE_CUES = ("return", "reversal", "rev:", "ach_return", "nft_return", "ecs ret")
GO_RECURRING_CUES = ("emi", "sip", "loan", "mortgage", "auto-debit", "nach", "ecs")


def _go_cash_flows(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's raw transactions counted as the port's inputs: credits and debits by calendar
    month (in rupees; a month with none is 0), bounces and recurring debits by Go's cues in
    the description, the months from the first transaction to the last as the tenure."""
    try:
        txns = [Transaction.model_validate(t) for t in go.get("transactions") or ()]
    except ValidationError as exc:
        error = exc.errors()[0]
        problem = "each date YYYY-MM-DD" if error["loc"] == ("date",) else error["msg"]
        raise GoValueError(f"Go transactions: {problem}", "transactions") from None
    if not txns:
        raise GoValueError("no transactions to underwrite", "transactions")
    month = [(d.year * 12 + d.month - 1) for d in (date.fromisoformat(t.date) for t in txns)]
    first, span = min(month), max(month) - min(month) + 1
    if span < 3:
        raise GoValueError(
            f"{span} calendar month(s): the port underwrites 3 or more", "transactions"
        )
    inflows, outflows = [0] * span, [0] * span
    bounces, recurring = 0, 0
    for t, m in zip(txns, month, strict=True):
        if t.amount_cents > 0:
            inflows[m - first] += t.amount_cents
            continue
        outflows[m - first] -= t.amount_cents
        text = f"{t.description} {t.category}".lower()
        bounces += any(cue in t.description.lower() for cue in GO_BOUNCE_CUES)
        recurring -= t.amount_cents if any(cue in text for cue in GO_RECURRING_CUES) else 0
    return out | {
        "monthly_inflows": [v / 100 for v in inflows],
        "monthly_outflows": [v / 100 for v in outflows],
        "monthly_debt_service": recurring / 100 / span,
        "bounces": bounces,
        "tenure_months": span,
    }


class UnderwriteRequest(CashFlows):
    message_type = "underwrite_request"

    _go = go_names(
        {
            "transactions": derived(
                "monthly_inflows and monthly_outflows (by calendar month), bounces and "
                "monthly_debt_service (Go's cues in the descriptions), tenure_months"
            )
        },
        then=_go_cash_flows,
        defaults={"applicant_id": ""},  # Go's request named no one
    )


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
        None,
        ge=1,
        le=MAX_MONTHS,
        description="instead of the EMI: the annuity that repays it in these months",
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

    @field_validator("loans")
    @classmethod
    def _each_loan_once(cls, loans: tuple[Loan, ...]) -> tuple[Loan, ...]:
        once_each((loan.loan_id for loan in loans), "loan")
        return loans


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


def _go_sme(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's zero tenor (not asked: the port's 60 months); Go's blank sector refused."""
    if out.get("tenure_months") == 0:
        del out["tenure_months"]
    if not out.get("sector"):
        # Go found a blank sector not covered (no CGTMSE); the port reads a blank one as not
        # told. A Go request says which, so that a blank cannot mean either silently.
        raise GoValueError("the borrower's sector (manufacturing, services, trading ...)", "sector")
    return out


class SmeLoanRequest(Payload):
    """The cash flow is given as monthly inflows and outflows, or as a cash-flow score (Go's,
    from ``cashflow_underwriter``), or both; the GST record as the returns filed on time, or
    as whether filing was regular (Go's flag: all of the last 12 on time), or both."""

    message_type = "sme_loan_request"
    business_id: str
    gstin: str | None = Field(description="null: none given (Go's request had none)")
    annual_turnover: float = Field(gt=0)
    requested_amount: float = Field(gt=0)
    monthly_inflows: tuple[Amount, ...] | None = Field(None, min_length=3)
    monthly_outflows: tuple[Amount, ...] | None = Field(None, min_length=3)
    existing_emi: float = Field(0.0, ge=0)
    cashflow_score: float | None = Field(
        None, ge=0, le=1, description="below 0.30 declines; prices the loan when given"
    )
    gst_returns_on_time: int | None = Field(
        None, ge=0, le=12, description="of the last 12 monthly returns"
    )
    gst_filing_regular: bool | None = Field(None, description="all of the last 12 on time")
    micro_or_small: bool = True
    udyam_registered: bool | None = Field(None, description="false: no CGTMSE guarantee")
    sector: str = Field("", description="CGTMSE covers manufacturing, services and trading")
    tenure_months: int | None = Field(None, ge=1, description="asked for; default 60")

    _go = go_names(
        {
            "borrower_id": "business_id",
            "annual_turnover_rupees": "annual_turnover",
            "requested_amount_rupees": "requested_amount",
            "requested_tenor_months": GoName("tenure_months", note="0: not asked (60 months)"),
            "cashflow_score_0_1": "cashflow_score",
            "collateral_rupees": UNUSED,  # Go's rules never read it either
        },
        then=_go_sme,
        defaults={"gstin": None},  # Go's application named no GSTIN
    )

    @model_validator(mode="after")
    def _inputs_given(self) -> SmeLoanRequest:
        inflows, outflows = self.monthly_inflows, self.monthly_outflows
        if (inflows is None) != (outflows is None):
            raise ValueError("monthly_inflows and monthly_outflows: give both or neither")
        if inflows is not None and outflows is not None and len(inflows) != len(outflows):
            raise ValueError("monthly_inflows and monthly_outflows cover different months")
        if self.monthly_inflows is None and self.cashflow_score is None:
            raise ValueError(
                "the cash flow: give monthly_inflows and monthly_outflows, or cashflow_score"
            )
        if self.gst_returns_on_time is None and self.gst_filing_regular is None:
            raise ValueError(
                "the GST record: give gst_returns_on_time (of 12), or gst_filing_regular"
            )
        on_time, regular = self.gst_returns_on_time, self.gst_filing_regular
        if on_time is not None and regular is not None and regular != (on_time == 12):
            raise ValueError(
                f"gst_filing_regular {regular} disagrees with {on_time}/12 returns on time: "
                "send one"
            )
        return self


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


class SmeLoanFile(Payload):
    """The state of the SME loan workflow (config/pipelines/sme-loan.yaml): the request, and
    what each step found, filled in as the steps run."""

    message_type = "sme_loan_file"
    request: SmeLoanRequest
    gst: str = Field("", description="the GST step's finding")
    surplus: float | None = Field(None, description="the monthly surplus, when flows are given")
    cashflow: str = Field("", description="the cash-flow step's finding")
    cgtmse: bool | None = Field(None, description="covered by the CGTMSE guarantee")
    cgtmse_detail: str = ""
    amount: float = 0.0
    annual_rate_pct: float = 0.0
    tenure_months: int = 0
    emi: int = 0
    offer: str = Field("", description="the indicative offer, in words")
    reservation: str = Field("", description="the lender's hold on the amount, while offered")
    sanction_letter: str = ""


class SmeOfferRelease(Payload):
    """Undo of the indicative offer: the lender's hold on the amount is released."""

    message_type = "sme_offer_release"
    request: SmeLoanRequest
    amount: float
    reservation: str


class Debt(Record):
    # Within these, 600 months of unpaid interest stay below 10^171: 10^12 % a year, or a
    # balance near 10^308, grew the schedule to infinity; a minimum of 10^300 was quoted with
    # its 300 digits.
    name: str
    balance: float = Field(gt=0, le=MAX_AMOUNT, description="at most 10^12")
    annual_rate_pct: float = Field(ge=0, le=1000, description="at most 1,000 % a year")
    min_payment: float = Field(gt=0, le=MAX_AMOUNT, description="at most 10^12")

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

    @field_validator("debts")
    @classmethod
    def _each_debt_once(cls, debts: tuple[Debt, ...]) -> tuple[Debt, ...]:
        once_each((debt.name for debt in debts), "debt")
        return debts


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
