"""``ctx.schedule`` and the model budget in a worker on a real ``nats-server``: the timer
stays in the worker that set it, and the process that started the request keeps it open until
the timer fires, is withdrawn or is cancelled (``rt.cancel`` there), with the accounting of one
process; a model budget that fires there is in that process's audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from genie import BaseAgent, Context, Limits, MemoryAuditLog, Message, Runtime, handler
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Note, Ping, Pong
from .test_nats import eventually
from .test_nats import server as server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


class Alarm(BaseAgent):
    """Ping(n): a timer of n/10 s that answers the pinger when it fires; n = 0 sets one and
    withdraws it at once."""

    produces = (Note, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message | None:
        timer = ctx.schedule(payload.n / 10, Note(text=f"{payload.n}"))
        if payload.n == 0:
            timer.cancel()
            return ctx.reply(Pong(n=0))
        return None

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> Message:
        return ctx.emit(Pong(n=int(payload.text)), recipient="user")


def build(transport: NatsTransport | None) -> Runtime:
    rt = Runtime(transport=transport)
    rt.add(Alarm("alarm"))
    if transport is not None:
        transport.attach(rt)
    return rt


@asynccontextmanager
async def across(url: str, namespace: str) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """(the worker hosting the alarm, the entry): two runtimes sharing only the broker."""
    names = NatsNames(namespace)
    transports = [
        NatsTransport(url, names, hosted=["alarm"], ack_wait=2),
        NatsTransport(url, names),
    ]
    worker, entry = (build(t) for t in transports)
    for t in transports:
        await t.connect()
    try:
        async with worker, entry:
            yield worker, entry
    finally:
        for t in transports:
            await t.close()


def counts(rt: Runtime) -> tuple[int, ...]:
    s = rt.statistics()
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight
    return s.delivered, s.handled, s.collected, s.dead_lettered, s.in_flight


async def alarm(rt: Runtime, n: int) -> int:
    result = await rt.ask(rt.message(Ping(n=n), recipient="alarm"), timeout=10)
    assert result.status == "complete", result.missing
    pong = result.message.payload
    assert isinstance(pong, Pong)
    await rt.wait_idle()
    return pong.n


@pytest.mark.parametrize("n", [3, 0], ids=["fired", "withdrawn"])
async def test_a_timer_in_a_worker_keeps_the_request_open_until_it_ends(
    server: LocalNatsServer, n: int
) -> None:
    alone = build(None)
    async with alone:
        expected = await alarm(alone, n), counts(alone)
    async with across(server.url, f"timer{n}") as (_, entry):
        got = await alarm(entry, n), counts(entry)
    assert got == expected
    assert expected[1][-1] == 0  # nothing left in flight


async def test_a_cancelled_request_cancels_its_timer_in_the_worker(
    server: LocalNatsServer,
) -> None:
    async def cancel(rt: Runtime, host: Runtime) -> tuple[object, ...]:
        ping = rt.message(Ping(n=600), recipient="alarm")  # a minute
        await rt.publish(ping)

        async def pending() -> bool:
            return host.statistics().timers_pending == 1

        await eventually(pending, timeout=10)
        rt.cancel(ping.correlation_id)
        with anyio.fail_after(10):
            await rt.wait_idle()
        letters = [(d.agent_id, d.kind, d.reason) for d in rt.dead_letters]
        return counts(rt), letters

    alone = build(None)
    async with alone:
        expected = await cancel(alone, alone)
    async with across(server.url, "cancelled") as (worker, entry):
        got = await cancel(entry, worker)
    assert expected == ((2, 1, 0, 1, 0), [("alarm", "cancelled", "timer of a cancelled request")])
    assert got == expected


class Thinker(BaseAgent):
    """Asks a model once per Ping, within the correlation's token budget."""

    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        from genie.llm import BudgetExceededError

        from ..llm.helpers import Scripted, simple_request

        try:
            await ctx.llm(Scripted(["thought"])).complete(simple_request(max_tokens=64))
        except BudgetExceededError:
            return ctx.reply(Pong(n=-1))
        return ctx.reply(Pong(n=1))


async def test_a_model_budget_firing_in_a_worker_is_in_the_origins_audit_log(
    server: LocalNatsServer,
) -> None:
    """The kill switch refuses a worker's model call: its ``limit_fired`` record reaches the
    process that started the request (whose audit log the entry writes), as in one process."""

    def think(transport: NatsTransport | None, audit: MemoryAuditLog) -> Runtime:
        rt = Runtime(transport=transport, limits=Limits(correlation_tokens=10), audit=audit)
        rt.add(Thinker("thinker"))
        if transport is not None:
            transport.attach(rt)
        return rt

    async def go(rt: Runtime, audit: MemoryAuditLog) -> tuple[object, ...]:
        result = await rt.ask(rt.message(Ping(n=1), recipient="thinker"), timeout=10)
        pong = result.message.payload
        assert isinstance(pong, Pong)
        fired = [(r.actor, r.action, r.target) for r in audit.records]
        return pong.n, fired

    alone_audit = MemoryAuditLog()
    alone = think(None, alone_audit)
    async with alone:
        expected = await go(alone, alone_audit)
    names = NatsNames("thinking")
    worker_t, entry_t = (
        NatsTransport(server.url, names, hosted=["thinker"]),
        NatsTransport(server.url, names),
    )
    entry_audit = MemoryAuditLog()
    worker_rt, entry_rt = think(worker_t, MemoryAuditLog()), think(entry_t, entry_audit)
    for t in (worker_t, entry_t):
        await t.connect()
    try:
        async with worker_rt, entry_rt:
            got = await go(entry_rt, entry_audit)
    finally:
        for t in (worker_t, entry_t):
            await t.close()
    assert expected == (-1, [("limit:correlation_tokens", "limit_fired", "thinker")])
    assert got == expected
