"""The runtime's statistics: one frozen snapshot of everything it counts."""

from __future__ import annotations

from collections.abc import Mapping

from .._base.record import Record
from .correlator import CorrelatorStatistics
from .local.mailbox import MailboxStatistics
from .offload import OffloadStatistics
from .policy import PolicyStatistics

__all__ = ["RuntimeStatistics"]


class RuntimeStatistics(Record):
    """Everything a runtime counts, in one snapshot.

    ``delivered == handled + denied + dead_lettered + shed + in_flight`` always holds; a
    delivery is a message to one consumer (an agent, a waiter, a timer). ``handled`` counts
    handler calls that returned, the timers that fired or were withdrawn (``timers_handled``)
    and the ``collected`` messages a waiter (``ask``, ``gather``, ``ctx.request``) took. So the
    deliveries to agents' mailboxes are ``delivered - collected - timers_set - denied - shed``.
    """

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
    timers_set: int
    timers_handled: int
    executors: int
    idle_executors: int
    ready: int
    mailboxes: Mapping[str, MailboxStatistics]
    policies: PolicyStatistics
    correlations: CorrelatorStatistics
    offload: OffloadStatistics
