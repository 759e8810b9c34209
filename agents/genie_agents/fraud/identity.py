"""Identity checks: KYC scoring, synthetic identities, session takeover."""

from __future__ import annotations

import re

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import haversine_km
from .models import (
    HIGH_RISK_OCCUPATIONS,
    KYC_HIGH_RISK_COUNTRIES,
    KycRequest,
    KycVerdict,
    Login,
    SessionCheck,
    SessionVerdict,
    SyntheticCheck,
    SyntheticVerdict,
)

__all__ = ["CyberGuardian", "KycOrchestrator", "SyntheticIdentityDetector", "kyc_score"]

PAN = re.compile(r"[A-Z]{5}[0-9]{4}[A-Z]")
# Additive risk weights (the Go system's kyc_orchestrator).
KYC_WEIGHTS = {
    "invalid_pan": 0.30,
    "no_aadhaar_offline": 0.20,
    "name_mismatch": 0.20,
    "address_mismatch": 0.10,  # address match below 0.80
    "liveness_low": 0.15,  # liveness below 0.70
    "pep": 0.35,
    "high_risk_country": 0.20,
    "high_risk_occupation": 0.10,
}
ADDRESS_MIN, LIVENESS_MIN = 0.80, 0.70
EDD_AT, SDD_AT = 0.70, 0.30


def _same_name(a: str, b: str) -> bool:
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


def kyc_score(req: KycRequest) -> tuple[float, tuple[str, ...]]:
    """The additive score, capped at 1, and the reasons that add to it."""
    hits = {
        "invalid_pan": PAN.fullmatch(req.pan.strip().upper()) is None,
        "no_aadhaar_offline": not req.aadhaar_offline_verified,
        "name_mismatch": not _same_name(req.name, req.pan_name),
        "address_mismatch": req.address_match < ADDRESS_MIN,
        "liveness_low": req.liveness < LIVENESS_MIN,
        "pep": req.pep,
        "high_risk_country": req.country.upper() in KYC_HIGH_RISK_COUNTRIES,
        "high_risk_occupation": req.occupation.casefold() in HIGH_RISK_OCCUPATIONS,
    }
    reasons = tuple(name for name, hit in hits.items() if hit)
    # Rounded so that 0.1 + 0.2 compares as 0.30 at the thresholds.
    score = round(min(1.0, sum(KYC_WEIGHTS[r] for r in reasons)), 2)
    return score, reasons


class KycOrchestrator(BaseAgent):
    """Scores a customer for KYC risk (PAN format, Aadhaar offline check, PAN name, address
    match, liveness, PEP, country, occupation; capped at 1). A sanctions hit rejects; a score
    of 0.70 or more needs enhanced due diligence; 0.30 or less qualifies for simplified due
    diligence; anything between is approved with customer due diligence."""

    capabilities = ("kyc",)
    risk = Risk.HIGH
    produces = (KycVerdict,)

    @handler
    async def on_request(self, payload: KycRequest, ctx: Context) -> Message:
        score, reasons = kyc_score(payload)
        cid = payload.customer_id
        if payload.sanctions_hit:
            out = KycVerdict(
                customer_id=cid,
                score=score,
                decision="reject",
                tier="none",
                reasons=("sanctions_hit", *reasons),
            )
        elif score >= EDD_AT:
            out = KycVerdict(
                customer_id=cid, score=score, decision="edd", tier="edd", reasons=reasons
            )
        else:
            tier = "sdd" if score <= SDD_AT else "cdd"
            out = KycVerdict(
                customer_id=cid, score=score, decision="approve", tier=tier, reasons=reasons
            )
        return ctx.emit(out)


THIN_FILE_MONTHS, ADDRESS_CHANGES, FRESH_DAYS = 6, 3, 30


DISPOSABLE_EMAIL = (
    "mailinator",
    "tempmail",
    "10minutemail",
    "yopmail",
    "guerrillamail",
    "trashmail",
)


class SyntheticIdentityDetector(BaseAgent):
    """Signals of a made-up identity: a thin credit file (under 6 months or no tradelines), 3+
    addresses in 12 months, an address shared with 3+ other recent KYC applications, PAN and
    Aadhaar names that differ, a PAN whose 5th character is not the surname's initial (the
    surname, when not given, the PAN name's last word), an email or phone younger than 30
    days, a disposable e-mail domain (Go's list: mailinator, tempmail, ...). A signal whose
    input is left out is not checked. Verdict: clear (none), review (one or two), synthetic
    (three or more)."""

    capabilities = ("synthetic_identity",)
    risk = Risk.HIGH
    produces = (SyntheticVerdict,)

    @handler
    async def on_check(self, payload: SyntheticCheck, ctx: Context) -> Message:
        p = payload
        pan = p.pan.strip().upper()
        surname = p.surname.strip() or (p.pan_name.split() or [""])[-1]
        ages = [a for a in (p.email_age_days, p.phone_age_days) if a is not None]
        domain = p.email_domain.lower()
        hits = {
            "thin_file": p.credit_history_months < THIN_FILE_MONTHS or p.tradelines == 0,
            "address_velocity": (p.addresses_last_12m or 0) >= ADDRESS_CHANGES,
            "shared_address": (p.kycs_at_address or 0) >= ADDRESS_CHANGES,
            "name_mismatch": not _same_name(p.pan_name, p.aadhaar_name),
            "pan_surname_mismatch": len(pan) < 5 or pan[4] != surname[:1].upper(),
            "fresh_contact": bool(ages) and min(ages) < FRESH_DAYS,
            "disposable_email": any(name in domain for name in DISPOSABLE_EMAIL),
        }
        signals = tuple(name for name, hit in hits.items() if hit)
        verdict = "synthetic" if len(signals) >= 3 else "review" if signals else "clear"
        return ctx.emit(SyntheticVerdict(verdict=verdict, signals=signals))


TRAVEL_KMH, STUFFING_ATTEMPTS, CHURN_DEVICES = 1000.0, 5, 3


def _travel(before: Login, after: Login) -> bool:
    """Faster than 1,000 km/h between two logins (any distance at no time at all)."""
    km = haversine_km(before.latitude, before.longitude, after.latitude, after.longitude)
    hours = (after.at - before.at).total_seconds() / 3600
    return km > 0 and (hours <= 0 or km / hours > TRAVEL_KMH)


class CyberGuardian(BaseAgent):
    """Checks a login: impossible travel since the previous login (over 1,000 km/h), credential
    stuffing (5+ failed attempts in the last hour), an unknown device, a session token reused
    from a new IP. Travel or token reuse blocks; the others ask for a step-up. With a
    ``window`` of earlier attempts (Go's events), as Go: travel is checked between each two
    successive successful logins, each successful login's device against the known ones, its
    failures count as failed attempts, and 3+ distinct devices in it is churn (step-up)."""

    capabilities = ("session_security",)
    risk = Risk.MEDIUM
    produces = (SessionVerdict,)

    @handler
    async def on_check(self, payload: SessionCheck, ctx: Context) -> Message:
        p, cur = payload, payload.current
        earlier: list[Login] = [a for a in p.window if a.succeeded]
        logins = [*earlier, *([p.previous] if p.previous else []), cur]
        failed = p.failed_attempts_last_hour + sum(not a.succeeded for a in p.window)
        devices = {a.device_id for a in (*p.window, *logins) if a.device_id}
        hits = {
            "impossible_travel": any(map(_travel, logins, logins[1:])),
            "credential_stuffing": failed >= STUFFING_ATTEMPTS,
            # Go checked each successful login of its window; `previous` keeps the port's rule
            # (checked when it was the current one).
            "device_drift": bool(p.known_devices)
            and any(a.device_id not in p.known_devices for a in (*earlier, cur)),
            "token_reuse": bool(p.token_seen_from) and cur.ip not in p.token_seen_from,
            "device_churn": len(devices) >= CHURN_DEVICES,
        }
        signals = tuple(name for name, hit in hits.items() if hit)
        action = (
            "block"
            if hits["impossible_travel"] or hits["token_reuse"]
            else "step_up"
            if signals
            else "allow"
        )
        return ctx.emit(SessionVerdict(user_id=p.user_id, action=action, signals=signals))
