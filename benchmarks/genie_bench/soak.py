"""The soak: does memory stay flat over a long simulation?

``soak`` runs SESSIONS simulated sessions of ``soak.yaml`` (a fan-out, a declared gather,
retried failures and denials in every session) on virtual time, and samples, every EVERY
sessions, the objects the garbage collector tracks, the memory blocks Python has allocated
(``sys.getallocatedblocks``: strings and floats count too) and the resident set. Bounded stores
fill first (the correlator remembers the last 4,096 closed gathers, histograms keep exact values
up to 10,000, the simulation's runtime the last 100 dead letters and audit records); from then
on, anything kept per finished session shows as growth. ``genie bench --workloads soak`` runs
100,000 sessions in a fresh process; tests/simulation/test_simulate.py runs a short one.
"""

from __future__ import annotations

import gc
import json
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from genie import BaseAgent, Context, Message, Payload, handler
from genie.pipeline import Gathered
from genie.simulation import Progress, Report, simulate

__all__ = ["FAULTS", "PIPELINE", "Sample", "as_json", "growth", "soak"]

PIPELINE = Path(__file__).with_name("soak.yaml")
FAULTS = ("error:left=0.02", "deny:right=0.01")


class SoakServe(Payload):
    message_type = "soak_serve"
    n: int = 0


class SoakReturn(Payload):
    message_type = "soak_return"
    n: int = 0


class SoakBoth(Gathered):
    message_type = "soak_both"


class SoakSummary(Payload):
    message_type = "soak_summary"
    text: str


class Server(BaseAgent):
    produces = (SoakReturn,)

    @handler
    async def on_serve(self, payload: SoakServe, ctx: Context) -> Message:
        return ctx.emit(SoakReturn(n=payload.n + 1))


class Collector(BaseAgent):
    """Summarises the gather's bundle: which parts came, which are missing."""

    produces = (SoakSummary,)

    @handler
    async def on_both(self, payload: SoakBoth, ctx: Context) -> Message:
        text = f"{payload.status}: got {sorted(payload.parts)}, missing {list(payload.missing)}"
        return ctx.emit(SoakSummary(text=text))


def numbered(rng: random.Random, session: int) -> str:
    """Each session's entry says which session it is."""
    return json.dumps({"n": session})


@dataclass(frozen=True)
class Sample:
    sessions: int  # ended so far
    objects: int  # tracked by the garbage collector
    blocks: int  # allocated by Python's allocator
    rss: int  # bytes


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def soak(sessions: int, every: int, *, concurrency: int = 16) -> tuple[Report, list[Sample]]:
    samples: list[Sample] = []

    def sample(p: Progress) -> None:
        gc.collect()
        samples.append(Sample(p.done, len(gc.get_objects()), sys.getallocatedblocks(), _rss()))

    report = simulate(
        PIPELINE,
        sessions=sessions,
        concurrency=concurrency,
        seed=1,
        faults=FAULTS,
        progress=sample,
        every=every,
    )
    return report, samples


def growth(samples: list[Sample], warm: int) -> dict[str, int]:
    """How far each measure rose above its value at ``warm`` sessions, at most, later on.

    Growth, not spread: the last sample is taken as the run winds down, with fewer sessions in
    flight, so it is lower; a leak only ever adds.
    """
    later = [s for s in samples if s.sessions >= warm]
    if len(later) < 2:
        raise ValueError(f"need two samples from {warm:,} sessions on, got {len(later)}")
    first = later[0]
    return {
        key: max(getattr(s, key) for s in later) - getattr(first, key)
        for key in ("objects", "blocks", "rss")
    }


def as_json(report: Report, samples: list[Sample], warm: int) -> dict[str, object]:
    """What ``genie bench`` keeps of a soak."""
    return {
        "sessions": report.sessions.total,
        "completed": report.sessions.completed,
        "partial": report.sessions.partial,  # a failed or denied branch left out of the bundle
        "failures_injected": report.faults[0]["injected"],
        "denied": report.agents["right"].denied,
        "warm_up": warm,
        "samples": [asdict(s) for s in samples],
        "growth": growth(samples, warm),
    }
