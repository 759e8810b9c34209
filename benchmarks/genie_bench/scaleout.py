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
import dataclasses
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

from .measure import percentile
from .process import child_env

HOPS = 2
LIGHT = 200  # sha256 rounds per delivery: the transport's cost dominates
# A handler-bound chain: its worker spends several times what the server and the entry spend
# per delivery, the case scale-out is for (docs/scale-out.md#numbers has the figures).
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

    counts = _count_fetches()
    transport = NatsTransport(url, NatsNames(namespace), hosted=[f"hop{i}" for i in range(HOPS)])
    rt = chain(transport, rounds)
    transport.attach(rt)
    await transport.connect()
    async with rt:
        await transport.ready()  # following its streams: the bench may stop it from now on
        await _answer_counts(url, namespace, lambda: counts)
        print("ready", flush=True)
        await anyio.sleep_forever()


@dataclasses.dataclass
class FetchCounts:
    """What a worker fetched and started: pull requests, the deliveries they brought, the
    deliveries started, the seconds they waited between fetch and start (summed), and the
    largest batch; and the CPU seconds the worker had used when it answered (its own clock:
    /proc counts 10 ms ticks, coarser than the CPU of a small round's workers)."""

    fetches: int = 0
    fetched: int = 0
    started: int = 0
    unstarted_seconds: float = 0.0
    largest_batch: int = 0
    cpu_seconds: float = 0.0

    def fetched_now(self, batch: list[Any]) -> None:
        self.fetches += 1
        self.fetched += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))

    def add(self, other: FetchCounts) -> None:
        for f in ("fetches", "fetched", "started", "unstarted_seconds", "cpu_seconds"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.largest_batch = max(self.largest_batch, other.largest_batch)


def _count_fetches() -> FetchCounts:
    """Count this genie worker's fetches and starts by wrapping the transport's fetch and
    delivery (not its own statistics: the same wrapping counts a tree from before them, so
    an A/B runs this file against both)."""
    import genie.nats._transport as transport_module

    counts = FetchCounts()
    fetched_at: dict[int, float] = {}
    fetch, deliver = transport_module.fetch_ready, transport_module.NatsTransport._deliver

    async def counted_fetch(*args: Any, **kwargs: Any) -> Any:
        batch = await fetch(*args, **kwargs)
        now = time.monotonic()
        counts.fetched_now(batch)
        for raw in batch:
            fetched_at[id(raw)] = now
        return batch

    async def counted_deliver(self: Any, mb: Any, raw: Any) -> None:
        counts.started += 1
        counts.unstarted_seconds += time.monotonic() - fetched_at.pop(id(raw), time.monotonic())
        await deliver(self, mb, raw)

    transport_module.fetch_ready = counted_fetch
    transport_module.NatsTransport._deliver = counted_deliver  # type: ignore[method-assign]
    return counts


def _counts_subject(name: str) -> str:
    return f"bench.counts.{name}"


async def _answer_counts(url: str, name: str, counts: Callable[[], FetchCounts]) -> None:
    """Answer the bench's requests for this worker's fetch counts (on a connection of its
    own: the worker's is the one measured)."""
    import nats

    nc = await nats.connect(url)

    async def answer(msg: Any) -> None:
        now = dataclasses.replace(counts(), cpu_seconds=time.process_time())
        await msg.respond(json.dumps(dataclasses.asdict(now)).encode())

    await nc.subscribe(_counts_subject(name), cb=answer)


async def _gather_counts(url: str, name: str, workers: int) -> FetchCounts:
    """The fetch counts of a configuration's ``workers`` workers together."""
    import nats

    nc = await nats.connect(url)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, max_msgs=workers)
        await nc.publish(_counts_subject(name), b"", reply=inbox)
        total = FetchCounts()
        for _ in range(workers):
            msg = await sub.next_msg(timeout=5)
            total.add(FetchCounts(**json.loads(msg.data)))
        return total
    finally:
        await nc.close()


def _bare_stream(prefix: str) -> str:
    return f"BENCH_{prefix.upper()}"


async def _bare_worker(url: str, rounds: int, prefix: str) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    from genie.nats._transport import fetch_ready  # the same fetch as the transport's

    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=prefix, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=CONCURRENCY
    )
    stream = _bare_stream(prefix)
    psub = await js.pull_subscribe(f"{prefix}.job.*", durable=prefix, stream=stream, config=config)
    counts = FetchCounts()
    await _answer_counts(url, prefix, lambda: counts)
    print("ready", flush=True)
    pending = 0
    while True:
        batch = await fetch_ready(psub, CONCURRENCY, pending)
        fetched_at = time.monotonic()
        counts.fetched_now(batch)
        pending = batch[-1].metadata.num_pending if batch else 0
        for raw in batch:
            counts.started += 1
            counts.unstarted_seconds += time.monotonic() - fetched_at
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
    round's workers together (as they say it), the server, and the other configurations'
    workers, stopped then (``idle``: zero unless a signal went astray); and the server's
    messages in that round (from its monitoring)."""

    def __init__(
        self, server: int, workers: list[int], idle: list[int], monitor: str, url: str, name: str
    ) -> None:
        self.pids = {"server": [server], "idle": idle}
        self.workers = len(workers)
        self.monitor = monitor
        self.url, self.name = url, name
        self.start: dict[str, float] = {}
        self.counts: dict[str, float] = {}
        self.fetch = FetchCounts()

    async def begin(self) -> None:
        self.fetch = await _gather_counts(self.url, self.name, self.workers)
        self.counts = _server_counts(self.monitor)
        self.start = {k: sum(map(_cpu, v)) for k, v in self.pids.items()}
        self.start["entry"] = time.process_time()

    async def used(self) -> dict[str, float]:
        out = {k: sum(map(_cpu, v)) - self.start[k] for k, v in self.pids.items()}
        out["entry"] = time.process_time() - self.start["entry"]
        now = _server_counts(self.monitor)
        for k, v in now.items():
            out[f"msgs {k}"] = v - self.counts.get(k, 0)
        fetch = await _gather_counts(self.url, self.name, self.workers)
        out["workers"] = fetch.cpu_seconds - self.fetch.cpu_seconds
        for k in ("fetches", "fetched", "started", "unstarted_seconds"):
            out[f"fetch {k}"] = getattr(fetch, k) - getattr(self.fetch, k)
        out["fetch largest_batch"] = fetch.largest_batch
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
        await cpu.begin()
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(lane)
    out: dict[str, Any] = {"wall": time.perf_counter() - started, "latencies": latencies}
    if cpu is not None:
        out["used"] = await cpu.used()
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
    deliveries = requests * HOPS * len(measured)
    used = {k: sum(m["used"][k] for m in measured) for k in measured[0]["used"]}
    row: dict[str, Any] = {
        "deliveries_per_s": statistics.median(rates),
        "deliveries_per_s_min": min(rates),
        "deliveries_per_s_max": max(rates),
        "rounds": rates,
        # Nearest-rank, as every other latency of the harness: a latency that was measured.
        "p50_hop_ms": percentile(per_hop, 50) * 1e3,
        "p99_hop_ms": percentile(per_hop, 99) * 1e3,
    }
    for k in ("server", "workers", "entry", "idle"):
        row[f"cpu_us_{k}"] = used[k] / deliveries * 1e6
    # The fetch sizing's counts: pull requests per delivery, the mean time a delivery waited
    # in a worker between its fetch and its start (out of the other workers' reach), and the
    # largest batch a worker fetched since it started.
    started = sum(m["used"]["fetch started"] for m in measured) or 1
    row["fetches_per_delivery"] = sum(m["used"]["fetch fetches"] for m in measured) / started
    unstarted_s = sum(m["used"]["fetch unstarted_seconds"] for m in measured)
    row["unstarted_ms_per_delivery"] = unstarted_s / started * 1e3
    row["largest_batch"] = max(m["used"]["fetch largest_batch"] for m in measured)
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
            # One configuration at a time: a dozen workers creating their consumers at once
            # on a loaded machine timed out their JetStream requests at start-up.
            _ready(procs[impl, count])
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
                name = f"{impl}{count}"
                cpu = _CpuMeter(server_pid, mine, idle, monitor, url, name)
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
    light: bool = True,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Genie on NATS and the bare work queue, with each worker count, with the light handler
    (the rows at the top level, ``requests`` requests per configuration; unless ``light`` is
    false) and the handler-bound one (``handler_bound``, unless told not to; a quarter of the
    requests), each configuration's requests spread over ``rounds`` alternating rounds;
    ratios from the same rounds. One server for the whole run."""
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
        if light:
            each = max(1, requests // rounds)
            out |= _case(*args, each, concurrency, rounds, LIGHT, progress)
        if handler_bound:
            heavy = max(1, requests // HEAVY_SHARE // rounds)
            out["handler_bound"] = _case(*args, heavy, concurrency, rounds, HEAVY, progress)
    return out


USAGE = """\
usage: python -m genie_bench.scaleout measure [N [W,...]] [--light | --heavy]
       python -m genie_bench.scaleout worker|bare URL ROUNDS NAME   (the bench's children)

measure: N requests per configuration (default 8000; the handler-bound case runs a quarter),
W,... the worker counts (default 1,2,3); --light the light handler only, --heavy the
handler-bound one only. Prints progress, then the results as JSON."""


def _measure_args(args: list[str]) -> tuple[int, list[int], bool, bool] | None:
    """``measure``'s arguments: requests, worker counts, light, handler-bound; None if they
    are not of its form."""
    flags = [a for a in args if a.startswith("-")]
    rest = [a for a in args if not a.startswith("-")]
    if len(flags) > 1 or not set(flags) <= {"--light", "--heavy"} or len(rest) > 2:
        return None
    numbers = rest[:1] + (rest[1].split(",") if len(rest) > 1 else [])
    if not all(n.isdigit() and int(n) > 0 for n in numbers):
        return None
    requests = int(rest[0]) if rest else 8000
    counts = [int(c) for c in rest[1].split(",")] if len(rest) > 1 else [1, 2, 3]
    return requests, counts, "--heavy" not in flags, "--light" not in flags


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] in ("worker", "bare") and argv[2].isdigit():
        if argv[0] == "worker":
            anyio.run(_genie_worker, argv[1], int(argv[2]), argv[3])
        else:
            asyncio.run(_bare_worker(argv[1], int(argv[2]), argv[3]))
        return 0
    parsed = _measure_args(argv[1:]) if argv[:1] == ["measure"] else None
    if parsed is None:
        print(USAGE, file=sys.stderr)
        return 0 if argv in (["--help"], ["-h"]) else 2
    requests, counts, light, heavy = parsed
    results = measure(counts, requests, CONCURRENCY, print, handler_bound=heavy, light=light)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main(sys.argv[1:]))
