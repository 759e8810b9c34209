"""``genie simulate``: the command-line face of ``simulate``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .._base.clock import spelt
from .._base.progress import ProgressLine
from .._cli.options import count, path_option, seconds
from ..pipeline._args import add_set, load
from ._units import duration

if TYPE_CHECKING:
    from ._run import Progress

__all__ = ["add_parser"]


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        if not text.strip().lstrip("+-").isdecimal():
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    # Digits past what Python reads as a number, and writes as text to seed each stream.
    raise argparse.ArgumentTypeError(
        f"a whole number of at most {sys.get_int_max_str_digits()} digits, not {spelt(text)}"
    )


def add_parser(commands: Any) -> None:
    sim = commands.add_parser(
        "simulate",
        help="run many seeded sessions of a pipeline with injected faults, on virtual time",
        description="Run SESSIONS sessions of PIPELINE (inputs from its simulation.inputs "
        "generator, seeded per session), CONCURRENCY at a time, with the given faults, and "
        "report how they ended, their end-to-end latency, and per agent throughput, "
        "utilisation, queueing delay and mailbox peak; dead letters and limits fired. On "
        "virtual time the JSON report is the same for the same options "
        "on any machine. Exit 0 with a report, 2 for bad options, pipeline or fault spec.",
        epilog="Fault specs (repeatable): error:AGENT=RATE; "
        "latency:AGENT=fixed|uniform|exponential|lognormal,mean=200ms[,sigma=0.5][,low=,high=]; "
        "capacity:AGENT=N[,overflow=shed|overdraft]; deny:AGENT=FRACTION; "
        "answer:AGENT=exponential,mean=2h[,approve=0.9] (a person answers AGENT's approvals; "
        "without it nobody does). AGENT may be * "
        "(quote it) for every agent. See docs/simulation.md.",
    )
    sim.add_argument("pipeline", help="pipeline YAML (e.g. config/pipelines/finance.yaml)")
    sim.add_argument("--sessions", type=count, default=1000, metavar="N", help="default 1000")
    sim.add_argument(
        "--concurrency", type=count, default=16, metavar="C", help="sessions in flight (16)"
    )
    sim.add_argument("--seed", type=_seed, default=0, metavar="S", help="default 0")
    sim.add_argument(
        "--clock",
        choices=("virtual", "real"),
        default="virtual",
        help="virtual: a clock that jumps to the next timer, reproducible (default); "
        "real: the machine's clock",
    )
    sim.add_argument(
        "--fault", action="append", default=[], metavar="SPEC", help="inject a fault; repeatable"
    )
    sim.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="seconds a session may take (default: the pipeline's timeout)",
    )
    sim.add_argument("--json", action="store_true", help="print the report as JSON")
    sim.add_argument(
        "--out",
        type=path_option,
        metavar="PATH",
        help="also draw the latency and queueing plot as a PNG here",
    )
    sim.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")
    add_set(sim)
    sim.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    # The simulation's modules only for ``genie simulate``: every other command builds this
    # parser, and a ``genie run`` should not load them.
    from ._plot import writable
    from ._run import simulate

    pipeline = load(args)
    if args.out is not None:
        writable(args.out, "--out")  # said now, not after the whole run
    line = None if args.quiet else ProgressLine(sys.stderr)

    shown = [-1]

    def show(p: Progress) -> None:
        assert line is not None
        tenth = p.done * 10 // p.total
        if not line.tty and tenth == shown[0]:
            return  # in a log, one line per tenth of the run is plenty
        shown[0] = tenth
        ended = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(p.outcomes.items()))
        line(
            f"simulate {pipeline.name}: {p.done:,}/{p.total:,} sessions ({ended}), "
            f"{duration(p.clock)} {args.clock}"
        )

    report = simulate(
        pipeline,
        sessions=args.sessions,
        concurrency=args.concurrency,
        seed=args.seed,
        clock=args.clock,
        faults=args.fault,
        timeout=args.timeout,
        progress=show if line is not None else None,
    )
    if line is not None:
        line.done()
        print(
            f"genie simulate: {args.sessions:,} sessions in {line.elapsed:.1f} s of real time "
            f"({duration(report.duration)} on the {args.clock} clock)",
            file=sys.stderr,
        )
    print(report.json() if args.json else report.text(), end="")
    if args.out is not None:
        report.plot(args.out)
        if line is not None:
            print(f"genie simulate: plot written to {args.out}", file=sys.stderr)
    return 0
