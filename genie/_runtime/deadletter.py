"""Dead letters: what could not be handled or delivered, with the reason, kept for inspection."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Literal

from .._base.clock import Clock
from .._base.record import Record
from .._message.envelope import Message

__all__ = ["DeadLetter", "DeadLetters"]

DeadLetterKind = Literal["failed", "cancelled", "shed", "unrouted"]


class DeadLetter(Record):
    """The original ``message``, where it was going, and why it ended here.

    ``kind``: ``failed`` (handler, retries and fallback exhausted), ``cancelled`` (runtime closed
    or correlation cancelled before it ran), ``shed`` (overflow policy), ``unrouted`` (no
    recipient, unknown recipient).

    ``tracebacks``: for a ``failed`` letter, the traceback of each of its last attempts (at
    most three, oldest first, each at most 4,000 characters), genie's and the event loop's
    frames folded so that each starts with the line of the handler's code that raised.
    """

    message: Message
    agent_id: str | None
    kind: DeadLetterKind
    reason: str
    error_type: str | None
    attempts: int
    at: datetime
    tracebacks: tuple[str, ...] = ()

    @property
    def traceback(self) -> str | None:
        """The traceback of the last attempt, if the letter is a handler's failure."""
        return self.tracebacks[-1] if self.tracebacks else None


class DeadLetters:
    """A bounded store of recent dead letters plus exact counts of all of them by kind.

    ``retention`` (the board file's ``data.retention_days``) drops letters older than that,
    as letters are added and as they are read (by ``clock``, the runtime's): they hold message
    payloads, and one is never read past its retention.
    """

    def __init__(
        self,
        capacity: int = 10_000,
        retention: timedelta | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._items: deque[DeadLetter] = deque(maxlen=capacity)
        self.counts: Counter[str] = Counter()
        self.retention = retention
        self._clock = clock  # its ``now`` is the loop's once the runtime starts: read late

    def _kept(self, at: datetime | None = None) -> deque[DeadLetter]:
        """The letters within their retention at ``at`` (now, by default), older ones dropped."""
        items = self._items
        if self.retention is None or not items:
            return items
        if at is None:
            if self._clock is None:
                return items
            at = self._clock.now()
        try:
            oldest = at - self.retention
        except OverflowError:
            # A retention reaching back before the calendar's first day: no letter is that old.
            return items
        while items and items[0].at < oldest:
            items.popleft()
        return items

    def add(self, letter: DeadLetter) -> None:
        self._kept(letter.at).append(letter)
        self.counts[letter.kind] += 1

    def __iter__(self) -> Iterator[DeadLetter]:
        return iter(tuple(self._kept()))

    def __len__(self) -> int:
        return len(self._kept())

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def for_correlation(self, correlation_id: str) -> list[DeadLetter]:
        return [d for d in self._kept() if d.message.correlation_id == correlation_id]
