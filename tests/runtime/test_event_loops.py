"""The runtime on other event loops than asyncio's own (issue 40): uvloop, and a loop whose
time is virtual. On uvloop, the loop's clock is libuv's, in whole milliseconds, read once a
loop turn; the runtime's clock reads the monotonic clock instead, so stamps and handler
durations keep their resolution."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from genie import AgentOptions, BaseAgent, Context, Message, Observer, Runtime, handler
from genie._base.clock import Clock
from genie._cli.loop import run_on
from genie._cli.main import main
from genie._errors import ConfigurationError
from tests.conftest import Ping, Pong, requires

ROOT = Path(__file__).resolve().parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"
UVLOOP = pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
ROOMY = AgentOptions(max_concurrency=500, mailbox_size=1000)


class Relay(BaseAgent):
    """Passes a Ping on to ``next``; the last replies to the sender of the first."""

    produces = (Ping, Pong)

    def __init__(self, id: str, next: str | None) -> None:
        super().__init__(id)
        self.next = next

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        if self.next is None:
            return ctx.emit(Pong(n=payload.n), recipient="caller")
        return ctx.emit(Ping(n=payload.n + 1), recipient=self.next)


class Watch(Observer):
    def __init__(self) -> None:
        self.durations: list[float] = []
        self.published_messages: list[Message] = []

    def published(self, msg: Message, recipients: int) -> None:
        self.published_messages.append(msg)

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        self.durations.append(duration)


async def _chain_stamps(length: int) -> tuple[list[float], list[float]]:
    """The stamps of the messages of a chain of ``length`` hops, in order, and the handler
    durations, on the running loop."""
    relays = [Relay(f"r{i}", f"r{i + 1}" if i < length - 1 else None) for i in range(length)]
    watch = Watch()
    async with Runtime(relays) as rt:
        rt.add_observer(watch)
        result = await rt.ask(rt.message(Ping(n=0), sender="caller", recipient="r0"), timeout=10)
    assert result.replies, result
    return [m.created_at.timestamp() for m in watch.published_messages], watch.durations


@requires("uvloop", extra="uvloop")
@UVLOOP
async def test_on_uvloop_stamps_rise_strictly_at_sub_millisecond_spacing() -> None:
    loop = asyncio.get_running_loop()
    assert type(loop).__module__ == "uvloop"
    stamps, durations = await _chain_stamps(30)
    assert len(stamps) == 31  # the request and 30 hops (the hop limit is 32)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(g > 0 for g in gaps), gaps  # strictly increasing: no two in one millisecond
    assert min(gaps) < 1e-3  # hops are faster than libuv's millisecond
    # Handler durations are not whole milliseconds (libuv's clock would make most of them 0).
    assert all(d > 0 for d in durations), durations
    assert any(d * 1e3 % 1 > 1e-6 for d in durations)


@requires("uvloop", extra="uvloop")
@UVLOOP
async def test_on_uvloop_the_clock_is_the_monotonic_clock() -> None:
    clock = Clock()
    clock.start()
    assert clock.monotonic is time.monotonic
    # And deadlines still fire: anyio's timers read libuv's clock, which the runtime's is a
    # finer reading of.
    with anyio.move_on_after(0.01) as scope:
        await anyio.sleep(1)
    assert scope.cancelled_caught


class VirtualLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time is not real time."""

    def time(self) -> float:
        return 1_000_000.0 + super().time()


def test_a_loop_of_unknown_time_keeps_its_own_clock() -> None:
    async def clock_of_loop() -> tuple[object, float]:
        clock = Clock()
        clock.start()
        return clock.monotonic, clock.monotonic()

    with asyncio.Runner(loop_factory=VirtualLoop) as runner:
        monotonic, now = runner.run(clock_of_loop())
    assert monotonic is not time.monotonic
    assert now >= 1_000_000.0


@requires("uvloop", extra="uvloop")
def test_genie_run_on_uvloop_runs_the_main_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(FINANCE), "--loop", "uvloop"]) == 0
    assert capsys.readouterr().out.startswith("Genie Financial Report\n")


def test_an_unknown_loop_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", str(FINANCE), "--loop", "tokio"])
    assert done.value.code == 2
    assert "invalid choice: 'tokio'" in capsys.readouterr().err


def test_uvloop_asked_for_and_not_installed_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'genie-bus\[uvloop\]'"):
        run_on("uvloop", anyio.sleep, 0)
    assert main(["run", str(FINANCE), "--loop", "uvloop"]) == 2
    err = capsys.readouterr().err
    assert "uvloop is not installed" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "serve"])
def test_run_and_serve_take_a_loop(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert "--loop {asyncio,uvloop}" in capsys.readouterr().out


async def test_a_thread_of_the_application_builds_a_message_on_any_loop() -> None:
    """A producer thread of the application builds its message there and publishes it on the
    loop (``anyio.from_thread.run``): the stamp reads the runtime's clock, which on trio is the
    run's clock object, not ``trio.current_time`` (which works on the loop's thread alone)."""
    async with Runtime([Relay("last", None)]) as rt:

        def produce() -> Message:
            msg = rt.message(Ping(n=1), recipient="last")
            anyio.from_thread.run(rt.publish, msg)
            return msg

        before = rt.clock.timestamp()
        msg = await anyio.to_thread.run_sync(produce)
        assert before <= msg.created_at.timestamp() <= rt.clock.timestamp()
        with anyio.fail_after(5):
            await rt.wait_idle()
    assert rt.statistics().handled == 1


class Silent(BaseAgent):
    """Takes a Ping and answers nothing for as long as a test waits (``ROOMY``: each Ping in
    a handler of its own, none queued behind another)."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        await anyio.sleep(0.2)


class Asker(BaseAgent):
    """Asks ``silent`` with a short timeout, again and again, and keeps how much of the
    runtime's clock each wait took."""

    produces = (Ping,)

    def __init__(self, id: str, timeout: float, times: int) -> None:
        super().__init__(id)
        self.timeout = timeout
        self.times = times
        self.waited: list[float] = []
        self.clock: Callable[[], float] = time.monotonic  # the runtime's, once it runs

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        for i in range(self.times):
            time.sleep(0.001)  # noqa: ASYNC251 - the loop held: the next timer falls due in it
            started = self.clock()
            with pytest.raises(TimeoutError):
                await ctx.request("silent", Ping(n=i), timeout=self.timeout)
            self.waited.append(self.clock() - started)


async def _gathers_never_end_early() -> None:
    early: list[float] = []
    async with Runtime() as rt:
        rt.add(Silent("silent"), options=ROOMY)
        for i in range(200):
            msg = rt.message(Ping(n=i), recipient="silent")
            await anyio.lowlevel.checkpoint()
            time.sleep(0.001)  # noqa: ASYNC251 - the loop held: the next timer falls due in it
            gather = rt.gather(msg.correlation_id, count=1, senders=["nobody"], timeout=0.0034)
            await rt.publish(msg)
            result = await gather.wait()
            ended = rt.clock.monotonic()
            rt.cancel(msg.correlation_id)
            assert result.status == "timed_out"
            if ended < gather.deadline:
                early.append(gather.deadline - ended)
    assert not early, (len(early), max(early))


async def _requests_never_end_early() -> None:
    asker = Asker("asker", 0.0034, 100)
    async with Runtime([asker]) as rt:
        rt.add(Silent("silent"), options=ROOMY)
        asker.clock = rt.clock.monotonic
        await rt.publish(rt.message(Ping(n=0), recipient="asker"))
        with anyio.fail_after(30):
            await rt.wait_idle()
    assert len(asker.waited) == 100
    early = [w for w in asker.waited if w < asker.timeout]
    assert not early, (len(early), min(early))


async def test_a_timed_wait_never_ends_before_its_deadline() -> None:
    """A gather's deadline and a ``ctx.request``'s timeout end their waits on the runtime's
    clock, never before it, whatever the loop's timers say (see the uvloop test)."""
    await _gathers_never_end_early()
    await _requests_never_end_early()


@requires("uvloop", extra="uvloop")
@UVLOOP
async def test_on_uvloop_a_timed_wait_never_ends_before_its_deadline() -> None:
    """uvloop rounds a timer to whole milliseconds of libuv's clock, which is read once a loop
    turn: a timer can fire up to a millisecond before the runtime's (monotonic) clock reaches
    the deadline it was set for. The wait goes on for what is left (checked to fail with one
    wait per deadline: 9 to 19 of 200 gathers ended up to 0.96 ms early)."""
    await _gathers_never_end_early()
    await _requests_never_end_early()


class Sleeper(BaseAgent):
    """Sleeps and schedules a timer a few milliseconds ahead for each Ping, and keeps how much
    of the runtime's clock each took: ``ctx.sleep`` in the handler, the timer from its setting
    to its message's handling."""

    produces = (Pong,)

    def __init__(self, delay: float) -> None:
        super().__init__("sleeper")
        self.delay = delay
        self.clock: Callable[[], float] = time.monotonic  # the runtime's, once it runs
        self.set_at: dict[int, float] = {}
        self.slept: list[float] = []
        self.timed: list[float] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        time.sleep(0.001)  # noqa: ASYNC251 - the loop held: libuv's clock falls behind
        started = self.clock()
        await ctx.sleep(self.delay)
        self.slept.append(self.clock() - started)
        time.sleep(0.001)  # noqa: ASYNC251
        self.set_at[payload.n] = self.clock()
        ctx.schedule(self.delay, Pong(n=payload.n))

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        self.timed.append(self.clock() - self.set_at[payload.n])


async def _sleeps_and_timers_never_end_early() -> None:
    sleeper = Sleeper(0.0034)
    async with Runtime([sleeper]) as rt:
        sleeper.clock = rt.clock.monotonic
        for i in range(100):
            await rt.publish(rt.message(Ping(n=i), recipient="sleeper"))
            with anyio.fail_after(5):
                await rt.wait_idle()
    assert len(sleeper.slept) == len(sleeper.timed) == 100
    early = [w for w in (*sleeper.slept, *sleeper.timed) if w < sleeper.delay]
    assert not early, (len(early), min(early))


async def test_a_sleep_and_a_timer_never_end_before_their_time() -> None:
    await _sleeps_and_timers_never_end_early()


@requires("uvloop", extra="uvloop")
@UVLOOP
async def test_on_uvloop_a_sleep_and_a_timer_never_end_before_their_time() -> None:
    """As a timed wait (above): ``ctx.sleep`` and ``ctx.schedule`` sleep on the runtime's clock
    (checked to fail with one loop timer each: 86 of 100 timers fired early)."""
    await _sleeps_and_timers_never_end_early()
