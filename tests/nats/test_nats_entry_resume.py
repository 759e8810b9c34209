"""The crash drill on NATS (issue 37): the entry process of ``genie run --nats URL --origin
NAME`` killed with SIGKILL at each point of its request's life (before and after the request is
kept, before and after the stream's answer is noted, after each outcome record it applies),
while a ``genie worker`` goes on running the request; then the same command again. Each time
the request completes with the output an uninterrupted run prints, no handler's effect is
applied twice for a delivery id, the counts hold across the restart, the origin's bucket ends
empty, and the namespace's audit stream verifies. Killed with the worker, the request
completes too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import nats
import pytest

from genie import AgentOptions, BaseAgent, Context, Message, Runtime, handler
from genie._cli.main import main
from genie._errors import ConfigurationError
from genie.nats._entry import check_origin
from genie.nats._names import NatsNames
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsTransport

from ..conftest import Ping, Pong
from ..durable.test_crash_drill import AGENTS, PIPELINE
from .test_nats import FINANCE, GENIE, Workers, eventually
from .test_nats import server as server
from .test_nats import workers as workers

HARNESS = """
import os, signal, sys
from genie import BaseAgent, Context, Message, Runtime, handler
from genie._cli.main import main
from genie.nats._entry import EntryRequests
from genie.nats._replay import OutcomeReplay

point, at = sys.argv[1], int(sys.argv[2])


def die():
    os.kill(os.getpid(), signal.SIGKILL)


keep = EntryRequests.keep


async def keeping(self, delivery, *, published=False):
    if point == ("before-mark" if published else "before-keep"):
        die()
    await keep(self, delivery, published=published)
    if point == ("after-mark" if published else "after-keep"):
        die()


settle = OutcomeReplay.settle
applied = 0


def settling(self, host, record, bounded=False, seq=None):
    global applied
    settle(self, host, record, bounded, seq)
    applied += 1
    if point == "record" and applied == at:
        die()


EntryRequests.keep = keeping
OutcomeReplay.settle = settling
sys.exit(main(sys.argv[3:]))
"""

NAMESPACE = "drill"
RECORDS = 4  # the chain's deliveries: an uninterrupted request applies this many records


@pytest.fixture
def drill(tmp_path: Path) -> Path:
    (tmp_path / "drill_agents.py").write_text(AGENTS)
    (tmp_path / "drill.yaml").write_text(PIPELINE)
    (tmp_path / "harness.py").write_text(HARNESS)
    return tmp_path


def environment(folder: Path) -> dict[str, str]:
    return {**os.environ, "DRILL_LEDGER": str(folder / "ledger.txt"), "PYTHONPATH": str(folder)}


def start_worker(folder: Path, url: str, started: Workers) -> subprocess.Popen[bytes]:
    cmd = [os.fspath(GENIE), "worker", str(folder / "drill.yaml"), "--nats", url, "--ack-wait", "1"]
    with open(folder / f"worker-{len(started)}.log", "wb") as log:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=environment(folder))
    started.append(p)
    return p


def entry(
    folder: Path, url: str, origin: str, point: str = "never", at: int = 0
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        str(folder / "harness.py"),
        point,
        str(at),
        "run",
        str(folder / "drill.yaml"),
        "--nats",
        url,
        "--origin",
        origin,
        "--json",
    ]
    return subprocess.run(
        command, env=environment(folder), capture_output=True, text=True, timeout=60
    )


def effects(folder: Path) -> list[str]:
    ledger = folder / "ledger.txt"
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    return [line.split()[1] for line in lines if line.startswith("effect ")]


async def kept_async(url: str, origin: str, names: NatsNames) -> list[str]:
    """The keys the origin's requests still hold in the namespace's bucket."""
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(names.entry)
        try:
            return [k for k in await kv.keys() if k.startswith(f"{origin}.")]
        except nats.js.errors.NoKeysError:
            return []
    finally:
        await nc.close()


def kept(url: str, origin: str) -> list[str]:
    return anyio.run(kept_async, url, origin, NatsNames(NAMESPACE))


def completes(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    assert result["output"] == {"type": "total", "payload": {"total": 10}} or (
        isinstance(result["output"], dict) and result["output"]["payload"] == {"total": 10}
    )
    stats = result["stats"]
    assert isinstance(stats, dict)
    assert stats["delivered"] == stats["handled"] + stats["dead_lettered"] + stats["denied"]
    assert stats["in_flight"] == 0
    return result


KILLS = [
    ("before-keep", 0),
    ("after-keep", 0),
    ("before-mark", 0),
    ("after-mark", 0),
    *(("record", n) for n in range(1, RECORDS + 1)),
]


def test_an_entry_killed_at_any_point_is_resumed_and_applies_each_effect_once(
    drill: Path, server: LocalNatsServer, workers: Workers
) -> None:
    start_worker(drill, server.url, workers)
    first = entry(drill, server.url, "steady")
    completes(first)  # uninterrupted: no resume, nothing kept after
    assert "resuming" not in first.stderr
    assert kept(server.url, "steady") == []
    assert len(effects(drill)) == RECORDS
    resumed = 0
    for n, (point, at) in enumerate(KILLS):
        origin = f"entry-{n}"
        before = len(effects(drill))
        killed = entry(drill, server.url, origin, point, at)
        assert killed.returncode == -signal.SIGKILL, (point, at, killed.stderr)
        again = entry(drill, server.url, origin)
        completes(again)
        if "resuming 1 unfinished request of origin" in again.stderr:
            resumed += 1
        else:  # killed before anything of its request was kept: the next run is the first
            assert point == "before-keep", (point, again.stderr)
        keys = effects(drill)
        assert len(keys) == len(set(keys)), (point, at)  # no delivery's effect twice
        assert len(keys) - before == RECORDS, (point, at)  # one request, finished once
        assert kept(server.url, origin) == [], (point, at)
    assert resumed == len(KILLS) - 1
    # Both lives of each entry wrote to the namespace's one audit chain.
    assert main(["audit", "verify", f"{server.url}/{NAMESPACE}"]) == 0


def test_an_entry_killed_with_its_worker_resumes_once_a_worker_is_back(
    drill: Path, server: LocalNatsServer, workers: Workers
) -> None:
    worker = start_worker(drill, server.url, workers)
    killed = entry(drill, server.url, "both", "record", 2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    worker.kill()
    worker.wait()
    start_worker(drill, server.url, workers)
    again = entry(drill, server.url, "both")
    completes(again)
    assert "resuming 1 unfinished request of origin both" in again.stderr
    keys = effects(drill)
    assert len(keys) == len(set(keys)) == RECORDS
    assert kept(server.url, "both") == []


@pytest.mark.parametrize("origin", ["", "a.b", "a*", "x" * 65, "é"])
def test_an_origin_that_cannot_name_a_subject_is_refused(origin: str) -> None:
    with pytest.raises(ConfigurationError, match="origin"):
        check_origin(origin)


def test_origin_without_nats_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(FINANCE), "--origin", "e1"]) == 2
    assert "--origin names an entry process of --nats" in capsys.readouterr().err


def test_namespace_without_nats_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # It was taken and did nothing: the run went in this process, as genie approvals refuses.
    assert main(["run", str(FINANCE), "--namespace", "ns"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "genie run: --namespace names a namespace of --nats: give --nats URL\n"


class Held(BaseAgent):
    """Replies Pong(n) once ``gate`` opens."""

    produces = (Pong,)

    def __init__(self, id: str, gate: anyio.Event) -> None:
        super().__init__(id)
        self.gate = gate

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await self.gate.wait()
        return ctx.reply(Pong(n=payload.n))


def pinger(transport: NatsTransport, gate: anyio.Event) -> Runtime:
    rt = Runtime(transport=transport, drain_timeout=0.2)
    rt.add(Held("held", gate), options=AgentOptions(max_concurrency=4))  # requests side by side
    transport.attach(rt)
    return rt


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # nats-py runs on asyncio only
async def test_from_python_an_entry_stopped_midway_is_resumed_by_its_name(
    server: LocalNatsServer,
) -> None:
    names = NatsNames("python-entry")
    gate = anyio.Event()
    worker_side = NatsTransport(server.url, names, hosted=["held"])
    worker = pinger(worker_side, gate)
    await worker_side.connect()
    try:
        async with worker:
            first = NatsTransport(server.url, names, origin="desk-1")
            rt = pinger(first, gate)
            await first.connect()
            request = rt.message(Ping(n=7), recipient="held")
            async with rt:
                assert rt.unfinished() == []
                result = await rt.ask(request, timeout=0.3)  # the handler waits on the gate
                assert result.status == "timed_out"
                rt.drain_timeout = 0.2
            await first.close()
            # A caller that gives up cancels its request: nothing is kept for a later start.
            assert await kept_async(server.url, "desk-1", names) == []

            # A caller cancelled (Ctrl-C) does not give it up: it stays kept.
            rt = pinger(first := NatsTransport(server.url, names, origin="desk-3"), gate)
            await first.connect()
            async with rt:
                with anyio.move_on_after(0.3):
                    await rt.ask(request.model_copy(update={"id": "r3", "correlation_id": "r3"}))
            await first.close()
            assert len(await kept_async(server.url, "desk-3", names)) == 1

            rt = pinger(first := NatsTransport(server.url, names, origin="desk-2"), gate)
            await first.connect()
            received = worker_side.received
            async with rt:
                rt.publish_nowait(request.model_copy(update={"id": "r2", "correlation_id": "r2"}))

                async def taken() -> bool:  # out, and waiting on the gate in the worker
                    return worker_side.received > received

                await eventually(taken, timeout=10)
            await first.close()  # stopped with the request in flight: it stays kept
            assert len(await kept_async(server.url, "desk-2", names)) == 1

            again = NatsTransport(server.url, names, origin="desk-2")
            rt = pinger(again, gate)
            await again.connect()
            async with rt:
                (left,) = rt.unfinished()
                assert left.id == "r2"
                gate.set()
                resumed = await rt.resume(left, timeout=10)
                assert resumed.status == "complete"
                assert resumed.message.payload == Pong(n=7)
                s = rt.statistics()
                assert s.delivered == s.handled + s.dead_lettered + s.in_flight
            await again.close()
            assert await kept_async(server.url, "desk-2", names) == []
    finally:
        await worker_side.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # nats-py runs on asyncio only
async def test_an_entry_of_its_bucket_no_entry_wrote_is_passed_over_at_start(
    server: LocalNatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The origin's bucket is open to any client of the broker: an entry under its name that
    no entry process wrote (not JSON, too deep, not shaped as a kept request) stopped every
    start of that name at connect. Each is logged and left; the request kept beside them is
    found and resumed as ever."""
    names = NatsNames("hostile-entry")
    gate = anyio.Event()
    first = NatsTransport(server.url, names, origin="desk")
    rt = pinger(first, gate)
    await first.connect()
    try:
        async with rt:  # no worker hosts "held": the request waits in the stream, kept
            await rt.publish(rt.message(Ping(n=7), recipient="held", id="r1", correlation_id="r1"))
    finally:
        await first.close()
    hostile = [b"not json", b"[" * 5_000 + b"]" * 5_000, b"[1]", b'{"delivery": {}}']
    nc = await nats.connect(server.url)
    try:
        kv = await nc.jetstream().key_value(names.entry)
        for n, data in enumerate(hostile):
            await kv.put(f"desk.hostile{n}", data)
    finally:
        await nc.close()
    again = NatsTransport(server.url, names, origin="desk")
    rt = pinger(again, gate)
    worker_side = NatsTransport(server.url, names, hosted=["held"])
    worker = pinger(worker_side, gate)
    await again.connect()
    await worker_side.connect()
    try:
        async with worker, rt:
            (left,) = rt.unfinished()
            gate.set()
            resumed = await rt.resume(left, timeout=10)
    finally:
        await again.close()
        await worker_side.close()
    assert resumed.status == "complete"
    assert resumed.message.payload == Pong(n=7)
    passed_over = [r for r in caplog.records if "is no kept request" in r.getMessage()]
    assert len(passed_over) == len(hostile)
