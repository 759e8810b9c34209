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


@pytest.mark.parametrize(
    ("url", "fired", "score", "verdict"),
    [
        ("https://www.onlinesbi.sbi/", [], 0.0, "safe"),
        ("https://netbanking.hdfcbank.com/login", [], 0.0, "safe"),
        ("https://bit.ly/3xYz", ["shortener"], 0.2, "safe"),
        # 0.1 + 0.2 is exactly 0.3: suspicious (inclusive).
        ("http://offers.top/", ["no_https", "risky_tld"], 0.3, "suspicious"),
        ("http://192.168.1.10/pay", ["no_https", "ip_host"], 0.4, "suspicious"),
        ("https://secure@evil.example/", ["at_sign"], 0.3, "suspicious"),
        ("https://a.b.c.d.example.com/", ["deep_subdomain"], 0.1, "safe"),
        (
            "http://sbi-kyc-update.xyz/login",
            ["no_https", "risky_tld", "brand_impersonation"],
            0.7,
            "phishing",
        ),
        ("https://xn--hdfcbnk-9ta.com/", ["punycode", "brand_impersonation"], 0.7, "phishing"),
        # A brand on a look-alike .co.in domain it does not own.
        ("https://icici-rewards.co.in/", ["brand_impersonation"], 0.4, "suspicious"),
    ],
)
async def test_url_rules(url: str, fired: list[str], score: float, verdict: str) -> None:
    out = await check(url=url)
    assert (rules(out), out.score, out.verdict) == (fired, score, verdict)


async def test_text_rules_and_the_cap() -> None:
    out = await check(
        text="Your account WILL BE BLOCKED today. Enter UPI PIN to receive your cashback."
    )
    # urgency 0.2 + credential 0.3 + lure 0.2 + PIN to receive 0.4 = 1.1, capped at 1.
    assert rules(out) == ["urgency", "credential_request", "reward_lure", "pin_to_receive"]
    assert (out.score, out.verdict) == (1.0, "phishing")
    plain = await check(text="Your statement for March is ready in the app.")
    assert (plain.signals, plain.verdict) == ((), "safe")


@pytest.mark.parametrize(
    ("vpa", "fired", "score"),
    [
        ("9876543210@ybl", [], 0.0),
        ("Rahul.Sharma@OKHDFCBANK", [], 0.0),  # case does not matter
        ("rahul@fakepay", ["unknown_upi_handle"], 0.2),
        ("sbi.refund@okaxis", ["impersonating_vpa"], 0.3),
        ("kyc-helpdesk@securepay", ["unknown_upi_handle", "impersonating_vpa"], 0.5),
    ],
)
async def test_vpa_rules(vpa: str, fired: list[str], score: float) -> None:
    out = await check(vpa=vpa)
    assert (rules(out), out.score) == (fired, score)


async def test_all_three_add_up() -> None:
    out = await check(url="https://bit.ly/x", text="share the OTP", vpa="rahul@fakepay")
    assert rules(out) == ["shortener", "credential_request", "unknown_upi_handle"]
    assert (out.score, out.verdict) == (0.7, "phishing")


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
