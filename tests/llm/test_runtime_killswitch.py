"""The kill switch inside the runtime: model calls a handler makes through ``ctx.llm`` are
reserved against their correlation's ``Limits.correlation_tokens`` / ``correlation_cost``
before a byte goes out, over a real socket to the provider server on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    InvalidArgumentError,
    Limits,
    MemoryAuditLog,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
    TestContext,
    handler,
)
from genie._runtime.observe.events import Event
from genie.llm import (
    BudgetExceededError,
    CallContext,
    ChatMessage,
    CostObserver,
    Finish,
    OpenAIProvider,
    PriceTable,
    Provider,
    Request,
    Response,
    ScriptedProvider,
    StreamEvent,
    TextDelta,
    Usage,
    UsageEvent,
)

from .helpers import API_KEY, read_into, texts
from .server import ProviderServer

USED = 138  # the canned OpenAI answer's usage: 120 prompt + 18 completion tokens
QUESTION = Request(messages=(ChatMessage.user("Think about it."),), max_tokens=100)
WORST = QUESTION.prompt_estimate() + QUESTION.max_tokens


class Think(Payload):
    message_type = "think"
    calls: int = 1  # model calls in one handler call
    catch: bool = False  # catch each refusal and call again (a handler stuck in a loop)
    stream: bool = False


class Thought(Payload):
    message_type = "thought"
    calls: int
    refusals: list[str]


class Thinker(BaseAgent):
    """Calls the model ``calls`` times per message; with ``catch`` it swallows refusals and
    keeps calling, as a badly written retry loop would."""

    produces = (Thought,)

    def __init__(self, id: str, llm: Provider) -> None:
        super().__init__(id)
        self.llm = llm

    @handler
    async def on_think(self, payload: Think, ctx: Context) -> Message:
        llm = ctx.llm(self.llm)
        calls, refusals = 0, []
        for _ in range(payload.calls):
            try:
                if payload.stream:
                    await read_into(llm.stream(QUESTION), [])
                else:
                    await llm.complete(QUESTION)
            except BudgetExceededError as refused:
                if not payload.catch:
                    raise
                refusals.append(str(refused))
                continue
            calls += 1
        return ctx.reply(Thought(calls=calls, refusals=refusals))


class Rethinker(BaseAgent):
    """Calls the model once per message and sends itself the next message: a loop through
    the bus, each step a new delivery of the same correlation."""

    produces = (Think,)

    def __init__(self, id: str, llm: Provider) -> None:
        super().__init__(id)
        self.llm = llm
        self.steps = 0

    @handler
    async def on_think(self, payload: Think, ctx: Context) -> Message:
        await ctx.llm(self.llm).complete(QUESTION)
        self.steps += 1
        return ctx.emit(Think(), recipient=self.id)


@pytest.fixture
async def model(server: ProviderServer) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(base_url=server.url, api_key=API_KEY, model="gpt-4.1-mini")
    try:
        yield provider
    finally:
        await provider.aclose()


def limit_records(audit: MemoryAuditLog) -> list[tuple[str, str, str]]:
    return [(r.actor, r.action, r.target) for r in audit.records if r.action == "limit_fired"]


def fired_metric(rt: Runtime, limit: str) -> float:
    assert rt.metrics is not None
    match = re.search(
        rf'^genie_limits_fired_total\{{limit="{limit}"\}} (\S+)$', rt.metrics.text(), re.M
    )
    assert match, rt.metrics.text()
    return float(match[1])


async def test_with_the_budget_exhausted_the_server_receives_no_request(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    audit = MemoryAuditLog()
    retrying = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0))
    async with Runtime(
        limits=Limits(correlation_tokens=WORST - 1), audit=audit, metrics=True
    ) as rt:
        rt.add(Thinker("thinker", model), options=retrying)
        msg = rt.message(Think(), recipient="thinker")
        events: list[Event] = []
        async with rt.events(msg.correlation_id) as stream:
            result = await rt.ask(msg, timeout=10)
            events = [e async for e in stream]
    assert server.received == []  # refused before any byte went out
    assert result.status == "partial"
    [letter] = rt.dead_letters
    assert (letter.kind, letter.agent_id, letter.error_type) == (
        "failed",
        "thinker",
        "BudgetExceededError",
    )
    assert "correlation_tokens budget" in letter.reason
    assert letter.attempts == 1
    assert rt.statistics().retries == 0
    assert limit_records(audit) == [("limit:correlation_tokens", "limit_fired", "thinker")]
    [fired] = [e for e in events if e.kind == "limit_fired"]
    assert (fired.agent_id, fired.policy) == ("thinker", "limit:correlation_tokens")
    assert fired.reason is not None
    assert f"the call may need {WORST}" in fired.reason
    assert fired_metric(rt, "correlation_tokens") == 1


async def test_a_loop_of_calls_is_stopped_at_the_budget_with_one_limit_record(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    audit = MemoryAuditLog()
    budget = 1000
    async with Runtime(limits=Limits(correlation_tokens=budget), audit=audit) as rt:
        rt.add(Thinker("thinker", model))
        result = await rt.ask(rt.message(Think(calls=100), recipient="thinker"), timeout=10)
    # Each call used 138 tokens; a call is sent while 138 * sent + WORST still fits.
    sent = next(n for n in range(100) if USED * n + WORST > budget)
    assert len(server.received) == sent
    assert result.status == "partial"
    assert limit_records(audit) == [("limit:correlation_tokens", "limit_fired", "thinker")]
    [letter] = rt.dead_letters
    assert "correlation_tokens" in letter.reason


async def test_a_handler_that_catches_the_refusal_and_loops_is_refused_every_time(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    audit = MemoryAuditLog()
    # Three calls fit, then 100 tokens are left: not enough for a fourth (WORST > 100).
    async with Runtime(limits=Limits(correlation_tokens=3 * USED + 100), audit=audit) as rt:
        rt.add(Thinker("thinker", model))
        result = await rt.ask(
            rt.message(Think(calls=50, catch=True), recipient="thinker"), timeout=10
        )
    thought = result.message.payload
    assert isinstance(thought, Thought)
    assert thought.calls == 3
    assert len(server.received) == 3
    assert len(thought.refusals) == 47
    assert "fired already" in thought.refusals[-1]
    assert limit_records(audit) == [("limit:correlation_tokens", "limit_fired", "thinker")]


async def test_once_fired_even_a_call_that_would_fit_is_refused(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    tiny = Request(messages=(ChatMessage.user("?"),), max_tokens=1)
    outcomes: list[str] = []

    class Tries(BaseAgent):
        produces = (Thought,)

        @handler
        async def on_think(self, payload: Think, ctx: Context) -> Message:
            for request in (QUESTION, QUESTION, QUESTION, QUESTION, tiny):
                try:
                    await ctx.llm(model).complete(request)
                    outcomes.append("sent")
                except BudgetExceededError:
                    outcomes.append("refused")
            return ctx.reply(Thought(calls=0, refusals=[]))

    async with Runtime([Tries("tries")], limits=Limits(correlation_tokens=3 * USED + 100)) as rt:
        first = rt.message(Think(), recipient="tries")
        await rt.ask(first, timeout=10)
        # The correlation ended, and its model budget with it (as its delivery budget): a
        # request that reuses its id starts afresh.
        again = rt.message(Think(), recipient="tries", correlation_id=first.correlation_id)
        await rt.ask(again, timeout=10)
    assert tiny.prompt_estimate() + tiny.max_tokens < 100
    assert outcomes == ["sent"] * 3 + ["refused"] * 2 + ["sent"] * 3 + ["refused"] * 2
    assert len(server.received) == 6


async def test_an_agent_that_re_emits_to_itself_is_stopped_at_the_budget(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    audit = MemoryAuditLog()
    loop = Rethinker("loop", model)
    limits = Limits(max_hops=10_000, correlation_tokens=1000)
    async with Runtime([loop], limits=limits, audit=audit) as rt:
        await rt.publish(rt.message(Think(), recipient="loop"))
        with anyio.fail_after(10):
            await rt.wait_idle()
    sent = next(n for n in range(100) if USED * n + WORST > 1000)
    assert loop.steps == sent == len(server.received)
    assert limit_records(audit) == [("limit:correlation_tokens", "limit_fired", "loop")]
    [letter] = rt.dead_letters
    assert letter.kind == "failed"
    assert "correlation_tokens" in letter.reason


async def test_streams_are_reserved_too(server: ProviderServer, model: OpenAIProvider) -> None:
    audit = MemoryAuditLog()
    async with Runtime(limits=Limits(correlation_tokens=WORST - 1), audit=audit) as rt:
        rt.add(Thinker("thinker", model))
        await rt.ask(rt.message(Think(stream=True), recipient="thinker"), timeout=10)
    assert server.received == []
    assert len(limit_records(audit)) == 1


async def test_two_correlations_do_not_share_a_budget(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    audit = MemoryAuditLog()
    async with Runtime(limits=Limits(correlation_tokens=USED + WORST), audit=audit) as rt:
        rt.add(Thinker("thinker", model), options=AgentOptions(max_concurrency=2))
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                msg = rt.message(Think(calls=3, catch=True), recipient="thinker")
                tg.start_soon(rt.ask, msg)
    assert len(server.received) == 4  # two calls fit each correlation's budget, not two in all
    assert [r[0] for r in limit_records(audit)] == ["limit:correlation_tokens"] * 2


async def test_two_runtimes_in_one_process_share_nothing(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    """Same seed, so the same correlation ids, and the same provider object: the second
    runtime's budget is still whole after the first one's fired."""
    audits = MemoryAuditLog(), MemoryAuditLog()
    limits = Limits(correlation_tokens=USED + WORST)
    async with (
        Runtime([Thinker("thinker", model)], limits=limits, audit=audits[0], seed=7) as first,
        Runtime([Thinker("thinker", model)], limits=limits, audit=audits[1], seed=7) as second,
    ):
        one = await first.ask(
            first.message(Think(calls=5, catch=True), recipient="thinker"), timeout=10
        )
        two = await second.ask(second.message(Think(calls=2), recipient="thinker"), timeout=10)
    assert one.correlation_id == two.correlation_id
    assert [r.payload.calls for r in (one.message, two.message)] == [2, 2]  # type: ignore[attr-defined]
    assert len(limit_records(audits[0])) == 1
    assert limit_records(audits[1]) == []
    assert len(server.received) == 4


async def test_a_cost_budget_prices_the_worst_case_before_sending(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    # 1 per million tokens in and 2 out: the worst case of a call costs about 0.000213.
    prices = PriceTable.of({"gpt-4.1-mini": {"input": 1.0, "output": 2.0}})
    audit = MemoryAuditLog()
    with pytest.raises(ConfigurationError, match="correlation_cost needs a price table"):
        Runtime(limits=Limits(correlation_cost=1.0))
    async with Runtime(
        [Thinker("thinker", model)],
        limits=Limits(correlation_cost=0.0002),
        prices=prices,
        audit=audit,
    ) as rt:
        await rt.ask(rt.message(Think(), recipient="thinker"), timeout=10)
    assert server.received == []
    assert limit_records(audit) == [("limit:correlation_cost", "limit_fired", "thinker")]


async def test_each_call_carries_the_context_of_the_handler_message() -> None:
    model = ScriptedProvider(["ok"])

    class Peek(BaseAgent):
        produces = (Thought,)

        @handler
        async def on_think(self, payload: Think, ctx: Context) -> Message:
            llm = ctx.llm(model)
            await llm.complete(QUESTION)
            forged = CallContext(principal="someone", correlation_id="another-budget")
            await llm.complete(QUESTION.model_copy(update={"context": forged}))
            return ctx.reply(Thought(calls=2, refusals=[]))

    async with Runtime([Peek("peek")], limits=Limits(correlation_tokens=10_000)) as rt:
        msg = rt.message(Think(), recipient="peek", metadata={"user_id": "asha"})
        await rt.ask(msg, timeout=10)
    filled, kept = (r.context for r in model.requests)
    assert (filled.principal, filled.correlation_id) == ("asha", msg.correlation_id)
    assert filled.classification == msg.classification
    # A context of the handler's own is kept, but its correlation is always the message's:
    # a budget cannot be escaped by naming another correlation.
    assert (kept.principal, kept.correlation_id) == ("someone", msg.correlation_id)


async def test_the_test_context_fills_the_call_context_without_a_budget() -> None:
    model = ScriptedProvider(["ok"])
    ctx = TestContext("a", Message.new(Think(), sender="user", recipient="a"))
    answer = await ctx.llm(model).complete(QUESTION)
    assert answer.text == "ok"
    assert model.requests[0].context.correlation_id == ctx.message.correlation_id


async def test_a_handler_giving_ctx_llm_no_provider_or_no_request_is_told_what_is_wrong() -> None:
    told: list[str] = []

    class Careless(BaseAgent):
        produces = (Thought,)

        @handler
        async def on_think(self, payload: Think, ctx: Context) -> Message:
            model = ScriptedProvider(["ok"])
            for misuse in (
                lambda: ctx.llm(None).complete(QUESTION),  # type: ignore[arg-type]
                lambda: ctx.llm("openai").complete(QUESTION),  # type: ignore[arg-type]
                lambda: ctx.llm(model).complete("Think about it."),  # type: ignore[arg-type]
                lambda: read_into(ctx.llm(model).stream(None), []),  # type: ignore[arg-type]
            ):
                with pytest.raises(InvalidArgumentError) as wrong:
                    await misuse()
                told.append(str(wrong.value))
            return ctx.reply(Thought(calls=0, refusals=[]))

    async with Runtime([Careless("careless")], limits=Limits(correlation_tokens=10_000)) as rt:
        result = await rt.ask(rt.message(Think(), recipient="careless"), timeout=10)
    assert result.status == "complete"
    assert "ctx.llm: NoneType (None) is no genie.llm Provider" in told[0]
    assert "ctx.llm: str ('openai') is no genie.llm Provider" in told[1]
    assert "a call takes a genie.llm Request, not str ('Think about it.')" in told[2]
    assert "a call takes a genie.llm Request, not NoneType (None)" in told[3]


class FinishesTwice:
    """A provider of one's own whose stream goes on after its Finish, then finishes again."""

    name = "twice"
    region = "on-prem"
    model = "m"

    async def complete(self, request: Request) -> Response:
        raise NotImplementedError

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        async def events() -> AsyncIterator[StreamEvent]:
            for text in ("first", "more"):
                yield TextDelta(text=text)
                yield UsageEvent(usage=Usage(input_tokens=10, output_tokens=5))
                yield Finish(reason="stop")

        yield events()


async def test_a_stream_that_goes_on_after_its_finish_is_settled_and_counted_once() -> None:
    observed = CostObserver(FinishesTwice())
    read: list[str] = []

    class Reader(BaseAgent):
        produces = (Thought,)

        @handler
        async def on_think(self, payload: Think, ctx: Context) -> Message:
            read.extend(texts(await read_into(ctx.llm(observed).stream(QUESTION), [])))
            return ctx.reply(Thought(calls=1, refusals=[]))

    async with Runtime([Reader("reader")], limits=Limits(correlation_tokens=10_000)) as rt:
        result = await rt.ask(rt.message(Think(), recipient="reader"), timeout=10)
    assert result.status == "complete", list(rt.dead_letters)
    assert read == ["first"]  # the call ended at its Finish, as it was charged
    assert observed.statistics().calls == 1


async def test_a_context_kept_past_its_request_calls_no_model(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    """A handler keeps its ``ctx`` and the request ends: its budget's account is let go with
    it, so a call through the kept context would have opened a new one, whole, and the
    correlation would have spent its budget again. Refused, unsent, saying why."""
    kept: list[Context] = []

    class Keeper(BaseAgent):
        produces = (Thought,)

        @handler
        async def on_think(self, payload: Think, ctx: Context) -> Message:
            await ctx.llm(model).complete(QUESTION)
            kept.append(ctx)
            return ctx.reply(Thought(calls=1, refusals=[]))

    async with Runtime([Keeper("keeper")], limits=Limits(correlation_tokens=USED + WORST)) as rt:
        result = await rt.ask(rt.message(Think(), recipient="keeper"), timeout=10)
        assert result.status == "complete"
        await rt.wait_idle()
        [ctx] = kept
        for _ in range(3):
            with pytest.raises(BudgetExceededError) as refused:
                await ctx.llm(model).complete(QUESTION)
            assert str(refused.value) == (
                f"llm call refused: correlation {result.correlation_id} has ended here (no "
                "delivery of it is in flight): a context kept past its handler calls no model, "
                "or the correlation's budget would start again"
            )
    assert len(server.received) == 1


def test_prices_that_are_no_price_table_are_refused_when_the_runtime_is_made() -> None:
    """They were taken, and the first model call failed on them with an AttributeError."""
    for prices in ({"gpt-4.1-mini": {"input": 1.0, "output": 2.0}}, "prices.yaml"):
        expected = f"takes a genie.llm.PriceTable, not {type(prices).__name__}"
        with pytest.raises(ConfigurationError, match=expected):
            Runtime([], prices=prices, limits=Limits(correlation_cost=1.0))  # type: ignore[arg-type]


def test_limits_refuse_nonsense_budgets() -> None:
    for bad in (
        {"correlation_tokens": -1},
        {"correlation_tokens": 1.5},
        {"correlation_cost": -0.1},
    ):
        with pytest.raises(ConfigurationError, match="limits: correlation_"):
            Limits(**bad)
    with pytest.raises(ConfigurationError):
        Limits(correlation_cost=float("nan"))


async def test_a_panel_stopped_by_the_budget_fails_with_the_refusal_not_retried() -> None:
    from genie_agents.advisory.moa import MoaRecommender, MoaRecommendRequest

    panel = tuple(ScriptedProvider(["an FD"], name=name) for name in ("a", "b", "c"))
    audit = MemoryAuditLog()
    retrying = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0))
    async with Runtime(limits=Limits(correlation_tokens=10), audit=audit) as rt:
        rt.add(MoaRecommender("moa", llm=panel), options=retrying)
        question = MoaRecommendRequest(question="Where should I park 1 lakh?")
        result = await rt.ask(rt.message(question, recipient="moa"), until="moa_recommendation")
    assert result.status == "partial"
    assert [len(p.requests) for p in panel] == [0, 0, 0]
    [letter] = rt.dead_letters
    assert (letter.error_type, letter.attempts) == ("BudgetExceededError", 1)
    assert limit_records(audit) == [("limit:correlation_tokens", "limit_fired", "moa")]


class Relay(BaseAgent):
    """Hands its model a tool's answer holding a lone surrogate (a JSON ``"\\ud800"`` escape
    without its pair, as a hostile tool server or model can send it)."""

    produces = (Thought,)

    def __init__(self, id: str, llm: Provider) -> None:
        super().__init__(id)
        self.llm = llm

    @handler
    async def on_think(self, payload: Think, ctx: Context) -> Message:
        said = Request(messages=(ChatMessage.user("tool said: a\ud800b"),), max_tokens=10)
        if payload.stream:
            await read_into(ctx.llm(self.llm).stream(said), [])
        else:
            await ctx.llm(self.llm).complete(said)
        return ctx.reply(Thought(calls=1, refusals=[]))


async def test_a_lone_surrogate_in_a_prompt_is_sent_the_same_with_and_without_a_budget(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    # The budget's estimate encoded the prompt strictly and failed, before the provider saw it.
    for limits in (Limits(), Limits(correlation_tokens=10_000)):
        for stream in (False, True):
            async with Runtime(limits=limits) as rt:
                rt.add(Relay("relay", model))
                result = await rt.ask(rt.message(Think(stream=stream), recipient="relay"))
            assert (result.status, list(rt.dead_letters)) == ("complete", [])
    # What UTF-8 cannot carry is sent as U+FFFD, the replacement character.
    sent = [r.body["messages"][0]["content"] for r in server.received]
    assert sent == ["tool said: a\ufffdb"] * 4
    lone = Request(messages=(ChatMessage.user("a\ud800b"),))
    assert (
        lone.prompt_estimate()
        == Request(messages=(ChatMessage.user("a\ufffdb"),)).prompt_estimate()
    )
