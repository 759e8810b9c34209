"""Payloads of the fraud, AML and identity agents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from genie import Payload

from .._common import Record
from .._go import UNUSED, GoName, GoValueError, derived, go_names

__all__ = [
    "AmlReport",
    "AmlReports",
    "FraudSignals",
    "KycRequest",
    "KycVerdict",
    "Attempt",
    "Login",
    "MuleSignals",
    "SessionCheck",
    "SessionVerdict",
    "Signal",
    "SyntheticCheck",
    "SyntheticVerdict",
]

Level = Literal["low", "medium", "high"]


class Signal(Record):
    """One finding: its kind, the transactions behind it, and a sentence a reviewer can read."""

    kind: str
    transaction_ids: tuple[str, ...]
    detail: str


class FraudSignals(Payload):
    message_type = "fraud_signals"
    severity: Level
    signals: tuple[Signal, ...]


class MuleSignals(Payload):
    message_type = "mule_signals"
    risk: Level
    signals: tuple[Signal, ...]


class AmlReport(Record):
    """A draft for the compliance officer: an STR, or a threshold report (CTR, LTR)."""

    kind: str
    transaction_ids: tuple[str, ...]
    total_paise: int
    narrative: str


class AmlReports(Payload):
    message_type = "aml_strs"
    str_required: bool
    reports: tuple[AmlReport, ...]


KYC_HIGH_RISK_COUNTRIES = ("IR", "KP", "MM", "AF", "SY", "YE")
HIGH_RISK_OCCUPATIONS = (
    "money_changer",
    "bullion_dealer",
    "jeweller",
    "arms_dealer",
    "casino_operator",
    "crypto_trader",
    "real_estate_agent",
)


def _kyc_go_flags(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's caller-set risk flags: the port derives them from the facts, so a flag is
    accepted when the facts agree and refused (naming it) when they do not."""
    country = str(out.get("country", "IN"))
    derived = {
        "high_risk_country": (
            country.upper() in KYC_HIGH_RISK_COUNTRIES,
            f"the port decides it from the country ({country!r}; high risk: "
            f"{', '.join(KYC_HIGH_RISK_COUNTRIES)})",
        ),
        "occupation_high_risk": (
            str(out.get("occupation", "")).casefold() in HIGH_RISK_OCCUPATIONS,
            "the port decides it from 'occupation' (high risk: "
            f"{', '.join(HIGH_RISK_OCCUPATIONS)})",
        ),
    }
    for flag, (port_says, how) in derived.items():
        if flag in go and bool(go[flag]) != port_says:
            raise GoValueError(f"is {go[flag]!r} but {how}", flag)
    return out


class KycRequest(Payload):
    message_type = "kyc_request"
    customer_id: str
    name: str
    pan: str
    pan_name: str = Field(description="the name the PAN is registered to")
    aadhaar_offline_verified: bool
    address_match: float = Field(ge=0, le=1)
    liveness: float = Field(ge=0, le=1)
    pep: bool = False
    country: str = "IN"
    occupation: str = ""
    sanctions_hit: bool = False

    _go = go_names(
        {
            "pan_number": "pan",
            "name_on_pan": "pan_name",
            "name_on_aadhaar": "name",
            "aadhaar_offline_kyc": "aadhaar_offline_verified",
            "address_match_score_0_1": "address_match",
            "liveness_score_0_1": "liveness",
            "pep_hit": "pep",
            "country_of_residence": "country",
            "aadhaar_last4": UNUSED,
            "digilocker_verified": UNUSED,
            "high_risk_country": UNUSED,
            "occupation_high_risk": UNUSED,
        },
        then=_kyc_go_flags,
    )


class KycVerdict(Payload):
    message_type = "kyc_verdict"
    customer_id: str
    decision: Literal["approve", "edd", "reject"]
    tier: Literal["sdd", "cdd", "edd", "none"]
    score: float
    reasons: tuple[str, ...]


def _go_sim_age(days: Any) -> Any:
    """Go's SIM age in days; 0 is unknown (not checked)."""
    return None if days == 0 else days


class SyntheticCheck(Payload):
    """The signals not known are left out (none: not checked)."""

    message_type = "synthetic_check"
    pan: str
    surname: str = Field("", description="blank: the last word of pan_name")
    pan_name: str
    aadhaar_name: str
    credit_history_months: int = Field(ge=0)
    tradelines: int | None = Field(None, ge=0)
    addresses_last_12m: int | None = Field(None, ge=0)
    kycs_at_address: int | None = Field(
        None, ge=0, description="other recent KYC applications at the same address"
    )
    email_age_days: int | None = Field(None, ge=0)
    email_domain: str = ""
    phone_age_days: int | None = Field(None, ge=0)

    _go = go_names(
        {
            "pan_number": "pan",
            "name_on_pan": "pan_name",
            "name_on_aadhaar": "aadhaar_name",
            "bureau_tenure_months": "credit_history_months",
            "address_velocity": "kycs_at_address",
            "phone_created_days": GoName("phone_age_days", _go_sim_age),
            # Go's thin file needed an age of 25; the port's does not (difference table).
            "stated_age": UNUSED,
            "address_id": UNUSED,
        }
    )


class SyntheticVerdict(Payload):
    message_type = "synthetic_verdict"
    verdict: Literal["clear", "review", "synthetic"]
    signals: tuple[str, ...]


class Login(Record):
    at: datetime
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    device_id: str
    ip: str


class Attempt(Login):
    """A login attempt in the session's window (Go's event)."""

    succeeded: bool


def _go_events(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's window of events: the last successful one is the login to check, the others (in
    Go's order) its window."""
    events = go.get("events")
    if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
        raise GoValueError("a list of events", "events")
    succeeded = [n for n, e in enumerate(events) if e.get("successful_auth")]
    if not succeeded:
        raise GoValueError("no successful login to check (Go scored failures alone)", "events")
    attempts = []
    for e in events:
        millis = e.get("unix_millis", 0)
        if not isinstance(millis, int) or isinstance(millis, bool):
            raise GoValueError("unix_millis: whole milliseconds", "events")
        attempts.append(
            {
                "at": datetime.fromtimestamp(millis / 1000, UTC),
                "latitude": e.get("lat", 0),
                "longitude": e.get("lng", 0),
                "device_id": e.get("device_fingerprint", ""),
                "ip": e.get("ip", ""),
                "succeeded": bool(e.get("successful_auth")),
            }
        )
    current = attempts.pop(succeeded[-1])
    current.pop("succeeded")
    return out | {"current": current, "window": attempts}


class SessionCheck(Payload):
    message_type = "session_check"
    user_id: str
    current: Login
    previous: Login | None = None
    known_devices: tuple[str, ...] = ()
    failed_attempts_last_hour: int = Field(0, ge=0)
    token_seen_from: tuple[str, ...] = Field((), description="IPs the session token came from")
    window: tuple[Attempt, ...] = Field(
        (), description="earlier attempts of the session, oldest first (before previous)"
    )

    _go = go_names(
        {
            "events": derived("the last successful event is current; the others the window"),
            "known_device_fps": "known_devices",
        },
        then=_go_events,
    )


class SessionVerdict(Payload):
    message_type = "session_verdict"
    user_id: str
    action: Literal["allow", "step_up", "block"]
    signals: tuple[str, ...]
