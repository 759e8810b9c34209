"""Boundary semantics and failure containment (issue 17, items 8-11, 13, 14): publish is a
checkpoint, timeouts and cancellation reach the work of a request, whatever a handler or a
policy raises is contained, timers are accounted, a failed start leaves nothing running."""

from __future__ import annotations

import asyncio
import gc
import warnings

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from genie import (
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    Decision,
    GatherResult,
    Limits,
    Message,
    RetryPolicy,
    Runtime,
    RuntimeClosedError,
    RuntimeState,
    RuntimeStatistics,
    handler,
)
from genie._base.failure import exiting

from ..conftest import Echo, Ping, PolicyFn, Pong, Recorder, requires


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def accounted(s: RuntimeStatistics) -> None:
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight, s


class Slow(BaseAgent):
    """Sleeps ``seconds`` on each Ping; remembers whether it was cancelled."""

    produces = (Pong,)

    def __init__(self, id: str, seconds: float = 30.0) -> None:
        super().__init__(id)
        self.seconds = seconds
        self.started = 0
        self.cancelled = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.started += 1
        try:
            await ctx.sleep(self.seconds)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        return ctx.reply(Pong(n=payload.n))


async def test_publish_is_a_checkpoint_and_can_be_cancelled() -> None:
    turns = 0

    async def sibling() -> None:
        nonlocal turns
        while True:
            turns += 1
            await checkpoint()

    async with Runtime([Recorder("rec")], defaults=AgentOptions(mailbox_size=2000)) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sibling)
            await checkpoint()
            before = turns
            for n in range(1000):
                await rt.publish(rt.message(Ping(n=n), recipient="rec"))
            assert turns - before >= 500  # the sibling ran while we published
            tg.cancel_scope.cancel()
        published = rt.statistics().published
        with anyio.CancelScope() as scope:
            scope.cancel()
            await rt.publish(rt.message(Ping(), recipient="rec"))
        assert scope.cancelled_caught
        assert rt.statistics().published == published  # nothing went out


async def test_ask_timeout_bounds_the_wait_for_mailbox_room() -> None:
    """The deadline ends the wait for room: nothing of the ask was sent, the slot it held is
    given back, and the next publish waits only for the room the agent makes."""
    gate = anyio.Event()
    recorder = Recorder("rec", gate)
    async with Runtime() as rt:
        rt.add(recorder, options=AgentOptions(mailbox_size=1))
        await rt.publish(rt.message(Ping(n=0), recipient="rec"))
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(n=1), recipient="rec"))  # full
        published = rt.statistics().published
        start = anyio.current_time()
        result = await rt.ask(rt.message(Ping(n=2), recipient="rec"), timeout=0.1)
        assert result.status == "timed_out"
        assert anyio.current_time() - start < 1.0
        assert rt.statistics().published == published  # nothing went out
        gate.set()
        with anyio.fail_after(5):
            await rt.publish(rt.message(Ping(n=3), recipient="rec"))
            await rt.wait_idle()
    assert [p.n for p in recorder.seen] == [0, 1, 3]
    accounted(rt.statistics())


class SlowClassifier:
    """A policy that asks a slow classifier of each message from outside (``prepare``)."""

    name = "slow-classifier"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.cancelled = 0

    async def prepare(self, msg: Message) -> None:
        try:
            await anyio.sleep(self.seconds)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return Decision.ALLOW


async def test_ask_timeout_bounds_the_policies_preparation() -> None:
    """The deadline is the call's, taken as it begins: a classifier slower than it ends the ask
    as a wait for room would (timed out, nothing sent), and what it took is not the gather's."""
    stuck = SlowClassifier(30)
    async with Runtime([Recorder("rec")], policies=[stuck]) as rt:
        with anyio.fail_after(5):
            result = await rt.ask(rt.message(Ping(n=1), recipient="rec"), timeout=0.1)
        assert (result.status, [m.kind for m in result.missing]) == ("timed_out", ["timed_out"])
        assert stuck.cancelled == 1
        assert rt.statistics().published == 0  # nothing went out
    slow = Slow("slow", seconds=0.2)
    async with Runtime([slow], policies=[SlowClassifier(0.2)]) as rt:
        with anyio.fail_after(5):
            result = await rt.ask(rt.message(Ping(n=2), recipient="slow"), timeout=0.3)
            await rt.wait_idle()
        assert result.status == "timed_out"  # 0.2 s to prepare, and 0.2 s to answer
        assert (slow.started, slow.cancelled) == (1, 1)
    accounted(rt.statistics())


async def test_ask_with_a_deadline_and_room_publishes_at_once() -> None:
    """With room in the mailbox the ask's deadline has nothing to bound on the way out: even
    one already past sends the message (what becomes of it is the gather's to say)."""
    async with Runtime([Recorder("rec")]) as rt:
        published = rt.statistics().published
        await rt.ask(rt.message(Ping(n=7), recipient="rec"), timeout=0)
        assert rt.statistics().published == published + 1
        with anyio.fail_after(5):
            await rt.wait_idle()
    accounted(rt.statistics())


async def fill_a_mailbox_of_one(rt: Runtime, recorder: Recorder) -> None:
    """Host ``recorder`` with room for one message, and fill it: one message runs (until its
    gate opens), one waits in the mailbox, and the next publish waits for room."""
    rt.add(recorder, options=AgentOptions(mailbox_size=1))
    await rt.publish(rt.message(Ping(n=0), recipient=recorder.id))  # running
    await wait_all_tasks_blocked()
    await rt.publish(rt.message(Ping(n=1), recipient=recorder.id))  # queued: full


async def test_runtime_cancel_stops_an_ask_waiting_for_room() -> None:
    """Nothing of a request waiting for mailbox room is in flight, and ``rt.cancel`` stops it
    all the same: its caller hears that it was cancelled, its message goes where a cancelled
    request's messages go, and the slot it waited for is the next publisher's."""
    gate = anyio.Event()
    recorder = Recorder("rec", gate)
    async with Runtime() as rt:
        await fill_a_mailbox_of_one(rt, recorder)
        request = rt.message(Ping(n=2), recipient="rec")
        results: list[GatherResult] = []

        async def ask() -> None:
            results.append(await rt.ask(request, timeout=30))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await wait_all_tasks_blocked()
                assert rt.statistics().mailboxes["rec"].waiting_publishers == 1
                rt.cancel(request.correlation_id)
        [result] = results
        assert (result.status, result.replies) == ("partial", ())
        assert [(m.kind, m.reason) for m in result.missing] == [
            ("cancelled", "correlation cancelled")
        ]
        assert rt.statistics().mailboxes["rec"].waiting_publishers == 0
        gate.set()
        with anyio.fail_after(5):
            await rt.wait_idle()
            await rt.publish(rt.message(Ping(n=3), recipient="rec"))
            await rt.wait_idle()
    assert [p.n for p in recorder.seen] == [0, 1, 3]
    [letter] = rt.dead_letters
    assert (letter.message.id, letter.kind, letter.reason) == (
        request.id,
        "unrouted",
        "correlation cancelled",
    )
    accounted(rt.statistics())


async def test_runtime_cancel_stops_a_publish_waiting_for_room() -> None:
    gate = anyio.Event()
    recorder = Recorder("rec", gate)
    async with Runtime() as rt:
        await fill_a_mailbox_of_one(rt, recorder)
        msg = rt.message(Ping(n=2), recipient="rec")
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.publish, msg)
                await wait_all_tasks_blocked()
                rt.cancel(msg.correlation_id)
            gate.set()
            await rt.wait_idle()
    assert [p.n for p in recorder.seen] == [0, 1]
    [letter] = rt.dead_letters
    assert (letter.message.id, letter.kind, letter.reason) == (
        msg.id,
        "unrouted",
        "correlation cancelled",
    )
    accounted(rt.statistics())


async def test_cancelling_an_ask_from_outside_cancels_its_work() -> None:
    slow = Slow("slow")
    async with Runtime([slow]) as rt:
        request = rt.message(Ping(), recipient="slow")
        with anyio.move_on_after(0.1):
            await rt.ask(request)
        with anyio.fail_after(5):
            await rt.wait_idle()
    assert (slow.started, slow.cancelled) == (1, 1)
    [letter] = rt.dead_letters
    assert (letter.message.id, letter.kind, letter.reason) == (
        request.id,
        "cancelled",
        "correlation cancelled",
    )
    accounted(rt.statistics())


async def test_runtime_cancel_stops_running_and_queued_work_of_the_request() -> None:
    slow = Slow("slow")
    async with Runtime([slow, Echo("echo")]) as rt:
        first = rt.message(Ping(n=1), recipient="slow")
        queued = first.model_copy(update={"id": "queued-1"})
        await rt.publish(first)
        await rt.publish(queued)
        await wait_all_tasks_blocked()
        rt.cancel(first.correlation_id)
        with anyio.fail_after(5):
            await rt.wait_idle()
        # The executor that ran the cancelled handler goes on with other work.
        result = await rt.ask(rt.message(Ping(n=2), recipient="echo"))
        assert result.message.payload == Pong(n=2)
    assert (slow.started, slow.cancelled) == (1, 1)
    letters = {d.message.id: d.reason for d in rt.dead_letters}
    assert letters == {first.id: "correlation cancelled", "queued-1": "correlation cancelled"}
    accounted(rt.statistics())


class Stubborn(BaseAgent):
    """Catches the cancellation of its wait, sends a Ping to ``rec`` and returns normally:
    a handler that swallows what stops it."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.swallowed = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.swallowed += 1
        return ctx.emit(Ping(n=payload.n), recipient="rec")


async def test_a_handler_that_swallows_the_stops_cancellation_is_cut_short() -> None:
    stubborn, rec = Stubborn("stubborn"), Recorder("rec")
    async with Runtime([stubborn, rec], drain_timeout=0.05) as rt:
        await rt.publish(rt.message(Ping(n=1), recipient="stubborn"))
        await wait_all_tasks_blocked()
    assert stubborn.swallowed == 1
    report = rt.shutdown_report
    assert report is not None
    # The drain timeout ran out: what it cut short is said so, however the handler ended.
    assert (report.drained, report.cancelled_running, report.by_agent) == (
        False,
        1,
        {"stubborn": 1},
    )
    [letter] = rt.dead_letters
    assert (letter.agent_id, letter.kind, letter.reason) == (
        "stubborn",
        "cancelled",
        "cancelled at shutdown",
    )
    s = rt.statistics()
    assert (s.handled, s.mailboxes["stubborn"].handled, s.unrouted) == (0, 0, 0)
    assert rec.seen == []  # its output went nowhere
    accounted(s)


async def test_a_handler_that_swallows_its_requests_cancellation_is_cancelled() -> None:
    stubborn, rec = Stubborn("stubborn"), Recorder("rec")
    async with Runtime([stubborn, rec]) as rt:
        request = rt.message(Ping(n=1), recipient="stubborn")
        await rt.publish(request)
        await wait_all_tasks_blocked()
        rt.cancel(request.correlation_id)
        with anyio.fail_after(5):
            await rt.wait_idle()
    assert stubborn.swallowed == 1
    [letter] = rt.dead_letters
    assert (letter.message.id, letter.kind, letter.reason) == (
        request.id,
        "cancelled",
        "correlation cancelled",
    )
    s = rt.statistics()
    assert (s.handled, s.mailboxes["stubborn"].handled, s.unrouted) == (0, 0, 0)
    assert rec.seen == []
    accounted(s)


class Weird(BaseException):
    """Not an Exception: a handler bug all the same."""


class RaisesBase(BaseAgent):
    def __init__(self, id: str, error: BaseException) -> None:
        super().__init__(id)
        self.error = error
        self.raised = False

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.raised = True
        raise self.error


async def test_a_base_exception_from_a_handler_is_a_failure() -> None:
    async with Runtime([RaisesBase("weird", Weird("odd")), Echo("echo")]) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="weird"))
        assert result.status == "partial"
        assert (await rt.ask(rt.message(Ping(n=3), recipient="echo"))).complete
    [letter] = rt.dead_letters
    assert (letter.kind, letter.error_type) == ("failed", "Weird")
    s = rt.statistics()
    assert s.in_flight == 0
    accounted(s)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stray_cancelled_error_from_a_handler_is_a_failure() -> None:
    async with Runtime([RaisesBase("stray", asyncio.CancelledError()), Echo("echo")]) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="stray"))
        assert result.status == "partial"
        assert (await rt.ask(rt.message(Ping(n=4), recipient="echo"))).complete
    [letter] = rt.dead_letters
    assert (letter.kind, letter.error_type) == ("failed", "CancelledError")


class CancelsItselfLater(BaseAgent):
    """Answers, leaving a native cancel of its own task behind (an asyncio idiom: a
    home-made timeout, ``call_later(t, task.cancel)``, never withdrawn; or a library's
    ``current_task().cancel()`` just before it returns): it lands after the handler."""

    def __init__(self, id: str, later: float | None) -> None:
        super().__init__(id)
        self.later = later

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        task = asyncio.current_task()
        assert task is not None
        if self.later is None:
            task.cancel()  # lands at the task's next await, the executor's
        else:
            asyncio.get_running_loop().call_later(self.later, task.cancel)
        return ctx.reply(Pong(n=payload.n))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("later", [None, 0.05])
async def test_a_native_cancel_landing_after_its_handler_returned_stops_nothing(
    later: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    """It landed on the executor's task, waiting for work or yielding: the runtime stopped,
    cancelled its caller and left queued work undone. It is nobody's delivery: withdrawn,
    logged, and the runtime goes on."""
    async with Runtime([CancelsItselfLater("c", later), Echo("echo")]) as rt:
        for n in range(3):
            assert (await rt.ask(rt.message(Ping(n=n), recipient="c"), timeout=5)).complete
            await anyio.sleep(0.1)  # idle: the cancel lands on a waiting executor
        assert (await rt.ask(rt.message(Ping(n=9), recipient="echo"), timeout=5)).complete
    assert rt.shutdown_report is not None
    assert rt.shutdown_report.drained
    assert not rt.dead_letters
    s = rt.statistics()
    assert (s.in_flight, s.dead_lettered) == (0, 0)
    accounted(s)
    assert "no cancel scope made" in caplog.text


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"drain_timeout": "5"}, "drain_timeout must be a number of seconds, 0 or more, not '5'"),
        ({"drain_timeout": float("nan")}, "drain_timeout must be a number of seconds"),
        ({"drain_timeout": -1}, "drain_timeout must be a number of seconds"),
        ({"dead_letter_capacity": -1}, "dead_letter_capacity must be a whole number, 0 or more"),
        ({"dead_letter_capacity": "10"}, "dead_letter_capacity must be a whole number"),
        ({"threads": "4"}, "threads must be a whole number, 1 or more, not '4'"),
        ({"processes": 0}, "processes must be a whole number, 1 or more, not 0"),
    ],
)
def test_a_runtime_argument_out_of_its_range_is_refused_when_it_is_made(
    given: dict[str, object], problem: str
) -> None:
    """A drain timeout of text or NaN was taken, and failed the close after it had cut the
    work in flight short; a negative capacity was a raw ``ValueError`` of a deque."""
    with pytest.raises(ConfigurationError) as refused:
        Runtime(**given)  # type: ignore[arg-type]
    assert str(refused.value).startswith(problem)


async def test_a_policy_raising_anything_denies() -> None:
    def broken(msg: Message, recipient: str) -> Decision:
        raise Weird("policy bug")

    async with Runtime([Echo("echo")], policies=[PolicyFn("broken", broken)]) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="echo"))
    assert result.status == "partial"
    [missing] = result.missing
    assert (missing.kind, missing.policy) == ("denied", "broken")
    assert missing.reason == "policy raised Weird: policy bug"


class Unprintable(Exception):
    """An error whose text cannot be had: its ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text")


class RaisesUnprintable(BaseAgent):
    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:  # in a thread
        raise Unprintable

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        raise Unprintable


UNPRINTABLE = "Unprintable: <its str() raised RuntimeError>"


@pytest.mark.parametrize(
    "options",
    [
        AgentOptions(),
        AgentOptions(retry=RetryPolicy(attempts=2, backoff=0)),
        AgentOptions(fallback="also"),
    ],
)
async def test_an_error_that_cannot_print_is_a_failure_all_the_same(
    options: AgentOptions,
) -> None:
    async with Runtime([Echo("echo")]) as rt:
        rt.add(RaisesUnprintable("odd"), options=options)
        rt.add(RaisesUnprintable("also"))
        for payload in (Ping(), Pong()):
            msg = rt.message(payload, recipient="odd")
            async with rt.events(msg.correlation_id) as stream:
                result = await rt.ask(msg)
                async for event in stream:
                    if event.kind == "failed":
                        assert event.reason == UNPRINTABLE
                    if event.kind == "settled":
                        break
            assert result.status == "partial"
        assert (await rt.ask(rt.message(Ping(n=3), recipient="echo"))).complete
    reasons = [d.reason for d in rt.dead_letters]
    if options.fallback:
        reasons = [r.split("; fallback 'also' failed: ")[1] for r in reasons]
    assert reasons == [UNPRINTABLE] * 2
    assert all(UNPRINTABLE in d.tracebacks[-1] for d in rt.dead_letters)
    accounted(rt.statistics())


class Silent(Exception):
    """An error raised with no message."""


class RaisesSilently(BaseAgent):
    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:  # in a thread
        raise Silent

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        raise NotImplementedError


async def test_an_error_with_no_message_is_named_by_its_type_alone() -> None:
    async with Runtime([RaisesSilently("quiet")]) as rt:
        for payload in (Ping(), Pong()):
            await rt.ask(rt.message(payload, recipient="quiet"))
    letters = list(rt.dead_letters)
    assert [d.reason for d in letters] == ["Silent", "NotImplementedError"]
    assert "in on_ping: Silent\n" in letters[0].tracebacks[-1]


async def test_a_policy_raising_an_error_that_cannot_print_denies() -> None:
    def broken(msg: Message, recipient: str) -> Decision:
        raise Unprintable

    async with Runtime([Echo("echo")], policies=[PolicyFn("broken", broken)]) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="echo"))
    [missing] = result.missing
    assert (missing.kind, missing.reason) == ("denied", f"policy raised {UNPRINTABLE}")


class Alarmist(BaseAgent):
    """Sets a 30-second alarm on each Ping."""

    def __init__(self, id: str) -> None:
        super().__init__(id)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        ctx.schedule(30, Pong())

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        pass


async def test_a_pending_timer_is_in_flight_and_recorded_at_close() -> None:
    async with Runtime([Alarmist("alarm")], drain_timeout=0.05) as rt:
        await rt.publish(rt.message(Ping(), recipient="alarm"))
        await wait_all_tasks_blocked()
        s = rt.statistics()
        assert (s.timers_pending, s.in_flight, s.delivered) == (1, 1, 2)
        accounted(s)
    s = rt.statistics()
    assert (s.timers_pending, s.in_flight) == (0, 0)
    accounted(s)
    assert rt.shutdown_report is not None
    assert rt.shutdown_report.cancelled_timers == 1
    [letter] = rt.dead_letters
    assert (letter.kind, letter.reason, letter.agent_id) == (
        "cancelled",
        "timer pending at shutdown",
        "alarm",
    )


class Lifecycle(Echo):
    def __init__(self, id: str, fail: bool = False) -> None:
        super().__init__(id)
        self.fail = fail
        self.events: list[str] = []

    async def on_start(self) -> None:
        self.events.append("start")
        if self.fail:
            raise RuntimeError(f"{self.id} cannot reach its database")

    async def on_stop(self) -> None:
        self.events.append("stop")


async def test_a_failing_on_start_leaves_nothing_running_and_re_raises() -> None:
    good, bad = Lifecycle("good"), Lifecycle("bad", fail=True)
    rt = Runtime([good, bad])
    with pytest.raises(RuntimeError, match="bad cannot reach its database"):
        async with rt:
            pytest.fail("the block must not run")
    assert rt.state is RuntimeState.CLOSED
    assert rt.statistics().executors == 0
    assert good.events == ["start", "stop"]
    with pytest.raises(RuntimeClosedError):
        await rt.publish(rt.message(Ping(), recipient="good"))
    # The task's cancel scopes are intact: another runtime runs in the same task.
    async with Runtime([Echo("echo")]) as again:
        assert (await again.ask(again.message(Ping(), recipient="echo"))).complete


async def test_states_and_wait_idle() -> None:
    rt = Runtime([Slow("slow", 0.05)])
    states = [rt.state]
    await rt.wait_idle()  # nothing in flight: returns at once
    async with rt:
        states.append(rt.state)
        for n in range(3):
            await rt.publish(rt.message(Ping(n=n), recipient="slow"))
        assert rt.statistics().in_flight == 3
        with anyio.fail_after(5):
            await rt.wait_idle()
        assert rt.statistics().in_flight == 0
    states.append(rt.state)
    assert states == [RuntimeState.NEW, RuntimeState.RUNNING, RuntimeState.CLOSED]


class Crossing(BaseAgent):
    """Handles a Ping by requesting a Ping of its peer, with no timeout of its own."""

    produces = (Ping, Pong)

    def __init__(self, id: str, peer: str) -> None:
        super().__init__(id)
        self.peer = peer
        self.timeouts = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        try:
            await ctx.request(self.peer, Ping(n=payload.n + 1))
        except TimeoutError:
            self.timeouts += 1
            raise
        return ctx.reply(Pong(n=payload.n))


async def test_crossing_requests_cannot_wedge() -> None:
    a, b = Crossing("a", "b"), Crossing("b", "a")
    async with Runtime([a, b], limits=Limits(request_timeout=0.2)) as rt:
        with anyio.fail_after(5):
            result = await rt.ask(rt.message(Ping(), recipient="a"))
            await rt.wait_idle()
    assert result.status == "partial"
    assert a.timeouts + b.timeouts >= 1
    accounted(rt.statistics())


@pytest.mark.parametrize("anyio_backend", ["trio"])  # asyncio re-raises SystemExit from its loop
async def test_system_exit_in_a_handler_stops_the_runtime_with_a_report() -> None:
    rt = Runtime([RaisesBase("quitter", SystemExit(3)), Slow("slow")])

    async def run() -> None:
        async with rt:
            await rt.publish(rt.message(Ping(), recipient="slow"))
            await rt.publish(rt.message(Ping(), recipient="quitter"))
            await anyio.sleep(10)

    with pytest.raises(BaseExceptionGroup) as caught:
        await run()
    assert caught.group_contains(SystemExit)
    assert rt.state is RuntimeState.CLOSED
    assert rt.shutdown_report is not None
    report = rt.shutdown_report
    assert (report.drained, report.cancelled_running) == (False, 2)
    assert report.by_agent == {"quitter": 1, "slow": 1}
    letters = {d.agent_id: d.reason for d in rt.dead_letters}
    assert letters == {
        "quitter": "the runtime stopped: SystemExit",
        "slow": "cancelled at shutdown",
    }
    accounted(rt.statistics())
    assert rt.statistics().in_flight == 0


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        pytest.param("asyncio", {"use_uvloop": True}, marks=requires("uvloop", extra="uvloop")),
        ("trio", {}),
    ],
)
def test_after_a_handlers_system_exit_a_publish_is_refused_not_discarded(
    backend: str, options: dict[str, object]
) -> None:
    """From the moment a handler raises ``SystemExit`` the runtime is stopping: on uvloop its
    task group hears of it a loop turn later, and a publish meanwhile is refused (the caller
    knows it was not taken), never taken and then discarded at shutdown."""
    quitter = RaisesBase("quitter", SystemExit(3))
    rt = Runtime([quitter, Recorder("rec")])
    taken_after: list[int] = []
    refused: list[str] = []

    async def run() -> None:
        async with rt:
            await rt.publish(rt.message(Ping(), recipient="quitter"))
            for n in range(100):
                raised = quitter.raised
                try:
                    rt.publish_nowait(rt.message(Ping(n=n), recipient="rec"))
                except RuntimeClosedError as error:
                    refused.append(str(error))
                    break
                if raised:
                    taken_after.append(n)
                await checkpoint()
            await anyio.sleep(10)

    # asyncio's loops re-raise it from the loop, trio's task group inside a group.
    with warnings.catch_warnings():
        # A loop of asyncio's stops at once on SystemExit: a task it had not begun (an
        # executor started for the last publish) is dropped unawaited, the loop's doing.
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        with pytest.raises((SystemExit, BaseExceptionGroup)) as caught:
            anyio.run(run, backend=backend, backend_options=options)
        stopped_by = exiting(caught.value)
        del caught
        gc.collect()
    assert isinstance(stopped_by, SystemExit)
    assert taken_after == []
    assert refused in (
        [],
        ["cannot publish: the runtime is stopping (a handler raised SystemExit)"],
    )
    assert rt.state is RuntimeState.CLOSED
    accounted(rt.statistics())


class ExitsInItsTaskGroup(BaseAgent):
    """Starts a task that calls ``sys.exit``: on the event loop's thread, as the handler is."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        async def leave() -> None:
            await checkpoint()
            raise SystemExit(3)

        async with anyio.create_task_group() as tg:
            tg.start_soon(leave)


@pytest.mark.parametrize("anyio_backend", ["trio"])  # asyncio re-raises SystemExit from its loop
async def test_system_exit_in_a_task_the_handler_started_stops_the_runtime() -> None:
    # The handler's task group hands it the SystemExit inside a group: it is still an exit.
    rt = Runtime([ExitsInItsTaskGroup("quitter"), Slow("slow")])

    async def run() -> None:
        async with rt:
            await rt.publish(rt.message(Ping(), recipient="slow"))
            await rt.publish(rt.message(Ping(), recipient="quitter"))
            await anyio.sleep(10)

    with pytest.raises(BaseExceptionGroup) as caught:
        await run()
    assert caught.group_contains(SystemExit, depth=None)
    assert rt.state is RuntimeState.CLOSED
    letters = {d.agent_id: (d.kind, d.reason) for d in rt.dead_letters}
    assert letters == {
        "quitter": ("cancelled", "the runtime stopped: SystemExit"),
        "slow": ("cancelled", "cancelled at shutdown"),
    }
    accounted(rt.statistics())


def test_keyboard_interrupt_in_a_handler_stops_the_runtime_on_asyncio() -> None:
    # asyncio lets KeyboardInterrupt out of a task's step and stops its loop, so the runtime
    # closes while asyncio.run cancels what is left: the report must be as complete as on trio.
    rt = Runtime([RaisesBase("quitter", KeyboardInterrupt()), Slow("slow")])

    async def run() -> None:
        async with rt:
            await rt.publish(rt.message(Ping(), recipient="slow"))
            await rt.publish(rt.message(Ping(), recipient="quitter"))
            await anyio.sleep(10)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run())
    assert rt.state is RuntimeState.CLOSED
    report = rt.shutdown_report
    assert report is not None
    assert (report.drained, report.cancelled_running) == (False, 2)
    assert report.by_agent == {"quitter": 1, "slow": 1}
    letters = {d.agent_id: (d.kind, d.reason) for d in rt.dead_letters}
    assert letters == {
        "quitter": ("cancelled", "the runtime stopped: KeyboardInterrupt"),
        "slow": ("cancelled", "cancelled at shutdown"),
    }
    stats = rt.statistics()
    accounted(stats)
    assert (stats.delivered, stats.dead_lettered, stats.in_flight) == (2, 2, 0)


class Unanswering(BaseAgent):
    """Takes a Ping and answers nothing while the tests below wait."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        await anyio.sleep(0.05)


class Poller(BaseAgent):
    """Asks ``silent`` again and again with no time to wait, counting how often another task
    ran meanwhile."""

    produces = (Ping,)

    def __init__(self, id: str, times: int) -> None:
        super().__init__(id)
        self.times = times
        self.ticks = 0
        self.ticks_seen: list[int] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        before = self.ticks
        for i in range(self.times):
            with pytest.raises(TimeoutError):
                await ctx.request("silent", Ping(n=i), timeout=0)
        self.ticks_seen.append(self.ticks - before)


ROOMY = AgentOptions(max_concurrency=500, mailbox_size=5000)


async def test_a_request_with_no_time_left_still_lets_others_run() -> None:
    """A wait with no time left is a checkpoint all the same: a handler asking again and again
    with ``timeout=0`` lets the loop run other tasks (checked to fail, a ticker never ran, when
    a wait past its deadline did not wait at all)."""
    poller = Poller("poller", 200)
    async with Runtime([poller]) as rt:
        rt.add(Unanswering("silent"), options=ROOMY)

        async def tick() -> None:
            while True:
                poller.ticks += 1
                await checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            await rt.publish(rt.message(Ping(n=0), recipient="poller"))
            with anyio.fail_after(10):
                await rt.wait_idle()
            tg.cancel_scope.cancel()
    assert poller.ticks_seen[0] > 0, poller.ticks_seen


async def test_an_ask_past_its_deadline_is_a_checkpoint_for_a_cancelled_caller() -> None:
    """Waiting for the reply is an ask's checkpoint, with no time left too: a caller
    cancelled before is cancelled there, not answered."""
    async with Runtime() as rt:
        rt.add(Unanswering("silent"), options=ROOMY)
        outcome = "returned"
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await rt.ask(rt.message(Ping(n=1), recipient="silent"), timeout=0, wait=False)
            except TimeoutError:
                outcome = "timed out"
            except anyio.get_cancelled_exc_class():
                outcome = "cancelled"
                raise
        assert outcome == "cancelled", outcome
