"""Phishing checks on a link, a message text and a UPI payee address (VPA): a stack of rules,
each adding its weight to a score."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from genie import BaseAgent, Context, Message, Payload, Risk, handler

from .._common import Record
from .._go import go_names

__all__ = ["PhishingCheck", "PhishingClassifier", "PhishingSignal", "PhishingVerdict", "classify"]

PHISHING_AT = 0.7
SUSPICIOUS_AT = 0.4

# The Go system's trusted domains, in its order. A brand is a trusted domain's first label; a
# host holding the brand is an impersonation unless it is (under) one of the brand's own
# domains. The port adds domains the institutions really use that Go's list lacked.
TRUSTED = {
    "sbi": ("sbi.co.in", "onlinesbi.sbi", "sbi.bank.in"),
    "hdfcbank": ("hdfcbank.com",),
    "icicibank": ("icicibank.com",),
    "axisbank": ("axisbank.com",),
    "kotak": ("kotak.com",),
    "rbi": ("rbi.org.in",),
    "npci": ("npci.org.in",),
    "uidai": ("uidai.gov.in",),
}
MAX_SUBDOMAIN_DOTS = 3
# The Go system's phrase lists; a rule fires once, on the first phrase found.
TEXT_RULES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    (
        "credential_request",
        0.5,
        (
            "share otp", "share password", "share pin", "share cvv", "upi pin",
            "verify your mpin", "share aadhaar otp",
        ),
    ),
    (
        "urgency",
        0.2,
        (
            "urgent", "immediately", "expires today", "account blocked", "verify now",
            "act now", "final notice", "last chance",
        ),
    ),
    ("lottery", 0.4, ("you have won", "lottery", "lucky draw", "free reward", "claim prize")),
    ("kyc_lure", 0.3, ("kyc update", "kyc expiring", "kyc deactivated", "re-kyc")),
)  # fmt: skip
# Payment-app handles (the part after @) of India's UPI apps and banks.
UPI_HANDLES = frozenset(
    {
        "okaxis", "okhdfcbank", "okicici", "oksbi", "ybl", "ibl", "axl", "paytm", "pthdfc",
        "ptsbi", "ptaxis", "ptyes", "upi", "apl", "yapl", "axisbank", "icici", "sbi",
        "hdfcbank", "kotak", "idfcbank", "indus", "fbl", "barodampay", "jupiteraxis", "slice",
    }
)  # fmt: skip
VPA = re.compile(r"^([a-z0-9.\-_]{2,256})@([a-z]{2,64})$")


class PhishingCheck(Payload):
    message_type = "phishing_check"
    url: str = ""
    text: str = Field("", max_length=20_000)
    vpa: str = ""

    _go = go_names({"upi_vpa": "vpa"})

    @field_validator("url")
    @classmethod
    def _link(cls, url: str) -> str:
        if url:
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) link with a host, e.g. https://example.com/x")
        return url.strip()

    @field_validator("vpa")
    @classmethod
    def _vpa(cls, vpa: str) -> str:
        vpa = vpa.strip().casefold()
        if vpa and not VPA.match(vpa):
            raise ValueError("must be a UPI address like name@bank (letters, digits, . - _)")
        return vpa

    @model_validator(mode="after")
    def _something(self) -> PhishingCheck:
        if not (self.url or self.text.strip() or self.vpa):
            raise ValueError("give at least one of url, text or vpa")
        return self


class PhishingSignal(Record):
    rule: str
    weight: float
    evidence: str


class PhishingVerdict(Payload):
    message_type = "phishing_verdict"
    verdict: Literal["phishing", "suspicious", "safe"]
    score: float
    signals: tuple[PhishingSignal, ...]


def _url_signals(url: str) -> list[PhishingSignal]:
    out: list[PhishingSignal] = []
    parts = urlsplit(url)
    host = (parts.hostname or "").casefold()

    def add(rule: str, weight: float, evidence: str) -> None:
        out.append(PhishingSignal(rule=rule, weight=weight, evidence=evidence))

    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        add("ip_host", 0.7, host)
    if "xn--" in host:
        add("punycode", 0.3, host)
    for brand, owned in TRUSTED.items():
        if brand in host and not any(host == d or host.endswith("." + d) for d in owned):
            add("brand_impersonation", 0.5, f"{brand} on {host}")
            break
    if host.count(".") > MAX_SUBDOMAIN_DOTS:
        add("deep_subdomain", 0.2, host)
    # Credentials before the host (https://bank.com@evil.example): an @ in the path or the
    # query is an e-mail address, not an attack.
    if "@" in parts.netloc:
        add("at_sign", 0.3, parts.netloc)
    return out


def _text_signals(text: str) -> list[PhishingSignal]:
    # One space between words, so "share  OTP" or a line break cannot hide a phrase.
    lowered = " ".join(text.casefold().split())
    out = []
    for rule, weight, phrases in TEXT_RULES:
        found = next((p for p in phrases if p in lowered), None)
        if found:
            out.append(PhishingSignal(rule=rule, weight=weight, evidence=found))
    return out


def _vpa_signals(vpa: str) -> list[PhishingSignal]:
    match = VPA.match(vpa)
    if match is None:  # refused by the model; kept for callers of classify()
        return [PhishingSignal(rule="malformed_vpa", weight=0.3, evidence=vpa)]
    name, handle = match.groups()
    out = []
    if "refund" in name:
        out.append(PhishingSignal(rule="refund_vpa", weight=0.4, evidence=name))
    if handle not in UPI_HANDLES:
        out.append(PhishingSignal(rule="unknown_upi_handle", weight=0.2, evidence=handle))
    return out


def classify(check: PhishingCheck) -> PhishingVerdict:
    signals = [
        *(_url_signals(check.url) if check.url else []),
        *(_text_signals(check.text) if check.text else []),
        *(_vpa_signals(check.vpa) if check.vpa else []),
    ]
    # Weights are tenths: add them as integers so 0.1 + 0.2 is exactly 0.3.
    score = min(10, sum(round(s.weight * 10) for s in signals)) / 10
    verdict: Literal["phishing", "suspicious", "safe"] = (
        "phishing" if score >= PHISHING_AT else "suspicious" if score >= SUSPICIOUS_AT else "safe"
    )
    return PhishingVerdict(verdict=verdict, score=score, signals=tuple(signals))


class PhishingClassifier(BaseAgent):
    """Scores a link, a message and a UPI address with the Go system's rule stack; the score
    is the sum of the rules that fire, capped at 1: phishing at 0.7 or more, suspicious at 0.4
    or more. Link: a bare IP host 0.7, punycode 0.3, a bank's or regulator's name (sbi,
    hdfcbank, icicibank, axisbank, kotak, rbi, npci, uidai) on a domain it does not own 0.5,
    more than three dots in the host 0.2, an @ before the host 0.3. Text: asking to share an
    OTP, PIN, CVV or password 0.5, urgency 0.2, a lottery or prize 0.4, a KYC-update lure 0.3.
    UPI address: "refund" in the name 0.4, a handle no UPI app uses 0.2."""

    capabilities = ("phishing_classifier",)
    risk = Risk.MEDIUM
    produces = (PhishingVerdict,)

    @handler
    async def on_check(self, payload: PhishingCheck, ctx: Context) -> Message:
        return ctx.emit(classify(payload))
