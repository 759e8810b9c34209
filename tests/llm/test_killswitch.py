"""The kill switch: a call that could overrun its correlation's budget is refused before it is
sent; reservations hold while calls are in flight; what was used is what is charged."""

from __future__ import annotations

import anyio
import pytest
import trio.testing
from pydantic import BaseModel, Field

from genie import Classification, GenieError, Message, Payload
from genie.llm import (
    BadRequestError,
    BudgetExceededError,
    BudgetLedger,
    CallContext,
    KillSwitch,
    LLMError,
    PriceTable,
    ProviderConnectionError,
    ProviderUnavailableError,
    Request,
    Response,
    StreamEvent,
    Usage,
)

from .helpers import Scripted, read_into, simple_request, texts


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


USED = Usage(input_tokens=30, output_tokens=20)


def in_correlation(cid: str = "c1", **changes: object) -> Request:
    return simple_request(context=CallContext(correlation_id=cid), **changes)


def test_a_reservation_holds_until_it_is_settled_and_settles_once() -> None:
    ledger = BudgetLedger(max_tokens=1000, name="correlation")
    held = ledger.reserve("c1", tokens=600)
    assert ledger.remaining("c1").tokens == 400
    with pytest.raises(BudgetExceededError) as refused:
        ledger.reserve("c1", tokens=401, correlation_id="c1")
    error = refused.value
    assert isinstance(error, GenieError)
    assert (error.limit, error.key, error.requested, error.remaining) == (
        "correlation_tokens",
        "c1",
        401,
        400,
    )
    assert error.correlation_id == "c1"
    assert error.sent is False
    assert str(error) == (
        "llm call refused: correlation_tokens budget for c1 has 400 left, the call may need 401"
    )
    held.settle(tokens=250)
    assert ledger.remaining("c1").tokens == 750
    with pytest.raises(RuntimeError, match="already settled"):
        held.settle(tokens=1)
    assert ledger.remaining("c2").tokens == 1000  # budgets are per key
    ledger.forget("c1")
    assert ledger.statistics().keys == 0


async def test_the_worst_case_is_reserved_before_sending_and_the_actual_settled_after() -> None:
    inner = Scripted([Response(text="x", usage=USED)])
    ledger = BudgetLedger(max_tokens=1000)
    switch = KillSwitch(inner, ledger)
    request = simple_request(max_tokens=100, context=CallContext(correlation_id="c1"))
    worst = request.prompt_estimate() + 100
    inner.pause = 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(switch.complete, request)
        await anyio.sleep(0.5)
        assert ledger.remaining("c1").tokens == 1000 - worst
        assert ledger.statistics().open_reservations == 1
    assert ledger.remaining("c1").tokens == 1000 - USED.total
    assert ledger.statistics().open_reservations == 0


async def test_concurrent_calls_cannot_overrun_the_budget_together() -> None:
    inner = Scripted([Response(text="x", usage=USED)], pause=1)
    ledger = BudgetLedger(max_tokens=300)
    switch = KillSwitch(inner, ledger)
    request = simple_request(max_tokens=200, context=CallContext(correlation_id="c1"))
    outcomes: list[str] = []

    async def call() -> None:
        try:
            await switch.complete(request)
            outcomes.append("answered")
        except BudgetExceededError:
            outcomes.append("refused")

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(call)
    assert sorted(outcomes) == ["answered", "refused", "refused"]
    assert len(inner.requests) == 1


async def test_a_looping_agent_is_stopped_at_its_budget_with_one_refusal() -> None:
    inner = Scripted([Response(text="try again", usage=USED)])
    ledger = BudgetLedger(max_tokens=1000, name="correlation")
    switch = KillSwitch(inner, ledger)
    request = simple_request(max_tokens=50, context=CallContext(correlation_id="loop"))
    calls = 0

    async def agent_that_never_stops_asking() -> None:
        nonlocal calls
        while True:
            await switch.complete(request)
            calls += 1

    with pytest.raises(BudgetExceededError, match="correlation_tokens budget for loop"):
        await agent_that_never_stops_asking()
    worst = request.prompt_estimate() + 50
    assert calls == (1000 - worst) // USED.total + 1
    assert len(inner.requests) == calls
    assert ledger.statistics().refusals == 1
    assert ledger.statistics().tokens_used == calls * USED.total


async def test_a_4xx_is_released_a_5xx_pays_its_prompt_a_broken_stream_what_arrived() -> None:
    refused = Scripted([BadRequestError(provider="p", status=400, request_id=None, excerpt="")])
    ledger = BudgetLedger(max_tokens=1000)
    with pytest.raises(BadRequestError):
        await KillSwitch(refused, ledger).complete(in_correlation())
    assert ledger.remaining("c1").tokens == 1000  # refused before processing: not billed

    failing = Scripted(
        [ProviderUnavailableError(provider="p", status=503, request_id=None, excerpt="")]
    )
    with pytest.raises(ProviderUnavailableError):
        await KillSwitch(failing, ledger).complete(in_correlation())
    # A 5xx may come after the model read the prompt (a gateway's 502 or 504).
    assert ledger.remaining("c1").tokens == 1000 - in_correlation().prompt_estimate()
    ledger.forget("c1")

    breaking = Scripted(["x" * 300], chunk=30, break_after=2)
    request = simple_request(max_tokens=500, context=CallContext(correlation_id="c1"))
    events: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError):
        await read_into(KillSwitch(breaking, ledger).stream(request), events)
    assert texts(events) == ["x" * 30] * 2
    assert ledger.remaining("c1").tokens == 1000 - (request.prompt_estimate() + 60 // 3)
    assert ledger.statistics().open_reservations == 0


async def test_a_finished_stream_settles_to_its_reported_usage() -> None:
    inner = Scripted([Response(text="streamed", usage=USED)], chunk=3)
    ledger = BudgetLedger(max_tokens=1000)
    await read_into(KillSwitch(inner, ledger).stream(in_correlation()), [])
    assert ledger.remaining("c1").tokens == 1000 - USED.total


async def test_a_cost_budget_needs_a_price_and_refuses_what_it_cannot_bound() -> None:
    prices = PriceTable.of({"m-1": {"input": 10.0, "output": 30.0}})  # per million tokens
    inner = Scripted([Response(text="x", usage=USED)])
    ledger = BudgetLedger(max_cost=0.01, name="correlation")
    switch = KillSwitch(inner, ledger, prices=prices)
    big = simple_request(max_tokens=1000, context=CallContext(correlation_id="c1"))
    with pytest.raises(BudgetExceededError, match="correlation_cost"):
        await switch.complete(big)  # 1000 output tokens may cost 0.03
    small = simple_request(max_tokens=100, context=CallContext(correlation_id="c1"))
    await switch.complete(small)
    assert ledger.statistics().cost_used == pytest.approx((30 * 10 + 20 * 30) / 1e6)
    unknown = simple_request(model="m-2", context=CallContext(correlation_id="c1"))
    with pytest.raises(LLMError, match="no price for model 'm-2'") as refused:
        await switch.complete(unknown)
    assert refused.value.sent is False
    assert len(inner.requests) == 1


class Question(Payload):
    message_type = "question"


def test_the_call_context_comes_from_the_causing_message() -> None:
    msg = Message.new(
        Question(),
        sender="planner",
        classification=Classification.PII,
        metadata={"user_id": "u-7"},
    )
    context = CallContext.of(msg, deadline=12.5, agent_id="analyst")
    assert context == CallContext(
        principal="u-7",
        classification=Classification.PII,
        correlation_id=msg.correlation_id,
        deadline=12.5,
        message_id=msg.id,
        agent_id="analyst",
    )
    assert CallContext.of(Message.new(Question(), sender="planner")).principal == "planner"


class Filing(BaseModel):
    """A structured answer whose schema is long: a provider reads it as part of the prompt."""

    summary: str = Field(description="what the filing says, in the words below " + "x" * 6000)


async def test_a_structured_outputs_schema_is_reserved_as_part_of_the_prompt() -> None:
    inner = Scripted([Response(text='{"summary": "ok"}', usage=USED)])
    ledger = BudgetLedger(max_tokens=1000, name="correlation")
    request = in_correlation(output=Filing, max_tokens=100)
    # The schema goes to the provider (response_format, a forced tool, responseJsonSchema),
    # which bills it as prompt: the call's worst case is far past the budget.
    with pytest.raises(BudgetExceededError, match="correlation_tokens"):
        await KillSwitch(inner, ledger).complete(request)
    assert inner.requests == []
    assert request.prompt_estimate() > 2000


async def test_an_answer_under_a_name_the_table_does_not_list_is_charged_as_reserved() -> None:
    # OpenAI answers a call for "gpt-4o" as "gpt-4o-2024-08-06"; the "*" entry is the price
    # of models the table does not list, not of one the call asked for by name.
    prices = PriceTable.of(
        {"gpt-4o": {"input": 2.5, "output": 10.0}, "*": {"input": 0.15, "output": 0.6}}
    )
    used = Usage(input_tokens=1000, output_tokens=1000)
    inner = Scripted([Response(text="x", usage=used, model="gpt-4o-2024-08-06")])
    ledger = BudgetLedger(max_cost=1.0, name="correlation")
    request = in_correlation(model="gpt-4o", max_tokens=1000)
    await KillSwitch(inner, ledger, prices=prices).complete(request)
    assert ledger.statistics().cost_used == pytest.approx((1000 * 2.5 + 1000 * 10.0) / 1e6)
