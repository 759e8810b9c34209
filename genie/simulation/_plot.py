"""The report's PNG: end-to-end latency distribution, and queueing delay per agent."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._run import SimulationError
from ._text import seconds

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["plot", "pyplot"]


def pyplot() -> Any:
    """matplotlib's pyplot on a file-only backend; a clear error when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SimulationError(
            "--out draws a PNG with matplotlib, which is not installed: pip install 'genie[sim]'"
        ) from None
    return plt


def plot(report: Report, path: str | os.PathLike[str]) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    bins = [(low, high, n) for low, high, n in report.latency_bins if high > 1e-9]
    if bins:
        left.stairs(
            [n for _, _, n in bins],
            [bins[0][0], *(high for _, high, _ in bins)],
            fill=True,
            alpha=0.6,
        )
        left.set_xscale("log")
    lat = report.latency
    for name, value, style in (
        ("p50", lat.p50, "-"),
        ("p99", lat.p99, "--"),
        ("max", lat.max, ":"),
    ):
        if value > 0:
            left.axvline(value, color="k", linestyle=style, label=f"{name} {seconds(value)}")
    left.set_xlabel("end-to-end latency (s, log scale)")
    left.set_ylabel("sessions")
    left.set_title(f"{report.sessions.total:,} sessions: latency distribution")
    if lat.max > 0:
        left.legend()
    names = list(report.agents)
    means = [report.agents[a].queueing.mean for a in names]
    p99s = [report.agents[a].queueing.p99 for a in names]
    ys = range(len(names))
    right.barh([y + 0.2 for y in ys], p99s, height=0.4, label="p99", color="tab:orange")
    right.barh([y - 0.2 for y in ys], means, height=0.4, label="mean", color="tab:blue")
    right.set_yticks(list(ys), names)
    right.invert_yaxis()
    right.set_xlabel("queueing delay: mailbox to handler start (s)")
    right.set_title("queueing per agent")
    right.legend()
    right.grid(True, axis="x", alpha=0.3)
    s = report.settings
    faults = ", ".join(f.spec for f in s.faults) or "no faults"
    fig.suptitle(
        f"genie simulate {report.pipeline}: {s.sessions:,} sessions, concurrency "
        f"{s.concurrency}, seed {s.seed}, {s.clock} clock; {faults}",
        fontsize=9,
    )
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise SimulationError(f"cannot write {os.fspath(path)}: {exc.strerror}") from exc
    finally:
        plt.close(fig)
