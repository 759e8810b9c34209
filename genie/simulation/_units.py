"""Seconds as people read them: in the report's text, its plot and the progress line."""

from __future__ import annotations

__all__ = ["duration", "seconds"]


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
