"""Loss notices (genie.lost): a subscriber hears at once, through the one routing path, of each
delivery of a correlation that is denied, fails or is shed; nobody subscribing costs nothing,
and a lost notice is not told about. A request watched for a reply (``rt.watch_reply``): the
``Unanswered`` notice when none reached its sender, and what counts as a reply. On both anyio
backends."""

from __future__ import annotations

from typing import ClassVar

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Decision,
    InvalidArgumentError,
    Lost,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
    RuntimeStatistics,
    Unanswered,
    handler,
)
from genie._runtime.losses import Cancelled

from ..conftest import Echo, Failing, Held, Note, Ping, PolicyFn, Pong, Recorder


class Watcher(BaseAgent):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.heard: list[Message] = []

    @handler
    async def on_lost(self, payload: Lost, ctx: Context) -> None:
        self.heard.append(ctx.message)


def denies(type_name: str, consumer: str) -> PolicyFn:
    def fn(msg: Message, recipient: str) -> Decision:
        if msg.type == type_name and recipient == consumer:
            return Decision.deny("no-" + type_name, f"{type_name} may not reach {consumer}")
        return Decision.ALLOW

    return PolicyFn("no-" + type_name, fn)


def accounted(s: RuntimeStatistics) -> None:
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight


async def test_a_subscriber_hears_of_a_denied_delivery_with_the_policy() -> None:
    watcher = Watcher("watcher")
    async with Runtime([Recorder("worker"), watcher], policies=[denies("ping", "worker")]) as rt:
        rt.subscribe("watcher", Lost.message_type)
        msg = rt.message(Ping(n=1), recipient="worker")
        await rt.publish(msg)
        with anyio.fail_after(5):
            await rt.wait_idle()
        accounted(rt.statistics())
    (notice,) = watcher.heard
    assert notice.payload == Lost(
        message_id=msg.id,
        type_name="ping",
        sender="user",
        consumer="worker",
        kind="denied",
        reason="ping may not reach worker",
        policy="no-ping",
    )
    assert (notice.correlation_id, notice.causation_id, notice.sender) == (
        msg.correlation_id,
        msg.id,
        "genie",
    )


async def test_a_subscriber_hears_of_a_failure_with_the_error() -> None:
    watcher = Watcher("watcher")
    async with Runtime() as rt:
        rt.add(Failing("worker"), options=AgentOptions())
        rt.add(watcher, subscribe=[Lost.message_type])
        await rt.publish(rt.message(Ping(n=1), recipient="worker"))
        with anyio.fail_after(5):
            await rt.wait_idle()
    (notice,) = watcher.heard
    lost = notice.payload
    assert isinstance(lost, Lost)
    assert (lost.kind, lost.consumer, lost.reason) == ("failed", "worker", "RuntimeError: boom #1")


async def test_without_a_subscriber_nothing_is_sent() -> None:
    async with Runtime([Recorder("worker")], policies=[denies("ping", "worker")]) as rt:
        await rt.publish(rt.message(Ping(n=1), recipient="worker"))
        await rt.wait_idle()
        s = rt.statistics()
    assert (s.published, s.delivered, s.denied, s.unrouted) == (1, 1, 1, 0)
    assert "genie.lost" not in rt.types


async def test_a_denied_notice_is_not_told_about() -> None:
    watcher = Watcher("watcher")
    policies = [denies("ping", "worker"), denies("genie.lost", "watcher")]
    async with Runtime([Recorder("worker"), watcher], policies=policies) as rt:
        rt.subscribe("watcher", Lost.message_type)
        await rt.publish(rt.message(Ping(n=1), recipient="worker"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        s = rt.statistics()
    assert watcher.heard == []
    assert (s.published, s.denied, s.in_flight) == (2, 2, 0)  # the ping, its notice: no loop
    accounted(s)


class Undoer(Held):
    """``Held``, and hears of cancellations."""

    def __init__(self, id: str, gate: anyio.Event) -> None:
        super().__init__(id, gate)
        self.heard: list[Message] = []

    @handler
    async def on_cancelled(self, payload: Cancelled, ctx: Context) -> None:
        self.heard.append(ctx.message)


@pytest.mark.parametrize("told", [False, True])
@pytest.mark.parametrize("loss", ["denied", "shed"])
async def test_a_cancellation_notice_nobody_takes_leaves_no_correlation_behind(
    loss: str, told: bool
) -> None:
    """The notice begins a correlation of its own (``<id>.cancel``). Denied or shed to its one
    subscriber, nothing of it is in flight, and the correlation's record goes at once, as an
    outside publish's does when every delivery was refused. A subscriber of ``genie.lost``
    hears of the notice's loss there (only a loss notice's own loss is told to nobody)."""
    gate = anyio.Event()
    held, undoer, watcher = Held("held", gate), Undoer("undoer", gate), Watcher("watcher")
    policies = [denies("genie.cancelled", "undoer")] if loss == "denied" else []
    async with Runtime([held], policies=policies) as rt:
        rt.add(
            undoer,
            subscribe=[Cancelled.message_type],
            options=AgentOptions(mailbox_size=1, overflow="shed"),
        )
        if told:
            rt.add(watcher, subscribe=[Lost.message_type])
        if loss == "shed":  # one note running, one queued: the undoer's mailbox is full
            await rt.publish(rt.message(Note(text="a"), recipient="undoer"))
            await rt.publish(rt.message(Note(text="b"), recipient="undoer"))
        request = rt.message(Ping(n=1), recipient="held")
        await rt.publish(request)
        with anyio.fail_after(5):
            await held.running.wait()
        rt.cancel(request.correlation_id)
        gate.set()
        with anyio.fail_after(5):
            await rt.wait_idle()
        s = rt.statistics()
        assert s.correlations.correlations_active == 0
        assert (s.denied, s.shed) == ((1, 0) if loss == "denied" else (0, 1))
        accounted(s)
    assert undoer.heard == []
    if told:
        (notice,) = watcher.heard
        lost = notice.payload
        assert isinstance(lost, Lost)
        assert (lost.type_name, lost.consumer, lost.kind) == ("genie.cancelled", "undoer", loss)
        assert notice.correlation_id == request.correlation_id + ".cancel"
    else:
        assert watcher.heard == []


class Fan(BaseAgent):
    produces = (Ping,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        return [ctx.emit(Ping(n=i), recipient="sink") for i in range(3)]


async def test_a_subscriber_hears_of_what_an_overflow_policy_sheds() -> None:
    watcher = Watcher("watcher")
    async with Runtime() as rt:
        rt.add(Fan("fan"))
        rt.add(Recorder("sink"), options=AgentOptions(mailbox_size=1, overflow="shed"))
        rt.add(watcher, subscribe=[Lost.message_type])
        await rt.publish(rt.message(Ping(n=0), recipient="fan"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        s = rt.statistics()
    assert s.shed == 2
    kinds = [(m.payload.kind, m.payload.consumer) for m in watcher.heard]  # type: ignore[attr-defined]
    assert kinds == [("shed", "sink"), ("shed", "sink")]
    accounted(s)


class Asker(BaseAgent):
    """On a Note, sends ``count`` Pings to ``to`` among its outputs, the runtime watching each
    for a reply (``watches`` times); records what comes back (the reply, the notice that none
    came, the loss notice when it subscribes)."""

    produces: ClassVar[tuple[type[Payload], ...]] = (Ping,)

    def __init__(
        self, id: str, rt: Runtime, to: str | None, *, count: int = 1, watches: int = 1
    ) -> None:
        super().__init__(id)
        self.rt = rt
        self.to = to
        self.count = count
        self.watches = watches
        self.heard: list[Message] = []
        self.sent: list[Message] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> list[Message]:
        return self.asks(ctx)

    def asks(self, ctx: Context) -> list[Message]:
        asks = [ctx.emit(Ping(n=i), recipient=self.to) for i in range(self.count)]
        for ask in asks:
            for _ in range(self.watches):
                self.rt.watch_reply(ask)
        self.sent += asks
        return asks

    @handler
    async def on_lost(self, payload: Lost, ctx: Context) -> None:
        self.heard.append(ctx.message)

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        self.heard.append(ctx.message)

    @handler
    async def on_unanswered(self, payload: Unanswered, ctx: Context) -> None:
        self.heard.append(ctx.message)


async def test_a_watched_request_handled_without_a_reply_is_told_at_once() -> None:
    # A bystander subscribed to the type handles the request too, with no reply of its own:
    # only the recipient's handling answers for it.
    async with Runtime() as rt:
        asker = Asker("asker", rt, "silent")
        rt.add(asker)
        rt.add(Recorder("silent"))
        rt.add(Recorder("bystander"), subscribe=["ping"])
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        accounted(rt.statistics())
    (ask,) = asker.sent
    (notice,) = asker.heard
    assert notice.payload == Unanswered(
        message_id=ask.id,
        type_name="ping",
        consumer="silent",
        reason="handled the ping without replying",
    )
    assert (notice.sender, notice.recipient, notice.causation_id) == ("genie", "asker", ask.id)
    assert notice.correlation_id == ask.correlation_id


async def test_a_watched_request_that_is_answered_brings_no_notice() -> None:
    async with Runtime() as rt:
        asker = Asker("asker", rt, "answers")
        rt.add(asker)
        rt.add(Failing("answers", failures=0))
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        assert rt.statistics().correlations.correlations_active == 0  # the watch left
    assert [m.type for m in asker.heard] == ["pong"]


async def asked(rt: Runtime, asker: Asker) -> RuntimeStatistics:
    """Sends ``asker`` its Note and waits until the runtime is idle: the statistics then."""
    await rt.publish(rt.message(Note(text="go"), recipient=asker.id))
    with anyio.fail_after(10):
        await rt.wait_idle()
    s = rt.statistics()
    accounted(s)
    assert s.correlations.correlations_active == 0  # every watch left
    return s


def unanswered(asker: Asker) -> list[tuple[str, str]]:
    """The notices ``asker`` heard, as (type, the consumer named)."""
    return [(m.type, getattr(m.payload, "consumer", m.sender)) for m in asker.heard]


class Silent(BaseAgent):
    """Handles a Ping, in a plain def handler (a worker thread, or a process), without a
    reply; ``reply``: replies Pong."""

    produces = (Pong,)

    def __init__(self, id: str, reply: bool = False) -> None:
        super().__init__(id)
        self.reply = reply

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> Message | None:
        return ctx.reply(Pong(n=payload.n)) if self.reply else None


class Bare:
    """A protocol agent (no BaseAgent): returns a Pong when ``reply``, else nothing."""

    consumes = (Ping,)
    produces = (Pong,)
    capabilities: tuple[str, ...] = ()

    def __init__(self, id: str, reply: bool) -> None:
        self.id = self.name = id
        self.reply = reply

    async def handle(self, msg: Message, ctx: Context) -> list[Message]:
        return [ctx.reply(Pong(n=1))] if self.reply else []


async def test_a_retry_that_replies_brings_no_notice() -> None:
    async with Runtime() as rt:
        asker = Asker("asker", rt, "flaky")
        rt.add(asker)
        retry = AgentOptions(retry=RetryPolicy(attempts=2, backoff=0))
        rt.add(Failing("flaky", failures=1), options=retry)
        s = await asked(rt, asker)
    assert unanswered(asker) == [("pong", "flaky")]
    assert s.retries == 1


@pytest.mark.parametrize(("fallback", "heard"), [(True, "pong"), (False, "genie.unanswered")])
async def test_a_failed_request_is_answered_for_by_its_fallback(fallback: bool, heard: str) -> None:
    # The recipient fails; its fallback handles the request: with a reply (no notice), or
    # without (the notice names the fallback, which handled it).
    async with Runtime() as rt:
        asker = Asker("asker", rt, "broken")
        rt.add(asker)
        rt.add(Failing("broken"), options=AgentOptions(fallback="spare"))
        rt.add(Echo("spare") if fallback else Recorder("spare"))
        await asked(rt, asker)
    assert unanswered(asker) == [(heard, "spare")]


@pytest.mark.parametrize(
    "options", [AgentOptions(), AgentOptions(offload="process")], ids=["thread", "process"]
)
@pytest.mark.parametrize("reply", [True, False])
async def test_a_plain_def_handler_is_watched(options: AgentOptions, reply: bool) -> None:
    async with Runtime(processes=1) as rt:
        asker = Asker("asker", rt, "sync")
        rt.add(asker)
        rt.add(Silent("sync", reply=reply), options=options)
        await asked(rt, asker)
    assert unanswered(asker) == [("pong", "sync") if reply else ("genie.unanswered", "sync")]


@pytest.mark.parametrize("reply", [True, False])
async def test_a_protocol_agent_is_watched(reply: bool) -> None:
    async with Runtime() as rt:
        asker = Asker("asker", rt, "bare")
        rt.add(asker)
        rt.add(Bare("bare", reply))
        await asked(rt, asker)
    assert unanswered(asker) == [("pong", "bare") if reply else ("genie.unanswered", "bare")]


async def test_a_denied_reply_is_told_as_unanswered_with_the_denial() -> None:
    # The reply was returned but never reached the sender: the request went unanswered, and
    # the notice says why; the loss notice (to a subscriber of genie.lost) names the reply.
    async with Runtime(policies=[denies("pong", "asker")]) as rt:
        asker = Asker("asker", rt, "echo")
        rt.add(asker, subscribe=[Lost.message_type])
        rt.add(Echo("echo"))
        s = await asked(rt, asker)
    (ask,) = asker.sent
    assert s.denied == 1
    lost, notice = asker.heard
    assert isinstance(lost.payload, Lost)
    assert (lost.payload.type_name, lost.payload.consumer) == ("pong", "asker")
    assert notice.payload == Unanswered(
        message_id=ask.id,
        type_name="ping",
        consumer="echo",
        reason="handled the ping, but its reply 'pong' was denied by no-pong: pong may not "
        "reach asker",
    )


async def test_a_denied_reply_without_a_loss_subscriber_is_still_told() -> None:
    async with Runtime(policies=[denies("pong", "asker")]) as rt:
        asker = Asker("asker", rt, "echo")
        rt.add(asker)
        rt.add(Echo("echo"))
        await asked(rt, asker)
    assert unanswered(asker) == [("genie.unanswered", "echo")]


async def test_a_request_denied_on_its_way_is_told_by_its_loss_alone() -> None:
    async with Runtime(policies=[denies("ping", "echo")]) as rt:
        asker = Asker("asker", rt, "echo")
        rt.add(asker, subscribe=[Lost.message_type])
        rt.add(Echo("echo"))
        await asked(rt, asker)
    assert unanswered(asker) == [("genie.lost", "echo")]


class Gated(BaseAgent):
    """Handles a Ping once ``gate`` is set, without replying."""

    def __init__(self, id: str, gate: anyio.Event) -> None:
        super().__init__(id)
        self.gate = gate
        self.started = anyio.Event()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.started.set()
        await self.gate.wait()


async def test_a_cancelled_request_brings_no_notice_and_leaves_no_watch() -> None:
    async with Runtime() as rt:
        asker = Asker("asker", rt, "slow")
        gated = Gated("slow", anyio.Event())
        rt.add(asker)
        rt.add(gated)
        note = rt.message(Note(text="go"), recipient="asker")
        await rt.publish(note)
        with anyio.fail_after(5):
            await gated.started.wait()
            rt.cancel(note.correlation_id)
            await rt.wait_idle()
        assert rt.statistics().correlations.correlations_active == 0
        accounted(rt.statistics())
    assert asker.heard == []


async def test_a_watch_live_at_the_stop_leaves_nothing_behind() -> None:
    rt = Runtime()
    rt.drain_timeout = 0.01
    asker = Asker("asker", rt, "slow")
    gated = Gated("slow", anyio.Event())
    async with rt:
        rt.add(asker)
        rt.add(gated)
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        with anyio.fail_after(5):
            await gated.started.wait()
    s = rt.statistics()
    assert s.correlations.correlations_active == 0
    accounted(s)
    assert asker.heard == []


async def test_a_request_watched_twice_brings_one_notice() -> None:
    async with Runtime() as rt:
        asker = Asker("asker", rt, "silent", watches=2)
        rt.add(asker)
        rt.add(Recorder("silent"))
        await asked(rt, asker)
    assert unanswered(asker) == [("genie.unanswered", "silent")]


async def test_watching_outside_a_handler_or_without_a_recipient_is_refused() -> None:
    async with Runtime([Recorder("silent")]) as rt:
        with pytest.raises(InvalidArgumentError, match="called outside a handler of this runtime"):
            rt.watch_reply(rt.message(Ping(n=1), recipient="silent"))
        asker = Asker("asker", rt, None)
        rt.add(asker)
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        (dead,) = rt.dead_letters
        assert dead.reason.startswith(
            "InvalidArgumentError: rt.watch_reply(): the 'ping' has no recipient"
        )
        assert rt.statistics().correlations.correlations_active == 0


class Stray(BaseAgent):
    """Watches a Ping it builds with the runtime (a correlation of its own), or to an agent
    of no mailbox here, or one it never returns."""

    produces = (Ping,)

    def __init__(self, id: str, rt: Runtime, how: str) -> None:
        super().__init__(id)
        self.rt = rt
        self.how = how

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> list[Message]:
        if self.how == "built":
            ask = self.rt.message(Ping(n=1), recipient="silent")
        else:
            ask = ctx.emit(Ping(n=1), recipient="elsewhere" if self.how == "away" else "silent")
        self.rt.watch_reply(ask)
        return [] if self.how == "kept" else [ask]


@pytest.mark.parametrize("how", ["away", "kept"])
async def test_a_watch_that_can_never_fire_leaves_with_the_handling(how: str) -> None:
    async with Runtime([Recorder("silent")]) as rt:
        rt.add(Stray("stray", rt, how))
        await rt.publish(rt.message(Note(text="go"), recipient="stray"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        s = rt.statistics()
        assert s.correlations.correlations_active == 0
        accounted(s)


async def test_a_request_of_another_correlation_is_refused() -> None:
    # Its correlation is not the handling's: the runtime would stamp the handling's on it
    # as it routes it, and a watch on the other would wait for ever.
    async with Runtime([Recorder("silent")]) as rt:
        rt.add(Stray("stray", rt, "built"))
        await rt.publish(rt.message(Note(text="go"), recipient="stray"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        (dead,) = rt.dead_letters
        assert "not of the correlation of the message being handled" in dead.reason
        assert rt.statistics().correlations.correlations_active == 0


async def test_a_gather_on_the_correlation_and_a_watch_both_see_the_reply() -> None:
    async with Runtime() as rt:
        asker = Asker("asker", rt, "echo")
        rt.add(asker)
        rt.add(Echo("echo"))
        note = rt.message(Note(text="go"), recipient="asker")
        gather = rt.gather(note.correlation_id, types=["pong"], timeout=5)
        await rt.publish(note)
        result = await gather.wait()
        with anyio.fail_after(5):
            await rt.wait_idle()
        assert rt.statistics().correlations.correlations_active == 0
    assert [m.type for m in result.replies] == ["pong"]
    assert unanswered(asker) == [("pong", "echo")]


class Forwarder(BaseAgent):
    """Answers a Ping with Pongs: to a third agent (``third``), or two to the sender; or one
    to the sender, then raises on the first attempt (``raise_after``)."""

    produces = (Pong,)

    def __init__(self, id: str, how: str) -> None:
        super().__init__(id)
        self.how = how
        self.calls = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        self.calls += 1
        if self.how == "third":
            return [ctx.emit(Pong(n=1), recipient="third")]
        if self.how == "twice":
            return [ctx.reply(Pong(n=1)), ctx.reply(Pong(n=2))]
        reply = ctx.reply(Pong(n=self.calls))
        if self.calls == 1:
            raise RuntimeError("after building the reply")
        return [reply]


@pytest.mark.parametrize(
    ("how", "heard"),
    [
        ("third", [("genie.unanswered", "relay")]),
        ("twice", [("pong", "relay"), ("pong", "relay")]),
        ("raise_after", [("pong", "relay")]),
    ],
)
async def test_what_counts_as_a_reply(how: str, heard: list[tuple[str, str]]) -> None:
    async with Runtime() as rt:
        asker = Asker("asker", rt, "relay")
        rt.add(asker)
        rt.add(Recorder("third"))
        retry = AgentOptions(retry=RetryPolicy(attempts=2, backoff=0))
        rt.add(Forwarder("relay", how), options=retry)
        await asked(rt, asker)
    assert unanswered(asker) == heard


async def test_a_request_the_responder_asks_back_about_is_still_unanswered() -> None:
    # The responder asks the sender a question of its own (caused by the request, addressed
    # to the sender) and then returns nothing: a question is no reply.
    class Questioner(BaseAgent):
        produces = (Pong,)

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            await ctx.request("asker", Note(text="which?"), timeout=5)

    class Answering(Asker):
        produces = (Ping, Pong)

        @handler
        async def on_question(self, payload: Note, ctx: Context) -> list[Message]:
            if ctx.message.sender == "user":
                return self.asks(ctx)
            return [ctx.reply(Pong(n=0))]

    async with Runtime() as rt:
        asker = Answering("asker", rt, "questioner")
        rt.add(asker, options=AgentOptions(max_concurrency=2))
        rt.add(Questioner("questioner"))
        await asked(rt, asker)
    assert unanswered(asker) == [("genie.unanswered", "questioner")]


async def test_many_watches_in_one_correlation_cost_each_the_same() -> None:
    # 200 requests of one handling, each watched: each watch is found by its request's id,
    # not looked for among the others, and the correlation ends with them.
    async with Runtime() as rt:
        asker = Asker("asker", rt, "silent", count=200)
        gate = anyio.Event()
        rt.add(asker)
        rt.add(Recorder("silent", gate))
        note = rt.message(Note(text="go"), recipient="asker")
        await rt.publish(note)
        await anyio.wait_all_tasks_blocked()  # the 200 pings sent, the first one held
        corr = rt._correlator.lookup(note.correlation_id)
        assert corr is not None
        assert len(corr.waiters) == 1  # one book of the correlation's watches, not 200
        gate.set()
        with anyio.fail_after(10):
            await rt.wait_idle()
        s = rt.statistics()
        accounted(s)
        assert s.correlations.correlations_active == 0
    assert len(asker.heard) == 200
    assert {m.causation_id for m in asker.heard} == {m.id for m in asker.sent}


async def test_two_runtimes_hear_only_of_their_own_requests() -> None:
    async with Runtime() as one, Runtime() as two:
        a1, a2 = Asker("asker", one, "silent"), Asker("asker", two, "echo")
        one.add(a1)
        one.add(Recorder("silent"))
        two.add(a2)
        two.add(Echo("echo"))
        await one.publish(one.message(Note(text="go"), recipient="asker"))
        await two.publish(two.message(Note(text="go"), recipient="asker"))
        with anyio.fail_after(5):
            await one.wait_idle()
            await two.wait_idle()
    assert unanswered(a1) == [("genie.unanswered", "silent")]
    assert unanswered(a2) == [("pong", "echo")]


class ThreadStep(BaseAgent):
    """A ``def`` handler, run in a worker thread, that watches the Ping it sends: directly,
    or on the event loop as the thread's context does its own work."""

    produces = (Ping,)

    def __init__(self, id: str, rt: Runtime, on_loop: bool) -> None:
        super().__init__(id)
        self.rt = rt
        self.on_loop = on_loop
        self.heard: list[Message] = []

    @handler
    def on_note(self, payload: Note, ctx: Context) -> Message:
        ask = ctx.emit(Ping(n=1), recipient="silent")
        if self.on_loop:
            anyio.from_thread.run_sync(self.rt.watch_reply, ask)
        else:
            self.rt.watch_reply(ask)
        return ask

    @handler
    async def on_unanswered(self, payload: Unanswered, ctx: Context) -> None:
        self.heard.append(ctx.message)


async def test_a_watch_from_a_handlers_thread_is_made_on_the_event_loop_or_refused() -> None:
    """From a def handler's worker thread the watch changed the correlation's waiters off
    the event loop, racing the deliveries that read them."""
    async with Runtime([Recorder("silent")]) as rt:
        direct, on_loop = ThreadStep("direct", rt, False), ThreadStep("on-loop", rt, True)
        rt.add(direct)
        rt.add(on_loop)
        for agent in (direct, on_loop):
            await rt.publish(rt.message(Note(text="go"), recipient=agent.id))
        with anyio.fail_after(5):
            await rt.wait_idle()
        (dead,) = rt.dead_letters
        assert dead.reason == (
            "InvalidArgumentError: rt.watch_reply() refused for 'ping': it was called in a "
            "handler's worker thread (a def handler); call it on the event loop: "
            "anyio.from_thread.run_sync(rt.watch_reply, request)"
        )
        assert direct.heard == []
        (notice,) = on_loop.heard
        assert isinstance(notice.payload, Unanswered)
        assert notice.payload.consumer == "silent"
        assert rt.statistics().correlations.correlations_active == 0


class Deaf(BaseAgent):
    """Watches the Ping it sends, with no handler for the notice it would be sent."""

    produces = (Ping,)

    def __init__(self, id: str, rt: Runtime) -> None:
        super().__init__(id)
        self.rt = rt

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> Message:
        ask = ctx.emit(Ping(n=1), recipient="silent")
        self.rt.watch_reply(ask)
        return ask


async def test_a_sender_that_cannot_take_the_notice_is_refused_the_watch() -> None:
    # Else its notice would end as a dead letter of its own, far from the mistake.
    async with Runtime([Recorder("silent")]) as rt:
        rt.add(Deaf("deaf", rt))
        await rt.publish(rt.message(Note(text="go"), recipient="deaf"))
        with anyio.fail_after(5):
            await rt.wait_idle()
        (dead,) = rt.dead_letters
        assert dead.message.type == "note"
        assert dead.reason == (
            "InvalidArgumentError: rt.watch_reply(): agent 'deaf' has no handler for "
            "'genie.unanswered', the notice it would be sent: give it a handler of "
            "genie.Unanswered"
        )
        assert rt.statistics().correlations.correlations_active == 0
