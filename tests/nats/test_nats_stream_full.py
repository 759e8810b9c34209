"""A publish the NATS server refuses for good (the work stream full, its discard policy
``new``) fails at once with the server's reason and the stream's name, as a dead letter of
the message it would have delivered, against a real ``nats-server``: not retried until the
run's timeout, as a publish to a broker that is away is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from genie import BaseAgent, Context, Message, Runtime, handler
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Note
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import jetstream
from .test_nats import server as server

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]

NAMES = NatsNames("full")
REFUSED = f"the NATS stream {NAMES.work} refused the message for {NAMES.agent('sink')}: "


class Relay(BaseAgent):
    """Passes each note on to ``sink``, which no worker hosts: it waits in the stream."""

    produces = (Note,)

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> Message:
        return ctx.emit(payload, recipient="sink")


class Sink(BaseAgent):
    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        return None


@asynccontextmanager
async def process(url: str, hosted: list[str]) -> AsyncIterator[Runtime]:
    transport = NatsTransport(url, NAMES, hosted=hosted)
    rt = Runtime([Relay("relay"), Sink("sink")], transport=transport, drain_timeout=0)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt:
            yield rt
    finally:
        await transport.close()


async def hold_at_most(url: str, messages: int) -> None:
    """The work stream holds ``messages`` deliveries at most, and refuses a new one past
    that (discard new), as an operator may set it after the processes made it."""
    from nats.js.api import DiscardPolicy

    async with jetstream(url) as js:
        config = (await js.stream_info(NAMES.work)).config
        config.max_msgs = messages
        config.discard = DiscardPolicy.NEW
        await js.update_stream(config)


async def test_an_outside_publish_to_a_full_stream_is_a_dead_letter_at_once(
    server: LocalNatsServer,
) -> None:
    async with process(server.url, []) as rt:
        await hold_at_most(server.url, 1)
        await rt.publish(rt.message(Note(text="first"), recipient="sink"))  # held: no worker
        with anyio.fail_after(10):  # not the ask's 30 s
            result = await rt.ask(rt.message(Note(text="second"), recipient="sink"), timeout=30)
        [missing] = result.missing
        assert missing.reason.startswith(REFUSED), missing.reason
        assert "maximum messages exceeded" in missing.reason
        [dead] = rt.dead_letters
        assert (dead.agent_id, dead.error_type) == ("sink", "PublishRefusedError")
        assert dead.message.payload == Note(text="second")  # lost to nobody: here to see


async def test_a_handlers_output_the_full_stream_refuses_is_a_dead_letter_at_once(
    server: LocalNatsServer,
) -> None:
    """The relay's request still holds the stream's only place when its output is published
    (a delivery is acked after its outputs): the output is refused. The delivery is handled,
    and its output a dead letter of ``sink`` saying why, in the process that asked."""
    async with process(server.url, ["relay"]) as worker, process(server.url, []) as rt:
        await hold_at_most(server.url, 1)
        with anyio.fail_after(10):  # not the ask's 30 s
            result = await rt.ask(rt.message(Note(text="on"), recipient="relay"), timeout=30)
        [missing] = result.missing
        assert missing.reason.startswith(REFUSED), missing.reason
        assert "maximum messages exceeded" in missing.reason
        [dead] = rt.dead_letters
        assert (dead.agent_id, dead.error_type) == ("sink", "PublishRefusedError")
        s = rt.statistics()
        assert (s.handled, s.dead_lettered, s.in_flight) == (1, 1, 0)
        assert worker.statistics().dead_lettered == 0  # the relay's delivery was handled


async def test_an_operators_limits_outlast_the_next_process(server: LocalNatsServer) -> None:
    """The limits an operator sets on the namespace's streams (how many messages, how many
    bytes, how long) are theirs: a process connecting later keeps them. What genie's promises
    rest on is genie's and set again: the work stream refuses a delivery it has no room for
    (discard ``new``) rather than dropping the oldest one waiting, unseen."""
    from nats.js.api import DiscardPolicy

    async with process(server.url, []):
        pass
    await hold_at_most(server.url, 1)
    async with jetstream(server.url) as js:
        outcomes = (await js.stream_info(NAMES.outcomes)).config
        outcomes.max_age, outcomes.max_bytes = 3600.0, 1 << 20
        await js.update_stream(outcomes)
    async with process(server.url, []) as rt:
        await rt.publish(rt.message(Note(text="first"), recipient="sink"))  # held: no worker
        with anyio.fail_after(10):
            result = await rt.ask(rt.message(Note(text="second"), recipient="sink"), timeout=30)
        [missing] = result.missing
        assert "maximum messages exceeded" in missing.reason
    async with jetstream(server.url) as js:
        work = (await js.stream_info(NAMES.work)).config
        outcomes = (await js.stream_info(NAMES.outcomes)).config
        assert (work.max_msgs, work.discard) == (1, DiscardPolicy.NEW)
        assert (outcomes.max_age, outcomes.max_bytes) == (3600.0, 1 << 20)
        work.discard = DiscardPolicy.OLD  # would drop a waiting delivery to make room
        await js.update_stream(work)
    async with process(server.url, []):
        pass
    async with jetstream(server.url) as js:
        work = (await js.stream_info(NAMES.work)).config
        assert (work.max_msgs, work.discard) == (1, DiscardPolicy.NEW)
