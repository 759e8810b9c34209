"""Per-key rate limits: a token bucket per principal, refilled continuously."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Bucket", "RateLimits"]


@dataclass(slots=True)
class Bucket:
    """``burst`` requests at once, then ``rate`` a second."""

    rate: float
    burst: int
    tokens: float
    at: float

    def take(self, now: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there is."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimits:
    """One bucket per principal (a principal's keys share it), created on first use."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1, math.ceil(rate))
        self._buckets: dict[str, Bucket] = {}

    def take(
        self, principal: str, now: float, rate: float | None = None, burst: int | None = None
    ) -> float:
        """0.0 when ``principal`` may go on; else how long to wait (the ``Retry-After``)."""
        bucket = self._buckets.get(principal)
        if bucket is None:
            r = rate or self.rate
            b = burst or (self.burst if rate is None else max(1, math.ceil(r)))
            bucket = self._buckets[principal] = Bucket(r, b, float(b), now)
        return bucket.take(now)
