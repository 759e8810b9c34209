"""Payloads of the insurance agents (amounts in rupees)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from genie import Payload

from .._common import Record, once_each
from .._go import UNUSED, GoValueError, derived, go_names

__all__ = [
    "ClaimDecision",
    "ClaimItem",
    "ClaimRequest",
    "CoverageRule",
    "MotorRequest",
    "MotorResponse",
    "NCB_LADDER",
    "PolicyTerms",
    "PreauthDecision",
    "PreauthRequest",
    "city_at",
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
    # A blank exclusion is a word of every diagnosis: it would deny every claim.
    exclusions: tuple[Annotated[str, Field(pattern=r"\S")], ...] = Field(
        (), description="categories, or words of the diagnosis (either excludes); not blank"
    )
    coverage: tuple[CoverageRule, ...] = Field(description="one rule per category")
    network_only: tuple[str, ...] = Field(
        (), description="categories covered only at a network hospital"
    )

    @field_validator("coverage")
    @classmethod
    def _one_rule_per_category(cls, rules: tuple[CoverageRule, ...]) -> tuple[CoverageRule, ...]:
        once_each((rule.category for rule in rules), "coverage category")
        return rules


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


NCB_LADDER = (0.0, 0.20, 0.25, 0.35, 0.45, 0.50)  # by claim-free years, 5+ keeps 50 %
# Go's placeholder geocoder: a box of latitude and longitude per city with network garages.
CITY_BOXES = {
    "delhi": ((28.4, 28.8), (76.8, 77.5)),
    "mumbai": ((18.9, 19.2), (72.7, 73.1)),
    "bengaluru": ((12.8, 13.2), (77.4, 77.8)),
}


def city_at(latitude: float, longitude: float) -> str:
    """The city whose box holds the point (Go's boxes, bounds excluded), or ``""``."""
    for city, ((south, north), (west, east)) in CITY_BOXES.items():
        if south < latitude < north and west < longitude < east:
            return city
    return ""


def _go_motor(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's zeros (an IDV, hours to expiry, a location left out), its kind in any case, and
    its NCB now with a claim this year as the claim-free years the renewal is priced at."""
    if isinstance(out.get("kind"), str):
        out["kind"] = out["kind"].lower()  # Go matched the kind in any case
    for field in ("idv", "hours_to_expiry"):
        if out.get(field) == 0:  # Go's omitempty zero: not told
            del out[field]
    if out.get("latitude") == 0 and out.get("longitude") == 0:  # Go's zero location
        del out["latitude"], out["longitude"]
    if "ncb_pct" not in go and "claimed_this_year" not in go:
        return out
    if "claim_free_years" in out:
        raise GoValueError(
            "given twice, as 'claim_free_years' and as the Go system's 'ncb_pct' and "
            "'claimed_this_year': send one",
            "claim_free_years",
        )
    claimed = go.get("claimed_this_year", False)
    if not isinstance(claimed, bool):
        raise GoValueError("true or false", "claimed_this_year")
    ncb = go.get("ncb_pct", 0)
    steps = [round(share * 100) for share in NCB_LADDER]
    if isinstance(ncb, bool) or ncb not in steps:
        raise GoValueError(f"the NCB now, a step of the ladder {steps} (percent)", "ncb_pct")
    # A clean year climbs one step of the ladder (k claim-free years hold its k-th step);
    # a claim this year resets it.
    return out | {"claim_free_years": 0 if claimed else steps.index(ncb) + 1}


class MotorRequest(Payload):
    """``kind``: fnol (first notice of loss), roadside or renewal_quote."""

    message_type = "motor_request"
    kind: str
    policy_id: str
    idv: float | None = Field(
        None, gt=0, description="insured declared value (needed for fnol and renewal_quote)"
    )
    repair_estimate: float = Field(0.0, ge=0)
    deductible: float = Field(1000.0, ge=0)
    city: str = ""
    latitude: float | None = Field(None, ge=-90, le=90, description="where the vehicle is")
    longitude: float | None = Field(None, ge=-180, le=180)
    claim_free_years: int = Field(0, ge=0)
    zero_dep: bool = Field(False, description="the zero-depreciation add-on (own damage +10 %)")
    hours_to_expiry: int | None = Field(
        None, ge=0, description="of the policy renewed: under 72 warns"
    )

    _go = go_names(
        {
            "policy_number": "policy_id",
            "idv_rupees": "idv",
            "est_repair_cost_rupees": "repair_estimate",
            "lat": "latitude",
            "lng": "longitude",
            "zero_dep_addon": "zero_dep",
            "ncb_pct": derived(
                "with claimed_this_year: claim_free_years (a claim this year: 0; else one "
                "step up the ladder from this NCB)"
            ),
            "claimed_this_year": derived("with ncb_pct: claim_free_years"),
            "vehicle_reg": UNUSED,
            "incident_type": UNUSED,  # Go's rules never read it either
        },
        then=_go_motor,
    )

    @model_validator(mode="after")
    def _consistent(self) -> MotorRequest:
        if self.kind in ("fnol", "renewal_quote") and self.idv is None:
            raise ValueError(f"idv (the insured declared value) is needed for {self.kind}")
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude: give both or neither")
        if self.latitude is not None and self.longitude is not None and self.city:
            located = city_at(self.latitude, self.longitude)
            if located and located != self.city.casefold():
                raise ValueError(f"city {self.city!r}, but the coordinates are in {located}")
        return self

    @property
    def located_city(self) -> str:
        """The city given, else the one the coordinates fall in (``""``: neither)."""
        if self.city or self.latitude is None or self.longitude is None:
            return self.city
        return city_at(self.latitude, self.longitude)


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
