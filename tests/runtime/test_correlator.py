"""Fan-in: N of M replies, partial results with reasons, request/reply, late replies."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio.testing

from genie import (
    AgentError,
    AgentOptions,
    BaseAgent,
    Context,
    Decision,
    DeniedError,
    GenieError,
    InvalidArgumentError,
    Limits,
    Message,
    NoReplyError,
    Runtime,
    RuntimeState,
    TestContext,
    handler,
)

from ..conftest import COMPILED, DenyTo, Echo, Failing, Note, Ping, PolicyFn, Pong


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def test_the_message_of_a_result_with_no_reply_is_a_genie_error_saying_why() -> None:
    async with Runtime([Failing("broken")]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="broken"))
    with pytest.raises(NoReplyError, match=r"no reply for correlation .*: failed") as caught:
        result.message  # noqa: B018 - the property raises
    assert isinstance(caught.value, GenieError)
    assert isinstance(caught.value, LookupError)  # what it raised before: still caught as one
    assert caught.value.correlation_id == result.correlation_id
    assert caught.value.missing == result.missing


class SlowEcho(Echo):
    def __init__(self, id: str, seconds: float) -> None:
        super().__init__(id)
        self.seconds = seconds

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await ctx.sleep(self.seconds)
        return ctx.reply(Pong(n=payload.n))


def fan_out(rt: Runtime, ids: list[str]) -> None:
    for agent_id in ids:
        rt.subscribe(agent_id, "ping")


async def test_gather_all_replies_by_sender() -> None:
    ids = [f"e{i}" for i in range(10)]
    async with Runtime([Echo(i) for i in ids]) as rt:
        fan_out(rt, ids)
        msg = rt.message(Ping(n=1))
        gather = rt.gather(msg.correlation_id, senders=ids, timeout=5)
        await rt.publish(msg)
        result = await gather.wait()
    assert result.status == "complete"
    assert sorted(m.sender for m in result.replies) == sorted(ids)
    assert result.missing == ()


async def test_denied_branch_completes_the_fan_in_at_once() -> None:
    ids = ["a", "b", "c"]
    agents = [Echo("a"), SlowEcho("b", seconds=1.0), Echo("c")]
    async with Runtime(agents, policies=[DenyTo("c", name="no-c")]) as rt:
        fan_out(rt, ids)
        msg = rt.message(Ping(n=2))
        gather = rt.gather(msg.correlation_id, senders=ids, timeout=60)
        started = anyio.current_time()
        await rt.publish(msg)
        result = await gather.wait()
        elapsed = anyio.current_time() - started
    assert elapsed < 2  # waited for the slow branch, not for the 60 s deadline
    assert result.status == "partial"
    assert sorted(m.sender for m in result.replies) == ["a", "b"]
    [missing] = result.missing
    assert (missing.key, missing.kind, missing.policy) == ("c", "denied", "no-c")
    assert missing.reason == "c is blocked"


async def test_n_of_m_ends_when_every_sender_is_accounted_for() -> None:
    ids = ["a", "b", "c"]
    agents = [SlowEcho("a", 5.0), Failing("b"), Failing("c")]
    async with Runtime(agents) as rt:
        fan_out(rt, ids)
        msg = rt.message(Ping(n=3))
        gather = rt.gather(msg.correlation_id, senders=ids, count=2, timeout=1000)
        started = anyio.current_time()
        await rt.publish(msg)
        result = await gather.wait()
        assert anyio.current_time() - started < 6  # not the 1000 s deadline
    assert result.status == "partial"
    assert [m.sender for m in result.replies] == ["a"]
    assert {(m.key, m.kind) for m in result.missing} == {("b", "failed"), ("c", "failed")}


async def test_two_of_three_completes_without_the_slowest() -> None:
    agents = [Echo("a"), Echo("b"), SlowEcho("c", 50.0)]
    async with Runtime(agents) as rt:
        fan_out(rt, ["a", "b", "c"])
        msg = rt.message(Ping(n=3))
        gather = rt.gather(msg.correlation_id, senders=["a", "b", "c"], count=2)
        await rt.publish(msg)
        started = anyio.current_time()
        result = await gather.wait()
        assert anyio.current_time() - started < 1
    assert result.status == "complete"
    assert sorted(m.sender for m in result.replies) == ["a", "b"]
    assert result.missing == ()


async def test_deadline_returns_what_arrived_and_what_timed_out() -> None:
    agents = [Echo("fast"), SlowEcho("slow", 30.0)]
    async with Runtime(agents) as rt:
        fan_out(rt, ["fast", "slow"])
        msg = rt.message(Ping(n=4))
        gather = rt.gather(msg.correlation_id, senders=["fast", "slow"], timeout=5)
        await rt.publish(msg)
        result = await gather.wait()
        assert result.status == "timed_out"
        assert [m.sender for m in result.replies] == ["fast"]
        [missing] = result.missing
        assert (missing.key, missing.kind) == ("slow", "timed_out")
        await anyio.sleep(60)  # the slow reply arrives after the deadline: late, counted
        assert rt.statistics().correlations.late_replies == 1


class HoldsTheLoop(Echo):
    """A handler that holds the event loop for ``seconds`` without a checkpoint (CPU-bound
    work, or a run of handlers that never await): on the mock clock, a jump of the clock."""

    def __init__(self, id: str, seconds: float) -> None:
        super().__init__(id)
        self.seconds = seconds

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        trio.lowlevel.current_clock().jump(self.seconds)  # type: ignore[attr-defined]
        return ctx.reply(Pong(n=payload.n))


async def test_an_answer_made_after_the_ask_timeout_is_not_taken() -> None:
    # The timeout could not be noticed while the handler held the loop; its answer came
    # after it all the same, and a timeout promises the run does not go on past it.
    async with Runtime([HoldsTheLoop("hog", 3.0)]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="hog"), timeout=1)
        assert result.status == "timed_out"
        assert result.replies == ()
        [missing] = result.missing
        assert missing.kind == "timed_out"
        assert rt.statistics().correlations.late_replies == 1
    # Made, and nobody took it: a dead letter that says why.
    [letter] = list(rt.dead_letters)
    assert (letter.message.type, letter.reason) == ("pong", "late: the wait for it had ended")


async def test_a_reply_after_a_gathers_deadline_is_late_even_when_nothing_waited_between() -> None:
    agents = [Echo("fast"), HoldsTheLoop("hog", 30.0)]
    async with Runtime(agents) as rt:
        fan_out(rt, ["fast", "hog"])
        msg = rt.message(Ping(n=4))
        gather = rt.gather(msg.correlation_id, senders=["fast", "hog"], timeout=5)
        await rt.publish(msg)
        result = await gather.wait()
        assert result.status == "timed_out"
        assert [m.sender for m in result.replies] == ["fast"]
        [missing] = result.missing
        assert (missing.key, missing.kind) == ("hog", "timed_out")
        assert rt.statistics().correlations.late_replies == 1


async def test_a_late_reply_counts_while_another_waiter_is_open() -> None:
    # The correlation still has a waiter (a second gather, for something else): the slow reply
    # is not its to take, and the gather that would have taken it has ended: late.
    agents = [Echo("fast"), SlowEcho("slow", 30.0)]
    async with Runtime(agents) as rt:
        fan_out(rt, ["fast", "slow"])
        msg = rt.message(Ping(n=4))
        gather = rt.gather(msg.correlation_id, senders=["fast", "slow"], timeout=5)
        await rt.publish(msg)
        assert (await gather.wait()).status == "timed_out"
        other = rt.gather(msg.correlation_id, senders=["nobody"], timeout=100)
        await anyio.sleep(60)
        assert rt.statistics().correlations.late_replies == 1
        assert (await other.wait()).status == "partial"  # nothing left in flight to answer it


async def test_a_predicate_that_raises_fails_its_caller_not_the_runtime() -> None:
    def typo(msg: Message) -> bool:
        return bool(msg.payload.missing_field)  # type: ignore[attr-defined]

    agents = [Echo("echo"), SlowEcho("slow", 5.0)]
    async with Runtime(agents) as rt:
        other = rt.message(Ping(n=1), recipient="slow")
        await rt.publish(other)  # another request, under way meanwhile
        with pytest.raises(AttributeError, match="missing_field"):
            await rt.ask(rt.message(Ping(n=2), recipient="echo"), until=typo)
        msg = rt.message(Ping(n=3), recipient="echo")
        gather = rt.gather(msg.correlation_id, where=lambda m: 1 / 0 > 0)
        await rt.publish(msg)
        with pytest.raises(ZeroDivisionError):
            await gather.wait()
        result = gather.expire()
        assert result.status == "partial"
        assert [m.reason for m in result.missing] == [
            "the gather's where= raised ZeroDivisionError: division by zero"
        ]
        await rt.wait_idle()
        stats = rt.statistics()
        assert rt.state is RuntimeState.RUNNING
        assert stats.mailboxes["slow"].handled == 1  # the other request went on
        assert stats.correlations.gathers_partial == 2
        assert stats.correlations.late_replies == 0  # an ended gather's predicate raises: not late


class Odd(BaseException):
    """Not an Exception: a caller's bug all the same."""


async def test_a_predicate_raising_a_base_exception_fails_its_caller_not_the_runtime() -> None:
    def odd(msg: Message) -> bool:
        raise Odd("a predicate's own")

    async with Runtime([Echo("echo")]) as rt:
        with pytest.raises(Odd):
            await rt.ask(rt.message(Ping(n=2), recipient="echo"), until=odd)
        await rt.wait_idle()
        assert rt.state is RuntimeState.RUNNING
        stats = rt.statistics()
    assert stats.mailboxes["echo"].handled == 1  # the reply was routed: its handler returned
    assert (stats.dead_lettered, stats.in_flight) == (0, 0)
    assert stats.correlations.gathers_partial == 1


async def test_an_async_predicate_is_refused_and_one_that_returns_an_awaitable_raises() -> None:
    """A predicate is asked as each message is routed, without awaiting: the coroutine an
    ``async def`` one returns is truthy, and would take the first message that came."""

    async def is_pong(msg: Message) -> bool:
        return msg.type == "pong"

    def awaits(msg: Message) -> Any:  # async in disguise: a plain def returning a coroutine
        return is_pong(msg)

    async with Runtime([Echo("echo")]) as rt:
        msg = rt.message(Ping(n=1), recipient="echo")
        with pytest.raises(InvalidArgumentError, match=r"rt\.ask: until: .*is_pong is an async"):
            await rt.ask(msg, until=is_pong)  # type: ignore[arg-type]  # as mypy tells typed code
        with pytest.raises(InvalidArgumentError, match=r"rt\.gather: where: .*is_pong is an"):
            rt.gather(msg.correlation_id, where=is_pong)  # type: ignore[arg-type]

        class IsPong:
            async def __call__(self, msg: Message) -> bool:
                return msg.type == "pong"

        with pytest.raises(InvalidArgumentError, match=r"until: .*IsPong\.__call__ is an async"):
            await rt.ask(msg, until=IsPong())  # type: ignore[arg-type]
        assert rt.statistics().published == 0  # refused before anything was sent
        with pytest.raises(InvalidArgumentError, match="returned coroutine, an awaitable"):
            await rt.ask(msg, until=awaits)
        other = rt.message(Ping(n=2), recipient="echo")
        gather = rt.gather(other.correlation_id, where=awaits, timeout=5)
        await rt.publish(other)
        with pytest.raises(InvalidArgumentError, match="returned coroutine"):
            await gather.wait()
        result = gather.expire()
        assert (result.status, result.replies) == ("partial", ())
        await rt.wait_idle()
        stats = rt.statistics()
        assert rt.state is RuntimeState.RUNNING
    assert stats.correlations.gathers_partial == 2
    assert (stats.in_flight, stats.correlations.correlations_active) == (0, 0)


async def test_gather_by_types_and_predicate() -> None:
    class Both(BaseAgent):
        produces = (Pong, Note)

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
            return [ctx.reply(Pong(n=payload.n)), ctx.reply(Note(text=str(payload.n)))]

    async with Runtime([Both("both")]) as rt:
        msg = rt.message(Ping(n=5), recipient="both")
        by_type = rt.gather(msg.correlation_id, types=["pong", "note"])
        by_predicate = rt.gather(
            msg.correlation_id, where=lambda m: isinstance(m.payload, Note), timeout=5
        )
        await rt.publish(msg)
        types_result, predicate_result = await by_type.wait(), await by_predicate.wait()
    assert sorted(m.type for m in types_result.replies) == ["note", "pong"]
    assert [m.payload for m in predicate_result.replies] == [Note(text="5")]


async def test_count_mode_ends_when_nothing_is_left_in_flight() -> None:
    ids = ["a", "b", "c"]
    async with Runtime([Echo("a"), Failing("b"), Echo("c")]) as rt:
        fan_out(rt, ids)
        msg = rt.message(Ping(n=6))
        gather = rt.gather(msg.correlation_id, count=3, where=lambda m: m.type == "pong")
        await rt.publish(msg)
        result = await gather.wait()
    assert result.status == "partial"
    assert len(result.replies) == 2
    assert [(m.agent_id, m.kind) for m in result.missing] == [("b", "failed")]


async def test_a_gather_collects_replies_not_the_request_it_was_opened_for() -> None:
    ids = ["a", "b", "c"]
    async with Runtime([Echo(i) for i in ids]) as rt:
        fan_out(rt, ids)
        msg = rt.message(Ping(n=7), sender="caller")
        gather = rt.gather(msg.correlation_id, count=3)
        await rt.publish(msg)
        result = await gather.wait()
        stats = rt.statistics()
    assert result.status == "complete"
    assert sorted(m.sender for m in result.replies) == ids
    assert all(m.type == "pong" for m in result.replies)
    # The third reply was collected, not dead-lettered as unrouted.
    assert stats.unrouted == 0
    assert list(rt.dead_letters) == []


async def test_ask_returns_the_final_message() -> None:
    async with Runtime([Echo("echo")]) as rt:
        result = await rt.ask(rt.message(Ping(n=9), recipient="echo"), until="pong")
    assert result.complete
    assert result.message.payload == Pong(n=9)


async def test_ask_timeout_cancels_outstanding_work() -> None:
    slow = SlowEcho("slow", 10.0)
    async with Runtime([slow]) as rt:
        msgs = [rt.message(Ping(n=i), recipient="slow") for i in range(3)]
        # Same correlation: the second and third wait in the mailbox behind the first.
        first, rest = (
            msgs[0],
            [m.model_copy(update={"correlation_id": msgs[0].correlation_id}) for m in msgs[1:]],
        )
        for m in rest:
            await rt.publish(m)
        result = await rt.ask(first, timeout=5)
        assert result.status == "timed_out"
        await rt.wait_idle()
        assert rt.clock.monotonic() < 6  # the running handler was cancelled, not waited for
    cancelled = [d for d in rt.dead_letters if d.kind == "cancelled"]
    # The running handler and the queued work of the timed-out request: none of it ran on.
    assert sorted(d.message.id for d in cancelled) == sorted(m.id for m in msgs)
    assert all(d.reason == "correlation cancelled" for d in cancelled)


class Asker(BaseAgent):
    produces = (Note,)

    def __init__(self, id: str, target: str, timeout: float | None = None) -> None:
        super().__init__(id)
        self.target = target
        self.timeout = timeout

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        try:
            answer = await ctx.request(self.target, Ping(n=payload.n), timeout=self.timeout)
        except DeniedError as exc:
            return ctx.reply(Note(text=f"denied by {exc.policy}"))
        except AgentError as exc:
            return ctx.reply(Note(text=f"failed: {exc}"))
        except TimeoutError:
            return ctx.reply(Note(text="timed out"))
        assert isinstance(answer.payload, Pong)
        return ctx.reply(Note(text=f"got {answer.payload.n} from {answer.sender}"))


async def test_request_reply_inside_a_handler() -> None:
    async with Runtime([Asker("asker", "echo"), Echo("echo")]) as rt:
        result = await rt.ask(rt.message(Ping(n=11), recipient="asker"))
    assert result.message.payload == Note(text="got 11 from echo")
    # the reply went to the waiting request, not into the asker's mailbox: two deliveries to
    # agents, two collected (echo's reply by the request, the asker's note by the ask)
    s = rt.statistics()
    assert (s.delivered, s.collected) == (4, 2)
    assert rt.statistics().mailboxes["asker"].handled == 1


async def test_request_failures_raise_at_once() -> None:
    agents = [Asker("a1", "blocked"), Asker("a2", "broken"), Asker("a3", "mute", timeout=3)]

    class Mute(BaseAgent):
        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            await ctx.sleep(100)

    async with Runtime(agents, policies=[DenyTo("blocked", name="firewall")]) as rt:
        rt.add(Echo("blocked"))
        rt.add(Failing("broken"))
        rt.add(Mute("mute"), options=AgentOptions())
        texts = []
        for asker in ("a1", "a2", "a3"):
            result = await rt.ask(rt.message(Ping(), recipient=asker))
            assert isinstance(result.message.payload, Note)
            texts.append(result.message.payload.text)
    assert texts[0] == "denied by firewall"
    assert texts[1].startswith("failed: request 'ping' to 'broken': RuntimeError: boom #1")
    assert texts[2] == "timed out"


class PongTaker(Asker):
    """An asker that also handles pongs sent to it, counting them."""

    def __init__(self, id: str, target: str, timeout: float) -> None:
        super().__init__(id, target, timeout)
        self.pongs: list[Pong] = []

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        self.pongs.append(payload)


@pytest.mark.parametrize("gives_up", ["its timeout", "its handler's deadline"])
async def test_an_answer_after_the_requester_gave_up_is_late_not_its_message(
    gives_up: str,
) -> None:
    """The requester stops waiting (its request's timeout, or its own handler's deadline
    cancels the wait) and the answer comes later: counted late and an ``unrouted`` dead letter
    saying so, as a reply after an ask's timeout is. It is never put in the requester's
    mailbox, where its handler would take it for a message of its own (or, with no handler
    of its type, fail on it)."""
    if gives_up == "its timeout":
        asker, options = PongTaker("asker", "slow", timeout=3.0), AgentOptions()
    else:
        asker, options = PongTaker("asker", "slow", timeout=100.0), AgentOptions(deadline=3.0)
    async with Runtime([SlowEcho("slow", 10.0)]) as rt:
        rt.add(asker, options=options)
        result = await rt.ask(rt.message(Ping(n=1), recipient="asker"), timeout=60)
        await rt.wait_idle()
        s = rt.statistics()
    if gives_up == "its timeout":
        assert isinstance(result.message.payload, Note)
        assert result.message.payload.text == "timed out"
    else:
        assert result.status == "partial"  # the asker's delivery failed at its deadline
    assert asker.pongs == []
    assert s.correlations.late_replies == 1
    late = [d for d in rt.dead_letters if d.message.type == "pong"]
    assert [(d.kind, d.agent_id, d.message.sender, d.reason) for d in late] == [
        ("unrouted", "asker", "slow", "late: the wait for it had ended")
    ]
    assert s.mailboxes["asker"].handled + s.mailboxes["asker"].failed == 1  # its ping only
    assert s.in_flight == 0


class SelfAsker(BaseAgent):
    """Answers a pong; asked a ping, it asks itself for the pong."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        answer = await ctx.request(self.id, Pong(n=payload.n), timeout=30)
        return ctx.reply(answer.payload)

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n + 1))


async def test_a_request_to_itself_with_one_worker_fails_at_once() -> None:
    """Its one worker runs the asking handler, so the request could never be taken before its
    timeout: refused at once, naming why; with a second worker it is answered."""
    async with Runtime([SelfAsker("self")]) as rt:
        with anyio.fail_after(5):
            result = await rt.ask(rt.message(Ping(n=1), recipient="self"), timeout=30)
        assert result.status == "partial"  # its one delivery failed: no answer
        [letter] = rt.dead_letters
        assert letter.reason.startswith(
            "DeliveryError: ctx.request to 'self' from 'self' itself: its one worker runs this "
            "handler"
        )
    async with Runtime() as rt:
        rt.add(SelfAsker("self"), options=AgentOptions(max_concurrency=2))
        result = await rt.ask(rt.message(Ping(n=1), recipient="self"), timeout=30)
        assert result.message.payload == Pong(n=2)


async def test_request_answered_by_silence_is_an_error() -> None:
    class Silent(BaseAgent):
        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> None:
            return None

    async with Runtime([Asker("asker", "silent"), Silent("silent")]) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="asker"))
    assert isinstance(result.message.payload, Note)
    assert result.message.payload.text.endswith("handled it without replying")


async def test_gathers_do_not_leak() -> None:
    async with Runtime([Echo("echo")]) as rt:
        for n in range(200):
            await rt.ask(rt.message(Ping(n=n), recipient="echo"))
        await rt.wait_idle()
        stats = rt.statistics().correlations
    assert stats.correlations_active == 0
    assert stats.gathers_pending == 0
    assert stats.gathers_complete == 200


async def test_closed_gathers_keep_no_replies() -> None:
    # The correlator remembers recently closed gathers (to count late replies); it used to
    # keep each whole gather with all its replies, ~4,096 of them: +270 MB over 6,000
    # fan-out requests of 50 replies. Only the matching criteria may stay once results are gone.
    ids = [f"e{i}" for i in range(10)]
    async with Runtime([Echo(i) for i in ids]) as rt:
        fan_out(rt, ids)
        for n in range(100):
            msg = rt.message(Ping(n=n))
            gather = rt.gather(msg.correlation_id, count=len(ids))
            await rt.publish(msg)
            assert len((await gather.wait()).replies) == len(ids)
        del gather
        await rt.wait_idle()
        gc.collect()
        # The echo agents keep the pings they received; nothing should keep the pongs.
        kept = sum(1 for o in gc.get_objects() if type(o) is Message and o.type == "pong")
        assert kept == 0, f"{kept} replies still referenced after 100 closed gathers"
        # What matching needs is kept: of two awaited senders, the one after the first is late.
        msg = rt.message(Ping(n=0))
        gather = rt.gather(msg.correlation_id, senders=["e0", "e1"], count=1)
        await rt.publish(msg)
        assert (await gather.wait()).complete
        await rt.wait_idle()
        assert rt.statistics().correlations.late_replies == 1


async def test_fan_in_path_dead_letters_what_no_waiter_takes_and_feeds_subscribers() -> None:
    """The fan-in's own path (a reply to a caller outside the runtime, while a gather waits)
    keeps what the general route does: a reply the gather does not match is counted and
    dead-lettered, and a subscriber of the reply's type still gets every reply."""

    class PongWatcher(BaseAgent):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.seen: list[Message] = []

        @handler
        async def on_pong(self, payload: Pong, ctx: Context) -> None:
            self.seen.append(ctx.message)

    async with Runtime([Echo("a"), Echo("b")]) as rt:
        fan_out(rt, ["a", "b"])
        msg = rt.message(Ping(n=1), sender="caller")
        gather = rt.gather(msg.correlation_id, senders=["a"])
        await rt.publish(msg)
        only_a = await gather.wait()
        await rt.wait_idle()
        stats = rt.statistics()
    assert [m.sender for m in only_a.replies] == ["a"]
    assert (stats.published, stats.collected, stats.unrouted) == (3, 1, 1)
    [letter] = list(rt.dead_letters)
    assert (letter.kind, letter.reason) == ("unrouted", "unknown recipient 'caller'")
    assert letter.message.sender == "b"

    watcher = PongWatcher("watcher")
    async with Runtime([Echo("a"), Echo("b"), watcher]) as rt:
        fan_out(rt, ["a", "b"])
        rt.subscribe("watcher", "pong")
        msg = rt.message(Ping(n=2), sender="caller")
        gather = rt.gather(msg.correlation_id, count=2)
        await rt.publish(msg)
        both = await gather.wait()
        await rt.wait_idle()
        stats = rt.statistics()
    assert sorted(m.sender for m in both.replies) == ["a", "b"]
    assert sorted(m.sender for m in watcher.seen) == ["a", "b"]
    assert stats.unrouted == 0
    assert list(rt.dead_letters) == []


async def test_fan_in_path_sees_a_subscription_made_after_replies_of_the_type_went_by() -> None:
    """The fan-in's path reads the router's cache of subscribers by type: a subscription made
    once replies of that type were gathered (their type cached with nobody subscribed) must
    reach the next ones, by exact type and by pattern."""

    class PongWatcher(BaseAgent):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.seen: list[str] = []

        @handler
        async def on_pong(self, payload: Pong, ctx: Context) -> None:
            self.seen.append(ctx.message.sender)

    exact, pattern = PongWatcher("exact"), PongWatcher("pattern")
    async with Runtime([Echo("a"), Echo("b"), exact, pattern]) as rt:
        fan_out(rt, ["a", "b"])

        async def gathered() -> list[str]:
            msg = rt.message(Ping(n=1), sender="caller")
            gather = rt.gather(msg.correlation_id, count=2)
            await rt.publish(msg)
            replies = (await gather.wait()).replies
            await rt.wait_idle()
            return sorted(m.sender for m in replies)

        assert await gathered() == ["a", "b"]  # nobody subscribed to pong yet
        rt.subscribe("exact", "pong")
        assert await gathered() == ["a", "b"]
        rt.subscribe("pattern", "po*")
        assert await gathered() == ["a", "b"]
        stats = rt.statistics()
    assert sorted(exact.seen) == ["a", "a", "b", "b"]
    assert sorted(pattern.seen) == ["a", "b"]
    assert stats.unrouted == 0


async def test_fan_in_path_admits_each_waiter_and_spends_the_budget() -> None:
    """Two gathers on one correlation both get every reply; a reply past the correlation's
    budget is denied to the gather (named in its result), not collected."""
    async with Runtime([Echo("a"), Echo("b")]) as rt:
        fan_out(rt, ["a", "b"])
        msg = rt.message(Ping(n=1), sender="caller")
        first = rt.gather(msg.correlation_id, senders=["a", "b"])
        second = rt.gather(msg.correlation_id, count=2)
        await rt.publish(msg)
        got = [await first.wait(), await second.wait()]
        await rt.wait_idle()
    assert [sorted(m.sender for m in r.replies) for r in got] == [["a", "b"], ["a", "b"]]
    assert rt.statistics().collected == 4

    async with Runtime([Echo("a"), Echo("b")], limits=Limits(correlation_budget=3)) as rt:
        fan_out(rt, ["a", "b"])
        msg = rt.message(Ping(n=1), sender="caller")
        gather = rt.gather(msg.correlation_id, senders=["a", "b"])
        await rt.publish(msg)  # two deliveries: one reply fits the budget of three
        result = await gather.wait()
        await rt.wait_idle()
        stats = rt.statistics()
    assert len(result.replies) == 1
    [lost] = result.missing
    assert lost.kind == "denied"
    assert "budget" in lost.reason
    assert (stats.collected, stats.denied) == (1, 1)


class PongAndNote(BaseAgent):
    produces = (Pong, Note)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        return [ctx.reply(Pong(n=payload.n)), ctx.reply(Note(text=self.id))]


@pytest.mark.parametrize(
    ("criteria", "taken", "collected"),
    [
        # keyed by sender: a's second reply is taken (counted) but keeps its first
        ({"senders": ["a", "b"]}, ["a:pong", "b:pong"], 3),
        ({"senders": ["b"]}, ["b:pong"], 1),
        ({"types": ["note"]}, ["a:note"], 1),
        ({"count": 1, "where": lambda m: m.sender == "b" and m.type == "note"}, ["b:note"], 1),
        ({"count": 4}, ["a:note", "a:pong", "b:note", "b:pong"], 4),
    ],
)
async def test_a_lone_gather_takes_only_what_it_matches(
    criteria: dict[str, Any], taken: list[str], collected: int
) -> None:
    """One gather, no policies: the fan-in hands each reply to the gather's own match and
    offer in one call; what it does not take is an unrouted letter (the caller is no agent).
    Twice: the first reply of a type goes the general way (its subscribers not looked up
    yet), the second round all the short way."""
    async with Runtime([PongAndNote("a"), PongAndNote("b")]) as rt:
        fan_out(rt, ["a", "b"])
        for round in range(2):
            msg = rt.message(Ping(n=round), sender="caller")
            gather = rt.gather(msg.correlation_id, **criteria)
            before = rt.statistics()
            await rt.publish(msg)
            result = await gather.wait()
            await rt.wait_idle()
            stats = rt.statistics()
            assert result.status == "complete"
            assert sorted(f"{m.sender}:{m.type}" for m in result.replies) == taken
            assert stats.collected - before.collected == collected
            assert stats.unrouted - before.unrouted == 4 - collected
            assert stats.delivered == stats.handled + stats.denied + stats.dead_lettered


class NoteAsker(BaseAgent):
    """On a Note, requests a Ping of ``target`` and records what came of it."""

    produces = (Ping,)

    def __init__(self, id: str, target: str, timeout: float) -> None:
        super().__init__(id)
        self.target = target
        self.timeout = timeout
        self.outcomes: list[tuple[str, object]] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        try:
            answer = await ctx.request(self.target, Ping(n=1), timeout=self.timeout)
        except Exception as exc:
            self.outcomes.append((type(exc).__name__, str(exc)))
        else:
            self.outcomes.append((answer.sender, answer.payload))


class Bystander(BaseAgent):
    """Subscribes to the request's type beside its recipient: keeps quiet, fails, or answers."""

    produces = (Pong,)

    def __init__(self, id: str, does: str) -> None:
        super().__init__(id)
        self.does = does

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message | None:
        if self.does == "fails":
            raise RuntimeError("the audit log broke")
        return ctx.reply(Pong(n=999)) if self.does == "answers" else None


@pytest.mark.parametrize("does", ["keeps quiet", "fails", "is denied", "answers"])
async def test_only_the_recipient_answers_a_request(does: str) -> None:
    """Another subscriber of the request's type gets the request too, but what it returns or
    how it fares is not the answer: the requester waits for the recipient's."""
    asker = NoteAsker("asker", "echo", timeout=10)
    policies = [DenyTo("audit")] if does == "is denied" else []
    async with Runtime([asker, SlowEcho("echo", 1.0)], policies=policies) as rt:
        rt.add(Bystander("audit", does), subscribe=["ping"])
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        await rt.wait_idle()
    assert asker.outcomes == [("echo", Pong(n=1))]
    # The bystander's reply, if any, went where a reply goes: to the asker's mailbox, which
    # takes no Pong (a dead letter you can inspect), never into the request.
    letters = [(d.agent_id, d.message.sender) for d in rt.dead_letters]
    if does == "answers":
        assert letters == [("asker", "audit")]
    elif does == "fails":
        assert letters == [("audit", "asker")]  # the bystander's own failure, recorded
    else:
        assert letters == []


async def test_a_fallback_answers_a_request_its_agent_failed() -> None:
    asker = NoteAsker("asker", "broken", timeout=10)
    async with Runtime([asker, Echo("spare")]) as rt:
        rt.add(Failing("broken"), options=AgentOptions(fallback="spare"))
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        await rt.wait_idle()
    assert asker.outcomes == [("spare", Pong(n=1))]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_reply_due_with_the_requests_deadline_is_the_answer() -> None:
    """The reply and the request's deadline fall due in one turn of the loop (it was busy):
    the reply, taken by the request and kept out of the requester's mailbox, is the answer,
    never dropped for a timeout."""
    asker = NoteAsker("asker", "echo", timeout=1.0)
    async with Runtime([asker, SlowEcho("echo", 0.9)]) as rt:
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        await anyio.sleep(0.5)
        time.sleep(1.0)  # noqa: ASYNC251 (a blocking call on the loop: both fall due in it)
        await rt.wait_idle()
    assert asker.outcomes == [("echo", Pong(n=1))]
    assert rt.statistics().collected == 1
    assert not list(rt.dead_letters)


@pytest.mark.parametrize(
    ("timeout", "spelt"),
    [
        (float("nan"), "nan"),
        ("5", "'5'"),
        (True, "True"),
        # no float holds it (it raised OverflowError), and its 401 digits are not quoted
        (10**400, "an integer too large for a float"),
        ("9" * 100, repr("9" * 100)[:37] + "..."),
    ],
    ids=["nan", "text", "bool", "bigint", "long_text"],
)
async def test_a_timeout_that_is_no_number_is_refused_before_anything_is_sent(
    timeout: Any, spelt: str
) -> None:
    # A request sent and then failed for its timeout would be sent again by each retry.
    said = f"the timeout must be a number of seconds or None, not {spelt}"
    # The compiled build refuses a value that is no number at all as a TypeError, before the
    # check: refused before anything is sent still.
    kinds: tuple[type[Exception], ...] = (InvalidArgumentError,)
    if COMPILED and isinstance(timeout, str):
        kinds = (InvalidArgumentError, TypeError)
    asker, echo = NoteAsker("asker", "echo", timeout=timeout), Echo("echo")
    async with Runtime([asker, echo]) as rt:
        await rt.publish(rt.message(Note(text="go"), recipient="asker"))
        await rt.wait_idle()
        [(kind, why)] = asker.outcomes
        assert kind in {k.__name__ for k in kinds}
        if kind == "InvalidArgumentError":
            assert why == f"ctx.request: {said}"
        with pytest.raises(kinds, match=f"rt.ask: {said}"):
            await rt.ask(rt.message(Ping(), recipient="echo"), timeout=timeout)
        with pytest.raises(kinds) as refused:
            rt.gather("any", timeout=timeout)
        if refused.type is InvalidArgumentError:
            assert str(refused.value) == f"rt.gather: {said}"
    assert echo.seen == []  # nothing was sent
    stats = rt.statistics()
    assert (stats.delivered, stats.in_flight, stats.correlations.gathers_pending) == (1, 0, 0)


async def test_an_argument_the_runtime_refuses_is_a_genie_error_and_a_value_error() -> None:
    refusals: list[BaseException] = []
    async with Runtime([Echo("echo")]) as rt:
        calls: list[tuple[Callable[[], object], str]] = [
            (
                lambda: rt.gather("any", senders=["a", "b"], count=3),
                "^gather: count must be between 1 and 2, got 3$",
            ),
            (lambda: rt.gather("any", count=0), "^gather: count must be at least 1, got 0$"),
            (lambda: rt.events(buffer=0), "buffer of at least 2"),
            (lambda: rt.model_text("c", reader="alice", hold_back=-1), "hold_back"),
            (
                lambda: TestContext("t", rt.message(Ping())).schedule(float("nan"), Ping()),
                "the delay must be",
            ),
        ]
        for call, said in calls:
            with pytest.raises(ValueError, match=said) as caught:
                call()
            refusals.append(caught.value)
        with pytest.raises(ValueError, match="the timeout must be") as caught:
            await rt.ask(rt.message(Ping(), recipient="echo"), timeout=float("nan"))
        refusals.append(caught.value)
        # A bare TypeError from inside the gather when the first message came.
        with pytest.raises(ValueError, match=r"^rt\.ask: until must be") as caught:
            await rt.ask(rt.message(Ping(), recipient="echo"), until=5)  # type: ignore[arg-type]
        assert str(caught.value) == (
            "rt.ask: until must be a message type's name or a function of a message, got int"
        )
        refusals.append(caught.value)
    assert [type(r).__name__ for r in refusals] == ["InvalidArgumentError"] * 7
    assert all(isinstance(r, GenieError) for r in refusals)


async def test_a_payload_or_a_message_where_the_other_is_due_is_refused_saying_how() -> None:
    """``rt.publish(Ping())`` (the payload, not a message of it) was an ``AttributeError``
    from inside the dispatcher; ``rt.gather(msg)`` or ``rt.cancel(msg)`` (the message, not its
    correlation id) waited for, or stopped, a correlation nobody has, silently."""
    async with Runtime([Echo("echo")]) as rt:
        msg = rt.message(Ping(n=1), recipient="echo")
        sends: list[tuple[str, Callable[[], Any]]] = [
            ("publish", lambda: rt.publish(Ping(n=1))),  # type: ignore[arg-type]
            ("ask", lambda: rt.ask(Ping(n=1))),  # type: ignore[arg-type]
            ("resume", lambda: rt.resume(Ping(n=1))),  # type: ignore[arg-type]
        ]
        for call, send in sends:
            with pytest.raises(InvalidArgumentError) as caught:
                await send()
            assert str(caught.value) == (
                f"rt.{call}() takes a genie.Message, not Ping: build one with rt.message(Ping(...))"
            )
        with pytest.raises(InvalidArgumentError, match=r"not str: build one with rt\.message"):
            rt.publish_nowait("ping")  # type: ignore[arg-type]
        ids: list[tuple[str, Callable[[], object]]] = [
            ("gather", lambda: rt.gather(msg)),  # type: ignore[arg-type]
            ("cancel", lambda: rt.cancel(msg)),  # type: ignore[arg-type]
            ("events", lambda: rt.events(msg)),  # type: ignore[arg-type]
        ]
        for call, name in ids:
            with pytest.raises(InvalidArgumentError) as caught:
                name()
            assert str(caught.value) == (
                f"rt.{call}() takes a correlation id, a str (a message's correlation_id), not a "
                "Message: pass its correlation_id"
            )
        with pytest.raises(InvalidArgumentError, match=r"rt\.gather\(\) .* not int$"):
            rt.gather(5)  # type: ignore[arg-type]
        # Nothing was sent, opened or stopped: the right call still works.
        assert (await rt.ask(msg)).message.payload == Pong(n=1)
        s = rt.statistics()
    assert (s.published, s.correlations.gathers_pending, len(rt.dead_letters)) == (2, 0, 0)


def no_notes_to_the_user() -> PolicyFn:
    return PolicyFn(
        "no-notes",
        lambda m, r: (
            Decision.deny("no-notes", "notes stay inside")
            if m.type == "note" and r == "user"
            else Decision.ALLOW
        ),
    )


class NoteThenPong(BaseAgent):
    """Answers with a Note (denied to the user) and then a Pong, in one return."""

    produces = (Note, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        return [ctx.reply(Note(text="internal")), ctx.reply(Pong(n=payload.n))]


class QuickNote(BaseAgent):
    produces = (Note,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Note(text="internal"))


async def test_an_ask_whose_first_answer_is_denied_takes_the_next() -> None:
    """A denied reply ends an ask only when nothing else of the request is in flight: the
    same handler's next reply is the answer."""
    async with Runtime([NoteThenPong("a")], policies=[no_notes_to_the_user()]) as rt:
        result = await rt.ask(rt.message(Ping(n=3), recipient="a"), timeout=10)
    assert result.status == "complete"
    assert [r.payload for r in result.replies] == [Pong(n=3)]


@pytest.mark.parametrize("by", ["count", "type"])
async def test_a_denied_reply_waits_for_the_branch_still_working(by: str) -> None:
    """Gathering one reply (by count, or of a type) while one branch's reply is denied and
    another branch still works: the second branch's reply completes the gather."""
    async with Runtime(policies=[no_notes_to_the_user()]) as rt:
        rt.add(QuickNote("quick"), subscribe=["ping"])
        rt.add(SlowEcho("slow", 1.0), subscribe=["ping"])
        msg = rt.message(Ping(n=4))
        if by == "count":
            gather = rt.gather(msg.correlation_id, count=1, timeout=10)
        else:
            gather = rt.gather(msg.correlation_id, types=["note", "pong"], count=1, timeout=10)
        await rt.publish(msg)
        result = await gather.wait()
    assert result.status == "complete"
    assert [r.payload for r in result.replies] == [Pong(n=4)]
    # By type, the gather also says what became of the type it did not get.
    denied = [(m.key, m.kind, m.policy) for m in result.missing]
    assert denied == ([("note", "denied", "no-notes")] if by == "type" else [])


async def test_a_denied_reply_alone_ends_the_gather_partial_with_the_denial() -> None:
    async with Runtime([QuickNote("quick")], policies=[no_notes_to_the_user()]) as rt:
        result = await rt.ask(rt.message(Ping(n=5), recipient="quick"), timeout=10)
    assert result.status == "partial"
    [missing] = result.missing
    assert (missing.kind, missing.policy) == ("denied", "no-notes")
