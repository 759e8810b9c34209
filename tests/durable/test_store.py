"""Durable mode in one process (``Runtime(store=path)``): what is kept, what ends, what a
runtime started again on the file resumes, and what it refuses."""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from genie import (
    Agent,
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    DeliveryError,
    DuplicateAgentError,
    DuplicateMessageError,
    InvalidArgumentError,
    InvalidMessageError,
    Limits,
    MemoryAuditLog,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
    RuntimeClosedError,
    RuntimeState,
    StoreError,
    Unanswered,
    handler,
)
from genie._runtime.durable.store import DeliveryStore, StoreClient
from genie._runtime.local.transport import LocalTransport
from genie._runtime.transport import delivery_json, message_json
from genie.pipeline import load_pipeline

from ..conftest import DenyTo, Failing, Note, Ping, Pong


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
        deliveries = [
            f"{m}:{agent}"
            for m, agent in db.execute(
                "SELECT m.id, j.value FROM messages m, json_each(m.recipients) j"
            )
        ]
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


class Teller(BaseAgent):
    """Tells ``quiet`` a Ping and goes on, watching for its reply if it has a runtime
    (``watch``); hears notices."""

    produces = (Ping,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.heard: list[Unanswered] = []
        self.watch: Runtime | None = None

    @handler
    async def on_step(self, payload: Step, ctx: Context) -> Message:
        ping = ctx.emit(Ping(n=payload.n), recipient="quiet")
        if self.watch is not None:
            self.watch.watch_reply(ping)
        return ping

    @handler
    async def on_unanswered(self, payload: Unanswered, ctx: Context) -> None:
        self.heard.append(payload)


class Quiet(BaseAgent):
    """Takes a Ping and answers nothing; waits at ``gate`` first if it has one."""

    def __init__(self, id: str, gate: anyio.Event | None = None) -> None:
        super().__init__(id)
        self.gate = gate
        self.waiting = anyio.Event()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()


async def test_a_resumed_request_nobody_watches_again_brings_no_notice(tmp_path: Path) -> None:
    """A request nobody watched (a message sent on, not a step), run again from the store
    and handled without a reply, is told to nobody, and leaves nothing behind."""
    path = tmp_path / "store.db"
    quiet = Quiet("quiet", gate=anyio.Event())  # never opened: the ping is cut by the stop
    async with Runtime([Teller("teller"), quiet], store=path, drain_timeout=0.01) as rt:
        msg = rt.message(Step(n=1), recipient="teller")
        await rt.publish(msg)
        with anyio.fail_after(5):
            await quiet.waiting.wait()
    teller = Teller("teller")
    async with Runtime([teller, Quiet("quiet")], store=path) as rt2:
        [request] = rt2.unfinished()
        rt2.types.register(Unanswered)
        result = await rt2.resume(request, timeout=0.5)
        with anyio.fail_after(5):
            await rt2.wait_idle()
        stats = rt2.statistics()
    assert result.replies == ()
    assert teller.heard == []
    assert (stats.in_flight, stats.correlations.correlations_active) == (0, 0)
    assert kept(path) == ([], [])


async def test_a_watched_request_run_again_tells_its_sender_it_went_unanswered(
    tmp_path: Path,
) -> None:
    """The store keeps that a request is watched: run again after a restart, it is watched
    from the start, and its sender (which does not run again the handling that sent it) is
    told when it ends without a reply, as it would have been without the stop. Nothing is
    left behind."""
    path = tmp_path / "store.db"
    teller, quiet = Teller("teller"), Quiet("quiet", gate=anyio.Event())
    async with Runtime([teller, quiet], store=path, drain_timeout=0.01) as rt:
        teller.watch = rt
        await rt.publish(rt.message(Step(n=1), recipient="teller"))
        with anyio.fail_after(5):
            await quiet.waiting.wait()
    teller = Teller("teller")  # watches nothing itself this time
    async with Runtime([teller, Quiet("quiet")], store=path) as rt2:
        [request] = rt2.unfinished()
        await rt2.resume(request, timeout=0.5)
        with anyio.fail_after(5):
            await rt2.wait_idle()
        stats = rt2.statistics()
    assert [(h.consumer, h.reason) for h in teller.heard] == [
        ("quiet", "handled the ping without replying")
    ]
    assert stats.delivered == (
        stats.handled + stats.denied + stats.dead_lettered + stats.shed + stats.in_flight
    )
    assert (stats.in_flight, stats.correlations.correlations_active) == (0, 0)
    assert kept(path) == ([], [])
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT * FROM watched").fetchall() == []


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


@pytest.mark.parametrize("nowait", [False, True])
async def test_a_message_with_a_cause_published_from_outside_is_kept_as_a_request(
    tmp_path: Path, nowait: bool
) -> None:
    """An outside publish of a message built as another's child (its hops above 0, as a
    reply made outside is) is a request to the store as any outside publish is: cut by the
    stop, it is listed as unfinished and resumed, not ended unrun as a cancelled request's
    leftover."""
    path = tmp_path / "store.db"
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01)
    async with rt:
        parent = rt.message(Step(n=0), recipient="chain")  # never published itself
        msg = parent.child(
            Step(n=2), sender="outside", recipient="chain", id="outside-1", created_at=1.0
        )
        assert msg.hops == 1
        if nowait:
            rt.publish_nowait(msg)
        else:
            await rt.publish(msg)
        await anyio.sleep(0.05)
    assert kept(path) == ([f"{msg.id}:chain"], [msg.correlation_id])
    async with Runtime([Chain("chain")], store=path) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        assert (request.id, request.payload) == (msg.id, Step(n=2))
        result = await rt2.resume(request, until="done")
    assert [m.payload for m in result.replies] == [Done(n=4)]
    assert kept(path) == ([], [])


class Queued(BaseAgent):
    """Holds a Note until ``first`` is set when its text is "a", any other for good."""

    def __init__(self, id: str, first: anyio.Event) -> None:
        super().__init__(id)
        self.first = first

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        if payload.text == "a":
            await self.first.wait()
        else:
            await anyio.sleep_forever()


async def test_a_request_that_waited_for_room_is_kept_as_a_request(tmp_path: Path) -> None:
    """A publish that waits for mailbox room while the store writes other work is kept as
    a request all the same: the next start lists it."""
    path, first, published = tmp_path / "store.db", anyio.Event(), anyio.Event()
    rt = Runtime(store=path, drain_timeout=0.01)
    rt.add(Queued("w", first), options=AgentOptions(mailbox_size=1))
    rt.add(Queued("other", anyio.Event()))

    async def waits_for_room() -> None:
        await rt.publish(rt.message(Note(text="c"), recipient="w", correlation_id="c"))
        published.set()

    async with rt, anyio.create_task_group() as tg:
        for text in "ab":  # a runs, b fills the mailbox
            await rt.publish(rt.message(Note(text=text), recipient="w", correlation_id=text))
        tg.start_soon(waits_for_room)
        await anyio.wait_all_tasks_blocked()  # c waits for room
        await rt.publish(rt.message(Note(text="d"), recipient="other", correlation_id="d"))
        first.set()  # a ends: b runs, c is queued
        with anyio.fail_after(5):
            await published.wait()
    assert sorted(kept(path)[1]) == ["b", "c", "d"]
    async with Runtime(
        [Queued("w", anyio.Event()), Queued("other", anyio.Event())], store=path
    ) as rt2:
        assert sorted(m.correlation_id for m in rt2.unfinished()) == ["b", "c", "d"]


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


class Blob(Payload):
    """Bytes that are not UTF-8 have no JSON form: a store cannot keep them."""

    message_type = "blob"
    data: bytes


class Blobs(BaseAgent):
    """Ping 1: replies a blob to the caller; ping 2: sends one to itself; ping 3: sets one as
    a timer to itself. A blob it gets answers the caller with a pong."""

    produces = (Blob, Pong)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.got: list[bytes] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message | None:
        if payload.n == 1:
            return ctx.reply(Blob(data=b"\xff"))
        if payload.n == 2:
            return ctx.emit(Blob(data=b"\xff"), recipient=self.id)
        ctx.schedule(0, Blob(data=b"\xff"))
        return None

    @handler
    async def on_blob(self, payload: Blob, ctx: Context) -> Message:
        self.got.append(payload.data)
        return ctx.emit(Pong(n=len(self.got)), recipient="user")


async def test_a_message_the_store_cannot_keep_is_refused_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload with no JSON form: published from outside, an error naming the store before
    anything happens. A reply to the caller is never kept: it goes as without a store. Sent
    by a handler to an agent (an output, a timer), it runs unkept, and the log says so. The
    runtime goes on each time."""
    path = tmp_path / "store.db"
    blobs = Blobs("blobs")
    async with Runtime([blobs], store=path) as rt:
        rt.types.register(Blob)
        message = rt.message(Blob(data=b"\xff"), recipient="blobs")
        with pytest.raises(InvalidMessageError, match=f"the store {path} cannot keep it") as no:
            await rt.publish(message)
        assert no.value.field == "payload.data"  # the field with no JSON form
        with pytest.raises(InvalidMessageError, match="cannot keep it"):
            rt.publish_nowait(message)
        replied = await rt.ask(rt.message(Ping(n=1), recipient="blobs"), timeout=5)
        assert "cannot keep it" not in caplog.text
        emitted = await rt.ask(rt.message(Ping(n=2), recipient="blobs"), timeout=5)
        timed = await rt.ask(rt.message(Ping(n=3), recipient="blobs"), timeout=5)
    assert [m.payload for m in replied.replies] == [Blob(data=b"\xff")]
    assert [m.payload for m in emitted.replies] == [Pong(n=1)]
    assert [m.payload for m in timed.replies] == [Pong(n=2)]
    unkept = [r.getMessage() for r in caplog.records if r.getMessage().endswith("runs, unkept")]
    assert len(unkept) == 2
    assert "cannot keep it ('utf-8' codec can't decode byte 0xff" in unkept[0]
    assert kept(path) == ([], [])


class Text(Payload):
    message_type = "text"
    text: str


class Quoter(BaseAgent):
    """Answers a ping with a text of ``ping.n`` characters."""

    produces = (Text,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Text(text="x" * payload.n), recipient="user")


async def test_a_message_larger_than_a_row_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A message past what a SQLite row holds (1 GB by default; lowered here) is refused as a
    message with no JSON form is, before SQLite refuses the write and stops the runtime; a
    reply to the caller, never kept, goes whatever its size."""
    path = tmp_path / "store.db"
    async with Runtime([Quoter("quoter")], store=path) as rt:
        rt.types.register(Text)
        db = rt._transport.store._db  # type: ignore[attr-defined]
        db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, (1 << 20) + 50_000)  # 50 kB of JSON a row
        big = rt.message(Text(text="x" * 1_200_000), recipient="quoter")  # past SQLite too
        with pytest.raises(InvalidMessageError, match=r"its JSON is \d+ bytes, and a row holds"):
            await rt.publish(big)
        replied = await rt.ask(rt.message(Ping(n=1_200_000), recipient="quoter"), timeout=5)
    assert [m.payload for m in replied.replies] == [Text(text="x" * 1_200_000)]
    assert kept(path) == ([], [])


class Holder(BaseAgent):
    """Answers a text with the same text; with a ``gate``, waits for it first."""

    produces = (Text,)

    def __init__(self, id: str, gate: anyio.Event | None = None) -> None:
        super().__init__(id)
        self.gate = gate
        self.waiting = anyio.Event()

    @handler
    async def on_text(self, payload: Text, ctx: Context) -> Message:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        return ctx.reply(Text(text=payload.text))


async def test_text_utf8_cannot_encode_is_kept_as_its_escape_and_resumed(tmp_path: Path) -> None:
    """A lone surrogate (a ``str`` built in Python can hold one) has no UTF-8, but the store
    keeps a message's JSON, which writes it as an ASCII escape (``\\ud800``), read back as the
    same string: such a message is kept and resumed as any other (the policies, which read it
    as text, are what refuse it)."""
    path = tmp_path / "store.db"
    first = Holder("holder", gate=anyio.Event())  # never opened: the request waits
    async with Runtime([first], store=path, drain_timeout=0.01) as rt:
        rt.types.register(Text)
        await rt.publish(rt.message(Text(text="a\ud800"), recipient="holder"))
        with anyio.fail_after(5):
            await first.waiting.wait()
    db = sqlite3.connect(path)
    try:
        [(body,)] = db.execute("SELECT body FROM requests").fetchall()
    finally:
        db.close()
    assert json.loads(body)["payload"] == {"text": "a\ud800"}
    async with Runtime([Holder("holder")], store=path) as rt2:
        rt2.types.register(Text)
        [request] = rt2.unfinished()
        assert request.payload == Text(text="a\ud800")
        result = await rt2.resume(request, until="text")
    assert [m.payload for m in result.replies] == [Text(text="a\ud800")]
    assert kept(path) == ([], [])


def fill_the_disk(rt: Runtime) -> None:
    """From now on the disk of ``rt``'s store has no room for another page (its messages)."""
    db = rt._transport.store._db  # type: ignore[attr-defined]
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")


async def publish_until_refused(
    rt: Runtime, returned: list[str], refused: list[StoreError], *, let_go: bool
) -> None:
    """Publish to ``rt``, whose disk is full, until a publish raises (``refused``); the
    correlations of those that returned (``returned``). ``let_go``: the caller lets the
    publish's error propagate, instead of waiting for the runtime to stop."""
    async with rt:
        fill_the_disk(rt)
        for n in range(2, 1000):
            msg = rt.message(Step(n=n), recipient="chain")
            try:
                await rt.publish(msg)
            except StoreError as exc:
                refused.append(exc)
                if let_go:
                    raise
                await anyio.sleep_forever()  # the runtime stops with the store's error
            returned.append(msg.correlation_id)


@pytest.mark.parametrize("let_go", [False, True])
async def test_a_write_the_disk_refuses_stops_the_runtime_with_the_stores_error(
    tmp_path: Path, let_go: bool
) -> None:
    """The disk fills up: the publish whose message could not be written raises, naming the
    store, instead of returning as if it were kept; the runtime stops with the store's own
    error, as itself (not in an ExceptionGroup, not SQLite's failed rollback), whatever the
    caller did with the publish's; it closes and gives the file back, and every publish that
    returned is in the file, which the next runtime opens and resumes."""
    path = tmp_path / "store.db"
    returned: list[str] = []
    refused: list[StoreError] = []
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01)
    with pytest.raises(StoreError) as caught:
        await publish_until_refused(rt, returned, refused, let_go=let_go)
    error = caught.value
    assert str(error) == f"cannot write the store {path}: database or disk is full"
    assert error.path == str(path)
    assert isinstance(error.__cause__, sqlite3.OperationalError)
    assert [str(e) for e in refused] == [f"{error}; the message is not kept"]
    assert rt.state is RuntimeState.CLOSED
    assert returned
    async with Runtime([Chain("chain")], store=path) as again:
        assert sorted(m.correlation_id for m in again.unfinished()) == sorted(returned)


class Stopping(Chain):
    """A chain that says whether its ``on_stop`` ran."""

    def __init__(self, id: str, last: int) -> None:
        super().__init__(id, last)
        self.stopped = False

    async def on_stop(self) -> None:
        self.stopped = True


async def ask_then_make_read_only(rt: Runtime) -> None:
    """Ask ``rt``'s chain, and as the answer comes, leave the block with its store no longer
    writable: the ends of the request's last deliveries are still to be written."""
    async with rt:
        rt.types.register(Done)
        await rt.ask(rt.message(Step(n=1), recipient="chain"), until="done")
        rt._transport.store._db.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]


async def test_a_write_refused_as_the_runtime_closes_is_raised_once_it_has_closed(
    tmp_path: Path,
) -> None:
    """The file can no longer be written just as the caller leaves the block: the write of
    the last ends, made as the runtime closes (or just before), fails. The runtime still
    closes whole (its agents stopped, the file given back) and then raises the store's
    error; the delivery whose end was not written runs again at the next start."""
    path = tmp_path / "store.db"
    chain = Stopping("chain", last=1)
    rt = Runtime([chain], store=path)
    with pytest.raises(StoreError, match=f"cannot write the store {path}: .*readonly"):
        await ask_then_make_read_only(rt)
    assert rt.state is RuntimeState.CLOSED
    assert chain.stopped
    again = Chain("chain", last=1)
    async with Runtime([again], store=path) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        await rt2.resume(request, until="done", timeout=5)
    assert again.seen == [1]
    assert kept(path) == ([], [])


def remove_store(folder: Path) -> None:
    """Remove the store ``store.db`` in ``folder``, its log and its index of the log."""
    for made in folder.glob("store.db*"):
        made.unlink()


async def publish_and_remove(rt: Runtime, folder: Path) -> None:
    """Publish to ``rt``, remove its store from ``folder``, publish again, and wait half a
    second (a sync, if one is due)."""
    async with rt:
        await rt.publish(rt.message(Step(n=2), recipient="chain"))
        remove_store(folder)
        await rt.publish(rt.message(Step(n=2), recipient="chain"))
        await anyio.sleep(0.5)


@pytest.mark.parametrize("sync", [0.01, 3600.0])
async def test_a_store_removed_while_held_is_an_error_not_a_silent_loss(
    tmp_path: Path, sync: float
) -> None:
    """The file is removed while the runtime holds it: SQLite goes on writing to the removed
    file and reports nothing, and the next start would find none of it. The runtime stops
    with the store's error at the next sync, or as it closes, whichever comes first."""
    path = tmp_path / "store.db"
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, store_sync=sync)
    rt.drain_timeout = 0.01
    with pytest.raises(StoreError, match="the file was removed or replaced while the runtime"):
        await publish_and_remove(rt, tmp_path)
    assert rt.state is RuntimeState.CLOSED


async def test_a_second_runtime_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Runtime([Chain("chain")], store=path):
        with pytest.raises(ConfigurationError, match=f"cannot use {path} as a store"):
            Runtime([Chain("chain")], store=path)
    async with Runtime([Chain("chain")], store=path):
        pass  # free again once the first closed


async def test_a_runtime_refused_for_its_agents_leaves_the_store_free(tmp_path: Path) -> None:
    """A runtime whose agents are refused (two of one id) is never made: the store it had
    opened is given back, so the runtime made right after, in the same process, opens it."""
    path = tmp_path / "store.db"
    with pytest.raises(DuplicateAgentError):
        Runtime([Chain("chain"), Chain("chain")], store=path)
    async with Runtime([Chain("chain")], store=path) as rt:
        result = await rt.ask(rt.message(Step(n=3), recipient="chain"), until="done")
    assert result.status == "complete"


async def test_a_runtime_that_refuses_to_start_leaves_the_store_free(tmp_path: Path) -> None:
    """A runtime refused at its start (a fallback no agent is) is done: the store it had
    opened is given back, so the runtime made right after, in the same process, opens it."""
    path = tmp_path / "store.db"
    rt = Runtime(store=path)
    rt.add(Chain("chain"), options=AgentOptions(fallback="missing"))
    with pytest.raises(ConfigurationError, match="fallback 'missing', which is not registered"):
        async with rt:
            pass
    assert rt.state is RuntimeState.CLOSED
    async with Runtime([Chain("chain")], store=path) as rt:
        result = await rt.ask(rt.message(Step(n=3), recipient="chain"), until="done")
    assert result.status == "complete"


async def test_a_store_reached_through_a_link_is_the_same_store(tmp_path: Path) -> None:
    """The lock is the file's, not the path's: a symbolic link to a held store (or a path
    through ``..``) is refused as the store itself is."""
    path = tmp_path / "store.db"
    link = tmp_path / "link.db"
    link.symlink_to(path)
    (tmp_path / "sub").mkdir()
    async with Runtime([Chain("chain")], store=path):
        for other in (link, tmp_path / "sub" / ".." / "store.db"):
            with pytest.raises(ConfigurationError, match="another runtime holds it"):
                Runtime([Chain("chain")], store=other)
    async with Runtime([Chain("chain")], store=link):
        with pytest.raises(ConfigurationError, match="another runtime holds it"):
            Runtime([Chain("chain")], store=path)


async def test_a_store_named_by_a_link_to_no_file_yet_is_made_there(tmp_path: Path) -> None:
    """A store is made if missing, also through a symbolic link to a file not made yet (a
    store kept on another disk): the file is made where the link points, and taken as the
    store from then on; ``genie approvals`` reads it through the link."""
    (tmp_path / "disk").mkdir()
    link = tmp_path / "store.db"
    link.symlink_to(tmp_path / "disk" / "store.db")
    async with Runtime([Chain("chain")], store=link) as rt:
        result = await rt.ask(rt.message(Step(n=3), recipient="chain"), until="done")
    assert result.status == "complete"
    assert (tmp_path / "disk" / "store.db").is_file()
    client = StoreClient(link)
    try:
        assert client.approvals() == []
    finally:
        client.close()


def test_a_client_started_with_the_runtime_waits_for_its_tables(tmp_path: Path) -> None:
    """``genie approvals`` may open the file in the moment between a runtime making it and
    writing its tables: that file is the runtime's store, not an empty database."""
    path = tmp_path / "store.db"
    sqlite3.connect(path).close()  # made, no tables yet
    made: list[DeliveryStore] = []
    writer = threading.Timer(0.2, lambda: made.append(DeliveryStore(path)))
    writer.start()
    try:
        client = StoreClient(path)
        assert client.approvals() == []
    finally:
        writer.join()
        for store in made:
            store.close()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # and nobody writes it: it is an empty database
    with pytest.raises(ConfigurationError, match="it is an empty database"):
        StoreClient(empty)


async def test_a_damaged_store_is_a_one_line_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A page of the file overwritten (a disk fault, a bad copy) past an intact header: the
    runtime and the CLI say which file and that it is damaged, with no traceback."""
    from genie._cli.main import main

    path = tmp_path / "store.db"
    gate = anyio.Event()
    async with Runtime([Chain("chain", gate=gate)], store=path, drain_timeout=0.01) as rt:
        for n in range(2, 300):  # kept work over several pages
            await rt.publish(rt.message(Step(n=n), recipient="chain"))
        await anyio.sleep(0.05)
    assert path.stat().st_size > 3 * 4096
    with path.open("r+b") as f:
        f.seek(2 * 4096)
        f.write(bytes(range(256)) * 16)
    with pytest.raises(ConfigurationError, match=r"store\.db as a store: it is damaged"):
        Runtime([Chain("chain")], store=path)
    assert main(["approvals", "list", "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert "as a store: it is damaged" in err
    assert err.count("\n") == 1


def test_a_store_and_a_transport_are_refused_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="a store or a transport, not both"):
        Runtime(store=tmp_path / "s.db", transport=LocalTransport())


@pytest.mark.parametrize("where", ["store", "nats"])
def test_a_seed_is_refused_with_a_store_or_a_transport_between_processes(
    tmp_path: Path, where: str
) -> None:
    """A seeded runtime makes the same ids at every start: a store keeps ids across starts,
    so its second start's first request would take the first start's kept request's id (and
    a broker would drop a message as an earlier one's duplicate). In one process's own
    transport ids end with the process: a seed is kept there."""
    if where == "store":
        kept: dict[str, object] = {"store": tmp_path / "s.db"}
    else:
        nats = pytest.importorskip("genie.nats._transport")
        kept = {"transport": nats.NatsTransport("nats://127.0.0.1:1", nats.NatsNames("seeded"))}
    with pytest.raises(ConfigurationError, match="give seed without a store or a transport"):
        Runtime(seed=1, **kept)  # type: ignore[arg-type]
    assert not (tmp_path / "s.db").exists()
    Runtime(seed=1, transport=LocalTransport())


async def test_a_new_request_under_a_kept_requests_correlation_is_refused(
    tmp_path: Path,
) -> None:
    """A request kept from a start before, not resumed, keeps its correlation: a message
    published in it from outside, with a cause or not, is refused (it would take the kept
    request's place in the store, and its end would end the kept one, unrun); resumed or
    discarded, the correlation is free again."""
    path = tmp_path / "store.db"
    async with Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01) as rt:
        await rt.publish(rt.message(Step(n=0), recipient="chain", correlation_id="order-1"))
        await anyio.sleep(0.05)
    async with Runtime([Chain("chain")], store=path) as rt2:
        rt2.types.register(Done)
        [kept_request] = rt2.unfinished()
        new = rt2.message(Step(n=10), recipient="chain", correlation_id="order-1")
        with pytest.raises(DeliveryError, match="keeps a request of that correlation"):
            await rt2.ask(new, until="done", timeout=5)
        with pytest.raises(DeliveryError, match=r"rt.discard\('order-1'\) drops it"):
            rt2.publish_nowait(new)
        caused = kept_request.child(
            Step(n=3), sender="outside", recipient="chain", id="outside-1", created_at=1.0
        )
        with pytest.raises(DeliveryError, match="cannot publish 'step' in correlation order-1"):
            await rt2.publish(caused)
        assert rt2.statistics().published == 0
        assert [m.id for m in rt2.unfinished()] == [kept_request.id]
        result = await rt2.resume(kept_request, until="done", timeout=5)
        assert [m.payload for m in result.replies] == [Done(n=4)]
        # Resumed and ended: the correlation is free for a new request.
        again = await rt2.ask(new, until="done", timeout=5)
        assert [m.payload for m in again.replies] == [Done(n=10)]
    assert kept(path) == ([], [])


def test_a_file_that_is_no_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(ConfigurationError, match=r"notes\.txt as a store"):
        Runtime(store=path)


@pytest.mark.parametrize("kind", ["directory", "named pipe", "device"])
def test_a_path_that_is_no_file_is_refused_by_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """A directory, a named pipe or a device as the store: named by what it is, where SQLite
    said "unable to open database file" or "disk I/O error" (and /dev/null took the lock file
    beside it), by the runtime and by ``genie approvals`` alike; nothing is made."""
    from genie._cli.main import main

    path = tmp_path / "store"
    if kind == "directory":
        path.mkdir()
        said = "it is a directory"
    elif kind == "named pipe":
        os.mkfifo(path)
        said = "it is a named pipe (FIFO), not a regular file"
    else:
        path = Path("/dev/null")
        said = "it is a character device, not a regular file"
    with pytest.raises(ConfigurationError) as raised:
        Runtime(store=path)
    assert str(raised.value) == f"cannot use {path} as a store: {said}"
    assert main(["approvals", "list", "--store", str(path)]) == 2
    assert capsys.readouterr().err == f"genie approvals: cannot use {path} as a store: {said}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == (["store"] if kind != "device" else [])


@pytest.mark.parametrize(
    "table", ["customers (name TEXT)", "messages (id INTEGER PRIMARY KEY, author TEXT, text TEXT)"]
)
def test_a_database_of_something_else_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    """A --store that names another application's SQLite file (a typo) is refused before
    anything in it changes: no tables added, its journal mode kept. A table of its own
    named as one of genie's (a chat's ``messages``) does not make it a store."""
    from genie._cli.main import main

    path = tmp_path / "crm.db"
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table}")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(ConfigurationError, match=r"crm\.db as a store: it is a database of"):
        Runtime(store=path)
    assert main(["approvals", "list", "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert "it is a database of something else" in err
    assert err.count("\n") == 1
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.db"]  # no lock left beside it
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    db.close()


async def test_rows_genie_did_not_write_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store another process wrote junk into: each command says which table, in a line."""
    from genie._cli.main import main

    path = tmp_path / "store.db"
    async with Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01) as rt:
        await rt.publish(rt.message(Step(n=0), recipient="chain"))
        await anyio.sleep(0.05)
    for table, junk, undone in (
        # A number where SQLite keeps the text it is given: undone after, to read on.
        ("requests", "UPDATE requests SET charged = 'x';", "UPDATE requests SET charged = 0;"),
        ("asked", "INSERT INTO asked VALUES ('approval-1', 'x');", "DELETE FROM asked;"),
        ("requests", "UPDATE requests SET body = 'not json';", ""),
        (
            "messages",
            # (the request's row read first, and found: gone)
            "DELETE FROM requests; UPDATE messages SET recipients = 'junk', "
            'body = \'{"type":"genie.approval_request"}\';',
            "",
        ),
    ):
        db = sqlite3.connect(path)
        db.executescript(junk)
        db.close()
        with pytest.raises(ConfigurationError, match=f"a row of {table} is not genie's"):
            Runtime([Chain("chain")], store=path)
        db = sqlite3.connect(path)
        db.executescript(undone)
        db.close()
    assert main(["approvals", "list", "--store", str(path)]) == 2
    err = capsys.readouterr().err
    assert "a row of messages is not genie's" in err
    assert err.count("\n") == 1


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
    said = [r.levelname for r in caplog.records if "which this runtime does not host" in r.msg]
    assert said == ["ERROR"]  # ``genie run`` shows errors only, unless -v


async def test_a_request_this_runtime_cannot_read_is_reported_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A request whose type the runtime started on the store does not register (a pipeline
    that changed): not listed, said in the log with the store's name, and left in the file
    for a runtime that can read it, which resumes it."""
    path = tmp_path / "store.db"
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01)
    async with rt:
        msg = rt.message(Step(n=0), recipient="chain")
        await rt.publish(msg)
        await anyio.sleep(0.05)
    async with Runtime([Failing("other")], store=path) as other:
        assert other.unfinished() == []
    said = f"store {path}: request {msg.correlation_id} cannot be resumed here"
    # An error: ``genie run`` shows errors only, unless -v.
    assert [r.levelname for r in caplog.records if said in r.getMessage()] == ["ERROR"]
    assert "unknown message type 'step'" in caplog.text
    async with Runtime([Chain("chain")], store=path) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        result = await rt2.resume(request, until="done", timeout=5)
    assert [m.payload for m in result.replies] == [Done(n=4)]
    assert kept(path) == ([], [])


async def test_a_request_this_runtime_cannot_read_is_named_and_can_be_discarded(
    tmp_path: Path,
) -> None:
    """A request whose payload no longer fits its model (the model edited since): the
    runtime names it with what validation said (``unreadable``), and ``discard`` drops it
    and all that was kept of it, so the store is empty."""
    path = tmp_path / "store.db"
    rt = Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01)
    async with rt:
        msg = rt.message(Step(n=0), recipient="chain")
        await rt.publish(msg)
        await anyio.sleep(0.05)
    with sqlite3.connect(path) as db:
        db.execute("""UPDATE requests SET body = replace(body, '"n":0', '"n":"zero"')""")
    async with Runtime([Chain("chain")], store=path) as rt2:
        assert rt2.unfinished() == []
        [(cid, why)] = rt2.unreadable().items()
        assert cid == msg.correlation_id
        assert why == (
            "invalid 'step' message: field 'n': Input should be a valid integer, unable to "
            "parse string as an integer"
        )
        rt2.discard(cid)
        assert rt2.unreadable() == {}
        with pytest.raises(InvalidArgumentError, match=f"keeps no request {cid}"):
            rt2.discard(cid)
    assert kept(path) == ([], [])
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone() == (0,)


async def test_a_request_discarded_once_the_runtime_closed_is_refused_saying_so(
    tmp_path: Path,
) -> None:
    """``discard`` after the runtime closed (its store given back) is refused as a closed
    runtime refuses a publish, and the request stays kept for the next start."""
    path = tmp_path / "store.db"
    async with Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01) as rt:
        await rt.publish(rt.message(Step(n=0), recipient="chain"))
        await anyio.sleep(0.05)
    async with Runtime([Chain("chain")], store=path) as rt:
        [request] = rt.unfinished()
    with pytest.raises(RuntimeClosedError, match=r"cannot discard .* the runtime is closed"):
        rt.discard(request.correlation_id)
    async with Runtime([Chain("chain")], store=path) as rt:
        assert [r.id for r in rt.unfinished()] == [request.id]


async def test_without_a_store_nothing_is_unreadable() -> None:
    async with Runtime([Chain("chain")]) as rt:
        assert rt.unreadable() == {}
        with pytest.raises(InvalidArgumentError, match="no store"):
            rt.discard("x")


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


class Held(BaseAgent):
    """Answers a ping with a pong; with a ``gate``, only once the gate opens."""

    produces = (Pong,)

    def __init__(self, id: str, gate: anyio.Event | None = None) -> None:
        super().__init__(id)
        self.gate = gate
        self.started = anyio.Event()
        self.answered = anyio.Event()
        self.seen: list[int] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        self.seen.append(payload.n)
        self.answered.set()
        return ctx.reply(Pong(n=payload.n))


def messages(path: Path) -> list[tuple[str, str]]:
    """Each message the store keeps: its id, and the agents whose delivery has not ended
    (each mapped to the agent it was for), as stored."""
    db = sqlite3.connect(path)
    try:
        return [(str(i), str(r)) for i, r in db.execute("SELECT id, recipients FROM messages")]
    finally:
        db.close()


async def test_a_fan_out_is_kept_once_with_the_deliveries_that_have_not_ended(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    agents = [Held("a"), Held("b", anyio.Event()), Held("c", anyio.Event())]
    async with Runtime(agents, store=path, drain_timeout=0.01) as rt:
        for agent in agents:
            rt.subscribe(agent.id, "ping")
        msg = rt.message(Ping(n=5), sender="caller")
        await rt.publish(msg)
        with anyio.fail_after(5):
            await agents[1].started.wait()
            await agents[2].started.wait()
            await agents[0].answered.wait()
    # One row for the three deliveries; a's ended, b's and c's were cut by the stop.
    assert messages(path) == [(msg.id, '{"b":"b","c":"c"}')]
    assert kept(path) == ([f"{msg.id}:b", f"{msg.id}:c"], [msg.correlation_id])

    again = [Held("a"), Held("b"), Held("c")]
    async with Runtime(again, store=path) as rt2:
        for agent in again:
            rt2.subscribe(agent.id, "ping")
        [request] = rt2.unfinished()
        result = await rt2.resume(request, until=lambda m: len(again[1].seen + again[2].seen) == 2)
    assert result.complete
    assert [agent.seen for agent in again] == [[], [5], [5]]  # a's delivery is not run again
    assert kept(path) == ([], [])


async def test_a_fallback_cut_by_a_stop_goes_on_with_its_agents_delivery(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    backup = Held("backup", anyio.Event())
    rt = Runtime(store=path, drain_timeout=0.01)
    rt.add(Failing("flaky"), options=AgentOptions(fallback="backup"))
    rt.add(backup)
    async with rt:
        msg = rt.message(Ping(n=3), recipient="flaky")
        await rt.publish(msg)
        with anyio.fail_after(5):
            await backup.started.wait()
    # The fallback holds flaky's delivery: its id, the idempotency key, stays flaky's.
    assert messages(path) == [(msg.id, '{"backup":"flaky"}')]
    assert kept(path) == ([f"{msg.id}:flaky"], [msg.correlation_id])

    resumed = Held("backup")
    rt2 = Runtime(store=path)
    rt2.add(Failing("flaky"), options=AgentOptions(fallback="backup"))
    rt2.add(resumed)
    async with rt2:
        [request] = rt2.unfinished()
        result = await rt2.resume(request, until="pong", timeout=5)
    assert [m.payload for m in result.replies] == [Pong(n=3)]
    assert resumed.seen == [3]
    assert kept(path) == ([], [])


async def test_a_store_made_before_messages_were_kept_once_is_taken_over(tmp_path: Path) -> None:
    # The layout of genie before this one: a row per delivery, the message in each.
    path = tmp_path / "store.db"
    staging = Runtime()
    msg = staging.message(Ping(n=9), sender="caller")
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE deliveries (id TEXT PRIMARY KEY, correlation_id TEXT NOT NULL, "
        "body TEXT NOT NULL);"
        "CREATE TABLE requests (correlation_id TEXT PRIMARY KEY, body TEXT NOT NULL, "
        "charged INTEGER NOT NULL DEFAULT 0);"
    )
    body = message_json(msg)
    db.executemany(
        "INSERT INTO deliveries VALUES (?, ?, ?)",
        [(f"{msg.id}:{a}", msg.correlation_id, delivery_json(a, body)) for a in ("a", "b")],
    )
    db.execute(
        "INSERT INTO requests (correlation_id, body) VALUES (?, ?)", (msg.correlation_id, body)
    )
    db.commit()
    db.close()

    agents = [Held("a"), Held("b")]
    async with Runtime(agents, store=path) as rt:
        for agent in agents:
            rt.subscribe(agent.id, "ping")
        [request] = rt.unfinished()
        assert request.id == msg.id
        await rt.resume(request, until=lambda m: len(agents[0].seen + agents[1].seen) == 2)
    assert [agent.seen for agent in agents] == [[9], [9]]
    assert kept(path) == ([], [])


async def test_a_pipeline_whose_agent_is_refused_leaves_its_store_free(tmp_path: Path) -> None:
    """``Pipeline.runtime(store=...)`` refused for an agent (its ``adapt`` raised, a constructor
    refused) leaves the store untouched and free: the next try, in the same process, runs."""
    (tmp_path / "p.yaml").write_text(
        "agents: [{id: echo, use: 'tests.conftest:Echo'}]\n"
        "entry: {type: ping, to: echo}\noutput: pong\n"
    )
    pipeline = load_pipeline(tmp_path / "p.yaml")
    path = tmp_path / "store.db"

    def refuse(agent: Agent, options: AgentOptions) -> tuple[Agent, AgentOptions]:
        raise ValueError(f"{agent.id} refused")

    with pytest.raises(ValueError, match="echo refused"):
        pipeline.runtime(store=path, adapt=refuse)
    assert not path.exists()
    async with pipeline.runtime(store=path) as rt:
        result = await pipeline.ask(rt, rt.message(Ping(n=1), recipient="echo"))
    assert result.status == "ok"


async def test_a_pipeline_whose_adapt_breaks_its_agents_leaves_its_store_free(
    tmp_path: Path,
) -> None:
    """An ``adapt`` that gives an agent of another id (one already given, say) is refused
    before the store is opened, naming the agent; one whose replacement the runtime refuses
    (no agent at all) gives the store back: the next try, in the same process, runs."""
    (tmp_path / "p.yaml").write_text(
        "agents:\n"
        "  - {id: echo, use: 'tests.conftest:Echo'}\n"
        "  - {id: other, use: 'tests.conftest:Echo'}\n"
        "entry: {type: ping, to: echo}\noutput: pong\n"
    )
    pipeline = load_pipeline(tmp_path / "p.yaml")
    path = tmp_path / "store.db"
    given: list[Agent] = []

    def first_twice(agent: Agent, options: AgentOptions) -> tuple[Agent, AgentOptions]:
        given.append(agent)
        return given[0], options

    with pytest.raises(ConfigurationError, match="for agent 'other': a replacement keeps the id"):
        pipeline.runtime(store=path, adapt=first_twice)
    assert not path.exists()

    def unhandled(agent: Agent, options: AgentOptions) -> tuple[Agent, AgentOptions]:
        if agent.id == "echo":
            return agent, options
        return _Named("other"), options  # type: ignore[return-value]

    with pytest.raises(ConfigurationError, match="is not an Agent"):
        pipeline.runtime(store=path, adapt=unhandled)
    async with pipeline.runtime(store=path) as rt:
        result = await pipeline.ask(rt, rt.message(Ping(n=1), recipient="echo"))
    assert result.status == "ok"


class _Named:
    """An id and nothing else: no agent."""

    def __init__(self, id: str) -> None:
        self.id = id


async def test_a_pipeline_run_on_a_store_names_its_file_there(tmp_path: Path) -> None:
    """``Pipeline.runtime(store=...)`` (the door of ``genie run`` and ``genie serve`` too)
    records the pipeline file, resolved, so ``genie approvals`` can say the command that
    resumes its requests; a store made before that (no such table) is taken over, and a
    runtime of no pipeline file records none."""
    (tmp_path / "p.yaml").write_text(
        "agents: [{id: echo, use: 'tests.conftest:Echo'}]\n"
        "entry: {type: ping, to: echo}\noutput: pong\n"
    )
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    pipeline = load_pipeline(tmp_path / "link" / "p.yaml")  # resolved: the file itself
    path = tmp_path / "store.db"
    async with Runtime(store=path):
        pass
    db = sqlite3.connect(path)
    db.execute("DROP TABLE about")  # as genie made the file before it named the pipeline
    db.commit()
    db.close()

    def named() -> str | None:
        client = StoreClient(path)
        try:
            return client.pipeline()
        finally:
            client.close()

    assert named() is None  # an older file: read as naming none
    async with pipeline.runtime(store=path):
        pass
    assert named() == str((tmp_path / "p.yaml").resolve())
    async with Runtime(store=path):  # no pipeline file: what was recorded stays
        pass
    assert named() == str((tmp_path / "p.yaml").resolve())


def test_a_pipeline_named_for_no_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="store_pipeline is recorded in a store"):
        Runtime(store_pipeline=tmp_path / "p.yaml")


@pytest.mark.parametrize("sync", [0, -1.0, math.nan, math.inf, "sometimes", True, None])
def test_a_store_sync_that_is_no_time_is_refused(tmp_path: Path, sync: object) -> None:
    with pytest.raises(ConfigurationError, match="store_sync must be 'always' or a number"):
        Runtime(store=tmp_path / "s.db", store_sync=sync)  # type: ignore[arg-type]


@pytest.mark.parametrize("sync", [0.05, "always"])
async def test_a_stop_and_a_resume_hold_whatever_the_store_sync(
    tmp_path: Path, sync: float | str
) -> None:
    path = tmp_path / "store.db"
    first = Chain("chain", gate=anyio.Event())
    async with Runtime([first], store=path, store_sync=sync, drain_timeout=0.01) as rt:  # type: ignore[arg-type]
        msg = rt.message(Step(n=0), recipient="chain")
        await rt.publish(msg)
        with anyio.fail_after(5):
            await first.waiting.wait()
    async with Runtime([Chain("chain")], store=path, store_sync=sync) as rt2:  # type: ignore[arg-type]
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        result = await rt2.resume(request, until="done")
    assert [m.payload for m in result.replies] == [Done(n=4)]
    assert kept(path) == ([], [])


async def test_writes_are_brought_to_the_disk_every_store_sync_while_there_are_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    first = threading.Event()
    sync = DeliveryStore.sync

    def counted(store: DeliveryStore) -> None:
        synced.append(1)
        sync(store)
        first.set()

    monkeypatch.setattr(DeliveryStore, "sync", counted)
    async with Runtime([Chain("chain")], store=tmp_path / "store.db", store_sync=0.02) as rt:
        rt.types.register(Done)
        await rt.ask(rt.message(Step(n=0), recipient="chain"), until="done")
        assert await anyio.to_thread.run_sync(first.wait, 5)
        await anyio.sleep(0.15)  # idle: nothing more written, nothing more to sync
        assert len(synced) <= 2


async def test_an_idle_store_costs_no_cpu_however_small_its_store_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store_sync of a microsecond: the sync waits for a write, not for the clock, so a
    runtime with nothing to write does not spin, and the next write is still brought to the
    disk."""
    synced = threading.Event()
    sync = DeliveryStore.sync

    def counted(store: DeliveryStore) -> None:
        sync(store)
        synced.set()

    monkeypatch.setattr(DeliveryStore, "sync", counted)
    async with Runtime([Chain("chain")], store=tmp_path / "store.db", store_sync=1e-6) as rt:
        rt.types.register(Done)
        await rt.ask(rt.message(Step(n=0), recipient="chain"), until="done")
        assert await anyio.to_thread.run_sync(synced.wait, 5)
        idle = time.process_time()
        await anyio.sleep(0.5)
        idle = time.process_time() - idle
        synced.clear()
        await rt.ask(rt.message(Step(n=3), recipient="chain"), until="done")
        assert await anyio.to_thread.run_sync(synced.wait, 5)
    assert idle < 0.1  # a spin takes about the whole half second, a wait next to nothing


def test_a_store_of_the_old_layout_that_is_not_genies_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE deliveries (id TEXT PRIMARY KEY, correlation_id TEXT, body TEXT)")
    db.execute("INSERT INTO deliveries VALUES ('m:a', 'c', 'not json')")
    db.commit()
    db.close()
    with pytest.raises(ConfigurationError, match="kept delivery m:a is not genie's"):
        Runtime(store=path)


KILLED_AFTER_PUBLISH = """
import os, signal, sys

import anyio

from genie import BaseAgent, Context, Payload, Runtime, handler


class Job(Payload):
    message_type = "job"
    n: int


class Worker(BaseAgent):
    @handler
    async def on_job(self, payload: Job, ctx: Context) -> None:
        await anyio.sleep(3600)


async def main() -> None:
    sync = sys.argv[2] if sys.argv[2] == "always" else float(sys.argv[2])
    async with Runtime([Worker("w")], store=sys.argv[1], store_sync=sync) as rt:
        await rt.publish(rt.message(Job(n=7), recipient="w"))
        os.kill(os.getpid(), signal.SIGKILL)  # the moment publish returned


anyio.run(main)
"""


@pytest.mark.parametrize("sync", ["1", "always"])
def test_a_publish_that_returned_survives_a_kill(tmp_path: Path, sync: str) -> None:
    """``await rt.publish(...)`` returns with the message in the store: a process killed the
    moment it returns leaves the request for the next start."""
    script = tmp_path / "child.py"
    script.write_text(KILLED_AFTER_PUBLISH)
    path = tmp_path / "store.db"
    child = subprocess.run(
        [sys.executable, str(script), str(path), sync], capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    [delivery], [request] = kept(path)  # the job's delivery to w, and its request
    assert delivery.endswith(":w")
    assert delivery.startswith(request)  # the request's own message: its id is the correlation


async def test_a_caller_cancelled_leaves_a_kept_request_to_go_on(tmp_path: Path) -> None:
    """A caller that goes away while its request runs (a cancel scope around ``ask``, a
    client gone from genie serve) does not cancel a request the store keeps: it goes on, and
    one the stop then cuts short is kept for the next start, as a kill would leave it. A
    resumed request whose caller goes away again is kept again."""
    path = tmp_path / "store.db"
    first = Chain("chain", gate=anyio.Event())
    async with Runtime([first], store=path, drain_timeout=0.01) as rt:
        rt.types.register(Done)
        msg = rt.message(Step(n=0), recipient="chain")
        with anyio.move_on_after(0.3):
            await rt.ask(msg, until="done")
        assert first.seen == [0, 1]  # step 2 waits at the gate, not cancelled
    assert kept(path)[1] == [msg.correlation_id]
    async with Runtime([Chain("chain", gate=anyio.Event())], store=path, drain_timeout=0.01) as rt:
        rt.types.register(Done)
        [request] = rt.unfinished()
        with anyio.move_on_after(0.3):
            await rt.resume(request, until="done")
    assert kept(path)[1] == [msg.correlation_id]
    second = Chain("chain")
    async with Runtime([second], store=path) as rt:
        rt.types.register(Done)
        [request] = rt.unfinished()
        result = await rt.resume(request, until="done", timeout=5)
    assert second.seen == [2, 3, 4]
    assert [m.payload for m in result.replies] == [Done(n=4)]
    assert kept(path) == ([], [])


INTERRUPTED = """
name: slow
agents:
  - id: chain
    use: tests.durable.test_store:Slow
entry:
  type: step
  to: chain
  payload: {n: 0}
output: done
timeout: 60s
"""


class Slow(Chain):
    """A chain whose step 2 stalls while DRILL_SLOW is set (a run to interrupt)."""

    def __init__(self, id: str) -> None:
        super().__init__(id, gate=anyio.Event() if os.environ.get("DRILL_SLOW") else None)


def stalled(store: Path) -> bool:
    """The store keeps one delivery, of a message the request's handlers made (step 2)."""
    try:
        deliveries, requests = kept(store)
    except sqlite3.OperationalError:  # the file is made, its tables not yet
        return False
    return len(deliveries) == 1 and len(requests) == 1 and requests[0] not in deliveries[0]


@contextlib.contextmanager
def slow_run(pipeline: Path, store: Path, **env: str) -> Iterator[subprocess.Popen[str]]:
    """``genie run PIPELINE --store STORE`` in a process of its own, whose steps stall
    (DRILL_SLOW) and whose Ctrl-C is a terminal's; killed if the test leaves it running."""
    root = Path(__file__).resolve().parents[2]
    run = subprocess.Popen(
        [sys.executable, "-m", "genie._cli", "run", str(pipeline), "--store", str(store)],
        env={**os.environ, "PYTHONPATH": str(root), "DRILL_SLOW": "1", **env},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's
    )
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def wait_for(there: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if there():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"the run never got there: {what}")


def test_genie_run_interrupted_resumes_at_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C on ``genie run --store`` while its request runs: a line (not a traceback) says
    the request stays in the store, and the same command run again resumes it instead of
    sending a new one."""
    from genie._cli.main import main

    (tmp_path / "slow.yaml").write_text(INTERRUPTED)
    store = tmp_path / "slow.db"
    with slow_run(tmp_path / "slow.yaml", store) as run:
        # steps 0 and 1 ended, and are written
        wait_for(lambda: store.exists() and stalled(store), "step 2 stalls")
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
    assert run.returncode == 130
    assert err.splitlines()[-1] == (
        "genie run: interrupted: what it had not finished is kept; "
        f"genie run {tmp_path / 'slow.yaml'} --store {store} resumes it"
    )
    assert "Traceback" not in err
    [request] = kept(store)[1]
    assert main(["run", str(tmp_path / "slow.yaml"), "--store", str(store), "--json"]) == 0
    captured = capsys.readouterr()
    assert "resuming 1 unfinished request" in captured.err
    assert json.loads(captured.out)["correlation_id"] == request
    assert kept(store) == ([], [])


class SlowToStop(Slow):
    """A slow chain whose stop blocks the loop a while when DRILL_STOPPING names a file, made
    as it begins: a second Ctrl-C lands in it, as in a store's close."""

    async def on_stop(self) -> None:
        if os.environ.get("DRILL_STOPPING"):
            os.close(os.open(os.environ["DRILL_STOPPING"], os.O_CREAT | os.O_WRONLY))
            time.sleep(10)  # noqa: ASYNC251 - it blocks the loop, as a store's close does


def test_genie_run_interrupted_twice_says_so_in_a_line(tmp_path: Path) -> None:
    """A second Ctrl-C while ``genie run --store`` stops after the first (its store closing,
    an agent stopping) is said as the first is: a line, exit 130, not a traceback."""
    (tmp_path / "slow.yaml").write_text(INTERRUPTED.replace(":Slow", ":SlowToStop"))
    store = tmp_path / "slow.db"
    stopping = tmp_path / "stopping"
    with slow_run(tmp_path / "slow.yaml", store, DRILL_STOPPING=str(stopping)) as run:
        wait_for(lambda: store.exists() and stalled(store), "step 2 stalls")
        run.send_signal(signal.SIGINT)
        wait_for(stopping.exists, "the runtime stops")
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert run.returncode == 130
    assert err.splitlines()[-1] == (
        "genie run: interrupted: what it had not finished is kept; "
        f"genie run {tmp_path / 'slow.yaml'} --store {store} resumes it"
    )
    assert len(kept(store)[1]) == 1


class Filling(Chain):
    """A chain whose step 2 leaves no file of its process room to grow while DRILL_FULL is
    set: from then on every write that needs more of the disk fails, as on a full disk
    (Python ignores SIGXFSZ, so such a write fails with EFBIG)."""

    @handler
    async def on_step(self, payload: Step, ctx: Context) -> Message:
        if payload.n == 2 and os.environ.get("DRILL_FULL"):
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
        step = await super().on_step(payload, ctx)
        assert isinstance(step, Message)
        return step


FILLING = INTERRUPTED.replace("name: slow", "name: filling").replace(":Slow", ":Filling")


def test_genie_run_whose_store_fails_says_so_in_a_line_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The disk fills up under ``genie run --store``: one line names the store and what
    SQLite said, and how to resume (no traceback, no ExceptionGroup), exit 1; the same command
    run again, with room, resumes the request from the step the failed write would have
    ended, and it completes."""
    from genie._cli.main import main

    root = Path(__file__).resolve().parents[2]
    pipeline = tmp_path / "filling.yaml"
    pipeline.write_text(FILLING)
    store = tmp_path / "filling.db"
    command = [sys.executable, "-m", "genie._cli", "run", str(pipeline), "--store", str(store)]
    env = {**os.environ, "PYTHONPATH": str(root), "DRILL_FULL": "1"}
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr == (
        f"genie run: cannot write the store {store}: disk I/O error; the run stopped, and what "
        f"it kept before is in the store: genie run {pipeline} --store {store} resumes it\n"
    )
    assert failed.stdout == ""
    [_], [request] = kept(store)  # step 2's delivery, whose end the failed write held
    assert main(["run", str(pipeline), "--store", str(store), "--json"]) == 0
    captured = capsys.readouterr()
    assert "resuming 1 unfinished request" in captured.err
    result = json.loads(captured.out)
    assert (result["correlation_id"], result["output"]["payload"]) == (request, {"n": 4})
    assert kept(store) == ([], [])


class Removing(Chain):
    """A chain whose step 2 removes the store DRILL_REMOVE names (its log and index too),
    then waits for a sync to see it."""

    @handler
    async def on_step(self, payload: Step, ctx: Context) -> Message:
        store = os.environ.get("DRILL_REMOVE")
        if payload.n == 2 and store:
            for made in Path(store).parent.glob(f"{Path(store).name}*"):
                if made.suffix != ".lock":
                    made.unlink()
            await anyio.sleep(2)
        step = await super().on_step(payload, ctx)
        assert isinstance(step, Message)
        return step


REMOVING = INTERRUPTED.replace("name: slow", "name: removing").replace(":Slow", ":Removing")


def test_genie_run_whose_store_is_removed_says_nothing_is_kept(tmp_path: Path) -> None:
    """The store is removed under ``genie run --store``: the line says what it kept is gone
    with the file, not that the same command resumes it (it would send a new request)."""
    root = Path(__file__).resolve().parents[2]
    pipeline = tmp_path / "removing.yaml"
    pipeline.write_text(REMOVING)
    store = tmp_path / "removing.db"
    command = [sys.executable, "-m", "genie._cli", "run", str(pipeline), "--store", str(store)]
    command += ["--store-sync", "0.05"]
    env = {**os.environ, "PYTHONPATH": str(root), "DRILL_REMOVE": str(store)}
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1, failed.stderr
    assert failed.stderr == (
        f"genie run: cannot write the store {store}: the file was removed or replaced while "
        "the runtime held it, and what it writes is not kept; the run stopped, and what it "
        f"kept is not in {store}: send it again\n"
    )


class Part(Payload):
    message_type = "part"
    name: str


async def test_a_fan_ins_deadline_is_kept_at_a_stop_and_set_again(tmp_path: Path) -> None:
    """A declared gather with one part of two keeps its session in the store: its deadline
    is a timer the next start sets again (re-running the part), so a stop loses nothing: no
    dead letter, counted in ``kept_timers``; resumed, the deadline ends the session."""
    from genie.pipeline._gather import GatherNode, gathered_model

    bundle = gathered_model("bundle")

    def fan(deadline: float) -> GatherNode:
        return GatherNode(
            "fan", expect=("a", "b"), by="sender", deadline=deadline, emit=bundle, to="user"
        )

    path = tmp_path / "store.db"
    rt = Runtime([fan(3600)], store=path, drain_timeout=0.01)
    async with rt:
        rt.types.register(Part)
        await rt.publish(rt.message(Part(name="a"), recipient="fan", sender="a"))
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().timers_pending == 1
    assert list(rt.dead_letters) == []
    assert rt.shutdown_report is not None
    assert (rt.shutdown_report.cancelled_timers, rt.shutdown_report.kept_timers) == (0, 1)
    async with Runtime([fan(0.1)], store=path) as rt2:
        rt2.types.register(Part)
        [request] = rt2.unfinished()
        resumed = await rt2.resume(request, until="bundle", timeout=5)
    [reply] = resumed.replies
    assert isinstance(reply.payload, bundle)
    assert (reply.payload.status, reply.payload.missing) == ("partial", ("b",))
    assert kept(path) == ([], [])


async def test_deliveries_a_stop_cuts_short_are_kept_not_dead_letters(tmp_path: Path) -> None:
    """A handler running at the stop and the deliveries queued behind it stay in the store,
    and the next start runs them: nothing is lost, so none is a dead letter or an audit row;
    the shutdown report counts them kept, and they stay in flight in the closed runtime's
    counts. A delivery whose request was cancelled still ends as a dead letter."""
    path = tmp_path / "store.db"
    audit = MemoryAuditLog()
    first = Chain("chain", gate=anyio.Event())  # never opened: the running step waits
    rt = Runtime([first], store=path, audit=audit, drain_timeout=0.01)
    async with rt:
        running = rt.message(Step(n=2), recipient="chain")
        await rt.publish(running)
        with anyio.fail_after(5):
            await first.waiting.wait()  # it runs, and holds the agent's one slot
        queued = [rt.message(Step(n=3), recipient="chain") for _ in range(2)]
        for msg in queued:
            await rt.publish(msg)  # queued behind it
        dropped = rt.message(Step(n=3), recipient="chain")
        await rt.publish(dropped)
        rt.cancel(dropped.correlation_id)
        await anyio.wait_all_tasks_blocked()
    assert [(d.message.id, d.kind) for d in rt.dead_letters] == [(dropped.id, "cancelled")]
    assert [r.action for r in audit.records] == ["dead_letter:cancelled"]
    report = rt.shutdown_report
    assert report is not None
    assert (report.cancelled_running, report.discarded_queued, report.kept_deliveries) == (0, 1, 3)
    stats = rt.statistics()
    assert stats.delivered == (
        stats.handled + stats.denied + stats.dead_lettered + stats.shed + stats.in_flight
    )
    assert stats.in_flight == 3

    second = Chain("chain")
    async with Runtime([second], store=path) as rt2:
        rt2.types.register(Done)
        requests = rt2.unfinished()
        assert sorted(m.id for m in requests) == sorted(m.id for m in [running, *queued])
        results = [await rt2.resume(m, until="done", timeout=5) for m in requests]
    assert [[m.payload for m in r.replies] for r in results] == [[Done(n=4)]] * 3
    assert kept(path) == ([], [])


@pytest.mark.parametrize("durable", [True, False], ids=["store", "plain"])
async def test_a_cancelled_requests_queued_delivery_says_so_at_a_stop(
    tmp_path: Path, durable: bool
) -> None:
    """A delivery still queued at the stop whose request was cancelled before it reads as the
    worker would have ended it (``correlation cancelled``), with or without a store; one
    queued behind the same handler whose request goes on is discarded at the shutdown (or,
    with a store, kept for the next start)."""
    first = Chain("chain", gate=anyio.Event())  # never opened: the running step waits
    rt = Runtime([first], store=tmp_path / "store.db" if durable else None, drain_timeout=0.01)
    async with rt:
        await rt.publish(rt.message(Step(n=2), recipient="chain"))
        with anyio.fail_after(5):
            await first.waiting.wait()  # it runs, and holds the agent's one slot
        queued = rt.message(Step(n=3), recipient="chain")
        await rt.publish(queued)
        dropped = rt.message(Step(n=3), recipient="chain")
        await rt.publish(dropped)
        rt.cancel(dropped.correlation_id)
        await anyio.wait_all_tasks_blocked()
    reasons = {d.message.id: (d.kind, d.reason) for d in rt.dead_letters}
    assert reasons[dropped.id] == ("cancelled", "correlation cancelled")
    if durable:
        assert queued.id not in reasons  # kept: it runs at the next start
    else:
        assert reasons[queued.id] == ("cancelled", "discarded at shutdown")
    report = rt.shutdown_report
    assert report is not None
    assert report.discarded_queued == (1 if durable else 2)  # not run, whatever the reason


class Broken(BaseAgent):
    """Fails every step: its fallback goes on with it."""

    produces = (Step,)

    @handler
    async def on_step(self, payload: Step, ctx: Context) -> Message:
        raise RuntimeError("broken")


async def test_a_fallbacks_delivery_a_stop_cuts_short_is_kept(tmp_path: Path) -> None:
    """The fallback runs its failed agent's delivery, under that agent's delivery: cut short
    by a stop, the store keeps it for the fallback at the next start, no dead letter."""
    path = tmp_path / "store.db"

    def runtime(backup: Chain) -> Runtime:
        rt = Runtime(store=path, drain_timeout=0.01)
        rt.add(Broken("broken"), options=AgentOptions(fallback="backup"))
        rt.add(backup)
        return rt

    first = Chain("backup", gate=anyio.Event())
    rt = runtime(first)
    async with rt:
        await rt.publish(rt.message(Step(n=2), recipient="broken"))
        with anyio.fail_after(5):
            await first.waiting.wait()
    assert list(rt.dead_letters) == []
    assert rt.shutdown_report is not None
    assert (rt.shutdown_report.cancelled_running, rt.shutdown_report.kept_deliveries) == (0, 1)

    second = Chain("backup")
    async with runtime(second) as rt2:
        rt2.types.register(Done)
        [request] = rt2.unfinished()
        result = await rt2.resume(request, until="done", timeout=5)
    assert [m.payload for m in result.replies] == [Done(n=4)]
    assert second.seen == [2, 3, 4]
    assert kept(path) == ([], [])


async def test_a_message_published_again_while_kept_is_refused_naming_it(tmp_path: Path) -> None:
    """A message's id is its delivery's idempotency key: published a second time while the
    store keeps it (its delivery not ended, in this process or left by the one before), it
    would run twice under one delivery id, and the first end would take the second's row
    with it. It is refused, and nothing is delivered again: by the runtime that took it (as
    without a store), and naming the message and the store after a restart."""
    path = tmp_path / "store.db"
    gate = anyio.Event()
    chain = Chain("chain", last=2, gate=gate)
    async with Runtime([chain], store=path, drain_timeout=0.01) as rt:
        msg = rt.message(Step(n=2), recipient="chain")
        await rt.publish(msg)
        await chain.waiting.wait()
        taken = f"message {msg.id} was published to this runtime already"
        with pytest.raises(DuplicateMessageError, match=taken):
            await rt.publish(msg)
        with pytest.raises(DuplicateMessageError, match=taken):
            rt.publish_nowait(msg)
    assert kept(path) == ([f"{msg.id}:chain"], [msg.correlation_id])
    again = Chain("chain", last=2)
    async with Runtime([again], store=path) as rt:
        with pytest.raises(DeliveryError, match=f"message {msg.id} is kept in the store"):
            await rt.publish(msg)  # left by the process before, to be resumed
        [request] = rt.unfinished()
        result = await rt.resume(request, until="done", timeout=5)
        assert [r.payload for r in result.replies] == [Done(n=2)]
    assert again.seen == [2]
    assert kept(path) == ([], [])


class Ask(Payload):
    message_type = "ask_double"
    n: int


class Doubled(Payload):
    message_type = "doubled"
    n: int


class FlakyAsker(BaseAgent):
    """Asks the doubler, then fails its first ``failures`` attempts after the answer came."""

    produces = (Doubled, Done)

    def __init__(self, id: str, failures: int) -> None:
        super().__init__(id)
        self.failures = failures

    @handler
    async def on_ask(self, payload: Ask, ctx: Context) -> Message:
        answer = await ctx.request("doubler", Doubled(n=payload.n), timeout=10)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("failed after the answer")
        assert isinstance(answer.payload, Doubled)
        return ctx.reply(Done(n=answer.payload.n))


class Doubler(BaseAgent):
    """Doubles; stalls on the delivery ``stall`` (its count) to let a stop cut it short."""

    produces = (Doubled,)

    def __init__(self, id: str, stall: int | None = None) -> None:
        super().__init__(id)
        self.stall = stall
        self.seen: list[str] = []
        self.stalled = anyio.Event()

    @handler
    async def on_doubled(self, payload: Doubled, ctx: Context) -> Message:
        self.seen.append(f"{ctx.message.id}:{ctx.agent_id}")
        if len(self.seen) == self.stall:
            self.stalled.set()
            await anyio.sleep_forever()
        return ctx.reply(Doubled(n=payload.n * 2))


async def test_a_retried_asker_asks_anew_and_a_restart_asks_as_the_attempts_did(
    tmp_path: Path,
) -> None:
    """Each attempt of a retried delivery is a run of its handler: its ``ctx.request`` is a
    new request, the next place in the delivery's count, so the answering agent runs again
    under a delivery id of its own (docs/durability.md, docs/decisions.md). Cut short and
    run again after a restart, the attempts ask under the same ids as before: the answer
    kept for the first is given again, and the second's delivery runs again under its id."""
    path = tmp_path / "store.db"
    retry = AgentOptions(retry=RetryPolicy(attempts=2, backoff=0))
    first = Doubler("doubler", stall=2)
    async with Runtime([], store=path, drain_timeout=0.01) as rt:
        rt.add(FlakyAsker("asker", failures=1), options=retry)
        rt.add(first)
        await rt.publish(rt.message(Ask(n=2), recipient="asker"))
        with anyio.fail_after(5):
            await first.stalled.wait()
    assert len(set(first.seen)) == 2  # two attempts, two requests
    second = Doubler("doubler")
    async with Runtime([], store=path) as rt:
        rt.add(FlakyAsker("asker", failures=1), options=retry)
        rt.add(second)
        [request] = rt.unfinished()
        result = await rt.resume(request, until="done", timeout=5)
    assert [r.payload for r in result.replies] == [Done(n=4)]
    assert second.seen == first.seen[1:]  # the first attempt's answer given again
    assert kept(path) == ([], [])
