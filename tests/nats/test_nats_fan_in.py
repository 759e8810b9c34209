"""A fan-in a worker hosts (a declared gather, a workflow) keeps its sessions across a kill of
that worker: what it took is kept in the namespace's held bucket until it keeps the
correlation no more, and the next worker takes it again before anything new (against a real
``nats-server`` on 127.0.0.1, with worker processes killed where the test says)."""

from __future__ import annotations

import anyio
import pytest

from genie.nats._server import LocalNatsServer
from genie.pipeline import RunResult, load_pipeline

from .test_nats import (
    ROOT,
    Workers,
    entry,
    eventually,
    jetstream,
    report_of,
    stream,
    worker,
)
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import server as server
from .test_nats import workers as workers

pytestmark = pytest.mark.xdist_group("nats")

FINANCE_GATHER = ROOT / "config" / "pipelines" / "finance-gather.yaml"
STATELESS = "ingestor,normalizer,enricher,analyzer,forecaster,anomaly_detector,recommender"
FAN_IN = "fan_in,reporter"


@pytest.fixture(scope="module")
def local_report() -> str:
    return report_of(FINANCE_GATHER)


@pytest.mark.parametrize(
    "die",
    [
        ("handled", "fan_in", 2),
        ("kept", "fan_in", 2),
        ("acked", "fan_in", 2),
        ("acked", "fan_in", 4),
    ],
)
async def test_a_gathers_worker_killed_midway_the_next_one_rebuilds_its_session(
    server: LocalNatsServer, workers: Workers, local_report: str, die: tuple[str, str, int]
) -> None:
    pipeline = load_pipeline(FINANCE_GATHER)
    worker(workers, server.url, STATELESS, pipeline=FINANCE_GATHER)
    doomed = worker(workers, server.url, FAN_IN, die=die, pipeline=FINANCE_GATHER)
    async with entry(server.url, pipeline) as rt:
        results: list[RunResult] = []
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                payload = pipeline.entry_payload(pipeline.read_input(None))
                results.append(await pipeline.ask(rt, payload, timeout=60))

            tg.start_soon(ask)
            assert await anyio.to_thread.run_sync(doomed.wait, 30) == -9
            worker(workers, server.url, FAN_IN, pipeline=FINANCE_GATHER)
        assert results[0].status == "ok", results[0]
        assert results[0].output is not None
        assert results[0].output.payload.model_dump()["text"] == local_report
        s = rt.statistics()
        assert s.in_flight == 0
        assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed
    names = pipeline.name
    async with jetstream(server.url) as js:
        from genie.nats._names import NatsNames

        n = NatsNames(names)

        async def drained() -> bool:
            return (await js.stream_info(n.work)).state.messages == 0

        await eventually(drained, timeout=15)
        records = await stream(js, n.outcomes)
        held = await js.stream_info(f"KV_{n.held}")
    ids = [r["delivery"] for r in records]
    assert len(ids) == len(set(ids)), "an outcome recorded twice"
    assert held.state.messages == 0, "entries left in the held bucket"


async def test_a_broker_restart_while_a_fan_in_keeps_is_waited_out(server: LocalNatsServer) -> None:
    """Keeping a fan-in's delivery, releasing its session and telling an answer what became
    of it are retried through a broker's restart (the delivery is acked only after them), not
    the end of the worker."""
    from genie._message.envelope import Message
    from genie._message.types import MessageTypes
    from genie._runtime.transport import Delivery
    from genie.nats._approvals import NatsApprovals
    from genie.nats._held import Held, HeldDeliveries

    from ..conftest import Ping

    def told(approval_id: str, by: str, approved: bool) -> str:
        return "approved"  # the desk's word: bo's answer decided ap-1

    held = HeldDeliveries("GENIE_T_HELD")
    held.fan_ins["fan_in"] = lambda correlation_id: True
    approvals = NatsApprovals("GENIE_T_APPROVALS")
    msg = Message.new(Ping(n=1), sender="a", recipient="fan_in")
    delivery = Delivery(msg, "fan_in")
    async with jetstream(server.url) as js:
        await held.bind(js)
        await approvals.bind(js)
        key = await approvals.answer("ap-1", True, "bo", (), "")
        for step in ("keep", "tell", "release"):
            server.kill()
            async with anyio.create_task_group() as tg:
                if step == "keep":
                    tg.start_soon(held.keep, Held(delivery, "o", None, False), 1 << 20)
                elif step == "tell":
                    tg.start_soon(approvals.decided, ["ap-1"], told)
                else:
                    tg.start_soon(held.release, "fan_in", msg.correlation_id)
                await anyio.sleep(0.5)  # the write waits for the broker
                server.start()
        # Kept, told, then released: the bucket holds nothing, and the answer its outcome.
        assert await held.found("fan_in", MessageTypes([Ping])) == []
        assert await approvals.outcome(key) == "approved"
