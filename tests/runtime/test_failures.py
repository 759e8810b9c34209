"""Deadlines, retries, fallback, dead letters and the circuit breaker, on virtual time."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import anyio
import pytest
import trio.testing

from genie import (
    AgentOptions,
    BaseAgent,
    BreakerPolicy,
    ConfigurationError,
    Context,
    Message,
    RetryPolicy,
    Runtime,
    handler,
)

from ..conftest import DenyTo, Echo, Failing, Note, Ping, Pong, Recorder


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def drain(rt: Runtime) -> None:
    with anyio.fail_after(1000):
        await rt.wait_idle()


class Slow(BaseAgent):
    produces = (Pong,)

    def __init__(self, id: str, seconds: float) -> None:
        super().__init__(id)
        self.seconds = seconds
        self.finished = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await ctx.sleep(self.seconds)
        self.finished += 1
        return ctx.reply(Pong(n=payload.n))


async def test_deadline_cancels_a_slow_handler() -> None:
    slow = Slow("slow", seconds=60)
    async with Runtime() as rt:
        rt.add(slow, options=AgentOptions(deadline=2.0))
        started = anyio.current_time()
        result = await rt.ask(rt.message(Ping(n=1), recipient="slow"))
        elapsed = anyio.current_time() - started
    assert slow.finished == 0  # the handler really stopped
    assert 2.0 <= elapsed < 3.0
    assert result.status == "partial"
    [missing] = result.missing
    assert missing.kind == "failed"
    assert "HandlerTimeoutError" in missing.reason
    assert "2s deadline" in missing.reason
    [letter] = list(rt.dead_letters)
    assert letter.error_type == "HandlerTimeoutError"
    assert letter.message.payload == Ping(n=1)


class BlocksTheLoop(BaseAgent):
    """An ``async def`` handler that blocks the event loop (``time.sleep``): no cancel scope
    can interrupt it."""

    produces = (Pong,)

    def __init__(self, id: str, seconds: float) -> None:
        super().__init__(id)
        self.seconds = seconds
        self.calls = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.calls += 1
        time.sleep(self.seconds)  # noqa: ASYNC251 - the blocking this test is about
        return ctx.reply(Pong(n=payload.n))


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_handler_that_blocks_the_loop_past_its_deadline_fails_by_timeout() -> None:
    # Real time: the loop really is blocked, so its cancel scope never fires.
    blocker = BlocksTheLoop("blocker", seconds=0.3)
    retry = RetryPolicy(attempts=2, backoff=0)
    async with Runtime() as rt:
        rt.add(blocker, options=AgentOptions(deadline=0.1, retry=retry))
        result = await rt.ask(rt.message(Ping(n=1), recipient="blocker"))
        await drain(rt)
        stats = rt.statistics()
    assert blocker.calls == 2  # retried as any timeout
    assert result.status == "partial"
    assert result.replies == ()  # its late reply is discarded
    [missing] = result.missing
    assert missing.kind == "failed"
    assert "HandlerTimeoutError" in missing.reason
    assert "0.1s deadline" in missing.reason
    assert "blocked the event loop" in missing.reason
    assert "offload" in missing.reason
    [letter] = list(rt.dead_letters)
    assert letter.error_type == "HandlerTimeoutError"
    assert letter.attempts == 2
    assert stats.handled == 0


class ShieldsItself(BaseAgent):
    """A handler that shields itself from cancellation, so it returns after its deadline."""

    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(5)
        return ctx.reply(Pong(n=payload.n))


async def test_a_handler_that_returns_after_its_deadline_fails_by_timeout() -> None:
    async with Runtime() as rt:
        rt.add(ShieldsItself("late"), options=AgentOptions(deadline=2.0))
        result = await rt.ask(rt.message(Ping(n=1), recipient="late"))
    assert result.replies == ()
    [missing] = result.missing
    assert "HandlerTimeoutError" in missing.reason
    assert "2s deadline" in missing.reason
    [letter] = list(rt.dead_letters)
    assert letter.error_type == "HandlerTimeoutError"


async def test_retry_with_backoff_then_success() -> None:
    flaky = Failing("flaky", failures=2)
    options = AgentOptions(retry=RetryPolicy(attempts=3, backoff=1.0, multiplier=2.0))
    async with Runtime() as rt:
        rt.add(flaky, options=options)
        started = anyio.current_time()
        result = await rt.ask(rt.message(Ping(n=5), recipient="flaky"))
        elapsed = anyio.current_time() - started
    assert result.message.payload == Pong(n=5)
    assert flaky.calls == 3
    assert 3.0 <= elapsed < 3.5  # backoff 1 s then 2 s
    s = rt.statistics()
    assert (s.retries, s.handled - s.collected, s.dead_lettered) == (2, 1, 0)


@pytest.mark.parametrize(
    ("retry", "waited"),
    [
        # 0 s times an infinite multiplier is NaN, which the sleep refused: the runtime crashed.
        (RetryPolicy(attempts=3, backoff=0, multiplier=math.inf), 0.0),
        # 1e300 ** 2 is past any float: OverflowError, the runtime crashed too.
        (RetryPolicy(attempts=4, backoff=1.0, multiplier=1e300, max_backoff=7.0), 1.0 + 7.0 + 7.0),
    ],
)
async def test_a_backoff_that_grows_past_any_number_waits_its_cap(
    retry: RetryPolicy, waited: float
) -> None:
    broken = Failing("broken")
    async with Runtime() as rt:
        rt.add(broken, options=AgentOptions(retry=retry))
        started = anyio.current_time()
        result = await rt.ask(rt.message(Ping(n=1), recipient="broken"))
        assert anyio.current_time() - started == pytest.approx(waited)
    assert broken.calls == retry.attempts
    assert result.status == "partial"
    [letter] = list(rt.dead_letters)
    assert letter.attempts == retry.attempts


async def test_retry_then_fallback() -> None:
    options = AgentOptions(retry=RetryPolicy(attempts=2, backoff=0.1), fallback="backup")
    broken, backup = Failing("primary"), Echo("backup")
    async with Runtime() as rt:
        rt.add(broken, options=options)
        rt.add(backup)
        result = await rt.ask(rt.message(Ping(n=8), recipient="primary"))
    assert broken.calls == 2
    assert result.message.payload == Pong(n=8)
    assert result.message.sender == "backup"
    s = rt.statistics()
    assert (s.fallbacks, s.handled - s.collected, s.dead_lettered, s.retries) == (1, 1, 0, 1)
    assert s.mailboxes["backup"].handled == 1  # the fallback ran through its own mailbox


async def test_retry_then_fallback_then_dead_letter() -> None:
    options = AgentOptions(retry=RetryPolicy(attempts=2, backoff=0.1), fallback="backup")
    async with Runtime() as rt:
        rt.add(Failing("primary"), options=options)
        rt.add(Failing("backup"))
        request = rt.message(Ping(n=9), recipient="primary")
        result = await rt.ask(request)
    assert result.status == "partial"
    [letter] = list(rt.dead_letters)
    assert letter.kind == "failed"
    assert letter.agent_id == "primary"
    assert letter.message == request  # the original message, inspectable
    assert letter.attempts == 2
    assert letter.reason == (
        "RuntimeError: boom #2; fallback 'backup' failed: RuntimeError: boom #1"
    )
    s = rt.statistics()
    assert s.delivered == s.dead_lettered == 1


async def test_errors_that_cannot_heal_are_not_retried() -> None:
    class ReturnsText(BaseAgent):
        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> Any:
            return "not messages"

    async with Runtime() as rt:
        rt.add(ReturnsText("bad"), options=AgentOptions(retry=RetryPolicy(attempts=5)))
        rt.add(Echo("fine"))
        await rt.publish(rt.message(Ping(), recipient="bad"))
        await drain(rt)
        # the runtime and the other agents keep working
        assert (await rt.ask(rt.message(Ping(n=2), recipient="fine"))).complete
    [letter] = list(rt.dead_letters)
    assert letter.error_type == "InvalidOutputError"
    assert letter.reason.endswith(
        "returned str; a handler returns a Message, a list or tuple of them, or None"
    )
    assert rt.statistics().retries == 0


async def test_unregistered_output_type_is_a_handler_failure() -> None:
    class Leaky(BaseAgent):  # emits Note without listing it in produces
        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> Message:
            return ctx.reply(Note(text="x"))

    async with Runtime() as rt:
        rt.add(Leaky("leaky"))
        await rt.publish(rt.message(Ping(), recipient="leaky"))
        await drain(rt)
    [letter] = list(rt.dead_letters)
    assert "'note'" in letter.reason
    assert "not registered" in letter.reason


async def test_circuit_breaker_opens_and_recovers() -> None:
    flaky = Failing("flaky", failures=3)
    options = AgentOptions(breaker=BreakerPolicy(failure_threshold=3, reset_after=30.0))
    async with Runtime() as rt:
        rt.add(flaky, options=options)
        for n in range(5):
            await rt.publish(rt.message(Ping(n=n), recipient="flaky"))
        await drain(rt)
        assert flaky.calls == 3  # the last two were refused without calling the handler
        assert rt.statistics().mailboxes["flaky"].circuit == "open"
        letters = list(rt.dead_letters)
        assert [d.error_type for d in letters] == ["RuntimeError"] * 3 + ["CircuitOpenError"] * 2

        await anyio.sleep(31)  # virtual time: the breaker lets one trial through
        result = await rt.ask(rt.message(Ping(n=7), recipient="flaky"))
        assert result.message.payload == Pong(n=7)
        assert rt.statistics().mailboxes["flaky"].circuit == "closed"


class FailsOn(BaseAgent):
    """Raises on the calls whose numbers are in ``failing`` (1-based), replies otherwise."""

    produces = (Pong,)

    def __init__(self, id: str, failing: set[int]) -> None:
        super().__init__(id)
        self.failing = failing
        self.calls = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.calls += 1
        if self.calls in self.failing:
            raise RuntimeError(f"boom #{self.calls}")
        return ctx.reply(Pong(n=payload.n))


async def test_a_retry_that_succeeds_closes_the_breaker() -> None:
    """Failures a retry recovers from are forgotten: the breaker counts consecutive failures,
    so two deliveries that each fail twice and then succeed never open a breaker of three."""
    agent = FailsOn("wobbly", failing={1, 2, 4, 5})
    options = AgentOptions(
        retry=RetryPolicy(attempts=3, backoff=0.1),
        breaker=BreakerPolicy(failure_threshold=3, reset_after=30.0),
    )
    async with Runtime() as rt:
        rt.add(agent, options=options)
        for n in range(2):
            result = await rt.ask(rt.message(Ping(n=n), recipient="wobbly"))
            assert result.message.payload == Pong(n=n)
            assert rt.statistics().mailboxes["wobbly"].circuit == "closed"
        await drain(rt)
    assert agent.calls == 6
    assert not list(rt.dead_letters)
    assert rt.statistics().retries == 4


async def test_half_open_failure_reopens() -> None:
    options = AgentOptions(breaker=BreakerPolicy(failure_threshold=1, reset_after=10.0))
    broken = Failing("broken")
    async with Runtime() as rt:
        rt.add(broken, options=options)
        await rt.ask(rt.message(Ping(), recipient="broken"))
        await anyio.sleep(11)
        await rt.ask(rt.message(Ping(), recipient="broken"))  # the trial fails
        assert rt.statistics().mailboxes["broken"].circuit == "open"
        await rt.ask(rt.message(Ping(), recipient="broken"))
    assert broken.calls == 2


class FailsThenHangs(BaseAgent):
    """Its first call fails, its second waits an hour, the rest reply."""

    produces = (Pong,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.calls = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("down")
        if self.calls == 2:
            await ctx.sleep(3600)
        return ctx.reply(Pong(n=payload.n))


async def test_a_cancelled_trial_leaves_the_breaker_open_for_the_next_one() -> None:
    """A half-open breaker's one trial, cancelled before it ends, says nothing of the agent's
    health: the breaker stays open, and the next call is the trial (it did refuse every call
    for good, waiting for an outcome the cancelled trial never gave)."""
    agent = FailsThenHangs("shaky")
    options = AgentOptions(breaker=BreakerPolicy(failure_threshold=1, reset_after=10.0))
    async with Runtime() as rt:
        rt.add(agent, options=options)
        await rt.ask(rt.message(Ping(n=1), recipient="shaky"))  # fails: the breaker opens
        await anyio.sleep(11)
        trial = rt.message(Ping(n=2), recipient="shaky")
        await rt.publish(trial)
        await anyio.sleep(1)
        assert rt.statistics().mailboxes["shaky"].circuit == "half_open"
        rt.cancel(trial.correlation_id)
        await drain(rt)
        assert rt.statistics().mailboxes["shaky"].circuit == "open"
        result = await rt.ask(rt.message(Ping(n=3), recipient="shaky"))
        assert result.message.payload == Pong(n=3)
        assert rt.statistics().mailboxes["shaky"].circuit == "closed"
    assert agent.calls == 3
    assert [d.error_type for d in rt.dead_letters] == ["RuntimeError", None]
    assert [d.kind for d in rt.dead_letters] == ["failed", "cancelled"]


class AsksTheDb(BaseAgent):
    """Fails on Ping 0; asks ``db`` for any negative Ping (which a policy refuses: the
    request raises ``DeniedError``); answers the rest."""

    produces = (Pong, Note)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        if payload.n == 0:
            raise RuntimeError("the db is down")
        if payload.n < 0:
            await ctx.request("db", Note(text="lookup"))
        return ctx.reply(Pong(n=payload.n))


async def test_a_failure_no_retry_could_fix_says_nothing_of_the_agents_health() -> None:
    """Denials (one tenant's requests a policy refuses, say) opened the agent's breaker for
    every caller; a trial they ended kept it half-open for good. They neither count nor end
    a trial; a failure of the agent's own does both."""
    options = AgentOptions(breaker=BreakerPolicy(failure_threshold=3, reset_after=10.0))
    async with Runtime(policies=[DenyTo("db")]) as rt:
        rt.add(AsksTheDb("front"), options=options)
        rt.add(Echo("db"))

        def circuit() -> str:
            return rt.statistics().mailboxes["front"].circuit

        for n in range(-5, 0):
            assert (await rt.ask(rt.message(Ping(n=n), recipient="front"))).status == "partial"
        assert circuit() == "closed"
        assert (await rt.ask(rt.message(Ping(n=1), recipient="front"))).complete
        for _ in range(3):  # the agent's own failures open it
            await rt.ask(rt.message(Ping(n=0), recipient="front"))
        assert circuit() == "open"
        await anyio.sleep(11)
        # The trial is denied: no outcome of the agent's; the next call is the trial again.
        assert (await rt.ask(rt.message(Ping(n=-1), recipient="front"))).status == "partial"
        assert circuit() == "open"
        assert (await rt.ask(rt.message(Ping(n=2), recipient="front"))).complete
        assert circuit() == "closed"
    kinds = [d.error_type for d in rt.dead_letters]
    assert kinds == ["DeniedError"] * 5 + ["RuntimeError"] * 3 + ["DeniedError"]


async def test_a_handler_exception_never_reaches_other_agents() -> None:
    rec = Recorder("rec")
    async with Runtime([Failing("bad"), rec]) as rt:
        for n in range(20):
            await rt.publish(rt.message(Ping(n=n), recipient="bad"))
            await rt.publish(rt.message(Ping(n=n), recipient="rec"))
        await drain(rt)
    assert [p.n for p in rec.seen] == list(range(20))
    s = rt.statistics()
    assert (s.dead_lettered, s.handled) == (20, 20)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"retry": None}, "retry must be a RetryPolicy, not None"),
        ({"retry": 3}, "retry must be a RetryPolicy, not 3"),
        ({"breaker": "off"}, "breaker must be a BreakerPolicy or None, not 'off'"),
        ({"deadline": float("nan")}, "deadline must be a positive number of seconds or None"),
        ({"deadline": "5"}, "deadline must be a positive number of seconds or None, not '5'"),
        ({"mailbox_size": 2.5}, "mailbox_size must be a whole number of at least 1, not 2.5"),
        ({"max_concurrency": 0}, "max_concurrency must be a whole number of at least 1"),
    ],
)
def test_options_of_the_wrong_kind_are_refused_when_made(
    options: dict[str, Any], says: str
) -> None:
    """Untyped code passing ``retry=None`` is told so at once, not by a crash in the first
    failure's retry."""
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        AgentOptions(**options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RetryPolicy(backoff=float("nan")),
        lambda: RetryPolicy(attempts=2.5),  # type: ignore[arg-type]
        lambda: RetryPolicy(multiplier=True),
        lambda: BreakerPolicy(reset_after=float("nan")),
        lambda: BreakerPolicy(failure_threshold=0),
    ],
)
def test_retry_and_breaker_numbers_are_checked_when_made(make: Any) -> None:
    """NaN seconds compare false with everything: it used to pass the checks and stop the
    runtime at the first backoff that slept on it."""
    with pytest.raises(ConfigurationError, match=r"(retry|breaker): .* \(numbers\), not"):
        make()


async def test_a_retried_delivery_cancelled_in_its_backoff_keeps_its_attempts() -> None:
    retry = RetryPolicy(attempts=5, backoff=10.0, max_backoff=100.0)
    async with Runtime() as rt:
        rt.add(Failing("flaky"), options=AgentOptions(retry=retry))
        msg = rt.message(Ping(), recipient="flaky")
        await rt.publish(msg)
        await anyio.sleep(35)  # attempts at 0, 10, 30: the third backoff (40 s) under way
        rt.cancel(msg.correlation_id)
        await drain(rt)
    [letter] = rt.dead_letters
    assert (letter.kind, letter.attempts, rt.statistics().retries) == ("cancelled", 3, 3)
