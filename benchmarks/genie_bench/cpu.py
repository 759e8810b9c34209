"""The ``cpu`` workload: plain ``def`` handlers that burn CPU or block, in one run.

Throughput: one request fanned out to ``agents`` agents, each burning the same fixed amount of
pure-Python CPU (it holds the GIL, as parsing or number crunching in Python does), then
replying; the wall time of a request, for genie's three ways of running a handler (an
``async def`` on the event loop, a ``def`` in a thread, a ``def`` with ``offload="process"``
in a pool of ``cores`` processes) beside the same burns through ``concurrent.futures`` directly
(a thread pool and a process pool of ``cores`` workers). Processes should scale with cores;
threads and the loop cannot (the GIL).

Stall: one agent blocks for ``block_ms`` (``time.sleep``, as a blocking library call does),
in a thread or on the event loop, while another agent answers ``asks`` small requests one after
the other; the other agent's latency tells whether the blocked handler stalled it.

Each case builds its own runtime in this process; the pools start (and are warmed by one
request) before anything is timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import anyio

from genie import AgentOptions, BaseAgent, Context, Message, Payload, Runtime, handler

from .workloads import WorkloadError

MODES = ("in-loop", "threads", "processes")


class Burn(Payload):
    message_type = "bench.burn"
    seq: int
    rounds: int


class Burned(Payload):
    message_type = "bench.burned"
    seq: int
    total: int


class Tick(Payload):
    message_type = "bench.tick"
    seq: int


class Block(Payload):
    message_type = "bench.block"
    seconds: float


def burn(rounds: int) -> int:
    """Pure-Python work of a fixed size: it holds the GIL all along."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


class SyncBurner(BaseAgent):
    produces = (Burned,)

    @handler
    def on_burn(self, payload: Burn, ctx: Context) -> Message:
        return ctx.reply(Burned(seq=payload.seq, total=burn(payload.rounds)))


class LoopBurner(BaseAgent):
    produces = (Burned,)

    @handler
    async def on_burn(self, payload: Burn, ctx: Context) -> Message:
        return ctx.reply(Burned(seq=payload.seq, total=burn(payload.rounds)))


class Ticker(BaseAgent):
    produces = (Tick,)

    @handler
    async def on_tick(self, payload: Tick, ctx: Context) -> Message:
        return ctx.reply(Tick(seq=payload.seq))


class SyncBlocker(BaseAgent):
    @handler
    def on_block(self, payload: Block, ctx: Context) -> None:
        time.sleep(payload.seconds)


class LoopBlocker(BaseAgent):
    @handler
    async def on_block(self, payload: Block, ctx: Context) -> None:
        time.sleep(payload.seconds)  # noqa: ASYNC251 (the blocking call this measures)


async def _genie_fanout(mode: str, agents: int, rounds: int, requests: int, cores: int) -> float:
    """Seconds per request of ``mode``, after one untimed request (pools started)."""
    kind = LoopBurner if mode == "in-loop" else SyncBurner
    options = AgentOptions(offload="process" if mode == "processes" else "thread")
    async with Runtime(threads=cores, processes=cores) as rt:
        for i in range(agents):
            rt.add(kind(f"burner{i}"), subscribe=[Burn.message_type], options=options)
        expected = burn(rounds)
        times = []
        for seq in range(requests + 1):
            msg = rt.message(Burn(seq=seq, rounds=rounds), sender="caller")
            started = time.perf_counter()
            gather = rt.gather(msg.correlation_id, count=agents, timeout=600)
            await rt.publish(msg)
            result = await gather.wait()
            elapsed = time.perf_counter() - started
            totals = [m.payload.total for m in result.replies if isinstance(m.payload, Burned)]
            if totals != [expected] * agents:
                raise WorkloadError(f"cpu, genie {mode}: {len(totals)} of {agents} replies right")
            if seq:
                times.append(elapsed)
    return statistics.median(times)


def _pool_fanout(pool: Executor, agents: int, rounds: int, requests: int) -> float:
    expected = burn(rounds)
    times = []
    for seq in range(requests + 1):
        started = time.perf_counter()
        totals = list(pool.map(burn, [rounds] * agents))
        elapsed = time.perf_counter() - started
        if totals != [expected] * agents:
            raise WorkloadError("cpu, concurrent.futures: wrong totals")
        if seq:
            times.append(elapsed)
    return statistics.median(times)


async def _stall(in_thread: bool, block_ms: float, asks: int) -> dict[str, float]:
    """The ticker's latency (ms) while the blocker blocks, in a thread or on the loop."""
    blocker = SyncBlocker("blocker") if in_thread else LoopBlocker("blocker")
    async with Runtime([blocker, Ticker("ticker")]) as rt:
        await rt.ask(rt.message(Tick(seq=-1), recipient="ticker"))  # warm
        await rt.publish(rt.message(Block(seconds=block_ms / 1000), recipient="blocker"))
        latencies = []
        for seq in range(asks):
            started = time.perf_counter()
            result = await rt.ask(rt.message(Tick(seq=seq), recipient="ticker"))
            latencies.append((time.perf_counter() - started) * 1000)
            if [m.payload for m in result.replies] != [Tick(seq=seq)]:
                raise WorkloadError("cpu, stall: the ticker did not answer")
        with anyio.fail_after(60):
            await rt.wait_idle()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "max_ms": latencies[-1],
        "asks": asks,
    }


def measure(
    cores: int,
    agents: int = 8,
    rounds: int = 1_000_000,
    requests: int = 5,
    block_ms: float = 200.0,
    asks: int = 20,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The ``cpu`` workload's results (see the module docstring)."""
    started = time.perf_counter()
    one = burn(rounds)
    burn_ms = (time.perf_counter() - started) * 1000
    del one
    seconds: dict[str, float] = {}
    for mode in MODES:
        progress(f"cpu: genie {mode}, {agents} agents x {burn_ms:.0f} ms, {cores} cores")
        seconds[f"genie {mode}"] = anyio.run(_genie_fanout, mode, agents, rounds, requests, cores)
    for name, pool_type in (("threads", ThreadPoolExecutor), ("processes", ProcessPoolExecutor)):
        progress(f"cpu: concurrent.futures {name}, {cores} workers")
        if pool_type is ProcessPoolExecutor:
            import multiprocessing

            spawn = multiprocessing.get_context("spawn")  # as genie's pool starts its children
            pool: Executor = ProcessPoolExecutor(cores, mp_context=spawn)
        else:
            pool = ThreadPoolExecutor(cores)
        with pool:
            seconds[f"concurrent.futures {name}"] = _pool_fanout(pool, agents, rounds, requests)
    progress(f"cpu: stall, one agent blocking {block_ms:g} ms")
    stall = {
        "thread": anyio.run(_stall, True, block_ms, asks),
        "in-loop": anyio.run(_stall, False, block_ms, asks),
    }
    loop = seconds["genie in-loop"]
    return {
        "cores": cores,
        "agents": agents,
        "burn_rounds": rounds,
        "burn_ms": burn_ms,
        "requests": requests,
        "seconds_per_request": seconds,
        "speedup_over_in_loop": {name: loop / s for name, s in seconds.items()},
        "block_ms": block_ms,
        "stall": stall,
    }


def markdown(cpu: dict[str, Any]) -> list[str]:
    lines = [
        f"## CPU-bound handlers: fan-out to {cpu['agents']} agents, each burning "
        f"{cpu['burn_ms']:.0f} ms of pure-Python CPU, {cpu['cores']} cores",
        "",
        "Median wall time of a request over "
        f"{cpu['requests']} requests (pools warm); speed-up against genie's in-loop handlers.",
        "",
        "| how | ms per request | speed-up |",
        "| --- | ---: | ---: |",
    ]
    for name, s in cpu["seconds_per_request"].items():
        lines.append(f"| {name} | {s * 1000:,.1f} | {cpu['speedup_over_in_loop'][name]:.2f}x |")
    lines += [
        "",
        f"Another agent's latency while one handler blocks for {cpu['block_ms']:g} ms "
        f"({cpu['stall']['thread']['asks']} asks one after the other):",
        "",
        "| the blocking handler | p50 ms | max ms |",
        "| --- | ---: | ---: |",
    ]
    for name, x in cpu["stall"].items():
        lines.append(f"| {name} | {x['p50_ms']:.2f} | {x['max_ms']:.2f} |")
    return [*lines, ""]
