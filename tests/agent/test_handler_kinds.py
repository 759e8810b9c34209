"""``@handler`` on an ``async def`` or a plain ``def``: which is which, decided once per class."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import anyio
import pytest

from genie import BaseAgent, ConfigurationError, Context, Message, Runtime, TestContext, handler

from ..conftest import Ping, Pong


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
