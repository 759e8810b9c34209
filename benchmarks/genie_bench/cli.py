"""``genie bench`` (also ``python -m genie_bench``): run the harness and write its results."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from genie import ConfigurationError
from genie._base.progress import ProgressLine
from genie._base.shipped import shipped_file
from genie._cli.options import Parser, number, path_option

from . import measure, process, report
from .variants import (
    PEERS,
    VARIANTS,
    UnknownVariantError,
    available,
    compiled_tree,
    compiled_twins,
    load_policies,
    loop_twins,
)
from .workloads import WorkloadError

T = TypeVar("T")

# The shipped files, wherever genie is installed: `genie bench` runs in any folder.
POLICIES = shipped_file("policies/ai-policy.yaml")
PIPELINE = shipped_file("pipelines/finance.yaml")

# Idle agents cost the same with policies, metrics or an envelope: one variant stands for each.
MEMORY_VARIANTS = ("asyncio", "pool", "anyio", "genie", "autogen-core")

DEFAULT_OUT = Path("benchmarks/results")
DEFAULT_WORKLOADS = ("fanout", "chain", "memory", "startup")
# The soak takes minutes (100,000 simulated sessions), serve needs the serve extra and a server
# process, and nats starts a nats-server and worker processes (docs/scale-out.md): they run only
# when named.
WORKLOADS = (*DEFAULT_WORKLOADS, "soak", "serve", "nats", "cpu")
QUICK: dict[str, object] = {
    "n": [1, 10],
    "requests": 20,
    "rounds": 2,
    "budget": 10.0,
    "concurrency": 4,
    "chain": 50,
    "chain_rounds": 3,
    "idle": 2000,  # fewer: the pool floor's agents may fit in pages already touched (0 bytes)
    "startup_repeats": 1,
    "nats_requests": 400,
    "cpu_rounds": 20_000,
}


def _items(text: str) -> list[str]:
    """The comma-separated items of ``text``; an empty one (``1,,2``, ``""``) is a mistake."""
    items = [v.strip() for v in text.split(",")]
    if not text.strip():
        raise argparse.ArgumentTypeError("empty list")
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item")
    return _once(text, items)


def _once(text: str, values: list[T]) -> list[T]:
    """``values``, each given once: a fan-out width given twice was measured twice and the
    first measurement dropped from the results unsaid."""
    for i, value in enumerate(values):
        if value in values[:i]:
            raise argparse.ArgumentTypeError(f"{text!r} gives {value} twice")
    return values


# Each worker builds the payload's text once and every message of a run carries it: past this
# the run measures the machine's memory rather than the bus, and a length past what a string can
# hold failed with a traceback after the workers had started.
MAX_PAYLOAD_BYTES = 64 << 20
_payload_bytes = number(
    int, f"a number of bytes from 0 to {MAX_PAYLOAD_BYTES:,}", 0, MAX_PAYLOAD_BYTES
)


# The upper bounds: a run past them does not measure the bus on one machine, it exhausts the
# machine (every agent, process and sample is held at once) and was started all the same.
# Agents at once, of a fan-out, the chain or the idle set: a million already asks for gigabytes.
MAX_AGENTS = 1_000_000
# Requests, sessions and loop rounds: past these a run takes days rather than hours.
MAX_REQUESTS = 10_000_000
MAX_ROUNDS = 100_000
MAX_CPU_ROUNDS = 1_000_000_000
MAX_BUDGET_SECONDS = 86_400
# A pool of processes and one of threads this size are started at once: beyond one machine's
# CPUs, it measures the scheduler's queue and a process each is memory nobody has.
MAX_CORES = 4096


def _count(high: int) -> Callable[[str], int]:
    return number(int, f"a whole number from 1 to {high:,}", 1, high)


def _counts(high: int) -> Callable[[str], list[int]]:
    one = _count(high)

    def parse(text: str) -> list[int]:
        return _once(text, [one(v) for v in _items(text)])

    return parse


def _names(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = _items(text)
        for name in names:
            if name not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {name!r} (known: {', '.join(known)})"
                )
        return names

    return parse


def build_parser(prog: str = "genie bench") -> argparse.ArgumentParser:
    # A mistake is one line naming the option, as with every genie command, not the usage.
    p = Parser(
        prog=prog,
        description="Measure Genie against two floors, the raw asyncio floor (a queue and a task "
        "per agent; also carrying a bus's envelope) and the pool floor (genie's design with "
        "nothing else), raw anyio and the peers a user would pick instead (autogen-core, the "
        "Microsoft Agent Framework, LangGraph: when installed) in one run, each in a process of "
        "its own: fan-out/fan-in latency and throughput, per-hop cost, with CPU and GC time; "
        "memory per idle agent and start-up. Writes results.json, results.md and latency.png.",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: small N, few requests")
    # Each size has a bound (the MAX_ constants above) the help states with its reason.
    agents = f"at most {MAX_AGENTS:,}: a million agents at once already asks for gigabytes"
    many = f"at most {MAX_REQUESTS:,}: past that a run takes days"
    rounds = f"at most {MAX_ROUNDS:,}: past that a run takes days"
    p.add_argument(
        "--n", type=_counts(MAX_AGENTS), help=f"fan-out widths (default 1,10,50,100,1000; {agents})"
    )
    p.add_argument(
        "--requests",
        type=_count(MAX_REQUESTS),
        help="sequential requests per implementation and N (default 1000: p99 is then the "
        f"990th slowest of 1000, p999 the 999th; {many})",
    )
    p.add_argument(
        "--budget",
        type=_count(MAX_BUDGET_SECONDS),
        help="seconds of sequential requests per implementation and N (default 60): one "
        "slower than that takes fewer samples, as the table's count shows; at most "
        f"{MAX_BUDGET_SECONDS:,}, a day",
    )
    p.add_argument(
        "--rounds", type=_count(MAX_ROUNDS), help=f"interleaved rounds (default 50; {rounds})"
    )
    p.add_argument(
        "--concurrency",
        type=_count(MAX_AGENTS),
        help=f"requests in flight (default 64; at most {MAX_AGENTS:,}, as many as agents)",
    )
    p.add_argument(
        "--chain",
        type=_count(MAX_AGENTS),
        help=f"agents in the per-hop chain (default 1000; {agents})",
    )
    p.add_argument(
        "--chain-rounds",
        type=_count(MAX_ROUNDS),
        help=f"rounds through the chain (default 30; {rounds})",
    )
    p.add_argument(
        "--idle", type=_count(MAX_AGENTS), help=f"idle agents for memory (default 10000; {agents})"
    )
    p.add_argument(
        "--startup-repeats",
        type=_count(MAX_ROUNDS),
        help=f"fresh processes each (default 10; {rounds})",
    )
    p.add_argument(
        "--soak-sessions",
        type=_count(MAX_REQUESTS),
        help=f"simulated sessions of the soak (default 100000; {many})",
    )
    p.add_argument(
        "--nats-requests",
        type=_count(MAX_REQUESTS),
        help="requests of each nats configuration over its rounds (default 8000; the "
        f"handler-bound case a quarter; {many})",
    )
    p.add_argument(
        "--cores",
        type=_count(MAX_CORES),
        help="processes and threads of the cpu workload's pools (default: this machine's CPUs; "
        f"at most {MAX_CORES:,}, more CPUs than one machine has: past them the pools measure "
        "the scheduler, and a process each is memory nobody has)",
    )
    p.add_argument(
        "--cpu-rounds",
        type=_count(MAX_CPU_ROUNDS),
        help="pure-Python loop rounds each agent of the cpu workload burns (default 1000000; "
        f"at most {MAX_CPU_ROUNDS:,}: minutes of CPU for each agent)",
    )
    p.add_argument(
        "--payload-bytes",
        type=_payload_bytes,
        default=0,
        help=f"text carried by each message (0 to {MAX_PAYLOAD_BYTES:,} bytes)",
    )
    p.add_argument(
        "--variants",
        type=_names(VARIANTS, "variant"),
        default=list(VARIANTS),
        help=f"implementations to compare (default all: {','.join(VARIANTS)}); "
        "both floors, asyncio and pool, always run",
    )
    p.add_argument(
        "--workloads",
        type=_names(WORKLOADS, "workload"),
        default=list(DEFAULT_WORKLOADS),
        help=f"what to measure (default: {','.join(DEFAULT_WORKLOADS)}); soak (memory over "
        "--soak-sessions simulated sessions, minutes), serve (genie serve under 1, 16 and "
        "64 clients, --serve-requests each) and nats (across 1, 2 and 3 worker processes on a "
        "local nats-server, beside a bare nats-py work queue) and cpu (CPU-bound and blocking "
        "handlers in-loop, in threads and in processes, beside concurrent.futures, on "
        "--cores) only when named",
    )
    p.add_argument(
        "--serve-requests",
        type=_count(MAX_REQUESTS),
        help=f"asks per concurrency level of serve (500; {many})",
    )
    p.add_argument(
        "--policies",
        type=path_option,
        default=str(POLICIES),
        help="the default policy set for the +policies variants (the shipped board file)",
    )
    p.add_argument(
        "--pipeline",
        type=path_option,
        default=str(PIPELINE),
        help="the pipeline `genie run` times as a fresh process (the shipped finance)",
    )
    p.add_argument(
        "--compiled",
        type=path_option,
        metavar="DIR",
        help="also run each genie variant from the mypyc-compiled tree DIR (`make compiled` "
        "writes build/mypyc), named VARIANT+mypyc, in the same interleaved rounds",
    )
    p.add_argument(
        "--loop",
        type=_names(report.LOOPS, "event loop"),
        default=["asyncio"],
        help="event loops to run the floors and genie on (default asyncio); asyncio,uvloop "
        "also runs each on uvloop (the uvloop extra), named NAME@uvloop, in the same "
        "interleaved rounds, each judged against the floors on its own loop",
    )
    p.add_argument(
        "--out",
        type=path_option,
        help="directory for the results (default benchmarks/results; with --quick a new "
        "temporary directory, so a smoke run never replaces the committed results)",
    )
    return p


@dataclass
class Settings:
    n: list[int] = field(default_factory=lambda: [1, 10, 50, 100, 1000])
    requests: int = 1000
    budget: float = 60.0
    rounds: int = 50
    concurrency: int = 64
    chain: int = 1000
    chain_rounds: int = 30
    idle: int = 10_000
    startup_repeats: int = 10
    payload_bytes: int = 0
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    workloads: list[str] = field(default_factory=lambda: list(DEFAULT_WORKLOADS))
    soak_sessions: int = 100_000
    serve_requests: int = 500
    nats_requests: int = 8000
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    cpu_rounds: int = 1_000_000
    quick: bool = False
    policies: str = str(POLICIES)
    pipeline: str = str(PIPELINE)
    compiled: str | None = None
    loop: list[str] = field(default_factory=lambda: ["asyncio"])

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        settings = cls(**QUICK) if args.quick else cls()  # type: ignore[arg-type]
        for f in fields(cls):
            value = getattr(args, f.name, None)
            if value is not None:
                setattr(settings, f.name, value)
        return settings


def _environment() -> dict[str, object]:
    packages = {}
    for name in (
        "anyio",
        "pydantic",
        "autogen-core",
        "agent-framework-core",
        "langgraph",
        "matplotlib",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "genie": importlib.metadata.version("genie-bus"),
        "commit": commit or "unknown",
        "packages": packages,
        # Set here (PYTHONDONTWRITEBYTECODE), fresh processes would compile what has no .pyc;
        # the start-up figures are taken from bytecode all the same (process.py).
        "dont_write_bytecode": bool(sys.flags.dont_write_bytecode),
    }


def _x_floors(values: dict[str, float], key: str) -> dict[str, dict[str, float]]:
    """Each of ``values`` under ``key``, with its ratio to each floor that ``values`` has."""
    floors = {f: values[f] for f in report.FLOORS if f in values}
    return {
        name: {key: v, **{report.RATIO[f]: v / floor for f, floor in floors.items()}}
        for name, v in values.items()
    }


def _fanout(
    kids: dict[str, measure.Child], s: Settings, blob: str, progress: ProgressLine
) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in kids}
    for n in s.n:
        got = measure.fanout(
            kids,
            n,
            blob=blob,
            requests=s.requests,
            rounds=s.rounds,
            concurrency=s.concurrency,
            budget_s=s.budget,
            progress=progress,
        )
        floors = {
            name: (measure.latency_summary(samples), measure.median(got.throughput[name]))
            for name, samples in got.latencies.items()
            if name.removesuffix(report.UVLOOP) in report.FLOORS
        }
        for name, samples in got.latencies.items():
            row = measure.latency_summary(samples)
            rate = measure.median(got.throughput[name])
            latency_cost = got.latency_cost[name].per_unit_us()
            throughput_cost = got.throughput_cost[name].per_unit_us()
            ratios = {}
            for f, beside in report.floors_beside(name).items():
                if beside not in floors:
                    continue
                floor, floor_rate = floors[beside]
                x = report.RATIO[f]
                ratios[f"p50_{x}"] = row["p50_us"] / floor["p50_us"]
                ratios[f"p99_{x}"] = row["p99_us"] / floor["p99_us"]
                ratios[f"throughput_{x}"] = rate / floor_rate
            out[name][str(n)] = {
                **row,
                **ratios,
                # per sequential request: CPU time and time in the garbage collector
                "cpu_us": latency_cost["cpu_us"],
                "gc_us": latency_cost["gc_us"],
                "gc_collections": latency_cost["gc_collections"],
                "requests_per_s": rate,
                "deliveries_per_s": rate * n,
                "throughput_requests": got.throughput_cost[name].units,
                "throughput_batches": len(got.throughput[name]),
                # per delivery with C in flight
                "throughput_cpu_us_per_delivery": throughput_cost["cpu_us"] / n,
                "throughput_gc_us_per_delivery": throughput_cost["gc_us"] / n,
                "rounds": got.rounds[name],
            }
    return out


def _chain(
    kids: dict[str, measure.Child], s: Settings, blob: str, progress: ProgressLine
) -> dict[str, dict[str, float]]:
    got = measure.chain(kids, s.chain, blob=blob, rounds=s.chain_rounds, progress=progress)
    floors = {
        name: measure.median(hops)
        for name, hops in got.per_hop.items()
        if name.removesuffix(report.UVLOOP) in report.FLOORS
    }
    out = {}
    for name, hops in got.per_hop.items():
        cost = got.cost[name].per_unit_us()
        beside = report.floors_beside(name)
        out[name] = {
            "median_us": measure.median(hops) * 1e6,
            "best_us": min(hops) * 1e6,
            **{
                report.RATIO[f]: measure.median(hops) / floors[b]
                for f, b in beside.items()
                if b in floors
            },
            "cpu_us": cost["cpu_us"],
            "gc_us": cost["gc_us"],
            "samples": len(hops),
        }
    return out


def _memory(names: list[str], s: Settings, progress: ProgressLine) -> dict[str, Any]:
    # Policies and metrics change nothing in an idle agent: the plain variants stand for them.
    per_agent = {}
    for name in names:
        if name in MEMORY_VARIANTS:
            progress(f"memory: {s.idle:,} idle agents, {name}, fresh process")
            per_agent[name] = process.idle_memory(name, s.idle)
    return _x_floors(per_agent, "bytes_per_agent") if report.FLOOR in per_agent else {}


def _startup(s: Settings, names: list[str], progress: ProgressLine) -> dict[str, Any]:
    r = s.startup_repeats
    with tempfile.TemporaryDirectory(prefix="genie-bench-pycache-") as tmp:
        pycache = Path(tmp)
        progress("start-up: interpreter")
        interpreter = process.wall_seconds([sys.executable, "-c", "pass"], r, pycache)
        out: dict[str, Any] = {
            "bytecode": "read from a pycache prefix filled by one untimed run of each command",
            "interpreter": process.summary(interpreter),
            "import": {},
        }
        modules = ["asyncio", "genie", *(PEERS[name][1] for name in names if name in PEERS)]
        for module in dict.fromkeys(modules):
            progress(f"start-up: import {module}")
            samples, from_source = process.import_seconds(module, r, pycache)
            out["import"][module] = {
                **process.summary(samples),
                "modules_without_bytecode": from_source,
            }
        # The reference under `import genie`, timed as it is: its verdict's margin can be no
        # larger than the gap between the two.
        progress("start-up: pydantic and one model (the floor under import genie)")
        samples, from_source = process.code_seconds(process.PYDANTIC_FLOOR, r, pycache)
        out["pydantic_floor"] = {
            **process.summary(samples),
            "modules_without_bytecode": from_source,
        }
        if Path(s.pipeline).is_file():
            progress(f"start-up: genie run {s.pipeline}")
            argv = [*process.genie_command(), "run", s.pipeline]
            out["finance_run"] = process.summary(process.wall_seconds(argv, r, pycache))
    return out


def _imports(module: str) -> bool:
    """Whether ``module`` imports here, as the workers will import it (found is not enough:
    a build for another interpreter is found and fails to import)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def run(s: Settings, progress: ProgressLine | None = None) -> report.Results:
    """Measure what ``s`` asks for; the results as ``results.json`` holds them (no files)."""
    progress = progress or ProgressLine(sys.stderr)
    pipeline = s.pipeline
    speed = "fanout" in s.workloads or "chain" in s.workloads
    if speed and any("policies" in v for v in s.variants):
        load_policies(s.policies)  # a missing or broken file is refused before anything runs
    compiled = compiled_tree(s.compiled) if s.compiled is not None else None
    names, skipped = available(s.variants)
    if compiled is not None:
        names += compiled_twins(names)
    on_uvloop = "uvloop" in s.loop and _imports("uvloop")
    if "uvloop" in s.loop and not on_uvloop:
        skipped["uvloop"] = (
            "uvloop cannot be imported (pip install 'genie-bus[uvloop]'): the @uvloop twins "
            "are skipped"
        )
    for why in skipped.values():
        print(f"genie bench: {why}", file=sys.stderr)
    if "startup" in s.workloads and not Path(pipeline).is_file():
        skipped["finance_run"] = f"pipeline {pipeline} not found: the whole-run time is skipped"
        print(f"genie bench: {skipped['finance_run']}", file=sys.stderr)
    results: report.Results = {
        "command": f"genie_bench.run({s!r})",  # main() puts the command line here
        "environment": _environment(),
        "settings": asdict(s),
        "skipped": skipped,
    }
    blob = "x" * s.payload_bytes
    if speed:
        speed_names = names + (loop_twins(names) if on_uvloop else [])
        with measure.children(speed_names, str(Path(s.policies).resolve()), compiled) as kids:
            if "fanout" in s.workloads:
                results["fanout"] = _fanout(kids, s, blob, progress)
            if "chain" in s.workloads:
                results["chain"] = _chain(kids, s, blob, progress)
    if "memory" in s.workloads:
        results["memory"] = _memory(names, s, progress)
    if "startup" in s.workloads:
        results["startup"] = _startup(s, names, progress)
    if "soak" in s.workloads:
        progress(f"soak: {s.soak_sessions:,} simulated sessions, fresh process")
        results["soak"] = process.soak(s.soak_sessions)
    if "serve" in s.workloads:
        from .serve_load import CONCURRENCY, serve_load

        progress(f"serve: {s.serve_requests} asks at each of {CONCURRENCY} clients, loopback")
        results["serve"] = serve_load(s.serve_requests)
    if "nats" in s.workloads:
        from . import scaleout  # needs the nats extra; only when asked for

        results["nats"] = scaleout.measure([1, 2, 3], s.nats_requests, s.concurrency, progress)
    if "cpu" in s.workloads:
        from . import cpu

        results["cpu"] = cpu.measure(s.cores, rounds=s.cpu_rounds, progress=progress)
    return results


def write(results: report.Results, out: Path) -> list[Path]:
    """results.json, results.md and latency.png under ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "fanout" in results:
        png = out / "latency.png"
        why = report.plot(results, png)
        if why is None:
            results["plot"] = png.name
            written.append(png)
        else:
            results["skipped"]["plot"] = why
            print(f"genie bench: {why}", file=sys.stderr)
    results["targets"] = report.targets(results)
    if results["settings"].get("compiled"):
        results["compiled_targets"] = report.compiled_targets(results)
    if any(name.endswith(report.UVLOOP) for name in results.get("fanout", {})):
        results["loop_targets"] = report.loop_targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(report.markdown(results), encoding="utf-8")
    return [out / "results.json", out / "results.md", *written]


def main(argv: Sequence[str] | None = None, prog: str = "genie bench") -> int:
    """Measure fan-out latency, throughput, per-hop cost, memory and start-up against raw
    asyncio, raw anyio and the peers (see genie bench --help)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        parser.error(f"--out: {out} is not a directory")
    if out is not None:  # made now: a folder that cannot be would lose the whole run's results
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--out: cannot make {out}: {exc.strerror}")
    progress = ProgressLine(sys.stderr)
    try:
        results = run(settings, progress)
    except (ConfigurationError, UnknownVariantError, WorkloadError) as exc:
        progress.done()
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    progress.done()
    results["command"] = " ".join(
        [prog, *map(shlex.quote, argv if argv is not None else sys.argv[1:])]
    )
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="genie-bench-")) if args.quick else DEFAULT_OUT
    for path in write(results, out):
        print(f"wrote {path}")
    print()
    print(report.markdown(results))
    return 0
