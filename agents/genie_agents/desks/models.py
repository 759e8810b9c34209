"""Payloads of the desks: one application in, the specialists' bundle back, one decision out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genie import Payload
from genie.pipeline import Gathered

from ..fraud.models import KycRequest
from ..lending.models import Loan
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


class LoanApplication(Payload):
    message_type = "loan_application"
    applicant_id: str
    monthly_inflows: tuple[float, ...] = Field(min_length=3)
    monthly_outflows: tuple[float, ...] = Field(min_length=3)
    monthly_debt_service: float = Field(0.0, ge=0)
    bounces: int = Field(0, ge=0)
    tenure_months: int = Field(0, ge=0)
    principal: float
    annual_rate_pct: float
    months: int
    existing_loans: tuple[Loan, ...] = ()
    prepayment_budget: float = Field(0.0, ge=0)


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
