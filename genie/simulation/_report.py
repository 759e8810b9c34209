"""The simulation report: figures as dataclasses, a JSON document, a text table and a plot.

On virtual time every figure comes from the runtime clock and the seed, never from the
machine, so the JSON document of two runs with the same settings is byte for byte the same.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ._histogram import Histogram

if TYPE_CHECKING:
    from .._runtime import Runtime
    from ..pipeline import Pipeline
    from ._inject import Injector
    from ._run import Settings
    from ._track import Tracker

__all__ = ["AgentFigures", "Distribution", "Outcomes", "Report", "build_report"]


@dataclass(frozen=True)
class Outcomes:
    """How the sessions ended; each ends in exactly one of these."""

    total: int
    completed: int  # the pipeline's output arrived
    fallback: int  # a fallback notice reached the caller instead
    denied: int  # a policy or limit denied a delivery the output needed
    failed: int  # a handler failed for good (or the flow ended without the output)
    timed_out: int  # nothing ended the session before its timeout


@dataclass(frozen=True)
class Distribution:
    """Seconds: count, mean, min and max exact; quantiles exact up to 10,000 values, within
    1 % beyond (the histogram keeps constant memory)."""

    count: int
    mean: float
    min: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float

    @classmethod
    def of(cls, histogram: Histogram) -> Distribution:
        return cls(**histogram.summary())


@dataclass(frozen=True)
class AgentFigures:
    deliveries: int  # admitted to its mailbox
    handled: int  # handler calls that returned
    failed: int  # handler calls that raised (each retry counts)
    denied: int  # deliveries refused by a policy or limit
    throughput: float  # handler calls that returned, per second of the run
    utilisation: float  # time in handler calls / (run time x max concurrency)
    service_time: float  # mean seconds per handler call
    queueing: Distribution  # mailbox to handler start
    mailbox_capacity: int
    mailbox_high_water: int
    overdrafts: int  # sends queued past the capacity


@dataclass(frozen=True)
class Report:
    pipeline: str
    path: str
    settings: Settings
    duration: float  # seconds from the first session's start to the last one's end
    sessions: Outcomes
    latency: Distribution  # end to end, per session
    agents: Mapping[str, AgentFigures]
    dead_letters: tuple[Mapping[str, Any], ...]  # kind, reason, agent, count
    limits: Mapping[str, int]
    faults: tuple[Mapping[str, Any], ...]
    messages: Mapping[str, int]
    latency_bins: tuple[tuple[float, float, int], ...]

    @property
    def throughput(self) -> float:
        """Sessions ended per second of the run."""
        return self.sessions.total / self.duration if self.duration > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        s = self.settings
        data: dict[str, Any] = _rounded(
            {
                "pipeline": self.pipeline,
                "path": self.path,
                "settings": {
                    "sessions": s.sessions,
                    "concurrency": s.concurrency,
                    "seed": s.seed,
                    "clock": s.clock,
                    "timeout": s.timeout,
                    "faults": [f.spec for f in s.faults],
                },
                "duration": self.duration,
                "throughput": self.throughput,
                "sessions": asdict(self.sessions),
                "latency": asdict(self.latency),
                "agents": {k: asdict(v) for k, v in self.agents.items()},
                "dead_letters": [dict(d) for d in self.dead_letters],
                "limits": dict(self.limits),
                "faults": [dict(f) for f in self.faults],
                "messages": dict(self.messages),
            }
        )
        return data

    def json(self) -> str:
        return json.dumps(self.as_json(), indent=2) + "\n"

    def text(self) -> str:
        from ._text import render

        return render(self)

    def plot(self, path: str | os.PathLike[str]) -> None:
        """A PNG: the end-to-end latency distribution and each agent's queueing delay.
        Needs matplotlib (``pip install 'genie[sim]'``)."""
        from ._plot import plot

        plot(self, path)


def _rounded(value: Any) -> Any:
    """Microsecond precision for seconds, 6 significant digits for rates: readable, and the
    same on every machine."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if abs(value) >= 1 else round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def build_report(
    pipeline: Pipeline,
    settings: Settings,
    outcomes: Outcomes,
    latency: Histogram,
    duration: float,
    rt: Runtime,
    tracker: Tracker,
    injector: Injector,
) -> Report:
    mailboxes = rt.statistics().mailboxes
    ids = [a.id for a in pipeline.config.agents] + [g.id for g in pipeline.config.gathers]
    agents = {}
    for aid in ids:
        track = tracker.agent(aid)
        mb = mailboxes[aid]
        calls = track.handled + track.failed
        agents[aid] = AgentFigures(
            deliveries=track.deliveries,
            handled=track.handled,
            failed=track.failed,
            denied=track.denied,
            throughput=track.handled / duration if duration > 0 else 0.0,
            utilisation=track.busy / (duration * mb.max_concurrency) if duration > 0 else 0.0,
            service_time=track.busy / calls if calls else 0.0,
            queueing=Distribution.of(track.queueing),
            mailbox_capacity=mb.capacity,
            mailbox_high_water=mb.high_water,
            overdrafts=mb.overdrafts,
        )
    dead = sorted(tracker.dead_letters.items(), key=lambda kv: (-kv[1], kv[0]))
    stats = rt.statistics()
    denials = rt.statistics().policies.denied
    circuit = sum(
        n for (_, reason, _), n in tracker.dead_letters.items() if "CircuitOpen" in reason
    )
    limits = {
        "hops": denials.get("limit:hops", 0),
        "budget": denials.get("limit:budget", 0),
        "handler_deadline": tracker.handler_deadlines,
        "session_timeout": outcomes.timed_out,
        "mailbox_overdraft": sum(mb.overdrafts for mb in mailboxes.values()),
        "shed": stats.shed,
        "circuit_open": circuit,
    }
    messages = {
        "published": stats.published,
        "delivered": stats.delivered,
        "handled": stats.handled,
        "denied": stats.denied,
        "dead_lettered": stats.dead_lettered,
        "shed": stats.shed,
        "in_flight": stats.in_flight,
        "unrouted": stats.unrouted,
        "retries": stats.retries,
        "fallbacks": stats.fallbacks,
    }
    return Report(
        pipeline=pipeline.name,
        path=os.fspath(pipeline.path),
        settings=settings,
        duration=duration,
        sessions=outcomes,
        latency=Distribution.of(latency),
        agents=agents,
        dead_letters=tuple(
            {"kind": kind, "reason": reason, "agent": agent, "count": n}
            for (kind, reason, agent), n in dead
        ),
        limits=limits,
        faults=tuple(injector.counts()),
        messages=messages,
        latency_bins=tuple(latency.bins()),
    )
