"""Per-key rate limits: a token bucket per principal, refilled continuously."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["Bucket", "FailedAuth", "RateLimits"]


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


class FailedAuth:
    """Failed authentications per client address: ``burst`` at once, then ``rate`` a
    second; past that, :meth:`wait` says how long the address must wait (its ``Retry-After``),
    whatever key it then presents, so keys cannot be guessed at the speed of the network.

    At most ``addresses`` are remembered, the one that failed longest ago forgotten first: the
    memory stays bounded however many addresses a client spreads its guesses over (each new
    one still starts with only ``burst`` guesses)."""

    def __init__(self, rate: float, burst: int, addresses: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.addresses = addresses
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def wait(self, address: str, now: float) -> float:
        """0.0 when ``address`` may try; else the seconds until it may."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return 0.0
        tokens = min(bucket.burst, bucket.tokens + (now - bucket.at) * bucket.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / bucket.rate

    def failed(self, address: str, now: float) -> bool:
        """Counts a failure of ``address``; True when it used the address's last try."""
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = Bucket(self.rate, self.burst, float(self.burst), now)
            while len(self._buckets) > self.addresses:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        bucket.take(now)
        return self.wait(address, now) > 0.0
