"""An outside publish holds a slot in each recipient's mailbox before anything goes in, then
uses or gives back every one: cancelled at any of its awaits, nothing is published and no slot
stays held; admitted, each slot becomes its delivery (``Transport.hold`` and ``put_held``)."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Limits,
    Message,
    Observer,
    Runtime,
    WouldBlockError,
    handler,
)

from ..conftest import Held, Note, Ping, Recorder

FULL = ("w1", "w3", "w4")  # among w0..w5: the publish waits at each of these in turn


class Slotted(Recorder):
    """A recorder that also takes notes, behind the same gate: nobody subscribes to them, so
    they fill one agent's mailbox (``slots_free``, and the full mailboxes of a test)."""

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        if self.gate is not None:
            await self.gate.wait()


def slots_free(rt: Runtime, agent_id: str) -> int:
    """How many publishes ``agent_id``'s mailbox takes now without waiting: its capacity
    exactly when no slot is held (a leaked slot takes one off, a slot given back twice adds
    one)."""
    taken = 0
    while True:
        try:
            rt.publish_nowait(rt.message(Note(text="probe"), recipient=agent_id))
        except WouldBlockError:
            return taken
        taken += 1


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
async def test_a_publish_cancelled_at_any_await_holds_no_slot(stage: int) -> None:
    """Publish a Ping to six subscribers, three of whose mailboxes (size 1) are full, and
    cancel it while it waits at the ``stage``-th full one (0: at its first checkpoint): the
    free ones before it were held, the full ones before it were waited for and held."""
    gates = {f"w{i}": anyio.Event() for i in range(6)}
    agents = {rid: Slotted(rid, gate) for rid, gate in gates.items()}
    async with Runtime() as rt:
        for rid, agent in agents.items():
            rt.add(agent, options=AgentOptions(mailbox_size=1))
            rt.subscribe(rid, Ping.message_type)
        for rid in FULL:  # one handler blocked on its gate, one message queued behind it
            await rt.publish(rt.message(Note(text="run"), recipient=rid))
            await wait_all_tasks_blocked()
            await rt.publish(rt.message(Note(text="queued"), recipient=rid))
        mailboxes = rt._mailboxes
        published = False
        async with anyio.create_task_group() as tg:

            async def publish() -> None:
                nonlocal published
                await rt.publish(rt.message(Ping(n=99)))
                published = True

            tg.start_soon(publish)
            if stage == 0:
                tg.cancel_scope.cancel()
            else:
                await wait_all_tasks_blocked()
                for rid in FULL[: stage - 1]:  # let the publish past these
                    gates[rid].set()
                    await wait_all_tasks_blocked()
                waited = FULL[stage - 1]
                assert len(mailboxes[waited].waiters) == 1, "the publish waits here"
                tg.cancel_scope.cancel()
        assert not published
        for rid, mb in mailboxes.items():
            assert (rid, mb.reserved, len(mb.waiters)) == (rid, 0, 0)
        for gate in gates.values():
            gate.set()
        with anyio.fail_after(10):
            await rt.wait_idle()
        assert not any(p.n == 99 for a in agents.values() for p in a.seen), "nothing went in"
        assert {rid: slots_free(rt, rid) for rid in agents} == dict.fromkeys(agents, 1)


async def test_a_fan_out_uses_each_slot_it_holds() -> None:
    # Three rounds: a slot that stayed held (or was given back twice) would show by the third.
    agents = [Slotted(f"w{i}") for i in range(5)]
    async with Runtime() as rt:
        for agent in agents:
            rt.add(agent, options=AgentOptions(mailbox_size=3))
            rt.subscribe(agent.id, Ping.message_type)
        for n in range(3):
            with anyio.fail_after(10):  # a slot that stayed held makes the third wait
                await rt.publish(rt.message(Ping(n=n)))
                await rt.wait_idle()
        stats = rt.statistics()
        assert (stats.delivered, stats.handled, stats.in_flight) == (15, 15, 0)
        assert {a.id: slots_free(rt, a.id) for a in agents} == {a.id: 3 for a in agents}
    assert [[p.n for p in a.seen] for a in agents] == [[0, 1, 2]] * 5


@pytest.mark.parametrize(("budget", "delivered"), [(5, 5), (4, 4), (6, 5)])
async def test_a_fan_out_at_the_correlation_budget(budget: int, delivered: int) -> None:
    # All five fit at a budget of 5 (every recipient admitted at once); at 4 the fifth is
    # denied by the limit, and its slot given back.
    agents = [Slotted(f"w{i}") for i in range(5)]
    async with Runtime(limits=Limits(correlation_budget=budget)) as rt:
        for agent in agents:
            rt.add(agent, options=AgentOptions(mailbox_size=1))
            rt.subscribe(agent.id, Ping.message_type)
        with anyio.fail_after(10):
            await rt.publish(rt.message(Ping(n=7)))
            await rt.wait_idle()
        stats = rt.statistics()
        assert (stats.delivered, stats.handled, stats.denied) == (5, delivered, 5 - delivered)
        assert [slots_free(rt, a.id) for a in agents] == [1] * 5
    assert [len(a.seen) for a in agents] == [1] * delivered + [0] * (5 - delivered)


class Deliveries(Observer):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.seen: list[tuple[str, int]] = []

    def delivered(self, msg: Message, agent_id: str) -> None:
        # What the runtime has counted when it tells: one more each time.
        self.seen.append((agent_id, self.rt.statistics().delivered))


class Many(Deliveries):
    def delivered_many(self, msg: Message, agent_ids: object) -> None:
        assert isinstance(agent_ids, tuple | list)
        self.seen.extend((a, self.rt.statistics().delivered) for a in agent_ids)


@pytest.mark.parametrize("many", [False, True])
async def test_observers_are_told_of_each_delivery_of_a_fan_out(many: bool) -> None:
    agents = [Slotted(f"w{i}") for i in range(4)]
    async with Runtime() as rt:
        observer = Many(rt) if many else Deliveries(rt)
        rt.add_observer(observer)
        for agent in agents:
            rt.add(agent)
            rt.subscribe(agent.id, Ping.message_type)
        await rt.publish(rt.message(Ping(n=1)))
        with anyio.fail_after(10):
            await rt.wait_idle()
    ids = [a.id for a in agents]
    # One by one as each goes in, or all at once after: either way each is told once, in order.
    counts = [4] * 4 if many else [1, 2, 3, 4]
    assert observer.seen == list(zip(ids, counts, strict=True))


class Shielded(BaseAgent):
    """Holds its delivery in flight through a cancel of its correlation, until ``gate``."""

    def __init__(self, id: str, gate: anyio.Event) -> None:
        super().__init__(id)
        self.gate = gate
        self.seen: list[int] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.seen.append(payload.n)
        with anyio.CancelScope(shield=True):
            await self.gate.wait()


async def test_a_publish_into_a_cancelled_correlation_gives_back_every_slot() -> None:
    # ``route`` admits nobody (the correlation is cancelled): every slot held for the
    # subscribers is given back, and the message is a dead letter.
    gate = anyio.Event()
    holder = Shielded("holder", gate)
    agents = [Slotted(f"w{i}") for i in range(3)]
    async with Runtime([holder]) as rt:
        for agent in agents:
            rt.add(agent, options=AgentOptions(mailbox_size=2))
            rt.subscribe(agent.id, Ping.message_type)
        first = rt.message(Ping(n=1), recipient="holder")
        await rt.publish(first)
        await wait_all_tasks_blocked()
        # Its fan-out's copies are handled; the holder's stays in flight.
        assert [[p.n for p in a.seen] for a in agents] == [[1]] * 3
        rt.cancel(first.correlation_id)
        with anyio.fail_after(10):
            await rt.publish(rt.message(Ping(n=2), correlation_id=first.correlation_id))
        assert [slots_free(rt, a.id) for a in agents] == [2, 2, 2]
        gate.set()
        with anyio.fail_after(10):
            await rt.wait_idle()
        assert rt.statistics().unrouted >= 1  # the Ping of the cancelled correlation
    assert [[p.n for p in a.seen] for a in agents] == [[1]] * 3


async def test_a_fan_out_counted_at_once_ends_its_correlation_when_handled() -> None:
    # Its deliveries counted in flight together must each end: the gather (expecting more
    # than can come) ends partial when the last handler returns, and the correlation closes.
    agents = [Slotted(f"w{i}") for i in range(5)]
    async with Runtime() as rt:
        for agent in agents:
            rt.add(agent)
            rt.subscribe(agent.id, Ping.message_type)
        msg = rt.message(Ping(n=3))
        gather = rt.gather(msg.correlation_id, count=6)
        with anyio.fail_after(10):
            await rt.publish(msg)
            result = await gather.wait()
            await rt.wait_idle()
        assert result.status == "partial"
        stats = rt.statistics()
        assert (
            stats.delivered,
            stats.handled,
            stats.in_flight,
            stats.correlations.correlations_active,
        ) == (
            5,
            5,
            0,
            0,
        )


async def test_publishers_waiting_in_opposite_orders_never_wait_for_each_other() -> None:
    """A Ping goes to ``a`` then its subscriber ``b``, a Note to ``b`` then its subscriber
    ``a``; mailboxes of one slot. A publisher that held its first recipient's slot while it
    waited for the second's would wait for good on the other publisher, which holds that one
    and waits for the first (both agents idle)."""
    agents = {rid: Slotted(rid) for rid in ("a", "b")}
    published = {"ping": 0, "note": 0}
    async with Runtime() as rt:
        for agent in agents.values():
            rt.add(agent, options=AgentOptions(mailbox_size=1))
        rt.subscribe("b", Ping.message_type)
        rt.subscribe("a", Note.message_type)

        async def publish(kind: str) -> None:
            for n in range(30):
                if kind == "ping":
                    await rt.publish(rt.message(Ping(n=n), recipient="a"))
                else:
                    await rt.publish(rt.message(Note(text=str(n)), recipient="b"))
                published[kind] += 1

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish, "ping")
                tg.start_soon(publish, "note")
            await rt.wait_idle()
        stats = rt.statistics()
        assert published == {"ping": 30, "note": 30}
        assert (stats.delivered, stats.handled, stats.in_flight) == (120, 120, 0)
        for rid, mb in rt._mailboxes.items():
            assert (rid, mb.reserved, len(mb.waiters)) == (rid, 0, 0)


async def test_a_publish_that_waited_for_room_counts_in_its_correlation_as_it_is_then() -> None:
    """A publish that waits for room may see the rest of its correlation settle meanwhile
    (and the runtime forget it): what it then puts in counts in the correlation as it is
    after the wait, so ``rt.cancel`` reaches its handler and the request settles once."""
    gate = anyio.Event()
    held = Held("held", gate)
    quick = Recorder("quick")
    settled: list[str] = []

    class Settled(Observer):
        def settled(self, correlation_id: str) -> None:
            settled.append(correlation_id)

    async with Runtime() as rt:
        rt.add(held, options=AgentOptions(mailbox_size=1))
        rt.add(quick)
        rt.add_observer(Settled())
        await rt.publish(rt.message(Note(text="run"), recipient="held"))
        await wait_all_tasks_blocked()
        await rt.publish(rt.message(Note(text="queued"), recipient="held"))
        waiting = rt.message(Ping(n=1), recipient="held")
        cid = waiting.correlation_id
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.publish, waiting)
            await wait_all_tasks_blocked()
            assert len(rt._mailboxes["held"].waiters) == 1, "the publish waits for room"
            # The rest of its correlation comes and goes while it waits.
            await rt.publish(rt.message(Ping(n=2), recipient="quick", correlation_id=cid))
            await wait_all_tasks_blocked()
            assert [p.n for p in quick.seen] == [2]
            gate.set()
        with anyio.fail_after(10):
            await held.running.wait()
            assert rt.in_flight_of(cid) == 1
            rt.cancel(cid)  # reaches the handler: it ends as a cancelled dead letter
            await rt.wait_idle()
        assert rt.in_flight_of(cid) == 0
        assert [d.kind for d in rt.dead_letters if d.message.id == waiting.id] == ["cancelled"]
        assert settled.count(cid) == 2  # once after the quick Ping, once after the cancel
