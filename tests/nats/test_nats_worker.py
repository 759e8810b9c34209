"""What a worker keeps per running delivery on a real ``nats-server``: nothing once the
delivery ends, whatever path it took (a handoff to a fallback runs inside the failed
delivery and puts a second key in the worker's map of running deliveries)."""

from __future__ import annotations

import pytest

from genie import AgentOptions, BaseAgent, Context, Message, Runtime, handler
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Ping, Pong
from .test_nats import eventually
from .test_nats import server as server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


class Failing(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        raise RuntimeError(f"boom #{payload.n}")


class Backup(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))


def build(transport: NatsTransport | None) -> Runtime:
    rt = Runtime(transport=transport)
    rt.add(Failing("primary"), options=AgentOptions(fallback="backup", max_concurrency=4))
    rt.add(Backup("backup"), options=AgentOptions(max_concurrency=4))
    if transport is not None:
        transport.attach(rt)
    return rt


async def asks(rt: Runtime) -> tuple[list[object], tuple[int, ...]]:
    answers: list[object] = []
    for n in range(6):
        result = await rt.ask(rt.message(Ping(n=n), recipient="primary"), timeout=10)
        assert result.status == "complete", result.missing
        answers.append(result.message.payload)
    await rt.wait_idle()
    s = rt.statistics()
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight
    return answers, (s.delivered, s.handled, s.dead_lettered, s.in_flight)


async def test_a_worker_forgets_each_delivery_and_its_handoff_once_it_ends(
    server: LocalNatsServer,
) -> None:
    alone = build(None)
    async with alone:
        expected = await asks(alone)
    names = NatsNames("forget")
    worker_side = NatsTransport(server.url, names, hosted=["primary", "backup"])
    entry_side = NatsTransport(server.url, names)
    worker, entry = build(worker_side), build(entry_side)
    for t in (worker_side, entry_side):
        await t.connect()
    try:
        async with worker, entry:
            got = await asks(entry)
            await worker.wait_idle()

            # The runtime is idle once the handler ran; the transport lets go of a delivery
            # after its outcome is published and acked, which may still be on its way. A leak
            # stays past the deadline.
            async def forgotten() -> bool:
                return not worker_side._running and not worker_side._by_message

            await eventually(forgotten, timeout=5)
            assert worker_side._running == {}
            assert worker_side._by_message == {}
            # The handoffs are counted where they ran (the outcome records do not carry them).
            assert worker.statistics().fallbacks == 6
    finally:
        for t in (worker_side, entry_side):
            await t.close()
    assert alone.statistics().fallbacks == 6  # every delivery went to the fallback
    assert got == expected
