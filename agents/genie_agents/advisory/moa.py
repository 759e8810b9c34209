"""A mixture-of-agents panel (Go's ``moa_recommender``): the same question to every panellist
at once, the most frequent identical answer wins. ``ask_panel`` is the function; the
``MoaRecommender`` agent asks it with the stacks a pipeline names (``llm: [a, b, c]``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from genie import BaseAgent, Context, Message, Payload, Risk, ToolDeniedError, handler
from genie.llm import BudgetExceededError, ChatMessage, LLMError, Provider, Request

from .._go import go_text
from .._remember import recalled_context, session_of, user_of

__all__ = [
    "Candidate",
    "MoaRecommendRequest",
    "MoaRecommendation",
    "MoaRecommender",
    "PanelError",
    "PanelResult",
    "ask_panel",
]


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
    A tie goes to the answer given first in panel order (Go left it to map order). When none
    answers and a budget refused one, that refusal is raised (it is never retried)."""
    if not panel:
        raise PanelError("empty panel")
    answers: list[str | None] = [None] * len(panel)
    errors: dict[str, str] = {}
    refusals: list[BudgetExceededError] = []

    async def ask(index: int, provider: Provider) -> None:
        try:
            answers[index] = (await provider.complete(request)).text.strip()
        except LLMError as exc:
            errors[provider.name] = str(exc)
            if isinstance(exc, BudgetExceededError):
                refusals.append(exc)

    async with anyio.create_task_group() as tg:
        for index, provider in enumerate(panel):
            tg.start_soon(ask, index, provider)
    given = [a for a in answers if a is not None]
    if not given:
        if refusals:  # the kill switch stopped the panel: the refusal, never retried, says so
            raise refusals[0]
        raise PanelError(f"all panellists failed: {'; '.join(errors.values())}")
    counts = Counter(given)
    best = max(counts.values())
    text = next(a for a in given if counts[a] == best)
    by_name = {p.name: a for p, a in zip(panel, answers, strict=True) if a is not None}
    return PanelResult(text=text, votes=best, answers=by_name, errors=errors)


class MoaRecommendRequest(Payload):
    message_type = "moa_recommend_request"
    question: str = Field(min_length=1, max_length=8000)

    _go = go_text("question")  # Go's content was the question itself


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True)  # a value inside a payload: frozen, as payloads are

    panellist: str
    text: str = ""
    error: str = ""


class MoaRecommendation(Payload):
    """Go's ``Outcome``: the winning panellist (the first in panel order to give the winning
    text), the votes per distinct answer, and every panellist's answer or error. With a
    reference server, ``reference`` is the rates the panel was shown (its ``get_rates``
    answer)."""

    message_type = "moa_recommendation"
    winner: str
    winner_text: str
    votes: dict[str, int]
    candidates: list[Candidate]
    reference: dict[str, Any] | None = None


class MoaRecommender(BaseAgent):
    """A recommendation by majority: the question to every panellist (``llm``: a list of
    stacks) in parallel (256 tokens, temperature 0.2); identical answers vote, a tie goes to
    panel order. Fails with ``all panellists failed`` when none answers. With ``memory`` the
    panel is shown what is on record of the client (facts, the conversation's summary and
    recent turns) and the winning recommendation is kept: a turn of the conversation and the
    fact ``last_recommendation``, superseding the one before. With ``reference`` (a tool
    server, ``ctx.tool(NAME)``, such as ``genie_agents.tools.reference``) the panel is shown
    its ``get_rates`` answer (policy rates, inflation, deposit rates), a call governed both
    ways; a denied or failed answer leaves the panel without it."""

    capabilities = ("moa_recommend",)
    risk = Risk.MEDIUM
    produces = (MoaRecommendation,)

    def __init__(
        self,
        id: str = "moa_recommender",
        *,
        llm: tuple[Provider, ...],
        system: str = "You are a careful Indian personal-finance adviser. Answer in one "
        "short recommendation.",
        model: str | None = None,
        memory: str | None = None,
        reference: str | None = None,
    ) -> None:
        super().__init__(id)
        self.memory = memory
        self.reference = reference
        if not llm:
            raise ValueError("empty panel: give llm a list of at least one stack")
        self.panel = llm
        self.system = system
        self.model = model

    @handler
    async def on_request(self, payload: MoaRecommendRequest, ctx: Context) -> Message:
        system = self.system
        if self.memory is not None:
            mem = ctx.memory(self.memory)
            user = user_of(ctx)
            known = recalled_context(
                await mem.episodes.snapshot(session_of(ctx)),
                [],
                await mem.facts.current_all(user),
            )
            if known:
                system = f"{system}\n\nWhat is on record of this client:\n{known}"
        reference = await self._rates(ctx)
        if reference is not None:
            shown = json.dumps(reference, sort_keys=True)
            system = f"{system}\n\nReference rates (per cent a year): {shown}"
        request = Request(
            system=system,
            messages=(ChatMessage.user(payload.question),),
            model=self.model,
            max_tokens=256,
            temperature=0.2,
        )
        result = await ask_panel([ctx.llm(p) for p in self.panel], request)
        votes = Counter(result.answers.values())
        winner = next(name for name, text in result.answers.items() if text == result.text)
        candidates = [
            Candidate(
                panellist=p.name,
                text=result.answers.get(p.name, ""),
                error=result.errors.get(p.name, ""),
            )
            for p in self.panel
        ]
        if self.memory is not None:
            mem = ctx.memory(self.memory)
            await mem.episodes.append(session_of(ctx), payload.question, role="user")
            await mem.episodes.append(session_of(ctx), result.text, role=self.id)
            await mem.facts.record(
                user_of(ctx), "last_recommendation", result.text, source=f"{self.id}:{winner}"
            )
        return ctx.emit(
            MoaRecommendation(
                winner=winner,
                winner_text=result.text,
                votes=dict(votes),
                candidates=candidates,
                reference=reference,
            )
        )

    async def _rates(self, ctx: Context) -> dict[str, Any] | None:
        """The reference server's rates (None without one, or when the call is denied or the
        tool fails: the panel then answers without them). A server that cannot be reached
        fails the handler, retried as its options say."""
        if self.reference is None:
            return None
        try:
            out = await ctx.tool(self.reference).call("get_rates", {})
        except ToolDeniedError as exc:
            ctx.logger.info("moa_recommender: rates denied: %s", exc)
            return None
        if out.is_error or out.structured is None:
            ctx.logger.warning("moa_recommender: get_rates failed: %s", out.text)
            return None
        return dict(out.structured)
