"""One implementation in a process of its own, measured on command from the harness.

``python -m genie_bench.worker NAME POLICIES`` reads one JSON command a line on its standard
input and answers each with one JSON line on its standard output. The harness keeps one such
child per implementation and gives them the work in short alternating slices (``measure.py``),
so one implementation's garbage never lands in another's collections and drift on the machine
still hits them alike. Only one child works at a time; the others wait on a pipe.

Commands: ``start`` (set up a fan-out of N or a chain, then warm up), ``latency`` (sequential
requests), ``throughput`` (requests in flight), ``hop`` (one traversal of the chain), ``stop``.
Every measuring answer also gives the CPU time (``time.process_time``) and the time spent in
garbage collection (``gc.callbacks``) over what it timed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

from .report import MYPYC, UVLOOP
from .variants import build, load_policies
from .workloads import Ask, Gathered, WorkloadError, answered

# A command taking longer than this is a workload that stopped doing the work (a reply that
# never comes); the child says so instead of hanging the run.
COMMAND_TIMEOUT_S = 600.0
COMMANDS = ("start", "latency", "throughput", "hop", "stop")


class GcClock:
    """Seconds spent in the garbage collector, and how many collections, while registered."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.collections += 1


class Checker:
    """Checks every fan-out request's replies (``workloads.answered``), and that each request
    is a new one (a request asked again could be answered by replies kept from before), and
    keeps the wall and CPU time the checks took, which the figures leave out: the check is
    synchronous, so the event loop does nothing else meanwhile, and every implementation is
    checked alike."""

    def __init__(self, n: int = 0, blob: str = "", what: str = "") -> None:
        self.n, self.blob, self.what = n, blob, what
        self.wall = self.cpu = 0.0
        self.requests = 0
        self.asked: set[int] = set()  # the requests' numbers, from their implementation's count

    def __call__(self, gathered: Gathered | None) -> None:
        if gathered is None:  # a chain's ask checks its own hops
            return
        wall, cpu = time.perf_counter(), time.process_time()
        answered(gathered, self.n, self.blob, self.what)
        seq = gathered[0].seq
        if seq in self.asked:
            raise WorkloadError(f"{self.what}: request {seq} was asked before, not built anew")
        self.asked.add(seq)
        self.requests += 1
        self.cpu += time.process_time() - cpu
        self.wall += time.perf_counter() - wall


class Meter:
    """Wall, CPU and GC time over a block of work, less the checks' time."""

    def __init__(self, clock: GcClock, checker: Checker | None = None) -> None:
        self.clock = clock
        self.checker = Checker() if checker is None else checker

    def __enter__(self) -> Meter:
        self.checked = self.checker.wall, self.checker.cpu
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.gc, self.collections = self.clock.seconds, self.clock.collections
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall - (self.checker.wall - self.checked[0])
        self.cpu = time.process_time() - self.cpu - (self.checker.cpu - self.checked[1])
        self.gc = self.clock.seconds - self.gc
        self.collections = self.clock.collections - self.collections

    def figures(self) -> dict[str, float]:
        return {
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "gc_s": self.gc,
            "gc_collections": self.collections,
        }


async def throughput(
    ask: Ask, requests: int, concurrency: int, check: Checker | None = None
) -> float:
    """Requests per second with ``concurrency`` requests in flight until ``requests`` are done;
    each request's replies checked by ``check``, whose time is not counted."""
    started = iter(range(requests))
    check = Checker() if check is None else check
    checked = check.wall

    async def client() -> None:
        while next(started, None) is not None:
            got = await ask()
            if check.n:
                check(got)

    begin = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, requests))))
    return requests / (time.perf_counter() - begin - (check.wall - checked))


class Worker:
    def __init__(self, name: str, policies: str) -> None:
        name = name.removesuffix(UVLOOP)  # the same implementation, on uvloop (``main``)
        impls, _ = build([name], load_policies(policies) if "policies" in name else [])
        base = name.removesuffix(MYPYC)  # the same implementation, from the compiled tree
        [self.impl] = [i for i in impls if i.name == base]
        self.stack = AsyncExitStack()
        self.ask: Ask | None = None
        self.clock = GcClock()
        self.checker = Checker()

    async def start(self, shape: str, size: int, blob: str, concurrency: int) -> dict[str, Any]:
        await self.stop()
        if shape == "fanout":
            self.checker = Checker(size, blob, f"{self.impl.name} replies")
            self.ask = await self.stack.enter_async_context(self.impl.fanout(size, blob))
            for _ in range(5):  # first calls build caches and schemas
                self.checker(await self.ask())
            # and what C in flight needs
            await throughput(self.ask, concurrency, concurrency, self.checker)
        else:
            self.ask = await self.stack.enter_async_context(self.impl.chain(size, blob))
            await self.ask()
        gc.collect()
        return {}

    async def stop(self) -> dict[str, Any]:
        self.ask = None
        self.checker = Checker()
        await self.stack.aclose()
        gc.collect()
        return {}

    def _ready(self) -> Ask:
        if self.ask is None:
            raise WorkloadError("no workload started")
        return self.ask

    async def latency(self, count: int, budget_s: float) -> dict[str, Any]:
        """Up to ``count`` sequential requests, fewer if ``budget_s`` runs out (at least one)."""
        ask, samples = self._ready(), []
        gc.collect()  # each slice starts with the same heap: the last one's garbage is gone
        clock = time.perf_counter
        deadline = clock() + budget_s
        check = self.checker
        with Meter(self.clock, check) as meter:
            for _ in range(count):
                begin = clock()
                got = await ask()
                end = clock()
                samples.append(end - begin)
                check(got)
                if end > deadline:
                    break
        return {"samples": samples, **meter.figures()}

    async def throughput(self, requests: int, concurrency: int) -> dict[str, Any]:
        ask = self._ready()
        gc.collect()
        with Meter(self.clock, self.checker) as meter:
            rate = await throughput(ask, requests, concurrency, self.checker)
        return {"requests_per_s": rate, "requests": requests, **meter.figures()}

    async def hop(self) -> dict[str, Any]:
        ask = self._ready()
        gc.collect()
        with Meter(self.clock, self.checker) as meter:
            await ask()
        return meter.figures()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        gc.callbacks.append(self.clock)
        try:
            while line := await reader.readline():
                command = json.loads(line)
                op = command.pop("op")
                try:
                    if op not in COMMANDS:
                        raise WorkloadError(
                            f"unknown command {op!r} (known: {', '.join(COMMANDS)})"
                        )
                    async with asyncio.timeout(COMMAND_TIMEOUT_S):
                        answer = await getattr(self, op)(**command)
                except (WorkloadError, TimeoutError) as exc:
                    answer = {"error": str(exc) or f"{op} took over {COMMAND_TIMEOUT_S:.0f} s"}
                sys.stdout.write(json.dumps(answer) + "\n")
                sys.stdout.flush()
        finally:
            await self.stop()
            gc.callbacks.remove(self.clock)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m genie_bench.worker NAME POLICIES", file=sys.stderr)
        return 2
    loop_factory = None
    if argv[0].endswith(UVLOOP):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(Worker(*argv).serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
