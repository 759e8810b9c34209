"""``rt.cancel`` across processes on a real ``nats-server``: the handlers a correlation runs
in two workers are cancelled, its deliveries still queued in the stream are dead-lettered
when a worker takes them, and the accounting in the process that cancelled is exact."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import nats
import pytest

from genie import BaseAgent, Context, Runtime, handler
from genie.nats._cancel import NatsCancellations
from genie.nats._names import ensure_streams
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Ping
from .test_nats import eventually, jetstream
from .test_nats import server as server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


class Stuck(BaseAgent):
    """Starts on every Ping and never finishes (until cancelled)."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.started = 0

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.started += 1
        await ctx.sleep(3600)


def build(transport: NatsTransport | None) -> Runtime:
    rt = Runtime(transport=transport)
    rt.add(Stuck("a"))
    rt.add(Stuck("b"))
    if transport is not None:
        transport.attach(rt)
    return rt


def started(rt: Runtime) -> Iterator[int]:
    for agent in rt.agents():
        assert isinstance(agent, Stuck)
        yield agent.started


async def cancel_midway(entry: Runtime, hosts: list[Runtime]) -> tuple[object, ...]:
    """Three Pings to each agent in one correlation; once a handler runs for each, cancel."""
    first = entry.message(Ping(n=0), recipient="a")
    cid = first.correlation_id
    await entry.publish(first)
    for n in range(1, 6):
        await entry.publish(entry.message(Ping(n=n), recipient="ab"[n % 2], correlation_id=cid))

    async def both_running() -> bool:
        return sum(sum(started(rt)) for rt in hosts) == 2

    await eventually(both_running, timeout=20)
    entry.cancel(cid)
    with anyio.fail_after(20):
        await entry.wait_idle()
    s = entry.statistics()
    letters = sorted((d.agent_id or "", d.kind, d.reason) for d in entry.dead_letters)
    return (s.delivered, s.handled, s.dead_lettered, s.in_flight), letters


async def test_cancel_reaches_handlers_in_two_workers_and_the_queued_deliveries(
    server: LocalNatsServer,
) -> None:
    alone = build(None)
    async with alone:
        expected = await cancel_midway(alone, [alone])
    names = NatsNames("cancel")
    transports = [
        NatsTransport(server.url, names, hosted=["a"], ack_wait=2),
        NatsTransport(server.url, names, hosted=["b"], ack_wait=2),
        NatsTransport(server.url, names),
    ]
    runtimes = [build(t) for t in transports]
    for t in transports:
        await t.connect()
    try:
        async with runtimes[0], runtimes[1], runtimes[2]:
            got = await cancel_midway(runtimes[2], runtimes[:2])
            for rt in runtimes[:2]:
                with anyio.fail_after(10):
                    await rt.wait_idle()  # each worker's own view: nothing left running
            async with jetstream(server.url) as js:

                async def all_acked() -> bool:  # an ack follows its outcome record
                    return (await js.stream_info(names.work)).state.messages == 0

                await eventually(all_acked, timeout=10)
    finally:
        for t in transports:
            await t.close()
    assert expected == (
        (6, 0, 6, 0),
        [("a", "cancelled", "correlation cancelled")] * 3
        + [("b", "cancelled", "correlation cancelled")] * 3,
    )
    assert got == expected
    assert [list(started(rt)) for rt in runtimes[:2]] == [[1, 0], [0, 1]]  # the queued never ran


async def test_a_follower_outlasts_a_missing_stream_and_says_loaded_only_once_following(
    server: LocalNatsServer,
) -> None:
    """A follower's start-up requests are retried, not fatal: before, a JetStream request that
    failed or timed out (a process stopped and resumed mid-request, a broker restarting) ended
    the whole worker. Here the stream is missing at first; the follower waits for it, says
    ``loaded`` only then, and hears a cancel appended after."""
    from nats.js.api import StreamConfig

    names = NatsNames("late")
    follower = NatsCancellations(names.cancelled, names.cancel_subject)
    heard: list[str] = []
    cancelled = anyio.Event()

    def on_cancel(correlation_id: str) -> None:
        heard.append(correlation_id)
        cancelled.set()

    async with jetstream(server.url) as js, anyio.create_task_group() as tg:
        tg.start_soon(follower.follow, js, on_cancel)
        await anyio.sleep(0.3)  # several refused requests
        assert not follower.loaded.is_set()
        await js.add_stream(StreamConfig(name=names.cancelled, subjects=[names.cancel_subject]))
        with anyio.fail_after(5):
            await follower.loaded.wait()
        await follower.cancel(js, "corr-1")
        with anyio.fail_after(5):
            await cancelled.wait()
        assert heard == ["corr-1"]
        tg.cancel_scope.cancel()


async def test_a_follower_knows_every_cancel_its_stream_keeps(server: LocalNatsServer) -> None:
    """The cancel stream keeps a day of cancels, and a delivery of any of them is
    dead-lettered unrun whenever a worker takes it: the follower forgets none the stream
    still keeps, however many came since (it kept the last 100,000, and a correlation
    cancelled before them ran)."""
    names = NatsNames("many")
    follower = NatsCancellations(names.cancelled, names.cancel_subject)
    heard: list[str] = []
    many = 100_001
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, names, duplicate_window=120.0)
        for n in range(many):  # without waiting for each ack: what many workers append
            await nc.publish(names.cancel_subject, f"corr-{n}".encode())
        await nc.flush()

        async def stored() -> bool:
            return (await js.stream_info(names.cancelled)).state.messages == many

        await eventually(stored, timeout=120)
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower.follow, js, heard.append)
            with anyio.fail_after(120):
                await follower.loaded.wait()
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    assert "corr-0" in follower
    assert len(heard) == len(set(heard)) == many


async def test_a_follower_keeps_no_more_cancels_than_its_stream(server: LocalNatsServer) -> None:
    """An operator who bounds the cancel stream by count bounds the followers' memory the
    same way: they know what a worker starting now would read, oldest forgotten first."""
    from nats.js.api import StreamConfig

    names = NatsNames("few")
    follower = NatsCancellations(names.cancelled, names.cancel_subject)
    heard: list[str] = []
    async with jetstream(server.url) as js, anyio.create_task_group() as tg:
        await js.add_stream(
            StreamConfig(name=names.cancelled, subjects=[names.cancel_subject], max_msgs=2)
        )
        for n in range(3):
            await follower.cancel(js, f"corr-{n}")
        tg.start_soon(follower.follow, js, heard.append)
        with anyio.fail_after(5):
            await follower.loaded.wait()
        assert heard == ["corr-1", "corr-2"]  # what the stream keeps
        await follower.cancel(js, "corr-3")

        async def heard_it() -> bool:
            return "corr-3" in follower

        await eventually(heard_it)
        assert ["corr-2" in follower, "corr-1" in follower] == [True, False]
        tg.cancel_scope.cancel()
