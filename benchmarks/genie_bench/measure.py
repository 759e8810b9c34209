"""Timing: sequential latency samples, throughput with C requests in flight, per-hop rounds.

Implementations are measured interleaved, in rounds: every implementation is alive in the
same event loop and each round gives each of them a slice of the work, in a rotating order, so
drift on a shared machine (another job starting, the CPU clocking down) hits them alike.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

from .workloads import Ask, Implementation

Progress = Callable[[str], None]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples (p999 of 200 samples is their maximum)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class FanoutResult:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds per request
    throughput: dict[str, list[float]] = field(default_factory=dict)  # requests per second


def _rotated(items: Sequence[Implementation], by: int) -> list[Implementation]:
    k = by % len(items)
    return [*items[k:], *items[:k]]


async def throughput(ask: Ask, requests: int, concurrency: int) -> float:
    """Requests per second with ``concurrency`` requests in flight until ``requests`` are done."""
    started = itertools.count()

    async def client() -> None:
        while next(started) < requests:
            await ask()

    begin = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, requests))))
    return requests / (time.perf_counter() - begin)


async def fanout(
    impls: Sequence[Implementation],
    n: int,
    *,
    blob: str,
    requests: int,
    rounds: int,
    concurrency: int,
    progress: Progress,
) -> FanoutResult:
    """Latency of ``requests`` sequential requests and throughput, per implementation, at N."""
    out = FanoutResult()
    async with AsyncExitStack() as stack:
        asks: dict[str, Ask] = {}
        for impl in impls:
            progress(f"fan-out N={n}: starting {impl.name}")
            asks[impl.name] = await stack.enter_async_context(impl.fanout(n, blob))
            out.latencies[impl.name] = []
            out.throughput[impl.name] = []
        per_round = max(1, requests // rounds)
        in_flight = max(per_round, concurrency)
        for impl in impls:  # warm-up: first calls build caches and schemas
            for _ in range(min(5, per_round)):
                await asks[impl.name]()
        for r in range(rounds):
            for impl in _rotated(impls, r):
                progress(f"fan-out N={n}: round {r + 1}/{rounds}, {impl.name}")
                ask, samples = asks[impl.name], out.latencies[impl.name]
                gc.collect()
                for _ in range(per_round):
                    begin = time.perf_counter()
                    await ask()
                    samples.append(time.perf_counter() - begin)
                rate = await throughput(ask, in_flight, concurrency)
                out.throughput[impl.name].append(rate)
    return out


async def chain(
    impls: Sequence[Implementation],
    agents: int,
    *,
    blob: str,
    rounds: int,
    progress: Progress,
) -> dict[str, list[float]]:
    """Seconds per hop through a chain of ``agents``, one sample per round per implementation."""
    out: dict[str, list[float]] = {}
    async with AsyncExitStack() as stack:
        asks: dict[str, Ask] = {}
        for impl in impls:
            progress(f"chain of {agents}: starting {impl.name}")
            asks[impl.name] = await stack.enter_async_context(impl.chain(agents, blob))
            await asks[impl.name]()  # warm-up
            out[impl.name] = []
        for r in range(rounds):
            for impl in _rotated(impls, r):
                progress(f"chain of {agents}: round {r + 1}/{rounds}, {impl.name}")
                begin = time.perf_counter()
                await asks[impl.name]()
                out[impl.name].append((time.perf_counter() - begin) / agents)
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
