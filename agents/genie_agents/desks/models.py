"""Payloads of the desks: one application in, the specialists' bundle back, one decision out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from genie import Payload
from genie.pipeline import Gathered

from .._common import once_each
from ..fraud.models import KycRequest
from ..lending.models import MAX_MONTHS, CashFlows, Loan
from ..payments.models import PaymentRequest
from ..treasury.models import AlmRequest, LcrRequest, VarRequest

__all__ = [
    "LendingDecision",
    "LendingParts",
    "LoanApplication",
    "OnboardingApplication",
    "OnboardingDecision",
    "OnboardingParts",
    "TreasuryParts",
    "TreasuryReport",
    "TreasurySnapshot",
]


class OnboardingApplication(Payload):
    message_type = "onboarding_application"
    customer: KycRequest
    statement_csv: str = Field(description="the last months' bank statement (ingestor format)")
    first_payment: PaymentRequest


class OnboardingParts(Gathered):
    message_type = "onboarding_parts"


class OnboardingDecision(Payload):
    message_type = "onboarding_decision"
    customer_id: str
    decision: Literal["approve", "review", "reject"]
    reasons: tuple[str, ...]
    missing: tuple[str, ...] = ()


class LoanApplication(CashFlows):
    """The cash flows (checked as the underwriter's request is) and the loan asked for; a
    value that would fail a specialist is refused here, naming the field: a part that fails
    is a missing part, and the desk would refer the loan instead of saying what is wrong."""

    message_type = "loan_application"
    principal: float = Field(gt=0)
    annual_rate_pct: float = Field(ge=0)
    months: int = Field(ge=1, le=MAX_MONTHS)
    existing_loans: tuple[Loan, ...] = ()
    prepayment_budget: float = Field(0.0, ge=0)

    @field_validator("existing_loans")
    @classmethod
    def _each_loan_once(cls, loans: tuple[Loan, ...]) -> tuple[Loan, ...]:
        once_each((loan.loan_id for loan in loans), "loan")
        return loans


class LendingParts(Gathered):
    message_type = "lending_parts"


class LendingDecision(Payload):
    message_type = "lending_decision"
    applicant_id: str
    decision: Literal["approve", "refer", "decline"]
    reasons: tuple[str, ...]
    score: int | None
    emi: int | None
    dscr: float | None
    prepayment_tip: str = ""
    missing: tuple[str, ...] = ()


class TreasurySnapshot(Payload):
    message_type = "treasury_snapshot"
    var: VarRequest
    lcr: LcrRequest
    alm: AlmRequest


class TreasuryParts(Gathered):
    message_type = "treasury_parts"


class TreasuryReport(Payload):
    message_type = "treasury_report"
    status: Literal["green", "amber", "red"]
    lines: tuple[str, ...]
    missing: tuple[str, ...] = ()
