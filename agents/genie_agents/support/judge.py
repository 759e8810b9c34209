"""The auditor's LLM judge (Go's ``Critique``): a model scores an output 0..10 against a
constitution. The ``llm_auditor`` agent calls it when its pipeline gives it a model."""

from __future__ import annotations

import re
from dataclasses import dataclass

from genie.llm import CallContext, ChatMessage, Provider, Request

__all__ = ["Verdict", "critique", "parse_verdict"]

PROMPT = (
    "Score the following output 0..10 against the principles. Reply with:\n"
    "SCORE: <int>\n"
    "REASONING: <one line>\n\n"
    "--- BEGIN OUTPUT ---\n{candidate}\n--- END OUTPUT ---"
)
_SCORE = re.compile(r"^\s*SCORE:\s*(-?\d+)", re.M)
_REASONING = re.compile(r"^\s*REASONING:\s*(.*)$", re.M)


@dataclass(frozen=True, slots=True)
class Verdict:
    score: int
    reasoning: str


def parse_verdict(text: str) -> Verdict:
    """``SCORE:`` clamped to 0..10 (0 when missing or not a number, as in Go) and
    ``REASONING:`` (the whole answer when missing)."""
    score = _SCORE.search(text)
    reasoning = _REASONING.search(text)
    return Verdict(
        score=min(10, max(0, int(score[1]))) if score else 0,
        reasoning=reasoning[1].strip() if reasoning else text.strip(),
    )


async def critique(
    provider: Provider,
    constitution: str,
    candidate: str,
    *,
    model: str | None = None,
    context: CallContext | None = None,
) -> Verdict:
    """One call (128 tokens at most, temperature 0), the constitution as the system prompt.
    The provider's errors (:class:`genie.llm.LLMError`) are raised to the caller."""
    request = Request(
        system=constitution,
        messages=(ChatMessage.user(PROMPT.format(candidate=candidate)),),
        model=model,
        max_tokens=128,
        temperature=0,
        context=context or CallContext(),
    )
    return parse_verdict((await provider.complete(request)).text)
