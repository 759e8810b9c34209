"""What a transport between processes needs from the runtime it serves, declared in one place.

A transport that moves deliveries to other processes (``genie.nats``) still keeps this
runtime's books: the deliveries it runs for other processes are in flight here, the outcomes
other processes report for the requests this process started are recorded here, and the
replies and answers that come back reach the waiters here. ``TransportHost`` lists those
needs in the runtime's own words; ``RuntimeHost`` answers them from the runtime's parts (the
ledger, the correlator, admission, the dispatcher, the timers, the handlers' services). The
runtime builds one for a transport that asks for it (``HostedTransport.bind``), so the
transport reads nothing of the runtime but this.

A ``Correlation`` is a handle the transport gets from ``correlation`` and passes back: what it
holds is the runtime's business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from .correlator import Missing, _Correlation

if TYPE_CHECKING:
    from .._agent.context import ContextServices, Timer
    from .._message.envelope import Message
    from .._message.types import MessageTypes
    from ..llm._shared import SharedCounters
    from .admission import Admission
    from .audit import AuditRecord
    from .deadletter import DeadLetter, DeadLetterKind
    from .dispatch import Dispatcher
    from .ledger import Ledger
    from .model_calls import ModelCalls
    from .observe.observer import Observer
    from .policy import Decision
    from .timers import Timers

__all__ = [
    "Correlation",
    "HostedTransport",
    "RequestCall",
    "RuntimeHost",
    "ScheduleCall",
    "TransportHost",
]

Correlation: TypeAlias = _Correlation
RequestCall: TypeAlias = "Callable[[Message, float | None], Awaitable[Message]]"
ScheduleCall: TypeAlias = "Callable[[Message, float], Timer]"


class TransportHost(Protocol):
    """The runtime as a transport between processes sees it."""

    # --- what the runtime hosts (its agents come with ``Transport.attach_agents``) ----------
    @property
    def types(self) -> MessageTypes:
        """The message types this runtime reads: a delivery from the broker is decoded here."""
        ...

    def minted(self, message_id: str) -> bool:
        """Whether this runtime made ``message_id`` (not a handler that chose its output's
        id, as a workflow does so that a run rebuilt after a restart sends the same ids)."""
        ...

    # --- a worker: this process runs deliveries other processes sent --------------------------
    def serve_as_worker(
        self,
        request: RequestCall,
        schedule: ScheduleCall,
        timer_ended: Callable[[Message], None],
        reported_elsewhere: Callable[[Message, Missing], bool],
        row_made: Callable[[AuditRecord], None] | None,
        written_elsewhere: Callable[[str, str, Message, str], bool] | None,
    ) -> tuple[RequestCall, ScheduleCall]:
        """From now on handlers' ``ctx.request`` and ``ctx.schedule`` go to ``request`` and
        ``schedule`` (the runtime's own are returned, for the calls they pass on), each
        timer's message goes to ``timer_ended`` once its outcome is recorded, no loss
        notice (``genie.lost``) is sent for a loss ``reported_elsewhere`` says an outcome
        record carries to the origin (whose replay of it sends the one notice), each audit
        row that no outcome record carries (a handler's tool calls, memory and model text, a
        refused fallback) goes to ``row_made`` too, when given, and the row of what the
        observers are told (a denial, a dead letter, a limit: the observer's call, the row's
        action, the message and the agent) is not written here where ``written_elsewhere``,
        when given, says the origin writes it to the same log."""
        ...

    def watch(self, observer: Observer) -> None:
        """Tell ``observer`` what happens to every message from now on: a transport that keeps
        deliveries (durable mode) learns there when each one ends."""
        ...

    def share_model_budgets(self, counters: SharedCounters) -> None:
        """The model budgets of handlers' calls (``Limits.correlation_tokens`` and
        ``correlation_cost``) are counted on ``counters`` too, which every process shares:
        a call is refused when all processes together would overrun its correlation's
        budget, and the first refusal anywhere fires the limit."""
        ...

    # --- correlations ------------------------------------------------------------------------
    def correlation(self, correlation_id: str) -> Correlation:
        """The correlation ``correlation_id`` in this runtime (begun here if it is new)."""
        ...

    def charged(self, corr: Correlation) -> int:
        """The deliveries ``corr`` has charged against ``Limits.correlation_budget``."""
        ...

    def settled(self, corr: Correlation) -> bool:
        """Whether nothing of ``corr`` is in flight here: its request ended in this process,
        until something of it comes again."""
        ...

    def charge(self, corr: Correlation, deliveries: int) -> None:
        """``corr`` had charged ``deliveries`` before a restart: its budget continues from
        there (never from less than it has charged here)."""
        ...

    def cancelled_elsewhere(self, correlation_id: str) -> bool:
        """Another process cancelled ``correlation_id``: if anything of it is in flight here,
        its deliveries end as cancelled dead letters and its pending timers are cancelled
        (True); False: nothing of it is here."""
        ...

    # --- deliveries that cross processes --------------------------------------------------------
    def arrived(
        self, corr: Correlation, *, cancelled: bool, watched: Message | None = None
    ) -> None:
        """A delivery the sending process counted delivered runs here: delivered here too,
        and in flight here until its outcome. ``cancelled``: its correlation was cancelled,
        so it ends unrun. ``watched``: its message, whose sender (in another process) watches
        for its reply (``Runtime.watch_reply``): watched here, where it is handled, so the
        sender is sent the ``Unanswered`` notice the moment it goes unanswered."""
        ...

    def resumed(
        self, corr: Correlation, msg: Message, agent_id: str, *, watched: bool = False
    ) -> None:
        """A delivery a stopped process admitted on this runtime's store runs again here:
        counted delivered (the observer told) and in flight, as the stopped process's counts
        went with it; not charged to the budget again (``charge`` restored what it spent).
        ``watched``: its sender watched for its reply (``watched``), and it is watched again
        from the start, so its sender is told if it goes unanswered, whenever it ends."""
        ...

    def watched(self, msg: Message) -> bool:
        """Whether ``msg``'s sender watches for its reply (``Runtime.watch_reply``): a store
        keeps that with it."""
        ...

    def left(self, corr: Correlation) -> None:
        """A delivery in flight here went to another process, which reports its outcome to
        the process that started the request: it leaves this runtime's count."""
        ...

    def opened(self, corr: Correlation, count: int = 1) -> None:
        """Deliveries another process admitted for a request this process started: in flight
        here until their outcome records come."""
        ...

    def ran_here(self, corr: Correlation, sent: int, answered: int) -> None:
        """The outcome record of a delivery this process sent and ran itself, which opened
        ``sent`` deliveries and gave ``answered`` answers to an asker's waiter: its outcome,
        denials and sheds were recorded as it ran; the record counts none of them again,
        keeps the ``sent`` in flight until their records, counts the answers collected, and
        closes the delivery."""
        ...

    def collected(self, corr: Correlation, count: int) -> None:
        """Messages a waiter took in another process: deliveries handled at once."""
        ...

    def admit_charged(
        self, sent: Sequence[tuple[Message, str]], corr: Correlation, total: int
    ) -> int:
        """Of ``sent`` (each counted in flight here, to its recipient), how many the
        correlation budget admits now that every process together has charged ``total``
        deliveries including these: the first ones are admitted, each of the rest becomes a
        ``limit:budget`` denial here."""
        ...

    # --- outcomes: a worker's own, and those another process reports -----------------------
    def handled(self, corr: Correlation) -> None:
        """A delivery in flight here was handled (in another process)."""
        ...

    def denied(
        self,
        msg: Message,
        consumer: str,
        corr: Correlation,
        decision: Decision,
        *,
        notify: bool = True,
    ) -> None:
        """A delivery refused by admission where it was sent (never in flight); ``notify``:
        its correlation's waiters hear of it."""
        ...

    def shed(self, msg: Message, consumer: str, corr: Correlation, reason: str) -> None:
        """A delivery an overflow policy dropped where it was sent (never in flight)."""
        ...

    def limit_fired(self, limit: str, agent: str, msg: Message, reason: str) -> None:
        """A limit stopped ``agent``'s handling of ``msg``: its audit row and observer call."""
        ...

    def dead_lettered(
        self,
        consumer: str,
        msg: Message,
        corr: Correlation,
        kind: DeadLetterKind,
        reason: str,
        attempts: int,
        error_type: str | None = None,
        tracebacks: tuple[str, ...] = (),
    ) -> None:
        """A delivery in flight here ended as a dead letter (in another process: the error's
        type and tracebacks came with its outcome record)."""
        ...

    def unreadable(
        self,
        agent: str,
        letter: Message,
        reason: str,
        details: Mapping[str, str],
        corr: Correlation | None = None,
    ) -> DeadLetter:
        """A delivery for ``agent`` nobody could read, kept as the dead letter ``letter``
        with an audit row of ``details`` (the message as its text shows it). ``corr``: the
        delivery was in flight here, and its outcome is this dead letter (its waiters hear
        why, with ``details["message_id"]``)."""
        ...

    # --- replies and answers that come back -----------------------------------------------------
    def reply_arrived(self, reply: Message, corr: Correlation) -> None:
        """A reply nobody received where it was sent, carried here by its outcome record: routed
        to this runtime's waiters and taps (no agent) as one process routes a handler's
        reply to its caller."""
        ...

    def answer_arrived(
        self,
        corr: Correlation,
        answer: Message,
        refusal: Decision | None,
        *,
        counted: bool = False,
    ) -> None:
        """The answer to a handler's request, from another process: the first request waiter
        it matches takes it (a delivery collected here, unless ``counted``: this process
        started the request, and the record of the answering delivery counts it), or, where
        ``refusal`` refused it for the asker, hears why. With no waiter left for it, the
        answer to a request its requester gave up on is counted late, as one process counts
        it."""
        ...

    def request_ended(
        self, corr: Correlation, request_id: str, recipient: str, missing: Missing | None
    ) -> None:
        """The request ``request_id`` ended in another process without an answer: handled
        (``missing`` is None) or lost as ``missing`` says. Its waiters hear it."""
        ...


@runtime_checkable
class HostedTransport(Protocol):
    """A transport the runtime hands its host to, as it is built."""

    def bind(self, host: TransportHost) -> None: ...


class RuntimeHost:
    """``TransportHost`` from the runtime's parts (one per runtime that has such a transport)."""

    def __init__(
        self,
        types: MessageTypes,
        ledger: Ledger,
        admission: Admission,
        dispatcher: Dispatcher,
        timers: Timers,
        services: ContextServices,
        model_calls: ModelCalls,
        watch: Callable[[Observer], None],
        minted: Callable[[str], bool],
        watch_resumed: Callable[[_Correlation, Message], None],
        watched: Callable[[Message], bool],
    ) -> None:
        self._types = types
        self.minted = minted
        self._watch_resumed = watch_resumed
        self.watched = watched
        self._watch = watch
        self._ledger = ledger
        self._correlator = ledger.correlator
        self._admission = admission
        self._dispatcher = dispatcher
        self._timers = timers
        self._services = services
        self._model_calls = model_calls

    @property
    def types(self) -> MessageTypes:
        return self._types

    def serve_as_worker(
        self,
        request: RequestCall,
        schedule: ScheduleCall,
        timer_ended: Callable[[Message], None],
        reported_elsewhere: Callable[[Message, Missing], bool],
        row_made: Callable[[AuditRecord], None] | None,
        written_elsewhere: Callable[[str, str, Message, str], bool] | None,
    ) -> tuple[RequestCall, ScheduleCall]:
        services = self._services
        self._ledger.on_row = row_made
        self._ledger.written_elsewhere = written_elsewhere
        own = services.request, services.schedule
        services.request, services.schedule = request, schedule
        self._timers.on_end = timer_ended
        notify = self._ledger.on_loss
        if notify is not None:  # somebody listens for losses

            def notice(msg: Message, corr: _Correlation, missing: Missing) -> None:
                if not reported_elsewhere(msg, missing):
                    notify(msg, corr, missing)

            self._ledger.on_loss = notice
        return own

    def watch(self, observer: Observer) -> None:
        self._watch(observer)

    def share_model_budgets(self, counters: SharedCounters) -> None:
        self._model_calls.share(counters)

    def correlation(self, correlation_id: str) -> Correlation:
        return self._correlator.get(correlation_id)

    def charged(self, corr: Correlation) -> int:
        return corr.deliveries

    def settled(self, corr: Correlation) -> bool:
        return not corr.in_flight

    def charge(self, corr: Correlation, deliveries: int) -> None:
        self._ledger.charged_before(corr, deliveries)

    def cancelled_elsewhere(self, correlation_id: str) -> bool:
        corr = self._correlator.lookup(correlation_id)
        if corr is None or not corr.in_flight:
            return False
        corr.cancelled = True  # its handlers end as cancelled dead letters, as in one process
        self._timers.cancel(correlation_id)
        return True

    def arrived(
        self, corr: Correlation, *, cancelled: bool, watched: Message | None = None
    ) -> None:
        if cancelled:
            corr.cancelled = True  # the runner dead-letters it without running it
        self._ledger.arrived(corr)
        if watched is not None and not cancelled:
            self._watch_resumed(corr, watched)

    def resumed(
        self, corr: Correlation, msg: Message, agent_id: str, *, watched: bool = False
    ) -> None:
        ledger = self._ledger
        ledger.resumed(corr)
        if ledger.observer is not None:
            ledger.observer.delivered(msg, agent_id)
        if watched:
            self._watch_resumed(corr, msg)

    def left(self, corr: Correlation) -> None:
        self._ledger.left(corr)

    def opened(self, corr: Correlation, count: int = 1) -> None:
        self._ledger.opened(corr, count)

    def ran_here(self, corr: Correlation, sent: int, answered: int) -> None:
        self._ledger.ran_here(corr, sent, answered)

    def collected(self, corr: Correlation, count: int) -> None:
        self._ledger.collect(corr, count)

    def admit_charged(
        self, sent: Sequence[tuple[Message, str]], corr: Correlation, total: int
    ) -> int:
        admission = self._admission
        admitted = admission.within_charged_budget(len(sent), total)
        for msg, recipient in sent[admitted:]:
            # It was counted in flight when admitted here: it becomes a denial instead.
            denial = admission.over_charged_budget(msg, recipient)
            self._ledger.withdrawn(msg, recipient, corr, denial)
        return admitted

    def handled(self, corr: Correlation) -> None:
        self._ledger.handled_elsewhere(corr)

    def denied(
        self,
        msg: Message,
        consumer: str,
        corr: Correlation,
        decision: Decision,
        *,
        notify: bool = True,
    ) -> None:
        self._ledger.deny(msg, consumer, corr, decision, notify=notify)

    def shed(self, msg: Message, consumer: str, corr: Correlation, reason: str) -> None:
        self._ledger.shed_one(msg, consumer, corr, reason)

    def limit_fired(self, limit: str, agent: str, msg: Message, reason: str) -> None:
        self._ledger.limit_fired(limit, agent, msg, reason)

    def dead_lettered(
        self,
        consumer: str,
        msg: Message,
        corr: Correlation,
        kind: DeadLetterKind,
        reason: str,
        attempts: int,
        error_type: str | None = None,
        tracebacks: tuple[str, ...] = (),
    ) -> None:
        self._ledger.dead_letter(
            consumer,
            msg,
            corr,
            kind,
            reason,
            None,
            attempts,
            error_type=error_type,
            tracebacks=tracebacks,
        )

    def unreadable(
        self,
        agent: str,
        letter: Message,
        reason: str,
        details: Mapping[str, str],
        corr: Correlation | None = None,
    ) -> DeadLetter:
        return self._ledger.unreadable(agent, letter, reason, details, corr)

    def reply_arrived(self, reply: Message, corr: Correlation) -> None:
        self._dispatcher.reply_arrived(reply, corr)

    def answer_arrived(
        self,
        corr: Correlation,
        answer: Message,
        refusal: Decision | None,
        *,
        counted: bool = False,
    ) -> None:
        for waiter in corr.waiters:
            if waiter.consumes and waiter.matches(answer):
                if refusal is None:
                    if not counted:
                        self._ledger.collect(corr)
                    waiter.offer(answer)
                else:
                    why = Missing(
                        waiter.consumer,
                        "denied",
                        refusal.reason,
                        refusal.policy,
                        answer.sender,
                        answer.id,
                    )
                    waiter.refused(answer, why)
                return
        correlator = self._correlator
        if correlator.given_up:
            correlator.answered_late(answer)

    def request_ended(
        self, corr: Correlation, request_id: str, recipient: str, missing: Missing | None
    ) -> None:
        if missing is None:
            self._correlator.handled(corr, request_id, recipient)
        else:
            self._correlator.failed(corr, missing, request_id, recipient)
