"""Payloads of the insurance agents (amounts in rupees)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from genie import Payload

from .._common import Record
from .._go import GoValueError, derived, go_names

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
    exclusions: tuple[str, ...] = Field(
        (), description="categories, or words of the diagnosis (either excludes)"
    )
    coverage: tuple[CoverageRule, ...]
    network_only: tuple[str, ...] = Field(
        (), description="categories covered only at a network hospital"
    )


class ClaimItem(Record):
    category: str
    amount: float = Field(gt=0)


# Go counts a claim's days since the policy was issued; the port dates both, from this
# placeholder start (only the difference is read).
GO_POLICY_START = date(2000, 1, 1)


def _go_claim(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's claim (one amount for one peril, a diagnosis) and policy (a co-pay and per-peril
    sub-limits) as the port's: one item of the peril's category under one coverage rule."""
    claim, policy = go.get("claim"), go.get("policy")
    if not isinstance(claim, Mapping) or not isinstance(policy, Mapping):
        raise GoValueError("Go's request is a claim and a policy, two objects", "claim")
    peril = claim.get("peril")
    if not isinstance(peril, str) or not peril:
        raise GoValueError("the claim's peril (hospitalization, theft ...)", "claim.peril")
    days = claim.get("days_since_issue", 0)
    if not isinstance(days, int) or days < 0:
        raise GoValueError("whole days, 0 or more", "claim.days_since_issue")
    sub_limits = policy.get("sub_limits") or {}
    if not isinstance(sub_limits, Mapping):
        raise GoValueError("an object of peril -> amount", "policy.sub_limits")
    if not policy.get("sum_insured"):
        raise GoValueError("a positive sum insured (Go's 0 was no cap)", "policy.sum_insured")
    rule = {"category": peril, "copay": policy.get("copay_pct", 0)}
    if sub_limits.get(peril):  # Go: a sub-limit of 0 is none
        rule["sublimit"] = sub_limits[peril]
    terms = {
        "policy_id": claim.get("policy_code") or policy.get("product_code", ""),
        "start_date": GO_POLICY_START,
        "sum_insured": policy.get("sum_insured"),
        "deductible": policy.get("deductible_rupees", 0),
        "waiting_period_days": policy.get("waiting_period_days", 0),
        "exclusions": [e for e in policy.get("exclusions") or () if e],
        "coverage": [rule],
        "network_only": policy.get("network_only_perils") or (),
    }
    return out | {
        "claim_id": claim.get("claim_id", ""),
        "policy": terms,
        "incident_date": GO_POLICY_START + timedelta(days=days),
        "items": [{"category": peril, "amount": claim.get("incurred_rupees", 0)}],
        "diagnosis": claim.get("diagnosis", ""),
        "in_network": claim.get("hospital_in_network", False),
    }


class ClaimRequest(Payload):
    message_type = "claim_request"
    claim_id: str
    policy: PolicyTerms
    incident_date: date
    items: tuple[ClaimItem, ...] = Field(min_length=1)
    paid_this_year: float = Field(0.0, ge=0)
    diagnosis: str = ""
    in_network: bool = Field(True, description="treated at one of the insurer's network hospitals")

    # Go's request is {"claim": ..., "policy": ...}: "policy" is also the port's name, so the
    # Go shape is told by "claim", and Go's policy is converted with it.
    _go = go_names(
        {
            "claim": derived(
                "with Go's policy: claim_id, incident_date (days_since_issue), items (one, the "
                "peril's incurred_rupees), diagnosis, in_network; policy: one coverage rule for "
                "the peril (copay_pct, its sub_limits entry), deductible_rupees, exclusions, "
                "network_only_perils"
            ),
        },
        then=_go_claim,
    )


class ClaimDecision(Payload):
    message_type = "claim_decision"
    claim_id: str
    action: Literal["approve", "approve_partial", "deny", "hitl"]
    claimed: float
    payable: float
    reasons: tuple[str, ...]


def _go_preauth(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's request and plan (a bundle) as one port request: the plan's caps for this
    procedure, and which waiting period, if any, the admission falls in."""
    r, plan = go.get("request"), go.get("plan")
    if not isinstance(r, Mapping) or not isinstance(plan, Mapping):
        raise GoValueError("Go's request is a request and a plan, two objects", "request")
    months = r.get("policy_months_at_admit", 0)
    waiting = "served"
    if r.get("is_pre_existing") and months < plan.get("ped_waiting_months", 0):
        waiting = "pre_existing"
    elif r.get("is_specific_waiting") and months < plan.get("specific_waiting_months", 0):
        waiting = "specific"
    packages = plan.get("procedure_package_rupees") or {}
    if not isinstance(packages, Mapping):
        raise GoValueError("an object of procedure -> amount", "plan.procedure_package_rupees")
    procedure = r.get("procedure", "")
    package = packages.get(str(procedure).lower())
    if not plan.get("sum_insured_rupees"):
        raise GoValueError("a positive sum insured (Go's 0 was no cap)", "plan.sum_insured_rupees")
    return out | {
        "request_id": r.get("preauth_id", ""),
        "policy_active": True,  # Go's request did not say; its policy was in force
        "network_hospital": r.get("network_ppn", False),
        "procedure": procedure,
        "waiting_period": waiting,
        "estimate": r.get("estimated_bill_rupees", 0),
        "stay_days": r.get("length_of_stay_days", 0),
        "icu_days": r.get("icu_days", 0),
        "room_rent_per_day": r.get("room_rent_per_day_rupees", 0),
        "room_rent_limit_per_day": plan.get("room_rent_sublimit_rupees") or None,
        "icu_rent_per_day": r.get("icu_rent_per_day_rupees", 0),
        "icu_rent_limit_per_day": plan.get("icu_rent_sublimit_rupees") or None,
        "package_cap": package or None,  # Go: a package of 0 is none
        "copay": plan.get("copay_pct", 0),
        "sum_insured_remaining": plan.get("sum_insured_rupees"),
        "excluded_procedures": plan.get("excluded_procedures") or (),
    }


class PreauthRequest(Payload):
    message_type = "preauth_request"
    request_id: str
    policy_active: bool
    procedure: str
    estimate: float = Field(gt=0)
    stay_days: int = Field(ge=1)
    room_rent_per_day: float = Field(ge=0)
    room_rent_limit_per_day: float | None = Field(None, gt=0, description="none: no limit")
    sum_insured_remaining: float = Field(ge=0)
    excluded_procedures: tuple[str, ...] = ()
    network_hospital: bool = Field(True, description="cashless at network hospitals only")
    waiting_period: Literal["served", "pre_existing", "specific"] = Field(
        "served", description="a waiting period the admission falls in (denied)"
    )
    icu_days: int = Field(0, ge=0, description="of the stay, in intensive care")
    icu_rent_per_day: float = Field(0.0, ge=0)
    icu_rent_limit_per_day: float | None = Field(None, gt=0, description="none: no limit")
    package_cap: float | None = Field(None, gt=0, description="the procedure's package rate")
    copay: float = Field(0.0, ge=0, le=1, description="the insured's share, 0.1 = 10 %")

    # Go's request is {"request": ..., "plan": ...}.
    _go = go_names(
        {
            "request": derived(
                "with plan: request_id (preauth_id), network_hospital (network_ppn), "
                "procedure, waiting_period (is_pre_existing / is_specific_waiting against the "
                "plan's waiting months at policy_months_at_admit), estimate, stay_days, "
                "icu_days, room and ICU rent per day"
            ),
            "plan": derived(
                "sum_insured_remaining, the room and ICU rent limits, package_cap (the "
                "procedure's entry), copay (copay_pct), excluded_procedures"
            ),
        },
        then=_go_preauth,
    )


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
