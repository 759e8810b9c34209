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

All ways run in one event loop, each with its own runtime or pool, in interleaved rounds (one
request of each per round); the pools start, and are warmed by one round, before anything is
timed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
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


Request = Callable[[], Awaitable[None]]


@asynccontextmanager
async def _genie(mode: str, agents: int, rounds: int, cores: int) -> AsyncIterator[Request]:
    """One request of genie's ``mode``: fanned out to ``agents`` burners, all replies checked."""
    kind = LoopBurner if mode == "in-loop" else SyncBurner
    options = AgentOptions(offload="process" if mode == "processes" else "thread")
    expected = burn(rounds)
    async with Runtime(threads=cores, processes=cores) as rt:
        for i in range(agents):
            rt.add(kind(f"burner{i}"), subscribe=[Burn.message_type], options=options)

        async def request() -> None:
            msg = rt.message(Burn(seq=0, rounds=rounds), sender="caller")
            gather = rt.gather(msg.correlation_id, count=agents, timeout=600)
            await rt.publish(msg)
            result = await gather.wait()
            totals = [m.payload.total for m in result.replies if isinstance(m.payload, Burned)]
            if totals != [expected] * agents:
                raise WorkloadError(f"cpu, genie {mode}: {len(totals)} of {agents} replies right")

        yield request


@asynccontextmanager
async def _pool(processes: bool, agents: int, rounds: int, cores: int) -> AsyncIterator[Request]:
    """One request through ``concurrent.futures`` directly: the same burns, mapped on a pool."""
    expected = burn(rounds)
    if processes:
        import multiprocessing

        spawn = multiprocessing.get_context("spawn")  # as genie's pool starts its children
        pool: Executor = ProcessPoolExecutor(cores, mp_context=spawn)
    else:
        pool = ThreadPoolExecutor(cores)

    async def request() -> None:
        futures = [asyncio.wrap_future(pool.submit(burn, rounds)) for _ in range(agents)]
        if list(await asyncio.gather(*futures)) != [expected] * agents:
            raise WorkloadError("cpu, concurrent.futures: wrong totals")

    with pool:
        yield request


async def _fanout(agents: int, rounds: int, requests: int, cores: int) -> dict[str, float]:
    """Median seconds per request of each way, in interleaved rounds (one request of each per
    round, so that what else the machine does weighs on all alike), after one untimed round."""
    async with AsyncExitStack() as stack:
        ways: dict[str, Request] = {}
        for mode in MODES:
            ways[f"genie {mode}"] = await stack.enter_async_context(
                _genie(mode, agents, rounds, cores)
            )
        for name in ("threads", "processes"):
            ways[f"concurrent.futures {name}"] = await stack.enter_async_context(
                _pool(name == "processes", agents, rounds, cores)
            )
        times: dict[str, list[float]] = {name: [] for name in ways}
        for round_ in range(requests + 1):
            for name, request in ways.items():
                started = time.perf_counter()
                await request()
                if round_:
                    times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


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
    progress(
        f"cpu: {agents} agents x {burn_ms:.0f} ms, in-loop, threads, processes and "
        f"concurrent.futures on {cores} cores, {requests} rounds"
    )
    # asyncio: the concurrent.futures baseline awaits its futures with asyncio.wrap_future.
    seconds = anyio.run(_fanout, agents, rounds, requests, cores, backend="asyncio")
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
        f"Median wall time of a request over {cpu['requests']} interleaved rounds (pools warm); "
        "speed-up against genie's in-loop handlers.",
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
