"""The targets over several runs of the harness, with their spread, not the best run:

    python -m genie_bench.spread --runs 5 -- --workloads fanout --n 50,1000

Everything after ``--`` is ``genie bench``'s options. Each run measures afresh (its own
floors, its own worker processes); each target's figure is reported for every run with its
median, lowest and highest, and how many runs met it; with ``--loop asyncio,uvloop``, so is
each target judged again on uvloop (named ``... (uvloop)``). ``DIR/run-K/results.json`` keeps
each run whole; ``DIR/spread.json`` and ``DIR/spread.md`` the table (``DIR``:
``benchmarks/results/spread`` by default, where the committed spread is).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genie._base.progress import ProgressLine

from . import report
from .cli import DEFAULT_OUT, Settings, build_parser, run

__all__ = ["main", "spread"]


def spread(runs: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each target measured in any of ``runs`` (each run's ``report.targets``), in the order
    they first appear: its figure in every run (None where that run had none), and the
    median, lowest, highest and met count of those it had."""
    order: dict[str, dict[str, Any]] = {}
    for k, targets in enumerate(runs):
        for t in targets:
            row = order.setdefault(
                t["target"],
                {
                    "target": t["target"],
                    "limit": t["limit"],
                    "at_most": t["at_most"],
                    "unit": t["unit"],
                    "runs": [None] * len(runs),
                    "met_runs": 0,
                },
            )
            row["runs"][k] = t["measured"]
            row["met_runs"] += bool(t["met"])
    for row in order.values():
        measured = [m for m in row["runs"] if m is not None]
        row |= {
            "median": statistics.median(measured),
            "min": min(measured),
            "max": max(measured),
            "measured_runs": len(measured),
        }
    return list(order.values())


def provenance(runs: Sequence[dict[str, Any]]) -> str:
    """When and on what the runs were measured: their first and last start, the machine, the
    commit (every run's, when they differ)."""
    envs = [r["environment"] for r in runs]
    first, last = envs[0], envs[-1]
    commits = ", ".join(dict.fromkeys(e["commit"] for e in envs))
    return (
        f"{len(envs)} runs, {first['date']} to {last['date']}; Python {first['python']} on "
        f"{first['machine']}, {first['cpus']} CPUs; genie {first['genie']} ({commits})"
    )


def markdown(rows: list[dict[str, Any]], command: str, measured: str = "") -> str:
    lines = [f"`{command}`", "", *([measured, ""] if measured else [])]
    header = ["target", "median", "lowest", "highest", "met in", "each run"]
    body = [
        [
            row["target"],
            report._f(row["median"], 2),
            report._f(row["min"], 2),
            report._f(row["max"], 2),
            f"{row['met_runs']} of {row['measured_runs']}",
            " ".join("-" if m is None else report._f(m, 2) for m in row["runs"]),
        ]
        for row in rows
    ]
    return "\n".join([*lines, *report._table(header, body)])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    bench = args[args.index("--") + 1 :] if "--" in args else []
    own = args[: args.index("--")] if "--" in args else args
    parser = argparse.ArgumentParser(
        prog="python -m genie_bench.spread", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of the harness (5)")
    parser.add_argument(
        "--out",
        default=str(DEFAULT_OUT / "spread"),
        help=f"where to write ({DEFAULT_OUT / 'spread'}, replacing the committed spread)",
    )
    mine = parser.parse_args(own)
    if mine.runs < 2:
        parser.error(f"--runs: a spread needs at least 2 runs, not {mine.runs}")
    settings = Settings.from_args(build_parser().parse_args(bench))
    out = Path(mine.out)
    progress = ProgressLine(sys.stderr)
    per_run = []
    kept = []
    for k in range(mine.runs):
        progress(f"run {k + 1} of {mine.runs}")
        results = run(settings, progress)
        results["targets"] = report.targets(results)
        results["loop_targets"] = report.loop_targets(results)
        folder = out / f"run-{k + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        per_run.append(results["targets"] + results["loop_targets"])
        kept.append(results)
    progress.done()
    rows = spread(per_run)
    command = " ".join(["python -m genie_bench.spread", *args])
    measured = provenance(kept)
    (out / "spread.json").write_text(
        json.dumps({"command": command, "measured": measured, "targets": rows}, indent=2)
    )
    text = markdown(rows, command, measured)
    (out / "spread.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
