"""Fraud, mule, AML and identity agents: hand-computed cases at each threshold.

Distances use points on the equator, where one degree of longitude is 2 pi R / 360 =
111.195 km (R = 6371 km)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from genie_agents.fraud import (
    AmlMonitor,
    CyberGuardian,
    FraudDetector,
    KycOrchestrator,
    MuleDetector,
    SyntheticIdentityDetector,
)
from genie_agents.fraud.models import KycRequest, Login, SessionCheck, SyntheticCheck

from genie import InvalidMessageError, MessageTypes

from .helpers import one, period, tx

KM_PER_DEGREE = 111.19492664455873


# --- fraud_detector ---------------------------------------------------------------------------
async def fraud(*txns: Any) -> Any:
    return await one(FraudDetector("fraud_detector"), period(*txns))


async def test_burst_needs_five_debits_within_five_minutes() -> None:
    times = ["10:00", "10:01", "10:02", "10:04", "10:05"]  # first to last: exactly 5 min
    out = await fraud(*(tx(f"t{i}", -100, time=t) for i, t in enumerate(times)))
    assert [(s.kind, s.transaction_ids) for s in out.signals] == [
        ("burst", ("t0", "t1", "t2", "t3", "t4"))
    ]
    assert out.severity == "low"
    late = [*times[:4], "10:05:01"]  # one second too late: only four in any window
    assert (await fraud(*(tx(f"t{i}", -100, time=t) for i, t in enumerate(late)))).signals == ()


async def test_travel_at_900_kmh_or_more_is_impossible() -> None:
    # 8.1 degrees in one hour = 900.68 km/h; 8.0 degrees = 889.56 km/h.
    fast = await fraud(
        tx("a", -10, time="10:00", latitude=0.0, longitude=0.0),
        tx("b", -10, time="11:00", latitude=0.0, longitude=8.1),
    )
    assert [s.kind for s in fast.signals] == ["impossible_travel"]
    assert fast.signals[0].detail == "901 km apart, 901 km/h"
    assert fast.severity == "high"
    slow = await fraud(
        tx("a", -10, time="10:00", latitude=0.0, longitude=0.0),
        tx("b", -10, time="11:00", latitude=0.0, longitude=8.0),
    )
    assert slow.signals == ()


async def test_after_hours_means_rs_50000_before_five() -> None:
    out = await fraud(
        tx("big-night", -50_000, time="04:59"),
        tx("big-morning", -50_000, time="05:00"),
        tx("small-night", -49_999.99, time="02:00"),
        tx("credit-night", 90_000, time="01:00"),
    )
    assert [(s.kind, s.transaction_ids) for s in out.signals] == [("after_hours", ("big-night",))]


async def test_high_risk_merchant_and_two_kinds_is_medium() -> None:
    out = await fraud(
        tx("c", -500, description="Crypto exchange top-up"),
        tx("n", -60_000, time="03:00"),
    )
    assert sorted(s.kind for s in out.signals) == ["after_hours", "high_risk_merchant"]
    assert out.severity == "medium"
    custom = FraudDetector("f", high_risk_merchants=["pawn"])
    assert (await one(custom, period(tx("c", -500, description="Crypto")))).signals == ()


# --- mule_detector ----------------------------------------------------------------------------
async def mule(*txns: Any) -> Any:
    return await one(MuleDetector("mule_detector"), period(*txns))


async def test_pass_through_at_ninety_percent_within_a_day() -> None:
    credit = tx("in", 100_000, time="09:00")
    out = await mule(
        credit, tx("o1", -60_000, time="12:00"), tx("o2", -30_000, "2026-01-02", time="09:00")
    )
    assert [(s.kind, s.transaction_ids) for s in out.signals] == [
        ("pass_through", ("in", "o1", "o2"))
    ]
    assert out.signals[0].detail == "90% of Rs 100,000.00 left within 24 h"
    assert out.risk == "medium"
    below = await mule(credit, tx("o1", -60_000, time="12:00"), tx("o2", -29_999, time="13:00"))
    assert below.signals == ()
    too_late = await mule(
        credit, tx("o1", -60_000, time="12:00"), tx("o2", -30_000, "2026-01-02", time="09:01")
    )
    assert too_late.signals == ()


async def test_fan_in_with_pass_through_is_high() -> None:
    credits = [tx(f"c{i}", 20_000, time="09:00", counterparty=f"payer{i}") for i in range(5)]
    out = await mule(*credits, tx("out", -95_000, time="10:00"))
    assert {s.kind for s in out.signals} == {"fan_in", "pass_through"}
    assert out.risk == "high"
    four = await mule(*credits[:4])
    assert four.signals == ()


async def test_velocity_ten_debits_in_an_hour() -> None:
    times = [f"10:{m:02d}" for m in range(0, 60, 6)] + ["11:00"]  # 11 within 10:00-11:00
    out = await mule(*(tx(f"d{i}", -10, time=t) for i, t in enumerate(times)))
    assert [(s.kind, len(s.transaction_ids)) for s in out.signals] == [("velocity", 11)]
    nine = await mule(*(tx(f"d{i}", -10, time=t) for i, t in enumerate(times[:9])))
    assert nine.signals == ()


# --- aml_monitor ------------------------------------------------------------------------------
async def aml(*txns: Any, **params: Any) -> Any:
    return await one(AmlMonitor("aml_monitor", **params), period(*txns))


async def test_structuring_three_cash_deposits_just_under_ctr_in_a_week() -> None:
    out = await aml(
        tx("a", 800_000, "2026-01-01", channel="cash"),  # exactly 80 % of Rs 10 lakh
        tx("b", 950_000, "2026-01-04", channel="cash"),
        tx("c", 999_999, "2026-01-08", channel="cash"),  # 7 days after the first
        tx("small", 799_999, "2026-01-02", channel="cash"),
    )
    assert [(r.kind, r.transaction_ids, r.total_paise) for r in out.reports] == [
        ("structuring", ("a", "b", "c"), 274_999_900)
    ]
    assert out.str_required is True
    spread = await aml(
        tx("a", 800_000, "2026-01-01", channel="cash"),
        tx("b", 950_000, "2026-01-04", channel="cash"),
        tx("c", 999_999, "2026-01-09", channel="cash"),  # 8 days: outside the window
    )
    assert spread.reports == ()


async def test_threshold_reports_are_not_strs() -> None:
    out = await aml(
        tx("cash", 1_000_000, channel="cash"),
        tx("wire", -5_000_000, channel="wire"),
        tx("wire-small", -4_999_999, channel="wire"),
    )
    assert [(r.kind, r.transaction_ids) for r in out.reports] == [
        ("ctr", ("cash",)),
        ("ltr", ("wire",)),
    ]
    assert out.str_required is False


async def test_round_tripping_within_thirty_days_and_five_percent() -> None:
    sent = tx("out", -500_000, "2026-01-01", counterparty="Acme")
    back = await aml(sent, tx("back", 475_000, "2026-01-31", counterparty="Acme"))  # -5 %, day 30
    assert [(r.kind, r.transaction_ids) for r in back.reports] == [
        ("round_tripping", ("out", "back"))
    ]
    assert (await aml(sent, tx("back", 474_999, "2026-01-31", counterparty="Acme"))).reports == ()
    assert (await aml(sent, tx("back", 500_000, "2026-02-01", counterparty="Acme"))).reports == ()


async def test_jurisdiction_and_adverse_media() -> None:
    out = await aml(
        tx("ir", -1000, country="ir"),
        tx("media", 1000, counterparty="Shady Corp"),
        adverse_media=["shady corp"],
    )
    assert [r.kind for r in out.reports] == ["high_risk_jurisdiction", "adverse_media"]


# --- kyc_orchestrator -------------------------------------------------------------------------
def kyc(**changes: Any) -> KycRequest:
    base: dict[str, Any] = {
        "customer_id": "cust-1",
        "name": "Asha  Verma",
        "pan": "ABCPV1234F",
        "pan_name": "asha verma",
        "aadhaar_offline_verified": True,
        "address_match": 0.80,
        "liveness": 0.70,
    }
    return KycRequest(**(base | changes))


@pytest.mark.parametrize(
    ("changes", "decision", "tier", "score", "reasons"),
    [
        ({}, "approve", "sdd", 0.0, ()),
        ({"pan": "ABC1234"}, "approve", "sdd", 0.30, ("invalid_pan",)),
        # 0.20 + 0.10 is 0.30000000000000004 in floats: still simplified due diligence.
        (
            {"aadhaar_offline_verified": False, "address_match": 0.79},
            "approve",
            "sdd",
            0.30,
            ("no_aadhaar_offline", "address_mismatch"),
        ),
        ({"pep": True}, "approve", "cdd", 0.35, ("pep",)),
        (
            {"pep": True, "liveness": 0.69, "pan_name": "A Verma"},
            "edd",
            "edd",
            0.70,
            ("name_mismatch", "liveness_low", "pep"),
        ),
        (
            {"country": "ir", "occupation": "Money_Changer"},
            "approve",
            "sdd",
            0.30,
            ("high_risk_country", "high_risk_occupation"),
        ),
    ],
)
async def test_kyc_additive_score(
    changes: dict[str, Any], decision: str, tier: str, score: float, reasons: tuple[str, ...]
) -> None:
    out = await one(KycOrchestrator("kyc_orchestrator"), kyc(**changes))
    assert (out.decision, out.tier, out.score, out.reasons) == (decision, tier, score, reasons)


async def test_kyc_score_caps_at_one_and_sanctions_reject() -> None:
    worst = kyc(
        pan="bad",
        aadhaar_offline_verified=False,
        pan_name="someone else",
        address_match=0.1,
        liveness=0.1,
        pep=True,
        country="KP",
        occupation="arms_dealer",
    )
    assert (await one(KycOrchestrator("k"), worst)).score == 1.0
    out = await one(KycOrchestrator("k"), kyc(sanctions_hit=True))
    assert (out.decision, out.tier, out.reasons) == ("reject", "none", ("sanctions_hit",))


def test_kyc_bad_payload_names_the_field() -> None:
    types = MessageTypes([KycRequest])
    with pytest.raises(InvalidMessageError, match="'kyc_request' message: field 'address_match'"):
        types.parse_payload("kyc_request", kyc().model_dump() | {"address_match": 1.5})


# --- synthetic_identity_detector --------------------------------------------------------------
def synthetic(**changes: Any) -> SyntheticCheck:
    base: dict[str, Any] = {
        "pan": "ABCPS1234F",
        "surname": "Sharma",
        "pan_name": "Ravi Sharma",
        "aadhaar_name": "RAVI SHARMA",
        "credit_history_months": 6,
        "tradelines": 1,
        "addresses_last_12m": 2,
        "email_age_days": 30,
        "phone_age_days": 30,
    }
    return SyntheticCheck(**(base | changes))


@pytest.mark.parametrize(
    ("changes", "verdict", "signals"),
    [
        ({}, "clear", ()),
        (
            {"credit_history_months": 5, "phone_age_days": 29},
            "review",
            ("thin_file", "fresh_contact"),
        ),
        ({"surname": "Kumar"}, "review", ("pan_surname_mismatch",)),
        (
            {"tradelines": 0, "addresses_last_12m": 3, "aadhaar_name": "Ravi S"},
            "synthetic",
            ("thin_file", "address_velocity", "name_mismatch"),
        ),
    ],
)
async def test_synthetic_identity(
    changes: dict[str, Any], verdict: str, signals: tuple[str, ...]
) -> None:
    out = await one(SyntheticIdentityDetector("s"), synthetic(**changes))
    assert (out.verdict, out.signals) == (verdict, signals)


# --- cyber_guardian ---------------------------------------------------------------------------
def login(
    hour: int, minute: int = 0, lon: float = 0.0, device: str = "d1", ip: str = "1.1.1.1"
) -> Login:
    at = datetime(2026, 1, 1, hour, minute, tzinfo=UTC)
    return Login(at=at, latitude=0.0, longitude=lon, device_id=device, ip=ip)


@pytest.mark.parametrize(
    ("check", "action", "signals"),
    [
        # 9 degrees in an hour = 1000.75 km/h (> 1000); 8.99 degrees = 999.64 km/h.
        ({"previous": login(10), "current": login(11, lon=9.0)}, "block", ("impossible_travel",)),
        ({"previous": login(10), "current": login(11, lon=8.99)}, "allow", ()),
        (
            {"current": login(11), "failed_attempts_last_hour": 5},
            "step_up",
            ("credential_stuffing",),
        ),
        ({"current": login(11), "failed_attempts_last_hour": 4}, "allow", ()),
        (
            {"current": login(11, device="new"), "known_devices": ("d1",)},
            "step_up",
            ("device_drift",),
        ),
        (
            {"current": login(11, ip="9.9.9.9"), "token_seen_from": ("1.1.1.1",)},
            "block",
            ("token_reuse",),
        ),
    ],
)
async def test_session_checks(check: dict[str, Any], action: str, signals: tuple[str, ...]) -> None:
    out = await one(CyberGuardian("cyber_guardian"), SessionCheck(user_id="u1", **check))
    assert (out.action, out.signals) == (action, signals)
    assert KM_PER_DEGREE * 9 > 1000 > KM_PER_DEGREE * 8.99
