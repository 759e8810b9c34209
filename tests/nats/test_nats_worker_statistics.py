"""A worker's own statistics count the deliveries it runs for another process: each is
delivered there and ends there (handled, dead-lettered), what its handler sends is admitted
there (a denied output is delivered and denied), and the accounting identity holds on the
worker's figures alone, at every moment. The origin's figures are its own, and read as in
one process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio
import pytest

from genie import BaseAgent, Context, GatherResult, Runtime, RuntimeStatistics, handler
from genie._runtime.policy import Policy
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import DenyTo, Echo, Failing, Ping
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually
from .test_nats import server as server
from .test_nats_self_asking import Forward, Scenario, ask, books, in_one_process, serve

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]


class Quiet(BaseAgent):
    """Takes every Ping and sends nothing."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        return None


class Held(BaseAgent):
    """Takes every Ping and waits until ``release`` is set."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.running = anyio.Event()
        self.release = anyio.Event()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        self.running.set()
        await self.release.wait()


def counts(s: RuntimeStatistics) -> dict[str, int]:
    return {
        "delivered": s.delivered,
        "handled": s.handled,
        "denied": s.denied,
        "dead_lettered": s.dead_lettered,
        "in_flight": s.in_flight,
    }


def identity_holds(s: RuntimeStatistics) -> bool:
    ended = s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight
    return s.delivered == ended


Agents = Callable[[], Sequence[BaseAgent]]


class Pair:
    """A worker hosting "probe" (as ``genie worker`` builds it: a NatsTransport hosting it)
    and an origin hosting the other ``agents``, both serving on one namespace; each runtime
    knows all ``agents`` and has the ``policies``."""

    def __init__(
        self,
        url: str,
        namespace: str,
        agents: Agents,
        policies: Sequence[Policy],
    ) -> None:
        names = NatsNames(namespace)
        self.agents = agents()
        self.worker_t = NatsTransport(url, names, hosted=["probe"])
        others = [a.id for a in self.agents if a.id != "probe"]
        self.origin_t = NatsTransport(url, names, hosted=others)
        self.worker = Runtime(transport=self.worker_t, policies=policies)
        self.origin = Runtime(transport=self.origin_t, policies=policies)
        for agent in self.agents:
            self.worker.add(agent)
        for agent in agents():
            self.origin.add(agent)
        self.worker_t.attach(self.worker)
        self.origin_t.attach(self.origin)


# Each scenario: its agents, the worker's policies, and the worker's counts that are not 0.
AGENTS: dict[str, tuple[Agents, Sequence[Policy], dict[str, int]]] = {
    "handled, nothing sent": (lambda: [Quiet("probe")], (), {"delivered": 1, "handled": 1}),
    "handled, a reply": (lambda: [Echo("probe")], (), {"delivered": 1, "handled": 1}),
    "failed": (lambda: [Failing("probe")], (), {"delivered": 1, "dead_lettered": 1}),
    "output sent on": (  # the Ping, and the Pong b answers with: the Ping to b runs there
        lambda: [Forward("probe", to="b"), Echo("b")],
        (),
        {"delivered": 2, "handled": 2},
    ),
    "output denied": (
        lambda: [Forward("probe", to="b"), Echo("b")],
        [DenyTo("b")],
        {"delivered": 2, "handled": 1, "denied": 1},
    ),
}


async def ask_probe(rt: Runtime) -> GatherResult:
    return await ask(rt, "probe")


@pytest.mark.parametrize("name", list(AGENTS))
async def test_a_workers_statistics_count_the_deliveries_it_runs(
    server: LocalNatsServer, name: str
) -> None:
    """It counted the outcome of a delivery it ran but never the delivery: ``delivered=0,
    handled=1``, the identity its statistics promise broken."""
    make, policies, worker_counts = AGENTS[name]
    pair = Pair(server.url, "ws" + "".join(c for c in name if c.isalpha()), make, policies)
    for t in (pair.worker_t, pair.origin_t):
        await t.connect()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve, pair.worker)
            async with pair.origin:
                for t in (pair.worker_t, pair.origin_t):
                    with anyio.fail_after(10):
                        await t.serving()
                result = await ask_probe(pair.origin)

                async def settled() -> bool:
                    return (
                        pair.origin.statistics().in_flight <= 0
                        and pair.worker.statistics().in_flight <= 0
                    )

                await eventually(settled, timeout=10)
                await anyio.sleep(0.3)  # a count made twice would come by now
                worker, origin = pair.worker.statistics(), books(pair.origin, result)
            tg.cancel_scope.cancel()
    finally:
        for t in (pair.worker_t, pair.origin_t):
            await t.close()
    expected = {"delivered": 0, "handled": 0, "denied": 0, "dead_lettered": 0, "in_flight": 0}
    assert counts(worker) == expected | worker_counts
    assert identity_holds(worker)
    one_process = Scenario(lambda: [(a, ()) for a in make()], ask_probe, ["probe"], (), policies)
    assert origin == await in_one_process(one_process)


async def test_a_workers_statistics_count_a_delivery_it_is_running_in_flight(
    server: LocalNatsServer,
) -> None:
    """While its handler runs, the delivery is delivered and in flight on the worker."""
    pair = Pair(server.url, "wsheld", lambda: [Held("probe")], ())
    [probe] = pair.agents
    assert isinstance(probe, Held)
    for t in (pair.worker_t, pair.origin_t):
        await t.connect()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve, pair.worker)
            async with pair.origin:
                for t in (pair.worker_t, pair.origin_t):
                    with anyio.fail_after(10):
                        await t.serving()
                await pair.origin.publish(pair.origin.message(Ping(n=1), recipient="probe"))
                with anyio.fail_after(10):
                    await probe.running.wait()
                running = pair.worker.statistics()
                probe.release.set()

                async def settled() -> bool:
                    return (
                        pair.origin.statistics().in_flight <= 0
                        and pair.worker.statistics().in_flight <= 0
                    )

                await eventually(settled, timeout=10)
                ended = pair.worker.statistics()
            tg.cancel_scope.cancel()
    finally:
        for t in (pair.worker_t, pair.origin_t):
            await t.close()
    assert (running.delivered, running.handled, running.in_flight) == (1, 0, 1)
    assert identity_holds(running)
    assert (ended.delivered, ended.handled, ended.in_flight) == (1, 1, 0)
    assert identity_holds(ended)


async def test_a_delivery_a_runtime_sent_itself_counts_twice_while_it_runs(
    server: LocalNatsServer,
) -> None:
    """Sent (the origin's count) and running (the worker's) until its outcome record comes
    back: the identity holds meanwhile, and after it the delivery is counted once."""
    transport = NatsTransport(server.url, NatsNames("wsself"), hosted=["probe"])
    rt = Runtime(transport=transport)
    probe = Held("probe")
    rt.add(probe)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt:
            await transport.serving()
            await rt.publish(rt.message(Ping(n=1), recipient="probe"))
            with anyio.fail_after(10):
                await probe.running.wait()
            running = rt.statistics()
            probe.release.set()

            async def settled() -> bool:
                return rt.statistics().in_flight <= 0

            await eventually(settled, timeout=10)
            ended = rt.statistics()
    finally:
        await transport.close()
    assert (running.delivered, running.handled, running.in_flight) == (2, 0, 2)
    assert identity_holds(running)
    assert (ended.delivered, ended.handled, ended.in_flight) == (1, 1, 0)
    assert identity_holds(ended)


async def test_a_delivery_running_at_a_workers_stop_is_kept_for_the_next_worker(
    server: LocalNatsServer,
) -> None:
    """Stopped while its handler runs, the worker has not acked the delivery: the stream
    gives it to the next worker. Nothing is lost, so the stop counts it in
    ``kept_deliveries``, in flight, and no dead letter; the next worker runs it, and the
    origin counts it handled once."""
    names = NatsNames("wskept")
    origin_t = NatsTransport(server.url, names)
    origin = Runtime(transport=origin_t)
    first_t = NatsTransport(server.url, names, hosted=["probe"], ack_wait=1)
    first = Runtime(transport=first_t)
    stuck, free = Held("probe"), Held("probe")
    free.release.set()
    for rt, agent in ((origin, Held("probe")), (first, stuck)):
        rt.add(agent)
    origin_t.attach(origin)
    first_t.attach(first)
    second_t = NatsTransport(server.url, names, hosted=["probe"], ack_wait=1)
    second = Runtime(transport=second_t)
    second.add(free)
    second_t.attach(second)
    transports = (origin_t, first_t, second_t)
    for t in transports:
        await t.connect()
    try:
        async with origin:
            with anyio.CancelScope() as stopping:  # as on SIGTERM: at once, no drain
                async with first:
                    await origin.publish(origin.message(Ping(n=1), recipient="probe"))
                    with anyio.fail_after(10):
                        await stuck.running.wait()
                    stopping.cancel()
            async with second:

                async def handled() -> bool:
                    return origin.statistics().in_flight == 0

                await eventually(handled, timeout=20)
            ended = origin.statistics()
    finally:
        for t in transports:
            await t.close()
    report = first.shutdown_report
    assert report is not None
    assert (report.kept_deliveries, report.cancelled_running) == (1, 0), report
    assert list(first.dead_letters) == []
    stopped = first.statistics()
    assert (stopped.delivered, stopped.dead_lettered, stopped.in_flight) == (1, 0, 1)
    assert identity_holds(stopped)
    assert (ended.delivered, ended.handled, ended.dead_lettered) == (1, 1, 0)
    assert list(origin.dead_letters) == []
