"""The cost of the shipped policy set per delivery: the policy list evaluated in order (``admit``,
the reference) against the compiled plan (``PolicyPlan``), for the first recipient of a message
and for each further one.

    python -m genie_bench.policy_cost               # timeit, microseconds per delivery
    python -m genie_bench.policy_cost --callgrind   # instructions per delivery (valgrind)
    python -m genie_bench.policy_cost --callgrind --shapes reply --evaluators plan
    python -m genie_bench.policy_cost --chain       # instructions per hop, on a runtime
    python -m genie_bench.policy_cost --fanout      # instructions per reply, fan-out of 1,000

Instructions are counted by running the same process shape three times (0, 1 and 2 recipients
per message) under callgrind: the differences are the first and the second recipient's cost,
start-up and message construction cancel out. ``--chain`` counts a hop of the chain workload of
``genie_bench.instructions`` (a message relayed through 50 agents) with and without the default
policies and metrics, so the policies' and the metrics' share of a hop on a real runtime reads
as a difference. ``--fanout`` does the same for a reply of the harness's fan-out (``genie bench``'s
``fanout`` workload and variants: a request to N agents, each replying, gathered).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from genie import Limits, Message, Payload, Runtime
from genie._base.shipped import shipped_file
from genie._runtime.policy import Decision, admit
from genie.policies import load_policy_file

POLICIES = str(shipped_file("policies/ai-policy.yaml"))
SHAPES = ("40B", "30fields", "reply", "statement")
EVALUATORS = ("reference", "plan")


class Small(Payload):
    message_type = "bench.request"
    seq: int
    blob: str = ""


class Wide(Payload):
    message_type = "bench.wide"
    fields: dict[str, str | int]


class Reply(Payload):
    message_type = "bench.reply"
    seq: int
    agent: int
    blob: str = ""


class Statement(Payload):
    message_type = "bench.statement"
    transactions: list[dict[str, str | int]]


# What the finance pipeline's messages carry from agent to agent: a month of a statement.
_SPENDING = (
    ("salary", "income", "credit"), ("rent payment", "housing", "debit"),
    ("netflix", "entertainment", "debit"), ("mobile recharge", "utilities", "debit"),
    ("uber ride", "transport", "debit"), ("zomato", "food", "debit"),
    ("apollo pharmacy", "health", "debit"), ("amazon order", "shopping", "debit"),
    ("myntra", "shopping", "debit"), ("electricity bill", "utilities", "debit"),
)  # fmt: skip


def _statement(seq: int) -> Statement:
    """Twenty transactions, 2.6 KB of JSON; the amounts differ from one message to the next,
    so each is a text the screen has not read before."""
    return Statement(
        transactions=[
            {
                "id": f"txn-{i + 1:04d}",
                "date": f"2026-{1 + i // 14:02d}-{1 + i * 2 % 28:02d}",
                "description": description,
                "category": category,
                "direction": direction,
                "amount_paise": (seq * 7919 + i * 104_729) % 10_000_000,
            }
            for i, (description, category, direction) in enumerate(_SPENDING * 2)
        ]
    )


@functools.cache
def _request() -> Message:
    # frozen when built: its replies share its metadata
    return Message.new(Small(seq=0, blob="x" * 20), sender="caller")


def message(shape: str, seq: int) -> Message:
    """A message like the harness's (40 bytes of JSON), a 30-field record, a reply of the
    fan-out (each a new message, its metadata its request's), or a finance statement."""
    payload: Payload
    if shape == "reply":
        reply = Reply(seq=0, agent=seq % 50, blob="x" * 20)
        return _request().child(reply, sender=f"w{seq % 50}", id=f"r{seq}", created_at=0.0)
    if shape == "40B":
        payload = Small(seq=seq, blob="x" * 20)
    elif shape == "statement":
        payload = _statement(seq)
    else:
        payload = Wide(
            fields={
                f"{name}_{i}": (f"merchant {i} groceries" if name == "note" else i * 1999)
                for i in range(15)
                for name in ("note", "amount_paise")
            }
        )
    return Message.new(payload, sender="user", metadata={"user_id": "u1", "trace_id": f"t{seq}"})


def evaluator(name: str, policies_path: str) -> Callable[[Message, str], Decision]:
    policies = tuple(load_policy_file(policies_path).policies)
    if name == "plan":
        from genie._runtime.policy_plan import (
            PolicyPlan,  # not there before issue 19: import late
        )

        return PolicyPlan(policies).decide
    limits = Limits()
    return lambda msg, recipient: admit(msg, recipient, 0, limits, policies)


def run(name: str, shape: str, messages: int, recipients: int, policies_path: str) -> list[float]:
    """Evaluate ``recipients`` deliveries of each of ``messages`` messages: the seconds each
    recipient's deliveries took (the first recipient's, the second's...)."""
    decide = evaluator(name, policies_path)
    batch = [message(shape, i) for i in range(messages)]
    names = [f"agent{i}" for i in range(recipients)]
    decide(message(shape, -1), "warm-up")  # compile the type's plan, fill caches
    took = [0.0] * recipients
    clock = time.perf_counter
    for msg in batch:
        for i, recipient in enumerate(names):
            start = clock()
            decide(msg, recipient)
            took[i] += clock() - start
    return took


def timed(
    shape: str, evaluators: list[str], rounds: int, messages: int, policies_path: str
) -> dict[str, list[float]]:
    """Microseconds per delivery, first and second recipient, rounds interleaved."""
    out: dict[str, list[float]] = {}
    gc.disable()  # what is measured is the policies, not when a collection falls
    try:
        for _ in range(rounds):
            for name in evaluators:
                first, second = run(name, shape, messages, 2, policies_path)
                out.setdefault(f"{name} first", []).append(first / messages * 1e6)
                out.setdefault(f"{name} second", []).append(second / messages * 1e6)
    finally:
        gc.enable()
    return out


def instructions(shape: str, name: str, recipients: int, messages: int, policies: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                *(["-S"] if sys.flags.no_site else []),  # run on the same sys.path
                "-m",
                "genie_bench.policy_cost",
                "--once",
                f"{name}:{shape}:{recipients}:{messages}",
                "--policies",
                policies,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same hashing in every run
        )
        summary = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if summary is None:
            raise SystemExit(f"no instruction total in {out}")
        return int(summary.group(1))


CHAIN_VARIANTS = ("genie", "genie+metrics", "genie+policies", "genie+policies+metrics")


async def _chain(variant: str, agents: int, requests: int, policies_path: str) -> None:
    from genie_bench.instructions import Hop, Relay, Sink

    sink = Sink("sink")
    relays = [Relay(f"a{i}", f"a{i + 1}" if i < agents - 1 else "sink") for i in range(agents)]
    policies = load_policy_file(policies_path).policies if "policies" in variant else ()
    metrics = "metrics" in variant
    limits = Limits(max_hops=agents + 1)
    async with Runtime([*relays, sink], limits=limits, policies=policies, metrics=metrics) as rt:
        for _ in range(20 + requests):  # 20 to warm up, as genie_bench.instructions
            sink.arrived = anyio.Event()
            await rt.publish(rt.message(Hop(n=0), sender="caller", recipient="a0"))
            await sink.arrived.wait()


def chain_instructions(variant: str, agents: int, requests: int, policies: str) -> float:
    """Instructions per hop: two runs of ``requests`` and ``2 * requests`` requests."""
    return _per_delivery("--chain-once", variant, agents, requests, policies)


def _per_delivery(once: str, variant: str, width: int, requests: int, policies: str) -> float:
    """Instructions per delivery of ``once`` runs (``width`` deliveries a request): the
    difference of a run of ``requests`` and one of ``2 * requests``."""
    from genie_bench.instructions import valgrind_totals

    env = dict(os.environ, PYTHONHASHSEED="0")
    totals = []
    for n in (requests, 2 * requests):
        args = [sys.executable, "-m", "genie_bench.policy_cost", "--policies", policies]
        args += [once, f"{variant}:{width}:{n}"]
        totals.append(valgrind_totals(args, env)["Ir"])
    return (totals[1] - totals[0]) / (requests * width)


async def _fanout(variant: str, n: int, requests: int, policies_path: str) -> None:
    from genie_bench.workloads import genie

    policies = load_policy_file(policies_path).policies if "policies" in variant else ()
    async with genie(policies, "metrics" in variant).fanout(n, "") as ask:
        for _ in range(3 + requests):  # 3 to warm up
            await ask()


def fanout_instructions(variant: str, n: int, requests: int, policies: str) -> float:
    """Instructions per reply: two runs of ``requests`` and ``2 * requests`` requests."""
    return _per_delivery("--fanout-once", variant, n, requests, policies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genie_bench.policy_cost")
    parser.add_argument("--policies", default=POLICIES)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--evaluators", default=",".join(EVALUATORS))
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument(
        "--chain",
        nargs="?",
        const=",".join(CHAIN_VARIANTS),
        help="instructions per hop of a chain of 50 on a runtime, for these variants",
    )
    parser.add_argument(
        "--chain-requests", type=int, default=20, help="requests in the shorter run (20)"
    )
    parser.add_argument(
        "--fanout",
        nargs="?",
        const=",".join(CHAIN_VARIANTS),
        help="instructions per reply of a fan-out on a runtime, for these variants",
    )
    parser.add_argument("--fanout-n", type=int, default=1000, help="fan-out width (1000)")
    parser.add_argument(
        "--fanout-requests", type=int, default=10, help="requests in the shorter run (10)"
    )
    parser.add_argument("--once", help=argparse.SUPPRESS)  # name:shape:recipients:messages
    parser.add_argument("--chain-once", help=argparse.SUPPRESS)  # variant:agents:requests
    parser.add_argument("--fanout-once", help=argparse.SUPPRESS)  # variant:n:requests
    args = parser.parse_args(argv)
    if args.fanout_once:
        variant, n, requests = args.fanout_once.split(":")
        gc.disable()  # a collection falls in one run and not the other
        anyio.run(_fanout, variant, int(n), int(requests), args.policies)
        return 0
    if args.fanout:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed", file=sys.stderr)
            return 2
        n, more = args.fanout_n, args.fanout_requests
        print(f"instructions per reply (callgrind, fan-out of {n}, {more} more requests)")
        for variant in args.fanout.split(","):
            per = fanout_instructions(variant, n, more, args.policies)
            print(f"{variant:24} {per:9,.0f}")
        return 0
    if args.chain_once:
        variant, agents, requests = args.chain_once.split(":")
        gc.disable()  # a collection falls in one run and not the other: ±30k a hop of noise
        anyio.run(_chain, variant, int(agents), int(requests), args.policies)
        return 0
    if args.chain:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed", file=sys.stderr)
            return 2
        more = args.chain_requests
        print(f"instructions per hop (callgrind, chain of 50, {more} more requests)")
        for variant in args.chain.split(","):
            per = chain_instructions(variant, 50, more, args.policies)
            print(f"{variant:24} {per:9,.0f}")
        return 0
    if args.once:
        name, shape, recipients, messages = args.once.split(":")
        gc.disable()  # collections would fall at different points in runs of different lengths
        run(name, shape, int(messages), int(recipients), args.policies)
        return 0
    shapes, evaluators = args.shapes.split(","), args.evaluators.split(",")
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed", file=sys.stderr)
            return 2
        n = args.messages
        print(f"instructions per delivery (callgrind, {n} messages per run)")
        for shape in shapes:
            for name in evaluators:
                counts = [instructions(shape, name, k, n, args.policies) for k in (0, 1, 2)]
                first, second = (counts[1] - counts[0]) / n, (counts[2] - counts[1]) / n
                print(f"{shape:9} {name:9} first {first:9,.0f}  second {second:9,.0f}")
        return 0
    print(f"microseconds per delivery (median of {args.rounds} rounds)")
    for shape in shapes:
        results = timed(shape, evaluators, args.rounds, args.messages, args.policies)
        for key, values in results.items():
            values.sort()
            print(f"{shape:9} {key:17} {values[len(values) // 2]:7.2f}  (min {values[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
