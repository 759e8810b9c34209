"""How the runtime hosts one agent: its mailbox, concurrency, deadline, retries and breaker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from .._base.record import Record
from .._base.resilience import (
    _DEFAULT_BREAKER,
    _NO_RETRY,
    BreakerPolicy,
    RetryPolicy,
    at_least,
    positive_seconds,
)
from .._errors import ConfigurationError

__all__ = ["AgentOptions", "OffloadTo", "Overflow"]


Overflow = Literal["overdraft", "shed"]
OffloadTo = Literal["thread", "process"]


class AgentOptions(Record):
    """How the runtime hosts one agent.

    ``mailbox_size`` bounds what outside publishers can queue (they wait, or get
    ``WouldBlockError``). Sends from handlers never wait, so cycles cannot deadlock: with
    ``overflow="overdraft"`` (default) they are queued past the bound and counted; with
    ``"shed"`` they are shed, recorded and reported to waiting gathers.

    ``offload`` says where the agent's plain ``def`` handlers run: ``"thread"`` (default), a
    worker thread of the runtime; ``"process"``, the runtime's process pool, for CPU-bound work
    (payloads cross as JSON through the message-type registry; see docs/concepts.md). An
    ``async def`` handler always runs on the event loop.
    """

    mailbox_size: int = 1024
    max_concurrency: int = 1
    deadline: float | None = None
    # Frozen values: one default instance serves every options object.
    retry: RetryPolicy = _NO_RETRY
    breaker: BreakerPolicy | None = _DEFAULT_BREAKER
    fallback: str | None = None
    overflow: Overflow = "overdraft"
    offload: OffloadTo = "thread"
    # A full mailbox is refused as "full (capacity N)"; a fault sets capacity:agent=N.
    _known_as: ClassVar[Mapping[str, str]] = {"capacity": "mailbox_size"}

    def __post_init__(self) -> None:
        for name in ("mailbox_size", "max_concurrency"):
            value = getattr(self, name)
            if not (isinstance(value, int) and at_least(value, 1)):
                raise ConfigurationError(
                    f"{name} must be a whole number of at least 1, not {value!r}"
                )
        positive_seconds(self.deadline, "deadline")
        if self.overflow not in ("overdraft", "shed"):
            raise ConfigurationError(
                f"overflow must be 'overdraft' or 'shed', not {self.overflow!r}"
            )
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy, not {self.retry!r} (the default retries nothing)"
            )
        if self.breaker is not None and not isinstance(self.breaker, BreakerPolicy):
            raise ConfigurationError(
                f"breaker must be a BreakerPolicy or None, not {self.breaker!r}"
            )
        if self.offload not in ("thread", "process"):
            raise ConfigurationError(f"offload must be 'thread' or 'process', not {self.offload!r}")
