"""``@handler`` on an ``async def`` or a plain ``def``: which is which, decided once per class."""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Literal

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    Message,
    Runtime,
    TestContext,
    handler,
)

from ..conftest import Echo, Note, Ping, Pong


class Plain(BaseAgent):
    produces = (Pong,)

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=threading.get_ident()))


class MadeAsync(Plain):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:  # type: ignore[override]
        return ctx.reply(Pong(n=threading.get_ident()))


def test_a_test_context_runs_a_plain_def_handler_in_a_thread() -> None:
    async def main() -> list[Message]:
        msg = Runtime().message(Ping(n=1), recipient="plain")
        return list(await Plain("plain").handle(msg, TestContext("plain", msg)))

    [out] = anyio.run(main)
    assert isinstance(out.payload, Pong)
    assert out.payload.n != threading.get_ident()


def test_a_subclass_that_overrides_a_handler_takes_its_kind() -> None:
    assert Plain._sync_handlers == {"on_ping"}
    assert MadeAsync._sync_handlers == frozenset()

    async def main() -> int:
        msg = Runtime().message(Ping(n=1), recipient="a")
        [out] = await MadeAsync("a").handle(msg, TestContext("a", msg))
        assert isinstance(out.payload, Pong)
        return out.payload.n

    assert anyio.run(main) == threading.get_ident()  # on the event loop's thread


def test_a_generator_handler_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(ConfigurationError, match=r"handler .*Gen.on_ping is a generator"):

        class Gen(BaseAgent):
            @handler  # type: ignore[arg-type]
            def on_ping(self, payload: Ping, ctx: Context) -> Iterator[Message]:
                yield ctx.reply(Pong(n=1))


class OwnHandle(Plain):
    """Dispatches through its own ``handle``, which calls ``BaseAgent.handle``: the runtime
    calls ``handle``, not the handler, so the plain def handler is reached from the base."""

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        return await super().handle(msg, ctx)


class Stamps(BaseAgent):
    """A plain def handler reading the runtime clock and building its reply in its thread."""

    produces = (Note,)

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Note(text=ctx.now().isoformat()))

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        return await super().handle(msg, ctx)


async def test_a_plain_def_handler_reached_from_an_agents_own_handle_can_reply() -> None:
    # The runtime hands ``handle`` its own context; on trio, building a reply in a thread with
    # it as is fails (the clock is the loop's), so the handler gets the thread's context.
    async with Runtime([OwnHandle("own")]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="own"))
        [reply] = result.replies
        assert isinstance(reply.payload, Pong)
        assert reply.payload.n != threading.get_ident()  # it did run in a thread
        assert not rt.dead_letters


async def test_a_plain_def_handler_reached_from_an_agents_own_handle_reads_the_clock() -> None:
    async with Runtime([Stamps("stamps")]) as rt:
        msg = rt.message(Ping(n=1), recipient="stamps")
        [reply] = (await rt.ask(msg)).replies
        assert isinstance(reply.payload, Note)
        # Read in the thread before the reply was built, from the same runtime clock.
        assert msg.created_at <= datetime.fromisoformat(reply.payload.text) <= reply.created_at
        assert reply.causation_id == msg.id
        assert not rt.dead_letters


class ExitsInItsThread(BaseAgent):
    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> None:
        raise SystemExit(3)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        return await super().handle(msg, ctx)


async def test_exiting_in_a_thread_reached_from_an_agents_own_handle_fails_that_delivery() -> None:
    # The same body runs it as the runtime's own path: a SystemExit ends the thread's delivery,
    # never the runtime.
    async with Runtime([ExitsInItsThread("exits"), Echo("echo")]) as rt:
        result = await rt.ask(rt.message(Ping(n=1), recipient="exits"))
        assert "SystemExit" in result.missing[0].reason
        [dead] = rt.dead_letters
        assert dead.error_type == "AgentError"
        again = await rt.ask(rt.message(Ping(n=2), recipient="echo"))
        assert [m.payload for m in again.replies] == [Pong(n=2)]


class Remembers(BaseAgent):
    """A plain def handler keeping a note in the runtime's memory, awaited on the loop."""

    produces = (Note,)

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> Message:
        kv = ctx.memory().kv
        anyio.from_thread.run(kv.set, "pings", "last", payload.n)
        return ctx.reply(Note(text=str(anyio.from_thread.run(kv.get, "pings", "last"))))


class RemembersInItsOwnHandle(Remembers):
    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        return await super().handle(msg, ctx)


@pytest.mark.parametrize("agent", [Remembers, RemembersInItsOwnHandle])
async def test_a_plain_def_handler_reaches_its_memory_from_its_thread(
    agent: type[Remembers],
) -> None:
    async with Runtime([agent("mem")]) as rt:
        [reply] = (await rt.ask(rt.message(Ping(n=5), recipient="mem"))).replies
        assert reply.payload == Note(text="5")
        assert not rt.dead_letters


class Forgetful(BaseAgent):
    """Returns what is no message, each a slip a handler's author makes."""

    produces = (Pong,)

    async def priced(self, ctx: Context) -> Message:
        return ctx.reply(Pong(n=1))

    @handler
    async def on_ping(self, payload: Ping, ctx: Context):  # type: ignore[no-untyped-def]
        if payload.n == 0:
            return self.priced(ctx)  # the await forgotten
        if payload.n == 1:
            return [ctx.reply(Pong(n=1)), Pong(n=2)]  # the second not wrapped
        return [ctx.reply(Pong(n=1)), None]


@pytest.mark.parametrize(
    ("n", "said"),
    [
        (
            0,
            "returned a coroutine of Forgetful.priced, never awaited: await it (return await ...)",
        ),
        (
            1,
            "returned Pong among its outputs; a payload, not a message: "
            "return ctx.reply(Pong(...)) or ctx.emit",
        ),
        (2, "returned None among its outputs; only Message objects can be published"),
    ],
)
async def test_what_is_no_message_is_named_with_what_to_do(n: int, said: str) -> None:
    """The dead letter says what the handler returned and what to write instead; a coroutine
    it forgot to await is closed, so Python does not warn of it later, far from the cause."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        async with Runtime([Forgetful("f")]) as rt:
            await rt.publish(rt.message(Ping(n=n), recipient="f"))
            await rt.wait_idle()
        gc.collect()
    [letter] = rt.dead_letters
    assert letter.reason == f"InvalidOutputError: agent 'f' {said}"
    assert [str(w.message) for w in warned if "never awaited" in str(w.message)] == []


class ForgetfulOffTheLoop(BaseAgent):
    """``Forgetful``'s slips, in a plain def handler: run in a thread, or in a process."""

    produces = (Pong,)

    async def priced(self, ctx: Context) -> Message:
        return ctx.reply(Pong(n=1))

    @handler
    def on_ping(self, payload: Ping, ctx: Context):  # type: ignore[no-untyped-def]
        if payload.n == 0:
            return self.priced(ctx)
        if payload.n == 1:
            return [ctx.reply(Pong(n=1)), Pong(n=2)]
        return [ctx.reply(Pong(n=1)), None]


@pytest.mark.parametrize("offload", ["thread", "process"])
async def test_what_is_no_message_is_named_alike_wherever_the_handler_ran(
    offload: Literal["thread", "process"],
) -> None:
    """A handler's process checked what it returned in words of its own: a list holding a
    payload or None read "returned list from its handler; it must return ... a list or tuple
    of Message", naming neither the slip nor the fix. Each slip reads as on the loop."""
    said = [
        "returned a coroutine of ForgetfulOffTheLoop.priced, never awaited: await it "
        "(return await ...)",
        "returned Pong among its outputs; a payload, not a message: "
        "return ctx.reply(Pong(...)) or ctx.emit",
        "returned None among its outputs; only Message objects can be published",
    ]
    async with Runtime(processes=1) as rt:
        rt.add(ForgetfulOffTheLoop("f"), options=AgentOptions(offload=offload))
        for n in range(3):
            await rt.ask(rt.message(Ping(n=n), recipient="f"))
    reasons = [letter.reason for letter in rt.dead_letters if letter.kind == "failed"]
    assert reasons == [f"InvalidOutputError: agent 'f' {text}" for text in said]
