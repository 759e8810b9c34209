"""Each wrapper over the scripted provider, on trio's virtual clock: a 30-second circuit reset
or a 10-minute TTL takes microseconds, and a deadline fires at exactly its time."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import anyio
import pytest
import trio.testing

from genie import Classification, Message, Payload
from genie.llm import (
    AllProvidersFailedError,
    BadRequestError,
    BudgetExceededError,
    BudgetLedger,
    Cache,
    CallContext,
    CallRecord,
    Circuit,
    CostObserver,
    DailyTokenBudget,
    Deadline,
    Fallback,
    LLMCircuitOpenError,
    LLMTimeoutError,
    PriceTable,
    ProviderConnectionError,
    ProviderUnavailableError,
    RateLimitedError,
    Request,
    Residency,
    ResidencyDeniedError,
    Response,
    Retry,
    Shadow,
    ShadowResult,
    StreamEvent,
    Usage,
    complete_by_streaming,
    residency_refusal,
)
from genie.policies import DataResidency

from .helpers import Scripted, Sleeps, read_into, simple_request, texts


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


NAN_SETTINGS = {
    "a budget's cost": lambda p: BudgetLedger(max_cost=math.nan),
    "a deadline's timeout": lambda p: Deadline(p, timeout=math.nan),
    "a cache's ttl": lambda p: Cache(p, ttl=math.nan),
    "a retry's backoff": lambda p: Retry(p, backoff=math.nan),
    "a retry's longest wait asked": lambda p: Retry(p, max_retry_after=math.nan),
}


@pytest.mark.parametrize("make", NAN_SETTINGS.values(), ids=NAN_SETTINGS.keys())
def test_a_setting_of_nan_is_refused_when_the_wrapper_is_made(make: Any) -> None:
    """Taken, a NaN budget refused no call (no count is above NaN), and a NaN timeout or wait
    failed each call inside anyio instead."""
    with pytest.raises(ValueError, match="nan"):
        make(Scripted(["hi"]))


class _Lookalike:
    """The four names a provider has, none of them of its kind."""

    name = 3
    region = None
    complete = "complete"
    stream = "stream"


WRAPPERS = {
    "Retry": lambda p: Retry(p),
    "Deadline": lambda p: Deadline(p),
    "Circuit": lambda p: Circuit(p),
    "Cache": lambda p: Cache(p),
    "Residency": lambda p: Residency(p),
    "DailyTokenBudget": lambda p: DailyTokenBudget(p, 10),
    "CostObserver": lambda p: CostObserver(p),
    "Fallback(*providers)": lambda p: Fallback(Scripted(["hi"]), p),
    # refused before its task group is used
    "Shadow(shadow)": lambda p: Shadow(Scripted(["hi"]), p, None, on_result=print),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("make", WRAPPERS.values(), ids=WRAPPERS.keys())
@pytest.mark.parametrize("given", [None, "openai", _Lookalike()], ids=["None", "str", "lookalike"])
def test_a_wrapper_of_no_provider_is_refused_when_made(make: Any, given: object) -> None:
    """Taken, a wrapper of a name or of a lookalike failed only at its first call, with an
    ``AttributeError`` or a ``TypeError`` from inside it."""
    with pytest.raises(ValueError, match=r"\(.*\): .* is no genie.llm Provider"):
        make(given)


def unavailable(provider: str = "p") -> ProviderUnavailableError:
    return ProviderUnavailableError(provider=provider, status=503, request_id=None, excerpt="busy")


def bad_request() -> BadRequestError:
    return BadRequestError(provider="p", status=400, request_id=None, excerpt="no such model")


# -- retry ---------------------------------------------------------------------------------


async def test_retry_gives_up_at_once_on_a_request_the_provider_refused() -> None:
    inner = Scripted([bad_request(), "ok"])
    sleeps = Sleeps()
    with pytest.raises(BadRequestError, match="HTTP 400"):
        await Retry(inner, attempts=5, sleep=sleeps).complete(simple_request())
    assert len(inner.requests) == 1
    assert sleeps.waits == []


async def test_retry_does_not_wait_longer_than_it_is_willing_to() -> None:
    too_long = RateLimitedError(
        provider="p", status=429, request_id=None, excerpt="", retry_after=3600
    )
    inner = Scripted([too_long, "ok"])
    with pytest.raises(RateLimitedError):
        await Retry(inner, max_retry_after=60, sleep=Sleeps()).complete(simple_request())
    assert len(inner.requests) == 1


async def test_retry_waits_on_the_clock_by_default() -> None:
    inner = Scripted([unavailable(), unavailable(), "ok"])
    started = anyio.current_time()
    response = await Retry(inner, attempts=3, backoff=1, jitter=0).complete(simple_request())
    assert response.text == "ok"
    assert anyio.current_time() - started == pytest.approx(1 + 2)


async def test_backoff_past_any_float_waits_the_cap_instead_of_overflowing() -> None:
    """``multiplier ** attempt`` leaves the floats at 2.0 ** 1024: a long run of attempts (or
    a hostile ``multiplier`` in the file) raised OverflowError out of the retry."""
    inner = Scripted([unavailable()] * 3 + ["ok"])
    sleeps = Sleeps()
    retry = Retry(inner, attempts=5, multiplier=1e308, max_backoff=20, jitter=0, sleep=sleeps)
    assert (await retry.complete(simple_request())).text == "ok"
    assert sleeps.waits == [0.5, 20, 20]
    assert Retry(inner, attempts=2000, jitter=0).delay(1500, unavailable()) == 20


async def test_no_backoff_stays_none_whatever_the_multiplier() -> None:
    """0 s times an infinite multiplier is NaN, which the sleep refused: a ValueError out of
    the retry instead of the next attempt."""
    inner = Scripted([unavailable(), unavailable(), "ok"])
    sleeps = Sleeps()
    retry = Retry(inner, attempts=3, backoff=0, multiplier=math.inf, jitter=0, sleep=sleeps)
    assert (await retry.complete(simple_request())).text == "ok"
    assert sleeps.waits == [0, 0]


async def test_a_stream_is_never_retried_after_its_first_event() -> None:
    inner = Scripted(["abcdefghijklmnop"], chunk=4, break_after=2)
    events: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError, match="reset"):
        await read_into(Retry(inner, attempts=5, sleep=Sleeps()).stream(simple_request()), events)
    assert texts(events) == ["abcd", "efgh"]
    assert len(inner.requests) == 1


# -- deadline ------------------------------------------------------------------------------


async def test_one_deadline_covers_every_attempt_and_every_wait() -> None:
    inner = Scripted([unavailable()] * 10)
    stack = Deadline(Retry(inner, attempts=10, backoff=1, jitter=0), timeout=4.5)
    started = anyio.current_time()
    with pytest.raises(LLMTimeoutError, match="deadline"):
        await stack.complete(simple_request())
    assert anyio.current_time() - started == pytest.approx(4.5)
    assert len(inner.requests) == 3  # attempts at t=0, 1, 3; the wait until 7 was cut


async def test_the_call_contexts_deadline_wins_when_earlier() -> None:
    inner = Scripted(["late"], pause=10)
    now = anyio.current_time()
    request = simple_request(context=CallContext(deadline=now + 2))
    with pytest.raises(LLMTimeoutError):
        await Deadline(inner, timeout=30).complete(request)
    assert anyio.current_time() == pytest.approx(now + 2)


async def test_a_stream_deadline_covers_reading_it() -> None:
    inner = Scripted(["x"], pause=5)
    with pytest.raises(LLMTimeoutError):
        await read_into(Deadline(inner, timeout=1).stream(simple_request()), [])


# -- circuit -------------------------------------------------------------------------------


async def test_the_circuit_opens_refuses_without_calling_then_tries_once() -> None:
    inner = Scripted([unavailable()] * 3 + ["recovered"])
    circuit = Circuit(inner, failure_threshold=3, reset_after=30)
    for _ in range(3):
        with pytest.raises(ProviderUnavailableError):
            await circuit.complete(simple_request())
    assert circuit.state == "open"
    with pytest.raises(LLMCircuitOpenError, match="circuit open after 3 consecutive failures"):
        await circuit.complete(simple_request())
    assert len(inner.requests) == 3  # the refused call reached nobody
    await anyio.sleep(30)
    assert (await circuit.complete(simple_request())).text == "recovered"
    assert circuit.state == "closed"


async def test_a_failed_trial_reopens_and_a_bad_request_is_not_the_providers_fault() -> None:
    inner = Scripted([bad_request()] * 5 + [unavailable(), unavailable(), "ok"])
    circuit = Circuit(inner, failure_threshold=1, reset_after=10)
    for _ in range(5):
        with pytest.raises(BadRequestError):
            await circuit.complete(simple_request())
    assert circuit.state == "closed"
    with pytest.raises(ProviderUnavailableError):
        await circuit.complete(simple_request())
    await anyio.sleep(10)
    with pytest.raises(ProviderUnavailableError):  # the trial
        await circuit.complete(simple_request())
    assert circuit.state == "open"
    with pytest.raises(LLMCircuitOpenError):
        await circuit.complete(simple_request())


async def test_a_cancelled_trial_does_not_leave_the_circuit_half_open_forever() -> None:
    inner = Scripted([unavailable(), "ok"])
    circuit = Circuit(inner, failure_threshold=1, reset_after=5)
    with pytest.raises(ProviderUnavailableError):
        await circuit.complete(simple_request())
    await anyio.sleep(5)
    inner.pause = 100
    with anyio.move_on_after(1):
        await circuit.complete(simple_request())
    inner.pause = 0
    await anyio.sleep(5)
    assert (await circuit.complete(simple_request())).text == "ok"


async def test_a_stream_that_breaks_counts_once() -> None:
    inner = Scripted(["abcdefgh"], chunk=2, break_after=1)
    circuit = Circuit(inner, failure_threshold=2, reset_after=5)
    with pytest.raises(ProviderConnectionError):
        await read_into(circuit.stream(simple_request()), [])
    assert circuit.breaker.failures == 1
    assert circuit.state == "closed"


# -- fallback ------------------------------------------------------------------------------


async def test_fallback_stops_at_a_bad_request_and_lists_every_failure() -> None:
    first, second = Scripted([bad_request()], name="a"), Scripted(["b"], name="b")
    with pytest.raises(BadRequestError):
        await Fallback(first, second).complete(simple_request())
    assert second.requests == []
    down = [Scripted([unavailable(n)], name=n) for n in ("x", "y")]
    with pytest.raises(AllProvidersFailedError, match=r"x: .*HTTP 503.*; y: .*HTTP 503"):
        await Fallback(*down).complete(simple_request())


async def test_fallback_does_not_switch_providers_after_a_streamed_token() -> None:
    first = Scripted(["partial answer"], name="a", chunk=4, break_after=1)
    second = Scripted(["full answer"], name="b")
    events: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError):
        await read_into(Fallback(first, second).stream(simple_request()), events)
    assert texts(events) == ["part"]
    assert second.requests == []


async def test_fallback_skips_regions_the_data_may_not_reach() -> None:
    abroad = Scripted(["from us"], name="abroad", region="us")
    home = Scripted(["from in"], name="home", region="in")
    chain = Fallback(abroad, home, home_region="in")
    public = simple_request(context=CallContext(classification=Classification.PUBLIC))
    secret = simple_request(context=CallContext(classification=Classification.SECRET))
    assert (await chain.complete(public)).text == "from us"
    assert (await chain.complete(secret)).text == "from in"
    assert len(abroad.requests) == 1
    with pytest.raises(AllProvidersFailedError, match=r'abroad.*cannot leave region "in"'):
        await Fallback(abroad).complete(secret)
    assert len(abroad.requests) == 1


# -- cache ---------------------------------------------------------------------------------


async def test_the_cache_answers_within_its_ttl_and_asks_again_after() -> None:
    inner = Scripted(["first", "second"])
    cache = Cache(inner, ttl=600)
    a = await cache.complete(simple_request(context=CallContext(principal="a")))
    b = await cache.complete(simple_request(context=CallContext(principal="b")))
    assert a == b
    assert len(inner.requests) == 1
    await anyio.sleep(600)
    assert (await cache.complete(simple_request())).text == "second"
    assert cache.statistics().hits == 1
    assert cache.statistics().misses == 2


async def test_a_cached_stream_replays_and_errors_are_not_kept() -> None:
    inner = Scripted([unavailable(), "streamed once"], chunk=3)
    cache = Cache(inner, ttl=60)
    with pytest.raises(ProviderUnavailableError):
        await cache.complete(simple_request())
    first = await complete_by_streaming(cache, simple_request())
    replayed = await complete_by_streaming(cache, simple_request())
    assert replayed == first
    assert replayed.text == "streamed once"
    assert len(inner.requests) == 2


async def test_a_broken_stream_is_not_cached_and_the_cache_stays_bounded() -> None:
    inner = Scripted(["abcdef"], chunk=2, break_after=1)
    cache = Cache(inner, ttl=60, max_entries=2)
    with pytest.raises(ProviderConnectionError):
        await read_into(cache.stream(simple_request()), [])
    assert cache.statistics().entries == 0
    inner.break_after = None
    for n in range(5):
        await cache.complete(simple_request(max_tokens=n + 1))
    assert cache.statistics().entries == 2


# -- shadow --------------------------------------------------------------------------------


async def test_the_shadow_never_changes_the_answer_and_is_bounded() -> None:
    results: list[ShadowResult] = []
    primary = Scripted(["primary"], name="p")
    failing = Scripted([unavailable()], name="s")
    async with anyio.create_task_group() as tg:
        shadow = Shadow(primary, failing, tg, on_result=results.append)
        assert (await shadow.complete(simple_request())).text == "primary"
    assert results[0].primary.text == "primary"
    assert results[0].shadow is None
    assert "HTTP 503" in (results[0].error or "")

    slow = Scripted(["late"], name="s", pause=100)
    results.clear()
    async with anyio.create_task_group() as tg:
        shadow = Shadow(primary, slow, tg, on_result=results.append, timeout=5, max_in_flight=2)
        started = anyio.current_time()
        answers = [await shadow.complete(simple_request()) for _ in range(4)]
        assert anyio.current_time() == started  # the answers did not wait for the shadow
        assert [a.text for a in answers] == ["primary"] * 4
        assert shadow.statistics().skipped == 2
    assert [r.error for r in results] == ["timeout", "timeout"]


async def test_a_failing_shadow_or_result_handler_never_reaches_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_handler(result: ShadowResult) -> None:
        raise RuntimeError("handler bug")

    primary = Scripted(["primary"], name="p")

    def crash(request: Request) -> Response:
        raise ZeroDivisionError("a bug in the shadow")

    buggy = Scripted([crash], name="s")
    async with anyio.create_task_group() as tg:
        shadow = Shadow(primary, buggy, tg, on_result=broken_handler)
        assert (await shadow.complete(simple_request())).text == "primary"
        await anyio.sleep(1)
        assert (await shadow.complete(simple_request())).text == "primary"
    assert "shadow result handler failed" in caplog.text


# -- cost ----------------------------------------------------------------------------------


async def test_the_cost_observer_prices_answers_and_records_failures() -> None:
    prices = PriceTable.of({"m-1": {"input": 2.0, "output": 8.0, "cached_input": 0.5}})
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cached_tokens=200_000)
    inner = Scripted([Response(text="x", usage=usage), unavailable()])
    records: list[CallRecord] = []
    observer = CostObserver(inner, prices, on_call=records.append)
    response = await observer.complete(simple_request())
    assert response.cost == pytest.approx(0.8 * 2.0 + 0.2 * 0.5 + 0.5 * 8.0)
    with pytest.raises(ProviderUnavailableError):
        await observer.complete(simple_request())
    stats = observer.statistics()
    assert (stats.calls, stats.failures, stats.input_tokens) == (2, 1, 1_000_000)
    assert stats.cost == pytest.approx(5.7)
    assert records[1].error == "ProviderUnavailableError"
    assert PriceTable().cost("m-1", usage) is None


@pytest.mark.parametrize("star", [True, False], ids=["with-star", "without"])
async def test_an_answer_under_a_dated_name_is_priced_as_the_model_asked_for(star: bool) -> None:
    # OpenAI answers a call for "gpt-4o" as "gpt-4o-2024-08-06": priced at the "*" entry it
    # cost a fraction of what it did, and with no "*" it cost nothing at all, in the answer,
    # the statistics and the metrics.
    table = {"gpt-4o": {"input": 2.5, "output": 10.0}}
    if star:
        table["*"] = {"input": 0.15, "output": 0.6}
    used = Usage(input_tokens=1_000_000, output_tokens=100_000)
    dated = Response(text="x", usage=used, model="gpt-4o-2024-08-06")
    records: list[CallRecord] = []
    observer = CostObserver(Scripted([dated]), PriceTable.of(table), on_call=records.append)
    response = await observer.complete(simple_request(model="gpt-4o"))
    assert response.cost == pytest.approx(2.5 + 1.0)
    assert records[0].cost == pytest.approx(2.5 + 1.0)
    await read_into(observer.stream(simple_request(model="gpt-4o")), [])
    assert observer.statistics().cost == pytest.approx(2 * 3.5)


# -- daily budget --------------------------------------------------------------------------


async def test_the_daily_budget_is_per_principal_and_restarts_each_day() -> None:
    day = [date(2026, 1, 1)]
    used = Usage(input_tokens=50, output_tokens=50)
    inner = Scripted([Response(text="x", usage=used)])
    budget = DailyTokenBudget(inner, 300, today=lambda: day[0])
    alice = simple_request(max_tokens=100, context=CallContext(principal="alice"))
    bob = simple_request(max_tokens=100, context=CallContext(principal="bob"))
    await budget.complete(alice)
    await budget.complete(alice)  # 200 used, 100 left: the next may need ~110
    with pytest.raises(BudgetExceededError, match="daily_tokens budget for alice on 2026-01-01"):
        await budget.complete(alice)
    await budget.complete(bob)
    assert len(inner.requests) == 3
    day[0] = date(2026, 1, 2)
    await budget.complete(alice)
    assert len(inner.requests) == 4
    assert budget.ledger.accounts() == ["alice on 2026-01-02"]  # yesterday's accounts are gone


async def test_one_daily_ledger_bounds_a_principal_across_providers() -> None:
    shared = BudgetLedger(max_tokens=200, name="daily")
    used = Usage(input_tokens=50, output_tokens=50)
    a = DailyTokenBudget(Scripted([Response(usage=used)]), ledger=shared)
    b = DailyTokenBudget(Scripted([Response(usage=used)]), ledger=shared)
    request = simple_request(max_tokens=100, context=CallContext(principal="alice"))
    await a.complete(request)
    with pytest.raises(BudgetExceededError, match="daily_tokens"):
        await b.complete(request)
    with pytest.raises(ValueError, match="not both"):
        DailyTokenBudget(Scripted(), 10, ledger=shared)


# -- residency -----------------------------------------------------------------------------


class Probe(Payload):
    message_type = "probe"


@pytest.mark.parametrize("classification", list(Classification))
@pytest.mark.parametrize("region", ["", "in", "on-prem", "us", "eu"])
@pytest.mark.parametrize("allow_public", [True, False])
def test_residency_decides_as_the_data_residency_policy(
    classification: Classification, region: str, allow_public: bool
) -> None:
    policy = DataResidency("in", allow_cross_border_for_public=allow_public)
    msg = Message.new(
        Probe(), sender="s", classification=classification, metadata={"region": region}
    )
    decision = policy.evaluate(msg, "r")
    ours = residency_refusal(
        classification, home_region="in", region=region, allow_cross_border_for_public=allow_public
    )
    assert ours == (None if decision.allowed else decision.reason)


async def test_residency_refuses_before_anything_is_sent() -> None:
    abroad = Scripted(["x"], region="us")
    guarded = Residency(abroad, home_region="in")
    pii = simple_request(context=CallContext(classification=Classification.PII))
    with pytest.raises(ResidencyDeniedError, match='classification "pii" cannot leave'):
        await guarded.complete(pii)
    with pytest.raises(ResidencyDeniedError):
        await read_into(guarded.stream(pii), [])
    assert abroad.requests == []
