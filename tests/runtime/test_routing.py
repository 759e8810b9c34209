from __future__ import annotations

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    InvalidArgumentError,
    Message,
    NoRouteError,
    Runtime,
    UnknownRecipientError,
    WouldBlockError,
    handler,
)

from ..conftest import DenyTo, Echo, Held, Note, Ping, Pong, Recorder


class Odd(BaseException):
    """Not an ``Exception``: what a careless tap may raise all the same."""


class ListTap:
    def __init__(self, id: str, fail: type[BaseException] | None = None) -> None:
        self.id = id
        self.fail = fail
        self.seen: list[Message] = []

    def observe(self, msg: Message) -> None:
        if self.fail is not None:
            # A new one each time: an instance raised again would keep every traceback's
            # frames, and the messages in them, past the test.
            raise self.fail("tap broke")
        self.seen.append(msg)


async def drain(rt: Runtime) -> None:
    with anyio.fail_after(5):
        await rt.wait_idle()


async def test_direct_subscription_and_pattern_recipients() -> None:
    direct, by_type, by_pattern = Recorder("direct"), Recorder("typed"), Recorder("pattern")
    async with Runtime() as rt:
        rt.add(direct)
        rt.add(by_type, subscribe=["ping"])
        rt.add(by_pattern, subscribe=["p*"])
        await rt.publish(rt.message(Ping(n=1), recipient="direct"))
        await rt.publish(rt.message(Ping(n=2)))
        await drain(rt)
    assert [p.n for p in direct.seen] == [1]
    assert [p.n for p in by_type.seen] == [1, 2]
    assert [p.n for p in by_pattern.seen] == [1, 2]


async def test_recipient_that_also_subscribes_gets_one_copy() -> None:
    rec = Recorder("rec")
    async with Runtime() as rt:
        rt.add(rec, subscribe=["ping"])
        await rt.publish(rt.message(Ping(n=1), recipient="rec"))
        await drain(rt)
    assert len(rec.seen) == 1


@pytest.mark.parametrize("error", [ValueError, Odd])
async def test_taps_see_messages_and_a_failing_tap_changes_nothing(
    error: type[BaseException],
) -> None:
    good, bad = ListTap("good"), ListTap("bad", fail=error)
    async with Runtime([Echo("echo")]) as rt:
        rt.add_tap(bad)
        rt.add_tap(good)
        result = await rt.ask(rt.message(Ping(n=3), recipient="echo"))
    assert result.message.payload == Pong(n=3)
    assert [m.type for m in good.seen] == ["ping", "pong"]
    assert rt.statistics().tap_errors == 2


async def test_taps_are_governed_per_recipient() -> None:
    stream = ListTap("client-stream")
    async with Runtime([Echo("echo")], policies=[DenyTo("client-stream")]) as rt:
        rt.add_tap(stream)
        await rt.ask(rt.message(Ping(), recipient="echo"))
    assert stream.seen == []
    assert rt.statistics().taps_denied == 2


class Nameless:
    """A tap without an ``id``: what the policies would be asked about it is nobody."""

    def observe(self, msg: Message) -> None:
        pass


@pytest.mark.parametrize("given", ["tap", Nameless(), ListTap], ids=["str", "no id", "class"])
async def test_what_is_no_tap_is_refused_where_it_is_given(given: object) -> None:
    """A tap is asked its ``id`` at each publish, outside the guard that keeps a failing tap
    off the message's path: one without (a str, a class) broke every publish of a governed
    runtime. It is refused when added, naming the call."""
    async with Runtime([Echo("echo")], policies=[DenyTo("nobody")]) as rt:
        with pytest.raises(InvalidArgumentError, match=r"rt.add_tap\(\) takes a tap"):
            rt.add_tap(given)  # type: ignore[arg-type]
        result = await rt.ask(rt.message(Ping(n=3), recipient="echo"))
    assert result.message.payload == Pong(n=3)
    assert rt.statistics().tap_errors == 0


async def test_outside_publish_to_nobody_is_an_error() -> None:
    async with Runtime([Echo("echo")]) as rt:
        with pytest.raises(NoRouteError, match="no recipient and no agent subscribes"):
            await rt.publish(rt.message(Ping()))
        with pytest.raises(UnknownRecipientError, match="no agent 'ecko'"):
            await rt.publish(rt.message(Ping(), recipient="ecko"))
        assert rt.statistics().published == 0
        # the runtime keeps running
        assert (await rt.ask(rt.message(Ping(n=1), recipient="echo"))).complete


async def test_handler_output_to_nobody_is_counted_and_dead_lettered() -> None:
    async with Runtime([Echo("echo")]) as rt:
        # Echo replies to the sender "ghost", which is no agent and nobody waits for.
        await rt.publish(rt.message(Ping(n=1), sender="ghost", recipient="echo"))
        await drain(rt)
    stats = rt.statistics()
    assert stats.unrouted == 1
    [letter] = list(rt.dead_letters)
    assert letter.kind == "unrouted"
    assert letter.reason == "unknown recipient 'ghost'"
    assert letter.message.payload == Pong(n=1)


async def test_an_ask_to_an_unknown_recipient_is_an_error_and_cancels_nothing() -> None:
    """The ask's own gather is no reason to accept a message nobody here can take: a typo in
    the recipient is an error, and the other work of the correlation goes on."""
    held = Held("held", anyio.Event())
    async with Runtime([held]) as rt:
        first = rt.message(Ping(n=1), recipient="held")
        await rt.publish(first)
        await held.running.wait()
        cid = first.correlation_id
        for msg in (
            rt.message(Ping(n=2), recipient="heId", correlation_id=cid),
            # A follow-up with a cause: the ask's own gather could not take it either.
            rt.message(Ping(n=2), recipient="heId", correlation_id=cid, causation_id=first.id),
            rt.message(Ping(n=3), recipient="heId"),
        ):
            with pytest.raises(UnknownRecipientError, match="no agent 'heId'"):
                await rt.ask(msg, timeout=5)
        assert rt.in_flight_of(cid) == 1, "the running request was not cancelled"
        assert list(rt.dead_letters) == []
        rt.cancel(cid)
        await drain(rt)


async def test_an_ask_refused_for_room_cancels_nothing() -> None:
    """``rt.ask(wait=False)`` that finds a mailbox full put nothing in: the request of the same
    correlation already running goes on."""
    held = Held("held", anyio.Event())
    gate = anyio.Event()
    async with Runtime() as rt:
        rt.add(held)
        rt.add(Recorder("full", gate), options=AgentOptions(mailbox_size=1))
        first = rt.message(Ping(n=1), recipient="held")
        await rt.publish(first)
        await held.running.wait()
        cid = first.correlation_id
        await rt.publish(rt.message(Ping(n=2), recipient="full"))
        await anyio.wait_all_tasks_blocked()
        await rt.publish(rt.message(Ping(n=3), recipient="full"))
        with pytest.raises(WouldBlockError):
            await rt.ask(rt.message(Ping(n=4), recipient="full", correlation_id=cid), wait=False)
        await anyio.wait_all_tasks_blocked()  # a cancelled handler would have ended by now
        assert rt.in_flight_of(cid) == 1, "the running request was not cancelled"
        assert list(rt.dead_letters) == []
        # Timed out while it waited for room: it put nothing in either.
        late = rt.message(Ping(n=5), recipient="full", correlation_id=cid)
        result = await rt.ask(late, timeout=0.05)
        assert result.status == "timed_out"
        await anyio.wait_all_tasks_blocked()
        assert rt.in_flight_of(cid) == 1, "the running request was not cancelled"
        assert list(rt.dead_letters) == []
        rt.cancel(cid)
        gate.set()
        await drain(rt)
        assert [d.kind for d in rt.dead_letters] == ["cancelled"]


async def test_a_reply_made_outside_reaches_an_open_gather() -> None:
    """A message with a cause, to a consumer that is no agent (``user``), is taken by the
    gather of its correlation; with no cause it is a request, which nobody here takes."""
    async with Runtime([Echo("echo")]) as rt:
        request = rt.message(Ping(n=1), recipient="echo")
        gather = rt.gather(request.correlation_id, senders=["remote"], count=1, timeout=5)
        reply = rt.message(
            Pong(n=7),
            sender="remote",
            recipient="user",
            correlation_id=request.correlation_id,
            causation_id=request.id,
        )
        await rt.publish(reply)
        result = await gather.wait()
        assert [m.id for m in result.replies] == [reply.id]
        with pytest.raises(UnknownRecipientError, match="no agent 'user'"):
            await rt.publish(
                rt.message(Pong(n=8), recipient="user", correlation_id=request.correlation_id)
            )


async def test_a_pending_ctx_request_takes_nothing_from_outside() -> None:
    """A ``ctx.request`` waits for what a handler returns: it does not make a message from
    outside to an unknown recipient welcome."""
    held = Held("held", anyio.Event())

    class Asker(BaseAgent):
        @handler
        async def on_note(self, payload: Note, ctx: Context) -> None:
            await ctx.request("held", Ping(n=1), timeout=30)

    async with Runtime([held, Asker("asker")]) as rt:
        note = rt.message(Note(text="go"), recipient="asker")
        await rt.publish(note)
        await held.running.wait()
        with pytest.raises(UnknownRecipientError, match="no agent 'nobody'"):
            await rt.publish(
                rt.message(
                    Ping(n=2),
                    sender="held",
                    recipient="nobody",
                    correlation_id=note.correlation_id,
                    causation_id=note.id,
                )
            )
        rt.cancel(note.correlation_id)
        await drain(rt)
