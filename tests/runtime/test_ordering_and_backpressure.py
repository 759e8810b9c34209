"""Ordering per (sender, recipient), bounded mailboxes and backpressure, cycles without deadlock."""

from __future__ import annotations

import itertools

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Limits,
    Message,
    Runtime,
    WouldBlockError,
    handler,
)

from ..conftest import Ping, Recorder


async def drain(rt: Runtime) -> None:
    with anyio.fail_after(10):
        await rt.wait_idle()


async def test_fifo_per_sender_and_one_at_a_time() -> None:
    # An open gate still yields (a checkpoint) inside every handler, so a second handler
    # could start meanwhile if the runtime let it: the pair agent shows that it would be seen.
    gate = anyio.Event()
    gate.set()
    rec, pair = Recorder("rec", gate), Recorder("pair", gate)
    async with Runtime([rec]) as rt:
        rt.add(pair, options=AgentOptions(max_concurrency=2))

        async def send(tag: str) -> None:
            for n in range(500):
                for to in ("rec", "pair"):
                    msg = rt.message(Ping(n=n, sender_tag=tag), sender=tag, recipient=to)
                    await rt.publish(msg)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "a")
            tg.start_soon(send, "b")
        await drain(rt)
    for tag in ("a", "b"):
        assert [p.n for p in rec.seen if p.sender_tag == tag] == list(range(500))
    assert rec.max_active == 1
    assert pair.max_active == 2


async def test_max_concurrency_bounds_parallel_handlers() -> None:
    gate = anyio.Event()
    rec = Recorder("rec", gate)
    async with Runtime() as rt:
        rt.add(rec, options=AgentOptions(max_concurrency=3))
        for n in range(10):
            await rt.publish(rt.message(Ping(n=n), recipient="rec"))
        await wait_all_tasks_blocked()
        assert rec.active == 3
        assert rt.statistics().mailboxes["rec"].active == 3
        gate.set()
        await drain(rt)
    assert sorted(p.n for p in rec.seen) == list(range(10))
    assert rec.max_active == 3


async def test_full_mailbox_makes_outside_publishers_wait() -> None:
    gate = anyio.Event()
    rec = Recorder("rec", gate)
    async with Runtime() as rt:
        rt.add(rec, options=AgentOptions(mailbox_size=2))
        await rt.publish(rt.message(Ping(n=0), recipient="rec"))  # taken by the handler
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(n=1), recipient="rec"))
        await rt.publish(rt.message(Ping(n=2), recipient="rec"))  # mailbox now full
        with pytest.raises(WouldBlockError, match=r"mailbox of 'rec' is full \(capacity \d+\)"):
            rt.publish_nowait(rt.message(Ping(n=99), recipient="rec"))
        done: list[int] = []

        async def late(n: int) -> None:
            await rt.publish(rt.message(Ping(n=n), recipient="rec"))
            done.append(n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(late, 3)
            await wait_all_tasks_blocked()
            tg.start_soon(late, 4)
            await wait_all_tasks_blocked()
            stats = rt.statistics().mailboxes["rec"]
            assert (stats.depth, stats.waiting_publishers) == (2, 2)
            assert done == []
            gate.set()
        await drain(rt)
    assert done == [3, 4]  # waiting publishers go in arrival order
    assert [p.n for p in rec.seen] == [0, 1, 2, 3, 4]
    assert rt.statistics().delivered == 5  # the refused publish_nowait delivered nothing


async def test_an_ask_that_may_not_wait_is_refused_at_once_and_sends_nothing() -> None:
    """``rt.ask(wait=False)`` into a full mailbox raises WouldBlockError naming the agent, as
    ``publish_nowait`` does: nothing published, no dead letter, no gather left waiting."""
    gate = anyio.Event()
    rec = Recorder("rec", gate)
    async with Runtime() as rt:
        rt.add(rec, options=AgentOptions(mailbox_size=1))
        await rt.publish(rt.message(Ping(n=0), recipient="rec"))  # taken by the handler
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(n=1), recipient="rec"))  # mailbox now full
        before = rt.statistics()
        with anyio.fail_after(1), pytest.raises(WouldBlockError) as refused:
            await rt.ask(rt.message(Ping(n=99), recipient="rec"), wait=False, timeout=5)
        after = rt.statistics()
        gate.set()
        await drain(rt)
    assert refused.value.agent_id == "rec"
    assert (after.published, after.dead_lettered) == (before.published, before.dead_lettered)
    assert after.correlations.gathers_pending == 0
    assert [p.n for p in rec.seen] == [0, 1]


class Bouncer(BaseAgent):
    """Sends each Ping on to ``peer`` (twice) until n reaches ``until``."""

    produces = (Ping,)

    def __init__(self, id: str, peer: str, until: int) -> None:
        super().__init__(id)
        self.peer = peer
        self.until = until

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        if payload.n >= self.until:
            return []
        # Two messages out per message in: the cycle fills both mailboxes quickly.
        return [
            ctx.emit(Ping(n=payload.n + 1, sender_tag="x"), recipient=self.peer),
            ctx.emit(Ping(n=self.until, sender_tag="stop"), recipient=self.peer),
        ]


async def test_cycle_with_full_mailboxes_does_not_deadlock() -> None:
    tiny = AgentOptions(mailbox_size=1)
    async with Runtime(limits=Limits(max_hops=1000, correlation_budget=100_000)) as rt:
        rt.add(Bouncer("a", "b", 200), options=tiny)
        rt.add(Bouncer("b", "a", 200), options=tiny)
        with anyio.fail_after(10):
            for _ in range(20):
                await rt.publish(rt.message(Ping(n=0), sender="caller", recipient="a"))
            await drain(rt)
    stats = rt.statistics().mailboxes
    assert stats["a"].overdrafts + stats["b"].overdrafts > 0
    s = rt.statistics()
    assert s.delivered == s.handled > 20 * 200
    assert s.dead_lettered == s.denied == s.shed == 0


async def test_shed_overflow_policy_records_what_it_drops() -> None:
    gate = anyio.Event()
    sink = Recorder("sink", gate)

    class Spray(BaseAgent):
        produces = (Ping,)

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
            return [ctx.emit(Ping(n=i), recipient="sink") for i in range(5)]

    async with Runtime() as rt:
        rt.add(Spray("spray"))
        rt.add(sink, options=AgentOptions(mailbox_size=2, overflow="shed"))
        await rt.publish(rt.message(Ping(), recipient="spray"))
        await wait_all_tasks_blocked()
        gate.set()
        await drain(rt)
    s = rt.statistics()
    assert s.shed == 3
    assert [p.n for p in sink.seen] == [0, 1]
    assert sorted(d.message.payload.n for d in rt.dead_letters if d.kind == "shed") == [2, 3, 4]  # type: ignore[attr-defined]
    assert s.delivered == s.handled + s.shed


async def test_idle_mailboxes_share_nothing_once_messages_and_publishers_arrive() -> None:
    """Idle mailboxes hold no queue of their own (memory); the first message or waiting
    publisher gives each its own, so one agent's work never shows up in another's."""
    gate = anyio.Event()
    one = AgentOptions(mailbox_size=1)
    a, b, c = Recorder("a", gate), Recorder("b", gate), Recorder("c")
    async with Runtime() as rt:
        for agent in (a, b):
            rt.add(agent, options=one)
        rt.add(c)
        async with anyio.create_task_group() as tg:
            for n in range(3):  # a: one running, one queued, one publisher waiting
                tg.start_soon(rt.publish, rt.message(Ping(n=n), recipient="a"))
                await wait_all_tasks_blocked()  # in this order (trio starts tasks in any)
            stats = rt.statistics().mailboxes
            assert (stats["a"].depth, stats["a"].waiting_publishers) == (1, 1)
            assert (stats["b"].depth, stats["b"].waiting_publishers) == (0, 0)
            await rt.publish(rt.message(Ping(n=9), recipient="b"))
            await rt.publish(rt.message(Ping(n=7), recipient="c"))
            gate.set()
        await drain(rt)
    assert [p.n for p in a.seen] == [0, 1, 2]
    assert [p.n for p in b.seen] == [9]
    assert [p.n for p in c.seen] == [7]


class Counted(BaseAgent):
    """Records every Ping; ``done`` is set at the ``expected``-th."""

    def __init__(self, id: str, expected: int) -> None:
        super().__init__(id)
        self.seen: list[int] = []
        self.expected = expected
        self.done = anyio.Event()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.seen.append(payload.n)
        if len(self.seen) == self.expected:
            self.done.set()


async def test_a_backlog_drains_while_other_handlers_block() -> None:
    """A handler done with a backlog puts its mailbox back on the ready queue without waking
    anyone (the executor that ran it takes from that queue next). So the backlog must still
    drain, in order and past the executors' yields (every 64 handlers), while other agents'
    handlers block every executor the runtime had before."""
    gate = anyio.Event()
    blocked = [Recorder(f"blocked{i}", gate) for i in range(6)]
    busy = Counted("busy", 300)
    async with Runtime([*blocked, busy]) as rt:
        for agent in blocked:
            await rt.publish(rt.message(Ping(n=0), recipient=agent.id))
        await wait_all_tasks_blocked()
        assert all(agent.active == 1 for agent in blocked)
        for n in range(300):
            await rt.publish(rt.message(Ping(n=n), recipient="busy"))
        with anyio.fail_after(10):
            await busy.done.wait()
        assert busy.seen == list(range(300))
        assert all(agent.active == 1 for agent in blocked)  # still blocked meanwhile
        gate.set()
        await drain(rt)
    assert all(len(agent.seen) == 1 for agent in blocked)


class Looper(BaseAgent):
    """Sends itself the next Ping until the ``last``-th, never awaiting: only the executor's
    own yields let another task run meanwhile."""

    produces = (Ping,)

    def __init__(self, id: str, last: int) -> None:
        super().__init__(id)
        self.seen = 0
        self.last = last
        self.done = anyio.Event()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message | None:
        self.seen += 1
        if payload.n == self.last:
            self.done.set()
            return None
        return ctx.emit(Ping(n=payload.n + 1), recipient=self.id)


async def test_an_executor_yields_every_64_handlers_of_a_long_backlog(
    anyio_backend_name: str,
) -> None:
    # Issue 19, seventh pass: the executor counts down to its next yield. Another task must
    # get a turn at least every 64 handlers of a run that never awaits, and not much more
    # often (a yield is a turn of the event loop, about a delivery's cost).
    looper = Looper("looper", 1000)
    limits = Limits(max_hops=2000, correlation_budget=2000)
    async with Runtime([looper], limits=limits) as rt:
        await rt.publish(rt.message(Ping(n=1), recipient="looper"))
        seen_at = [looper.seen]
        with anyio.fail_after(10):
            while not looper.done.is_set():
                await anyio.lowlevel.checkpoint()
                seen_at.append(looper.seen)
        await drain(rt)
    steps = [b - a for a, b in itertools.pairwise(seen_at) if b != a]
    assert looper.seen == 1000
    # trio runs each ready task once per batch in a random order, so the executor may take
    # two turns between two of this task's: up to 128 handlers apart there.
    assert max(steps) <= (64 if anyio_backend_name == "asyncio" else 128), steps
    assert len(steps) >= 1000 // 128, steps


class Logged(BaseAgent):
    """Writes its id to ``log`` for each Ping, never awaiting."""

    def __init__(self, id: str, log: list[str]) -> None:
        super().__init__(id)
        self.log = log

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.log.append(self.id)


async def test_an_executor_that_waited_for_work_counts_to_its_next_yield_afresh() -> None:
    # Waiting for work is a yield: every other task had its turn meanwhile. So a fan-out that
    # wakes an idle executor runs whole, up to 64 handlers without a yield, whatever the
    # executor ran before it waited. A count carried over from the first fan-out of 50 would
    # yield 14 handlers into the second, and a task that was ready would run inside it.
    log: list[str] = []
    bystander_at: list[int] = []  # in each fan-out's log: before it (0), after it (50), or in it
    async with Runtime() as rt:
        for i in range(50):
            rt.add(Logged(f"w{i}", log), subscribe=["ping"])

        async def bystander() -> None:
            log.append("bystander")

        for n in range(3):
            await drain(rt)
            await wait_all_tasks_blocked()  # every executor waits for work
            log.clear()
            async with anyio.create_task_group() as tg:
                rt.publish_nowait(rt.message(Ping(n=n)))  # an executor is woken first
                tg.start_soon(bystander)  # ready behind it (trio: in either order)
            await drain(rt)
            assert len(log) == 51
            bystander_at.append(log.index("bystander"))
    assert all(at in (0, 50) for at in bystander_at), bystander_at


class Quitter(BaseAgent):
    """Cancels its own request from inside its handler and returns without awaiting: the
    cancellation reaches the executor's scope, never this handler (its delivery ends
    cancelled all the same, as it returned after its request was cancelled)."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.rt: Runtime | None = None

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        assert self.rt is not None
        self.rt.cancel(ctx.message.correlation_id)


class Answerer(BaseAgent):
    """Answers after a checkpoint, where a cancelled scope around it would raise."""

    produces = (Ping,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await anyio.lowlevel.checkpoint()
        return ctx.reply(Ping(n=payload.n))


async def test_after_a_cancelled_handler_the_next_ready_mailbox_runs_in_a_fresh_scope() -> None:
    # Issue 19, eighth pass: the runner runs an executor's turn (its next ready mailboxes) in
    # one loop (``Executors.turn``). A request cancelled while its handler runs here cancels
    # the executor's scope; the turn must end there, as ``_work`` did after each ``run_one``,
    # so the next mailbox in the queue runs in a new scope, not in the cancelled one (where
    # it would be cancelled at its first await and dead-lettered).
    quitter, answerer = Quitter("quitter"), Answerer("answerer")
    async with Runtime([quitter, answerer]) as rt:
        quitter.rt = rt
        await wait_all_tasks_blocked()
        first = rt.message(Ping(n=1), recipient="quitter")
        second = rt.message(Ping(n=2), recipient="answerer")
        gather = rt.gather(second.correlation_id, count=1, timeout=3)
        rt.publish_nowait(first)  # not a checkpoint: both wait before any executor runs
        rt.publish_nowait(second)
        assert rt.statistics().ready == 2  # one behind the other: one executor's turn
        result = await gather.wait()
        await drain(rt)
        stats = rt.statistics()
    assert [m.payload.n for m in result.replies] == [2]  # type: ignore[attr-defined]
    # The quitter's own delivery ends with its request, cancelled before it returned; the
    # answerer's runs to its answer.
    assert [(d.agent_id, d.reason) for d in rt.dead_letters] == [
        ("quitter", "correlation cancelled")
    ]
    assert stats.handled == 2  # the answerer's ping and the answer the gather took
