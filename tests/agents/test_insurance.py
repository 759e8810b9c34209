"""Claims, pre-authorisation and motor: hand-computed amounts at each rule's edge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import pytest
from genie_agents.insurance import AutoInsurance, ClaimAdjudicator, HealthPreauth
from genie_agents.insurance.models import ClaimItem, ClaimRequest, MotorRequest, PreauthRequest

from genie import InvalidMessageError, MessageTypes

from .helpers import T0, ask, one

POLICY: dict[str, Any] = {
    "policy_id": "H-1",
    "start_date": "2025-01-01",
    "sum_insured": 500_000,
    "deductible": 5_000,
    "waiting_period_days": 30,
    "exclusions": ["cosmetic"],
    "coverage": [
        {"category": "hospitalisation"},
        {"category": "room_rent", "sublimit": 20_000},
        {"category": "pharmacy", "copay": 0.1},
    ],
}


def claim(items: Mapping[str, float], *, on: str = "2025-06-01", **changes: Any) -> ClaimRequest:
    policy = POLICY | changes.pop("policy", {})
    return ClaimRequest.model_validate(
        {
            "claim_id": "C-1",
            "policy": policy,
            "incident_date": on,
            "items": [{"category": c, "amount": a} for c, a in items.items()],
            **changes,
        }
    )


async def adjudicate(req: ClaimRequest) -> Any:
    return await one(ClaimAdjudicator("claim_adjudicator"), req)


async def test_claim_items_sublimit_copay_exclusion_deductible() -> None:
    items = {
        "hospitalisation": 50_000,
        "room_rent": 30_000,  # capped at 20,000
        "pharmacy": 10_000,  # 10 % co-pay: 9,000
        "cosmetic": 5_000,  # excluded
        "dental": 1_000,  # not covered
    }
    out = await adjudicate(claim(items))
    # Admitted: 50,000 + 20,000 (the sublimit) + 10,000 = 80,000. The 5,000 deductible is
    # shared in proportion (3,125, 1,250 and 625), then the pharmacy's 10 % co-pay on its
    # 9,375 left: 46,875 + 18,750 + 8,437.50 = 74,062.50 of 96,000 claimed.
    assert (out.action, out.claimed, out.payable) == ("approve_partial", 96_000, 74_062.50)
    assert out.reasons == (
        "room_rent: capped at the sublimit 20,000.00",
        "cosmetic: excluded",
        "dental: not covered",
        "deductible 5,000.00",
        "pharmacy: 10% co-payment",
    )


async def test_claim_deductible_comes_before_the_copay() -> None:
    # One item, a 10 % co-pay: (55,000 - 5,000) x 0.9 = 45,000 (co-pay first would be
    # 55,000 x 0.9 - 5,000 = 44,500).
    policy = {"coverage": [{"category": "hospitalisation", "copay": 0.1}]}
    out = await adjudicate(claim({"hospitalisation": 55_000}, policy=policy))
    assert out.payable == 45_000


async def test_claim_order_of_items_does_not_move_the_deductible() -> None:
    # 10,000 of pharmacy (10 % co-pay) and 10,000 of hospitalisation, a 5,000 deductible:
    # 2,500 off each, so 7,500 x 0.9 + 7,500 = 14,250 whichever item comes first.
    first = claim({"pharmacy": 10_000, "hospitalisation": 10_000})
    second = claim({"hospitalisation": 10_000, "pharmacy": 10_000})
    assert [(await adjudicate(c)).payable for c in (first, second)] == [14_250, 14_250]


async def test_claim_waiting_period_edge() -> None:
    inside = await adjudicate(claim({"hospitalisation": 10_000}, on="2025-01-30"))
    assert (inside.action, inside.reasons) == (
        "deny",
        ("incident within the 30-day waiting period",),
    )
    first_day = await adjudicate(claim({"hospitalisation": 10_000}, on="2025-01-31"))
    assert (first_day.action, first_day.payable) == ("approve_partial", 5_000)


@pytest.mark.parametrize(
    ("items", "changes", "action", "payable"),
    [
        ({"hospitalisation": 10_000}, {"policy": {"deductible": 0}}, "approve", 10_000),
        ({"hospitalisation": 199_999}, {"policy": {"deductible": 0}}, "approve", 199_999),
        ({"hospitalisation": 200_000}, {}, "hitl", 195_000),
        ({"cosmetic": 5_000}, {}, "deny", 0),
        ({"hospitalisation": 50_000}, {"paid_this_year": 480_000}, "approve_partial", 20_000),
    ],
)
async def test_claim_actions(
    items: dict[str, float], changes: dict[str, Any], action: str, payable: float
) -> None:
    out = await adjudicate(claim(items, **changes))
    assert (out.action, out.payable) == (action, payable)


async def test_a_sublimit_caps_the_category_not_each_item() -> None:
    # Room rent billed as three items of 10,000: the 20,000 sublimit caps their 30,000, as it
    # caps one item of 30,000; then the 5,000 deductible: 15,000 of 30,000. Each item under
    # the sublimit alone paid 25,000.
    req = claim({"room_rent": 1}).model_copy(
        update={"items": (ClaimItem(category="room_rent", amount=10_000),) * 3}
    )
    out = await ask("claim_adjudicator", req)
    assert (out.action, out.claimed, out.payable) == ("approve_partial", 30_000, 15_000)
    assert "room_rent: capped at the sublimit 20,000.00" in out.reasons


async def test_an_incident_before_the_policy_started_is_denied_saying_so() -> None:
    out = await ask("claim_adjudicator", claim({"hospitalisation": 10_000}, on="2024-12-31"))
    assert (out.action, out.reasons) == (
        "deny",
        ("incident on 2024-12-31, before the policy started on 2025-01-01",),
    )


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        # Two rules for one category: the last one silently won (here, no sublimit at all).
        (
            {
                "coverage": [
                    {"category": "room_rent", "sublimit": 20_000},
                    {"category": "room_rent"},
                ]
            },
            "policy.coverage",
        ),
        # A blank exclusion is a word of every diagnosis: every claim was denied.
        ({"exclusions": [""]}, "policy.exclusions.0"),
        ({"exclusions": ["  "]}, "policy.exclusions.0"),
    ],
)
def test_policy_terms_that_cannot_be_read_one_way_are_refused(
    policy: dict[str, Any], field: str
) -> None:
    data = {
        "claim_id": "C-1",
        "policy": POLICY | policy,
        "incident_date": "2025-06-01",
        "items": [{"category": "room_rent", "amount": 1_000}],
    }
    with pytest.raises(InvalidMessageError, match=f"field '{re.escape(field)}'"):
        MessageTypes([ClaimRequest]).parse_payload("claim_request", data)


# --- health_preauth ---------------------------------------------------------------------------
def preauth(**changes: Any) -> PreauthRequest:
    base: dict[str, Any] = {
        "request_id": "P-1",
        "policy_active": True,
        "procedure": "appendectomy",
        "estimate": 100_000,
        "stay_days": 3,
        "room_rent_per_day": 4_000,
        "room_rent_limit_per_day": 4_000,
        "sum_insured_remaining": 300_000,
        "excluded_procedures": ["LASIK"],
    }
    return PreauthRequest(**(base | changes))


@pytest.mark.parametrize(
    ("changes", "action", "amount", "reasons"),
    [
        ({}, "approve_full", 100_000, ()),
        ({"policy_active": False}, "deny", 0, ("policy not active",)),
        ({"procedure": "lasik"}, "deny", 0, ("procedure 'lasik' is excluded",)),
        ({"estimate": 500_000}, "hitl", 0, ("estimate of 500,000 or more",)),
        ({"estimate": 499_999, "sum_insured_remaining": 600_000}, "approve_full", 499_999, ()),
        (  # a 6,000 room against a 4,000 limit: every charge paid at 2/3
            {"estimate": 300_000, "room_rent_per_day": 6_000},
            "approve_with_deduction",
            200_000,
            ("room rent above the limit: charges paid at 67%",),
        ),
        (
            {"estimate": 300_000, "room_rent_per_day": 6_000, "sum_insured_remaining": 150_000},
            "approve_partial",
            150_000,
            (
                "room rent above the limit: charges paid at 67%",
                "capped at the remaining sum insured 150,000.00",
            ),
        ),
    ],
)
async def test_preauth(
    changes: dict[str, Any], action: str, amount: float, reasons: tuple[str, ...]
) -> None:
    out = await one(HealthPreauth("health_preauth"), preauth(**changes))
    assert (out.action, out.approved_amount, out.reasons) == (action, amount, reasons)
    assert out.respond_by == datetime(2026, 1, 1, 1, 0, tzinfo=T0.tzinfo)  # one hour TAT


def test_preauth_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="hitl_at must be positive"):
        HealthPreauth("h", hitl_at=0)


# --- auto_insurance ---------------------------------------------------------------------------
def motor(kind: str, **changes: Any) -> MotorRequest:
    return MotorRequest(kind=kind, policy_id="M-1", idv=500_000, city="Mumbai", **changes)


@pytest.mark.parametrize(
    ("req", "action", "payable", "premium", "garages"),
    [
        # 75 % of IDV exactly is still a repair; 1 rupee more is a total loss.
        (motor("fnol", repair_estimate=375_000), "repair", 374_000, 0, 2),
        (motor("fnol", repair_estimate=375_001), "total_loss", 499_000, 0, 0),
        (motor("fnol", repair_estimate=500, deductible=1_000), "repair", 0, 0, 2),
        # own damage 3 % of 500,000 = 15,000, less NCB, plus 2,094 third party
        (motor("renewal_quote", claim_free_years=3), "quote", 0, 15_000 * 0.65 + 2_094, 0),
        (motor("renewal_quote", claim_free_years=9), "quote", 0, 7_500 + 2_094, 0),
        (motor("renewal_quote"), "quote", 0, 15_000 + 2_094, 0),
        (motor("roadside"), "dispatch", 0, 0, 2),
        (motor("theft"), "unknown", 0, 0, 0),
    ],
)
async def test_motor(
    req: MotorRequest, action: str, payable: float, premium: float, garages: int
) -> None:
    out = await one(AutoInsurance("auto_insurance"), req)
    assert (out.action, out.payable, out.premium, len(out.garages)) == (
        action,
        payable,
        premium,
        garages,
    )


async def test_motor_roadside_outside_the_network() -> None:
    out = await one(AutoInsurance("a"), motor("roadside").model_copy(update={"city": "Agra"}))
    assert (out.garages, out.detail) == ((), "from the nearest partner")


def test_dates_parse() -> None:
    assert claim({"pharmacy": 1}).policy.start_date == date(2025, 1, 1)
