"""The runtime's statistics: one frozen snapshot of everything it counts."""

from __future__ import annotations

from collections.abc import Mapping

from .._base.record import Record, set_field
from .correlator import CorrelatorStatistics
from .local.mailbox import MailboxStatistics
from .policy import PolicyStatistics

__all__ = ["RuntimeStatistics"]


class RuntimeStatistics(Record):
    """Everything a runtime counts, in one snapshot.

    ``delivered == handled + denied + dead_lettered + shed + in_flight`` always holds; a
    delivery is a message to one consumer (an agent, a waiter, a timer). ``handled`` counts
    handler calls that returned, the timers that fired or were withdrawn and the ``collected``
    messages a waiter (``ask``, ``gather``, ``ctx.request``) took.
    """

    __slots__ = (
        "collected",
        "correlations",
        "dead_lettered",
        "delivered",
        "denied",
        "executors",
        "fallbacks",
        "handled",
        "idle_executors",
        "in_flight",
        "mailboxes",
        "observer_errors",
        "policies",
        "published",
        "ready",
        "retries",
        "shed",
        "tap_errors",
        "taps_denied",
        "timers_pending",
        "unrouted",
    )
    __match_args__ = (
        "published",
        "delivered",
        "handled",
        "collected",
        "denied",
        "dead_lettered",
        "shed",
        "in_flight",
        "unrouted",
        "retries",
        "fallbacks",
        "taps_denied",
        "tap_errors",
        "observer_errors",
        "timers_pending",
        "executors",
        "idle_executors",
        "ready",
        "mailboxes",
        "policies",
        "correlations",
    )
    published: int
    delivered: int
    handled: int
    collected: int
    denied: int
    dead_lettered: int
    shed: int
    in_flight: int
    unrouted: int
    retries: int
    fallbacks: int
    taps_denied: int
    tap_errors: int
    observer_errors: int
    timers_pending: int
    executors: int
    idle_executors: int
    ready: int
    mailboxes: Mapping[str, MailboxStatistics]
    policies: PolicyStatistics
    correlations: CorrelatorStatistics

    def __init__(
        self,
        published: int,
        delivered: int,
        handled: int,
        collected: int,
        denied: int,
        dead_lettered: int,
        shed: int,
        in_flight: int,
        unrouted: int,
        retries: int,
        fallbacks: int,
        taps_denied: int,
        tap_errors: int,
        observer_errors: int,
        timers_pending: int,
        executors: int,
        idle_executors: int,
        ready: int,
        mailboxes: Mapping[str, MailboxStatistics],
        policies: PolicyStatistics,
        correlations: CorrelatorStatistics,
    ) -> None:
        set_field(self, "published", published)
        set_field(self, "delivered", delivered)
        set_field(self, "handled", handled)
        set_field(self, "collected", collected)
        set_field(self, "denied", denied)
        set_field(self, "dead_lettered", dead_lettered)
        set_field(self, "shed", shed)
        set_field(self, "in_flight", in_flight)
        set_field(self, "unrouted", unrouted)
        set_field(self, "retries", retries)
        set_field(self, "fallbacks", fallbacks)
        set_field(self, "taps_denied", taps_denied)
        set_field(self, "tap_errors", tap_errors)
        set_field(self, "observer_errors", observer_errors)
        set_field(self, "timers_pending", timers_pending)
        set_field(self, "executors", executors)
        set_field(self, "idle_executors", idle_executors)
        set_field(self, "ready", ready)
        set_field(self, "mailboxes", mailboxes)
        set_field(self, "policies", policies)
        set_field(self, "correlations", correlations)
