"""The observer hook: what happens to every message, told to metrics, event streams and yours.

The runtime calls its observers synchronously, on its own loop, at the points where its
accounting changes. With no observer attached each point costs one ``is None`` check, which is
why metrics and event streams are observers rather than counters in the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._correlator import GatherResult
from ._deadletter import DeadLetter
from ._log import lazy_logger
from ._message import Message

__all__ = ["Observer"]

_log = lazy_logger("genie.runtime")


class Observer:
    """Subclass and override what you need; every method defaults to doing nothing.

    Methods run inline on the runtime's loop: they must be quick and must not block (buffer,
    count, or hand off). An exception is logged and counted in ``statistics().observer_errors``;
    it never reaches the message's path. Observers see ids, types and outcomes, not payloads,
    so they need no governance (a ``Tap`` sees payloads and is governed).
    """

    # True only for observers written so that they cannot raise (the built-in ones): the
    # runtime then calls a lone observer without the guard.
    never_raises = False

    def published(self, msg: Message, recipients: int) -> None:
        """``msg`` was published and routed to ``recipients`` agents (its fan-out width)."""

    def delivered(self, msg: Message, agent_id: str) -> None:
        """``msg`` was admitted and queued in the mailbox of ``agent_id``."""

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        """Admission refused ``msg`` to ``agent_id``: ``policy`` (or ``limit:hops`` /
        ``limit:budget``) said ``reason``."""

    def limit_fired(self, msg: Message, agent_id: str, limit: str, reason: str) -> None:
        """While ``agent_id`` handled ``msg``, ``limit`` (``limit:correlation_tokens`` or
        ``limit:correlation_cost``) refused a model call: once per correlation."""

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        """A handler call returned ``outputs`` messages after ``duration`` clock seconds."""

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        """A handler call raised (a retry, the fallback or a dead letter follows)."""

    def dead_lettered(self, letter: DeadLetter) -> None:
        """A delivery ended in the dead letters (failed, cancelled, shed or unrouted)."""

    def gathered(self, result: GatherResult) -> None:
        """A fan-in (a gather, or ``ask``) finished: complete, partial or timed out."""

    def settled(self, correlation_id: str) -> None:
        """Nothing of ``correlation_id`` is in flight any more."""

    def closed(self) -> None:
        """The runtime closed."""


class Observers(Observer):
    """Several observers as one; an observer that raises is logged and counted, never fatal."""

    def __init__(self, observers: Iterable[Observer], errors: int = 0) -> None:
        self._all = tuple(observers)
        self.errors = errors

    def _failed(self, obs: Observer, event: str) -> None:
        self.errors += 1
        _log.exception(
            "observer %r failed on %s",
            obs,
            event,
            extra={"agent_id": "-", "message_type": "-", "correlation_id": "-"},
        )

    def published(self, msg: Message, recipients: int) -> None:
        for obs in self._all:
            try:
                obs.published(msg, recipients)
            except Exception:
                self._failed(obs, "published")

    def delivered(self, msg: Message, agent_id: str) -> None:
        for obs in self._all:
            try:
                obs.delivered(msg, agent_id)
            except Exception:
                self._failed(obs, "delivered")

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        for obs in self._all:
            try:
                obs.handled(msg, agent_id, duration, outputs)
            except Exception:
                self._failed(obs, "handled")

    # The rest happen once per failure or per request: one generic path is enough.
    def _each(self, event: str, *args: object) -> None:
        for obs in self._all:
            try:
                getattr(obs, event)(*args)
            except Exception:
                self._failed(obs, event)

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        self._each("denied", msg, agent_id, policy, reason)

    def limit_fired(self, msg: Message, agent_id: str, limit: str, reason: str) -> None:
        self._each("limit_fired", msg, agent_id, limit, reason)

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        self._each("failed", msg, agent_id, duration, error)

    def dead_lettered(self, letter: DeadLetter) -> None:
        self._each("dead_lettered", letter)

    def gathered(self, result: GatherResult) -> None:
        self._each("gathered", result)

    def settled(self, correlation_id: str) -> None:
        self._each("settled", correlation_id)

    def closed(self) -> None:
        self._each("closed")
