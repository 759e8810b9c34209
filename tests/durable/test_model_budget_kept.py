"""A request's model budgets (``Limits.correlation_tokens``) survive a restart with a store
(issue 37): what its calls used before the process stopped still counts, so the resumed
request cannot overrun the budget; and a call run again after a restart is charged once.
The model is the OpenAI wire format, served on 127.0.0.1 by the provider test server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from genie import BaseAgent, Context, Limits, Message, Payload, Runtime, handler
from genie.llm import BudgetExceededError, ChatMessage, OpenAIProvider, Request

from ..llm.server import model as model
from ..llm.server import provider as provider
from .test_store import kept

pytestmark = pytest.mark.anyio

USED = 138  # the canned OpenAI answer's usage
QUESTION = Request(messages=(ChatMessage.user("Think about it."),), max_tokens=100)
WORST = QUESTION.prompt_estimate() + 100  # what one call reserves before it settles
BUDGET = USED + WORST  # room for two calls: the first settled, the second reserved


class Think(Payload):
    message_type = "think"
    step: int = 0
    refusals: tuple[str, ...] = ()


class Thought(Payload):
    message_type = "thought"
    refusals: tuple[str, ...]


class Thinker(BaseAgent):
    """Steps 0 to ``last``, each one model call (a refusal noted, the chain goes on). With
    ``gate``, the second step waits for it before its call: the process stops there."""

    produces = (Think, Thought)

    def __init__(
        self, id: str, llm: OpenAIProvider, gate: anyio.Event | None = None, last: int = 2
    ) -> None:
        super().__init__(id)
        self.llm, self.gate, self.last = llm, gate, last

    @handler
    async def on_think(self, think: Think, ctx: Context) -> Message:
        if think.step == 1 and self.gate is not None:
            await self.gate.wait()
        refusals = list(think.refusals)
        try:
            await ctx.llm(self.llm).complete(QUESTION)
        except BudgetExceededError as refused:
            refusals.append(f"step {think.step}: {refused.limit}")
        if think.step == self.last:
            return ctx.emit(Thought(refusals=tuple(refusals)), recipient="user")
        step = think.step + 1
        return ctx.emit(Think(step=step, refusals=tuple(refusals)), recipient=self.id)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def counted(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (total,) = db.execute("SELECT COALESCE(SUM(n), 0) FROM counters").fetchone()
    finally:
        db.close()
    return int(total)


async def test_a_resumed_request_spends_only_what_its_budget_has_left(
    tmp_path: Path, model: OpenAIProvider
) -> None:
    path = tmp_path / "store.db"
    limits = Limits(correlation_tokens=BUDGET)
    stopped = Runtime(
        [Thinker("thinker", model, gate=anyio.Event())],
        store=path,
        limits=limits,
        drain_timeout=0.01,
    )
    async with stopped:
        await stopped.publish(stopped.message(Think(), recipient="thinker"))
        await anyio.sleep(0.3)  # the first call made and settled; the second step waits
    assert counted(path) == USED  # the first call, as it settled
    async with Runtime([Thinker("thinker", model)], store=path, limits=limits) as rt:
        [request] = rt.unfinished()
        result = await rt.resume(request, timeout=10)
    [reply] = result.replies
    assert isinstance(reply.payload, Thought)
    # Two calls fit the budget: the one before the stop and the second step's. Without the
    # store's count the third would have fit too (a fresh process counts from nothing).
    assert reply.payload.refusals == ("step 2: correlation_tokens",)
    assert kept(path) == ([], [])
    assert counted(path) == 0  # the settled request's counts go with it


async def test_a_budget_tripped_before_a_restart_refuses_after_it(
    tmp_path: Path, model: OpenAIProvider
) -> None:
    """The limit fired in the first process (its trip kept in the store); the resumed
    request's next call is refused too, as a refusal, not an error of the store."""
    path = tmp_path / "store.db"
    limits = Limits(correlation_tokens=WORST - 1)  # not even one call fits
    stopped = Runtime(
        [Thinker("thinker", model, gate=anyio.Event(), last=1)],
        store=path,
        limits=limits,
        drain_timeout=0.01,
    )
    async with stopped:
        await stopped.publish(stopped.message(Think(), recipient="thinker"))
        await anyio.sleep(0.3)  # the first call refused (the limit fired); step 1 waits
    async with Runtime([Thinker("thinker", model, last=1)], store=path, limits=limits) as rt:
        [request] = rt.unfinished()
        result = await rt.resume(request, timeout=10)
    [reply] = result.replies
    assert isinstance(reply.payload, Thought)
    assert reply.payload.refusals == (
        "step 0: correlation_tokens",
        "step 1: correlation_tokens",
    )
    assert kept(path) == ([], [])
