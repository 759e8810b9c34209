"""Adversarial fan-in: cancellation at each checkpoint of publish, ask and a gather's wait,
replies after their gather ended, predicates that raise or reenter, a full mailbox when the
runtime stops, handlers that outlive the drain; the books balance after each step."""

from __future__ import annotations

import contextlib
import random
import threading

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Decision,
    InvalidArgumentError,
    Message,
    Runtime,
    RuntimeClosedError,
    RuntimeStatistics,
    WouldBlockError,
    handler,
)

from ..conftest import Echo, Ping, PolicyFn, Pong, Recorder


def balanced(s: RuntimeStatistics) -> None:
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight, s


def nothing_left(rt: Runtime) -> None:
    s = rt.statistics()
    balanced(s)
    assert s.in_flight == 0, s
    assert s.correlations.gathers_pending == 0, s.correlations
    assert s.correlations.correlations_active == 0, s.correlations


class SlowEcho(Echo):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await anyio.sleep(0.05)
        return ctx.reply(Pong(n=payload.n))


async def test_a_gather_whose_caller_is_cancelled_ends() -> None:
    async with Runtime([SlowEcho("echo")]) as rt:
        msg = rt.message(Ping(n=1), recipient="echo")
        gather = rt.gather(msg.correlation_id, senders=["echo"])
        await rt.publish(msg)
        with anyio.move_on_after(0.01):
            await gather.wait()
        await rt.wait_idle()
        nothing_left(rt)


async def test_a_gather_left_before_its_wait_ends_with_its_block() -> None:
    """The caller's publish is cancelled while it waits for room (a client gone, a timeout):
    ``wait()`` is never reached, and the gather must not hold its correlation for good."""
    gate = anyio.Event()
    async with Runtime() as rt:
        rt.add(Recorder("slow", gate), options=AgentOptions(mailbox_size=1))
        for n in range(2):  # one running, one queued: the next publish waits for room
            await rt.publish(rt.message(Ping(n=n), recipient="slow"))
        msg = rt.message(Ping(n=9), recipient="slow")
        with rt.gather(msg.correlation_id, senders=["slow"], timeout=5) as gather:
            with anyio.move_on_after(0.01):
                await rt.publish(msg)
                await gather.wait()
        result = await gather.wait()  # ended by the block: its result at once
        assert result.status == "partial"
        assert [(m.kind, m.reason) for m in result.missing] == [
            ("no_reply", "no reply"),
            ("cancelled", "the caller left without waiting"),
        ]
        gate.set()
        await rt.wait_idle()
        nothing_left(rt)


async def test_a_gather_waited_in_its_block_keeps_its_result() -> None:
    async with Runtime([Echo("echo")]) as rt:
        msg = rt.message(Ping(n=1), recipient="echo")
        with rt.gather(msg.correlation_id, senders=["echo"], timeout=5) as gather:
            await rt.publish(msg)
            result = await gather.wait()
        assert result.complete
        assert (await gather.wait()) is result
        nothing_left(rt)


async def test_a_refused_gather_leaves_no_correlation_behind() -> None:
    async with Runtime([Echo("echo")]) as rt:
        with pytest.raises(InvalidArgumentError):
            rt.gather("c1", count=0)
        nothing_left(rt)


class GatedEcho(Echo):
    def __init__(self, id: str, gate: anyio.Event) -> None:
        super().__init__(id)
        self.gate = gate

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await self.gate.wait()
        return ctx.reply(Pong(n=payload.n))


async def cancelled_after(scope: anyio.CancelScope, checkpoints: int) -> None:
    """Cancel ``scope`` after this many checkpoints of the loop: each step of the caller
    under it is reached in turn as ``checkpoints`` grows."""
    for _ in range(checkpoints):
        await anyio.lowlevel.checkpoint()
    scope.cancel()


@pytest.mark.parametrize("checkpoints", range(8))
@pytest.mark.parametrize("call", ["ask", "gather", "publish"])
async def test_a_caller_cancelled_at_each_checkpoint_leaves_nothing(
    call: str, checkpoints: int
) -> None:
    gate = anyio.Event()
    rt = Runtime()
    rt.add(GatedEcho("echo", gate), options=AgentOptions(mailbox_size=1))
    async with rt:
        # One running, one queued: the mailbox is full, and the next caller waits for room.
        for n in range(2):
            await rt.publish(rt.message(Ping(n=n), recipient="echo"))
        await anyio.sleep(0.01)
        msg = rt.message(Ping(n=9), recipient="echo")
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                tg.start_soon(cancelled_after, scope, checkpoints)
                if checkpoints > 3:
                    gate.set()
                if call == "ask":
                    await rt.ask(msg)
                elif call == "gather":
                    gather = rt.gather(msg.correlation_id, senders=["echo"])
                    try:
                        await rt.publish(msg)
                        await gather.wait()
                    finally:
                        gather.cancel()
                else:
                    await rt.publish(msg)
                await anyio.sleep_forever()
        gate.set()
        await rt.wait_idle()
        nothing_left(rt)


class Never(BaseAgent):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        await anyio.sleep_forever()


async def test_a_full_mailbox_with_waiting_publishers_when_the_runtime_stops() -> None:
    rt = Runtime()
    rt.add(Never("never"), options=AgentOptions(mailbox_size=1))
    rt.drain_timeout = 0.1
    outcomes: list[str] = []

    async def publisher(n: int) -> None:
        try:
            await rt.publish(rt.message(Ping(n=n), recipient="never"))
            outcomes.append("in")
        except RuntimeClosedError:
            outcomes.append("closed")

    async with anyio.create_task_group() as tg, rt:
        for n in range(5):
            tg.start_soon(publisher, n)
        await anyio.sleep(0.05)
        assert rt.statistics().mailboxes["never"].waiting_publishers == 3
        balanced(rt.statistics())
    s = rt.statistics()
    balanced(s)
    assert s.in_flight == 0
    assert sorted(outcomes) == ["closed"] * 3 + ["in"] * 2
    report = rt.shutdown_report
    assert report is not None
    assert (report.cancelled_running, report.discarded_queued) == (1, 1)


class Twice(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        return [ctx.reply(Pong(n=1)), ctx.reply(Pong(n=2))]


async def test_a_predicate_that_opens_another_gather_and_raises() -> None:
    async with Runtime([Twice("t")]) as rt:
        msg = rt.message(Ping(n=1), recipient="t")
        inner: list[object] = []

        def where(m: Message) -> bool:
            inner.append(rt.gather(msg.correlation_id, count=1))
            raise ValueError("bad predicate")

        gather = rt.gather(msg.correlation_id, where=where)
        await rt.publish(msg)
        with pytest.raises(ValueError, match="bad predicate"):
            await gather.wait()
        for g in inner:
            with anyio.fail_after(1):
                await g.wait()  # type: ignore[attr-defined]
        await rt.wait_idle()
        nothing_left(rt)


class Fan(Echo):
    """Replies, and tells ``also`` too."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        also = [ctx.emit(Ping(n=payload.n + k), recipient="also") for k in (1, 2)]
        return [ctx.reply(Pong(n=payload.n)), *also]


async def test_a_predicate_that_cancels_its_own_request_while_it_is_routed() -> None:
    gate = anyio.Event()
    async with Runtime([Fan("fan"), GatedEcho("also", gate), Recorder("late")]) as rt:
        msg = rt.message(Ping(n=1), recipient="fan")
        rt.subscribe("late", "pong")

        def where(m: Message) -> bool:
            rt.cancel(msg.correlation_id)
            return False

        gather = rt.gather(msg.correlation_id, where=where, timeout=5)
        await rt.publish(msg)
        result = await gather.wait()
        assert result.status == "partial", result
        gate.set()
        await rt.wait_idle()
        nothing_left(rt)


class Blocking(BaseAgent):
    def __init__(self, id: str, release: threading.Event) -> None:
        super().__init__(id)
        self.release = release

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.release.wait(10)


async def test_a_thread_that_never_returns_does_not_hold_the_stop() -> None:
    release = threading.Event()
    rt = Runtime([Blocking("b", release)], drain_timeout=0.05)
    try:
        with anyio.fail_after(5):
            async with rt:
                await rt.publish(rt.message(Ping(n=1), recipient="b"))
                await rt.publish(rt.message(Ping(n=2), recipient="b"))
                await anyio.sleep(0.01)
        s = rt.statistics()
        balanced(s)
        assert s.in_flight == 0
        report = rt.shutdown_report
        assert report is not None
        assert (report.cancelled_running, report.discarded_queued) == (1, 1)
    finally:
        release.set()


class Jittery(Echo):
    """Replies after a random few checkpoints, or fails, as its seed says."""

    def __init__(self, id: str, rng: random.Random) -> None:
        super().__init__(id)
        self.rng = rng

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        for _ in range(self.rng.randrange(4)):
            await anyio.lowlevel.checkpoint()
        if self.rng.random() < 0.1:
            raise RuntimeError("jitter")
        return ctx.reply(Pong(n=payload.n))


@pytest.mark.parametrize("seed", range(6))
async def test_random_interleavings_keep_the_books_after_every_step(seed: int) -> None:
    """Random steps (publishes cancelled while they wait for room, asks and gathers cancelled
    after a random number of checkpoints, cancelled requests, denied and shed deliveries),
    each followed by a check of the identity; at the end nothing is left of any of them."""
    rng = random.Random(seed)
    deny = PolicyFn(
        "deny-some",
        lambda m, r: Decision.deny("deny-some", "x") if m.id[-1] in "03" else Decision.ALLOW,
    )
    rt = Runtime(policies=[deny])
    rt.add(Jittery("a", rng), options=AgentOptions(mailbox_size=2))
    rt.add(Jittery("b", rng), options=AgentOptions(mailbox_size=1, max_concurrency=2))
    rt.add(Fan("fan"), options=AgentOptions(mailbox_size=1))
    rt.add(Jittery("also", rng), options=AgentOptions(mailbox_size=1, overflow="shed"))
    targets = ["a", "b", "fan", "also"]
    asked: list[str] = []

    async def step(n: int) -> None:
        msg = rt.message(Ping(n=n), recipient=rng.choice(targets))
        asked.append(msg.correlation_id)
        kind = rng.randrange(6)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancelled_after, scope, rng.randrange(8))
                if kind == 0:
                    await rt.publish(msg)
                elif kind == 1:
                    with contextlib.suppress(WouldBlockError):
                        rt.publish_nowait(msg)
                elif kind == 2:
                    await rt.ask(msg, timeout=rng.choice((None, 0.001, 1.0)))
                elif kind == 3:
                    gather = rt.gather(msg.correlation_id, count=rng.randrange(1, 3), timeout=1)
                    try:
                        await rt.publish(msg)
                        await gather.wait()
                    finally:
                        gather.cancel()
                elif kind == 4:
                    rt.cancel(rng.choice(asked))
                else:
                    await rt.publish(msg)
                    rt.cancel(msg.correlation_id)
                await anyio.sleep_forever()

    async with rt:
        async with anyio.create_task_group() as steps:
            for n in range(200):
                steps.start_soon(step, n)  # a few at once, interleaved by the checkpoints
                for _ in range(rng.randrange(4)):
                    await anyio.lowlevel.checkpoint()
                    balanced(rt.statistics())
        with anyio.fail_after(10):
            await rt.wait_idle()
        nothing_left(rt)
    s = rt.statistics()
    balanced(s)
    assert s.in_flight == 0
    # Every way a delivery ends was reached.
    assert min(s.denied, s.collected, s.shed, s.handled) > 0, s
    assert set(rt.dead_letters.counts) >= {"failed", "cancelled", "shed", "unrouted"}
