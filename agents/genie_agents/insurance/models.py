"""Payloads of the insurance agents (amounts in rupees)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from genie import Payload

from .._common import Record

__all__ = [
    "ClaimDecision",
    "ClaimItem",
    "ClaimRequest",
    "CoverageRule",
    "MotorRequest",
    "MotorResponse",
    "PolicyTerms",
    "PreauthDecision",
    "PreauthRequest",
]


class CoverageRule(Record):
    category: str
    sublimit: float | None = Field(None, gt=0)
    copay: float = Field(0.0, ge=0, le=1, description="the insured's share, 0.1 = 10 %")


class PolicyTerms(Record):
    """A policy's rules as data: what it covers, its limits and exclusions."""

    policy_id: str
    start_date: date
    sum_insured: float = Field(gt=0)
    deductible: float = Field(0.0, ge=0)
    waiting_period_days: int = Field(0, ge=0)
    exclusions: tuple[str, ...] = ()
    coverage: tuple[CoverageRule, ...]


class ClaimItem(Record):
    category: str
    amount: float = Field(gt=0)


class ClaimRequest(Payload):
    message_type = "claim_request"
    claim_id: str
    policy: PolicyTerms
    incident_date: date
    items: tuple[ClaimItem, ...] = Field(min_length=1)
    paid_this_year: float = Field(0.0, ge=0)


class ClaimDecision(Payload):
    message_type = "claim_decision"
    claim_id: str
    action: Literal["approve", "approve_partial", "deny", "hitl"]
    claimed: float
    payable: float
    reasons: tuple[str, ...]


class PreauthRequest(Payload):
    message_type = "preauth_request"
    request_id: str
    policy_active: bool
    procedure: str
    estimate: float = Field(gt=0)
    stay_days: int = Field(ge=1)
    room_rent_per_day: float = Field(ge=0)
    room_rent_limit_per_day: float = Field(gt=0)
    sum_insured_remaining: float = Field(ge=0)
    excluded_procedures: tuple[str, ...] = ()


class PreauthDecision(Payload):
    message_type = "preauth_decision"
    request_id: str
    action: Literal["approve_full", "approve_with_deduction", "approve_partial", "deny", "hitl"]
    approved_amount: float
    reasons: tuple[str, ...]
    respond_by: datetime


class MotorRequest(Payload):
    """``kind``: fnol (first notice of loss), roadside or renewal_quote."""

    message_type = "motor_request"
    kind: str
    policy_id: str
    idv: float = Field(gt=0, description="insured declared value")
    repair_estimate: float = Field(0.0, ge=0)
    deductible: float = Field(1000.0, ge=0)
    city: str = ""
    claim_free_years: int = Field(0, ge=0)


class MotorResponse(Payload):
    message_type = "motor_response"
    kind: str
    policy_id: str
    action: str
    payable: float = 0.0
    premium: float = 0.0
    ncb: float = 0.0
    garages: tuple[str, ...] = ()
    detail: str = ""
