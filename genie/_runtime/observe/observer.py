"""The observer hook: what happens to every message, told to metrics, event streams and yours.

The runtime calls its observers synchronously, on its own loop, at the points where its
accounting changes. With no observer attached each point costs one ``is None`` check, which is
why metrics and event streams are observers rather than counters in the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..._base.log import lazy_logger
from ..._message.envelope import Message
from ..correlator import GatherResult
from ..deadletter import DeadLetter

__all__ = ["Observer", "deliveries_listener", "gather_listener", "unguarded"]

_log = lazy_logger("genie.runtime")


class Observer:
    """Subclass and override what you need; every method defaults to doing nothing.

    Methods run inline on the runtime's loop: they must be quick and must not block (buffer,
    count, or hand off). An exception is logged and counted in ``statistics().observer_errors``;
    it never reaches the message's path. Observers see ids, types and outcomes, not payloads,
    so they need no governance (a ``Tap`` sees payloads and is governed).
    """

    # True only for observers written so that they cannot raise (the built-in ones): the
    # runtime then calls a lone observer without the guard. A promise of the class that says
    # it, not of its subclasses (``unguarded``).
    never_raises = False

    def published(self, msg: Message, recipients: int) -> None:
        """``msg`` was published and routed to ``recipients`` agents (its fan-out width)."""

    def delivered(self, msg: Message, agent_id: str) -> None:
        """``msg`` was admitted and queued in the mailbox of ``agent_id``."""

    def delivered_many(self, msg: Message, agent_ids: Sequence[str]) -> None:
        """``msg``, published from outside, was admitted and queued in the mailboxes of
        ``agent_ids`` (in that order): a ``delivered`` for each, told in one call once the
        publish is done. The default calls ``delivered`` for each; override both to take a
        fan-out at once. The runtime calls it only when every observer overrides it."""
        for agent_id in agent_ids:
            self.delivered(msg, agent_id)

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

    @property
    def members(self) -> tuple[Observer, ...]:
        return self._all

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
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # synchronous: even a CancelledError is its own bug
                self._failed(obs, "published")

    def delivered(self, msg: Message, agent_id: str) -> None:
        for obs in self._all:
            try:
                obs.delivered(msg, agent_id)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # synchronous: even a CancelledError is its own bug
                self._failed(obs, "delivered")

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        for obs in self._all:
            try:
                obs.handled(msg, agent_id, duration, outputs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # synchronous: even a CancelledError is its own bug
                self._failed(obs, "handled")

    def delivered_many(self, msg: Message, agent_ids: Sequence[str]) -> None:
        for obs in self._all:
            try:
                obs.delivered_many(msg, agent_ids)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # synchronous: even a CancelledError is its own bug
                self._failed(obs, "delivered_many")

    # The rest happen once per failure or per request: one generic path is enough.
    def _each(self, event: str, *args: object) -> None:
        for obs in self._all:
            try:
                getattr(obs, event)(*args)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # synchronous: even a CancelledError is its own bug
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


def unguarded(observer: Observer) -> bool:
    """Whether the runtime may call ``observer``, alone, without the guard: only if its own
    class says it never raises. A subclass of a built-in observer (``genie.Metrics`` with a
    hook of yours) inherits the attribute but not the promise, which was about the hooks the
    built-in one wrote: it is guarded like any observer unless it says so itself."""
    return bool(vars(type(observer)).get("never_raises", False))


def _overrides(observer: Observer, hook: str) -> bool:
    # A bound method of ``Observer``'s own is the default; an instance attribute (no
    # ``__func__``) or an override is someone listening.
    return getattr(getattr(observer, hook), "__func__", None) is not getattr(Observer, hook)


def _members(observer: Observer) -> tuple[Observer, ...]:
    return observer.members if isinstance(observer, Observers) else (observer,)


def gather_listener(observer: Observer | None) -> Callable[[GatherResult], None] | None:
    """What the runtime's correlator should call when a fan-in finishes: ``observer.gathered``,
    or None when nobody in ``observer`` overrides ``gathered``.

    Told of gathers, the runtime holds them back so that each is reported after the
    ``published`` of the reply that completed it, which sends every gathered reply through the
    general route; metrics alone (which count no gathers) would pay that path on every reply
    of a fan-out (~1.2 µs a reply at N = 1000) for an order nobody reads."""
    if observer is None:
        return None
    hears = any(_overrides(obs, "gathered") for obs in _members(observer))
    return observer.gathered if hears else None


def deliveries_listener(
    observer: Observer | None,
) -> Callable[[Message, Sequence[str]], None] | None:
    """What a publish from outside should call with the agents it delivered to, once it is
    done: ``observer.delivered_many``, or None (then each delivery is told to ``delivered`` as
    it happens) unless every observer in ``observer`` that hears deliveries overrides
    ``delivered_many``.

    One call instead of one per agent saves a call per delivery of a fan-out; an observer
    that did not ask for it keeps hearing each delivery in its place among the publish's
    denials. An observer that hears no deliveries (the durable store keeps a fan-out by its
    ``put_held``) does not hold the others to that path."""
    if observer is None:
        return None
    takes = all(
        _overrides(obs, "delivered_many") or not _overrides(obs, "delivered")
        for obs in _members(observer)
    )
    return observer.delivered_many if takes else None
