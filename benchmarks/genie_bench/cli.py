"""``genie bench`` (also ``python -m genie_bench``): run the harness and write its results."""

from __future__ import annotations

import argparse
import asyncio
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
from typing import Any

from genie import ConfigurationError, Policy
from genie._progress import ProgressLine

from . import measure, process, report
from .variants import VARIANTS, UnknownVariantError, build
from .workloads import Implementation

DEFAULT_OUT = Path("benchmarks/results")
DEFAULT_WORKLOADS = ("fanout", "chain", "memory", "startup")
# The soak takes minutes (100,000 simulated sessions): it runs only when named.
WORKLOADS = (*DEFAULT_WORKLOADS, "soak")
QUICK: dict[str, object] = {
    "n": [1, 10],
    "requests": 20,
    "rounds": 2,
    "concurrency": 4,
    "chain": 50,
    "chain_rounds": 3,
    "idle": 500,
    "startup_repeats": 1,
}


def _positive_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    for v in values:
        if v < 1:
            raise argparse.ArgumentTypeError(f"{v} is not a positive integer")
    return values


def _positive(text: str) -> int:
    values = _positive_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not one positive integer")
    return values[0]


def _names(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        for name in names:
            if name not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {name!r} (known: {', '.join(known)})"
                )
        return names

    return parse


def build_parser(prog: str = "genie bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Measure Genie against the raw asyncio floor, raw anyio and autogen-core "
        "(when installed) in one run: fan-out/fan-in latency and throughput, per-hop cost, "
        "memory per idle agent and start-up. Writes results.json, results.md and latency.png.",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: small N, few requests")
    p.add_argument("--n", type=_positive_list, help="fan-out widths (default 1,10,50,100,1000)")
    p.add_argument("--requests", type=_positive, help="sequential requests per N (default 1000)")
    p.add_argument("--rounds", type=_positive, help="interleaved rounds (default 5)")
    p.add_argument("--concurrency", type=_positive, help="requests in flight (default 64)")
    p.add_argument("--chain", type=_positive, help="agents in the per-hop chain (default 1000)")
    p.add_argument("--chain-rounds", type=_positive, help="rounds through the chain (default 30)")
    p.add_argument("--idle", type=_positive, help="idle agents for memory (default 10000)")
    p.add_argument("--startup-repeats", type=_positive, help="fresh processes each (default 10)")
    p.add_argument(
        "--soak-sessions", type=_positive, help="simulated sessions of the soak (default 100000)"
    )
    p.add_argument("--payload-bytes", type=int, default=0, help="text carried by each message")
    p.add_argument(
        "--variants",
        type=_names(VARIANTS, "variant"),
        default=list(VARIANTS),
        help=f"implementations to compare (default all: {','.join(VARIANTS)}); "
        "the asyncio floor always runs",
    )
    p.add_argument(
        "--workloads",
        type=_names(WORKLOADS, "workload"),
        default=list(DEFAULT_WORKLOADS),
        help=f"what to measure (default: {','.join(DEFAULT_WORKLOADS)}); soak (memory over "
        "--soak-sessions simulated sessions, minutes) only when named",
    )
    p.add_argument(
        "--policies",
        default="config/policies/ai-policy.yaml",
        help="the default policy set for the +policies variants",
    )
    p.add_argument(
        "--pipeline",
        default="config/pipelines/finance.yaml",
        help="the pipeline `genie run` times as a fresh process",
    )
    p.add_argument(
        "--out",
        help="directory for the results (default benchmarks/results; with --quick a new "
        "temporary directory, so a smoke run never replaces the committed results)",
    )
    return p


@dataclass
class Settings:
    n: list[int] = field(default_factory=lambda: [1, 10, 50, 100, 1000])
    requests: int = 1000
    rounds: int = 5
    concurrency: int = 64
    chain: int = 1000
    chain_rounds: int = 30
    idle: int = 10_000
    startup_repeats: int = 10
    payload_bytes: int = 0
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    workloads: list[str] = field(default_factory=lambda: list(DEFAULT_WORKLOADS))
    soak_sessions: int = 100_000
    quick: bool = False
    policies: str = "config/policies/ai-policy.yaml"
    pipeline: str = "config/pipelines/finance.yaml"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        settings = cls(**QUICK) if args.quick else cls()  # type: ignore[arg-type]
        for f in fields(cls):
            value = getattr(args, f.name, None)
            if value is not None:
                setattr(settings, f.name, value)
        return settings


def requests_at(n: int, requests: int) -> int:
    """Fewer sequential requests at large N (at least 100), so a full run stays within minutes."""
    return min(requests, max(100, requests * 100 // max(n, 100)))


def _policies(path: str) -> list[Policy]:
    from genie.policies import load_policy_file

    if not Path(path).is_file():
        raise ConfigurationError(
            f"policy file {path} not found (run from the repository root, or pass --policies)"
        )
    return list(load_policy_file(path).policies)


def _environment() -> dict[str, object]:
    packages = {}
    for name in ("anyio", "pydantic", "autogen-core", "matplotlib"):
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
        "genie": importlib.metadata.version("genie-bus"),
        "commit": commit or "unknown",
        "packages": packages,
    }


def _x_floor(values: dict[str, float], key: str) -> dict[str, dict[str, float]]:
    floor = values[report.FLOOR]
    return {name: {key: v, "x_floor": v / floor} for name, v in values.items()}


async def _fanout(
    impls: list[Implementation], s: Settings, blob: str, progress: ProgressLine
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {i.name: {} for i in impls}
    for n in s.n:
        got = await measure.fanout(
            impls,
            n,
            blob=blob,
            requests=requests_at(n, s.requests),
            rounds=s.rounds,
            concurrency=s.concurrency,
            progress=progress,
        )
        floor = measure.latency_summary(got.latencies[report.FLOOR])
        floor_rate = measure.median(got.throughput[report.FLOOR])
        for name, samples in got.latencies.items():
            row = measure.latency_summary(samples)
            rate = measure.median(got.throughput[name])
            out[name][str(n)] = {
                **row,
                "p50_x_floor": row["p50_us"] / floor["p50_us"],
                "p99_x_floor": row["p99_us"] / floor["p99_us"],
                "requests_per_s": rate,
                "deliveries_per_s": rate * n,
                "throughput_x_floor": rate / floor_rate,
            }
    return out


async def _chain(
    impls: list[Implementation], s: Settings, blob: str, progress: ProgressLine
) -> dict[str, dict[str, float]]:
    hops = await measure.chain(impls, s.chain, blob=blob, rounds=s.chain_rounds, progress=progress)
    floor = measure.median(hops[report.FLOOR])
    return {
        name: {
            "median_us": measure.median(h) * 1e6,
            "best_us": min(h) * 1e6,
            "x_floor": measure.median(h) / floor,
        }
        for name, h in hops.items()
    }


def _memory(impls: list[Implementation], s: Settings, progress: ProgressLine) -> dict[str, Any]:
    # Policies and metrics change nothing in an idle agent: the plain variants stand for them.
    per_agent = {}
    for impl in impls:
        if impl.idle is not None and impl.name in ("asyncio", "anyio", "genie", "autogen-core"):
            progress(f"memory: {s.idle:,} idle agents, {impl.name}, fresh process")
            per_agent[impl.name] = process.idle_memory(impl.name, s.idle)
    return _x_floor(per_agent, "bytes_per_agent") if report.FLOOR in per_agent else {}


def _startup(s: Settings, progress: ProgressLine) -> dict[str, Any]:
    r = s.startup_repeats
    progress("start-up: interpreter")
    out: dict[str, Any] = {
        "interpreter": process.summary(process.wall_seconds([sys.executable, "-c", "pass"], r))
    }
    modules = ["asyncio", "genie"]
    if "autogen-core" in s.variants and importlib.util.find_spec("autogen_core") is not None:
        modules.append("autogen_core")
    out["import"] = {}
    for module in modules:
        progress(f"start-up: import {module}")
        out["import"][module] = process.summary(process.import_seconds(module, r))
    if Path(s.pipeline).is_file():
        progress(f"start-up: genie run {s.pipeline}")
        argv = [*process.genie_command(), "run", s.pipeline]
        out["finance_run"] = process.summary(process.wall_seconds(argv, r))
    return out


def run(s: Settings, progress: ProgressLine | None = None) -> report.Results:
    """Measure what ``s`` asks for; the results as ``results.json`` holds them (no files)."""
    progress = progress or ProgressLine(sys.stderr)
    pipeline = s.pipeline
    needs_policies = any("policies" in v for v in s.variants) and (
        "fanout" in s.workloads or "chain" in s.workloads
    )
    policies = _policies(s.policies) if needs_policies else []
    impls, skipped = build(s.variants, policies)
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

    async def speed() -> None:
        if "fanout" in s.workloads:
            results["fanout"] = await _fanout(impls, s, blob, progress)
        if "chain" in s.workloads:
            results["chain"] = await _chain(impls, s, blob, progress)

    asyncio.run(speed())
    if "memory" in s.workloads:
        results["memory"] = _memory(impls, s, progress)
    if "startup" in s.workloads:
        results["startup"] = _startup(s, progress)
    if "soak" in s.workloads:
        progress(f"soak: {s.soak_sessions:,} simulated sessions, fresh process")
        results["soak"] = process.soak(s.soak_sessions)
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
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(report.markdown(results), encoding="utf-8")
    return [out / "results.json", out / "results.md", *written]


def main(argv: Sequence[str] | None = None, prog: str = "genie bench") -> int:
    """Measure fan-out latency, throughput, per-hop cost, memory and start-up against raw
    asyncio, raw anyio and autogen-core (see genie bench --help)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.payload_bytes < 0:
        parser.error(f"--payload-bytes: {args.payload_bytes} is negative")
    settings = Settings.from_args(args)
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        parser.error(f"--out: {out} is not a directory")
    progress = ProgressLine(sys.stderr)
    try:
        results = run(settings, progress)
    except (ConfigurationError, UnknownVariantError) as exc:
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
