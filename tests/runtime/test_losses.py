"""Loss notices (genie.lost): a subscriber hears at once, through the one routing path, of each
delivery of a correlation that is denied, fails or is shed; nobody subscribing costs nothing,
and a lost notice is not told about. On both anyio backends."""

from __future__ import annotations

import anyio

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Decision,
    Lost,
    Message,
    Runtime,
    RuntimeStatistics,
    Unanswered,
    handler,
)

from ..conftest import Failing, Note, Ping, PolicyFn, Pong, Recorder


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
    """On a Note, sends a Ping to ``to`` among its outputs, the runtime watching it for a
    reply; records what comes back (the reply, or the notice that none came)."""

    produces = (Ping,)

    def __init__(self, id: str, rt: Runtime, to: str) -> None:
        super().__init__(id)
        self.rt = rt
        self.to = to
        self.heard: list[Message] = []
        self.sent: list[Message] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> Message:
        ask = ctx.emit(Ping(n=1), recipient=self.to)
        self.rt.watch_reply(ask)
        self.sent.append(ask)
        return ask

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
    assert notice.payload == Unanswered(message_id=ask.id, type_name="ping", consumer="silent")
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
