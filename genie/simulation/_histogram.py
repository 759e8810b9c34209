"""A latency histogram in bounded memory: exact quantiles for the first 10,000 values, then
(so a long simulation stays in constant memory) quantiles within 1 % of the true value from
log-spaced buckets. Count, sum, min and max are always exact."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["Histogram"]

_RATIO = 1.02  # bucket i holds values in [RATIO**i, RATIO**(i+1)): its middle is within 1 %
_LOG_RATIO = math.log(_RATIO)
_TINY = 1e-9  # values at or below a nanosecond count as zero
EXACT = 10_000  # values kept as they are, for exact quantiles


class Histogram:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0
        self._zero = 0
        self._buckets: dict[int, int] = {}
        self._exact: list[float] | None = []

    def add(self, value: float) -> None:
        if self._exact is not None:
            if len(self._exact) < EXACT:
                self._exact.append(value)
            else:
                self._exact = None
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= _TINY:
            self._zero += 1
            return
        index = math.floor(math.log(value) / _LOG_RATIO)
        self._buckets[index] = self._buckets.get(index, 0) + 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the values lie (nearest rank)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        if self._exact is not None:
            return sorted(self._exact)[rank - 1]
        seen = self._zero
        if rank <= seen:
            return 0.0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if rank <= seen:
                middle: float = _RATIO ** (index + 0.5)
                return min(max(middle, self.min), self.max)
        return self.max

    def bins(self) -> list[tuple[float, float, int]]:
        """``(low, high, count)`` of every non-empty bucket, in order (for plots)."""
        out = [(0.0, _TINY, self._zero)] if self._zero else []
        out += [(_RATIO**i, _RATIO ** (i + 1), self._buckets[i]) for i in sorted(self._buckets)]
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "min": self.min if self.count else 0.0,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "p999": self.quantile(0.999),
            "max": self.max,
        }
