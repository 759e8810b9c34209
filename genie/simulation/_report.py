"""The simulation report: figures as dataclasses, a JSON document, a text table and a plot.

On virtual time every figure comes from the runtime clock and the seed, never from the
machine, so the JSON document of two runs with the same settings is byte for byte the same.
A rate over a run in which no time passed (on virtual time, agents given no latency) is None
(``null``, ``n/a``), not 0: the sessions did end, in no time at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .._errors import for_terminal
from ._histogram import Histogram
from ._settings import Settings
from ._units import duration, seconds

if TYPE_CHECKING:
    from .._runtime.runtime import Runtime
    from ..pipeline import Pipeline
    from ._inject import Injector
    from ._track import Tracker

__all__ = ["OUTCOMES", "AgentFigures", "Distribution", "Outcomes", "Report", "build_report"]

OUTCOMES = ("completed", "partial", "fallback", "denied", "failed", "timed_out")


@dataclass(frozen=True)
class Outcomes:
    """How the sessions ended; each ends in exactly one of these."""

    total: int
    completed: int  # the pipeline's output arrived
    partial: int  # it arrived, built by a declared gather without some of its parts
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
    throughput: float | None  # handler calls that returned, per second of the run
    utilisation: float | None  # time in handler calls / (run time x max concurrency)
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
    def throughput(self) -> float | None:
        """Sessions ended per second of the run; None when no time passed."""
        return per_second(self.sessions.total, self.duration)

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
        """What ``genie simulate`` prints without ``--json``."""
        return _render(self)

    def plot(self, path: str | os.PathLike[str]) -> None:
        """A PNG: the end-to-end latency distribution and each agent's queueing delay.
        Needs matplotlib (``pip install 'genie-bus[sim]'``)."""
        from ._plot import plot

        s = self.settings
        faults = ", ".join(f.spec for f in s.faults) or "no faults"
        o = self.sessions
        ended = {name: getattr(o, name) for name in OUTCOMES}
        plot(
            path,
            title=f"genie simulate {self.pipeline}: {s.sessions:,} sessions, concurrency "
            f"{s.concurrency}, seed {s.seed}, {s.clock} clock; {faults}",
            sessions=o.total,
            outcomes={name.replace("_", " "): n for name, n in ended.items() if n},
            bins=self.latency_bins,
            marks={"p50": self.latency.p50, "p99": self.latency.p99, "max": self.latency.max},
            queueing={a: (f.queueing.mean, f.queueing.p99) for a, f in self.agents.items()},
        )


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


def per_second(count: float, seconds: float) -> float | None:
    """``count`` per second of ``seconds``; None when no time passed, which gives no rate."""
    return count / seconds if seconds > 0 else None


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
    # And the runtime's own agents (the approvals desk), so that the rows add up.
    ids += [aid for aid in mailboxes if aid not in ids]
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
            throughput=per_second(track.handled, duration),
            utilisation=per_second(track.busy, duration * mb.max_concurrency),
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
    if rt.limits.model_budget:  # listed where the pipeline budgets its model calls
        limits |= {
            name: tracker.limits_fired[f"limit:{name}"]
            for name in ("correlation_tokens", "correlation_cost")
            if getattr(rt.limits, name) is not None
        }
    # The runtime's own counts, each delivery in one place: the rows' deliveries and calls
    # are the agents' parts of ``delivered`` and ``handled`` (the rest: what the sessions' asks
    # collected, the timers agents set, and what never reached a mailbox).
    messages = {
        "published": stats.published,
        "delivered": stats.delivered,
        "to_agents": (
            stats.delivered - stats.collected - stats.timers_set - stats.denied - stats.shed
        ),
        "collected": stats.collected,
        "timers": stats.timers_set,
        "denied": stats.denied,
        # refused to the sessions' asks (the caller is no agent, so it has no row)
        "denied_to_caller": sum(t.denied for aid, t in tracker.agents.items() if aid not in ids),
        "shed": stats.shed,
        "handled": stats.handled,
        "handled_by_agents": sum(mb.handled for mb in mailboxes.values()),
        "timers_handled": stats.timers_handled,
        "dead_lettered": stats.dead_lettered,
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


def _spread(d: Distribution) -> str:
    return (
        f"mean {seconds(d.mean)}  p50 {seconds(d.p50)}  p90 {seconds(d.p90)}  "
        f"p99 {seconds(d.p99)}  p99.9 {seconds(d.p999)}  max {seconds(d.max)}"
    )


def _render(r: Report) -> str:
    s = r.settings
    out = [
        f"{r.pipeline} ({r.path}): {s.sessions:,} sessions, concurrency {s.concurrency}, "
        f"seed {s.seed}, {s.clock} clock, session timeout {seconds(s.timeout)}",
        "faults: " + (", ".join(f.spec for f in s.faults) or "none"),
        "",
        f"run time        {duration(r.duration)} ({s.clock}), "
        + (
            "sessions/s n/a: no virtual time passed (give the agents latency: "
            "--fault 'latency:*=...')"
            if r.throughput is None
            else f"{r.throughput:.4g} sessions/s"
        ),
    ]
    o = r.sessions
    out += [
        "",
        f"{'sessions':<16}{'total':>8}{'completed':>11}{'partial':>9}{'fallback':>10}"
        f"{'denied':>8}{'failed':>8}{'timed out':>11}",
        f"{'':<16}{o.total:>8,}{o.completed:>11,}{o.partial:>9,}{o.fallback:>10,}"
        f"{o.denied:>8,}{o.failed:>8,}{o.timed_out:>11,}",
        "",
        f"latency         {_spread(r.latency)}  (end to end)",
        "",
    ]
    width = max(len("agent"), *(len(a) for a in r.agents))
    out.append(
        f"{'agent':<{width}}  {'delivered':>9} {'handled':>8} {'failed':>7} {'denied':>7} "
        f"{'per s':>8} {'util':>6} {'service':>9} {'queue mean':>10} {'queue p99':>10} "
        f"{'mailbox peak/cap':>16}"
    )
    for aid, a in r.agents.items():
        out.append(
            f"{aid:<{width}}  {a.deliveries:>9,} {a.handled:>8,} {a.failed:>7,} {a.denied:>7,} "
            f"{_shown(a.throughput, '.4g'):>8} {_shown(a.utilisation, '.1%'):>6} "
            f"{seconds(a.service_time):>9} "
            f"{seconds(a.queueing.mean):>10} {seconds(a.queueing.p99):>10} "
            f"{f'{a.mailbox_high_water}/{a.mailbox_capacity}':>16}"
        )
    out.append("")
    if r.dead_letters:
        out.append("dead letters")
        for d in r.dead_letters:
            reason = for_terminal(d["reason"])  # a handler's words, on the report's line
            out.append(f"  {d['count']:>8,}  {d['kind']:<9} {d['agent']:<{width}}  {reason}")
    else:
        out.append("dead letters    none")
    fired = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in r.limits.items())
    out.append(f"limits fired    {fired}")
    out += _faults(r)
    m = r.messages
    balanced = (
        m["delivered"]
        == m["handled"] + m["denied"] + m["dead_lettered"] + m["shed"] + m["in_flight"]
    )
    rows = _row_sums(r)
    out += [
        f"messages        published {m['published']:,}, unrouted {m['unrouted']:,}, "
        f"retries {m['retries']:,}, fallbacks {m['fallbacks']:,}",
        f"  delivered     {m['delivered']:,} = {m['to_agents']:,} to agents + "
        f"{m['collected']:,} collected by sessions + {m['timers']:,} timers + "
        f"{m['denied']:,} denied ({m['denied_to_caller']:,} to the caller) + {m['shed']:,} shed"
        + _check(rows["deliveries"] == m["to_agents"], "to agents", rows["deliveries"]),
        f"  handled       {m['handled']:,} = {m['handled_by_agents']:,} by agents + "
        f"{m['collected']:,} collected + {m['timers_handled']:,} timers"
        + _check(
            m["handled"] == m["handled_by_agents"] + m["collected"] + m["timers_handled"]
            and rows["handled"] == m["handled_by_agents"],
            "by agents",
            rows["handled"],
        ),
        f"  accounting    delivered {m['delivered']:,} = handled {m['handled']:,} + denied "
        f"{m['denied']:,} + dead lettered {m['dead_lettered']:,} + shed {m['shed']:,} + "
        f"in flight {m['in_flight']:,}" + ("" if balanced else "  (ACCOUNTING DOES NOT BALANCE)"),
    ]
    return "\n".join(out) + "\n"


def _shown(rate: float | None, spec: str) -> str:
    """A rate in the table: ``n/a`` where no time passed."""
    return "n/a" if rate is None else format(rate, spec)


def _row_sums(r: Report) -> dict[str, int]:
    """The agent rows' columns summed."""
    return {
        column: sum(getattr(a, column) for a in r.agents.values())
        for column in ("deliveries", "handled", "failed", "denied")
    }


def _check(holds: bool, what: str, rows: int) -> str:
    """Nothing when the agent rows sum to their total; else says so, loudly."""
    return "" if holds else f"  (THE AGENT ROWS DO NOT ADD UP: {what} {rows:,})"


def _faults(r: Report) -> list[str]:
    """One line per fault given: a ``*`` fault sums its agents' counts."""
    specs: dict[str, list[Mapping[str, Any]]] = {f.spec: [] for f in r.settings.faults}
    for row in r.faults:
        specs.setdefault(row["fault"], []).append(row)
    out = []
    for spec, rows in specs.items():
        if not rows:
            continue
        where = rows[0]["agent"] if len(rows) == 1 else f"{len(rows)} agents"
        counts = {k: v for k, v in rows[0].items() if k not in ("fault", "kind", "agent")}
        text = ""
        if "attempts" in counts:
            tried, hit = sum(x["attempts"] for x in rows), sum(x["injected"] for x in rows)
            text = f": {hit:,} of {tried:,} handler calls failed ({hit / max(tried, 1):.2%})"
        elif "evaluated" in counts:
            seen, hit = sum(x["evaluated"] for x in rows), sum(x["denied"] for x in rows)
            text = f": {hit:,} of {seen:,} deliveries denied ({hit / max(seen, 1):.2%})"
        elif "asked" in counts:
            kinds = ("asked", "approved", "rejected", "refused", "too_late")
            n = {k: sum(x[k] for x in rows) for k in kinds}
            text = (
                f": {n['asked']:,} approvals asked: {n['approved']:,} approved, "
                f"{n['rejected']:,} rejected, {n['too_late']:,} ended before the answer"
                + (f", {n['refused']:,} answers refused by the desk" if n["refused"] else "")
            )
        out.append(f"fault           {spec} at {where}{text}")
    return out
