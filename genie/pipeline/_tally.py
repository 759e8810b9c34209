"""What one run did: its counts, denials and dead letters, from the runtime's observer events
for its correlation only.

A runtime may serve many requests at once (``genie serve`` runs every request of a pipeline
in one runtime), so its ``statistics()`` count them all; a run's answer counts only its own.
Each count is told by the same event that lists the thing counted (a denial, a dead letter, a
handler call), so what a run reports adds up with what it lists:

    delivered == handled + dead_lettered + in_flight
    calls == handled + failed
    len(dead_letters) == dead_lettered + shed + unrouted
    len(denials) == denied  (the first ``DENIALS_KEPT`` are listed)

A runtime whose agents run in other processes (NATS: ``genie run --nats``) is told of their
outcomes by records, not by observer events: there a run's counts are the runtime's own
accounting of its requests (``from_runtime``), and the handler calls are the workers' to count.
"""

from __future__ import annotations

from .._base.record import Record
from .._message.envelope import Message
from .._runtime.deadletter import DeadLetter
from .._runtime.observe.observer import Observer
from .._runtime.statistics import RuntimeStatistics

__all__ = [
    "DENIALS_KEPT",
    "Denial",
    "RunStatistics",
    "RunTally",
    "from_runtime",
    "handled_elsewhere",
]

DENIALS_KEPT = 64  # a storm of denials says no more than its first few


class Denial(Record):
    """A delivery of the run that admission refused: which message, to whom, why."""

    type: str
    recipient: str
    policy: str
    reason: str


class RunStatistics(Record):
    """One run's counts (see docs/cli.md, "--json", for each).

    Deliveries to agents end handled (a handler call returned: the agent's, or its
    fallback's), dead-lettered (failed or cancelled) or are still in flight when the answer is
    made. A handler call is one attempt: a delivery retried twice and then handled is three
    calls, two ``failed`` and one ``handled``, and two ``retries``. Refused deliveries
    (``denied``), deliveries a full mailbox dropped (``shed``) and messages nobody could
    receive (``unrouted``) never reach a handler; ``collected`` are the messages the caller
    took (the output, or the notice that ended the run). ``calls`` and ``failed`` are None
    where the handlers ran in other processes (``from_runtime``).
    """

    published: int = 0
    delivered: int = 0
    handled: int = 0
    dead_lettered: int = 0
    in_flight: int = 0
    calls: int | None = 0
    failed: int | None = 0
    retries: int = 0
    fallbacks: int = 0
    collected: int = 0
    denied: int = 0
    shed: int = 0
    unrouted: int = 0


class RunTally(Observer):
    """Counts, while a run is asked, what happens to the messages of its correlation."""

    never_raises = True

    def __init__(self, correlation_id: str) -> None:
        self.correlation_id = correlation_id
        # Counts under names of their own: the observer's methods have the plain ones.
        self.n_published = self.n_delivered = self.n_handled = self.n_failed = 0
        self.n_retries = self.n_fallbacks = self.n_denied = 0
        self.denials: list[Denial] = []
        self.dead_letters: list[DeadLetter] = []
        # (message id, agent) of each delivery queued in a mailbox, and of each one called: a
        # second call of a delivery is a retry; a call of a delivery never queued for that
        # agent is its fallback's.
        self._queued: set[tuple[str, str]] = set()
        self._called: set[tuple[str, str]] = set()

    def published(self, msg: Message, recipients: int) -> None:
        if msg.correlation_id != self.correlation_id:
            return
        self.n_published += 1

    def delivered(self, msg: Message, agent_id: str) -> None:
        if msg.correlation_id == self.correlation_id:
            self.n_delivered += 1
            self._queued.add((msg.id, agent_id))

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        if msg.correlation_id == self.correlation_id:
            self.n_denied += 1
            if len(self.denials) < DENIALS_KEPT:
                self.denials.append(Denial(msg.type, agent_id, policy, reason))

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        if msg.correlation_id == self.correlation_id:
            self.n_handled += 1
            if self._call(msg, agent_id):
                self.n_fallbacks += 1

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        if msg.correlation_id == self.correlation_id:
            self.n_failed += 1
            self._call(msg, agent_id)

    def _call(self, msg: Message, agent_id: str) -> bool:
        """Count a handler call; True when it is a fallback's (of a handoff)."""
        key = (msg.id, agent_id)
        if key not in self._queued:
            return True
        if key in self._called:
            self.n_retries += 1
        else:
            self._called.add(key)
        return False

    def dead_lettered(self, letter: DeadLetter) -> None:
        if letter.message.correlation_id != self.correlation_id:
            return
        self.dead_letters.append(letter)
        if letter.kind == "cancelled" and (letter.message.id, letter.agent_id) not in self._queued:
            # A timer (``ctx.schedule``) its run's cancellation cut short: the runtime counts
            # a pending timer as a delivery in flight to the agent that set it.
            self.n_delivered += 1

    def statistics(self, collected: int) -> RunStatistics:
        """The counts so far; ``collected``: how many messages the caller took."""
        kinds = [letter.kind for letter in self.dead_letters]
        dead = kinds.count("failed") + kinds.count("cancelled")
        return RunStatistics(
            published=self.n_published,
            delivered=self.n_delivered,
            handled=self.n_handled,
            dead_lettered=dead,
            in_flight=self.n_delivered - self.n_handled - dead,
            calls=self.n_handled + self.n_failed,
            failed=self.n_failed,
            retries=self.n_retries,
            fallbacks=self.n_fallbacks,
            collected=collected,
            denied=self.n_denied,
            shed=kinds.count("shed"),
            unrouted=kinds.count("unrouted"),
        )


def handled_elsewhere(s: RuntimeStatistics) -> int:
    """How many deliveries of the runtime ``s`` describes were handled in other processes:
    what it counts handled besides its own agents' handler calls, its waiters' messages and its
    timers (0 in one process)."""
    calls = sum(mb.handled for mb in s.mailboxes.values())
    return s.handled - s.collected - s.timers_handled - calls


def from_runtime(s: RuntimeStatistics) -> RunStatistics:
    """A run's counts from the accounting of a runtime that serves only its requests, in the
    run's terms (deliveries to agents, without the waiters' messages and the timers)."""
    return RunStatistics(
        published=s.published,
        delivered=s.delivered - s.collected - s.timers_set - s.denied - s.shed,
        handled=s.handled - s.collected - s.timers_handled,
        dead_lettered=s.dead_lettered,
        in_flight=s.in_flight - s.timers_pending,
        calls=None,
        failed=None,
        retries=s.retries,
        fallbacks=s.fallbacks,
        collected=s.collected,
        denied=s.denied,
        shed=s.shed,
        unrouted=s.unrouted,
    )
