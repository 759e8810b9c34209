"""The cross-process workload (``genie bench --workloads nats``; opt-in: it starts its own
``nats-server`` and worker processes).

A chain of ``HOPS`` agents, each doing the same CPU work per delivery, hosted by 1, 2 and 3
worker processes; the bench process is the entry and keeps ``concurrency`` requests in flight.
Beside it, in the same run, the floor: a bare nats-py work queue (JetStream publish, a durable
pull consumer shared by the same number of worker processes, fetch, the same work, ack) moving
the same number of messages.

Two cases: a light handler (``LIGHT`` sha256 rounds, about a tenth of a millisecond: the cost
of the transport dominates) and a handler-bound one (``HEAVY`` rounds, about 2 ms: the case
scale-out is for, where more worker processes have the handler's work to share).

``python -m genie_bench.scaleout worker URL ROUNDS`` and ``... bare URL ROUNDS`` are the
worker children.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from genie import AgentOptions, BaseAgent, Context, Message, Payload, Runtime, handler

from .process import child_env

HOPS = 2
LIGHT = 200  # sha256 rounds per delivery: about 0.1 ms of handler work
HEAVY = 6000  # about 2 ms (0.3 to 0.6 µs a round here): a handler-bound chain
STREAM = "BENCH_BARE"
CONCURRENCY = 64  # max_concurrency of each hop = max_ack_pending: room for every worker


class Job(Payload):
    message_type = "bench.job"
    n: int


class Done(Payload):
    message_type = "bench.done"
    n: int


def work(rounds: int) -> None:
    digest = b"genie"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()


def work_ms(rounds: int) -> float:
    """The CPU milliseconds ``work(rounds)`` takes here (the median of a few runs)."""
    times = []
    for _ in range(7):
        t0 = time.process_time()
        work(rounds)
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


class Hop(BaseAgent):
    """Does the work, then passes the job on (or answers the caller at the end)."""

    produces = (Job, Done)

    def __init__(self, id: str, next_hop: str | None, rounds: int) -> None:
        super().__init__(id)
        self.next_hop = next_hop
        self.rounds = rounds

    @handler
    async def on_job(self, payload: Job, ctx: Context) -> Message:
        work(self.rounds)
        if self.next_hop is not None:
            return ctx.emit(Job(n=payload.n), recipient=self.next_hop)
        return ctx.emit(Done(n=payload.n), recipient="user")


def chain(transport: Any, rounds: int) -> Runtime:
    rt = Runtime(transport=transport)
    for i in range(HOPS):
        nxt = f"hop{i + 1}" if i + 1 < HOPS else None
        rt.add(Hop(f"hop{i}", nxt, rounds), options=AgentOptions(max_concurrency=CONCURRENCY))
    return rt


def _names() -> Any:
    from genie.nats import NatsNames

    return NatsNames("bench")


# --- the children --------------------------------------------------------------------------------
async def _genie_worker(url: str, rounds: int) -> None:
    from genie.nats import NatsTransport

    transport = NatsTransport(url, _names(), hosted=[f"hop{i}" for i in range(HOPS)])
    rt = chain(transport, rounds)
    transport.attach(rt)
    await transport.connect()
    async with rt:
        print("ready", flush=True)
        await anyio.sleep_forever()


async def _bare_worker(url: str, rounds: int) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    from genie._nats import fetch_ready  # the same fetch as the transport's

    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name="bare", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=CONCURRENCY
    )
    psub = await js.pull_subscribe("bench.bare.*", durable="bare", stream=STREAM, config=config)
    print("ready", flush=True)
    pending = 0
    while True:
        batch = await fetch_ready(psub, CONCURRENCY, pending)
        pending = batch[-1].metadata.num_pending if batch else 0
        for raw in batch:
            work(rounds)
            hop = int(raw.subject.rsplit(".", 1)[1])
            if hop + 1 < HOPS:
                await js.publish(f"bench.bare.{hop + 1}", raw.data)
            else:
                await nc.publish(f"bench.done.{raw.data.decode()}", b"")
            await raw.ack()


# --- the measurement -----------------------------------------------------------------------------
def _start(kind: str, url: str, count: int, rounds: int) -> list[subprocess.Popen[str]]:
    procs = []
    for _ in range(count):
        cmd = [sys.executable, "-m", "genie_bench.scaleout", kind, url, str(rounds)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=child_env())
        procs.append(p)
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"scale-out {kind} worker did not start")
    return procs


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used (Linux: /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_counts(monitor: str) -> dict[str, float]:
    """What the server has done so far (its HTTP monitoring): messages in and out (every
    publish, pull request, ack, pub ack, delivery), JetStream API calls, and the messages each
    stream has stored (its last sequence: a duplicate dropped by its id is not stored)."""
    with urllib.request.urlopen(f"{monitor}/varz", timeout=5) as r:
        varz = json.load(r)
    with urllib.request.urlopen(f"{monitor}/jsz?streams=true", timeout=5) as r:
        jsz = json.load(r)
    counts = {"in_msgs": varz["in_msgs"], "out_msgs": varz["out_msgs"], "api": jsz["api"]["total"]}
    for account in jsz.get("account_details", []):
        for stream in account.get("stream_detail", []):
            counts[f"stored {stream['name']}"] = stream["state"]["last_seq"]
    return counts


class _CpuMeter:
    """CPU per delivery of each process of a measurement: the entry (this process), the
    workers together, and the server, over the measured run only (not the warm-up); and the
    server's messages per delivery (``server_msgs``), from its monitoring."""

    def __init__(self, server: int, workers: list[int], monitor: str | None = None) -> None:
        self.pids = {"server": [server], "workers": workers}
        self.monitor = monitor
        self.start: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def begin(self) -> None:
        if self.monitor is not None:
            self.counts = _server_counts(self.monitor)
        self.start = {k: sum(map(_cpu, v)) for k, v in self.pids.items()}
        self.start["entry"] = time.process_time()

    def per_delivery_us(self, deliveries: int) -> dict[str, Any]:
        used = {k: sum(map(_cpu, v)) - self.start[k] for k, v in self.pids.items()}
        used["entry"] = time.process_time() - self.start["entry"]
        out: dict[str, Any] = {f"cpu_us_{k}": v / deliveries * 1e6 for k, v in used.items()}
        if self.monitor is not None:
            now = _server_counts(self.monitor)
            out["server_msgs"] = {
                k: round((v - self.counts.get(k, 0)) / deliveries, 3)
                for k, v in now.items()
                if v != self.counts.get(k, 0)
            }
        return out


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


def _summary(latencies: list[float], wall: float, requests: int) -> dict[str, Any]:
    per_hop = sorted(x / HOPS for x in latencies)
    q = statistics.quantiles(per_hop, n=100, method="inclusive")
    return {
        "deliveries_per_s": requests * HOPS / wall,
        "p50_hop_ms": q[49] * 1e3,
        "p99_hop_ms": q[98] * 1e3,
    }


async def _drive(
    requests: int, concurrency: int, one: Callable[[int], Any], cpu: _CpuMeter | None = None
) -> dict[str, Any]:
    latencies: list[float] = []
    todo = iter(range(requests))

    async def lane() -> None:
        for n in todo:
            t0 = time.perf_counter()
            await one(n)
            latencies.append(time.perf_counter() - t0)

    if cpu is not None:
        cpu.begin()
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(lane)
    summary = _summary(latencies, time.perf_counter() - started, requests)
    if cpu is not None:
        summary |= cpu.per_delivery_us(requests * HOPS)
    return summary


async def _genie_entry(
    url: str, requests: int, concurrency: int, rounds: int, cpu: _CpuMeter | None = None
) -> dict[str, Any]:
    from genie.nats import NatsTransport

    transport = NatsTransport(url, _names())
    rt = chain(transport, rounds)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt:

            async def one(n: int) -> None:
                result = await rt.ask(rt.message(Job(n=n), recipient="hop0"), timeout=60)
                assert result.status == "complete", result

            await _drive(min(requests, 50), concurrency, one)  # warm-up
            return await _drive(requests, concurrency, one, cpu)
    finally:
        await transport.close()


async def _bare_entry(
    url: str, requests: int, concurrency: int, cpu: _CpuMeter | None = None
) -> dict[str, Any]:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    waiting: dict[str, asyncio.Future[None]] = {}

    async def done(msg: Any) -> None:
        fut = waiting.pop(msg.subject.rsplit(".", 1)[1], None)
        if fut is not None:
            fut.set_result(None)

    await nc.subscribe("bench.done.*", cb=done)
    seq = iter(range(10**9))

    async def one(n: int) -> None:
        key = str(next(seq))
        fut = asyncio.get_running_loop().create_future()
        waiting[key] = fut
        await js.publish("bench.bare.0", key.encode())
        await asyncio.wait_for(fut, 60)

    try:
        await _drive(min(requests, 50), concurrency, one)
        return await _drive(requests, concurrency, one, cpu)
    finally:
        await nc.close()


def _case(
    url: str,
    server_pid: int,
    monitor: str | None,
    workers: list[int],
    requests: int,
    concurrency: int,
    rounds: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Genie and the bare queue with each worker count, ``rounds`` of work per delivery."""
    out: dict[str, Any] = {
        "work_sha256_rounds": rounds,
        "handler_ms": work_ms(rounds),
        "genie": {},
        "bare": {},
    }
    for count in workers:
        progress(f"nats: bare work queue, {count} worker process(es), {rounds} rounds")
        procs = _start("bare", url, count, rounds)
        try:
            cpu = _CpuMeter(server_pid, [p.pid for p in procs], monitor)
            out["bare"][str(count)] = asyncio.run(_bare_entry(url, requests, concurrency, cpu))
        finally:
            _stop(procs)
        progress(f"nats: genie, {count} worker process(es), {rounds} rounds")
        procs = _start("worker", url, count, rounds)
        try:
            cpu = _CpuMeter(server_pid, [p.pid for p in procs], monitor)
            out["genie"][str(count)] = anyio.run(
                _genie_entry, url, requests, concurrency, rounds, cpu
            )
        finally:
            _stop(procs)
    for impl in ("genie", "bare"):
        rows = out[impl]
        if "1" in rows and "2" in rows:
            ratio = rows["2"]["deliveries_per_s"] / rows["1"]["deliveries_per_s"]
            out[f"{impl}_2_over_1"] = ratio
    g, b = out["genie"], out["bare"]
    out["genie_over_bare"] = {
        k: g[k]["deliveries_per_s"] / b[k]["deliveries_per_s"] for k in g if k in b
    }
    return out


def measure(
    workers: list[int],
    requests: int,
    concurrency: int,
    progress: Callable[[str], None],
    *,
    handler_bound: bool = True,
) -> dict[str, Any]:
    """Genie on NATS and the bare work queue, with each worker count, with the light handler
    (the rows at the top level) and the handler-bound one (``handler_bound``, unless told
    not to); ratios in one run."""
    from nats.js.api import RetentionPolicy, StreamConfig

    from genie.nats import LocalNatsServer

    with (
        tempfile.TemporaryDirectory(prefix="genie-bench-nats-") as store,
        LocalNatsServer(Path(store), monitor=True) as server,
    ):

        async def bare_stream() -> None:
            import nats

            nc = await nats.connect(server.url)
            config = StreamConfig(
                name=STREAM, subjects=["bench.bare.*"], retention=RetentionPolicy.WORK_QUEUE
            )
            await nc.jetstream().add_stream(config)
            await nc.close()

        asyncio.run(bare_stream())
        assert server.process is not None
        pid = server.process.pid
        args = (server.url, pid, server.monitor_url, workers, requests, concurrency)
        out: dict[str, Any] = {"hops": HOPS, "requests": requests, "concurrency": concurrency}
        out |= _case(*args, LIGHT, progress)
        if handler_bound:
            out["handler_bound"] = _case(*args, HEAVY, progress)
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "worker":
        anyio.run(_genie_worker, argv[1], int(argv[2]))
        return 0
    if len(argv) == 3 and argv[0] == "bare":
        asyncio.run(_bare_worker(argv[1], int(argv[2])))
        return 0
    if len(argv) >= 1 and argv[0] == "measure":  # by hand: measure [N [W,..]] [--light]
        light = "--light" in argv  # the light handler only (A/B runs of the transport's cost)
        args = [a for a in argv[1:] if a != "--light"]
        requests = int(args[0]) if args else 2000
        counts = [int(c) for c in args[1].split(",")] if len(args) > 1 else [1, 2, 3]
        results = measure(counts, requests, 64, print, handler_bound=not light)
        print(json.dumps(results, indent=2))
        return 0
    usage = "usage: python -m genie_bench.scaleout worker|bare URL ROUNDS | measure [N [W,..]]"
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main(sys.argv[1:]))
