from __future__ import annotations

import anyio
import pytest

from genie import Message, NoRouteError, Runtime, UnknownRecipientError

from ..conftest import DenyTo, Echo, Ping, Pong, Recorder


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
