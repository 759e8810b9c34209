"""Plain ``def`` handlers: in the runtime's threads (limits per agent and per runtime, deadlines
and cancellation given up at once) and in its process pool (payloads through the registry)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import Field

from genie import (
    AgentError,
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    InvalidArgumentError,
    Message,
    OffloadStatistics,
    Payload,
    RetryPolicy,
    Runtime,
    RuntimeState,
    Timer,
    ToolOutput,
    ToolSpec,
    handler,
)
from genie.llm import ChatMessage, Provider, ScriptedProvider
from genie.llm import Request as LLMRequest
from genie.memory import Store
from genie.simulation._virtual import VirtualTimeLoop

from ..conftest import Echo, Ping, Pong

WAIT = 10.0  # what a blocked thread waits at most: a test that fails does not hang


class Work(Payload):
    message_type = "sync.work"
    n: int
    tags: tuple[str, ...] = ()


class Done(Payload):
    message_type = "sync.done"
    n: int
    pid: int
    tags: tuple[str, ...] = ()


class Unregistered(Payload):
    message_type = "sync.unregistered"
    n: int = 0


class Square(BaseAgent):
    """A plain def handler: replies with n squared and the process it ran in."""

    produces = (Done,)

    @handler
    def on_work(self, payload: Work, ctx: Context) -> Message:
        return ctx.reply(Done(n=payload.n * payload.n, pid=os.getpid(), tags=payload.tags))


class Blocker(BaseAgent):
    """Blocks its thread on ``gate`` (a threading.Event), counting the threads inside."""

    produces = (Pong,)

    def __init__(self, id: str, gate: threading.Event, counter: Counter) -> None:
        super().__init__(id)
        self.gate = gate
        self.counter = counter
        self.finished = 0

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.counter.enter()
        try:
            self.gate.wait(WAIT)
        finally:
            self.counter.leave()
        self.finished += 1
        return ctx.reply(Pong(n=payload.n))


class Counter:
    """Threads inside handlers now, the most at once, and an event when ``wanted`` are in."""

    def __init__(self, wanted: int) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.wanted = wanted
        self.reached = threading.Event()

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            if self.inside >= self.wanted:
                self.reached.set()

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1

    async def wait(self) -> None:
        assert await anyio.to_thread.run_sync(self.reached.wait, WAIT)


class Raises(BaseAgent):
    thread: int | None = None

    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        self.thread = threading.get_ident()
        raise ZeroDivisionError(f"cannot divide {payload.n} by zero")


class Requests(BaseAgent):
    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        ctx.schedule(1.0, payload)


class EmitsUnregistered(BaseAgent):
    @handler
    def on_work(self, payload: Work, ctx: Context) -> Message:
        return ctx.reply(Unregistered(n=payload.n))


class AsyncOnly(BaseAgent):
    @handler
    async def on_work(self, payload: Work, ctx: Context) -> None:
        return None


def settled(rt: Runtime) -> None:
    s = rt.statistics()
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight


async def test_a_sync_handler_runs_in_a_thread_and_returns_its_outputs() -> None:
    async with Runtime([Square("sq")]) as rt:
        msg = rt.message(Work(n=7, tags=("a",)), recipient="sq")
        [reply] = (await rt.ask(msg)).replies
        assert reply.payload == Done(n=49, pid=os.getpid(), tags=("a",))
        assert reply.sender == "sq"
        assert reply.causation_id == msg.id
        assert rt.statistics().offload.threads == 0
        settled(rt)


def test_a_runtime_without_plain_def_handlers_reports_the_limits_it_would_use() -> None:
    stats = Runtime([Echo("echo")], threads=3, processes=2).statistics().offload
    assert stats == OffloadStatistics(
        thread_limit=3, threads=0, process_limit=2, processes=0, abandoned=0
    )


async def test_a_blocking_sync_handler_does_not_stall_other_agents() -> None:
    gate, counter = threading.Event(), Counter(1)
    blocker = Blocker("blocker", gate, counter)
    async with Runtime([blocker, Echo("echo")]) as rt:
        await rt.publish(rt.message(Ping(n=1), recipient="blocker"))
        await counter.wait()
        with anyio.fail_after(5):
            for n in range(20):
                result = await rt.ask(rt.message(Ping(n=n), recipient="echo"))
                assert [m.payload for m in result.replies] == [Pong(n=n)]
        assert blocker.finished == 0  # the others ran while it was still blocked
        gate.set()
        with anyio.fail_after(WAIT):
            await rt.wait_idle()
    assert blocker.finished == 1
    settled(rt)


async def test_an_agent_never_runs_more_threads_than_its_concurrency() -> None:
    gate, counter = threading.Event(), Counter(2)
    blocker = Blocker("blocker", gate, counter)
    async with Runtime() as rt:
        rt.add(blocker, options=AgentOptions(max_concurrency=2))
        for n in range(6):
            await rt.publish(rt.message(Ping(n=n), recipient="blocker"))
        await counter.wait()
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().offload.threads == 2
        gate.set()
        with anyio.fail_after(WAIT):
            await rt.wait_idle()
    assert counter.most == 2
    assert blocker.finished == 6


async def test_the_runtime_bounds_its_threads_across_agents() -> None:
    gate, counter = threading.Event(), Counter(2)
    agents = [Blocker(f"b{i}", gate, counter) for i in range(4)]
    async with Runtime(agents, threads=2) as rt:
        for agent in agents:
            await rt.publish(rt.message(Ping(n=1), recipient=agent.id))
        await counter.wait()
        await anyio.wait_all_tasks_blocked()
        stats = rt.statistics().offload
        assert (stats.threads, stats.thread_limit) == (2, 2)
        assert sum(m.active for m in rt.statistics().mailboxes.values()) == 4  # two wait
        gate.set()
        with anyio.fail_after(WAIT):
            await rt.wait_idle()
    assert counter.most == 2
    assert [a.finished for a in agents] == [1, 1, 1, 1]


async def test_two_runtimes_do_not_share_their_thread_limits() -> None:
    gate, counter = threading.Event(), Counter(1)
    async with (
        Runtime([Blocker("blocker", gate, counter)], threads=1) as one,
        Runtime([Square("sq")], threads=1) as two,
    ):
        await one.publish(one.message(Ping(n=1), recipient="blocker"))
        await counter.wait()
        with anyio.fail_after(5):
            result = await two.ask(two.message(Work(n=3), recipient="sq"))
        assert [m.payload.n for m in result.replies] == [9]  # type: ignore[attr-defined]
        gate.set()
        with anyio.fail_after(WAIT):
            await one.wait_idle()


async def test_a_deadline_gives_the_thread_up_and_discards_its_late_result() -> None:
    gate, counter = threading.Event(), Counter(1)
    blocker = Blocker("blocker", gate, counter)
    async with Runtime() as rt:
        rt.add(blocker, options=AgentOptions(deadline=0.2))
        started = anyio.current_time()
        msg = rt.message(Ping(n=1), recipient="blocker")
        result = await rt.ask(msg)
        assert anyio.current_time() - started < WAIT / 2  # not when the thread ended
        [missing] = result.missing
        assert missing.kind == "failed"
        assert "HandlerTimeoutError" in missing.reason
        [dead] = rt.dead_letters
        assert dead.message == msg
        assert dead.error_type == "HandlerTimeoutError"
        stats = rt.statistics()
        assert stats.offload.abandoned == 1
        assert stats.offload.threads == 1  # the abandoned thread still holds its slot
        # So the agent's next delivery waits for that slot, and overruns its own deadline.
        again = await rt.ask(rt.message(Ping(n=2), recipient="blocker"))
        assert "HandlerTimeoutError" in again.missing[0].reason
        assert counter.most == 1
        assert rt.statistics().offload.abandoned == 1  # it never got a thread
        gate.set()  # the thread ends; its reply goes nowhere, its slot comes back
        third = await rt.ask(rt.message(Ping(n=3), recipient="blocker"))
        assert [m.payload for m in third.replies] == [Pong(n=3)]
        stats = rt.statistics()
        assert stats.offload.threads == 0
        assert stats.handled - stats.collected == 1  # the third only
        assert stats.dead_lettered == 2
        settled(rt)
    assert blocker.finished == 2


class WaitsInItsOwnHandle(BaseAgent):
    """Dispatches through its own ``handle`` (``BaseAgent.handle``'s thread, not the
    runtime's), its plain def handler blocked on ``gate``."""

    def __init__(self, id: str, gate: threading.Event) -> None:
        super().__init__(id)
        self.gate = gate
        self.finished = threading.Event()

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.gate.wait(WAIT)
        self.finished.set()

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        return await super().handle(msg, ctx)


async def test_a_deadline_gives_up_the_thread_of_an_agents_own_handle_too() -> None:
    gate = threading.Event()
    agent = WaitsInItsOwnHandle("own", gate)
    async with Runtime() as rt:
        rt.add(agent, options=AgentOptions(deadline=0.2))
        started = anyio.current_time()
        result = await rt.ask(rt.message(Ping(n=1), recipient="own"))
        assert anyio.current_time() - started < WAIT / 2  # not when the thread ended
        gate.set()
    [missing] = result.missing
    assert "HandlerTimeoutError" in missing.reason
    assert "0.2s deadline" in missing.reason
    assert agent.finished.wait(WAIT)  # it ran on, its result discarded


class Late(BaseAgent):
    """Waits for ``gate``, then asks ``call`` of its context: after its deadline, if late."""

    def __init__(self, id: str, gate: threading.Event, call: Callable[[Context], None]) -> None:
        super().__init__(id)
        self.gate = gate
        self.call = call
        self.done = threading.Event()
        self.went_through = False
        self.refused = ""

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        try:
            self.gate.wait(WAIT)
            self.call(ctx)
            self.went_through = True
        except AgentError as exc:
            self.refused = str(exc)
        finally:
            self.done.set()


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("schedule", lambda ctx: ctx.schedule(1.0, Ping(n=2))),
        ("sleep", lambda ctx: anyio.from_thread.run(ctx.sleep, 0.01)),
    ],
    ids=["schedule", "sleep"],
)
async def test_a_thread_given_up_cannot_reach_the_runtime_any_more(
    what: str, call: Callable[[Context], None]
) -> None:
    gate = threading.Event()
    late = Late("late", gate, call)
    async with Runtime() as rt:
        rt.add(late, options=AgentOptions(deadline=0.2))
        result = await rt.ask(rt.message(Ping(n=1), recipient="late"))
        assert "HandlerTimeoutError" in result.missing[0].reason
        gate.set()
        assert await anyio.to_thread.run_sync(late.done.wait, WAIT)
        assert rt.statistics().timers_set == 0  # nothing was scheduled for the dead delivery
        settled(rt)
    assert not late.went_through
    assert late.refused == (
        f"agent 'late': ctx.{what} refused, the delivery gave this thread up (its deadline "
        "passed, or its request was cancelled)"
    )


class Unanswering(BaseAgent):
    """Takes a ping and never answers it: sets ``got`` and waits until it is cancelled."""

    produces = (Pong,)

    def __init__(self, id: str, got: anyio.Event) -> None:
        super().__init__(id)
        self.got = got

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.got.set()
        await anyio.sleep_forever()


class AsksInItsThread(BaseAgent):
    """A def handler blocked in ``ctx.request`` to ``unanswering``; records what it raised."""

    produces = (Ping,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.raised: BaseException | None = None
        self.done = threading.Event()

    @handler
    def on_pong(self, payload: Pong, ctx: Context) -> None:
        try:
            anyio.from_thread.run(ctx.request, "unanswering", Ping(n=1))
        except BaseException as exc:
            self.raised = exc
            raise
        finally:
            self.done.set()


async def test_a_thread_waiting_on_a_request_as_the_runtime_stops_is_refused_saying_so() -> None:
    # On asyncio the wait was cancelled with the delivery and the thread got a bare
    # CancelledError; on trio the request ended with a DeliveryError for its lost answer.
    got = anyio.Event()
    asker = AsksInItsThread("asker")
    # No drain: the runtime stops at once, its work in flight.
    async with Runtime([Unanswering("unanswering", got), asker], drain_timeout=0) as rt:
        await rt.publish(rt.message(Pong(n=0), recipient="asker"))
        with anyio.fail_after(WAIT):
            await got.wait()
    assert await anyio.to_thread.run_sync(asker.done.wait, WAIT)
    assert isinstance(asker.raised, AgentError)
    assert str(asker.raised) == (
        "agent 'asker': ctx.request refused, the delivery gave this thread up (the runtime stopped)"
    )


class LateRememberer(BaseAgent):
    """Takes its memory in time, waits for ``gate``, then writes through it: after its
    deadline, if it is late."""

    def __init__(self, id: str, gate: threading.Event) -> None:
        super().__init__(id)
        self.gate = gate
        self.done = threading.Event()
        self.refused = ""

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        kv = ctx.memory().kv  # taken before the deadline
        try:
            self.gate.wait(WAIT)
            anyio.from_thread.run(kv.set, "notes", "late", "written")
        except AgentError as exc:
            self.refused = str(exc)
        finally:
            self.done.set()


async def test_a_thread_given_up_cannot_write_through_the_memory_it_took_in_time() -> None:
    gate = threading.Event()
    late = LateRememberer("late", gate)
    store = Store()
    async with Runtime(memory=store) as rt:
        rt.add(late, options=AgentOptions(deadline=0.2))
        result = await rt.ask(rt.message(Ping(n=1), recipient="late"))
        assert "HandlerTimeoutError" in result.missing[0].reason
        gate.set()
        assert await anyio.to_thread.run_sync(late.done.wait, WAIT)
        settled(rt)
    assert await store.kv_get("notes", "late") is None  # the late thread left nothing
    assert late.refused == (
        "agent 'late': ctx.memory refused, the delivery gave this thread up (its deadline "
        "passed, or its request was cancelled)"
    )


class ChangesItsMind(BaseAgent):
    """In a thread, sets a timer and withdraws it at once."""

    produces = (Ping,)

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        if payload.n == 0:
            timer = ctx.schedule(60.0, Ping(n=1))
            timer.cancel()
            timer.cancel()  # idempotent
            assert timer.cancelled


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_timer_set_in_a_thread_is_withdrawn_on_the_loop() -> None:
    async with Runtime([ChangesItsMind("fickle")]) as rt:
        result = await rt.ask(rt.message(Ping(n=0), recipient="fickle"), timeout=WAIT)
        assert result.status == "partial"  # nothing pending, no reply: at once
        stats = rt.statistics()
        assert (stats.timers_set, stats.timers_handled, stats.timers_pending) == (1, 1, 0)
        assert (stats.dead_lettered, stats.in_flight) == (0, 0)
        settled(rt)
    assert list(rt.dead_letters) == []


class Reminder(BaseAgent):
    """Sets a reminder in a thread (``Work``); an ``async def`` handler withdraws it later
    (``Ping``), on the event loop."""

    produces = (Pong,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.timers: list[Timer] = []
        self.timer_set = threading.Event()

    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        self.timers.append(ctx.schedule(60.0, Pong(n=payload.n)))
        self.timer_set.set()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.timers.pop().cancel()

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        raise AssertionError("a withdrawn reminder rang")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_timer_set_in_a_thread_is_withdrawn_later_from_the_loop() -> None:
    reminder = Reminder("reminder")
    async with Runtime([reminder]) as rt:
        # One handler of the agent at a time, in order: the ping comes after the reminder.
        await rt.publish(rt.message(Work(n=1), recipient="reminder"))
        await rt.publish(rt.message(Ping(n=1), recipient="reminder"))
        with anyio.fail_after(WAIT):
            await rt.wait_idle()
        stats = rt.statistics()
        assert (stats.timers_set, stats.timers_handled, stats.timers_pending) == (1, 1, 0)
        assert (stats.dead_lettered, stats.in_flight) == (0, 0)


class Withdraws(BaseAgent):
    """A plain ``def`` handler that withdraws, on a ping, a timer another runtime's agent set."""

    def __init__(self, id: str, timers: list[Timer]) -> None:
        super().__init__(id)
        self.timers = timers

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.timers.pop().cancel()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_timer_withdrawn_from_another_runtimes_thread_is_withdrawn_on_its_own_loop(
    anyio_backend: str,
) -> None:
    """Runtime A, on its own loop in its own thread, sets a reminder; runtime B's thread
    handler withdraws it. The withdrawal is handed to A's loop (not B's, whose thread it runs
    in): A records it and goes idle, and B's handler succeeds."""
    reminder = Reminder("reminder")
    withdrawn = threading.Event()
    seen: dict[str, object] = {}

    async def runtime_a() -> None:
        async with Runtime([reminder]) as rt:
            await rt.publish(rt.message(Work(n=1), recipient="reminder"))
            with anyio.fail_after(WAIT):
                await rt.wait_idle()
            s = rt.statistics()
            seen["a"] = (s.timers_set, s.timers_handled, s.timers_pending, s.in_flight)
            seen["a dead letters"] = s.dead_lettered
        withdrawn.set()

    def run_a() -> None:
        try:
            anyio.run(runtime_a, backend=anyio_backend)
        except BaseException as exc:  # what runtime A met, asserted below
            seen["a raised"] = exc

    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        assert await anyio.to_thread.run_sync(reminder.timer_set.wait, WAIT)
        async with Runtime([Withdraws("withdraws", reminder.timers)]) as rt:
            await rt.publish(rt.message(Ping(n=1), recipient="withdraws"))
            with anyio.fail_after(WAIT):
                await rt.wait_idle()
            b = rt.statistics()
            assert (b.handled, b.dead_lettered) == (1, 0), list(rt.dead_letters)
        assert await anyio.to_thread.run_sync(withdrawn.wait, WAIT)
    finally:
        await anyio.to_thread.run_sync(thread.join, WAIT)
    assert "a raised" not in seen, seen
    assert seen["a"] == (1, 1, 0, 0)
    assert seen["a dead letters"] == 0


async def test_cancelling_a_request_gives_its_thread_up() -> None:
    gate, counter = threading.Event(), Counter(1)
    blocker = Blocker("blocker", gate, counter)
    async with Runtime([blocker]) as rt:
        msg = rt.message(Ping(n=1), recipient="blocker")
        await rt.publish(msg)
        await counter.wait()
        rt.cancel(msg.correlation_id)
        with anyio.fail_after(5):
            await rt.wait_idle()
        [dead] = rt.dead_letters
        assert (dead.message, dead.kind, dead.reason) == (msg, "cancelled", "correlation cancelled")
        assert rt.statistics().offload.abandoned == 1
        settled(rt)
        gate.set()
        # The thread ends while the loop still runs, and gives its slot back there (its reply
        # is refused in the thread: it never waits on a loop that may be gone).
        with anyio.fail_after(5):
            while rt.statistics().offload.threads:  # noqa: ASYNC110 - a thread has no event
                await anyio.sleep(0.01)


class AsksInALoopOfItsOwn(BaseAgent):
    """A def handler that awaits ``ctx.request`` with ``asyncio.run`` (a loop of its thread's
    own) rather than on the runtime's loop, through ``anyio.from_thread.run``."""

    produces = (Ping,)

    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        asyncio.run(ctx.request("echo", Ping(n=payload.n), timeout=WAIT))


class AsksNobody(BaseAgent):
    produces = (Ping,)

    @handler
    async def on_work(self, payload: Work, ctx: Context) -> None:
        await ctx.request(None, Ping(n=payload.n))  # type: ignore[arg-type]  # as mypy tells typed code


async def test_a_request_off_the_runtimes_loop_or_to_nobody_is_refused_saying_how() -> None:
    """Awaited in a loop of the handler's thread, the request was built, routed and waited
    for off the runtime's loop, and ended in a TimeoutError (or trio's own RuntimeError);
    to no recipient it failed an assertion."""
    echo = Echo("echo")
    async with Runtime([echo, AsksInALoopOfItsOwn("thread"), AsksNobody("nobody")]) as rt:
        with anyio.fail_after(WAIT):
            await rt.publish(rt.message(Work(n=1), recipient="thread"))
            await rt.publish(rt.message(Work(n=2), recipient="nobody"))
            await rt.wait_idle()
        s = rt.statistics()
    assert {d.agent_id: d.reason for d in rt.dead_letters} == {
        "thread": "InvalidArgumentError: ctx.request() refused: it was called in a handler's "
        "worker thread (a def handler); call it on the event loop: "
        "anyio.from_thread.run(ctx.request, recipient, payload)",
        "nobody": "InvalidArgumentError: ctx.request() refused 'ping': its recipient is None, "
        "and a request goes to one agent, named by its id (to send it to the subscribers of "
        "its type, return ctx.emit(payload) from the handler)",
    }
    assert (s.published, s.mailboxes["echo"].handled) == (2, 0)  # no request went out
    settled(rt)


class _Session:
    def __init__(self) -> None:
        self.calls = 0

    async def list_tools(self) -> Sequence[ToolSpec]:
        self.calls += 1
        return []

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        self.calls += 1
        return ToolOutput(text="")


class _LocalTools:
    timeout = WAIT

    def __init__(self) -> None:
        self.session = _Session()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[_Session]:
        yield self.session


class AwaitsInALoopOfItsOwn(BaseAgent):
    """A def handler that awaits its memory, tools and model with ``asyncio.run`` (a loop of
    its thread's own), then its memory through ``anyio.from_thread.run``, as it should."""

    def __init__(self, id: str, model: Provider) -> None:
        super().__init__(id)
        self.model = model
        self.told: list[str] = []

    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        mem, tools, llm = ctx.memory(), ctx.tool("local"), ctx.llm(self.model)
        question = LLMRequest(messages=(ChatMessage.user("hi"),))
        for call in (
            lambda: mem.kv.set("ns", "k", "off the loop"),
            lambda: tools.list(),
            lambda: llm.complete(question),
        ):
            try:
                asyncio.run(call())
            except InvalidArgumentError as refused:
                self.told.append(str(refused))
        anyio.from_thread.run(mem.kv.set, "ns", "k", "on the loop")
        self.told.append(str(anyio.from_thread.run(mem.kv.get, "ns", "k")))


async def test_memory_tools_and_models_awaited_off_the_runtimes_loop_are_refused() -> None:
    """Awaited in a loop of the handler's thread, a memory write was judged, audited and
    stored, and a model call reserved, from that thread, racing the loop's deliveries."""
    model, tools = ScriptedProvider(["answer"]), _LocalTools()
    agent = AwaitsInALoopOfItsOwn("thread", model)
    async with Runtime([agent], tools={"local": tools}) as rt:
        with anyio.fail_after(WAIT):
            await rt.publish(rt.message(Work(n=1), recipient="thread"))
            await rt.wait_idle()
    assert list(rt.dead_letters) == []
    advice = (
        ": a call of it was awaited in the handler's worker thread (a def handler); await it "
        "on the event loop: anyio.from_thread.run(...)"
    )
    assert agent.told == [f"ctx.{what}{advice}" for what in ("memory", "tool", "llm")] + [
        "on the loop"
    ]
    assert (model.requests, tools.session.calls) == ([], 0)


def _announced() -> int:
    """How many pieces of work outside the loop the virtual clock waits for now."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    return len(loop.outside)


class _SeenSession(_Session):
    def __init__(self, seen: list[tuple[str, int]]) -> None:
        super().__init__()
        self.seen = seen

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        self.seen.append(("tool", _announced()))
        return ToolOutput(text="")


class _SeenTools(_LocalTools):
    def __init__(self, seen: list[tuple[str, int]]) -> None:
        self.session = _SeenSession(seen)


class _SlowStore(Store):
    """A memory that takes 30 seconds of the loop's clock to read."""

    def __init__(self, seen: list[tuple[str, int]]) -> None:
        super().__init__()
        self.seen = seen

    async def kv_get(self, namespace: str, key: str) -> tuple[Any, str] | None:
        self.seen.append(("memory", _announced()))
        await anyio.sleep(30)
        return None


class _SlowModel(ScriptedProvider):
    """A model that takes 30 seconds of the loop's clock to answer."""

    def __init__(self, seen: list[tuple[str, int]]) -> None:
        super().__init__(["answer"])
        self.seen = seen

    async def complete(self, request: LLMRequest) -> Any:
        self.seen.append(("llm", _announced()))
        await anyio.sleep(30)
        return await super().complete(request)


class UsesAll(BaseAgent):
    """A def handler that awaits its tool, memory and model on the loop, as it should."""

    produces = (Done,)

    def __init__(self, id: str, model: Provider) -> None:
        super().__init__(id)
        self.model = model

    @handler
    def on_work(self, payload: Work, ctx: Context) -> Message:
        anyio.from_thread.run(ctx.tool("local").call, "t", {})
        anyio.from_thread.run(ctx.memory().kv.get, "ns", "k")
        question = LLMRequest(messages=(ChatMessage.user("hi"),))
        anyio.from_thread.run(ctx.llm(self.model).complete, question)
        return ctx.reply(Done(n=payload.n, pid=os.getpid()))


def test_a_threads_tool_memory_and_model_waits_let_virtual_time_go_on() -> None:
    """While its thread waited on a call of its tools, memory or model, the thread was still
    announced as work outside the loop, as it is not while it sleeps or awaits a request:
    virtual time stood still for a memory or model that waits on the loop's clock, until the
    thread's grace of real time ran out, and then ran on while the thread worked."""
    seen: list[tuple[str, int]] = []

    async def main() -> tuple[bool, float]:
        agent = UsesAll("thread", _SlowModel(seen))
        tools = {"local": _SeenTools(seen)}
        async with Runtime([agent], tools=tools, memory=_SlowStore(seen)) as rt:
            started = anyio.current_time()
            result = await rt.ask(rt.message(Work(n=3), recipient="thread"), timeout=300)
            return result.complete, anyio.current_time() - started

    assert anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop}) == (True, 60.0)
    # The tool's call is announced by the runtime (its server is outside work); the thread is
    # announced by none of them while it waits.
    assert seen == [("tool", 1), ("memory", 0), ("llm", 0)]


async def test_a_failing_sync_handler_is_a_dead_letter_with_its_type_and_reason() -> None:
    raises = Raises("raises")
    async with Runtime([raises]) as rt:
        result = await rt.ask(rt.message(Work(n=5), recipient="raises"))
    assert raises.thread not in (None, threading.get_ident())  # it ran in a thread
    [dead] = rt.dead_letters
    assert dead.error_type == "ZeroDivisionError"
    assert dead.reason == "ZeroDivisionError: cannot divide 5 by zero"
    assert result.missing[0].reason == dead.reason


class Quits(BaseAgent):
    """Ends its thread as a script would end itself: ``sys.exit(3)``, or Ctrl-C raised by hand."""

    def __init__(self, id: str, stop: Callable[[], None]) -> None:
        super().__init__(id)
        self.stop = stop
        self.thread: int | None = None

    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        self.thread = threading.get_ident()
        self.stop()


def _interrupt() -> None:
    raise KeyboardInterrupt("by hand")


def _generator_exit() -> None:
    # Handed back to the loop as itself, it closed the coroutine waiting for the thread, and
    # the runtime's task group raised "coroutine ignored GeneratorExit".
    raise GeneratorExit("by hand")


def _exit_in_a_group() -> None:
    # What a pool of the handler's own hands back when one of its workers called sys.exit.
    raise BaseExceptionGroup("workers", [SystemExit(3)])


@pytest.mark.parametrize(
    ("stop", "said"),
    [
        (lambda: sys.exit(3), "SystemExit: 3"),
        (_interrupt, "KeyboardInterrupt: by hand"),
        (_exit_in_a_group, "BaseExceptionGroup: workers (1 sub-exception) (SystemExit: 3)"),
        (_generator_exit, "GeneratorExit: by hand"),
    ],
    ids=["sys.exit", "KeyboardInterrupt", "in-a-group", "GeneratorExit"],
)
async def test_exiting_in_a_thread_fails_that_delivery_and_the_runtime_goes_on(
    stop: Callable[[], None], said: str
) -> None:
    """Both stopped the whole runtime, as on the event loop's thread: in Python they end only
    the thread that raises them."""
    quits = Quits("quits", stop)
    async with Runtime([quits, Square("sq")]) as rt:
        result = await rt.ask(rt.message(Work(n=5), recipient="quits"))
        # The runtime delivers as before, and again to the agent that exited.
        after = await rt.ask(rt.message(Work(n=4), recipient="sq"))
        again = await rt.ask(rt.message(Work(n=6), recipient="quits"))
        assert rt.state is RuntimeState.RUNNING
        settled(rt)
    assert quits.thread not in (None, threading.get_ident())  # it ran in a thread
    [reply] = after.replies
    assert isinstance(reply.payload, Done)
    assert reply.payload.n == 16
    first, second = rt.dead_letters
    assert (first.kind, first.agent_id, first.error_type) == ("failed", "quits", "AgentError")
    assert first.reason == (
        f"AgentError: agent 'quits': its handler raised {said} in its thread, where it fails "
        "the delivery and does not stop the runtime (in any Python thread it ends only that "
        "thread)"
    )
    assert result.missing[0].reason == first.reason
    assert second.message.id == again.missing[0].message_id
    # The traceback is the handler's: it starts where the handler ended its thread.
    assert first.traceback is not None
    assert first.traceback.startswith(f"{__file__}:")
    if said.startswith("BaseExceptionGroup"):  # as Python shows a group: what it holds below
        assert "\n    | SystemExit: 3\n" in first.traceback
    else:
        assert first.traceback.endswith(f"\n{said}")


# --- processes --------------------------------------------------------------------------------
PROCESS = AgentOptions(offload="process")


async def test_a_process_handler_round_trips_payloads_through_the_registry() -> None:
    async with Runtime(processes=1) as rt:
        rt.add(Square("sq"), options=PROCESS)
        msg = rt.message(Work(n=12, tags=("x", "y")), recipient="sq")
        [reply] = (await rt.ask(msg)).replies
        assert isinstance(reply.payload, Done)
        assert (reply.payload.n, reply.payload.tags) == (144, ("x", "y"))
        assert reply.payload.pid != os.getpid()  # it ran in a child process
        # Built again by this runtime: its ids, and the request's correlation and causation.
        assert reply.sender == "sq"
        assert reply.causation_id == msg.id
        assert reply.correlation_id == msg.correlation_id
        assert reply.hops == 1
        assert rt.statistics().offload.process_limit == 1
        settled(rt)


class SquareEither(BaseAgent):
    """One plain def handler for two payload types, by a union annotation."""

    produces = (Done,)

    @handler
    def on_either(self, payload: Work | Ping, ctx: Context) -> Message:
        return ctx.reply(Done(n=payload.n * payload.n, pid=os.getpid()))


@pytest.mark.parametrize("options", [AgentOptions(), PROCESS], ids=["thread", "process"])
async def test_a_union_handler_runs_off_the_loop_for_each_member_type(
    options: AgentOptions,
) -> None:
    # Each member is bound as a handler of its own: in a process, rebuilt through its model.
    async with Runtime(processes=1) as rt:
        rt.add(SquareEither("sq"), options=options)
        for payload in (Work(n=3), Ping(n=4)):
            [reply] = (await rt.ask(rt.message(payload, recipient="sq"))).replies
            assert isinstance(reply.payload, Done)
            assert reply.payload.n == payload.n * payload.n
            assert (reply.payload.pid != os.getpid()) == (options.offload == "process")
        settled(rt)


async def test_a_failing_process_handler_is_a_dead_letter_with_its_type_and_reason() -> None:
    async with Runtime(processes=1) as rt:
        rt.add(Raises("raises"), options=PROCESS)
        await rt.ask(rt.message(Work(n=5), recipient="raises"))
        rt.add(Requests("requests"), options=PROCESS)
        await rt.ask(rt.message(Work(n=1), recipient="requests"))
        rt.add(EmitsUnregistered("emits"), options=PROCESS)
        await rt.ask(rt.message(Work(n=1), recipient="emits"))
    raises, requests, emits = rt.dead_letters
    assert raises.error_type == "ZeroDivisionError"
    assert raises.reason == "ZeroDivisionError: cannot divide 5 by zero"
    assert requests.error_type == "ConfigurationError"
    assert "runs in a process (offload='process'): ctx.schedule needs the runtime" in (
        requests.reason
    )
    assert emits.error_type == "InvalidOutputError"
    assert "emitted 'sync.unregistered' from its process, which is not registered" in (emits.reason)


class Noted(Payload):
    message_type = "sync.noted"
    note: str
    counts: dict[str, int] = Field(default_factory=dict)


class WritesHalfPairs(BaseAgent):
    """Work 1: a note holding half of an emoji's surrogate pair; work 2: a key holding one."""

    produces = (Noted,)

    @handler
    def on_work(self, payload: Work, ctx: Context) -> Message:
        if payload.n == 1:
            return ctx.reply(Noted(note="cut \ud83d"))
        return ctx.reply(Noted(note="fine", counts={"k\ud800": 1}))


async def test_an_output_utf8_cannot_encode_is_a_dead_letter_naming_its_field() -> None:
    """An output crosses back from the child as UTF-8 JSON, which cannot hold a lone
    surrogate: its delivery failed with pydantic's PydanticSerializationError (retried, as a
    ValueError), and a key holding one crossed as U+FFFD, another key than the handler's. The
    dead letter names the output's type and field, and is not retried."""
    retry = AgentOptions(offload="process", retry=RetryPolicy(attempts=3, backoff=0))
    async with Runtime(processes=1) as rt:
        rt.add(WritesHalfPairs("writes"), options=retry)
        for n in (1, 2):
            result = await rt.ask(rt.message(Work(n=n), recipient="writes"), timeout=WAIT)
            assert result.replies == ()
    value, key = rt.dead_letters
    assert (value.error_type, value.attempts, key.error_type, key.attempts) == (
        "InvalidMessageError", 1, "InvalidMessageError", 1
    )  # fmt: skip
    comes_back = "an output comes back from the handler's process as UTF-8 JSON"
    assert value.reason == (
        "InvalidMessageError: invalid 'sync.noted' message: field 'payload.note': not valid "
        f"UTF-8 text (a lone surrogate, U+D83D at index 4): {comes_back}"
    )
    assert key.reason == (
        "InvalidMessageError: invalid 'sync.noted' message: field 'payload.counts': a key is "
        f"not valid UTF-8 text (a lone surrogate, U+D800 at index 1): {comes_back}"
    )


class Picky(Exception):
    """An exception whose ``__init__`` takes other arguments than its message: it pickles,
    but unpickling it calls ``Picky("picky 5 2")``, which fails."""

    def __init__(self, n: int, d: int) -> None:
        super().__init__(f"picky {n} {d}")


class RaisesPicky(BaseAgent):
    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        raise Picky(payload.n, 2)


class RaisesLocked(BaseAgent):
    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        error = ValueError("holds a lock")
        error.lock = threading.Lock()  # type: ignore[attr-defined]
        raise error


class Exits(BaseAgent):
    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        raise SystemExit(4)


class SlowSquare(BaseAgent):
    produces = (Done,)

    @handler
    def on_work(self, payload: Work, ctx: Context) -> Message:
        time.sleep(1.0)
        return ctx.reply(Done(n=payload.n * payload.n, pid=os.getpid()))


async def test_what_a_process_handler_raises_fails_its_delivery_only() -> None:
    """An exception the parent could not unpickle broke the whole pool: its delivery failed
    as BrokenProcessPool, and so did every other call running there. A SystemExit in a child
    stopped the parent's runtime."""
    async with Runtime(processes=2) as rt:
        for agent in (SlowSquare("slow"), RaisesPicky("picky"), RaisesLocked("locked")):
            rt.add(agent, options=PROCESS)
        rt.add(Exits("exits"), options=PROCESS)
        async with anyio.create_task_group() as tg:
            replies: list[Message] = []

            async def ask_slow() -> None:
                replies.extend((await rt.ask(rt.message(Work(n=3), recipient="slow"))).replies)

            tg.start_soon(ask_slow)
            for agent_id in ("picky", "locked", "exits"):
                await rt.ask(rt.message(Work(n=5), recipient=agent_id))
        [reply] = replies  # the call beside them ran to its end
        assert isinstance(reply.payload, Done)
        assert reply.payload.n == 9
        settled(rt)
    picky, locked, exits = rt.dead_letters
    assert (picky.error_type, locked.error_type, exits.error_type) == ("AgentError",) * 3
    assert "its handler raised Picky: picky 5 2 in its process, and that exception cannot" in (
        picky.reason
    )
    assert "raised ValueError: holds a lock in its process" in locked.reason
    assert "raised SystemExit: 4 in its process" in exits.reason


class Dies(BaseAgent):
    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        os._exit(3)


async def test_a_child_that_dies_fails_its_call_and_the_next_call_gets_a_new_pool() -> None:
    async with Runtime(processes=1) as rt:
        rt.add(Dies("dies"), options=PROCESS)
        rt.add(Square("sq"), options=PROCESS)
        await rt.ask(rt.message(Work(n=1), recipient="dies"))
        [reply] = (await rt.ask(rt.message(Work(n=4), recipient="sq"))).replies
        assert isinstance(reply.payload, Done)
        assert reply.payload.n == 16
    [dead] = rt.dead_letters
    assert dead.error_type == "BrokenProcessPool"


async def test_a_child_killed_while_idle_does_not_break_the_calls_after_it() -> None:
    """The pool, found broken at submit, refused every call after: each failed at once as
    BrokenProcessPool, and the pool was never replaced."""
    async with Runtime(processes=1) as rt:
        rt.add(Square("sq"), options=PROCESS)
        [first] = (await rt.ask(rt.message(Work(n=2), recipient="sq"))).replies
        assert isinstance(first.payload, Done)
        os.kill(first.payload.pid, signal.SIGKILL)  # the child, idle now (an OOM kill)
        await anyio.sleep(1.0)  # the pool sees it die
        for n in (3, 4):
            [reply] = (await rt.ask(rt.message(Work(n=n), recipient="sq"))).replies
            assert isinstance(reply.payload, Done)
            assert reply.payload.n == n * n
    assert list(rt.dead_letters) == []


async def test_a_process_handlers_dead_letter_says_where_it_raised_in_the_child() -> None:
    async with Runtime(processes=1) as rt:
        rt.add(Raises("raises"), options=PROCESS)
        await rt.ask(rt.message(Work(n=5), recipient="raises"))
    [dead] = rt.dead_letters
    assert dead.error_type == "ZeroDivisionError"  # an exception that crosses is itself
    [traceback] = dead.tracebacks
    head = traceback.splitlines()[0]
    assert head.startswith(f"{__file__}:")
    assert head.endswith("in on_work: ZeroDivisionError: cannot divide 5 by zero")
    assert "concurrent" not in traceback  # not the frames that carried it back


class Sleeps(BaseAgent):
    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        time.sleep(payload.n)


STUCK_CHILD = """
import time, anyio
import genie._runtime.runtime as runtime
from genie import AgentOptions, Runtime
from tests.runtime.test_sync_handlers import Sleeps, Work

runtime.CLOSE_TIMEOUT = 0.5  # what the runtime waits for its pool when it closes

async def main() -> None:
    async with Runtime(processes=1) as rt:
        rt.add(Sleeps("sleeps"), options=AgentOptions(offload="process", deadline=0.2))
        await rt.ask(rt.message(Work(n=60), recipient="sleeps"))  # given up at 0.2 s
        assert rt.statistics().offload.abandoned == 1

if __name__ == "__main__":
    anyio.run(main)
"""


def test_a_child_still_running_when_the_runtime_closes_does_not_hold_the_process(
    tmp_path: Path,
) -> None:
    """The runtime waited for its pool, then left the child to it; the interpreter then waited
    for it at exit (here a minute) however long it ran."""
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_CHILD)
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20  # start, 0.2 s, 0.5 s of waiting, and out


KILLED_PARENT = """
import os, sys, anyio
from genie import AgentOptions, Runtime
from tests.runtime.test_sync_handlers import Sleeps, Square, Work

async def main() -> None:
    async with Runtime(processes=2) as rt:
        rt.add(Square("sq"), options=AgentOptions(offload="process"))
        rt.add(Sleeps("sleeps"), options=AgentOptions(offload="process"))
        await rt.publish(rt.message(Work(n=60), recipient="sleeps"))  # a child runs it
        [done] = (await rt.ask(rt.message(Work(n=2), recipient="sq"))).replies
        print(done.payload.pid, flush=True)  # another child, idle now
        await anyio.sleep(60)  # killed in here

if __name__ == "__main__":
    anyio.run(main)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_pools_children_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    """A runtime killed outright (SIGKILL: no shutdown runs) leaves no child behind: each
    notices its parent is gone, the idle one and the one inside a handler alike."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED_PARENT)
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    parent = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        idle = int(parent.stdout.readline())
        children = _children(parent.pid)
        deadline = time.monotonic() + WAIT
        while len(children) < 3 and time.monotonic() < deadline:  # the second child starts
            time.sleep(0.05)
            children = _children(parent.pid)
        assert idle in children
        assert len(children) == 3  # two children and multiprocessing's resource tracker
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    deadline = time.monotonic() + WAIT
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in children if _alive(pid)]
    for pid in left:  # a failed run cleans up after itself
        os.kill(pid, signal.SIGKILL)
    assert left == []


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _local_payload() -> type[Payload]:
    class Local(Payload):
        message_type = "sync.local"

    return Local


Local = _local_payload()  # a class a child process cannot import by its name


class LocalAgent(BaseAgent):
    @handler
    def on_local(self, payload: Local, ctx: Context) -> None:  # type: ignore[valid-type]
        return None


async def test_process_offload_refuses_what_cannot_cross_to_a_process() -> None:
    rt = Runtime()
    with pytest.raises(ConfigurationError, match=r"payload type .*Local \('sync.local'\) cannot"):
        rt.add(LocalAgent("local"), options=PROCESS)
    unpicklable = Square("sq")
    unpicklable.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"agent 'sq' .*cannot be pickled"):
        rt.add(unpicklable, options=PROCESS)
    with pytest.raises(ConfigurationError, match=r"agent 'a' has offload='process' but no plain"):
        rt.add(AsyncOnly("a"), options=PROCESS)
    with pytest.raises(ConfigurationError, match=r"offload must be 'thread' or 'process'"):
        AgentOptions(offload="fork")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"threads must be a whole number, 1 or more"):
        Runtime(threads=0)


def test_a_blocked_loop_is_what_the_thread_replaces() -> None:
    """The time a blocking handler takes is spent in its thread, not on the event loop."""

    class Sleeper(BaseAgent):
        @handler
        def on_work(self, payload: Work, ctx: Context) -> None:
            time.sleep(0.3)

    async def main() -> float:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg, Runtime([Sleeper("s")]) as rt:
            tg.start_soon(tick)
            await rt.ask(rt.message(Work(n=1), recipient="s"))
            tg.cancel_scope.cancel()
        return ticks

    assert anyio.run(main) >= 10  # the loop ticked all along


class Counted(BaseAgent):
    """A plain ``def`` handler that counts the Pings it ran."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.ran: list[int] = []

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.ran.append(payload.n)


@pytest.mark.parametrize("checkpoints", range(8))
async def test_a_thread_handler_cancelled_before_its_thread_began_frees_its_slots(
    checkpoints: int,
) -> None:
    """``rt.cancel`` at any checkpoint after the delivery handed its call to a thread, the
    thread maybe not begun: the delivery ends cancelled, its slots are given back, and the
    agent's next delivery runs (on asyncio the call never began, and nobody gave them back)."""
    agent = Counted("t")
    async with Runtime([agent]) as rt:
        first = rt.message(Ping(n=1), recipient="t")
        await rt.publish(first)
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        rt.cancel(first.correlation_id)
        await rt.publish(rt.message(Ping(n=2), recipient="t"))
        with anyio.fail_after(10):
            await rt.wait_idle()
        stats = rt.statistics()
        assert (stats.in_flight, stats.offload.threads) == (0, 0)
    assert agent.ran[-1] == 2
    assert [d.kind for d in rt.dead_letters] in ([], ["cancelled"])


class Stuck:
    """What a thread awaits on the loop that never ends: a tool call, a memory read, a model
    call. ``entered`` is set once the call is under way; ``cancelled`` tells it was ended."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.cancelled = False

    async def wait(self) -> None:
        self.entered.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise


class _StuckSession(_Session):
    def __init__(self, stuck: Stuck) -> None:
        super().__init__()
        self.stuck = stuck

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        await self.stuck.wait()
        return ToolOutput(text="")


class _StuckTools(_LocalTools):
    def __init__(self, stuck: Stuck) -> None:
        self.session = _StuckSession(stuck)


class _StuckStore(Store):
    def __init__(self, stuck: Stuck) -> None:
        super().__init__()
        self.stuck = stuck

    async def kv_get(self, namespace: str, key: str) -> tuple[Any, str] | None:
        await self.stuck.wait()
        return None


class _StuckModel(ScriptedProvider):
    def __init__(self, stuck: Stuck) -> None:
        super().__init__()
        self.stuck = stuck

    async def complete(self, request: LLMRequest) -> Any:
        await self.stuck.wait()


class _StuckAnswerer(Unanswering):
    def __init__(self, id: str, stuck: Stuck) -> None:
        super().__init__(id, stuck.entered)
        self.stuck = stuck

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        await self.stuck.wait()


class AwaitsOnTheLoop(BaseAgent):
    """A def handler that awaits ``call`` of its context on the loop; records what it raised."""

    produces = (Ping,)

    def __init__(self, id: str, call: Callable[[Context], object]) -> None:
        super().__init__(id)
        self.call = call
        self.raised: BaseException | None = None
        self.done = threading.Event()

    @handler
    def on_work(self, payload: Work, ctx: Context) -> None:
        try:
            self.call(ctx)
        except BaseException as exc:
            self.raised = exc
            raise
        finally:
            self.done.set()


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("request", lambda ctx: anyio.from_thread.run(ctx.request, "stuck", Ping(n=1))),
        ("tool", lambda ctx: anyio.from_thread.run(ctx.tool("stuck").call, "wait", {})),
        ("memory", lambda ctx: anyio.from_thread.run(ctx.memory().kv.get, "notes", "k")),
        ("llm", None),
    ],
    ids=["request", "tool", "memory", "llm"],
)
async def test_a_thread_waiting_on_the_loop_is_refused_when_its_delivery_gives_it_up(
    what: str, call: Callable[[Context], object] | None
) -> None:
    # On asyncio the thread got a bare CancelledError for a tool, memory or model call; on
    # trio the call ran on after the thread was given up, and the thread with it.
    stuck = Stuck()
    if call is None:  # the model's call: its provider is the one that never answers

        def call(ctx: Context) -> object:
            question = LLMRequest(messages=(ChatMessage.user("hi"),))
            return anyio.from_thread.run(ctx.llm(_StuckModel(stuck)).complete, question)

    waits = AwaitsOnTheLoop("waits", call)
    agents = [waits, _StuckAnswerer("stuck", stuck)]
    tools = {"stuck": _StuckTools(stuck)}
    async with Runtime(agents, tools=tools, memory=_StuckStore(stuck)) as rt:
        msg = rt.message(Work(n=1), recipient="waits")
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, msg)
            with anyio.fail_after(WAIT):
                await stuck.entered.wait()
            rt.cancel(msg.correlation_id)
        assert await anyio.to_thread.run_sync(waits.done.wait, WAIT)
    assert stuck.cancelled  # what the thread waited for ended with its delivery
    assert isinstance(waits.raised, AgentError), repr(waits.raised)
    assert str(waits.raised) == (
        f"agent 'waits': ctx.{what} refused, the delivery gave this thread up (its deadline "
        "passed, or its request was cancelled)"
    )


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("sleep", lambda ctx: anyio.from_thread.run(ctx.sleep, 3600)),
        ("request", lambda ctx: anyio.from_thread.run(ctx.request, "stuck", Ping(n=1))),
    ],
    ids=["sleep", "request"],
)
async def test_a_thread_waiting_on_the_loop_is_refused_at_its_deliverys_deadline(
    what: str, call: Callable[[Context], object]
) -> None:
    # On trio the sleep or the request ran on after the deadline gave the thread up, and
    # the thread waited with it.
    waits = AwaitsOnTheLoop("waits", call)
    async with Runtime() as rt:
        # The asked agent's deadline ends the request after the asker's, as nothing else would.
        rt.add(_StuckAnswerer("stuck", Stuck()), options=AgentOptions(deadline=5))
        rt.add(waits, options=AgentOptions(deadline=0.5))
        result = await rt.ask(rt.message(Work(n=1), recipient="waits"))
        assert "HandlerTimeoutError" in result.missing[0].reason
        assert await anyio.to_thread.run_sync(waits.done.wait, WAIT)
    assert isinstance(waits.raised, AgentError), repr(waits.raised)
    assert str(waits.raised) == (
        f"agent 'waits': ctx.{what} refused, the delivery gave this thread up (its deadline "
        "passed, or its request was cancelled)"
    )
