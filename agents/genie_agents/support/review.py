"""Review agents: the auditor (deterministic flags, and an LLM judge when given a model) and
the complaint triage classifier."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from genie import BaseAgent, Context, Message, Payload, Risk, handler
from genie.llm import LLMError, Provider

from .._common import Record
from .._go import UNUSED, go_names, go_text
from .judge import critique

__all__ = [
    "AuditRecord",
    "AuditRequest",
    "AuditResult",
    "Auditor",
    "Complaint",
    "ComplaintTriage",
    "ComplaintTriageResult",
]

MAX_CONTENT_BYTES = 16 * 1024
LOW_SCORE = 6  # Go: a judge's score under 6 is a flag
CONSTITUTION = (
    "Principles: be accurate and verifiable; never promise returns; disclose risks and fees; "
    "respect the customer's privacy; follow RBI and SEBI rules; refuse what would harm the "
    "customer."
)


class AuditRequest(Payload):
    """What to audit. Go audited the message itself (its content a bare text): an id,
    sender or recipient left out is the audit request's own envelope's."""

    message_type = "audit_request"
    message_id: str | None = Field(default=None, description="default: the request's own id")
    sender: str | None = Field(default=None, description="default: the request's sender")
    recipient: str | None = Field(default=None, description="default: the request's recipient")
    content: str

    _go = go_text("content")  # Go's content was the text to audit


class AuditResult(Payload):
    message_type = "audit_result"
    message_id: str
    success: bool
    flags: tuple[str, ...]
    summary: str = ""
    constitution_score: int | None = None  # the judge's 0..10, when a model judged


class AuditRecord(Record):
    id: str
    scenario: str
    success: bool
    flags: tuple[str, ...]
    at: datetime
    constitution_score: int | None = None


class Auditor(BaseAgent):
    """Flags a message: ``empty_content`` (blank after trimming), ``missing_address`` (no
    sender or recipient), ``oversized_content`` (over 16 KiB). With a model (``llm``), a judge
    scores the content 0..10 against ``constitution``: under 6 adds
    ``constitution_score_low: <reasoning>``; a judge that fails adds no flag, as in Go. Answers
    the flags joined by "; " or "ok", and keeps the last ``keep`` records in ``records``."""

    capabilities = ("audit",)
    produces = (AuditResult,)

    def __init__(
        self,
        id: str,
        *,
        keep: int = 1000,
        llm: Provider | None = None,
        constitution: str = CONSTITUTION,
        model: str | None = None,
    ) -> None:
        super().__init__(id)
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.records: deque[AuditRecord] = deque(maxlen=keep)
        self.llm = llm
        self.constitution = constitution
        self.model = model

    @handler
    async def on_request(self, payload: AuditRequest, ctx: Context) -> Message:
        envelope = ctx.message
        p = payload.model_copy(
            update={
                "message_id": envelope.id if payload.message_id is None else payload.message_id,
                "sender": envelope.sender if payload.sender is None else payload.sender,
                "recipient": envelope.recipient if payload.recipient is None else payload.recipient,
            }
        )
        assert p.message_id is not None
        flags = []
        if not p.content.strip():
            flags.append("empty_content")
        if not p.sender or not p.recipient:
            flags.append("missing_address")
        if len(p.content.encode()) > MAX_CONTENT_BYTES:
            flags.append("oversized_content")
        score = None
        if self.llm is not None:
            try:
                verdict = await critique(
                    ctx.llm(self.llm), self.constitution, p.content, model=self.model
                )
            except LLMError as exc:
                ctx.logger.warning("llm_auditor: the judge failed, no score: %s", exc)
            else:
                score = verdict.score
                if score < LOW_SCORE:
                    flags.append(f"constitution_score_low: {verdict.reasoning}")
        ok = not flags
        self.records.append(
            AuditRecord(
                id=p.message_id,
                scenario="audit",
                success=ok,
                flags=tuple(flags),
                at=ctx.now(),
                constitution_score=score,
            )
        )
        summary = "; ".join(flags) or "ok"
        return ctx.emit(
            AuditResult(
                message_id=p.message_id,
                success=ok,
                flags=tuple(flags),
                summary=summary,
                constitution_score=score,
            )
        )


def _with_product_hint(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go classified the complaint text and its product hint together."""
    hint = go.get("product_hint")
    if hint and isinstance(out.get("text"), str):
        out["text"] = f"{out['text']} {hint}"
    return out


class Complaint(Payload):
    message_type = "complaint"
    complaint_id: str
    text: str

    _go = go_names(
        {
            "user_id": "complaint_id",  # Go's answer is keyed by the user
            "complaint_text": "text",
            "product_hint": UNUSED,  # joined to the text, below
            "channel_hint": UNUSED,
            "occurred_on_date": UNUSED,
        },
        then=_with_product_hint,
    )


class ComplaintTriageResult(Payload):
    message_type = "complaint_triage"
    complaint_id: str
    category: str
    severity: Literal["low", "medium", "high"]
    needs_human_review: bool
    matched: tuple[str, ...]


# The RBI Integrated Ombudsman's complaint families, with the words that point to each.
CATEGORIES = {
    "deposit_accounts": (
        "account",
        "savings",
        "fixed deposit",
        "fd",
        "deposit",
        "passbook",
        "dormant",
    ),
    "loans_and_advances": ("loan", "emi", "interest rate", "foreclosure", "prepayment", "mortgage"),
    "digital_banking_upi_imps": (
        "upi",
        "imps",
        "neft",
        "net banking",
        "mobile banking",
        "app",
        "otp",
    ),
    "cards": ("card", "credit card", "debit card", "atm"),
    "remittance": ("remittance", "swift", "wire", "foreign transfer", "inward"),
    "charges_and_fees": ("charge", "charges", "fee", "fees", "penalty", "hidden"),
    "staff_conduct": ("rude", "staff", "behaviour", "behavior", "misbehaved", "manager"),
    "mis_selling": ("mis-sold", "missold", "mis-selling", "forced to buy", "without my consent"),
}
HIGH = ("fraud", "unauthorised", "unauthorized", "stolen", "ombudsman", "police", "legal")
MEDIUM = ("refund", "debited", "lost", "urgent", "money", "blocked")


def _hits(text: str, words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text))


class ComplaintTriage(BaseAgent):
    """Sorts a customer complaint into one of 9 categories by keywords (deposit_accounts,
    loans_and_advances, digital_banking_upi_imps, cards, remittance, charges_and_fees,
    staff_conduct, mis_selling, other), most matches winning, ties in that order. Severity is
    high for fraud, theft or legal words, medium for money at stake, low otherwise. A single
    match, or none, needs a human review."""

    capabilities = ("complaint_triage",)
    risk = Risk.MEDIUM
    produces = (ComplaintTriageResult,)

    @handler
    async def on_complaint(self, payload: Complaint, ctx: Context) -> Message:
        text = payload.text.casefold()
        scored = {name: _hits(text, words) for name, words in CATEGORIES.items()}
        best = max(scored, key=lambda name: len(scored[name]))
        matched = scored[best]
        category = best if matched else "other"
        severity = "high" if _hits(text, HIGH) else "medium" if _hits(text, MEDIUM) else "low"
        out = ComplaintTriageResult(
            complaint_id=payload.complaint_id,
            category=category,
            severity=severity,
            needs_human_review=len(matched) <= 1,
            matched=matched,
        )
        return ctx.emit(out)
