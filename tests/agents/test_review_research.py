"""Auditor, complaint triage, and the static research agents."""

from __future__ import annotations

import pytest
from genie_agents.research import MacroContext, MacroResearch, RateOutlook, RateWatcher
from genie_agents.support import Auditor, ComplaintTriage
from genie_agents.support.review import AuditRequest, Complaint

from .helpers import one


def audit(content: str = "hello", sender: str = "a", recipient: str = "b") -> AuditRequest:
    return AuditRequest(message_id="m1", sender=sender, recipient=recipient, content=content)


@pytest.mark.parametrize(
    ("req", "flags", "summary"),
    [
        (audit(), (), "ok"),
        (
            audit(content=" \n", recipient=""),
            ("empty_content", "missing_address"),
            "empty_content; missing_address",
        ),
        (audit(content="x" * 16 * 1024), (), "ok"),
        (audit(content="x" * (16 * 1024 + 1)), ("oversized_content",), "oversized_content"),
        (audit(content="é" * 8193), ("oversized_content",), "oversized_content"),  # bytes count
    ],
)
async def test_audit_flags(req: AuditRequest, flags: tuple[str, ...], summary: str) -> None:
    out = await one(Auditor("llm_auditor"), req)
    assert (out.flags, out.summary, out.success) == (flags, summary, not flags)


async def test_auditor_keeps_the_last_records() -> None:
    agent = Auditor("a", keep=2)
    for content in ("one", "", "three"):
        await one(agent, audit(content=content))
    assert [r.success for r in agent.records] == [False, True]
    with pytest.raises(ValueError, match="keep must be at least 1"):
        Auditor("a", keep=0)


@pytest.mark.parametrize(
    ("text", "category", "severity", "review"),
    [
        (
            "UPI payment failed in the mobile banking app, OTP never came",
            "digital_banking_upi_imps",
            "low",
            False,
        ),
        ("Unauthorised charges on my credit card", "cards", "high", False),
        ("The staff at the branch was rude", "staff_conduct", "low", False),
        ("My loan was debited twice, please refund", "loans_and_advances", "medium", True),
        ("hello there", "other", "low", True),
    ],
)
async def test_complaint_triage(text: str, category: str, severity: str, review: bool) -> None:
    out = await one(ComplaintTriage("complaint_triage"), Complaint(complaint_id="c1", text=text))
    assert (out.category, out.severity, out.needs_human_review) == (category, severity, review)


async def test_words_match_whole_words_only() -> None:
    out = await one(ComplaintTriage("c"), Complaint(complaint_id="c", text="happy appliance"))
    assert out.category == "other"  # "app" inside "happy"/"appliance" does not count


async def test_static_outlooks_default_to_india() -> None:
    assert (await one(MacroResearch("m"), MacroContext(region="US"))).region == "us"
    assert (await one(MacroResearch("m"), MacroContext())).outlook.startswith("India")
    assert (await one(MacroResearch("m"), MacroContext(region="jp"))).region == "in"
    eu = await one(RateWatcher("r"), RateOutlook(central_bank="eu"))
    assert eu.outlook.startswith("ECB")
