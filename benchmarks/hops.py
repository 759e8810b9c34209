"""Per-hop cost and memory per idle agent: Genie against the raw asyncio floor, in one run.

The floor is what design.md §7 names: an ``asyncio.Queue`` and a task per agent, each hop
building the same payload model Genie's agents build. Results are reported as ratios to the
floor measured in the same process, so they hold on a noisy machine.

    python -m benchmarks.hops [--agents 1000] [--rounds 30] [--idle 10000] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.lowlevel

import genie
from genie import BaseAgent, Context, Limits, Message, Payload, Runtime, handler


class Hop(Payload):
    message_type = "bench.hop"
    n: int
    blob: str = ""


class Relay(BaseAgent):
    produces = (Hop,)

    def __init__(self, id: str, next_id: str) -> None:
        super().__init__(id)
        self.next_id = next_id

    @handler
    async def on_hop(self, payload: Hop, ctx: Context) -> Message:
        return ctx.emit(Hop(n=payload.n + 1, blob=payload.blob), recipient=self.next_id)


async def floor_chain(agents: int, rounds: int) -> list[float]:
    """Raw asyncio: a queue and a task per agent; returns seconds per hop for each round."""
    queues: list[asyncio.Queue[Hop]] = [asyncio.Queue() for _ in range(agents + 1)]

    async def agent(inbox: asyncio.Queue[Hop], outbox: asyncio.Queue[Hop]) -> None:
        while True:
            hop = await inbox.get()
            outbox.put_nowait(Hop(n=hop.n + 1))

    tasks = [asyncio.ensure_future(agent(queues[i], queues[i + 1])) for i in range(agents)]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        queues[0].put_nowait(Hop(n=0))
        await queues[agents].get()
        samples.append((time.perf_counter() - start) / agents)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples


def default_policies() -> list[genie.Policy]:
    """The shipped board policy file: what a governed deployment runs on every delivery."""
    from genie.policies import load_policy_file

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return load_policy_file(os.path.join(root, "config", "policies", "ai-policy.yaml")).policies


async def genie_chain(
    agents: int,
    rounds: int,
    policies: Sequence[genie.Policy] = (),
    blob: str = "",
    metrics: bool = False,
) -> list[float]:
    relays = [Relay(f"a{i}", f"a{i + 1}" if i < agents - 1 else "caller") for i in range(agents)]
    samples = []
    limits = Limits(max_hops=agents + 1)
    async with Runtime(relays, policies=policies, limits=limits, metrics=metrics) as rt:
        for _ in range(rounds):
            msg = rt.message(Hop(n=0, blob=blob), sender="caller", recipient="a0")
            start = time.perf_counter()
            result = await rt.ask(msg)
            samples.append((time.perf_counter() - start) / agents)
            assert result.message.payload == Hop(n=agents, blob=blob), result
    return samples


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def idle_memory(kind: str, count: int) -> float:
    """Bytes of RSS per idle agent, agents created and started but given no work."""
    gc.collect()
    before = rss_bytes()
    if kind == "floor":
        queues: list[asyncio.Queue[Hop]] = [asyncio.Queue() for _ in range(count)]

        async def park(q: asyncio.Queue[Hop]) -> None:
            await q.get()

        tasks = [asyncio.ensure_future(park(q)) for q in queues]
        await asyncio.sleep(0)
        per = (rss_bytes() - before) / count
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return per
    relays = [Relay(f"a{i}", "caller") for i in range(count)]
    async with Runtime(relays):
        await anyio.lowlevel.checkpoint()
        gc.collect()
        return (rss_bytes() - before) / count


def summary(samples: list[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in samples)
    return {"median_us": statistics.median(us), "best_us": us[0]}


async def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, object]:
    results: dict[str, object] = {}
    policies = default_policies()
    # 64 KiB of text that no policy objects to (no digit runs, no injection phrases).
    big = ("lorem ipsum dolor sit amet " * 2500)[: 64 * 1024]
    variants: list[tuple[str, Callable[[], Awaitable[list[float]]]]] = [
        ("floor_asyncio", lambda: floor_chain(args.agents, args.rounds)),
        ("genie", lambda: genie_chain(args.agents, args.rounds)),
        ("genie_policies", lambda: genie_chain(args.agents, args.rounds, policies)),
        ("genie_64k", lambda: genie_chain(args.agents, args.rounds, blob=big)),
        ("genie_64k_policies", lambda: genie_chain(args.agents, args.rounds, policies, big)),
        ("genie_metrics", lambda: genie_chain(args.agents, args.rounds, metrics=True)),
        (
            "genie_pol_metrics",
            lambda: genie_chain(args.agents, args.rounds, policies, metrics=True),
        ),
    ]
    # Interleave the implementations so drift on a shared machine hits them alike.
    collected: dict[str, list[float]] = {name: [] for name, _ in variants}
    for rep in range(args.repeats):
        for name, fn in variants:
            progress(f"per-hop  {name:14s} repeat {rep + 1}/{args.repeats}")
            collected[name] += await fn()
    floor = summary(collected["floor_asyncio"])["median_us"]
    results["per_hop"] = {
        name: {**summary(s), "ratio_to_floor": summary(s)["median_us"] / floor}
        for name, s in collected.items()
    }
    for kind in ("floor", "genie"):
        progress(f"memory   {kind} with {args.idle} idle agents")
        memory = results.setdefault("idle_bytes_per_agent", {})
        assert isinstance(memory, dict)
        memory[kind] = await idle_memory(kind, args.idle)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and fast")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.rounds, args.repeats, args.idle = 100, 3, 1, 1000
    for name in ("agents", "rounds", "repeats", "idle"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")

    def progress(text: str) -> None:
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)

    results = asyncio.run(run(args, progress))
    print("\r\033[K", end="", file=sys.stderr)
    results["environment"] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "genie": "0.1.0",
        "agents": args.agents,
        "rounds": args.rounds,
        "repeats": args.repeats,
    }
    per_hop = results["per_hop"]
    assert isinstance(per_hop, dict)
    policy_cost = {
        "small": per_hop["genie_policies"]["median_us"] - per_hop["genie"]["median_us"],
        "64KiB": per_hop["genie_64k_policies"]["median_us"] - per_hop["genie_64k"]["median_us"],
    }
    results["default_policy_cost_us_per_delivery"] = policy_cost
    metrics_cost = per_hop["genie_metrics"]["median_us"] - per_hop["genie"]["median_us"]
    results["metrics_cost_us_per_delivery"] = metrics_cost
    print(f"chain of {args.agents} agents, {args.rounds} rounds x {args.repeats} repeats")
    print(f"{'implementation':16s} {'median µs/hop':>14s} {'best µs/hop':>12s} {'x floor':>8s}")
    for name, row in per_hop.items():
        print(
            f"{name:16s} {row['median_us']:14.2f} {row['best_us']:12.2f} "
            f"{row['ratio_to_floor']:8.2f}"
        )
    print(
        "default policy set (config/policies/ai-policy.yaml) adds per delivery: "
        + ", ".join(f"{size} payload {cost:.1f} µs" for size, cost in policy_cost.items())
    )
    print(
        f"metrics on (a runtime-owned Prometheus registry) adds per delivery: "
        f"{metrics_cost:.1f} µs ({per_hop['genie_metrics']['median_us']:.2f} vs "
        f"{per_hop['genie']['median_us']:.2f} µs/hop)"
    )
    mem = results["idle_bytes_per_agent"]
    assert isinstance(mem, dict)
    print(
        f"idle agents ({args.idle}): " + ", ".join(f"{k} {v:.0f} B/agent" for k, v in mem.items())
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
