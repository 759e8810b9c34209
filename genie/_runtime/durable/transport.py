"""Durable mode as a transport: this process's mailboxes and executors, with every admitted
delivery written to the store before it is queued, and its end written with what it produced.

``put`` and ``put_held`` never wait (the runtime's contract): a delivery joins the batch being
made, and the writer task writes the batch in one transaction, then queues its deliveries. A
message is kept once for all the agents it goes to, with those whose delivery has not ended.
What a handler's outputs put and the end of the delivery that made them reach the same batch
(the runner records both in one step, without a checkpoint between), so a crash leaves either
the delivery, to run again, or its outputs, never both or neither.

``sync`` says when a write reaches the disk: a number of seconds (a commit survives a kill of
the process at once, and a loss of power once the next sync, that many seconds later at most,
has run), or ``"always"`` (each commit waits for the disk, in a worker thread, before its
deliveries are queued).

A runtime started on the store lists the requests that had not settled (``unfinished``), and
``replay`` queues the deliveries a request left once its caller waits for its end again
(``Runtime.resume``): at least once, so a handler with effects outside uses the delivery id,
``message.id:agent``, as its idempotency key. A fan-in's part (a workflow's step reply, say)
stays kept while the fan-in keeps its session, and its handling is marked in the write of
what the handling sent (``taken_before``): replayed, it rebuilds the session and the fan-in
sends nothing again. A delivery cut short by a shutdown (drained past
``drain_timeout``, or still queued) stays in the store as a crash would leave it; a delivery
whose correlation was cancelled ends.

A cancellation is kept once every agent told of it (the subscribers of ``genie.cancelled``)
has taken the notice: what such an agent kept of the cancelled request (a workflow's run) ends
with its handling of the notice, which carries what it needs into the notice's correlation;
the request is no longer one to resume. A crash before that leaves the request as it was,
resumed by the next start, and the notice is dropped. At start (``replay_own``) the work of
the cancellations' correlations runs again, with nobody waiting for it, and what a cancelled
request left in flight ends unrun.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import anyio

from ..._base.backend import Backend, Event, any_backend
from ..._base.clock import waiting_outside
from ..._base.log import lazy_logger
from ..._errors import (
    ConfigurationError,
    DeliveryError,
    InvalidArgumentError,
    InvalidMessageError,
    MessageError,
    StoreError,
)
from ..._message.envelope import Message
from ..._message.ids import derived_id
from ..approvals import (
    DECIDED_KEPT,
    ApprovalAnswer,
    ApprovalDecision,
    ApprovalDesk,
    ApprovalTimeout,
    ApprovalWithdrawn,
)
from ..correlator import RequestWaiter
from ..deadletter import DeadLetter
from ..local.executor import Worker
from ..local.mailbox import Handoff, Mailbox, Queued
from ..local.transport import LocalTransport
from ..losses import cancelled_request, notice_of_cancelling
from ..observe.observer import Observer
from ..transport import (
    DESK,
    Answer,
    Keeps,
    WorkerCounts,
    delivery_of,
    keeps_of,
    message_json,
)
from .store import Batch, DeliveryStore, Holders, Kept

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..host import TransportHost

__all__ = ["DurableTransport", "Sync", "check_sync"]

_log = lazy_logger("genie.runtime")

# Dead letters that are a stop of this process, not an end of the delivery: it runs again at
# the next start.
_STOPPED = ("cancelled at shutdown", "discarded at shutdown", "the runtime stopped")
# A pending approval is its request's delivery to the desk, kept until the desk's decision.
_APPROVAL, _DECISION = "genie.approval_request", "genie.approval_decision"
_CANCELLED = "genie.cancelled"  # the runtime's notice that a request was cancelled
_TIMEOUT = ApprovalTimeout.message_type  # an approval's deadline, the desk's own timer
_ANSWER = ApprovalAnswer.message_type
_WITHDRAWN = ApprovalWithdrawn.message_type  # an asker withdrawing its approval
POLL = 0.25  # seconds between looks for answers other processes left, while one is awaited
# Seconds a write of ends alone waits for deliveries to ride with it: nobody waits for an
# end, and a crash before it is written runs its delivery again, as at least once allows.
LINGER = 0.005

Sync = float | Literal["always"]
"""When a write reaches the disk: seconds between syncs, or ``"always"`` (each write)."""


def check_sync(sync: object) -> Sync:
    """``sync`` if it is a ``Sync``: ``"always"``, or a finite number of seconds above 0."""
    if sync == "always":
        return "always"
    number = sync if isinstance(sync, int | float) and not isinstance(sync, bool) else math.nan
    if math.isfinite(number) and number > 0:
        return float(number)
    raise ConfigurationError(
        f"store_sync must be 'always' or a number of seconds above 0, not {sync!r}"
    )


T = TypeVar("T")


async def _on_disk(work: Callable[..., T], *args: object) -> T:
    """``work(*args)``, the store's SQLite, in a worker thread: the disk is waited for off the
    loop (and a virtual clock waits for it too)."""
    with waiting_outside():
        return await anyio.to_thread.run_sync(work, *args)


class _Asked:
    """The ``ctx.request`` calls of one request's deliveries: how many each delivery asked
    (its next request's place), who asked each request, and the answers kept, by request."""

    __slots__ = ("answers", "askers", "counts")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}  # asking delivery id -> requests it asked
        self.askers: dict[str, str] = {}  # request id -> the agent that asked it
        self.answers: dict[str, str] = {}  # request id -> its answer's JSON


class DurableTransport(Observer):
    """A ``LocalTransport`` whose deliveries are kept in the SQLite file at ``path`` until they
    end (``Runtime(store=path, store_sync=sync)``)."""

    never_raises = True

    def __init__(
        self, path: str | PathLike[str], sync: Sync = 1.0, pipeline: Path | None = None
    ) -> None:
        sync = check_sync(sync)
        self.store = DeliveryStore(path, each=sync == "always")
        self._every = 1.0 if sync == "always" else float(sync)  # seconds between syncs
        self.local = LocalTransport()
        self.ready_queue = self.local.ready_queue
        self._host: TransportHost | None = None
        self._batch = Batch()
        self._bodies: dict[str, str] = {}  # JSON of messages checked, until kept or written
        self._queued: list[tuple[Queued, Sequence[str], bool]] = []  # written with the batch
        # The running loop's event and timed wait once started (``start``), as the runtime's
        # own waits use.
        backend = any_backend()
        self._new_event: Callable[[], Event] = backend.new_event
        self._wait_at_most = backend.wait_at_most
        self._wake = self._new_event()  # something to write
        self._look = self._new_event()  # an approval is newly pending: look for its answers now
        self._urgent = self._new_event()  # deliveries that wait for their write
        self._writing: list[tuple[Queued, Sequence[str], bool]] = []  # in the write under way
        # Writes begun (``writes``: those written), and what a publisher waits on for its
        # own (``kept``).
        self._begun = 0
        self._wrote = self._new_event()
        self._writer_gone = False  # no write will come: nobody waits for one
        # The store's first failure (a write or a sync the disk refused): the one the runtime
        # stops with. No write follows it (``_flush``).
        self._failure: StoreError | None = None
        # Each message kept, by id: the agents whose delivery of it has not ended, each
        # mapped to the agent it was for (a fallback stands for the agent that failed).
        self._holders: dict[str, Holders] = {}
        self._kept: set[str] = set()  # correlations with a delivery cut short by the stop
        self._requests_kept: set[str] = set()  # requests written (until they settle)
        try:
            self._requests = self.store.requests()  # as the store was found
            self._charged = self.store.charged()  # each request's budget spent before
            self._found = self.store.pending()  # in the order they were kept
            # The pending approvals a desk took: those of a process before this one are
            # taken up again as resumed (``asked_before``).
            self._asked = self.store.asked()
            # The fan-ins' parts a process handled, whose outputs were written with the mark:
            # (message id, fan-in). Run again to rebuild a session, a part taken before sends
            # nothing again (``taken_before``).
            self._parts_taken = self.store.taken()
            # The requests whose sender watched for their reply: run again, each is watched
            # from the start (``TransportHost.resumed``).
            self._watched = self.store.watched()
            replies = self.store.replies()
        except BaseException:  # a row genie did not write, a write refused: given back
            self.store.close()
            raise
        # The pipeline file this runtime runs, until the store names it (``_name_pipeline``).
        self._naming = None if pipeline is None else str(pipeline.resolve())
        self._pending: dict[str, list[Kept]] = {}  # by correlation, until replayed
        # The requests a process before this one left, until resumed or discarded: an
        # outside publish in one of their correlations is refused (``check``).
        self._unresumed = {cid for cid, _ in self._requests}
        # Handlers' requests, by correlation, until it settles (``ask``).
        self._requested: dict[str, _Asked] = {}
        self._unanswered: set[str] = set()  # requests asked before, with no answer kept
        for request_id, (cid, body) in replies.items():
            if body:
                self._requested.setdefault(cid, _Asked()).answers[request_id] = body
            else:
                self._unanswered.add(request_id)
        for row in self._found:
            self._pending.setdefault(row[1], []).append(row)
        self._held: dict[str, str] = {}  # a pending approval's id -> its correlation
        # A fan-in's parts, kept while it keeps their correlation: (agent, correlation) ->
        # the message ids. An agent is a fan-in when it says what it keeps (``keeps``).
        self._parts: dict[tuple[str, str], list[str]] = {}
        # The desk keeps an approval's request by its own rule (``_held``), until its decision.
        self._fan_ins: dict[str, Keeps | None] = {DESK: None}
        self._stopping = False
        self._cancelled: set[str] = set()  # correlations cancelled here, until they settle
        # A cancelled request -> the agents told of it that have not taken the notice yet;
        # until they all have, it is a request to resume after a crash.
        self._told: dict[str, set[str]] = {}
        self._unsettled: set[str] = set()  # settled while its notice was not taken by all
        self._answer: Answer | None = None
        # Answers taken from the store and sent to the desk, until it decides: their rows, by
        # answer message id, and each row's (approval id, answerer, approved).
        self._answer_rows: dict[str, int] = {}
        self._answering: dict[int, tuple[str, str, bool]] = {}
        # The answers taken from the store told they decided their approval, by approval id,
        # the last DECIDED_KEPT approvals: (row, answerer, approved, what it was told). The
        # asker's withdrawal crossing the decision makes the desk refuse such an answer after
        # all (``_crossed``).
        self._deciding: dict[str, list[tuple[int, str, bool, str]]] = {}
        # The rows of answers this process took, until a look no longer finds them open (what
        # became of each is written): a look read before that write finds a row it took
        # still open, and must not take it a second time.
        self._took: set[int] = set()
        self.resumed = 0  # deliveries queued again at start
        self.writes = 0  # transactions written
        self._synced = 0  # writes brought to the disk
        self._unsynced = self._new_event()  # a write not brought to the disk yet

    def unfinished(self) -> list[Message]:
        """The requests published from outside that had not settled when the store was last
        used: their outputs are what a restarted caller waits for. One this runtime cannot
        read (its type is not registered here, or its payload no longer fits its model) is
        reported and left in the store for a runtime that can, as its kept deliveries are."""
        found, unreadable = self._read_requests()
        for cid, why in unreadable.items():
            _log.error(
                "store %s: request %s cannot be resumed here: %s; it stays in the store",
                self.store.path,
                cid,
                why,
                extra={"agent_id": "-", "message_type": "-", "correlation_id": cid},
            )
        return found

    def unreadable(self) -> dict[str, str]:
        """The requests kept that this runtime cannot read, by correlation id: why."""
        return self._read_requests()[1]

    def _read_requests(self) -> tuple[list[Message], dict[str, str]]:
        assert self._host is not None
        types = self._host.types
        found: list[Message] = []
        unreadable: dict[str, str] = {}
        for cid, body in self._requests:
            try:
                found.append(types.parse_bounded_message(body))
            except MessageError as exc:
                unreadable[cid] = str(exc)
        return found, unreadable

    def discard(self, correlation_id: str) -> None:
        """Forget a kept request that was not resumed, and all the store kept of it."""
        if correlation_id in self._requests_kept or all(
            cid != correlation_id for cid, _ in self._requests
        ):
            raise InvalidArgumentError(
                f"the store {self.store.path} keeps no request {correlation_id} to discard "
                "(none was kept, or it was resumed or discarded already)"
            )
        self.store.discard(correlation_id)
        self._requests = [(c, b) for c, b in self._requests if c != correlation_id]
        self._unresumed.discard(correlation_id)
        self._charged.pop(correlation_id, None)
        self._requested.pop(correlation_id, None)
        self._found = [row for row in self._found if row[1] != correlation_id]
        for mid, *_ in self._pending.pop(correlation_id, []):
            self._asked.pop(mid, None)
            self._watched.discard(mid)
            self._parts_taken = {(m, a) for m, a in self._parts_taken if m != mid}
        self._name_pipeline()

    def _name_pipeline(self) -> None:
        """The store names the pipeline file whose runs it keeps (``genie approvals`` says
        which to run to resume them), once this runtime's pipeline can read every request it
        keeps: while it keeps another pipeline's, which this one refuses to go on with, it
        still names that one."""
        if self._naming is not None and not self.unreadable():
            self.store.name_pipeline(self._naming)
            self._naming = None

    def keeps(self, correlation_id: str) -> bool:
        return correlation_id in self._requests_kept

    def holds(self, correlation_id: str) -> bool:
        if correlation_id in self._held.values():
            return True
        kept = self._pending.get(correlation_id, ())
        return any(DESK in holders and _APPROVAL in body for _, _, body, holders in kept)

    def stopping(self) -> None:
        self._stopping = True

    def asked_before(self, approval_id: str) -> int | None:
        return self._asked.get(approval_id)

    def taken_before(self, message_id: str, agent_id: str) -> bool:
        return (message_id, agent_id) in self._parts_taken

    def keeps_session(self, agent_id: str, correlation_id: str) -> bool:
        if agent_id == DESK:
            return correlation_id in self._held.values()
        return (agent_id, correlation_id) in self._parts

    def keeps_delivery(self, message: Message, agent_id: str) -> bool:
        # Written (``_holders``) and not ended; a cancelled request's deliveries end, stop or
        # not, and after a failed write what was kept is no longer sure.
        holders = self._holders.get(message.id)
        return (
            holders is not None
            and agent_id in holders.values()
            and message.correlation_id not in self._cancelled
            and self._failure is None
        )

    def answers_to(self, answer: Answer) -> None:
        """Answers other processes leave in the store (``genie approvals``) go to ``answer``."""
        self._answer = answer

    def ask(self, request: Message) -> tuple[Message, Message | None]:
        """A handler's ``ctx.request``, under the id it has on every run of the asking
        delivery (derived from that delivery and the request's place in it), and the answer
        kept for it, if a run of that delivery before a crash was answered: given again,
        the answering agent does not run twice. The answer is kept (``published``) in the
        write that ends the answering delivery, so a crash leaves that delivery to run again
        under the same delivery id, or its answer, never both."""
        assert self._host is not None
        assert request.causation_id is not None  # a handler's: caused by its delivery
        cid = request.correlation_id
        asked = self._requested.setdefault(cid, _Asked())
        asking = delivery_of(request.causation_id, request.sender)
        place = asked.counts.get(asking, 0)
        asked.counts[asking] = place + 1
        request = request.model_copy(update={"id": derived_id(asking, place)})
        body = asked.answers.get(request.id)
        if body is None:
            asked.askers[request.id] = request.sender
            return request, None
        try:
            return request, self._host.types.parse_bounded_message(json.loads(body))
        except Exception as exc:  # a type this runtime no longer hosts: asked again
            where = {"agent_id": request.sender, "message_type": request.type}
            _log.error(
                "store %s: the answer to request %s cannot be read: %s; it is asked again",
                self.store.path,
                request.id,
                exc,
                extra={**where, "correlation_id": cid},
            )
            asked.askers[request.id] = request.sender
            return request, None

    # --- the runtime's side -----------------------------------------------------------------
    def bind(self, host: TransportHost) -> None:
        self._host = host
        host.watch(self)
        # The model budgets of a request count in the store, so that a resumed request
        # spends only what its calls before the restart left.
        host.share_model_budgets(self)

    async def charge(self, correlation_id: str, key: str, n: int, /, what: str) -> int:
        """``genie.llm``'s ``SharedCounters``, kept in the store (``DeliveryStore.charge``)."""
        return await _on_disk(self.store.charge, correlation_id, key, n, what)

    def attach_agents(self, mailboxes: Mapping[str, Mailbox]) -> None:
        self.local.attach_agents(mailboxes)

    def start(
        self,
        tg: TaskGroup,
        run: Callable[[Mailbox, Worker], Awaitable[None]],
        backend: Backend,
    ) -> None:
        self.local.start(tg, run, backend)
        self._name_pipeline()
        new_event = self._new_event = backend.new_event
        self._wait_at_most = backend.wait_at_most
        self._wake, self._urgent, self._look = new_event(), new_event(), new_event()
        self._unsynced, self._wrote = new_event(), new_event()
        tg.start_soon(self._writer)
        tg.start_soon(self._syncer)

    async def take_answers(self) -> None:
        """Take the answers other processes left, while an approval is pending here (run by
        the runtime outside the handlers' tasks: an answer is published from outside). What
        became of one sent to the desk is written with the desk's decision, or when the desk
        took it and decided nothing (``_answer_ended``); a refusal at once."""
        while True:
            if self._held:  # another process may answer at any time: looked for every POLL
                await self._wait_at_most(self._look, POLL)
            else:  # no answer to look for until an approval is pending (``handled``)
                await self._look.wait()
            self._look = self._new_event()
            if not self._held or self._answer is None:
                continue
            try:
                await self._take(self._answer)
            except sqlite3.Error as exc:  # another process holds the file: the next look
                _log.warning("store %s: %s; answers are looked at again", self.store.path, exc)

    async def _take(self, answer: Answer) -> None:
        found = await _on_disk(self.store.answers)
        self._took.intersection_update(r[0] for r in found)  # the others are told: done
        for row, approval_id, approved, by, roles, reason, given in found:
            if row in self._took:
                continue  # sent: the desk's decision is awaited, or its writing
            kept = self._kept_here(approval_id)
            # A refusal (a policy's denial too) comes back as ``refused: WHY``, at once.
            sent = answer(approval_id, approved, by, roles, reason, given, kept)
            if sent is None:
                continue  # its approval is kept, not pending here yet: looked at again
            self._took.add(row)
            if isinstance(sent, Message):
                self._answer_rows[sent.id] = row
                self._answering[row] = (approval_id, by, approved)
            else:
                await _on_disk(self.store.answered, row, sent)

    def _kept_here(self, message_id: str) -> bool:
        """Whether the message ``message_id`` is kept with a delivery that has not ended, in
        flight here or left by the process before to be resumed (an approval: pending)."""
        return message_id in self._holders or any(
            kept[0] == message_id for found in self._pending.values() for kept in found
        )

    def _answer_ended(self, answer_id: str, outcome: str) -> None:
        """What became of the answer message ``answer_id``, if it was one taken from the
        store: written in the next write."""
        row = self._answer_rows.pop(answer_id, None)
        if row is not None and self._answering.pop(row, None) is not None:
            self._batch.answered.append((outcome, row))
            self._wake.set()

    def _decided(self, decision: ApprovalDecision) -> None:
        """The desk decided: each answer taken for that approval is told, in the write that
        ends the approval, what the desk tells its answerer (``ApprovalDesk.told``: its own
        word, or the decision made otherwise first). So is each left in the store and not
        taken yet (another person answering at once): no later look takes it, the approval
        gone, and a run that ends with this decision looks no more."""
        approval_id = decision.approval_id
        desk = self._desk()
        for row, (answered, by, approved) in list(self._answering.items()):
            if answered != approval_id:
                continue
            del self._answering[row]
            told = None if desk is None else desk.told(approval_id, by, approved)
            if told is None:
                continue  # the desk says nothing of it: told as one not taken, below
            self._batch.answered.append((told, row))
            if told in ("approved", "rejected"):  # it decided: a withdrawal may cross it
                self._deciding.setdefault(approval_id, []).append((row, by, approved, told))
                if len(self._deciding) > DECIDED_KEPT:
                    del self._deciding[next(iter(self._deciding))]
        self._batch.decided.append((f"decided already: {decision.said()}", approval_id))
        self._wake.set()

    def _crossed(self, withdrawn: Message) -> None:
        """The desk took the asker's withdrawal ``withdrawn``: if it crossed the decision on
        its way, an answer taken from the store and told it decided is told what the desk
        says of it now (refused: not taken), in the next write."""
        payload = withdrawn.payload
        assert isinstance(payload, ApprovalWithdrawn)
        desk = self._desk()
        rows = self._deciding.get(payload.approval_id)
        if desk is None or rows is None:
            return
        for i, (row, by, approved, told) in enumerate(rows):
            now = desk.told(payload.approval_id, by, approved)
            if now is None or now == told:
                continue  # forgotten by the desk, or the withdrawal did not cross it
            rows[i] = (row, by, approved, now)
            self._batch.retold.append((now, row, told))
            self._wake.set()

    def replay(self, correlation_id: str) -> int:
        """Queue again the deliveries of ``correlation_id`` the store kept (written already:
        straight to the mailboxes); how many. Once: a second call finds none."""
        host = self._host
        assert host is not None
        spent = self._charged.pop(correlation_id, 0)
        if spent:  # its budget continues where it stopped
            host.charge(host.correlation(correlation_id), spent)
        if correlation_id in self._unresumed:
            self._unresumed.discard(correlation_id)
            self._requests_kept.add(correlation_id)  # written before: kept until it settles
        return self._run_again(self._pending.pop(correlation_id, []))

    def replay_own(self) -> int:
        """At start: queue again the work kept in the correlations of cancellations (a
        cancelled workflow's compensations), in the order it was kept, with nobody waiting
        for it; end unrun what a cancelled request left in flight, and the notices of
        cancellations not taken before the stop (their requests resume as they were)."""
        requests = {cid for cid, _ in self._requests}
        own = {cid for cid in self._pending if cid not in requests}
        for cid in own:
            del self._pending[cid]
        rows, self._found = [row for row in self._found if row[1] in own], []
        return self._run_again(rows, requests)

    def _run_again(self, kept: Iterable[Kept], requests: set[str] | None = None) -> int:
        """Queue the deliveries of ``kept`` again; how many. Work no caller waits for (given
        the ``requests`` a caller may resume) ends unrun when it is what a cancelled request
        left, or the notice of the cancellation of one of ``requests``."""
        host = self._host
        assert host is not None
        found = 0
        kept = list(kept)
        # The deliveries that run again: a request one of them asked while it ran, not
        # answered, is asked again by that run, under the same id.
        running = {
            delivery_of(mid, agent)
            for mid, _, _, holders in kept
            for held in holders.items()
            for agent in held
        }
        for mid, cid, body, holders in kept:
            where = {"agent_id": "-", "message_type": "-", "correlation_id": cid}
            try:
                message = host.types.parse_bounded_message(json.loads(body))
            except Exception as exc:  # a type this runtime no longer hosts, say
                _log.error(
                    "store %s: message %s cannot be resumed: %s",
                    self.store.path,
                    mid,
                    exc,
                    extra=where,
                )
                continue
            asking = message.causation_id
            if (
                asking is not None
                and mid in self._unanswered
                and delivery_of(asking, message.sender) in running
            ):
                self._holders[mid] = {}  # ends with the next write
                self._batch.moved.add(mid)
                self._wake.set()
                _log.info(
                    "store %s: request %s ends unrun: the delivery that asked it asks again",
                    self.store.path,
                    mid,
                    extra=where,
                )
                continue
            if requests is not None and (
                cancelled_request(cid) is None or notice_of_cancelling(message) in requests
            ):
                self._holders[mid] = {}  # ends with the next write
                self._batch.moved.add(mid)
                self._wake.set()
                why = (
                    "its request was cancelled"
                    if message.type != _CANCELLED
                    else "the request resumes"
                )
                _log.info(
                    "store %s: message %s ends unrun: %s", self.store.path, mid, why, extra=where
                )
                continue
            self._holders[mid] = holders
            for recipient in holders:
                found += 1
                if recipient not in self.local.mailboxes:
                    _log.error(
                        "store %s: delivery %s:%s is for %r, which this runtime does not host",
                        self.store.path,
                        mid,
                        recipient,
                        recipient,
                        extra={**where, "agent_id": recipient},
                    )
                    continue
                host.resumed(
                    host.correlation(cid), message, recipient, watched=mid in self._watched
                )
                self.local.put(message, recipient)
                self.resumed += 1
        return found

    async def _writer(self) -> None:
        """Write each batch in one transaction, then queue its deliveries. A batch of ends
        alone lingers (``LINGER``) for the next deliveries, to be written in their
        transaction: one write, not two, for each step of a flow."""
        try:
            while True:
                if not self._batch and not self._queued:
                    await self._wake.wait()
                    self._wake = self._new_event()
                    continue
                if not self._batch.waited_for:
                    await self._wait_at_most(self._urgent, LINGER)
                # A write begun is finished, so what it holds is queued below or at close
                # (``drain_queues``), never lost in between: nothing from here to the queueing
                # awaits, but the disk, shielded.
                self._urgent = self._new_event()
                batch, self._batch = self._batch, Batch()
                batch.seal(self._holders, self._asked)
                self._bodies.clear()  # a message checked and not put: it was not routed
                queued, self._queued = self._queued, []
                self._writing = queued
                self._begun += 1
                if self.store.each:  # the disk is waited for, off the loop
                    with anyio.CancelScope(shield=True):
                        await _on_disk(self.store.write, batch)
                else:  # into the log in the system's cache: no thread to wait for
                    self.store.write(batch)
                self._writing = []
                self._wrote_one()
                for item, recipients, held in queued:
                    if held:
                        self.local.put_held(item, recipients)
                    else:
                        self.local.put(item, recipients[0])
        except StoreError as exc:  # a write failed (``DeliveryStore._transaction``)
            if self._failed(exc):
                raise
        finally:
            # Stopped or failed: the publishers waiting for a write hear no more will come.
            self._writer_gone = True
            self._wrote.set()

    def _failed(self, exc: StoreError) -> bool:
        """Keep ``exc`` as the store's failure if it is the first: then it is the one to raise
        (the runtime stops with it); a later one follows from it and is not raised, so that
        the runtime stops with one error, not a group of two."""
        if self._failure is not None:
            return False
        self._failure = exc
        return True

    def failure(self) -> StoreError | None:
        return self._failure

    def _wrote_one(self) -> None:
        self.writes += 1
        wrote, self._wrote = self._wrote, self._new_event()
        wrote.set()
        self._unsynced.set()

    async def kept(self) -> None:
        """Return once what was admitted so far is written (the write now gathering it has
        ended): a publish returns with its message in the store. Shielded, as the write is:
        a publisher cancelled meanwhile has published, and hears of it at its next
        checkpoint. Raises ``StoreError`` if the write failed (and with it the runtime)."""
        due = self._begun + 1  # the batch gathering now is the next write begun
        with anyio.CancelScope(shield=True):
            while self.writes < due and not self._writer_gone:
                await self._wrote.wait()
        failure = self._failure
        if self.writes < due and failure is not None:
            raise StoreError(
                f"{failure}; the message is not kept", path=failure.path, kept=failure.kept
            ) from failure

    async def _syncer(self) -> None:
        """Bring the writes to the disk ``_every`` seconds after the first one not brought
        there yet. While there is none it waits for one, not for the clock: a runtime with
        nothing to write costs no wake-up, and a tiny ``store_sync`` no spin."""
        while True:
            while self._synced == self.writes:
                await self._unsynced.wait()
                self._unsynced = self._new_event()
            await anyio.sleep(self._every)
            self._synced = self.writes
            try:
                await _on_disk(self.store.sync)
            except StoreError as exc:
                if self._failed(exc):
                    raise
                return

    # --- the transport calls ----------------------------------------------------------------
    def turn(self, worker: Worker, first: Mailbox) -> Iterable[Mailbox]:
        return self.local.turn(worker, first)

    def has_room(self, recipient: str) -> bool:
        return self.local.has_room(recipient)

    async def wait_for_room(self, recipient: str) -> None:
        await self.local.wait_for_room(recipient)

    def hold(self, recipients: Sequence[str], start: int) -> int:
        return self.local.hold(recipients, start)

    def release(self, recipient: str) -> None:
        self.local.release(recipient)

    def put(self, item: Queued, recipient: str) -> None:
        self._keep(item, (recipient,), False)

    def put_held(self, item: Queued, recipients: Sequence[str]) -> None:
        self._keep(item, recipients, True)

    def check(self, msg: Message) -> None:
        """Raise ``DeliveryError`` if ``msg`` is kept already, ``InvalidMessageError`` if it
        has no JSON to keep; its JSON is kept for ``_keep`` meanwhile (encoded once).

        A message's id is its deliveries' idempotency key: published again while kept, it
        would run a second time under the same delivery id, the first end would take the
        row of both, and a request left by the process before would be run twice, once sent
        and once resumed."""
        if self._kept_here(msg.id):
            raise DeliveryError(
                f"cannot publish {msg.type!r}: message {msg.id} is kept in the store "
                f"{self.store.path} already, its delivery not ended; a message is published "
                "once (rt.message(...) makes a new one; rt.resume(...) goes on with one kept)",
                message_id=msg.id,
                correlation_id=msg.correlation_id,
            )
        cid = msg.correlation_id
        if cid in self._unresumed:
            # It would take the kept request's place in the store: its row, then at its end
            # the rest of the kept request with it. (No answer to a kept approval comes this
            # way: the desk knows the approval once its request is resumed.)
            raise DeliveryError(
                f"cannot publish {msg.type!r} in correlation {cid}: the store "
                f"{self.store.path} keeps a request of that correlation from before, not "
                f"resumed (rt.unfinished() lists it); rt.resume(...) goes on with it, "
                f"rt.discard({cid!r}) drops it, or publish in another correlation",
                message_id=msg.id,
                correlation_id=cid,
            )
        self._bodies[msg.id] = self._json(msg)

    def _json(self, msg: Message) -> str:
        body = self._bodies.pop(msg.id, None)
        if body is not None:
            return body  # checked
        try:
            body = message_json(msg)
        except (ValueError, TypeError) as exc:  # pydantic's and json's: no JSON form
            why = str(exc)
        else:
            room = self.store.room()
            if len(body) <= room:  # JSON is ASCII: its length is its size in bytes
                return body
            why = f"its JSON is {len(body)} bytes, and a row holds {room}"
        problem = f"the store {self.store.path} cannot keep it ({why})"
        raise InvalidMessageError(msg.type, _unkeepable_field(msg), problem) from None

    def _keep(self, item: Queued, recipients: Sequence[str], held: bool) -> None:
        msg = item.message if isinstance(item, Handoff) else item
        mid, cid, batch = msg.id, msg.correlation_id, self._batch
        holders = self._holders.get(mid)
        # Published from outside (``publish`` or ``publish_nowait``, which ``check`` it right
        # before they route it), with a cause or not: its output is what a restart waits for.
        outside = mid in self._bodies
        body = ""
        if holders is None:
            try:
                body = self._json(msg)
            except InvalidMessageError as exc:  # not checked (a timer's, say): run, unkept
                where = {"agent_id": recipients[0], "message_type": msg.type}
                _log.error("%s; it runs, unkept", exc, extra={**where, "correlation_id": cid})
                self._queued.append((item, recipients, held))
                self._wake.set()
                self._urgent.set()
                return
        if outside and cid not in self._requests_kept:
            self._requests_kept.add(cid)
            batch.requests.append((cid, body or self._json(msg)))
        if self._host is not None:
            batch.charged[cid] = self._host.charged(self._host.correlation(cid))
        if holders is None:  # kept once, whatever the number of its recipients
            holders = self._holders[mid] = {}
            batch.kept[mid] = (cid, body)
            if self._host is not None and self._host.watched(msg):
                batch.watched.append(mid)  # with the request: a restart watches it again
            asked = self._requested.get(cid)
            if asked is not None and mid in asked.askers:
                # A handler's request: listed as asked, so that the next start knows it for
                # one (its asker, run again, asks it again) until its answer is kept.
                batch.answers.append((mid, cid, ""))
        else:
            batch.moved.add(mid)
        if isinstance(item, Handoff):  # the fallback goes on with its agent's delivery
            holders[recipients[0]] = holders.pop(item.failed_agent, item.failed_agent)
        else:
            for rid in recipients:
                holders[rid] = rid
            if msg.type == _CANCELLED:
                target = notice_of_cancelling(msg)
                if target is not None:
                    self._told.setdefault(target, set()).update(recipients)
        batch.waited_for = True
        self._queued.append((item, recipients, held))
        self._wake.set()
        self._urgent.set()

    def cancel(self, correlation_id: str) -> int:
        self._cancelled.add(correlation_id)  # its deliveries end, even those a stop cuts
        return self.local.cancel(correlation_id)

    def forward(self, msg: Message) -> bool:
        return False

    def drain_queues(self) -> Iterator[tuple[Mailbox, Queued]]:
        """At close: what was queued, and what waits to be written (written now: it stays in
        the store for the next start)."""
        self._flush()
        mailboxes = self.local.mailboxes
        for item, recipients, _ in (*self._writing, *self._queued):
            for rid in recipients:
                yield mailboxes[rid], item
        self._writing, self._queued = [], []
        yield from self.local.drain_queues()

    def workers(self) -> WorkerCounts:
        return self.local.workers()

    # --- outcomes: the end of each delivery -------------------------------------------------
    def _ended(self, message_id: str, agent_id: str) -> None:
        """The delivery of ``message_id`` to ``agent_id`` ended (or the delivery that agent
        stood in for, as a fallback, or that it failed and its fallback failed too)."""
        holders = self._holders.get(message_id)
        if holders is None:
            return
        if holders.pop(agent_id, None) is None:
            stood_in = [held for held, was_for in holders.items() if was_for == agent_id]
            if not stood_in:
                return
            del holders[stood_in[0]]
        if self._parts_taken:
            self._parts_taken.discard((message_id, agent_id))  # its row goes with the message's
        moved = self._batch.moved
        if message_id not in moved:  # else the writer was woken when it first moved
            moved.add(message_id)
            self._wake.set()

    def delivered_many(self, msg: Message, agent_ids: Sequence[str]) -> None:
        """Nothing to do: a fan-out is kept as it is queued (``put_held``). Said here so that
        the runtime tells this observer of a fan-out once, not once for each agent."""

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        if msg.type == _CANCELLED:
            self._taken(msg, agent_id)
        if agent_id == DESK and msg.type == _ANSWER and not outputs:  # the desk refused it
            self._answer_ended(msg.id, f"refused: {self._refusal(msg)}")
        if agent_id == DESK and msg.type == _TIMEOUT:
            self._escalated(msg)
        if agent_id == DESK and msg.type == _WITHDRAWN and not outputs:  # decided already
            self._crossed(msg)
        if agent_id == DESK and msg.type == _APPROVAL:
            self._held[msg.id] = msg.correlation_id  # pending: kept until its decision
            if msg.id not in self._asked:  # asked: the next start takes it up as resumed
                self._asked[msg.id] = 0
                self._batch.asked.append(msg.id)
                self._wake.set()
            self._look.set()  # answers left for it while no process held it go first
            return
        if agent_id not in self._fan_ins:
            mailbox = self.local.mailboxes.get(agent_id)
            self._fan_ins[agent_id] = None if mailbox is None else keeps_of(mailbox.agent)
        keeps = self._fan_ins[agent_id]
        if keeps is not None:  # a fan-in's part: kept while it keeps the correlation
            cid = msg.correlation_id
            if keeps(cid):
                self._parts.setdefault((agent_id, cid), []).append(msg.id)
                if (msg.id, agent_id) not in self._parts_taken:  # written with what it sent
                    self._parts_taken.add((msg.id, agent_id))
                    self._batch.taken.append((msg.id, agent_id))
                    self._wake.set()
                return
            for mid in self._parts.pop((agent_id, cid), ()):  # it has emitted, or ended
                self._ended(mid, agent_id)
        self._ended(msg.id, agent_id)

    def _escalated(self, timeout: Message) -> None:
        """The desk took its first deadline of an approval: still pending, it escalated (else
        its decision ended it first, in ``published``), written so that the next start takes
        it up escalated."""
        deadline = timeout.payload
        if not isinstance(deadline, ApprovalTimeout) or deadline.round:
            return
        approval_id = deadline.approval_id
        if approval_id in self._held and self._asked.get(approval_id) == 0:
            self._asked[approval_id] = 1
            self._batch.escalated.append(approval_id)
            self._wake.set()

    def _refusal(self, answer: Message) -> str:
        """Why the desk refused ``answer``, in the desk's words."""
        desk = self._desk()
        said = None if desk is None else desk.refusal_of(answer.id)
        return said or "the approval desk did not take it"

    def _desk(self) -> ApprovalDesk | None:
        """The runtime's approval desk, whose words each answer taken from the store is told."""
        mailbox = self.local.mailboxes.get(DESK)
        desk = None if mailbox is None else mailbox.agent
        return desk if isinstance(desk, ApprovalDesk) else None

    def published(self, msg: Message, recipients: int) -> None:
        asked = self._requested.get(msg.correlation_id)
        if (
            asked is not None
            and asked.askers.get(msg.causation_id or "") == msg.recipient
            and self._taken_as_answer(msg)
        ):
            # The answer to a handler's request: kept, in the write that ends the delivery
            # that answered, for a run of the asker after a crash.
            request_id = msg.causation_id
            assert request_id is not None
            del asked.askers[request_id]
            try:
                body = self._json(msg)
            except InvalidMessageError as exc:  # the asker is answered; a re-run asks again
                where = {"agent_id": msg.sender, "message_type": msg.type}
                _log.error(
                    "%s; it is not kept", exc, extra={**where, "correlation_id": msg.correlation_id}
                )
            else:
                asked.answers[request_id] = body
                self._batch.answers.append((request_id, msg.correlation_id, body))
                self._wake.set()
        if msg.type == _DECISION and msg.sender == DESK:
            decision = msg.payload
            assert isinstance(decision, ApprovalDecision)
            if self._held.pop(decision.approval_id, None) is not None:
                self._ended(decision.approval_id, DESK)
            self._decided(decision)

    def _taken_as_answer(self, msg: Message) -> bool:
        """Whether a request's waiter took ``msg`` as its answer (admitted for the asker):
        only such an answer is given again, unjudged, to a re-run of the asker."""
        assert self._host is not None
        waiters = self._host.correlation(msg.correlation_id).waiters
        return any(isinstance(w, RequestWaiter) and w.reply is msg for w in waiters)

    def dead_lettered(self, letter: DeadLetter) -> None:
        cid = letter.message.correlation_id
        stopped = (
            letter.kind == "cancelled"
            and letter.reason.startswith(_STOPPED)
            and cid not in self._cancelled
        )
        if letter.message.type == _ANSWER and not stopped:  # a stop: taken again next time
            self._answer_ended(letter.message.id, f"refused: {letter.kind}: {letter.reason}")
        if letter.agent_id is None or letter.kind in ("shed", "unrouted"):
            return  # never queued: nothing was kept
        if stopped:
            self._kept.add(cid)
            return  # this process stopped: it runs again at the next start
        if letter.message.type == _CANCELLED:
            self._taken(letter.message, letter.agent_id)
        self._ended(letter.message.id, letter.agent_id)

    def _taken(self, notice: Message, agent_id: str) -> None:
        """``agent_id`` has taken (or failed on) ``notice`` of a cancellation: what it kept
        of the cancelled request ends with this delivery, in whose outputs it carried what it
        needs; once every agent told has, the request is cancelled for good."""
        target = notice_of_cancelling(notice)
        told = self._told.get(target or "")
        if target is None or told is None or agent_id not in told:
            return
        told.discard(agent_id)
        for mid in self._parts.pop((agent_id, target), ()):
            self._ended(mid, agent_id)
        if told:
            return
        del self._told[target]
        if target in self._unsettled:
            self._unsettled.discard(target)
            self.settled(target)
        else:  # still ending: no longer a request to resume, whatever a crash leaves of it
            self._requests_kept.discard(target)
            self._batch.settled.append(target)
            self._wake.set()

    def settled(self, correlation_id: str) -> None:
        if correlation_id in self._kept:
            return  # settled by the stop alone: the request resumes at the next start
        if self._told.get(correlation_id):
            self._unsettled.add(correlation_id)
            return  # cancelled, but the cancellation is not taken yet (``_taken``)
        held = [a for a, cid in self._held.items() if cid == correlation_id]
        parts = [key for key in self._parts if key[1] == correlation_id]
        if (held or parts) and self._stopping:
            return  # paused for a person, or a fan-in under way: resumed at the next start
        for approval_id in held:  # cancelled while paused: the approval goes with it
            del self._held[approval_id]
            self._ended(approval_id, DESK)
        for key in parts:  # the fan-in ended without emitting (nothing to bundle, or failed)
            for mid in self._parts.pop(key):
                self._ended(mid, key[0])
        self._requests_kept.discard(correlation_id)
        self._cancelled.discard(correlation_id)
        self._requested.pop(correlation_id, None)
        self._batch.settled.append(correlation_id)
        self._wake.set()

    def closed(self) -> None:
        self._flush()
        try:
            self.store.check()  # a run shorter than a sync is checked here
        except StoreError as exc:
            self._failed(exc)
        self.store.close()

    def _flush(self) -> None:
        """Write what waits to be written, now (at close). Nothing once a write failed: it
        held deliveries' ends with the messages their handlers made, so those deliveries run
        again at the next start, and a later write that ended those messages and kept what
        they made would have the work done twice. A failure here is kept for the runtime to
        raise once it has closed (``failure``), not raised in the middle of its close."""
        if not self._batch or self._failure is not None:
            return
        batch, self._batch = self._batch, Batch()
        batch.seal(self._holders, self._asked)
        self._begun += 1
        try:
            self.store.write(batch)
        except StoreError as exc:
            self._failed(exc)
            return
        self._wrote_one()


def _unkeepable_field(msg: Message) -> str:
    """The field of ``msg`` to name when the store cannot keep it: the payload's first field
    with no JSON form, else the payload (too big for a row, say). Asked only once the JSON
    failed, so a message the store keeps pays nothing for it."""
    payload = msg.payload
    for name in type(payload).model_fields:
        try:
            payload.model_dump_json(include={name})
        except (ValueError, TypeError):
            return f"payload.{name}"
    return "payload"
