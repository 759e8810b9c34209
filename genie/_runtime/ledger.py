"""The ledger: the accounting identity in one class, and the one place outcomes are recorded.

A delivery is one message to one consumer (an agent's mailbox, a waiter, a timer). It is
counted ``delivered`` when admission has decided, and ends in exactly one outcome: handled,
denied, dead-lettered or shed. So at every moment::

    delivered == handled + denied + dead_lettered + shed + in_flight

Each outcome is written here, with its audit record, dead letter, log line, observer call and
the notice to whoever waits on the correlation, so no path can record half of one.

A message a waiter collects (a gather's part, an ask's answer) is delivered and handled in one
step: it is counted once, in ``collected``, which both totals include.

Across processes each runtime's identity holds on its own counts: a delivery another process
admitted is delivered here too when it runs here (``arrived``), and one admitted here that
goes on to run in another process, whose outcome that process reports to the request's
origin, leaves this runtime's count when it is sent (``left``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio

from .._base.clock import Clock
from .._base.log import lazy_logger
from .._errors import type_name
from .._message.envelope import Message
from .audit import AuditRecord, AuditSink
from .correlator import Correlator, Missing, _Correlation
from .deadletter import DeadLetter, DeadLetterKind, DeadLetters
from .policy import Decision

if TYPE_CHECKING:
    from .observe.observer import Observer

__all__ = ["Ledger"]

_log = lazy_logger("genie.runtime")


class Ledger:
    """Counts of one runtime; ``observer`` is the runtime's (None when nobody observes)."""

    def __init__(
        self, clock: Clock, audit: AuditSink, dead_letters: DeadLetters, correlator: Correlator
    ) -> None:
        self.clock = clock
        self.audit = audit
        self.dead_letters = dead_letters
        self.correlator = correlator
        self.observer: Observer | None = None
        # Set by the runtime while an agent subscribes to loss notices (see _losses.py).
        self.on_loss: Callable[[Message, _Correlation, Missing], None] | None = None
        # Takes the audit rows no observer is told of (``record_own``) too: set by a transport
        # whose observers carry the rest to another process (a NATS worker).
        self.on_row: Callable[[AuditRecord], None] | None = None
        # The messages whose sender waits to hear, as it publishes, whether admission refused
        # each to its recipient (``refusal_of``): a person's answer to the approval desk.
        self._heard: dict[str, Decision | None] = {}
        # Whether another process writes the row of what the observers are told (``record``):
        # set by a NATS worker whose runtime writes the namespace's audit stream, where the
        # process that started a request writes the rows its outcome record carries.
        self.written_elsewhere: Callable[[str, str, Message, str], bool] | None = None
        # Delivered and handled besides the collected (see ``delivered`` and ``handled``).
        self._delivered = self._handled = self.denied = 0
        self.dead_lettered = self.shed = self.unrouted = 0
        # Deliveries another process admitted that run here, and deliveries admitted here
        # that went on to another process which records their outcome (see ``delivered``);
        # in a runtime that asks agents it hosts across processes, also each part's count of
        # the other's (``ran_here``).
        self._arrived = self._left = 0
        self.retries = self.fallbacks = self.taps_denied = self.tap_errors = 0
        self.collected = 0
        self.cut_short: Counter[str] = Counter()  # running deliveries the shutdown cancelled
        # Deliveries, running or queued, the shutdown left to a store's next start, which
        # runs them again (``Keeper.keeps_delivery``, asked only at the stop): no outcome here.
        self.kept = 0
        self.keeps_delivery: Callable[[Message, str], bool] | None = None
        # ``wait_idle``'s waiters, each woken once no more than its ``besides`` are in flight,
        # and the largest of those (-1: nobody waits).
        self._idle: list[tuple[int, anyio.Event]] = []
        self._idle_at = -1

    @property
    def delivered(self) -> int:
        """Deliveries admitted here or run here, less those that went on to run elsewhere."""
        return self._delivered + self.collected + self._arrived - self._left

    @property
    def handled(self) -> int:
        return self._handled + self.collected

    @property
    def in_flight(self) -> int:
        """What the identity leaves: deliveries counted delivered here with no outcome yet.
        Derived, not kept, so it cannot drift from the counts."""
        ended = self.handled + self.denied + self.dead_lettered + self.shed
        return self.delivered - ended

    # --- the identity ------------------------------------------------------------------------
    def opened(self, corr: _Correlation, count: int = 1) -> None:
        """``count`` deliveries of ``corr`` were admitted: each is in flight until ``closed``.
        A publish counts its whole fan-out in one call: nothing runs between its puts, so the
        counts read the same as if each were counted as it went."""
        self._delivered += count
        corr.in_flight += count
        corr.deliveries += count

    def closed(self, corr: _Correlation, handled: Message | None = None, by: str = "") -> None:
        """A delivery that was in flight has its outcome: ``handled`` (the message, handled
        by the agent ``by``; a request waiting on ``corr`` is told first), else one its caller
        counted. The last one of a correlation settles it; the last one of the runtime wakes
        ``wait_idle``."""
        if handled is not None:
            self._handled += 1
            if corr.requests:
                self.correlator.handled(corr, handled.id, by)
        corr.in_flight -= 1
        if not corr.in_flight:
            if self.observer is not None:
                self.observer.settled(corr.id)
            self.correlator.settle(corr)
        if self._idle and self.in_flight <= self._idle_at:
            self._wake_idle()

    def arrived(self, corr: _Correlation) -> None:
        """A delivery another process admitted runs here: delivered here too (this
        runtime's books count what it runs) and in flight until ``closed``."""
        self._arrived += 1
        corr.in_flight += 1

    def left(self, corr: _Correlation) -> None:
        """A delivery in flight here whose outcome another process records (what it sent on
        goes with it): it leaves this runtime's count, delivered and in flight, as that
        process counts it."""
        self._left += 1
        self.closed(corr)

    def ran_here(self, corr: _Correlation, sent: int, answered: int) -> None:
        """A delivery this runtime sent across processes and then ran itself (it hosts the
        agent it asked): its outcome, and the denials and sheds of what its handler sent, were
        counted as it ran, and the ``sent`` deliveries and ``answered`` answers (to a
        ``ctx.request``) it opened were counted delivered then handed on (``left``). Its
        outcome record, which comes back here, counts none of that again: the ``sent`` are in
        flight again until their own records close them, the answers were collected by their
        asker, and the delivery ends here as counted where it ran (in that order: never
        settled early)."""
        self._arrived += sent
        corr.in_flight += sent
        # Each answer: one delivery, collected (as one process counts a request's answer),
        # not an output opened here and handed on.
        self._delivered -= answered
        self._left -= answered
        self.collected += answered
        self.left(corr)

    def resumed(self, corr: _Correlation) -> None:
        """A delivery kept by a stopped process runs again here: delivered here (the stopped
        process's count went with it) and in flight until ``closed``; its charge to the
        budget was restored with the request's (``charged_before``)."""
        self._delivered += 1
        corr.in_flight += 1

    def withdrawn(
        self, msg: Message, consumer: str, corr: _Correlation, decision: Decision
    ) -> None:
        """A delivery counted in flight (``opened``) that admission refuses after all (the
        correlation's budget, charged across processes): it ends as the denial ``decision``,
        as if it had been refused when it was admitted."""
        self._delivered -= 1
        corr.deliveries -= 1
        self.deny(msg, consumer, corr, decision)
        self.closed(corr)

    async def wait_idle(self, besides: int = 0) -> None:
        """Until nothing is in flight but ``besides`` deliveries (work the caller knows will
        not end by waiting, such as approvals waiting for a person)."""
        if self.in_flight > besides:
            waiter = (besides, anyio.Event())
            self._idle.append(waiter)
            self._idle_at = max(self._idle_at, besides)
            try:
                await waiter[1].wait()
            finally:
                if waiter in self._idle:
                    self._idle.remove(waiter)
                    self._idle_at = max((b for b, _ in self._idle), default=-1)

    def _wake_idle(self) -> None:
        woken = [w for w in self._idle if self.in_flight <= w[0]]
        for _, event in woken:
            event.set()
        self._idle = [w for w in self._idle if w not in woken]
        self._idle_at = max((b for b, _ in self._idle), default=-1)

    # --- counts that are not outcomes ----------------------------------------------------------
    def retried(self) -> None:
        """A failed delivery is attempted again (still the same delivery, still in flight)."""
        self.retries += 1

    def fell_back(self) -> None:
        """A fallback agent handled a delivery its agent failed (the outcome is ``handled``)."""
        self.fallbacks += 1

    def cut_short_by_shutdown(self, agent: str) -> None:
        """A running delivery of ``agent`` was cancelled by the shutdown."""
        self.cut_short[agent] += 1

    def kept_at_stop(self, msg: Message, agent: str) -> bool:
        """Whether the delivery of ``msg`` to ``agent``, cut short by the shutdown, is kept
        for the next start: then it is counted kept and stays in flight, as nothing of it is
        lost; else the caller dead-letters it."""
        keeps = self.keeps_delivery
        if keeps is None or not keeps(msg, agent):
            return False
        self.kept += 1
        return True

    def charged_before(self, corr: _Correlation, deliveries: int) -> None:
        """``corr`` had charged ``deliveries`` to its budget in an earlier process (a request
        resumed from a store): its budget continues from there."""
        corr.deliveries = max(corr.deliveries, deliveries)

    def tap_denied(self) -> None:
        self.taps_denied += 1

    def tap_failed(self) -> None:
        self.tap_errors += 1

    # --- outcomes ----------------------------------------------------------------------------
    def handled_one(self, corr: _Correlation, msg: Message, by: str = "") -> None:
        """A delivery in flight was handled (``closed`` with the message)."""
        self.closed(corr, msg, by)

    def handled_elsewhere(self, corr: _Correlation) -> None:
        """A delivery in flight here was handled in another process (whose requests hear of
        it there)."""
        self._handled += 1
        self.closed(corr)

    def collect(self, corr: _Correlation, count: int = 1) -> None:
        """A waiter (gather, ask, request) took a message: a delivery handled at once
        (``count``: messages waiters of another process took, reported here)."""
        self.collected += count
        corr.deliveries += count

    def deny(
        self,
        msg: Message,
        consumer: str,
        corr: _Correlation,
        decision: Decision,
        *,
        notify: bool = True,
    ) -> None:
        """A delivery refused by admission (it was never in flight). ``notify``: tell the
        correlation's waiters (a refused waiter is told by the dispatcher itself)."""
        self._delivered += 1
        corr.deliveries += 1
        self.denied += 1
        self._refusal(msg, consumer, decision, own=False)
        if self.observer is not None:
            self.observer.denied(msg, consumer, decision.policy, decision.reason)
        if notify and (corr.waiters or self.on_loss is not None):
            missing = Missing(
                consumer, "denied", decision.reason, decision.policy, consumer, msg.id
            )
            self.lost(msg, consumer, corr, missing)

    def refusal_of(self, msg: Message, publish: Callable[[Message], object]) -> Decision | None:
        """``publish`` ``msg`` (at once: admission decides before it returns) and return the
        decision that refused it to its recipient, or None when none did."""
        self._heard[msg.id] = None
        try:
            publish(msg)
            return self._heard[msg.id]
        finally:
            del self._heard[msg.id]

    def charged(self, corr: _Correlation) -> None:
        """Work a handler asked for outside the message path (a tool call) was admitted: it
        counts against the correlation's delivery budget, not as a delivery."""
        corr.deliveries += 1

    def refused(self, msg: Message, consumer: str, decision: Decision) -> None:
        """Admission refused ``msg`` to ``consumer``, and ``msg`` is no new delivery (a tool
        call or its result, a memory write or read, a failed delivery's fallback): audited
        (``record_own``; a limit as ``limit_fired``) and logged, neither counted nor told to
        the observers (the accounting identity and ``genie_deliveries_denied_total`` count
        deliveries only), though ``Admission`` counted its decision
        (``genie_policy_decisions``, and ``genie_limits_fired`` for a limit). A refused
        delivery is ``deny``'s."""
        self._refusal(msg, consumer, decision, own=True)

    def _refusal(
        self,
        msg: Message,
        consumer: str,
        decision: Decision,
        *,
        own: bool,
    ) -> None:
        action = "limit_fired" if decision.policy.startswith("limit:") else "denied"
        if msg.id in self._heard and consumer == msg.recipient:
            self._heard[msg.id] = decision
        if own:
            self.record_own(decision.policy, action, consumer, msg, decision.reason)
        else:
            self.record("denied", decision.policy, action, consumer, msg, decision.reason)
        _log.info(
            "denied %s %s to %s by %s: %s",
            msg.type,
            msg.id,
            consumer,
            decision.policy,
            decision.reason,
            extra=fields(consumer, msg),
        )

    def shed_one(self, msg: Message, consumer: str, corr: _Correlation, reason: str) -> None:
        """A delivery dropped by an overflow policy (it was never in flight)."""
        self._delivered += 1
        corr.deliveries += 1
        self.shed += 1
        self.store(consumer, msg, "shed", reason, None, 0)
        if corr.waiters or self.on_loss is not None:
            missing = Missing(consumer, "shed", reason, None, consumer, msg.id)
            self.lost(msg, consumer, corr, missing)

    def dead_letter(
        self,
        consumer: str,
        msg: Message,
        corr: _Correlation,
        kind: DeadLetterKind,
        reason: str,
        error: BaseException | None,
        attempts: int,
        *,
        log: bool = True,
        error_type: str | None = None,
        tracebacks: tuple[str, ...] = (),
    ) -> None:
        """A delivery in flight ends as a dead letter. ``error_type``: the error's type when
        it was raised in another process (``error`` is None); ``tracebacks``: of a failed
        delivery, its attempts' (``attempts_of``). Counted once the letter is kept: a
        letter that could not be would leave the delivery in flight, not count it twice."""
        self.store(
            consumer,
            msg,
            kind,
            reason,
            type_name(error) if error is not None else error_type,
            attempts,
            tracebacks,
            log=log,
        )
        self.dead_lettered += 1
        if corr.waiters or self.on_loss is not None:
            missing = Missing(
                consumer,
                "failed" if kind == "failed" else "cancelled",
                reason,
                None,
                consumer,
                msg.id,
            )
            self.lost(msg, consumer, corr, missing)  # before closing: a notice keeps it open
        self.closed(corr)

    def unreadable(
        self,
        agent: str,
        letter: Message,
        reason: str,
        details: Mapping[str, str],
        corr: _Correlation | None,
    ) -> DeadLetter:
        """A delivery for ``agent`` nobody could read, kept as the dead letter ``letter``
        with an audit row of ``details`` (the message as its text shows it). ``corr``: it was
        in flight, and this dead letter is its outcome (its waiters hear why, with
        ``details["message_id"]``)."""
        now = self.clock.now()
        self.audit.record(AuditRecord(now, agent, "dead_letter:failed", agent, dict(details)))
        dead = DeadLetter(letter, agent, "failed", reason, None, 0, now)
        self.dead_letters.add(dead)
        if self.observer is not None:
            self.observer.dead_lettered(dead)
        if corr is not None:
            self.dead_lettered += 1
            if corr.waiters:
                message_id = details["message_id"]
                missing = Missing(agent, "failed", reason, None, agent, message_id)
                self.correlator.failed(corr, missing, message_id, agent)
            self.closed(corr)
        return dead

    def limit_fired(self, limit: str, agent: str, msg: Message, reason: str) -> None:
        """A limit stopped ``agent``'s handling of ``msg`` (not an outcome: the handler's
        delivery ends as it ends): its audit row and observer call."""
        self.record("limit_fired", limit, "limit_fired", agent, msg, reason)
        if self.observer is not None:
            self.observer.limit_fired(msg, agent, limit, reason)

    def lost(self, msg: Message, consumer: str, corr: _Correlation, missing: Missing) -> None:
        """Tell the correlation's waiters, and the loss hook, that a delivery is lost."""
        if corr.waiters:
            self.correlator.failed(corr, missing, msg.id, consumer)
        if self.on_loss is not None:
            self.on_loss(msg, corr, missing)

    def unrouted_letter(self, msg: Message, reason: str) -> None:
        """A message nobody could receive (not a delivery: it has no consumer)."""
        self.unrouted += 1
        self.store(msg.recipient, msg, "unrouted", reason, None, 0)

    def store(
        self,
        consumer: str | None,
        msg: Message,
        kind: DeadLetterKind,
        reason: str,
        error_type: str | None,
        attempts: int,
        tracebacks: tuple[str, ...] = (),
        *,
        log: bool = True,
    ) -> None:
        letter = DeadLetter(
            msg, consumer, kind, reason, error_type, attempts, self.clock.now(), tracebacks
        )
        self.dead_letters.add(letter)
        if self.observer is not None:
            self.observer.dead_lettered(letter)
        actor, action = consumer or "router", f"dead_letter:{kind}"
        self.record("dead_lettered", actor, action, consumer or "-", msg, reason)
        if log:
            extra = fields(consumer, msg)
            if tracebacks:  # where the handler's code raised: a field of a JSON log line
                extra["traceback"] = tracebacks[-1]
            _log.warning(
                "dead letter (%s) %s %s for %s: %s",
                kind,
                msg.type,
                msg.id,
                consumer,
                reason,
                extra=extra,
            )

    def record(
        self, told: str, actor: str, action: str, target: str, msg: Message, reason: str
    ) -> None:
        """The audit row of an outcome or a limit the observers are told of too (``told``:
        their call, ``denied``, ``dead_lettered`` or ``limit_fired``), unless another process
        writes it (``written_elsewhere``)."""
        elsewhere = self.written_elsewhere
        if elsewhere is None or not elsewhere(told, action, msg, target):
            self.audit.record(self._row(actor, action, target, msg, reason))

    def record_own(self, actor: str, action: str, target: str, msg: Message, reason: str) -> None:
        """The audit row of what no observer is told of (a handler's tool calls, memory and
        model text; a refusal of what is no delivery), handed to ``on_row`` too."""
        row = self._row(actor, action, target, msg, reason)
        self.audit.record(row)
        if self.on_row is not None:
            self.on_row(row)

    def _row(self, actor: str, action: str, target: str, msg: Message, reason: str) -> AuditRecord:
        details = {
            "message_id": msg.id,
            "message_type": msg.type,
            "sender": msg.sender,
            "correlation_id": msg.correlation_id,
            "reason": reason,
        }
        return AuditRecord(self.clock.now(), actor, action, target, details)


def fields(agent_id: str | None, msg: Message) -> dict[str, str]:
    """The fields every runtime log record carries (see docs/observability.md)."""
    return {
        "agent_id": agent_id or "-",
        "message_type": msg.type,
        "correlation_id": msg.correlation_id,
    }
