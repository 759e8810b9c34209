"""A third transport, written from the ``Transport`` protocol's docstrings alone, carries a
real runtime: publish, gather, ask, a failing handler's dead letter, backpressure.

``DequeTransport`` queues each delivery in the agent's mailbox (``Mailbox.push``, as the
protocol says), keeps the mailboxes owed a run in one plain deque, and runs every delivery in
one task of its own. It records each delivery it is handed, so the tests can see that the
runtime went through it and nothing else. (One task: a handler waiting on another agent would
wait forever, so no agent here does.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Message,
    PublishFromHandlerError,
    Runtime,
    WouldBlockError,
    handler,
)
from genie._base.backend import Backend, Event
from genie._message.envelope import Message as Envelope
from genie._runtime.local.executor import Worker
from genie._runtime.local.mailbox import Handoff, Mailbox, Queued, hold
from genie._runtime.transport import RunDelivery, Transport, WorkerCounts

from ..conftest import Echo, Failing, Ping, Pong, Recorder

if TYPE_CHECKING:
    from anyio.abc import TaskGroup


class DequeTransport:
    """One task runs every delivery, in the order the mailboxes became owed a run."""

    def __init__(self) -> None:
        self.mailboxes: Mapping[str, Mailbox] = {}
        self.ready_queue: deque[Mailbox] = deque()
        self.delivered: list[tuple[str, str, bool]] = []  # (recipient, message type, held)
        self.started = False
        self._run: RunDelivery | None = None
        self._wake: Event | None = None
        self._new_event: Callable[[], Event] | None = None
        self._worker = Worker()

    # --- the runtime's agents and the task that runs them ------------------------------------
    def attach_agents(self, mailboxes: Mapping[str, Mailbox]) -> None:
        self.mailboxes = mailboxes

    def start(self, tg: TaskGroup, run: RunDelivery, backend: Backend) -> None:
        self._run = run
        self._new_event = backend.new_event
        self._wake = backend.new_event()
        self.started = True
        tg.start_soon(self._loop, name="deque-transport")

    async def _loop(self) -> None:
        assert self._run is not None
        assert self._new_event is not None
        while True:
            while self.ready_queue:
                # A cancel scope serves one ``with`` block: a fresh worker for each run.
                worker = self._worker = Worker()
                with worker.scope:
                    await self._run(self.ready_queue.popleft(), worker)
                await anyio.lowlevel.checkpoint()
            assert self._wake is not None
            await self._wake.wait()
            self._wake = self._new_event()

    def _owed(self, mb: Mailbox) -> None:
        self.ready_queue.append(mb)
        if self._wake is not None:
            self._wake.set()

    def turn(self, worker: Worker, first: Mailbox) -> Iterable[Mailbox]:
        return (first,)

    # --- room for outside publishers ---------------------------------------------------------
    def has_room(self, recipient: str) -> bool:
        return self.mailboxes[recipient].has_room

    async def wait_for_room(self, recipient: str) -> None:
        await self.mailboxes[recipient].wait_for_room()

    def hold(self, recipients: Sequence[str], start: int) -> int:
        return start + hold([self.mailboxes.get(r) for r in recipients[start:]])

    def release(self, recipient: str) -> None:
        self.mailboxes[recipient].release()

    # --- queueing ----------------------------------------------------------------------------
    def put(self, item: Queued, recipient: str) -> None:
        self._record(item, recipient, False)
        mb = self.mailboxes[recipient]
        if mb.push(item):
            self._owed(mb)

    def put_held(self, item: Queued, recipients: Sequence[str]) -> None:
        for recipient in recipients:
            self._record(item, recipient, True)
            mb = self.mailboxes[recipient]
            if mb.push(item, True):
                self._owed(mb)

    def _record(self, item: Queued, recipient: str, held: bool) -> None:
        msg = item.message if isinstance(item, Handoff) else item
        self.delivered.append((recipient, msg.type, held))

    # --- the rest ----------------------------------------------------------------------------
    def cancel(self, correlation_id: str) -> int:
        if self._worker.correlation == correlation_id:
            self._worker.cancel()
            return 1
        return 0

    def forward(self, msg: Envelope) -> bool:
        return False

    def drain_queues(self) -> Iterator[tuple[Mailbox, Queued]]:
        for mb in self.mailboxes.values():
            while mb.queue:
                yield mb, mb.queue.popleft()
            mb.wake_all()

    def workers(self) -> WorkerCounts:
        return WorkerCounts(1 if self.started else 0, 0, len(self.ready_queue))


def _identity_holds(rt: Runtime) -> None:
    s = rt.statistics()
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight


async def test_it_is_a_transport() -> None:
    transport: Transport = DequeTransport()  # checked by mypy against the protocol
    async with Runtime([Echo("echo")], transport=transport) as rt:
        assert rt.statistics().executors == 1


async def test_publish_and_gather_through_it() -> None:
    transport = DequeTransport()
    echoes = [Echo(f"e{i}") for i in range(5)]
    async with Runtime(echoes, transport=transport) as rt:
        for echo in echoes:
            rt.subscribe(echo.id, Ping.message_type)
        msg = rt.message(Ping(n=7), sender="user")
        gather = rt.gather(msg.correlation_id, count=5)
        await rt.publish(msg)
        with anyio.fail_after(5):
            result = await gather.wait()
        await rt.wait_idle()
        assert result.complete
        assert sorted(r.sender for r in result.replies) == [f"e{i}" for i in range(5)]
        assert all(isinstance(r.payload, Pong) and r.payload.n == 7 for r in result.replies)
        # The fan-out went through this transport, each in the slot its publish held.
        assert transport.delivered == [(f"e{i}", "ping", True) for i in range(5)]
        _identity_holds(rt)
        s = rt.statistics()
        assert (s.delivered, s.handled, s.collected, s.in_flight) == (10, 10, 5, 0)


async def test_ask_through_it() -> None:
    transport = DequeTransport()
    async with Runtime([Echo("echo")], transport=transport) as rt:
        msg = rt.message(Ping(n=1), sender="user", recipient="echo")
        with anyio.fail_after(5):
            result = await rt.ask(msg, until=Pong.message_type)
        await rt.wait_idle()
        assert result.message.payload == Pong(n=1)
        assert transport.delivered == [("echo", "ping", True)]
        _identity_holds(rt)


class Forward(BaseAgent):
    """Sends every Ping on to ``to`` (a send from a handler: it never waits)."""

    produces = (Ping,)

    def __init__(self, id: str, to: str) -> None:
        super().__init__(id)
        self.to = to

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Ping(n=payload.n + 1), recipient=self.to)


async def test_a_handlers_send_goes_through_it_unheld() -> None:
    transport = DequeTransport()
    async with Runtime([Forward("a", "b"), Echo("b")], transport=transport) as rt:
        msg = rt.message(Ping(n=1), sender="user", recipient="a")
        gather = rt.gather(msg.correlation_id, types=[Pong.message_type])
        await rt.publish(msg)
        with anyio.fail_after(5):
            result = await gather.wait()
        await rt.wait_idle()
        # b replies to a (an agent here), so a subscriber-less Pong is queued for it too.
        assert result.message.payload == Pong(n=2)
        assert transport.delivered[:2] == [("a", "ping", True), ("b", "ping", False)]
        _identity_holds(rt)


async def test_a_failing_handler_ends_in_a_dead_letter() -> None:
    transport = DequeTransport()
    async with Runtime([Failing("broken")], transport=transport) as rt:
        await rt.publish(rt.message(Ping(n=1), sender="user", recipient="broken"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        letters = list(rt.dead_letters)
        assert [(d.agent_id, d.kind) for d in letters] == [("broken", "failed")]
        assert "boom #1" in letters[0].reason
        s = rt.statistics()
        assert (s.dead_lettered, s.in_flight, s.mailboxes["broken"].failed) == (1, 0, 1)
        _identity_holds(rt)


async def test_a_failed_delivery_goes_to_its_fallback_through_it() -> None:
    transport = DequeTransport()
    async with Runtime(transport=transport) as rt:
        rt.add(Failing("broken"), options=AgentOptions(fallback="backup"))
        rt.add(Echo("backup"))
        msg = rt.message(Ping(n=3), sender="user", recipient="broken")
        with anyio.fail_after(5):
            result = await rt.ask(msg, until=Pong.message_type)
        await rt.wait_idle()
        assert result.message.sender == "backup"
        assert transport.delivered[:2] == [("broken", "ping", True), ("backup", "ping", False)]
        assert rt.statistics().fallbacks == 1
        _identity_holds(rt)


async def test_backpressure_through_it() -> None:
    transport = DequeTransport()
    gate = anyio.Event()
    rec = Recorder("rec", gate)
    async with Runtime(transport=transport) as rt:
        rt.add(rec, options=AgentOptions(mailbox_size=1))
        first = rt.message(Ping(n=0), sender="user", recipient="rec")
        await rt.publish(first)  # taken at once by the one task: the handler waits at the gate
        with anyio.fail_after(5):
            while rec.active == 0:
                await anyio.lowlevel.checkpoint()
        await rt.publish(rt.message(Ping(n=1), sender="user", recipient="rec"))  # fills it
        with pytest.raises(WouldBlockError):
            rt.publish_nowait(rt.message(Ping(n=2), sender="user", recipient="rec"))
        published = anyio.Event()

        async def third() -> None:
            await rt.publish(rt.message(Ping(n=3), sender="user", recipient="rec"))
            published.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(third)
            await anyio.wait_all_tasks_blocked()
            assert not published.is_set()  # waits for room
            assert rt.statistics().mailboxes["rec"].waiting_publishers == 1
            gate.set()
        with anyio.fail_after(5):
            await rt.wait_idle()
        assert [p.n for p in rec.seen] == [0, 1, 3]
        assert rt.statistics().mailboxes["rec"].high_water == 1  # never past the bound
        _identity_holds(rt)


class LateDequeTransport(DequeTransport):
    """``DequeTransport`` whose task starts late: at the first delivery it is handed, in the
    task of whoever routed it (here the test's own), not in ``start``."""

    def __init__(self) -> None:
        super().__init__()
        self._tg: TaskGroup | None = None

    def start(self, tg: TaskGroup, run: RunDelivery, backend: Backend) -> None:
        self._run = run
        self._new_event = backend.new_event
        self._wake = backend.new_event()
        self._tg = tg

    def _owed(self, mb: Mailbox) -> None:
        if not self.started:
            assert self._tg is not None
            self.started = True
            self._tg.start_soon(self._loop, name="late-deque-transport")
        super()._owed(mb)


async def test_handlers_in_a_task_started_outside_start_are_marked_for_their_turn() -> None:
    """The runner marks the tasks a transport starts in ``start`` as running this runtime's
    handlers (docs/semantics.md, "A handler sends only through its outputs"); a task started
    anywhere else is marked by ``run`` for each turn. So the handler's own publish is refused,
    and the test's task, which started that task, publishes as before."""

    class Resender(BaseAgent):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.rt: Runtime | None = None
            self.errors: list[PublishFromHandlerError] = []

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            assert self.rt is not None
            try:
                self.rt.publish_nowait(self.rt.message(Ping(n=1), recipient="rec"))
            except PublishFromHandlerError as exc:
                self.errors.append(exc)

    rec, resender = Recorder("rec"), Resender("resender")
    transport = LateDequeTransport()
    async with Runtime([rec, resender], transport=transport) as rt:
        resender.rt = rt
        assert not transport.started
        await rt.publish(rt.message(Ping(), recipient="resender"))  # starts its task, here
        with anyio.fail_after(5):
            await rt.wait_idle()
        rt.publish_nowait(rt.message(Ping(n=2), recipient="rec"))  # this task is not marked
        with anyio.fail_after(5):
            await rt.wait_idle()
    assert transport.started
    assert len(resender.errors) == 1
    assert [p.n for p in rec.seen] == [2]
