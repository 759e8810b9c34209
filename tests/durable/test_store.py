"""Durable mode in one process (``Runtime(store=path)``): what is kept, what ends, what a
runtime started again on the file resumes, and what it refuses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    Limits,
    MemoryAuditLog,
    Message,
    Payload,
    Runtime,
    handler,
)
from genie._runtime.local.transport import LocalTransport

from ..conftest import DenyTo, Failing, Ping, Pong


class Step(Payload):
    message_type = "step"
    n: int


class Done(Payload):
    message_type = "done"
    n: int


class Chain(BaseAgent):
    """Step n -> step n+1 to itself, until ``last``: then Done to the caller. With a
    ``gate``, each step waits for it first (so a test can stop the runtime mid-chain)."""

    produces = (Step, Done)

    def __init__(self, id: str, last: int = 4, gate: anyio.Event | None = None) -> None:
        super().__init__(id)
        self.last = last
        self.gate = gate
        self.seen: list[int] = []
        self.waiting = anyio.Event()  # a step waits at the gate

    @handler
    async def on_step(self, payload: Step, ctx: Context) -> Message:
        if self.gate is not None and payload.n >= 2:
            self.waiting.set()
            await self.gate.wait()
        self.seen.append(payload.n)
        if payload.n >= self.last:
            return ctx.emit(Done(n=payload.n), recipient="user")
        return ctx.emit(Step(n=payload.n + 1), recipient=self.id)


def kept(path: Path) -> tuple[list[str], list[str]]:
    db = sqlite3.connect(path)
    try:
        deliveries = [r[0] for r in db.execute("SELECT id FROM deliveries")]
        requests = [r[0] for r in db.execute("SELECT correlation_id FROM requests")]
    finally:
        db.close()
    return deliveries, requests


async def test_a_request_that_ends_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Runtime([Chain("chain")], store=path) as rt:
        rt.types.register(Done)
        result = await rt.ask(rt.message(Step(n=0), recipient="chain"), until="done")
        assert rt.unfinished() == []
    assert [m.payload for m in result.replies] == [Done(n=4)]
    assert kept(path) == ([], [])


async def test_a_request_cut_by_a_stop_is_resumed_by_the_next_runtime(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = Chain("chain", gate=anyio.Event())  # never opened: steps from 2 on wait
    rt = Runtime([first], store=path, drain_timeout=0.01)
    async with rt:
        msg = rt.message(Step(n=0), recipient="chain")
        await rt.publish(msg)
        with anyio.fail_after(5):
            await first.waiting.wait()
    assert first.seen == [0, 1]
    deliveries, requests = kept(path)
    assert len(deliveries) == 1  # step 2, cut short
    assert requests == [msg.correlation_id]

    second = Chain("chain")
    async with Runtime([second], store=path) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        assert request.id == msg.id
        assert request.payload == Step(n=0)
        result = await rt2.resume(request, until="done")
        stats = rt2.statistics()
    assert second.seen == [2, 3, 4]  # from where the first stopped, nothing twice
    assert [m.payload for m in result.replies] == [Done(n=4)]
    assert kept(path) == ([], [])
    # The accounting identity holds in the runtime that resumed: the delivery it ran again
    # counts as delivered here, as the stopped runtime's counts went with it.
    assert stats.delivered == (
        stats.handled + stats.denied + stats.dead_lettered + stats.shed + stats.in_flight
    )
    assert stats.in_flight == 0


async def test_a_request_nobody_resumes_stays_for_a_later_start(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01)
    async with rt:
        msg = rt.message(Step(n=0), recipient="chain")
        await rt.publish(msg)
        await anyio.sleep(0.05)
    async with Runtime([Chain("chain")], store=path) as rt2:
        assert [m.id for m in rt2.unfinished()] == [msg.id]
    async with Runtime([Chain("chain")], store=path) as rt3:
        rt3.types.register(Done)
        [request] = rt3.unfinished()
        result = await rt3.resume(request, until="done")
    assert result.complete
    assert kept(path) == ([], [])


async def test_a_request_published_without_waiting_is_kept_as_one(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01)
    async with rt:
        msg = rt.message(Step(n=0), recipient="chain")
        rt.publish_nowait(msg)
        await anyio.sleep(0.05)
    async with Runtime([Chain("chain")], store=path) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        assert request.id == msg.id
        result = await rt2.resume(request, until="done")
    assert result.complete
    assert kept(path) == ([], [])


async def test_a_request_cancelled_while_queued_is_not_resumed(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = Chain("chain", gate=anyio.Event())
    rt = Runtime([first], store=path, drain_timeout=0.01)
    async with rt:
        kept_one = rt.message(Step(n=2), recipient="chain")
        await rt.publish(kept_one)
        with anyio.fail_after(5):
            await first.waiting.wait()  # it runs, and holds the agent's one slot
        dropped = rt.message(Step(n=3), recipient="chain")
        await rt.publish(dropped)  # queued behind it
        rt.cancel(dropped.correlation_id)  # cancelled while queued: it ends, stop or not
    async with Runtime([Chain("chain")], store=path) as rt2:
        assert [m.id for m in rt2.unfinished()] == [kept_one.id]


async def test_failed_cancelled_denied_and_handed_off_deliveries_end(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    rt = Runtime(store=path, policies=[DenyTo("blocked")])
    rt.add(Failing("failing"))
    rt.add(Failing("flaky", failures=1), options=AgentOptions(fallback="backup"))
    rt.add(Failing("backup", failures=0))
    rt.add(Failing("blocked", failures=0))
    rt.add(Chain("slow", gate=anyio.Event()))
    async with rt:
        failed = await rt.ask(rt.message(Ping(n=1), recipient="failing"), timeout=5)
        handed = await rt.ask(rt.message(Ping(n=2), recipient="flaky"), timeout=5)
        denied = await rt.ask(rt.message(Ping(n=3), recipient="blocked"), timeout=5)
        cancelled = await rt.ask(rt.message(Step(n=2), recipient="slow"), timeout=0.05)
    assert not failed.complete
    assert [m.payload for m in handed.replies] == [Pong(n=2)]
    assert not denied.complete
    assert cancelled.status == "timed_out"
    assert kept(path) == ([], [])


async def test_a_second_runtime_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Runtime([Chain("chain")], store=path):
        with pytest.raises(ConfigurationError, match=f"cannot use {path} as a store"):
            Runtime([Chain("chain")], store=path)
    async with Runtime([Chain("chain")], store=path):
        pass  # free again once the first closed


def test_a_store_and_a_transport_are_refused_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="a store or a transport, not both"):
        Runtime(store=tmp_path / "s.db", transport=LocalTransport())


def test_a_file_that_is_no_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(ConfigurationError, match=r"notes\.txt as a store"):
        Runtime(store=path)


async def test_a_kept_delivery_this_runtime_cannot_read_is_reported_not_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01)
    async with rt:
        await rt.publish(rt.message(Step(n=0), recipient="chain"))
        await anyio.sleep(0.05)
    # The pipeline changed: no agent "chain" any more.
    async with Runtime([Chain("other")], store=path) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        result = await rt2.resume(request, until="done", timeout=1)
    assert not result.complete
    assert "which this runtime does not host" in caplog.text


async def test_two_runtimes_with_stores_of_their_own_never_see_each_other(
    tmp_path: Path,
) -> None:
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    rt1 = Runtime([Chain("chain", gate=anyio.Event())], store=one, drain_timeout=0.01)
    async with rt1, Runtime([Chain("chain")], store=two) as rt2:
        rt2.types.register(Done)
        await rt1.publish(rt1.message(Step(n=0), recipient="chain"))
        await rt2.ask(rt2.message(Step(n=0), recipient="chain"), until="done")
        await anyio.sleep(0.05)
    assert len(kept(one)[1]) == 1
    assert kept(two) == ([], [])


async def test_without_a_store_nothing_is_unfinished() -> None:
    async with Runtime([Chain("chain")]) as rt:
        assert rt.unfinished() == []


async def test_a_resumed_request_spends_what_is_left_of_its_budget(tmp_path: Path) -> None:
    """Steps 0 and 1 ran and step 2 was cut: 3 of the correlation's 4 deliveries were
    charged. Resumed, step 3 is the fourth, and step 4 would be a fifth: denied, not run."""
    path = tmp_path / "store.db"
    limits = Limits(correlation_budget=4)
    first = Chain("chain", gate=anyio.Event())
    async with Runtime([first], store=path, limits=limits, drain_timeout=0.01) as rt:
        await rt.publish(rt.message(Step(n=0), recipient="chain"))
        with anyio.fail_after(5):
            await first.waiting.wait()
    second = Chain("chain")
    audit = MemoryAuditLog()
    async with Runtime([second], store=path, limits=limits, audit=audit) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        result = await rt2.resume(request, until="done", timeout=5)
    assert second.seen == [2, 3]
    assert not result.complete
    [denied] = [r for r in audit.records if r.action == "limit_fired"]
    assert denied.actor == "limit:budget"
