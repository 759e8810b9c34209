"""A correlation's model budgets (``Limits.correlation_tokens`` / ``correlation_cost``) across
processes, on a real ``nats-server``: workers together cannot overrun them, the limit fires
once for all of them, and a delivery run again after its worker stopped is charged once.
The model is the OpenAI wire format, served on 127.0.0.1 by the provider test server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from genie import (
    BaseAgent,
    Context,
    GatherResult,
    Limits,
    MemoryAuditLog,
    Message,
    Payload,
    Runtime,
    handler,
)
from genie.llm import (
    BudgetExceededError,
    ChatMessage,
    OpenAIProvider,
    PriceTable,
    Request,
    ScriptedProvider,
)
from genie.llm._governed import CorrelationBudget, Firing, _Switch
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport
from genie.nats._wire import NatsPublisher

from ..llm.server import ProviderServer
from ..llm.server import model as model
from ..llm.server import provider as provider
from .test_nats import jetstream
from .test_nats import server as server

USED = 138  # the canned OpenAI answer's usage: 120 prompt + 18 completion tokens
PRICES = PriceTable.of({"gpt-4.1-mini": {"input": 1.0, "output": 2.0}})  # per million tokens
COST_USED = (120 * 1.0 + 18 * 2.0) / 1e6


def question(max_tokens: int) -> Request:
    return Request(messages=(ChatMessage.user("Think about it."),), max_tokens=max_tokens)


WORST = question(100).prompt_estimate() + 100  # what a call of 100 tokens at most reserves
COST_WORST = (question(100).prompt_estimate() * 1.0 + 100 * 2.0) / 1e6


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


class Think(Payload):
    message_type = "think"
    refusals: tuple[str, ...] = ()


class Thought(Payload):
    message_type = "thought"
    refusals: tuple[str, ...]


class Thinker(BaseAgent):
    """Calls the model once (at most ``max_tokens``), then passes the Think on to ``then``, or
    ends the chain with a Thought. With ``catch`` a refusal is noted and the chain goes on.
    With ``hang``, it sets the event once its call is settled and never returns."""

    produces = (Think, Thought)

    def __init__(
        self,
        id: str,
        llm: OpenAIProvider,
        *,
        then: str | None = None,
        max_tokens: int = 100,
        catch: bool = False,
        hang: anyio.Event | None = None,
    ) -> None:
        super().__init__(id)
        self.llm, self.then, self.max_tokens, self.catch = llm, then, max_tokens, catch
        self.hang = hang

    @handler
    async def on_think(self, payload: Think, ctx: Context) -> Message:
        refusals = list(payload.refusals)
        try:
            await ctx.llm(self.llm).complete(question(self.max_tokens))
        except BudgetExceededError as refused:
            if not self.catch:
                raise
            refusals.append(f"{self.id}: {refused}")
        if self.hang is not None:
            self.hang.set()
            await anyio.sleep_forever()
        if self.then is None:
            return ctx.emit(Thought(refusals=tuple(refusals)))
        return ctx.emit(Think(refusals=tuple(refusals)), recipient=self.then)


def limit_records(audit: MemoryAuditLog) -> list[tuple[str, str]]:
    return [(r.actor, r.target) for r in audit.records if r.action == "limit_fired"]


class Deployment:
    """The entry (hosting nothing, keeping the request's audit records) and workers, each a
    runtime of the same agents on one broker namespace."""

    def __init__(self, url: str, names: NatsNames, build: Any, **runtime: Any) -> None:
        self.url, self.names, self.build, self.runtime = url, names, build, runtime
        self.transports: list[NatsTransport] = []
        self.audit = MemoryAuditLog()

    async def process(self, hosted: tuple[str, ...] = (), *agents: BaseAgent) -> Runtime:
        """A process hosting ``hosted`` (none: the entry), with ``agents`` in place of the
        deployment's agents of the same ids."""
        t = NatsTransport(self.url, self.names, hosted=hosted, ack_wait=1.0)
        audit = MemoryAuditLog() if hosted else self.audit
        rt = Runtime(transport=t, audit=audit, **self.runtime)
        own = {a.id: a for a in agents}
        for agent in self.build():
            rt.add(own.get(agent.id, agent))
        rt.types.register(Thought)
        t.attach(rt)
        await t.connect()
        self.transports.append(t)
        return rt

    async def aclose(self) -> None:
        for t in self.transports:
            await t.close()


@pytest.mark.parametrize("budget", ["tokens", "cost"])
async def test_two_workers_together_cannot_overrun_a_correlations_budget(
    server: LocalNatsServer, provider: ProviderServer, model: OpenAIProvider, budget: str
) -> None:
    """The first call of the request fits; the second, in another worker, would overrun
    the budget both together spent: it is refused before it is sent, and the limit fires
    once, in the request's audit log."""
    if budget == "tokens":
        limits, prices = Limits(correlation_tokens=USED + WORST - 1), None
    else:
        limits, prices = Limits(correlation_cost=COST_USED + COST_WORST * 0.99), PRICES
    d = Deployment(
        server.url,
        NatsNames(f"model-{budget}"),
        lambda: [Thinker("first", model, then="second"), Thinker("second", model)],
        limits=limits,
        prices=prices,
    )
    try:
        one = await d.process(("first",))
        two = await d.process(("second",))
        entry = await d.process()
        async with one, two, entry:
            msg = entry.message(Think(), recipient="first")
            result = await entry.ask(msg, until="thought", timeout=15)
            await entry.wait_idle()
    finally:
        await d.aclose()
    assert len(provider.received) == 1  # the second call never reached the model
    assert result.status == "partial"
    [letter] = entry.dead_letters
    assert letter.agent_id == "second"
    assert letter.reason.startswith(
        f"BudgetExceededError: llm call refused: correlation_{budget} budget"
    )
    assert limit_records(d.audit) == [(f"limit:correlation_{budget}", "second")]


async def test_once_fired_in_one_worker_a_call_in_another_is_refused_even_if_it_fits(
    server: LocalNatsServer, provider: ProviderServer, model: OpenAIProvider
) -> None:
    """``second`` (in worker two) is refused and carries on; ``third`` (in worker one, whose
    own count has room for its small call) is refused too: the limit fired for the whole
    correlation, once."""
    d = Deployment(
        server.url,
        NatsNames("model-trip"),
        lambda: [
            Thinker("first", model, then="second"),
            Thinker("second", model, then="third", catch=True),
            Thinker("third", model, max_tokens=1, catch=True),
        ],
        limits=Limits(correlation_tokens=USED + WORST - 1),
    )
    try:
        one = await d.process(("first", "third"))
        two = await d.process(("second",))
        entry = await d.process()
        async with one, two, entry:
            msg = entry.message(Think(), recipient="first")
            result = await entry.ask(msg, until="thought", timeout=15)
    finally:
        await d.aclose()
    assert result.status == "complete"
    assert len(provider.received) == 1
    second, third = result.message.payload.refusals  # type: ignore[attr-defined]
    assert second.startswith("second: llm call refused: correlation_tokens budget")
    assert third.startswith("third: llm call refused: the correlation_tokens limit of correlation ")
    assert "fired already in another process" in third
    assert limit_records(d.audit) == [("limit:correlation_tokens", "second")]


async def test_a_delivery_run_again_after_its_worker_stopped_is_charged_once(
    server: LocalNatsServer, provider: ProviderServer, model: OpenAIProvider
) -> None:
    """The worker stops after its handler called the model, before its outcome: another
    worker runs the delivery again (the model is called twice), and the correlation's
    shared count holds the first run's tokens only."""
    names = NatsNames("model-again")
    d = Deployment(
        server.url,
        names,
        lambda: [Thinker("first", model)],
        limits=Limits(correlation_tokens=10 * WORST),
    )
    called = anyio.Event()
    done = anyio.Event()
    results: list[GatherResult] = []
    try:
        one = await d.process(("first",), Thinker("first", model, hang=called))
        entry = await d.process()
        msg = entry.message(Think(), recipient="first")
        async with entry, anyio.create_task_group() as tg:

            async def ask() -> None:
                results.append(await entry.ask(msg, until="thought", timeout=20))
                done.set()

            tg.start_soon(ask)
            with anyio.CancelScope() as stopping:  # as on SIGTERM: at once, no drain
                async with one:
                    with anyio.fail_after(10):
                        await called.wait()  # the handler's model call is settled
                    stopping.cancel()
            two = await d.process(("first",))
            async with two:  # takes the delivery once its ack wait is over, and runs it again
                with anyio.fail_after(20):
                    await done.wait()
    finally:
        await d.aclose()
    [result] = results
    assert result.status == "complete"
    assert len(provider.received) == 2  # the handler ran twice: the model was called twice
    async with jetstream(server.url) as js:
        counter = await js.get_last_msg(names.budget, names.charged(msg.correlation_id, "tokens"))
    assert json.loads(counter.data or b"{}")["val"] == str(USED)  # charged once


class LateReply:
    """A real nats-server's budget counters, whose answer to the first charge of a key ending
    in ``late`` comes a second late: the charge is on the broker when a cancel reaches the
    call waiting for its answer (a deadline, a request cancelled, a worker stopping). With
    ``lost``, the charge itself is that late: the cancel comes before it reaches the broker."""

    def __init__(self, counters: NatsPublisher, late: str, *, lost: bool = False) -> None:
        self.counters, self.late, self.lost, self.waited = counters, late, lost, False

    async def charge(self, correlation_id: str, key: str, n: int, /, what: str) -> int:
        late = key.endswith(self.late) and not self.waited
        self.waited = self.waited or late
        if late and self.lost:
            await anyio.sleep(1)
        total = await self.counters.charge(correlation_id, key, n, what)
        if late:
            await anyio.sleep(1)
        return total


@asynccontextmanager
async def cancelled_calls(
    server: LocalNatsServer, namespace: str, late: str, max_tokens: int, *, lost: bool = False
) -> AsyncIterator[tuple[CorrelationBudget, NatsPublisher, list[Firing], Message]]:
    transport = NatsTransport(server.url, NatsNames(namespace))
    await transport.connect()
    try:
        counters = NatsPublisher(transport.names, lambda: transport.js, transport._max_payload)
        firings: list[Firing] = []
        budget = CorrelationBudget(
            max_tokens=max_tokens,
            max_cost=None,
            prices=PriceTable(),
            on_fire=firings.append,
            track=lambda cid: None,
        )
        budget.share(LateReply(counters, late, lost=lost))
        yield budget, counters, firings, Runtime().message(Think(), recipient="thinker")
    finally:
        await transport.close()


@pytest.mark.parametrize("lost", [False, True], ids=["counted", "lost"])
async def test_a_call_cancelled_while_its_worst_case_is_held_leaves_none_of_it_counted(
    server: LocalNatsServer, lost: bool
) -> None:
    """The worst case reached the shared counter, then a cancel cut the call short before
    its answer: before, the process released it locally only, and the correlation's budget in
    every process stayed short of it for good. Whether the charge reached the broker is not
    known to the call: one that did not is not taken away either."""
    calls = cancelled_calls(server, "held", "/llm/1/tokens", max_tokens=10 * WORST, lost=lost)
    async with calls as (budget, counters, firings, msg):
        model = ScriptedProvider(["ok"])
        with anyio.move_on_after(0.2) as deadline:
            await _Switch(model, budget, "thinker", msg).complete(question(100))
        assert deadline.cancelled_caught
        assert await counters.charge(msg.correlation_id, "look", 0, what="tokens") == 0
        answer = await _Switch(model, budget, "thinker", msg).complete(question(100))
        assert answer.text == "ok"
        assert firings == []


async def test_a_refusal_cancelled_while_it_trips_the_counter_still_fires_once(
    server: LocalNatsServer,
) -> None:
    """Refused here, the call trips the shared counter; a cancel came before the broker's
    answer. Before, the refusal was lost: no record here (the next call asked again), and,
    the counter tripped, no process could fire the limit any more."""
    calls = cancelled_calls(server, "tripped", "/tokens/tripped", max_tokens=10)
    async with calls as (budget, _, firings, msg):
        model = ScriptedProvider(["ok"])
        with anyio.move_on_after(0.2) as deadline:
            await _Switch(model, budget, "thinker", msg).complete(question(100))
        assert deadline.cancelled_caught
        assert budget.fired(msg.correlation_id) == "correlation_tokens"
        assert [f.limit for f in firings] == ["limit:correlation_tokens"]
        with pytest.raises(BudgetExceededError, match="fired already"):
            await _Switch(model, budget, "thinker", msg).complete(question(1))
        assert len(firings) == 1
