"""An id is one message: neither a handler nor an outside caller gets one message delivered
twice to its recipients by sending it twice (docs/semantics.md, "Nothing is lost silently")."""

from __future__ import annotations

import anyio
import pytest

from genie import (
    BaseAgent,
    Context,
    DuplicateMessageError,
    Message,
    Runtime,
    RuntimeStatistics,
    handler,
)
from genie._runtime.dispatch import SEEN_KEPT
from genie.policies import ClassifierPolicy

from ..conftest import Note, Ping, Pong, Recorder


class SendsTwice(BaseAgent):
    """On a note, returns one ping to ``to`` twice, after another ping built once."""

    produces = (Ping,)

    def __init__(self, id: str, to: str) -> None:
        super().__init__(id)
        self.to = to
        self.twice: list[str] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> list[Message]:
        once = ctx.emit(Ping(n=1), recipient=self.to)
        twice = ctx.emit(Ping(n=2), recipient=self.to)
        self.twice.append(twice.id)
        return [once, twice, twice]


def balanced(s: RuntimeStatistics) -> bool:
    return s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight


async def drain(rt: Runtime) -> None:
    with anyio.fail_after(5):
        await rt.wait_idle()


async def test_a_handler_returning_one_message_twice_fails_naming_it() -> None:
    """The ping returned twice reached the recipient twice, one message run twice."""
    rec, sender = Recorder("rec"), SendsTwice("sender", "rec")
    async with Runtime([rec, sender]) as rt:
        await rt.publish(rt.message(Note(text="go"), recipient="sender"))
        await drain(rt)
    [twice] = sender.twice
    assert rec.seen == []  # a handler's outputs go out whole or not at all
    [letter] = rt.dead_letters
    assert letter.kind == "failed"
    assert letter.error_type == "InvalidOutputError"
    assert letter.reason == (
        f"InvalidOutputError: agent 'sender' returned message {twice} ('ping') twice among "
        "its outputs; a message is delivered once: build a new one for each send (ctx.reply, "
        "ctx.emit)"
    )
    stats = rt.statistics()
    assert (stats.delivered, stats.dead_lettered, stats.in_flight) == (1, 1, 0)
    assert balanced(stats)


class HandsBack(BaseAgent):
    """Returns the ping it was handed, as it is (``listed``: in a list)."""

    def __init__(self, id: str, listed: bool) -> None:
        super().__init__(id)
        self.listed = listed
        self.handled = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message | list[Message]:
        self.handled += 1
        return [ctx.message] if self.listed else ctx.message


class HandsBackRaw:
    """A protocol agent (no BaseAgent) whose ``handle`` returns what it was handed."""

    consumes = (Ping,)
    produces = (Ping,)
    capabilities: tuple[str, ...] = ()

    def __init__(self, id: str) -> None:
        self.id = self.name = id
        self.handled = 0

    async def handle(self, msg: Message, ctx: Context) -> list[Message]:
        self.handled += 1
        return [msg]


@pytest.mark.parametrize("shape", ["message", "list", "handle"])
async def test_a_handler_returning_the_message_it_was_handed_fails_naming_it(
    shape: str,
) -> None:
    """The ping handed back went round to its own agent again, one id delivered until the
    hop limit denied it."""
    agent = HandsBackRaw("echo") if shape == "handle" else HandsBack("echo", shape == "list")
    async with Runtime([agent]) as rt:
        ping = rt.message(Ping(n=1), recipient="echo")
        await rt.publish(ping)
        await drain(rt)
    assert agent.handled == 1
    [letter] = rt.dead_letters
    assert (letter.kind, letter.message.id) == ("failed", ping.id)
    assert letter.reason == (
        f"InvalidOutputError: agent 'echo' returned a message with the id of the one it was "
        f"handed ({ping.id}); a message is delivered once: build a new one for each send "
        "(ctx.reply, ctx.emit)"
    )
    stats = rt.statistics()
    assert (stats.published, stats.delivered, stats.denied) == (1, 1, 0)
    assert balanced(stats)


async def test_a_message_published_twice_from_outside_is_refused_the_second_time() -> None:
    """Published again (by publish, publish_nowait or ask), the one message was delivered
    again to each recipient."""
    first, second = Recorder("first"), Recorder("second")
    async with Runtime() as rt:
        rt.add(first, subscribe=["ping"])
        rt.add(second, subscribe=["ping"])
        msg = rt.message(Ping(n=7))
        await rt.publish(msg)
        refused = f"message {msg.id} was published to this runtime already"
        again = f"cannot publish 'ping': {refused}"
        with pytest.raises(DuplicateMessageError, match=again):
            await rt.publish(msg)
        with pytest.raises(DuplicateMessageError, match=f"publish_nowait 'ping': {refused}"):
            rt.publish_nowait(msg)
        await drain(rt)
        # Refused as well once its deliveries have ended, by an ask too.
        with pytest.raises(DuplicateMessageError, match=f"cannot ask 'ping': {refused}") as info:
            await rt.ask(msg, timeout=5)
        await rt.publish(rt.message(Ping(n=8)))  # a new message of the same payload goes
        await drain(rt)
    assert info.value.message_id == msg.id
    assert [p.n for p in first.seen] == [p.n for p in second.seen] == [7, 8]
    stats = rt.statistics()
    assert (stats.published, stats.delivered, stats.handled) == (2, 4, 4)
    assert list(rt.dead_letters) == []
    assert balanced(stats)


async def test_a_runtime_remembers_a_bounded_number_of_published_ids() -> None:
    rec = Recorder("rec")
    async with Runtime([rec]) as rt:
        oldest = rt.message(Ping(n=-1), recipient="rec")
        await rt.publish(oldest)
        for n in range(SEEN_KEPT):
            await rt.publish(rt.message(Ping(n=n), recipient="rec"))
        await rt.publish(oldest)  # forgotten: the memory does not grow with every publish
        await drain(rt)
    assert len(rec.seen) == SEEN_KEPT + 2
    assert balanced(rt.statistics())


class Counted:
    """A classifier that finds every text safe, counting the texts it was asked about (each
    a model's call, which costs)."""

    name = "counted"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def classify(self, text: str) -> bool:
        self.texts.append(text)
        return False


class Echo(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> Message:
        return ctx.reply(Pong(n=len(payload.text)))


async def test_a_message_sent_again_is_refused_before_a_classifier_is_asked() -> None:
    """Asked again, the message was shown to the classifier (a model's call, paid for) and
    then refused, saying it could not be published; so too published again."""
    counted = Counted()
    # One verdict kept: the second message's verdict drops the first's, so the classifier
    # would be asked about the first again.
    screen = ClassifierPolicy(counted, cache_size=1)
    async with Runtime([Echo("echo")], policies=[screen]) as rt:
        first = rt.message(Note(text="my balance"), recipient="echo")
        assert (await rt.ask(first, timeout=5)).replies
        assert (await rt.ask(rt.message(Note(text="my loan"), recipient="echo"), timeout=5)).replies
        assert len(counted.texts) == 2
        refused = f"message {first.id} was published to this runtime already"
        with pytest.raises(DuplicateMessageError, match=f"^cannot ask 'note': {refused}"):
            await rt.ask(first, timeout=5)
        with pytest.raises(DuplicateMessageError, match=f"^cannot ask 'note': {refused}"):
            await rt.ask(first, timeout=5, wait=False)
        with pytest.raises(DuplicateMessageError, match=f"^cannot publish 'note': {refused}"):
            await rt.publish(first)
        assert len(counted.texts) == 2
        await drain(rt)
    stats = rt.statistics()
    assert (stats.published, stats.denied) == (4, 0)
    assert balanced(stats)
