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

__all__ = ["PhishingCheck", "PhishingClassifier", "PhishingSignal", "PhishingVerdict", "classify"]

PHISHING_AT = 0.6
SUSPICIOUS_AT = 0.3

# Brands fraudsters imitate, and the registered domains that really belong to them.
BRANDS = {
    "sbi": ("sbi.co.in", "onlinesbi.sbi", "sbi.bank.in"),
    "hdfc": ("hdfcbank.com", "hdfc.com"),
    "icici": ("icicibank.com",),
    "axis": ("axisbank.com",),
    "kotak": ("kotak.com",),
    "paytm": ("paytm.com",),
    "phonepe": ("phonepe.com",),
    "npci": ("npci.org.in",),
    "rbi": ("rbi.org.in",),
    "incometax": ("incometax.gov.in",),
}
SHORTENERS = frozenset({"bit.ly", "tinyurl.com", "t.co", "goo.gl", "is.gd", "cutt.ly", "rb.gy"})
RISKY_TLDS = frozenset(
    {"xyz", "top", "click", "tk", "ml", "ga", "cf", "gq", "zip", "work", "rest", "icu"}
)
MAX_SUBDOMAIN_DOTS = 3
TEXT_RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    (
        "urgency",
        0.2,
        re.compile(
            r"\b(urgent|immediately|within 24 hours|today only|"
            r"will be (blocked|suspended|closed|deactivated))\b"
        ),
    ),
    ("credential_request", 0.3, re.compile(r"\b(otp|upi pin|pin|cvv|password|net ?banking id)\b")),
    (
        "reward_lure",
        0.2,
        re.compile(r"\b(lottery|you have won|you won|prize|cashback|refund|reward points)\b"),
    ),
    # A UPI PIN is only ever entered to pay: "enter your PIN to receive" is always a scam.
    ("pin_to_receive", 0.4, re.compile(r"\bpin\b.{0,40}\b(receive|credit|get)\b")),
)
# Payment-app handles (the part after @) of India's UPI apps and banks.
UPI_HANDLES = frozenset(
    {
        "okaxis", "okhdfcbank", "okicici", "oksbi", "ybl", "ibl", "axl", "paytm", "pthdfc",
        "ptsbi", "ptaxis", "ptyes", "upi", "apl", "yapl", "axisbank", "icici", "sbi",
        "hdfcbank", "kotak", "idfcbank", "indus", "fbl", "barodampay", "jupiteraxis", "slice",
    }
)  # fmt: skip
VPA = re.compile(r"^([a-z0-9.\-_]{2,256})@([a-z]{2,64})$")
IMPERSONATING_HANDLE = re.compile(
    r"(support|helpdesk|help|care|refund|kyc|reward|lottery|rbi|npci|sbi|hdfc|icici|axis)"
)


class PhishingCheck(Payload):
    message_type = "phishing_check"
    url: str = ""
    text: str = Field("", max_length=20_000)
    vpa: str = ""

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


def _registered(host: str) -> str:
    parts = host.split(".")
    # Two-part public suffixes (co.in, gov.in, org.in, bank.in) keep three labels.
    keep = 3 if len(parts) >= 3 and parts[-2] in ("co", "gov", "org", "bank", "net") else 2
    return ".".join(parts[-keep:])


def _url_signals(url: str) -> list[PhishingSignal]:
    out: list[PhishingSignal] = []
    parts = urlsplit(url)
    host = (parts.hostname or "").casefold()

    def add(rule: str, weight: float, evidence: str) -> None:
        out.append(PhishingSignal(rule=rule, weight=weight, evidence=evidence))

    if parts.scheme != "https":
        add("no_https", 0.1, f"{parts.scheme}://")
    if "@" in parts.netloc:
        add("at_sign", 0.3, parts.netloc)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        add("ip_host", 0.3, host)
        return out
    if any(label.startswith("xn--") for label in host.split(".")):
        add("punycode", 0.3, host)
    if host in SHORTENERS:
        add("shortener", 0.2, host)
    if host.rsplit(".", 1)[-1] in RISKY_TLDS:
        add("risky_tld", 0.2, host)
    if host.count(".") > MAX_SUBDOMAIN_DOTS:
        add("deep_subdomain", 0.1, host)
    registered = _registered(host)
    for brand, official in BRANDS.items():
        if brand in host and registered not in official:
            add("brand_impersonation", 0.4, f"{brand} on {registered}")
            break
    return out


def _text_signals(text: str) -> list[PhishingSignal]:
    lowered = " ".join(text.casefold().split())
    out = []
    for rule, weight, pattern in TEXT_RULES:
        found = pattern.search(lowered)
        if found:
            out.append(PhishingSignal(rule=rule, weight=weight, evidence=found.group(0)))
    return out


def _vpa_signals(vpa: str) -> list[PhishingSignal]:
    match = VPA.match(vpa)
    if match is None:  # refused by the model; kept for callers of classify()
        return [PhishingSignal(rule="malformed_vpa", weight=0.3, evidence=vpa)]
    name, handle = match.groups()
    out = []
    if handle not in UPI_HANDLES:
        out.append(PhishingSignal(rule="unknown_upi_handle", weight=0.2, evidence=handle))
    found = IMPERSONATING_HANDLE.search(name)
    if found:
        out.append(PhishingSignal(rule="impersonating_vpa", weight=0.3, evidence=found.group(0)))
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
    """Scores a link, a message and a UPI address with a rule stack; the score is the sum of
    the rules that fire, capped at 1: phishing at 0.6 or more, suspicious at 0.3 or more.
    Link: plain http 0.1, an @ in the host part 0.3, a bare IP host 0.3, punycode 0.3, a
    shortener 0.2, a risky TLD 0.2, more than three dots in the host 0.1, a bank or payments
    brand on a domain it does not own 0.4. Text: urgency 0.2, asking for an OTP, PIN, CVV or
    password 0.3, a prize or refund lure 0.2, a PIN "to receive" money 0.4. UPI address: a
    handle no UPI app uses 0.2, a name posing as support, KYC, a refund or a bank 0.3."""

    capabilities = ("phishing_classifier",)
    risk = Risk.MEDIUM
    produces = (PhishingVerdict,)

    @handler
    async def on_check(self, payload: PhishingCheck, ctx: Context) -> Message:
        return ctx.emit(classify(payload))
