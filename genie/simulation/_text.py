"""The report as text: what ``genie simulate`` prints without ``--json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._report import Distribution, Report

__all__ = ["duration", "render", "seconds"]


def seconds(value: float) -> str:
    """A latency, in the unit that reads best: 0, 850 µs, 12.3 ms, 1.82 s, 3m 12s, 2h 05m."""
    if value == 0:
        return "0"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.3g} ms"
    if value < 60:
        return f"{value:.3g} s"
    return duration(value)


def duration(value: float) -> str:
    whole = round(value)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{value:.3g} s"


def _spread(d: Distribution) -> str:
    return (
        f"mean {seconds(d.mean)}  p50 {seconds(d.p50)}  p90 {seconds(d.p90)}  "
        f"p99 {seconds(d.p99)}  p99.9 {seconds(d.p999)}  max {seconds(d.max)}"
    )


def render(r: Report) -> str:
    s = r.settings
    out = [
        f"{r.pipeline} ({r.path}): {s.sessions:,} sessions, concurrency {s.concurrency}, "
        f"seed {s.seed}, {s.clock} clock, session timeout {seconds(s.timeout)}",
        "faults: " + (", ".join(f.spec for f in s.faults) or "none"),
        "",
        f"run time        {duration(r.duration)} ({s.clock}), {r.throughput:.4g} sessions/s",
    ]
    o = r.sessions
    out += [
        "",
        f"{'sessions':<16}{'total':>8}{'completed':>11}{'fallback':>10}{'denied':>8}"
        f"{'failed':>8}{'timed out':>11}",
        f"{'':<16}{o.total:>8,}{o.completed:>11,}{o.fallback:>10,}{o.denied:>8,}"
        f"{o.failed:>8,}{o.timed_out:>11,}",
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
            f"{a.throughput:>8.4g} {a.utilisation:>6.1%} {seconds(a.service_time):>9} "
            f"{seconds(a.queueing.mean):>10} {seconds(a.queueing.p99):>10} "
            f"{f'{a.mailbox_high_water}/{a.mailbox_capacity}':>16}"
        )
    out.append("")
    if r.dead_letters:
        out.append("dead letters")
        for d in r.dead_letters:
            out.append(f"  {d['count']:>8,}  {d['kind']:<9} {d['agent']:<{width}}  {d['reason']}")
    else:
        out.append("dead letters    none")
    fired = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in r.limits.items())
    out.append(f"limits fired    {fired}")
    out += _faults(r)
    m = r.messages
    balanced = m["delivered"] == m["handled"] + m["denied"] + m["dead_lettered"] + m["shed"]
    out.append(
        "messages        "
        + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in m.items())
        + (
            "  (delivered = handled + denied + dead-lettered + shed)"
            if balanced
            else "  (ACCOUNTING DOES NOT BALANCE)"
        )
    )
    return "\n".join(out) + "\n"


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
        out.append(f"fault           {spec} at {where}{text}")
    return out
