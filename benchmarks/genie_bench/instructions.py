"""Instructions per hop and per fan-out request, counted by callgrind: ``python -m
genie_bench.instructions`` (needs ``valgrind`` on the PATH).

Wall time on a shared machine drifts by more than the changes worth making; an instruction
count does not. Each workload runs twice in a fresh interpreter under ``valgrind
--tool=callgrind``, once with ``--requests`` requests and once with twice as many; the
difference of the two totals is the cost of ``--requests`` requests alone (start-up, imports and
warm-up cancel out). Workloads, without policies or metrics (the runtime's own cost):

- ``chain``: one message through a chain of ``--agents`` relays (each emits to the next) into a
  sink; reported per hop.
- ``fanout``: one request to ``--n`` subscribers, each replying, gathered by the caller
  (``rt.gather`` then ``rt.publish``); reported per request.
- ``ask``: ``rt.ask`` of one agent that replies (a ping and its pong): a request's own cost,
  which a fan-out shares among its recipients; reported per request.
- ``ask-deadline``: the same ``rt.ask`` with ``timeout=30``: what a deadline adds to it.
- ``request``: a handler's ``ctx.request`` to an agent that replies, one after another in one
  handler call (a ping and its pong, waited for under ``Limits.request_timeout``); reported
  per request.
- ``throughput``: the ``fanout`` request with 64 of them under way at once, as the harness's
  throughput workload runs it, ten times ``--requests`` requests (so that 64 are in flight);
  reported per request.
- ``components``: the pieces of one delivery, each called alone on a running runtime's own
  objects (see ``COMPONENTS``); reported per call.

Only the public API is used by ``chain``, ``fanout``, the asks and ``request``, so
``--pythonpath`` can point at another checkout's tree to compare two versions of genie the
same way.

``--variants`` counts the harness's own implementations instead (``genie bench --variants``
names, without policies: the two floors, ``asyncio`` and ``pool``, genie and the rest) on the
harness's workloads (``workloads.py``: the same payloads, fan-in checks and chain as ``genie
bench``), for ``chain``, ``fanout`` and ``throughput``: what genie costs against each floor in
instructions, which a loaded machine does not blur.

``--simulate`` runs the same under ``valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes``
and counts, beside the instructions, the misses of a simulated cache and the mispredictions of a
simulated branch predictor (``SIMULATED``): what makes one program's instructions slower than
another's, which a count of instructions alone does not show. Simulated, not the processor's own
counters (a container rarely reads those), so compare programs with it, not machines.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from genie import BaseAgent, Context, Limits, Message, Payload, Runtime, handler

__all__ = ["COMPONENTS", "SIMULATED", "WORKLOADS", "count", "main", "valgrind_totals"]

WORKLOADS = ("chain", "fanout", "ask", "ask-deadline", "request", "throughput", "components")
# What ``components`` measures: each part of delivering one reply, alone.
COMPONENTS = (
    "loop",
    "fanin",
    "admission",
    "ledger",
    "payload",
    "envelope",
    "dispatch",
    "delivery",
)
_WARMUP = 20


# --- the child: runs one workload, inside callgrind ------------------------------------------
class Hop(Payload):
    message_type = "instructions.hop"
    n: int


class Relay(BaseAgent):
    produces = (Hop,)

    def __init__(self, id: str, next_id: str) -> None:
        super().__init__(id)
        self.next_id = next_id

    @handler
    async def on_hop(self, payload: Hop, ctx: Context) -> Message:
        return ctx.emit(Hop(n=payload.n + 1), recipient=self.next_id)


class Sink(BaseAgent):
    """Sets the event of the request under way (one at a time)."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.arrived = anyio.Event()

    @handler
    async def on_hop(self, payload: Hop, ctx: Context) -> None:
        self.arrived.set()


class Request(Payload):
    message_type = "instructions.request"
    seq: int


class Reply(Payload):
    message_type = "instructions.reply"
    seq: int
    agent: int


class Worker(BaseAgent):
    produces = (Reply,)

    def __init__(self, id: str, index: int) -> None:
        super().__init__(id)
        self.index = index

    @handler
    async def on_request(self, payload: Request, ctx: Context) -> Message:
        return ctx.reply(Reply(seq=payload.seq, agent=self.index))


class Ping(Payload):
    message_type = "instructions.ping"
    n: int


class Pong(Payload):
    message_type = "instructions.pong"
    n: int


class Echo(BaseAgent):
    """Answers a ping with a pong; a pong sets the event of the request under way."""

    produces = (Pong,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.arrived = anyio.Event()

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        self.arrived.set()


class Asker(BaseAgent):
    """Asks ``echo`` for a pong ``n`` times, one ``ctx.request`` after another, in the one
    handler call a ping of ``n`` makes; then replies."""

    produces = (Ping, Pong)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        for _ in range(payload.n):
            answer = await ctx.request("echo", Ping(n=1))
            if not isinstance(answer.payload, Pong):
                raise RuntimeError(f"ctx.request answered {answer.type}")
        return ctx.reply(Pong(n=payload.n))


async def _chain(agents: int, requests: int) -> None:
    sink = Sink("sink")
    relays = [Relay(f"a{i}", f"a{i + 1}" if i < agents - 1 else "sink") for i in range(agents)]
    limits = Limits(max_hops=agents + 1)
    async with Runtime([*relays, sink], limits=limits) as rt:
        for _ in range(_WARMUP + requests):
            sink.arrived = anyio.Event()
            await rt.publish(rt.message(Hop(n=0), sender="caller", recipient="a0"))
            await sink.arrived.wait()


async def _fanout(n: int, requests: int) -> None:
    workers = [Worker(f"w{i}", i) for i in range(n)]
    async with Runtime(workers) as rt:
        for worker in workers:
            rt.subscribe(worker.id, Request.message_type)
        for seq in range(_WARMUP + requests):
            msg = rt.message(Request(seq=seq), sender="caller")
            gather = rt.gather(msg.correlation_id, count=n)
            await rt.publish(msg)
            result = await gather.wait()
            if len(result.replies) != n:
                raise RuntimeError(f"fan-out gathered {len(result.replies)} of {n} replies")


async def _ask(requests: int, timeout: float | None = None) -> None:
    async with Runtime([Echo("echo")]) as rt:
        for _ in range(_WARMUP + requests):
            ping = rt.message(Ping(n=1), sender="caller", recipient="echo")
            result = await rt.ask(ping, timeout=timeout)
            if result.status != "complete":
                raise RuntimeError(f"ask ended {result.status}")


async def _request(requests: int) -> None:
    async with Runtime([Echo("echo"), Asker("asker")]) as rt:
        ping = rt.message(Ping(n=_WARMUP + requests), sender="caller", recipient="asker")
        result = await rt.ask(ping)
        if result.status != "complete":
            raise RuntimeError(f"the asker's ask ended {result.status}")


async def _throughput(n: int, requests: int, in_flight: int = 64) -> None:
    """``_fanout``'s request with ``in_flight`` of them under way at once (each client asks
    again as soon as its gather completes), ``_WARMUP + requests`` in all."""
    workers = [Worker(f"w{i}", i) for i in range(n)]
    async with Runtime(workers) as rt:
        for worker in workers:
            rt.subscribe(worker.id, Request.message_type)
        started = iter(range(_WARMUP + requests))

        async def client() -> None:
            for seq in started:
                msg = rt.message(Request(seq=seq), sender="caller")
                gather = rt.gather(msg.correlation_id, count=n)
                await rt.publish(msg)
                result = await gather.wait()
                if len(result.replies) != n:
                    raise RuntimeError(f"throughput gathered {len(result.replies)} of {n}")

        async with anyio.create_task_group() as tg:
            for _ in range(in_flight):
                tg.start_soon(client)


async def _component(name: str, calls: int) -> None:
    """Calls one part of a delivery ``calls`` times on a running runtime's own objects.

    The parts: ``loop`` (an empty call: the measuring loop's own cost, to subtract from the
    others), ``fanin`` (a reply to the caller emitted into its correlation, where a gather
    takes it: what each gathered reply costs between the handler and the gather),
    ``admission`` (the check for one consumer, no policies), ``ledger`` (a
    delivery opened and handled), ``payload`` (the handler's ``Pong(n=1)``: pydantic
    validating the reply's payload), ``envelope`` (``ctx.reply``: the reply's ``Message``, its
    id and timestamp), ``dispatch`` (a handler called as a delivery calls it: the delivery's
    context built, the agent's bound handler awaited, with the payload and envelope it
    builds), ``delivery`` (a whole round trip: a ping to an echo agent and its pong back to an
    agent, two deliveries, for scale).
    """
    from genie._agent import context as _context

    # A tree before issue 19's sixth pass builds its contexts by ``RuntimeContext(...)``.
    new_context: Callable[..., _context.RuntimeContext] = getattr(
        _context, "runtime_context", _context.RuntimeContext
    )
    echo, caller = Echo("echo"), Echo("caller")
    async with Runtime([echo, caller]) as rt:
        # The measurement reads the runtime's own rooms (private, and meant to stay so).
        dispatcher, admission, ledger = rt._dispatcher, rt._admission, rt._ledger
        correlator, services = rt._correlator, rt._runner.services
        request = rt.message(Ping(n=1), sender="caller", recipient="echo")
        ctx = new_context(services, "echo", request)
        reply = ctx.reply(Pong(n=1))
        corr = correlator.get(reply.correlation_id)
        one: Callable[[], object]
        if name == "loop":

            def one() -> object:  # the measuring loop's own cost, to subtract from the others
                return None
        elif name == "fanin":
            # A gather of two senders that only ever hears from one: it takes every reply (the
            # first is kept) and stays open, so each call is one reply gathered.
            # The caller is outside the runtime (no agent of its id), as ``rt.gather`` callers are.
            asked = rt.message(Ping(n=1), sender="outside", recipient="echo")
            gathered = new_context(services, "echo", asked).reply(Pong(n=1))
            gathered_corr = correlator.get(gathered.correlation_id)
            rt.gather(gathered.correlation_id, senders=["echo", "nobody"])

            def one() -> object:
                dispatcher.route(gathered, True, gathered_corr)
                return None
        elif name == "admission":

            def one() -> object:
                return admission.check(reply, "caller", corr)
        elif name == "ledger":

            def one() -> object:
                ledger.opened(corr)
                ledger.handled_one(corr, reply)
                return None
        elif name == "payload":

            def one() -> object:
                return Pong(n=1)
        elif name == "envelope":
            payload = Pong(n=1)

            def one() -> object:
                return ctx.reply(payload)
        elif name == "dispatch":
            # As a delivery calls a handler: its context built, then the agent's handler for
            # the payload's type, bound once, awaited (a tree without bound handlers: handle).
            mailbox = getattr(rt, "_mailboxes", {}).get("echo")
            bound = getattr(mailbox, "handlers", {}).get(Ping)
            for _ in range(_WARMUP + calls):
                this = new_context(services, "echo", request)
                if bound is None:
                    await echo.handle(request, this)
                else:
                    await bound(request.payload, this)
            return
        else:
            for _ in range(_WARMUP + calls):
                caller.arrived = anyio.Event()
                await rt.publish(request.model_copy(update={"id": services.new_id()}))
                await caller.arrived.wait()
            return
        for _ in range(_WARMUP + calls):
            one()


async def _harness(variant: str, workload: str, size: int, requests: int) -> None:
    """The harness's implementation ``variant`` doing ``workload`` as ``genie bench`` drives
    it: ``_WARMUP + requests`` sequential asks (a traversal of the chain, a fan-out and its
    fan-in), or as many with 64 in flight (``throughput``). A fan-out's replies are checked as
    ``genie bench`` checks them, on the warm-up's requests and on one more after the counted
    ones: the same in both run lengths, so the checks cancel out of the count."""
    from .variants import build
    from .worker import Checker, throughput

    [impl] = [i for i in build([variant], ())[0] if i.name == variant]
    shape = impl.chain if workload == "chain" else impl.fanout
    check = Checker(size, "", variant) if workload != "chain" else Checker()
    async with shape(size, "") as ask:
        for _ in range(_WARMUP):
            check(await ask())
        if workload == "throughput":
            await throughput(ask, requests, 64)
        else:
            for _ in range(requests):
                await ask()
        check(await ask())


def _child(workload: str, size: int, requests: int, component: str, variant: str = "") -> None:
    if variant:
        # asyncio.run, as the harness's workers run: the floors are raw asyncio.
        asyncio.run(_harness(variant, workload, size, requests))
    elif workload == "chain":
        anyio.run(_chain, size, requests)
    elif workload == "fanout":
        anyio.run(_fanout, size, requests)
    elif workload == "ask":
        anyio.run(_ask, requests)
    elif workload == "ask-deadline":
        anyio.run(_ask, requests, 30.0)
    elif workload == "request":
        anyio.run(_request, requests)
    elif workload == "throughput":
        anyio.run(_throughput, size, requests)
    else:
        anyio.run(_component, component, requests)


# --- the parent: runs valgrind twice and takes the difference ---------------------------------
# What ``--simulate`` reports, each a sum of cachegrind's events (``cg_annotate`` names them).
SIMULATED = {
    "instructions": ("Ir",),
    "L1 instruction misses": ("I1mr",),
    "L1 data misses": ("D1mr", "D1mw"),
    "last-level misses": ("ILmr", "DLmr", "DLmw"),
    "branch mispredictions": ("Bcm", "Bim"),
    "indirect mispredictions": ("Bim",),
}


def valgrind_totals(
    args: Sequence[str], env: dict[str, str], simulate: bool = False
) -> dict[str, int]:
    """Run ``args`` under valgrind and return its event totals by name: callgrind's
    instructions (``Ir``), or with ``simulate`` cachegrind's simulated caches and branch
    predictor as well (``SIMULATED``)."""
    if simulate:
        tool = ["--tool=cachegrind", "--cache-sim=yes", "--branch-sim=yes"]
        flag = "--cachegrind-out-file"
    else:
        tool, flag = ["--tool=callgrind"], "--callgrind-out-file"
    with tempfile.TemporaryDirectory(prefix="genie-instructions-") as tmp:
        out = Path(tmp) / "valgrind.out"
        run = subprocess.run(
            ["valgrind", *tool, f"{flag}={out}", *args],
            env=env,
            check=False,
            capture_output=True,
            text=True,
        )
        if run.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{run.stderr[-2000:]}")
        return event_totals(out.read_text())


def event_totals(text: str) -> dict[str, int]:
    """The totals of a callgrind or cachegrind output file's ``text``, by event name."""
    events = re.search(r"^events: (.+)$", text, re.MULTILINE)
    found = re.search(r"^(?:summary|totals): ([\d ]+)$", text, re.MULTILINE)
    if events is None or found is None:
        raise RuntimeError("no event totals in valgrind's output")
    return dict(zip(events.group(1).split(), map(int, found.group(1).split()), strict=True))


def count(
    workload: str,
    *,
    size: int,
    requests: int,
    component: str = "delivery",
    pythonpath: str | None = None,
    variant: str = "",
    simulate: bool = False,
) -> dict[str, float]:
    """Instructions per request (``fanout``), per hop (``chain``) or per call (``components``);
    of the harness's implementation ``variant`` when given, else of this module's genie. With
    ``simulate``, the other ``SIMULATED`` events per unit too.

    ``-P``: the working directory is not put on ``sys.path``, so a checkout there cannot
    shadow ``pythonpath``."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, here) if p)
    totals = []
    for n in (requests, 2 * requests):
        args = [sys.executable, "-P", "-m", "genie_bench.instructions", "--child", workload]
        args += ["--size", str(size), "--requests", str(n), "--component", component]
        if variant:
            args += ["--variant", variant]
        totals.append(valgrind_totals(args, env, simulate))
    per = requests * size if workload == "chain" else requests
    names = SIMULATED if simulate else {"instructions": ("Ir",)}
    return {
        name: sum(totals[1][e] - totals[0][e] for e in events) / per
        for name, events in names.items()
    }


def _variants(text: str) -> list[str]:
    """The harness's implementations ``--variants`` names: known, and needing no policy file."""
    from .variants import VARIANTS

    names = [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        if name not in VARIANTS or "policies" in name:
            known = ", ".join(v for v in VARIANTS if "policies" not in v)
            raise argparse.ArgumentTypeError(f"unknown variant {name!r} (known: {known})")
    return names or [""]


def _events(per: dict[str, float], share: int, unit: str) -> str:
    """``per``'s counts as printed: per request shared among ``share`` recipients, per ``unit``
    (a request's own count follows when it is shared)."""
    # Rounded to an int: a difference a little below zero reads "0", not "-0".
    shown = [f"{round(value / share):,} {name}" for name, value in per.items()]
    line = f"{', '.join(shown)} per {unit}"
    if share > 1:
        line += f" ({per['instructions']:,.0f} instructions per request)"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genie_bench.instructions",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: python -m genie_bench.instructions --workloads chain,fanout",
    )
    parser.add_argument(
        "--workloads",
        default="chain,fanout",
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default: chain,fanout)",
    )
    parser.add_argument("--agents", type=int, default=50, help="relays in the chain (50)")
    parser.add_argument("--n", type=int, default=50, help="fan-out width (50)")
    parser.add_argument(
        "--requests",
        type=int,
        default=20,
        help="requests in the shorter run (20; 1000 calls for components)",
    )
    parser.add_argument(
        "--pythonpath", help="a directory put first on PYTHONPATH (another checkout's tree)"
    )
    parser.add_argument(
        "--variants",
        type=_variants,
        default=[""],
        help="count these implementations of the harness instead (genie bench's names, "
        "without policies: e.g. asyncio,pool,genie); chain, fanout and throughput only",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="run under cachegrind with its cache and branch simulation: also count cache "
        "misses and branch mispredictions (what makes a count of instructions run slower)",
    )
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--component", choices=COMPONENTS, default="delivery", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child, args.size, args.requests, args.component, args.variant)
        return 0
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}")
    # Of genie only: the harness has no such workload.
    for alone in ("ask", "ask-deadline", "request", "components"):
        if args.variants != [""] and alone in workloads:
            parser.error(f"--variants counts chain, fanout and throughput, not {alone}")
    for workload, variant in itertools.product(workloads, args.variants):
        of = f"{variant}, " if variant else ""
        if workload == "components":
            for component in COMPONENTS:
                per = count(
                    "components",
                    size=1,
                    requests=args.requests * 50,
                    component=component,
                    pythonpath=args.pythonpath,
                    simulate=args.simulate,
                )
                print(f"{component}: {_events(per, 1, 'call')}")
            continue
        size = {"chain": args.agents, "ask": 1, "ask-deadline": 1, "request": 1}.get(
            workload, args.n
        )
        requests = 10 * args.requests if workload == "throughput" else args.requests
        per = count(
            workload,
            size=size,
            requests=requests,
            pythonpath=args.pythonpath,
            variant=variant,
            simulate=args.simulate,
        )
        if workload == "chain":
            print(f"{of}chain of {args.agents}: {_events(per, 1, 'hop')}")
        elif workload == "fanout":
            print(f"{of}fan-out N={args.n}: {_events(per, args.n, 'recipient')}")
        elif workload == "ask":
            print(f"ask (a ping and its pong): {_events(per, 1, 'request')}")
        elif workload == "ask-deadline":
            print(f"ask with timeout=30 (a ping and its pong): {_events(per, 1, 'request')}")
        elif workload == "request":
            print(f"ctx.request (a ping and its pong): {_events(per, 1, 'request')}")
        else:
            print(
                f"{of}throughput N={args.n}, 64 in flight (a recipient: its delivery and "
                f"its reply's): {_events(per, args.n, 'recipient')}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
