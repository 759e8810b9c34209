"""phishing_classifier: each rule of the stack, the score's edges, and refusals."""

from __future__ import annotations

import pytest
from genie_agents.fraud import PhishingClassifier
from genie_agents.fraud.phishing import PhishingCheck, PhishingVerdict

from genie import InvalidMessageError, MessageTypes

from .helpers import one

TYPES = MessageTypes([PhishingCheck])


async def check(**fields: str) -> PhishingVerdict:
    verdict: PhishingVerdict = await one(
        PhishingClassifier("phishing_classifier"), PhishingCheck(**fields)
    )
    return verdict


def rules(verdict: PhishingVerdict) -> list[str]:
    return [s.rule for s in verdict.signals]


# The Go system's weights (agents/phishing_classifier): phishing at 0.7, suspicious at 0.4.
@pytest.mark.parametrize(
    ("url", "fired", "score", "verdict"),
    [
        ("https://www.onlinesbi.sbi/", [], 0.0, "safe"),
        ("https://netbanking.hdfcbank.com/login", [], 0.0, "safe"),
        ("http://plain.example.com/", [], 0.0, "safe"),  # no https is not a rule (as Go)
        ("http://192.168.1.10/pay", ["ip_host"], 0.7, "phishing"),  # alone it is phishing
        ("https://[2001:db8::1]/pay", ["ip_host"], 0.7, "phishing"),
        ("https://secure@evil.example/", ["at_sign"], 0.3, "safe"),
        ("https://a.b.c.d.example.com/", ["deep_subdomain"], 0.2, "safe"),
        ("https://a.b.example.com/", [], 0.0, "safe"),  # three dots: not beyond three
        ("https://sbi-kyc-update.xyz/login", ["brand_impersonation"], 0.5, "suspicious"),
        ("https://www.rbi-alerts.example/", ["brand_impersonation"], 0.5, "suspicious"),
        # 0.3 + 0.5 = 0.8; the brand is found inside the punycode label.
        ("https://xn--hdfcbank-9ta.com/", ["punycode", "brand_impersonation"], 0.8, "phishing"),
        # 0.5 + 0.2 = 0.7: phishing (inclusive).
        (
            "https://login.kotak.secure.verify.example/",
            ["brand_impersonation", "deep_subdomain"],
            0.7,
            "phishing",
        ),
        # 0.7 + 0.3 = 1.0: the IP with an @ before it.
        ("http://kotak.com@10.0.0.1/", ["ip_host", "at_sign"], 1.0, "phishing"),
    ],
)
async def test_url_rules(url: str, fired: list[str], score: float, verdict: str) -> None:
    out = await check(url=url)
    assert (rules(out), out.score, out.verdict) == (fired, score, verdict)


async def test_text_rules_and_the_cap() -> None:
    out = await check(
        text="URGENT: your KYC update is pending. Share OTP to claim prize in the lucky draw."
    )
    # credential 0.5 + urgency 0.2 + lottery 0.4 + KYC 0.3 = 1.4, capped at 1.
    assert rules(out) == ["credential_request", "urgency", "lottery", "kyc_lure"]
    assert [s.evidence for s in out.signals] == ["share otp", "urgent", "lucky draw", "kyc update"]
    assert (out.score, out.verdict) == (1.0, "phishing")
    # A bank's own OTP message names the OTP without asking for it: nothing fires.
    plain = await check(text="123456 is your OTP for the transaction. Do not share it.")
    assert (plain.signals, plain.verdict) == ((), "safe")
    # The lottery alone is 0.4: suspicious (inclusive); urgency + KYC is 0.5.
    assert (await check(text="You have won!")).verdict == "suspicious"
    assert (await check(text="Re-KYC now, act now")).score == 0.5


@pytest.mark.parametrize(
    ("vpa", "fired", "score"),
    [
        ("9876543210@ybl", [], 0.0),
        ("Rahul.Sharma@OKHDFCBANK", [], 0.0),  # case does not matter
        ("rahul@fakepay", ["unknown_upi_handle"], 0.2),
        ("sbi.refund@okaxis", ["refund_vpa"], 0.4),
        ("refund-desk@securepay", ["refund_vpa", "unknown_upi_handle"], 0.6),
        ("kyc-helpdesk@oksbi", [], 0.0),  # only "refund" is a rule in the name (as Go)
    ],
)
async def test_vpa_rules(vpa: str, fired: list[str], score: float) -> None:
    out = await check(vpa=vpa)
    assert (rules(out), out.score) == (fired, score)


async def test_all_three_add_up() -> None:
    # deep subdomain 0.2 + urgency 0.2 + unknown handle 0.2 = 0.6: suspicious, not phishing.
    out = await check(url="https://a.b.c.d.example/", text="act now", vpa="rahul@fakepay")
    assert rules(out) == ["deep_subdomain", "urgency", "unknown_upi_handle"]
    assert (out.score, out.verdict) == (0.6, "suspicious")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"url": "ftp://files.example.com/x"}, "url"),
        ({"url": "not a link"}, "url"),
        ({"vpa": "no-at-sign"}, "vpa"),
        ({"vpa": "a@b@c"}, "vpa"),
        ({"text": 3}, "text"),
    ],
)
def test_bad_checks_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(
        InvalidMessageError, match=f"invalid 'phishing_check' message: field '{field}'"
    ):
        TYPES.parse_payload("phishing_check", data)


def test_an_empty_check_is_refused() -> None:
    with pytest.raises(InvalidMessageError, match="give at least one of url, text or vpa"):
        TYPES.parse_payload("phishing_check", {"text": "   "})
