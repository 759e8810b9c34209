"""Context.schedule: a message to oneself on the runtime clock, counted as work in flight."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import trio.testing

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    DeliveryError,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
    RuntimeClosedError,
    TestContext,
    Timer,
    handler,
)

from ..conftest import COMPILED, Echo, Note, Ping


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


class Alarm(Payload):
    message_type = "alarm"


class Sleepy(BaseAgent):
    """On a ping, sets an alarm ``delay`` seconds out (cancelled if ``cancel``); on the alarm,
    notes the time it rang."""

    produces = (Alarm, Note)

    def __init__(self, id: str, delay: float, cancel: bool = False) -> None:
        super().__init__(id)
        self.delay = delay
        self.cancel = cancel
        self.timers: list[Timer] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        timer = ctx.schedule(self.delay, Alarm())
        self.timers.append(timer)
        if self.cancel:
            timer.cancel()
            timer.cancel()  # idempotent

    @handler
    async def on_alarm(self, payload: Alarm, ctx: Context) -> Message:
        assert ctx.message.recipient == self.id
        return ctx.emit(Note(text=f"rang at {anyio.current_time():g}"), recipient="user")


async def test_the_alarm_rings_after_the_delay_in_the_same_correlation() -> None:
    async with Runtime([Sleepy("sleepy", delay=30)]) as rt:
        start = anyio.current_time()
        request = rt.message(Ping(), recipient="sleepy")
        result = await rt.ask(request)
        assert result.complete
        note = result.message
        assert note.correlation_id == request.correlation_id
        assert note.payload == Note(text=f"rang at {start + 30:g}")
    stats = rt.statistics()
    assert stats.in_flight == 0
    # the ping, the timer (it fired), the alarm, and the note the ask collected
    assert (stats.delivered, stats.handled, stats.collected) == (4, 4, 1)


async def test_a_cancelled_alarm_never_rings_and_releases_the_request() -> None:
    async with Runtime([Sleepy("sleepy", delay=30, cancel=True)]) as rt:
        start = anyio.current_time()
        result = await rt.ask(rt.message(Ping(), recipient="sleepy"), timeout=3600)
        assert result.status == "partial"  # quiescent at once: nothing pending, no reply
        assert anyio.current_time() == start
    stats = rt.statistics()
    assert (stats.delivered, stats.handled) == (2, 2)  # the ping, the timer (withdrawn)
    assert rt.shutdown_report is not None
    assert rt.shutdown_report.drained


async def test_shutdown_cancels_pending_alarms() -> None:
    async with Runtime([Sleepy("sleepy", delay=10_000)], drain_timeout=1) as rt:
        await rt.publish(rt.message(Ping(), recipient="sleepy"))
        await trio.testing.wait_all_tasks_blocked()
    assert rt.statistics().in_flight == 0
    assert rt.shutdown_report is not None
    assert not rt.shutdown_report.drained


async def test_test_context_records_instead_of_waiting() -> None:
    agent = Sleepy("sleepy", delay=5)
    msg = Message.new(Ping(), sender="user")
    ctx = TestContext("sleepy", msg)
    assert await agent.handle(msg, ctx) == ()
    ((delay, alarm, timer),) = ctx.scheduled
    assert delay == 5
    assert alarm.payload == Alarm()
    assert alarm.recipient == "sleepy"
    assert timer is agent.timers[0]


async def test_a_deadline_already_past_rings_at_once() -> None:
    # A delay worked out as "deadline - now" goes negative once the deadline has passed.
    async with Runtime([Sleepy("sleepy", delay=-5)]) as rt:
        start = anyio.current_time()
        result = await rt.ask(rt.message(Ping(), recipient="sleepy"))
        assert result.message.payload == Note(text=f"rang at {start:g}")


@pytest.mark.parametrize(
    ("delay", "spelt"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ("5", "'5'"),
        (True, "True"),
        # no float holds it (it raised OverflowError), and its 401 digits are not quoted
        (10**400, "an integer too large for a float"),
    ],
    ids=["nan", "inf", "text", "bool", "bigint"],
)
async def test_a_delay_that_is_no_finite_number_fails_the_handler_not_the_runtime(
    delay: Any, spelt: str
) -> None:
    async with Runtime([Sleepy("bad", delay=delay), Sleepy("good", delay=1)]) as rt:
        failed = await rt.ask(rt.message(Ping(), recipient="bad"))
        rang = await rt.ask(rt.message(Ping(), recipient="good"))
    [missing] = failed.missing
    assert missing.reason == (
        "InvalidArgumentError: ctx.schedule: the delay must be a finite number of seconds, "
        f"not {spelt}"
    )
    assert rang.complete
    assert rt.statistics().timers_set == 1
    with pytest.raises(ValueError, match="finite number of seconds"):
        TestContext("sleepy", Message.new(Ping(), sender="user")).schedule(delay, Alarm())


class Flaky(BaseAgent):
    """Sets an alarm, then fails the first ``fails`` attempts; withdraws its own alarm before
    failing when ``tidy``. Counts the alarms that ring."""

    produces = (Alarm,)

    def __init__(self, id: str, fails: int, tidy: bool) -> None:
        super().__init__(id)
        self.fails = fails
        self.tidy = tidy
        self.attempts = 0
        self.rang = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.attempts += 1
        timer = ctx.schedule(30, Alarm())
        if self.attempts <= self.fails:
            if self.tidy:
                timer.cancel()
            raise ConnectionError("service unreachable")

    @handler
    async def on_alarm(self, payload: Alarm, ctx: Context) -> None:
        self.rang += 1


@pytest.mark.parametrize(("tidy", "rang"), [(False, 3), (True, 1)])
async def test_a_timer_a_failed_attempt_set_stands_unless_withdrawn(tidy: bool, rang: int) -> None:
    """An attempt's effects stand when it fails, its timers as its requests: a retry that
    sets the timer again sets one more."""
    flaky = Flaky("flaky", fails=2, tidy=tidy)
    async with Runtime() as rt:
        rt.add(flaky, options=AgentOptions(retry=RetryPolicy(attempts=3, backoff=1)))
        await rt.publish(rt.message(Ping(), recipient="flaky"))
        await rt.wait_idle()
    assert (flaky.attempts, flaky.rang) == (3, rang)
    s = rt.statistics()
    assert (s.timers_set, s.timers_handled, s.retries, s.in_flight) == (3, 3, 2, 0)
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight


def test_a_test_contexts_timer_is_cancelled_from_any_thread() -> None:
    """No loop made it: it is withdrawn where it is cancelled (no hand-off to a loop)."""
    import threading

    from genie import Message, TestContext

    ctx = TestContext("a", Message.new(Ping(n=0), sender="user", recipient="a"))
    timer = ctx.schedule(5.0, Ping(n=1))
    errors: list[BaseException] = []

    def cancel() -> None:
        try:
            timer.cancel()
        except BaseException as exc:  # what the other thread met, asserted below
            errors.append(exc)

    thread = threading.Thread(target=cancel)
    thread.start()
    thread.join()
    assert errors == []
    assert timer.cancelled


class Keeps(BaseAgent):
    """Keeps the context of each ping it handles, and answers nothing."""

    produces = (Alarm,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.kept: list[Context] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.kept.append(ctx)

    @handler
    async def on_alarm(self, payload: Alarm, ctx: Context) -> None:
        raise AssertionError("a kept context's timer rang")


async def test_a_context_kept_past_its_request_starts_no_more_work() -> None:
    """Its request ended, the correlation was let go: a timer or a request through the kept
    context started it again, its delivery budget whole, and ran. Refused, saying why, and
    once the runtime has closed, refused as closed (a timer's was anyio's RuntimeError)."""
    keeper = Keeps("keeper")
    async with Runtime([keeper, Echo("echo")]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="keeper"), timeout=5)
        assert result.status == "partial"
        await rt.wait_idle()
        [ctx] = keeper.kept
        ended = f"correlation {result.correlation_id} has ended here"
        with pytest.raises(DeliveryError, match=rf"ctx.schedule\(\) refused: {ended}"):
            ctx.schedule(0.1, Alarm())
        with pytest.raises(DeliveryError, match=rf"ctx.request\(\) refused: {ended}"):
            await ctx.request("echo", Ping(n=2), timeout=1)
        await anyio.sleep(1)
        before = rt.statistics()
    assert (before.timers_set, before.delivered, before.in_flight) == (0, 1, 0)
    with pytest.raises(RuntimeClosedError, match=r"ctx.schedule\(\) refused: the runtime is"):
        ctx.schedule(0.1, Alarm())
    with pytest.raises(RuntimeClosedError):
        await ctx.request("echo", Ping(n=3), timeout=1)


class Naps(BaseAgent):
    """Sleeps ``seconds`` (a time worked out as "deadline - now", say), then notes the time."""

    produces = (Note,)

    def __init__(self, id: str, seconds: object) -> None:
        super().__init__(id)
        self.seconds = seconds

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await ctx.sleep(self.seconds)  # type: ignore[arg-type]
        return ctx.reply(Note(text=f"woke at {anyio.current_time():g}"))


async def test_a_sleep_already_over_returns_at_once_and_no_number_is_named() -> None:
    """As a timer's delay: a sleep of a time already past returns at once, where the event
    loop's sleep raised "delay must be a non-negative number", naming no call; a time that is
    no number failed the handler with a TypeError from inside the clock. A TestContext's
    sleep went back in time."""
    async with Runtime([Naps("past", -5), Naps("text", "5")]) as rt:
        start = anyio.current_time()
        woke = await rt.ask(rt.message(Ping(), recipient="past"))
        failed = await rt.ask(rt.message(Ping(), recipient="text"))
    assert woke.message.payload == Note(text=f"woke at {start:g}")
    [missing] = failed.missing
    if COMPILED:  # the compiled ctx.sleep's signature refuses it first
        assert missing.reason.startswith("TypeError: ")
    else:
        assert missing.reason == (
            "InvalidArgumentError: ctx.sleep: the time must be a number of seconds, not '5'"
        )
    ctx = TestContext("past", Message.new(Ping(), sender="user"))
    before = ctx.now()
    await ctx.sleep(-5)
    assert ctx.now() == before
    with pytest.raises(ValueError, match=r"ctx\.sleep: the time must be a number of seconds"):
        await ctx.sleep(float("nan"))


@pytest.mark.parametrize("seconds", [float("inf"), 1e300, 1e13])
async def test_a_test_contexts_sleep_past_its_clocks_end_waits_until_cancelled(
    seconds: float,
) -> None:
    """On a runtime a sleep of infinity waits until cancelled; a TestContext's raised
    OverflowError from its clock's arithmetic, for infinity and for any time its clock
    cannot reach (past the year 9999). Such a time never comes there either."""
    ctx = TestContext("napper", Message.new(Ping(), sender="user"))
    before = ctx.now()
    woke = False

    async def nap() -> None:
        nonlocal woke
        await ctx.sleep(seconds)
        woke = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(nap)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert not woke
    assert ctx.now() == before
