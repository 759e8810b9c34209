"""Timing: sequential latency samples, throughput with C requests in flight, per-hop rounds.

Each implementation runs in a child process of its own (``worker.py``): one implementation's
garbage never lands in another's collections, and each reports its CPU time and its time in the
garbage collector beside wall time. The children take turns, in short rounds and a rotating
order, one working while the others wait on a pipe: drift on a shared machine (another job
starting, the CPU clocking down) hits them alike, as when they shared one event loop, and none
competes with another for the CPU.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import IO, Any

from .process import child_env
from .report import MYPYC
from .workloads import WorkloadError

Progress = Callable[[str], None]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples (p999 of 200 samples is their maximum).

    The rank is computed in exact fractions: in floats 99.9 / 100 * 1000 is a hair above 999,
    which rounded up would make the p999 of 1,000 samples their maximum."""
    rank = max(1, math.ceil(Fraction(str(q)) * len(ordered) / 100))
    return ordered[min(rank, len(ordered)) - 1]


class Child:
    """One implementation's worker process; ``call`` sends a command and returns its answer."""

    def __init__(
        self, name: str, policies: str, stderr: IO[bytes], compiled: str | None = None
    ) -> None:
        self.name = name
        self.stderr = stderr
        argv = [sys.executable, "-m", "genie_bench.worker", name, policies]
        env = child_env()
        if name.endswith(MYPYC):
            if compiled is None:
                raise WorkloadError(f"{name}: no compiled tree given (genie bench --compiled)")
            # First on the path: its genie (extensions beside the rest's sources) shadows the
            # installed one; -P below keeps the working directory from shadowing it in turn.
            env["PYTHONPATH"] = os.pathsep.join((compiled, env["PYTHONPATH"]))
            argv.insert(1, "-P")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            why = self.stderr.read().decode(errors="replace").strip()[-800:]
            raise WorkloadError(f"{self.name}: worker exited {self.proc.returncode}: {why}")
        got: dict[str, Any] = json.loads(line)
        if "error" in got:
            raise WorkloadError(f"{self.name}: {got['error']}")
        return got

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.answer()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def children(
    names: Sequence[str], policies: str, compiled: str | None = None
) -> Iterator[dict[str, Child]]:
    """A worker per implementation, all started at once (their imports overlap); the
    ``+mypyc`` ones import genie from the ``compiled`` tree."""
    with ExitStack() as stack:
        out = {}
        for name in names:
            stderr = stack.enter_context(tempfile.TemporaryFile())
            out[name] = child = Child(name, policies, stderr, compiled)
            stack.callback(child.close)
        yield out


def each(kids: dict[str, Child], op: str, **args: Any) -> dict[str, dict[str, Any]]:
    """The same command to every child at once (set-up, tear-down: nothing timed)."""
    for child in kids.values():
        child.send(op, **args)
    return {name: child.answer() for name, child in kids.items()}


def _rotated(names: Sequence[str], by: int) -> list[str]:
    k = by % len(names)
    return [*names[k:], *names[:k]]


@dataclass
class Cost:
    """What a measured block of work cost, summed over its slices."""

    units: int = 0  # requests or hops
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gc_s: float = 0.0
    gc_collections: int = 0

    def add(self, figures: dict[str, Any], units: int) -> None:
        self.units += units
        self.wall_s += figures["wall_s"]
        self.cpu_s += figures["cpu_s"]
        self.gc_s += figures["gc_s"]
        self.gc_collections += figures["gc_collections"]

    def per_unit_us(self) -> dict[str, float]:
        per = 1e6 / max(self.units, 1)
        return {
            "cpu_us": self.cpu_s * per,
            "gc_us": self.gc_s * per,
            "cpu_share": self.cpu_s / self.wall_s if self.wall_s else 0.0,
            "gc_collections": self.gc_collections,
        }


@dataclass
class FanoutResult:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds per request
    throughput: dict[str, list[float]] = field(default_factory=dict)  # requests per second
    latency_cost: dict[str, Cost] = field(default_factory=dict)
    throughput_cost: dict[str, Cost] = field(default_factory=dict)
    # per round, in order: the slice's p50 and CPU per request, and the batch's rate, so that
    # drift within a run (or a mode an implementation settles in) shows in the results
    rounds: dict[str, list[dict[str, float]]] = field(default_factory=dict)


def fanout(
    kids: dict[str, Child],
    n: int,
    *,
    blob: str,
    requests: int,
    rounds: int,
    concurrency: int,
    budget_s: float,
    progress: Progress,
) -> FanoutResult:
    """``requests`` sequential requests (fewer past ``budget_s`` seconds) and a throughput batch
    per round (none once the batches took ``budget_s``), per implementation, at N."""
    out = FanoutResult()
    names = list(kids)
    progress(f"fan-out N={n}: starting {', '.join(names)}")
    each(kids, "start", shape="fanout", size=n, blob=blob, concurrency=concurrency)
    per_round = max(1, math.ceil(requests / rounds))
    for name in names:
        out.latencies[name], out.throughput[name] = [], []
        out.latency_cost[name], out.throughput_cost[name] = Cost(), Cost()
        out.rounds[name] = []
    for r in range(rounds):
        for name in _rotated(names, r):
            progress(f"fan-out N={n}: round {r + 1}/{rounds}, {name}")
            child = kids[name]
            got = child.call("latency", count=per_round, budget_s=budget_s / rounds)
            samples = got["samples"]
            out.latencies[name] += samples
            out.latency_cost[name].add(got, len(samples))
            this_round = {
                "p50_us": percentile(sorted(samples), 50) * 1e6,
                "cpu_us": got["cpu_s"] / len(samples) * 1e6,
            }
            out.rounds[name].append(this_round)
            if out.throughput_cost[name].wall_s >= budget_s:
                continue  # a slow implementation's batches used its budget: the median so far
            # At least C requests, so that C are in flight; as many as the latency slice did.
            batch = max(concurrency, len(samples))
            got = child.call("throughput", requests=batch, concurrency=concurrency)
            out.throughput[name].append(got["requests_per_s"])
            out.throughput_cost[name].add(got, batch)
            this_round["requests_per_s"] = got["requests_per_s"]
    each(kids, "stop")
    return out


@dataclass
class ChainResult:
    per_hop: dict[str, list[float]] = field(default_factory=dict)  # seconds per hop, per round
    cost: dict[str, Cost] = field(default_factory=dict)


def chain(
    kids: dict[str, Child], agents: int, *, blob: str, rounds: int, progress: Progress
) -> ChainResult:
    """Seconds per hop through a chain of ``agents``, one sample per round per implementation."""
    out = ChainResult()
    names = list(kids)
    progress(f"chain of {agents}: starting {', '.join(names)}")
    each(kids, "start", shape="chain", size=agents, blob=blob, concurrency=1)
    for name in names:
        out.per_hop[name], out.cost[name] = [], Cost()
    for r in range(rounds):
        for name in _rotated(names, r):
            progress(f"chain of {agents}: round {r + 1}/{rounds}, {name}")
            got = kids[name].call("hop")
            out.per_hop[name].append(got["wall_s"] / agents)
            out.cost[name].add(got, agents)
    each(kids, "stop")
    return out


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in samples)
    return {
        "p50_us": percentile(us, 50),
        "p99_us": percentile(us, 99),
        "p999_us": percentile(us, 99.9),
        "samples": len(us),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
