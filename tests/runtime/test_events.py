"""Live event streams per correlation: what they show, how they end, how they stay bounded."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Event,
    EventStream,
    InvalidArgumentError,
    Message,
    Observer,
    RetryPolicy,
    Runtime,
    RuntimeClosedError,
)
from genie import handler as on

from ..conftest import DenyTo, Echo, Failing, Ping, Pong, Recorder


async def read_all(stream: EventStream) -> list[Event]:
    return [event async for event in stream]


def kinds(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.kind, e.agent_id) for e in events]


async def test_a_request_from_publish_to_settled() -> None:
    async with Runtime() as rt:
        rt.add(Echo("echo"))
        msg = rt.message(Ping(n=1), recipient="echo")
        async with rt.events(msg.correlation_id) as stream:
            result = await rt.ask(msg)
            events = await read_all(stream)
    assert result.complete
    assert kinds(events) == [
        ("published", "user"),
        ("delivered", "echo"),
        ("handled", "echo"),
        ("published", "echo"),
        ("gathered", None),
        ("settled", None),
    ]
    assert all(e.correlation_id == msg.correlation_id for e in events)
    assert events[0].message_id == msg.id
    assert events[2].count == 1  # one output
    assert events[2].duration is not None
    assert events[2].duration >= 0
    assert events[3].message_type == "pong"
    assert events[3].hops == 1
    assert events[4].reason == "complete"
    assert [e.at for e in events] == sorted(e.at for e in events)


async def test_denied_failed_retried_and_dead_lettered_are_shown_with_why() -> None:
    retry = RetryPolicy(attempts=2, backoff=0.0)
    async with Runtime(policies=[DenyTo("blocked", name="no-blocked")]) as rt:
        rt.add(Recorder("blocked"), subscribe=["ping"])
        rt.add(Failing("flaky", failures=1), options=AgentOptions(retry=retry))
        rt.add(Failing("broken"), options=AgentOptions(retry=RetryPolicy(attempts=1)))
        msg = rt.message(Ping(), recipient="flaky")
        async with rt.events(msg.correlation_id) as stream:
            await rt.publish(msg)
            events = await read_all(stream)
        broken = rt.message(Ping(), recipient="broken")
        async with rt.events(broken.correlation_id) as stream:
            await rt.publish(broken)
            lost = await read_all(stream)

    denied = next(e for e in events if e.kind == "denied")
    assert denied.agent_id == "blocked"
    assert denied.policy == "no-blocked"
    assert denied.reason == "blocked is blocked"
    flaky = [e.kind for e in events if e.agent_id == "flaky" and e.kind in ("failed", "handled")]
    assert flaky == ["failed", "handled"]
    failed = next(e for e in events if e.kind == "failed")
    assert failed.reason == "RuntimeError: boom #1"
    dead = next(e for e in lost if e.kind == "dead_lettered")
    assert dead.agent_id == "broken"
    assert dead.reason == "failed: RuntimeError: boom #1"
    assert lost[-1].kind == "settled"


async def test_a_request_denied_outright_still_ends_its_stream() -> None:
    async with Runtime(policies=[DenyTo("echo")]) as rt:
        rt.add(Echo("echo"))
        msg = rt.message(Ping(), recipient="echo")
        async with rt.events(msg.correlation_id) as stream:
            await rt.publish(msg)
            with anyio.fail_after(5):
                events = await read_all(stream)
    assert [e.kind for e in events] == ["published", "denied", "settled"]


async def test_streams_see_only_their_correlation_and_the_open_one_sees_all() -> None:
    async with Runtime() as rt:
        rt.add(Echo("echo"))
        first = rt.message(Ping(n=1), recipient="echo")
        second = rt.message(Ping(n=2), recipient="echo")
        everything = rt.events()
        async with rt.events(first.correlation_id) as mine:
            await rt.ask(first)
            await rt.ask(second)
            only_first = await read_all(mine)
    every = await read_all(everything)
    assert {e.correlation_id for e in only_first} == {first.correlation_id}
    assert {e.correlation_id for e in every} == {first.correlation_id, second.correlation_id}
    assert [e.kind for e in every].count("settled") == 2


class Sink(BaseAgent):
    @on
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        pass


class Burst(BaseAgent):
    """Answers one Ping with ``n`` Pongs to the sink."""

    produces = (Pong,)

    @on
    async def on_ping(self, payload: Ping, ctx: Context) -> tuple[Message, ...]:
        return tuple(ctx.emit(Pong(n=i), recipient="sink") for i in range(payload.n))


async def test_a_slow_reader_loses_events_is_told_how_many_and_slows_nothing() -> None:
    async with Runtime() as rt:
        rt.add(Burst("burst"))
        rt.add(Sink("sink"))
        msg = rt.message(Ping(n=100), recipient="burst")
        async with rt.events(msg.correlation_id, buffer=10) as stream:
            await rt.publish(msg)
            await wait_all_tasks_blocked()
            # The whole request ran while nobody read: the runtime never waited for us.
            assert rt.statistics().in_flight == 0
            assert rt.statistics().handled == 101
            events = await read_all(stream)
    # published + delivered + handled for the ping, 100 x (published, delivered, handled) for
    # the pongs, settled: 304 in all. Ten fit: the first ten came, and at the end the newest
    # two of them gave way to where the gap is and to the end, which always comes.
    assert [e.kind for e in events] == [
        "published",
        "delivered",
        "handled",
        *["published", "delivered"] * 2,
        "published",
        "dropped",
        "settled",
    ]
    assert events[8].count == stream.dropped == 304 - 8 - 1


async def test_the_lost_events_are_marked_where_they_were_lost() -> None:
    async with Runtime() as rt:
        rt.add(Burst("burst"))
        rt.add(Sink("sink"))
        first = rt.message(Ping(n=5), recipient="burst")
        stream = rt.events(buffer=4)
        await rt.publish(first)
        await wait_all_tasks_blocked()
        head = [await stream.__anext__() for _ in range(4)]
        second = rt.message(Ping(n=0), recipient="burst")
        await rt.publish(second)
        await wait_all_tasks_blocked()
        gap = await stream.__anext__()
        after = await stream.__anext__()
        await stream.aclose()
    assert [e.kind for e in head] == ["published", "delivered", "handled", "published"]
    assert gap.kind == "dropped"
    assert gap.correlation_id == first.correlation_id
    assert gap.count is not None
    assert gap.count > 0
    assert after.correlation_id == second.correlation_id
    assert after.kind == "published"


async def test_an_open_stream_ends_when_the_runtime_closes() -> None:
    rt = Runtime()
    rt.add(Echo("echo"))
    stream = rt.events()
    async with anyio.create_task_group() as tg:
        seen: list[Event] = []

        async def reader() -> None:
            seen.extend(await read_all(stream))

        tg.start_soon(reader)
        async with rt:
            await rt.ask(rt.message(Ping(), recipient="echo"))
    assert seen[-1].kind == "settled"
    with pytest.raises(RuntimeClosedError, match="cannot stream events: the runtime is closed"):
        rt.events()


async def test_the_end_reaches_the_reader_whatever_it_lost() -> None:
    """A full buffer dropped the settled event itself: the reader got a ``dropped`` event and
    could not tell a request that settled from a stream cut short."""
    async with Runtime([Echo("echo")]) as rt:
        msg = rt.message(Ping(), recipient="echo")
        async with rt.events(msg.correlation_id, buffer=2) as stream:
            await rt.ask(msg)
            events = await read_all(stream)
    # published, delivered, handled, published, gathered: lost; then the end.
    assert [(e.kind, e.count) for e in events] == [("dropped", 5), ("settled", None)]
    assert stream.dropped == 5


async def test_a_stream_never_holds_more_than_its_buffer_a_gap_included() -> None:
    """Read from a full buffer, then more events came: the gap and the next event were both
    taken, one past the buffer."""
    async with Runtime() as rt:
        rt.add(Burst("burst"))
        rt.add(Sink("sink"))
        stream = rt.events(buffer=3)
        await rt.publish(rt.message(Ping(n=2), recipient="burst"))
        await wait_all_tasks_blocked()
        first = await stream.__anext__()
        await rt.publish(rt.message(Ping(n=0), recipient="burst"))
        await wait_all_tasks_blocked()
        await stream.aclose()
        held = await read_all(stream)
    assert first.kind == "published"
    assert [e.kind for e in held] == ["delivered", "handled", "dropped"]


def test_a_buffer_must_hold_a_gap_and_the_end() -> None:
    for buffer in (0, 1, "3", 2.5, None):
        with pytest.raises(InvalidArgumentError, match="buffer of at least 2") as refused:
            Runtime().events(buffer=buffer)  # type: ignore[arg-type]
        assert str(refused.value) == (
            f"an event stream needs a buffer of at least 2 (room for a dropped event and the "
            f"end), a whole number, got {buffer!r}"
        )


class Odd(BaseException):
    """Not an ``Exception``: what a careless observer or tap may raise all the same."""


class Broken(Observer):
    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    def published(self, msg: Message, recipients: int) -> None:
        # A new one each time: an instance raised again would keep every traceback's frames,
        # and the messages in them, past the test.
        raise self.error("observer bug")


@pytest.mark.parametrize("error", [RuntimeError, Odd])
async def test_an_observer_that_raises_is_counted_and_changes_nothing(
    error: type[BaseException],
) -> None:
    async with Runtime() as rt:
        rt.add(Echo("echo"))
        rt.add_observer(Broken(error))
        result = await rt.ask(rt.message(Ping(n=3), recipient="echo"))
        stats = rt.statistics()
    assert result.message.payload == Pong(n=3)
    assert stats.observer_errors == 2  # the ping and the pong
    assert (stats.handled, stats.collected) == (2, 1)  # echo's call, the pong the ask took


def test_an_event_reads_as_one_timeline_line() -> None:
    event = Event("denied", 1.0025, "c1", "risk", "transfer", "m1", 2, None, None, "pii", "email")
    assert event.line(origin=1.0) == (
        "    2.500 ms  denied        risk                       transfer                   "
        "by pii: email"
    )
    handled = Event("handled", 2.0, "c1", "a", "t", "m", 0, 0.0015, 2)
    assert handled.line(2.0).endswith("1.500 ms, 2 out")


@pytest.mark.parametrize("given", ["metrics", Observer], ids=["a str", "the class"])
async def test_what_is_no_observer_is_refused_and_leaves_the_runtime_whole(given: object) -> None:
    """An observer is told of every message: what cannot hear is refused where it is given,
    naming the argument, before the runtime holds it (held, it broke every observer added
    after it, and the event streams that are one)."""
    async with Runtime() as rt:
        rt.add(Echo("echo"))
        with pytest.raises(
            InvalidArgumentError, match=r"rt.add_observer\(\) takes a genie.Observer"
        ):
            rt.add_observer(given)  # type: ignore[arg-type]
        msg = rt.message(Ping(n=1), recipient="echo")
        async with rt.events(msg.correlation_id) as events:
            await rt.ask(msg)
            kinds = [event.kind async for event in events]
        stats = rt.statistics()
    assert kinds[-1] == "settled"
    assert stats.observer_errors == 0


async def test_removing_an_observer_never_added_is_refused_naming_it() -> None:
    async with Runtime() as rt:
        heard = Observer()
        rt.add_observer(heard)
        rt.remove_observer(heard)
        with pytest.raises(InvalidArgumentError, match=r"rt.remove_observer\(\): Observer is no"):
            rt.remove_observer(heard)
