"""Model calls are settled as providers bill them (issue 35, items 1 and 2): a call cut off
after its request left pays at least its prompt, the reservation goes back only when nothing
was sent or the provider refused the request before processing it, and a usage report that
cannot be true is not believed. Every call here crosses a real socket to 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Limits,
    MemoryAuditLog,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
)
from genie import handler as on
from genie.llm import (
    AllProvidersFailedError,
    BadRequestError,
    BudgetExceededError,
    BudgetLedger,
    CallContext,
    CallRecord,
    ChatMessage,
    CostObserver,
    DailyTokenBudget,
    Fallback,
    KillSwitch,
    LLMError,
    OllamaProvider,
    OpenAIProvider,
    Provider,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderUnavailableError,
    Request,
    Retry,
    ScriptedProvider,
)

from .helpers import API_KEY, HTTPX_HALF_READ, Recorder, answer, fixture
from .server import ProviderServer, Reply

QUESTION = Request(messages=(ChatMessage.user("Think about it."),), max_tokens=100)
PROMPT = QUESTION.prompt_estimate()
WORST = PROMPT + QUESTION.max_tokens
SLOW = Reply(chunks=(fixture("openai_response.json"),), first_byte_delay=2.0)


def in_correlation(request: Request = QUESTION, cid: str = "c1") -> Request:
    return request.model_copy(update={"context": CallContext(correlation_id=cid)})


def answer_with_usage(**usage: Any) -> Reply:
    body = json.loads(fixture("openai_response.json"))
    body["usage"] = usage
    return Reply(chunks=(json.dumps(body).encode(),))


@pytest.fixture
async def model(server: ProviderServer) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(base_url=server.url, api_key=API_KEY, model="gpt-4.1-mini")
    try:
        yield provider
    finally:
        await provider.aclose()


class Ask(Payload):
    message_type = "ask"
    calls: int = 1
    cut_after: float | None = None  # each call in a move_on_after of this many seconds


class Asked(Payload):
    message_type = "asked"
    sent: int
    refused: int


class Impatient(BaseAgent):
    """Calls its model ``calls`` times, each in a short ``move_on_after`` when asked: the
    trick that sent ten times a budget's worth of requests while the budget never fired."""

    produces = (Asked,)

    def __init__(self, id: str, llm: Provider) -> None:
        super().__init__(id)
        self.llm = llm

    @on
    async def on_ask(self, payload: Ask, ctx: Context) -> Message:
        llm, sent, refused = ctx.llm(self.llm), 0, 0
        for _ in range(payload.calls):
            try:
                if payload.cut_after is None:
                    await llm.complete(QUESTION)
                else:
                    with anyio.move_on_after(payload.cut_after):
                        await llm.complete(QUESTION)
                sent += 1
            except BudgetExceededError:
                refused += 1
        return ctx.reply(Asked(sent=sent, refused=refused))


async def test_calls_cut_short_by_the_handler_pay_their_prompt_and_hit_the_budget(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    server.script("/v1/chat/completions", *[SLOW] * 40)
    budget = WORST + 5 * PROMPT  # the prompts of five cut-off calls, then room for none
    async with Runtime(
        [Impatient("impatient", model)], limits=Limits(correlation_tokens=budget)
    ) as rt:
        result = await rt.ask(
            rt.message(Ask(calls=40, cut_after=0.2), recipient="impatient"), timeout=30
        )
    asked = result.message.payload
    assert isinstance(asked, Asked)
    assert (asked.sent, asked.refused) == (6, 34)
    assert len(server.received) <= 6


async def test_a_deadline_and_retries_on_a_slow_model_are_stopped_by_the_budget(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    server.script("/v1/chat/completions", *[SLOW] * 20)
    options = AgentOptions(deadline=0.2, retry=RetryPolicy(attempts=20, backoff=0))
    async with Runtime(limits=Limits(correlation_tokens=WORST + 2 * PROMPT)) as rt:
        rt.add(Impatient("impatient", model), options=options)
        result = await rt.ask(rt.message(Ask(), recipient="impatient"), timeout=30)
    asked = result.message.payload
    assert isinstance(asked, Asked)
    # Three attempts ran out of time and paid their prompts; the fourth was refused before
    # sending (and the handler answered with the refusal: no further retry).
    assert (asked.sent, asked.refused) == (0, 1)
    assert rt.statistics().retries == 3
    assert len(server.received) <= 3


async def test_a_stream_cancelled_before_its_first_event_pays_its_prompt(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    server.script("/v1/chat/completions", *[SLOW] * 20)
    ledger = BudgetLedger(max_tokens=WORST + 3 * PROMPT, name="correlation")
    switch = KillSwitch(model, ledger)
    opened = 0

    async def read_each_stream_in_a_short_scope() -> None:
        nonlocal opened
        for _ in range(20):
            with anyio.move_on_after(0.2):
                async with switch.stream(in_correlation()) as events:
                    opened += 1
                    async for _event in events:
                        pass

    with pytest.raises(BudgetExceededError):
        await read_each_stream_in_a_short_scope()
    assert opened == 0
    assert len(server.received) <= 4
    assert ledger.statistics().tokens_used == 4 * PROMPT


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_only_a_call_never_sent_or_refused_before_processing_is_given_back(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    ledger = BudgetLedger(max_tokens=10_000, name="correlation")
    nowhere = OpenAIProvider(base_url=f"http://127.0.0.1:{_closed_port()}", api_key=API_KEY)
    try:
        with pytest.raises(ProviderConnectionError, match="before the request left") as refused:
            await KillSwitch(nowhere, ledger).complete(in_correlation())
    finally:
        await nowhere.aclose()
    assert refused.value.sent is False
    assert ledger.remaining("c1").tokens == 10_000

    switch = KillSwitch(model, ledger)
    server.script("/v1/chat/completions", Reply(status=400, chunks=(b'{"error": "bad"}',)))
    with pytest.raises(BadRequestError):
        await switch.complete(in_correlation())
    assert ledger.remaining("c1").tokens == 10_000  # a 4xx: refused before processing

    server.script("/v1/chat/completions", Reply(status=502, chunks=(b'{"error": "gw"}',)))
    with pytest.raises(ProviderUnavailableError):
        await switch.complete(in_correlation())
    assert ledger.remaining("c1").tokens == 10_000 - PROMPT  # a 5xx may follow the model's work

    server.script("/v1/chat/completions", Reply(chunks=(b"not json",)))
    with pytest.raises(Exception, match="not a JSON object"):
        await switch.complete(in_correlation())
    # A 2xx the client cannot read was worked on: the worst case is charged.
    assert ledger.remaining("c1").tokens == 10_000 - PROMPT - WORST
    assert ledger.statistics().open_reservations == 0


async def test_negative_usage_does_not_refund_the_budget(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    lie = answer_with_usage(prompt_tokens=-1000, completion_tokens=-1000, total_tokens=-2000)
    server.script("/v1/chat/completions", *[lie] * 200)
    ledger = BudgetLedger(max_tokens=5 * WORST, name="correlation")
    switch = KillSwitch(model, ledger)
    answered = 0

    async def ask_until_refused() -> None:
        nonlocal answered
        for _ in range(200):
            await switch.complete(in_correlation())
            answered += 1

    with pytest.raises(BudgetExceededError):
        await ask_until_refused()
    assert answered == len(server.received) == 5
    assert ledger.statistics().usage_violations == 5


async def test_usage_beyond_any_tokenizer_is_charged_the_reservation_not_believed(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    server.script(
        "/v1/chat/completions",
        answer_with_usage(prompt_tokens=10**15, completion_tokens=5),
        answer_with_usage(
            prompt_tokens=10, completion_tokens=5, prompt_tokens_details={"cached_tokens": -7}
        ),
    )
    ledger = BudgetLedger(max_tokens=10 * WORST, name="correlation")
    switch = KillSwitch(model, ledger)
    await switch.complete(in_correlation())
    await switch.complete(in_correlation())
    assert ledger.remaining("c1").tokens == 8 * WORST
    assert ledger.statistics().usage_violations == 2
    await switch.complete(in_correlation())  # the canned answer: 138 tokens, believed
    assert ledger.remaining("c1").tokens == 8 * WORST - 138


async def test_usage_counts_that_are_not_numbers_make_a_malformed_answer_not_a_traceback(
    server: ProviderServer,
) -> None:
    body = json.loads(fixture("ollama_response.json"))
    body["prompt_eval_count"] = "lots"
    server.script("/api/chat", Reply(chunks=(json.dumps(body).encode(),)))
    ollama = OllamaProvider(base_url=server.url)
    ledger = BudgetLedger(max_tokens=10 * WORST, name="correlation")
    try:
        with pytest.raises(ProviderResponseError, match="malformed chat answer"):
            await KillSwitch(ollama, ledger).complete(in_correlation())
    finally:
        await ollama.aclose()
    assert ledger.remaining("c1").tokens == 9 * WORST  # a 2xx that cannot be read: the worst


async def test_usage_counts_of_text_or_booleans_are_malformed_not_believed(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    # Believed by a lax reading: "10" as 10, true as 1, so the call was charged 11 tokens.
    server.script(
        "/v1/chat/completions",
        answer_with_usage(prompt_tokens="10", completion_tokens=5),
        answer_with_usage(prompt_tokens=10, completion_tokens=True),
    )
    ledger = BudgetLedger(max_tokens=10 * WORST, name="correlation")
    for _ in range(2):
        with pytest.raises(ProviderResponseError, match="malformed chat completion"):
            await KillSwitch(model, ledger).complete(in_correlation())
    assert ledger.remaining("c1").tokens == 8 * WORST


@HTTPX_HALF_READ
async def test_json_nested_too_deeply_is_a_malformed_answer_charged_the_reservation(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    server.script("/v1/chat/completions", Reply(chunks=(deep,)), Reply(chunks=(deep,)))
    ledger = BudgetLedger(max_tokens=10 * WORST, name="correlation")
    with pytest.raises(ProviderResponseError):
        await KillSwitch(model, ledger).complete(in_correlation())
    assert ledger.remaining("c1").tokens == 9 * WORST  # a 2xx that cannot be read: the worst
    with pytest.raises(ProviderResponseError):  # a malformed answer is not tried again
        await Retry(model, attempts=3, backoff=0.0).complete(in_correlation())
    assert len(server.received) == 2
    # The stream's event, over the wire format as sent (a real socket leaves httpcore's
    # iterators half-read for the collector, which trio reports).
    sse = Recorder(answer(200, b"data: " + deep + b"\n\n", "text/event-stream"))
    streamed = OpenAIProvider(client=sse.client())
    with pytest.raises(ProviderResponseError):
        async with KillSwitch(streamed, ledger).stream(in_correlation()) as events:
            _ = [e async for e in events]
    assert ledger.remaining("c1").tokens == 8 * WORST


# --- attempts before the last: a retry, a fallback --------------------------------------------
GATEWAY = Reply(status=502, chunks=(b'{"error": "gw"}',))
THROTTLED = Reply(status=429, chunks=(b'{"error": "slow down"}',), headers={"retry-after": "0"})
CANNED = 138  # the tokens the canned answer reports


async def test_a_retrys_earlier_billed_attempts_are_charged_to_the_switch_above(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    """A 5xx may follow the model's work, so each attempt a ``Retry`` makes again after one
    pays its prompt, as a lone call ending in it does; an attempt refused with a 4xx is free.
    Before, the switch above a retry charged only the last attempt."""
    ledger = BudgetLedger(max_tokens=10_000, name="correlation")
    switch = KillSwitch(Retry(model, attempts=4, backoff=0, jitter=0), ledger)
    server.script("/v1/chat/completions", GATEWAY, THROTTLED, GATEWAY)  # then the canned answer
    await switch.complete(in_correlation())
    assert len(server.received) == 4
    assert ledger.remaining("c1").tokens == 10_000 - CANNED - 2 * PROMPT

    server.script("/v1/chat/completions", GATEWAY, GATEWAY, GATEWAY, GATEWAY)
    with pytest.raises(ProviderUnavailableError):
        await switch.complete(in_correlation(cid="c2"))
    assert ledger.remaining("c2").tokens == 10_000 - 4 * PROMPT  # every attempt, the last too
    assert ledger.statistics().open_reservations == 0


async def test_a_streams_attempts_before_its_first_event_are_charged(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    ledger = BudgetLedger(max_tokens=10_000, name="correlation")
    switch = KillSwitch(Retry(model, attempts=3, backoff=0, jitter=0), ledger)

    async def read(cid: str) -> int:
        async with switch.stream(in_correlation(cid=cid)) as events:
            async for _ in events:
                pass
        left = ledger.remaining(cid).tokens
        assert left is not None
        return 10_000 - left

    alone = await read("c1")
    server.script("/v1/chat/completions", GATEWAY, GATEWAY)
    assert await read("c2") == alone + 2 * PROMPT


async def test_a_fallbacks_failed_providers_are_charged_once_each(server: ProviderServer) -> None:
    ledger = BudgetLedger(max_tokens=10_000, name="correlation")
    first, second, third = (
        OpenAIProvider(
            base_url=server.url, api_key=API_KEY, model="gpt-4.1-mini", name=name, region="in"
        )
        for name in ("first", "second", "third")
    )
    try:
        switch = KillSwitch(Fallback(first, second, third), ledger)
        server.script("/v1/chat/completions", GATEWAY, THROTTLED)  # the third answers
        await switch.complete(in_correlation())
        assert ledger.remaining("c1").tokens == 10_000 - CANNED - PROMPT

        # All three fail, two of them billed: two prompts (the chain's error was one).
        server.script("/v1/chat/completions", GATEWAY, THROTTLED, GATEWAY)
        with pytest.raises(AllProvidersFailedError):
            await switch.complete(in_correlation(cid="c2"))
        assert ledger.remaining("c2").tokens == 10_000 - 2 * PROMPT
    finally:
        for provider in (first, second, third):
            await provider.aclose()


LONG = Request(messages=(ChatMessage.user("Think about it. " * 200),), max_tokens=10)


async def test_a_retry_stops_when_its_next_attempt_would_overrun_the_budget(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    """Each attempt a ``Retry`` makes again is charged as it fails, and refused when the call's
    worst case no longer fits beside what the attempts spent. Before, a long prompt with a
    short answer was reserved once and retried four times: the budget was overrun twofold."""
    prompt = LONG.prompt_estimate()
    budget = LONG.prompt_estimate() + LONG.max_tokens + prompt  # one call, one failed attempt
    ledger = BudgetLedger(max_tokens=budget, name="correlation")
    switch = KillSwitch(Retry(model, attempts=5, backoff=0, jitter=0), ledger)
    server.script("/v1/chat/completions", *[GATEWAY] * 5)
    with pytest.raises(BudgetExceededError, match="correlation_tokens") as refused:
        await switch.complete(in_correlation(LONG))
    assert isinstance(refused.value.__context__, ProviderUnavailableError)
    assert len(server.received) == 2
    assert ledger.remaining("c1").tokens == budget - 2 * prompt  # both attempts were billed
    assert ledger.statistics().open_reservations == 0


class Racing(BaseAgent):
    """Two calls of one correlation at once: a retrying one, and one that the budget refuses."""

    produces = (Asked,)

    def __init__(self, id: str, retrying: Provider, other: Provider) -> None:
        super().__init__(id)
        self.retrying, self.other = retrying, other

    @on
    async def on_ask(self, payload: Ask, ctx: Context) -> Message:
        refused = 0

        async def call(provider: Provider, request: Request) -> None:
            nonlocal refused
            try:
                await ctx.llm(provider).complete(request)
            except BudgetExceededError:
                refused += 1
            except LLMError:
                pass  # the retrying call's provider failed every attempt

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, self.retrying, QUESTION)
            await anyio.sleep(0.5)  # the first call is retrying by now
            tg.start_soon(call, self.other, LONG)
        return ctx.reply(Asked(sent=0, refused=refused))


@pytest.mark.parametrize("status", [503, 429])
async def test_once_the_limit_fired_a_retrying_call_sends_no_further_attempt(
    server: ProviderServer, model: OpenAIProvider, status: int
) -> None:
    """The first refusal of a correlation stops its calls in flight at their next attempt,
    whether the attempts before were billed (a 503) or not (a 429: before, a call waiting out
    a rate limit went on sending after the limit fired)."""
    waiting = Reply(status=status, chunks=(b"{}",), headers={"retry-after": "1"})
    server.script("/v1/chat/completions", *[waiting] * 5)
    retrying = Retry(model, attempts=5, backoff=0, jitter=0)
    budget = 3 * WORST  # room for the retrying call; none for the long one
    audit = MemoryAuditLog()
    async with Runtime(
        [Racing("racing", retrying, model)], limits=Limits(correlation_tokens=budget), audit=audit
    ) as rt:
        result = await rt.ask(rt.message(Ask(), recipient="racing"), timeout=10)
    asked = result.message.payload
    assert isinstance(asked, Asked)
    assert asked.refused == 2  # the long call, then the retrying one at its next attempt
    assert len(server.received) == 1  # before: all five attempts
    assert len([r for r in audit.records if r.action == "limit_fired"]) == 1


async def test_a_handlers_model_retries_count_against_its_correlation(
    server: ProviderServer, model: OpenAIProvider
) -> None:
    """Through ``ctx.llm`` the runtime's correlation budget is the switch above the stack: the
    first call's two gateway errors leave no room for a second call's worst case."""
    server.script("/v1/chat/completions", GATEWAY, GATEWAY)  # then canned answers
    budget = CANNED + 2 * PROMPT + WORST - 1
    stack = Retry(model, attempts=3, backoff=0, jitter=0)
    async with Runtime([Impatient("asker", stack)], limits=Limits(correlation_tokens=budget)) as rt:
        result = await rt.ask(rt.message(Ask(calls=2), recipient="asker"), timeout=10)
    asked = result.message.payload
    assert isinstance(asked, Asked)
    assert (asked.sent, asked.refused) == (1, 1)  # before: (2, 0), the retries were free
    assert len(server.received) == 3


SILENT = Reply(
    chunks=tuple(fixture("openai_stream.txt").splitlines(keepends=True)),
    headers={"content-type": "text/event-stream"},
    body_delay=2.0,  # the headers arrive, the first token does not
)


@pytest.mark.parametrize("layer", ["retry", "fallback"])
async def test_a_stream_cancelled_while_a_retry_or_fallback_waits_for_its_first_event_settles(
    server: ProviderServer, model: OpenAIProvider, layer: str
) -> None:
    """A layer that tries again reads each attempt's first event before it commits to it; a
    cancel there (the caller's deadline) must still close that attempt, so the budgets under
    it settle and the cost observer records the call, at once, not when the garbage collector
    gets to the stream (before: the daily budget kept the worst case reserved)."""
    server.script("/v1/chat/completions", SILENT)
    daily = BudgetLedger(max_tokens=10 * WORST, name="daily")
    records: list[CallRecord] = []
    observed = CostObserver(model, on_call=records.append)
    budgeted = DailyTokenBudget(observed, ledger=daily)
    stack: Provider = (
        Retry(budgeted, attempts=2, backoff=0)
        if layer == "retry"
        else Fallback(budgeted, ScriptedProvider(["never asked"]), home_region="us")
    )
    with anyio.move_on_after(0.3) as scope:
        async with stack.stream(in_correlation()) as events:
            async for _event in events:
                pass
    assert scope.cancelled_caught
    assert daily.statistics().open_reservations == 0
    assert daily.statistics().tokens_used == PROMPT
    assert [r.error for r in records] == ["cancelled"]
