"""Agents for tests, simulations and benchmarks: echo, delay, flaky, fan-out and sink.

They accept any message type and pass the payload on unchanged, so they slot into any
pipeline. Randomness is seeded per agent (``seed`` and the agent id), and time is the
runtime clock, so a simulation on virtual time is reproducible.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import ClassVar

from genie import Context, Message, Payload, Risk
from genie.simulation import Latency, LatencyDistribution

__all__ = ["Delay", "Echo", "FanOut", "Flaky", "Sink"]


def _rng(seed: int, agent_id: str) -> random.Random:
    return random.Random(f"{seed}:{agent_id}")


class _Any:
    """Accepts every message type."""

    capabilities: Sequence[str] = ("simulation",)
    risk = Risk.LOW
    consumes_any: ClassVar[bool] = True
    produces: ClassVar[tuple[type[Payload], ...]] = ()

    def __init__(self, id: str) -> None:
        self.id = self.name = id
        self.handled = 0


class _PassThrough(_Any):
    """Emits the payload it received (to ``forwards_to``, else as each subclass says)."""

    passes_through: ClassVar[bool] = True
    forwards_to: tuple[str, ...] = ()


class Echo(_PassThrough):
    """Replies to the sender with the payload it got."""

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        self.handled += 1
        return (ctx.reply(msg.payload),)


class Delay(_PassThrough):
    """Waits a latency drawn from ``distribution`` (runtime clock), then passes the payload to
    ``to`` (or back to the sender)."""

    def __init__(
        self,
        id: str,
        *,
        distribution: LatencyDistribution = "fixed",
        mean: float = 0.1,
        sigma: float = 0.5,
        low: float | None = None,
        high: float | None = None,
        to: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(id)
        self.latency = Latency(distribution, mean, _rng(seed, id), sigma=sigma, low=low, high=high)
        self.to = to
        self.forwards_to = (to,) if to else ()
        self.waited = 0.0

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        seconds = self.latency.draw()
        self.waited += seconds
        await ctx.sleep(seconds)
        self.handled += 1
        return (ctx.emit(msg.payload, recipient=self.to or msg.sender),)


class FlakyError(RuntimeError):
    """The failure a flaky agent injects."""


class Flaky(_PassThrough):
    """Fails a seeded fraction ``rate`` of messages (``FlakyError``); passes the others to
    ``to`` (or back to the sender)."""

    def __init__(self, id: str, *, rate: float = 0.1, to: str | None = None, seed: int = 0) -> None:
        super().__init__(id)
        if not 0 <= rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        self.rate = rate
        self.to = to
        self.forwards_to = (to,) if to else ()
        self.failures = 0
        self._rng = _rng(seed, id)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        if self._rng.random() < self.rate:
            self.failures += 1
            raise FlakyError(f"{self.id}: injected failure on {msg.type!r} {msg.id}")
        self.handled += 1
        return (ctx.emit(msg.payload, recipient=self.to or msg.sender),)


class FanOut(_PassThrough):
    """Sends the payload to every agent of ``targets``."""

    def __init__(self, id: str, *, targets: list[str]) -> None:
        super().__init__(id)
        if not targets:
            raise ValueError("targets must name at least one agent")
        self.targets = self.forwards_to = tuple(targets)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        self.handled += 1
        return tuple(ctx.emit(msg.payload, recipient=t) for t in self.targets)


class Sink(_Any):
    """Counts what it receives and keeps the last ``keep`` messages; emits nothing."""

    def __init__(self, id: str, *, keep: int = 100) -> None:
        super().__init__(id)
        if keep < 0:
            raise ValueError("keep must be >= 0")
        self.received: deque[Message] = deque(maxlen=keep)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        self.handled += 1
        self.received.append(msg)
        return ()
