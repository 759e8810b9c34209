"""The cross-process workload (``genie bench --workloads nats``; opt-in: it starts its own
``nats-server`` and worker processes).

A chain of ``HOPS`` agents, each doing the same CPU work per delivery, hosted by 1, 2 and 3
worker processes; the bench process is the entry and keeps ``concurrency`` requests in flight.
Beside it, in the same run, the floor: a bare nats-py work queue (JetStream publish, a durable
pull consumer shared by the same number of worker processes, fetch, the same work, ack) moving
the same number of messages.

Two cases: a light handler (``LIGHT`` sha256 rounds, about a tenth of a millisecond: the cost
of the transport dominates) and a handler-bound one (``HEAVY`` rounds, about 3.7 ms: the case
scale-out is for, where more worker processes have the handler's work to share).

Every configuration (genie or bare, 1, 2 or 3 workers) has its workers started once, in a
namespace or a bare stream of its own on one server; then in each of ``ROUNDS`` rounds each
configuration in turn (a rotating order) runs its share of the requests from a fresh entry
while the others' workers are stopped (SIGSTOP), so a change of the machine's speed hits
every configuration alike.

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
# About 3.7 ms (0.3 to 0.6 µs a round here): a handler-bound chain, whose worker spends about
# nine times what the server and the entry spend per delivery (docs/decisions.md, "Issue 21
# (interleaved rounds, handler-bound scaling)").
HEAVY = 12_000
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


# --- the children --------------------------------------------------------------------------------
async def _genie_worker(url: str, rounds: int, namespace: str) -> None:
    from genie.nats import NatsNames, NatsTransport

    transport = NatsTransport(url, NatsNames(namespace), hosted=[f"hop{i}" for i in range(HOPS)])
    rt = chain(transport, rounds)
    transport.attach(rt)
    await transport.connect()
    async with rt:
        print("ready", flush=True)
        await anyio.sleep_forever()


def _bare_stream(prefix: str) -> str:
    return f"BENCH_{prefix.upper()}"


async def _bare_worker(url: str, rounds: int, prefix: str) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    from genie._nats import fetch_ready  # the same fetch as the transport's

    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=prefix, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=CONCURRENCY
    )
    stream = _bare_stream(prefix)
    psub = await js.pull_subscribe(f"{prefix}.job.*", durable=prefix, stream=stream, config=config)
    print("ready", flush=True)
    pending = 0
    while True:
        batch = await fetch_ready(psub, CONCURRENCY, pending)
        pending = batch[-1].metadata.num_pending if batch else 0
        for raw in batch:
            work(rounds)
            hop = int(raw.subject.rsplit(".", 1)[1])
            if hop + 1 < HOPS:
                await js.publish(f"{prefix}.job.{hop + 1}", raw.data)
            else:
                await nc.publish(f"{prefix}.done.{raw.data.decode()}", b"")
            await raw.ack()


# --- the measurement -----------------------------------------------------------------------------
def _start(argv: list[str], count: int) -> list[subprocess.Popen[str]]:
    cmd = [sys.executable, "-m", "genie_bench.scaleout", *argv]
    env = child_env()
    return [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(count)]


def _ready(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"scale-out worker {p.args!r} did not start")


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
    """The CPU seconds each process of a measured round used: the entry (this process), the
    round's workers together, the server, and the other configurations' workers, stopped
    then (``idle``: zero unless a signal went astray); and the server's messages in that
    round (from its monitoring)."""

    def __init__(self, server: int, workers: list[int], idle: list[int], monitor: str) -> None:
        self.pids = {"server": [server], "workers": workers, "idle": idle}
        self.monitor = monitor
        self.start: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def begin(self) -> None:
        self.counts = _server_counts(self.monitor)
        self.start = {k: sum(map(_cpu, v)) for k, v in self.pids.items()}
        self.start["entry"] = time.process_time()

    def used(self) -> dict[str, float]:
        out = {k: sum(map(_cpu, v)) - self.start[k] for k, v in self.pids.items()}
        out["entry"] = time.process_time() - self.start["entry"]
        now = _server_counts(self.monitor)
        for k, v in now.items():
            out[f"msgs {k}"] = v - self.counts.get(k, 0)
        return out


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        os.kill(pid, signum)


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


async def _drive(
    requests: int, concurrency: int, one: Callable[[int], Any], cpu: _CpuMeter | None = None
) -> dict[str, Any]:
    """``requests`` requests, ``concurrency`` in flight: the wall time, each request's latency
    and (with ``cpu``) what each process used meanwhile."""
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
    out: dict[str, Any] = {"wall": time.perf_counter() - started, "latencies": latencies}
    if cpu is not None:
        out["used"] = cpu.used()
    return out


WARM_UP = 50  # requests each round's fresh entry sends before its measured ones


async def _genie_entry(
    url: str, namespace: str, requests: int, concurrency: int, rounds: int, cpu: _CpuMeter
) -> dict[str, Any]:
    from genie.nats import NatsNames, NatsTransport

    transport = NatsTransport(url, NatsNames(namespace))
    rt = chain(transport, rounds)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt:

            async def one(n: int) -> None:
                result = await rt.ask(rt.message(Job(n=n), recipient="hop0"), timeout=60)
                assert result.status == "complete", result

            await _drive(min(requests, WARM_UP), concurrency, one)
            return await _drive(requests, concurrency, one, cpu)
    finally:
        await transport.close()


async def _bare_entry(
    url: str, prefix: str, requests: int, concurrency: int, cpu: _CpuMeter
) -> dict[str, Any]:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    waiting: dict[str, asyncio.Future[None]] = {}

    async def done(msg: Any) -> None:
        fut = waiting.pop(msg.subject.rsplit(".", 1)[1], None)
        if fut is not None:
            fut.set_result(None)

    await nc.subscribe(f"{prefix}.done.*", cb=done)
    seq = iter(range(10**9))

    async def one(n: int) -> None:
        key = str(next(seq))
        fut = asyncio.get_running_loop().create_future()
        waiting[key] = fut
        await js.publish(f"{prefix}.job.0", key.encode())
        await asyncio.wait_for(fut, 60)

    try:
        await _drive(min(requests, WARM_UP), concurrency, one)
        return await _drive(requests, concurrency, one, cpu)
    finally:
        await nc.close()


def _middle(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _row(measured: list[dict[str, Any]], requests: int) -> dict[str, Any]:
    """One configuration over its rounds: the median deliveries/s with the spread and each
    round's, the latencies of every round pooled, and CPU and server messages per delivery
    over all rounds together."""
    rates = [requests * HOPS / m["wall"] for m in measured]
    per_hop = sorted(x / HOPS for m in measured for x in m["latencies"])
    q = statistics.quantiles(per_hop, n=100, method="inclusive")
    deliveries = requests * HOPS * len(measured)
    used = {k: sum(m["used"][k] for m in measured) for k in measured[0]["used"]}
    row: dict[str, Any] = {
        "deliveries_per_s": statistics.median(rates),
        "deliveries_per_s_min": min(rates),
        "deliveries_per_s_max": max(rates),
        "rounds": rates,
        "p50_hop_ms": q[49] * 1e3,
        "p99_hop_ms": q[98] * 1e3,
    }
    for k in ("server", "workers", "entry", "idle"):
        row[f"cpu_us_{k}"] = used[k] / deliveries * 1e6
    row["server_msgs"] = {
        k.removeprefix("msgs "): round(v / deliveries, 3)
        for k, v in used.items()
        if k.startswith("msgs ") and v
    }
    return row


def _ratios(a: list[float], b: list[float]) -> dict[str, float]:
    """The ratio of two configurations round by round (each pair measured back to back)."""
    return _middle([x / y for x, y in zip(a, b, strict=True)])


def _case(
    url: str,
    server_pid: int,
    monitor: str,
    workers: list[int],
    requests: int,
    concurrency: int,
    rounds: int,
    work_rounds: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Genie and the bare queue with each worker count, ``work_rounds`` of work per delivery:
    every configuration's workers started once (a namespace, or a bare stream, of its own),
    then ``rounds`` rounds in which each configuration in turn, in a rotating order, runs
    ``requests`` requests from a fresh entry while the others' workers are stopped."""
    configs = [(impl, count) for count in workers for impl in ("bare", "genie")]
    procs: dict[tuple[str, int], list[subprocess.Popen[str]]] = {}
    progress(f"nats: starting {2 * sum(workers)} worker processes, {work_rounds} sha256 rounds")
    try:
        for impl, count in configs:
            name = f"{impl}{count}"
            kind = "worker" if impl == "genie" else "bare"
            procs[impl, count] = _start([kind, url, str(work_rounds), name], count)
        for group in procs.values():
            _ready(group)
        measured: dict[tuple[str, int], list[dict[str, Any]]] = {c: [] for c in configs}
        for r in range(rounds):
            progress(f"nats: round {r + 1}/{rounds}, {work_rounds} sha256 rounds")
            shift = r % len(configs)
            for impl, count in configs[shift:] + configs[:shift]:
                mine = [p.pid for p in procs[impl, count]]
                idle = [p.pid for c, g in procs.items() if c != (impl, count) for p in g]
                # Only this configuration's workers may run: the others' idle fetches would
                # take a little of the cores, which the CPU-bound configurations need most.
                _signal(idle, signal.SIGSTOP)
                _signal(mine, signal.SIGCONT)
                cpu = _CpuMeter(server_pid, mine, idle, monitor)
                name = f"{impl}{count}"
                if impl == "genie":
                    args = (url, name, requests, concurrency, work_rounds, cpu)
                    measured[impl, count].append(anyio.run(_genie_entry, *args))
                else:
                    coro = _bare_entry(url, name, requests, concurrency, cpu)
                    measured[impl, count].append(asyncio.run(coro))
    finally:
        for group in procs.values():
            _stop(group)  # SIGKILL ends a stopped process too
    out: dict[str, Any] = {
        "work_sha256_rounds": work_rounds,
        "handler_ms": work_ms(work_rounds),
        "requests": requests * rounds,
        "rounds": rounds,
    }
    for impl in ("genie", "bare"):
        out[impl] = {str(c): _row(measured[impl, c], requests) for c in workers}
    for impl in ("genie", "bare"):
        if 1 in workers and 2 in workers:
            spread = _ratios(out[impl]["2"]["rounds"], out[impl]["1"]["rounds"])
            out[f"{impl}_2_over_1"] = spread["median"]
            out[f"{impl}_2_over_1_spread"] = spread
    g, b = out["genie"], out["bare"]
    spreads = {k: _ratios(g[k]["rounds"], b[k]["rounds"]) for k in g}
    out["genie_over_bare"] = {k: v["median"] for k, v in spreads.items()}
    out["genie_over_bare_spread"] = spreads
    return out


ROUNDS = 10  # alternating rounds per case
HEAVY_SHARE = 4  # the handler-bound case runs a quarter of the requests: each costs ~30x


def measure(
    workers: list[int],
    requests: int,
    concurrency: int,
    progress: Callable[[str], None],
    *,
    handler_bound: bool = True,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Genie on NATS and the bare work queue, with each worker count, with the light handler
    (the rows at the top level, ``requests`` requests per configuration) and the
    handler-bound one (``handler_bound``, unless told not to; a quarter of the requests),
    each configuration's requests spread over ``rounds`` alternating rounds; ratios from the
    same rounds. One server for the whole run."""
    from nats.js.api import RetentionPolicy, StreamConfig

    from genie.nats import LocalNatsServer

    with (
        tempfile.TemporaryDirectory(prefix="genie-bench-nats-") as store,
        LocalNatsServer(Path(store), monitor=True) as server,
    ):

        async def bare_streams() -> None:
            import nats

            nc = await nats.connect(server.url)
            for count in workers:
                prefix = f"bare{count}"
                config = StreamConfig(
                    name=_bare_stream(prefix),
                    subjects=[f"{prefix}.job.*"],
                    retention=RetentionPolicy.WORK_QUEUE,
                )
                await nc.jetstream().add_stream(config)
            await nc.close()

        asyncio.run(bare_streams())
        assert server.process is not None
        assert server.monitor_url is not None
        pid = server.process.pid
        args = (server.url, pid, server.monitor_url, workers)
        out: dict[str, Any] = {"hops": HOPS, "concurrency": concurrency}
        each = max(1, requests // rounds)
        out |= _case(*args, each, concurrency, rounds, LIGHT, progress)
        if handler_bound:
            heavy = max(1, requests // HEAVY_SHARE // rounds)
            out["handler_bound"] = _case(*args, heavy, concurrency, rounds, HEAVY, progress)
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "worker":
        anyio.run(_genie_worker, argv[1], int(argv[2]), argv[3])
        return 0
    if len(argv) == 4 and argv[0] == "bare":
        asyncio.run(_bare_worker(argv[1], int(argv[2]), argv[3]))
        return 0
    if len(argv) >= 1 and argv[0] == "measure":  # by hand: measure [N [W,..]] [--light]
        light = "--light" in argv  # the light handler only (A/B runs of the transport's cost)
        args = [a for a in argv[1:] if a != "--light"]
        requests = int(args[0]) if args else 8000
        counts = [int(c) for c in args[1].split(",")] if len(args) > 1 else [1, 2, 3]
        results = measure(counts, requests, CONCURRENCY, print, handler_bound=not light)
        print(json.dumps(results, indent=2))
        return 0
    usage = "usage: python -m genie_bench.scaleout worker|bare URL ROUNDS NAME | measure [N [W,..]]"
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main(sys.argv[1:]))
