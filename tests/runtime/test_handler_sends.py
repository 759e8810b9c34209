"""Nothing escapes the gate: a handler sends only through its outputs (and ``ctx``).

``rt.publish``, ``rt.publish_nowait`` and ``rt.ask`` called inside a handler of the same
runtime, or in a task the handler started, are refused with ``PublishFromHandlerError``
(docs/semantics.md, "Sending from a handler"): such a send would begin a fresh correlation
with no hops, outside the hop limit and the correlation budget, and an awaited publish could
wait for room in the handler's own mailbox while it holds the worker that would make room.
"""

from __future__ import annotations

from typing import Literal

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    GenieError,
    Limits,
    Message,
    PublishFromHandlerError,
    RetryPolicy,
    Runtime,
    WaitFromHandlerError,
    handler,
)
from genie.policies import ClassifierPolicy

from ..conftest import Echo, Ping, Recorder

Verb = Literal["publish", "publish_nowait", "ask"]
VERBS: tuple[Verb, ...] = ("publish", "publish_nowait", "ask")

# Long enough for any of these runtimes to go idle; a loop that runs away never does.
STALL = 3


async def send(rt: Runtime, verb: Verb, msg: Message) -> None:
    """Send ``msg`` through ``rt``'s public API by ``verb``."""
    if verb == "publish":
        await rt.publish(msg)
    elif verb == "publish_nowait":
        rt.publish_nowait(msg)
    else:
        with anyio.fail_after(STALL):
            await rt.ask(msg)


class Sender(BaseAgent):
    """On a Ping, sends one to ``to`` through ``rt`` by ``verb``, and keeps what that raised.

    ``built``: the message is a new request (``rt.message``) or one of the handler's own
    outputs (``ctx.emit``, in the handler's correlation)."""

    produces = (Ping,)

    def __init__(self, id: str, verb: Verb, to: str = "sink", built: str = "rt.message") -> None:
        super().__init__(id)
        self.rt: Runtime | None = None
        self.verb: Verb = verb
        self.to = to
        self.built = built
        self.calls = 0
        self.errors: list[GenieError] = []

    def outgoing(self, payload: Ping, ctx: Context) -> Message:
        assert self.rt is not None
        if self.built == "ctx.emit":
            return ctx.emit(Ping(n=payload.n + 1), recipient=self.to)
        return self.rt.message(Ping(n=payload.n + 1), recipient=self.to)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.calls += 1
        assert self.rt is not None
        try:
            await send(self.rt, self.verb, self.outgoing(payload, ctx))
        except GenieError as exc:
            self.errors.append(exc)


def assert_refused(error: GenieError, verb: Verb) -> None:
    assert isinstance(error, PublishFromHandlerError)
    text = str(error)
    assert text.startswith(f"rt.{verb}() refused 'ping': it was called inside a handler")
    assert "Return the message from the handler" in text
    assert "ctx.emit" in text
    assert "ctx.request" in text


async def test_a_self_addressed_loop_is_refused_not_run_away() -> None:
    """Issue 35's loop: each delivery published the next through ``rt.publish``, a fresh
    correlation each time, so neither limit ever saw more than one message of it."""

    class SelfLoop(BaseAgent):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.rt: Runtime | None = None
            self.calls = 0

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            self.calls += 1
            assert self.rt is not None
            await self.rt.publish(self.rt.message(Ping(n=payload.n + 1), recipient=self.id))

    loop = SelfLoop("loop")
    retry = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0))
    limits = Limits(max_hops=8, correlation_budget=50)
    async with Runtime(limits=limits) as rt:
        rt.add(loop, options=retry)
        loop.rt = rt
        await rt.publish(rt.message(Ping(), recipient="loop"))
        with anyio.fail_after(STALL):
            await rt.wait_idle()
    # One call, refused, never retried (the same send would be refused again).
    assert loop.calls == 1
    [letter] = list(rt.dead_letters)
    assert (letter.agent_id, letter.kind, letter.attempts) == ("loop", "failed", 1)
    assert letter.error_type == "PublishFromHandlerError"
    assert letter.reason.startswith(
        "PublishFromHandlerError: rt.publish() refused 'ping': it was called inside a handler"
    )
    s = rt.statistics()
    assert (s.published, s.delivered, s.handled, s.dead_lettered, s.in_flight) == (1, 1, 0, 1, 0)


@pytest.mark.parametrize("built", ["rt.message", "ctx.emit"])
@pytest.mark.parametrize("verb", VERBS)
async def test_each_send_of_the_public_api_is_refused_inside_a_handler(
    verb: Verb, built: str
) -> None:
    sender, sink = Sender("s", verb, built=built), Echo("sink")
    async with Runtime([sender, sink]) as rt:
        sender.rt = rt
        await rt.publish(rt.message(Ping(), recipient="s"))
        with anyio.fail_after(STALL):
            await rt.wait_idle()
    [error] = sender.errors
    assert_refused(error, verb)
    assert sink.seen == []  # nothing was sent
    # Refused before anything happened: the handler's own delivery (whose correlation an
    # output built by ctx.emit shares) went on and ended handled, not cancelled.
    s = rt.statistics()
    assert (s.published, s.handled, s.dead_lettered, s.in_flight) == (1, 1, 0, 0)


class CountingClassifier:
    """A classifier that judges every text safe, and counts the texts it was sent."""

    name = "counting"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def classify(self, text: str) -> bool:
        self.texts.append(text)
        return False


@pytest.mark.parametrize("verb", VERBS)
async def test_a_refused_send_is_shown_to_no_classifier(verb: Verb) -> None:
    # The classifier is a policy's question to a model elsewhere: a send refused before
    # anything is sent asks it nothing.
    classifier = CountingClassifier()
    screen = ClassifierPolicy(classifier, fail="open")
    sender, sink = Sender("s", verb), Echo("sink")
    async with Runtime([sender, sink], policies=[screen]) as rt:
        sender.rt = rt
        await rt.publish(rt.message(Ping(sender_tag="outside"), recipient="s"))
        with anyio.fail_after(STALL):
            await rt.wait_idle()
    [error] = sender.errors
    assert_refused(error, verb)
    [text] = classifier.texts  # the outside publish's, and only that
    assert text.startswith("outside")


async def test_a_task_the_handler_started_is_refused_too() -> None:
    """The handler's child tasks, in its own task group or in one that outlives the handler,
    are the handler's work: they cannot send around its outputs either."""
    errors: list[GenieError] = []
    rt_box: list[Runtime] = []

    async def child(verb: Verb) -> None:
        await wait_all_tasks_blocked()  # the handler's own turn has moved on
        try:
            await send(rt_box[0], verb, rt_box[0].message(Ping(n=9), recipient="sink"))
        except GenieError as exc:
            errors.append(exc)

    class Spawner(BaseAgent):
        def __init__(self, id: str, outer: anyio.abc.TaskGroup) -> None:
            super().__init__(id)
            self.outer = outer

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            async with anyio.create_task_group() as tg:
                for verb in VERBS:
                    tg.start_soon(child, verb)
            # A task in a group that outlives the handler runs after it has returned.
            self.outer.start_soon(child, "publish_nowait")

    sink = Echo("sink")
    async with anyio.create_task_group() as outer:
        rt = Runtime([Spawner("spawner", outer), sink])
        rt_box.append(rt)
        async with rt:
            await rt.publish(rt.message(Ping(), recipient="spawner"))
            with anyio.fail_after(STALL):
                await rt.wait_idle()
                while len(errors) < 4:
                    await wait_all_tasks_blocked()
    assert all(isinstance(e, PublishFromHandlerError) for e in errors)
    verbs = sorted(str(e).split("(")[0] for e in errors)
    assert verbs == ["rt.ask", "rt.publish", "rt.publish_nowait", "rt.publish_nowait"]
    assert sink.seen == []


@pytest.mark.parametrize("verb", VERBS)
async def test_a_handler_may_send_into_another_runtime(verb: Verb) -> None:
    """Two runtimes never see each other: to runtime B, a handler of runtime A is an outside
    caller like any other, and B's own limits govern what it sends there."""
    sender, sink = Sender("s", verb, to="sink"), Echo("sink")
    async with Runtime([sink]) as other, Runtime([sender]) as rt:
        sender.rt = other
        await rt.publish(rt.message(Ping(), recipient="s"))
        with anyio.fail_after(STALL):
            await rt.wait_idle()
            await other.wait_idle()
        # ... and the same handler is still refused in its own runtime.
        sender.rt, sender.to = rt, "s"
        await rt.publish(rt.message(Ping(), recipient="s"))
        with anyio.fail_after(STALL):
            await rt.wait_idle()
    [ping] = sink.seen
    assert ping.correlation_id != ping.causation_id  # a request of its own in the other runtime
    [error] = sender.errors
    assert_refused(error, verb)
    assert (other.statistics().dead_lettered, rt.statistics().handled) == (0, 2)


async def test_outside_callers_still_publish_while_a_handler_is_refused() -> None:
    """A plain task of the caller and a task an agent started in ``on_start`` (not inside a
    handler) publish as before; only the handler's own send is refused."""

    class Feeder(BaseAgent):
        """Starts a feed of Pings in ``on_start``, into a task group of the caller's."""

        def __init__(self, id: str, tg: anyio.abc.TaskGroup) -> None:
            super().__init__(id)
            self.tg = tg
            self.rt: Runtime | None = None

        async def on_start(self) -> None:
            self.tg.start_soon(self.feed)

        async def feed(self) -> None:
            assert self.rt is not None
            for n in range(3):
                await self.rt.publish(self.rt.message(Ping(n=n), sender="feed", recipient="rec"))

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            pass

    rec, sender = Recorder("rec"), Sender("s", "publish", to="rec")
    async with anyio.create_task_group() as tg:
        feeder = Feeder("feeder", tg)
        rt = Runtime([rec, sender, feeder])
        feeder.rt = sender.rt = rt
        async with rt:

            async def plain() -> None:
                await rt.publish(rt.message(Ping(n=10), sender="plain", recipient="rec"))
                rt.publish_nowait(rt.message(Ping(n=11), sender="plain", recipient="rec"))
                result = await rt.ask(
                    rt.message(Ping(n=12), recipient="s"), until=lambda m: False, timeout=0.5
                )
                assert result.status == "partial"

            tg.start_soon(plain)
            with anyio.fail_after(STALL):
                while len(rec.seen) < 5 or sender.calls < 1:
                    await wait_all_tasks_blocked()
                await rt.wait_idle()
    assert sorted(p.n for p in rec.seen) == [0, 1, 2, 10, 11]
    [error] = sender.errors
    assert_refused(error, "publish")


async def test_a_handler_never_waits_for_room_in_its_own_full_mailbox() -> None:
    """On main this hung: the handler waited for room that only its own worker could make."""

    class Selfish(BaseAgent):
        def __init__(self, id: str, gate: anyio.Event) -> None:
            super().__init__(id)
            self.rt: Runtime | None = None
            self.gate = gate
            self.seen: list[int] = []
            self.errors: list[GenieError] = []

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            self.seen.append(payload.n)
            if payload.n != 0:
                return
            await self.gate.wait()
            assert self.rt is not None
            try:
                await self.rt.publish(self.rt.message(Ping(n=2), recipient=self.id))
            except GenieError as exc:
                self.errors.append(exc)

    gate = anyio.Event()
    agent = Selfish("selfish", gate)
    async with Runtime() as rt:
        rt.add(agent, options=AgentOptions(mailbox_size=1))
        agent.rt = rt
        await rt.publish(rt.message(Ping(n=0), recipient="selfish"))
        await wait_all_tasks_blocked()  # the first delivery runs, waiting at the gate
        await rt.publish(rt.message(Ping(n=1), recipient="selfish"))  # the mailbox is full
        box = rt.statistics().mailboxes["selfish"]
        assert (box.depth, box.capacity, box.active) == (1, 1, 1)
        gate.set()
        with anyio.fail_after(STALL):
            await rt.wait_idle()
    assert agent.seen == [0, 1]
    [error] = agent.errors
    assert_refused(error, "publish")


class Waiter(BaseAgent):
    """On a Ping, awaits ``rt.wait_idle()`` of ``rt``: its own runtime, or another."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.rt: Runtime | None = None
        self.outcomes: list[str] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        assert self.rt is not None
        with anyio.fail_after(STALL):  # it used to wait for its own delivery to end: for ever
            try:
                await self.rt.wait_idle()
            except WaitFromHandlerError as exc:
                self.outcomes.append(str(exc).split(":")[0])
                raise
        self.outcomes.append("idle")


async def test_waiting_for_idleness_inside_a_handler_is_refused_not_a_deadlock() -> None:
    """The runtime is idle only once the handler has returned, so ``rt.wait_idle()`` awaited in
    a handler could never end: refused at once, a ``failed`` dead letter, never retried. In
    another runtime the handler waits like any outside caller."""
    waiter = Waiter("w")
    retry = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0))
    async with Runtime([Echo("e")]) as other, Runtime() as rt:
        rt.add(waiter, options=retry)
        waiter.rt = rt
        await rt.publish(rt.message(Ping(), recipient="w"))
        with anyio.fail_after(STALL):
            await rt.wait_idle()
        assert waiter.outcomes == ["rt.wait_idle() refused"]  # once: not retried
        [letter] = rt.dead_letters
        assert (letter.kind, letter.error_type) == ("failed", "WaitFromHandlerError")
        waiter.rt = other
        await rt.publish(rt.message(Ping(), recipient="w"))
        with anyio.fail_after(STALL):
            await rt.wait_idle()
        assert waiter.outcomes[1:] == ["idle"]
