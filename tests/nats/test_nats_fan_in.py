"""A fan-in a worker hosts (a declared gather, a workflow) keeps its sessions across a kill of
that worker: what it took is kept in the namespace's held bucket until it keeps the
correlation no more, and the next worker takes it again before anything new (against a real
``nats-server`` on 127.0.0.1, with worker processes killed where the test says)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from genie.nats._server import LocalNatsServer
from genie.pipeline import RunResult, load_pipeline

from .test_nats import (
    HELPER,
    ROOT,
    Workers,
    entry,
    eventually,
    jetstream,
    stream,
)

pytestmark = pytest.mark.xdist_group("nats")

FINANCE_GATHER = ROOT / "config" / "pipelines" / "finance-gather.yaml"
STATELESS = "ingestor,normalizer,enricher,analyzer,forecaster,anomaly_detector,recommender"
FAN_IN = "fan_in,reporter"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    with LocalNatsServer(tmp_path / "nats") as s:
        yield s


@pytest.fixture
def workers(tmp_path: Path):  # type: ignore[no-untyped-def]
    started = Workers(tmp_path)
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


Die = tuple[str, str, int]  # the step, the agent, the nth delivery of it


def gather_worker(started: Workers, url: str, agents: str, die: Die = ("-", "-", 0)):  # type: ignore[no-untyped-def]
    step, agent, nth = die
    cmd = [sys.executable, os.fspath(HELPER), step, agent, str(nth), os.fspath(FINANCE_GATHER)]
    return started.start([*cmd, "--nats", url, "--agents", agents, "--ack-wait", "1"])


@pytest.fixture(scope="module")
def local_report() -> str:
    async def go() -> RunResult:
        return await load_pipeline(FINANCE_GATHER).run()

    result = anyio.run(go)
    assert result.output is not None
    text: str = result.output.payload.model_dump()["text"]
    return text


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
    server: LocalNatsServer, workers: Workers, local_report: str, die: Die
) -> None:
    pipeline = load_pipeline(FINANCE_GATHER)
    gather_worker(workers, server.url, STATELESS)
    doomed = gather_worker(workers, server.url, FAN_IN, die)
    async with entry(server.url, pipeline) as rt:
        results: list[RunResult] = []
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                payload = pipeline.entry_payload(pipeline.read_input(None))
                results.append(await pipeline.ask(rt, payload, timeout=60))

            tg.start_soon(ask)
            assert await anyio.to_thread.run_sync(doomed.wait, 30) == -9
            gather_worker(workers, server.url, FAN_IN)
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
