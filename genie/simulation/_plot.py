"""The report's PNG: end-to-end latency distribution, and queueing delay per agent.

It draws plain figures (``Report.plot`` hands them over), so it knows nothing of reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._settings import SimulationError
from ._units import seconds

__all__ = ["figure", "plot", "writable"]


def figure() -> Any:
    """matplotlib's ``Figure`` class, drawn without pyplot: no backend is chosen and no
    figure registered, so a caller's own matplotlib (a notebook's backend, its open figures)
    is left as it was; a clear error when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SimulationError(
            "--out draws a PNG with matplotlib, which is not installed: "
            "pip install 'genie-bus[sim]'"
        ) from None
    return Figure


def writable(path: str | os.PathLike[str], by: str = "the path") -> None:
    """Refuses, with a ``SimulationError``, a ``path`` the PNG cannot be drawn to (given
    ``by``), and a missing matplotlib: checked by ``genie simulate --out`` before the run,
    and by ``plot``."""
    figure()
    if not isinstance(path, str | os.PathLike):
        raise SimulationError(f"{by} must be a file's path, not {type(path).__name__}")
    out = Path(path)
    try:
        parent_is_folder, out_is_folder = out.parent.is_dir(), out.is_dir()
    except OSError as exc:  # a name the system cannot look up (too long)
        raise SimulationError(f"cannot write {os.fspath(path)}: {exc.strerror}") from None
    if not parent_is_folder:
        raise SimulationError(
            f"cannot write {os.fspath(path)}: {os.fspath(out.parent)} is not a directory"
        )
    # matplotlib would add ".png" to a name without one (a folder's name too), and fail on
    # another suffix with its own ValueError.
    if out_is_folder or out.suffix.lower() != ".png":
        raise SimulationError(
            f"cannot write {os.fspath(path)}: {by} names the PNG file to draw, ending in .png"
        )


def plot(
    path: str | os.PathLike[str],
    *,
    title: str,
    sessions: int,
    outcomes: Mapping[str, int],
    bins: Sequence[tuple[float, float, int]],
    marks: Mapping[str, float],
    queueing: Mapping[str, tuple[float, float]],
) -> None:
    """``outcomes``: how many sessions ended each way (they sum to ``sessions``); ``bins``:
    (low, high, sessions) of end-to-end latency; ``marks``: p50, p99 and max; ``queueing``:
    each agent's (mean, p99) queueing delay."""
    writable(path)
    fig = figure()(figsize=(13, 5.5))
    left, right = fig.subplots(1, 2)
    shown = [(low, high, n) for low, high, n in bins if high > 1e-9]
    if shown:
        left.stairs(
            [n for _, _, n in shown],
            [shown[0][0], *(high for _, high, _ in shown)],
            fill=True,
            alpha=0.6,
        )
        left.set_xscale("log")
    for (name, value), style in zip(marks.items(), ("-", "--", ":"), strict=True):
        if value > 0:
            left.axvline(value, color="k", linestyle=style, label=f"{name} {seconds(value)}")
    left.set_xlabel("end-to-end latency (s, log scale)")
    left.set_ylabel("sessions")
    ended = ", ".join(f"{n:,} {name}" for name, n in outcomes.items())
    left.set_title(f"{sessions:,} sessions ({ended}): latency distribution", fontsize=10)
    if max(marks.values(), default=0) > 0:
        left.legend()
    names = list(queueing)
    means = [queueing[a][0] for a in names]
    p99s = [queueing[a][1] for a in names]
    ys = range(len(names))
    right.barh([y + 0.2 for y in ys], p99s, height=0.4, label="p99", color="tab:orange")
    right.barh([y - 0.2 for y in ys], means, height=0.4, label="mean", color="tab:blue")
    right.set_yticks(list(ys), names)
    right.invert_yaxis()
    right.set_xlabel("queueing delay: mailbox to handler start (s)")
    right.set_title("queueing per agent")
    right.legend()
    right.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise SimulationError(f"cannot write {os.fspath(path)}: {exc.strerror}") from exc
