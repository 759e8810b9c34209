"""A mixture-of-agents panel (Go's ``moa_recommender``): the same question to every panellist
at once, the most frequent identical answer wins. A building block: the agent itself waits for
agents to get their LLM stacks from the pipeline's ``llm:`` section."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from genie.llm import LLMError, Provider, Request

__all__ = ["PanelError", "PanelResult", "ask_panel"]


class PanelError(LLMError):
    """The panel could not answer: ``empty panel`` or ``all panellists failed``."""


@dataclass(frozen=True, slots=True)
class PanelResult:
    """The winning text, its votes, and each panellist's answer or error (by provider name)."""

    text: str
    votes: int
    answers: dict[str, str]
    errors: dict[str, str]


async def ask_panel(panel: Sequence[Provider], request: Request) -> PanelResult:
    """Asks every panellist in parallel; failures are kept in ``errors`` and do not vote.
    A tie goes to the answer given first in panel order (Go left it to map order)."""
    if not panel:
        raise PanelError("empty panel")
    answers: list[str | None] = [None] * len(panel)
    errors: dict[str, str] = {}

    async def ask(index: int, provider: Provider) -> None:
        try:
            answers[index] = (await provider.complete(request)).text.strip()
        except LLMError as exc:
            errors[provider.name] = str(exc)

    async with anyio.create_task_group() as tg:
        for index, provider in enumerate(panel):
            tg.start_soon(ask, index, provider)
    given = [a for a in answers if a is not None]
    if not given:
        raise PanelError(f"all panellists failed: {'; '.join(errors.values())}")
    counts = Counter(given)
    best = max(counts.values())
    text = next(a for a in given if counts[a] == best)
    by_name = {p.name: a for p, a in zip(panel, answers, strict=True) if a is not None}
    return PanelResult(text=text, votes=best, answers=by_name, errors=errors)
