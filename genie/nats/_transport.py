"""The NATS JetStream transport: the same pipeline across processes (docs/scale-out.md).

Every process builds the whole pipeline, so routing and admission run where a message is sent
(denied data never leaves the process), exactly as in one process. Only admitted deliveries
cross the broker:

- one work-queue stream per namespace (``GENIE_<NS>``), a subject per recipient agent
  (``genie.<ns>.agent.<id>``), ``Delivery.id`` as ``Nats-Msg-Id``, so the server drops a
  publish it already has (a re-run after a crash);
- one durable pull consumer per agent, bound by every worker that hosts it, with
  ``max_ack_pending`` = the agent's ``max_concurrency`` and explicit acks;
- a worker runs a delivery through the same ``DeliveryRunner``, then, in this order, records
  the outcome (a stream of outcome records, addressed to the process that started the request),
  publishes a dead letter if there is one, publishes the outputs, and only then acks. A handler's
  outputs get ids derived from its input delivery, so whatever a killed worker published is
  published again under the same ids, and deduplicated;
- the process that started a request (the origin) keeps the request's accounting: each
  outcome record closes one delivery and opens the ones its handler sent (``spawned``), and
  carries the denials, sheds and replies of that delivery, so ``ask``, its partial results and
  the identity ``delivered == handled + denied + dead_lettered + shed + in_flight`` hold there
  as in one process (an origin that hosts the agent it asks counted the delivery as it ran
  it: the record it gets from itself only closes it, ``OutcomeReplay.runs_here``);
- shared by every process of the namespace: the correlation budget (a counter stream, charged
  before outputs are published), the consent ledger (``NatsConsentLedger``) and the audit log
  (``NatsAuditLog``, one hash chain in stream order);
- a handler's ``ctx.request`` is published at once, and its answer comes back to the asking
  process through the replies stream; its ``ctx.schedule`` timers wait in the worker, counted
  as its outputs until they end; ``rt.cancel`` reaches every worker through the cancel stream
  (``NatsCancellations``).
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .._agent.context import Timer
from .._base.backend import Backend, any_backend
from .._base.log import lazy_logger
from .._base.resilience import at_least
from .._errors import ConfigurationError, described, middle_cut
from .._message.envelope import Message
from .._runtime.approvals import (
    DESK,
    RESUMED_ACTION,
    Approval,
    ApprovalAnswer,
    ApprovalDecision,
    ApprovalDesk,
    ApprovalRequest,
    ApprovalWithdrawn,
    rounds_reached,
)
from .._runtime.audit import AuditLogError, AuditRecord, AuditsItself
from .._runtime.correlator import LATE_MEMORY, Missing
from .._runtime.deadletter import DeadLetter
from .._runtime.local.executor import Worker
from .._runtime.local.mailbox import Handoff, Mailbox, Queued
from .._runtime.transport import (
    RUNTIME,
    Answer,
    Delivery,
    WorkerCounts,
    delivery_id,
    delivery_of,
    keeps_of,
)
from ._approvals import NatsApprovals, listing
from ._audit import NatsAuditLog, row_id_of
from ._cancel import NatsCancellations
from ._consent import NatsConsentLedger
from ._consumer import (
    FetchCounts,
    InProgressBeats,
    ack_wait_of,
    batch_limit,
    consumer_config,
    fetch_ready,
)
from ._declared import fingerprint
from ._entry import EntryRequests, check_origin
from ._held import Held, HeldDeliveries
from ._memory import NatsMemory
from ._names import Claim, NatsNames, ensure_streams, need_server
from ._presence import Presence, unhosted, unhosted_warning
from ._replay import OutcomeReplay, load_record, record_undecodable, what_it_was
from ._requests import give_answer
from ._run import ID_CHARS, Recorder, Run, answer_of, fitted, need_max_payload, outcome_items
from ._wire import (
    CORRELATION,
    MSG_ID,
    ORIGIN,
    PARENT,
    REQUEST,
    UNCHARGED,
    WATCHED,
    WIRE_VERSION,
    Item,
    MessageTooLargeError,
    NatsPublisher,
    PublishRefusedError,
    bound,
    connected,
    message_json,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js.api import PubAck
    from nats.js.client import JetStreamContext

    from .._runtime.host import TransportHost
    from .._runtime.runtime import Runtime

# fetch_ready: the benchmark's bare work queue fetches as the transport does.
__all__ = ["NatsNames", "NatsTransport", "Step", "StepHook", "fetch_ready"]

_log = lazy_logger("genie.nats")

_APPROVAL = ApprovalRequest.message_type
_ANSWER = ApprovalAnswer.message_type
TIMER = "~timer"  # the recipient of a timer's own delivery (never an agent id: '~')
# The delivery whose handler runs in this task (a worker runs each in the task that took it).
_RUNNING: ContextVar[Run | None] = ContextVar("genie_nats_running", default=None)


class _RowsOfDeliveries:
    """The namespace's audit log as an agent that audits itself writes to it: a row made while
    a delivery runs is known by that delivery and its place among the delivery's rows
    (``row_id_of``), so that the delivery run again (its worker killed after its rows were
    written, before its ack) writes each of them once."""

    __slots__ = ("_log",)

    def __init__(self, log: NatsAuditLog) -> None:
        self._log = log

    def record(self, record: AuditRecord) -> None:
        run = _RUNNING.get()
        if run is None:  # made outside a delivery (a person's answer taken by the desk)
            self._log.record(record)
            return
        run.rows += 1
        made_in = run.delivery.id
        if run.retaken is not None and record.action == RESUMED_ACTION:
            made_in += f"@{run.retaken}"  # each start's own row, not the last start's again
        self._log.record(record, row_id_of(made_in, run.rows, record))


# Where a worker may be told to stop (tests pick the point of death with these).
# A delivery whose handler made audit rows of its own (a workflow's, the desk's): "audited"
# (its rows in the stream, before it is kept). A fan-in's delivery also: "kept" (written to
# the held bucket, before the ack) and
# "released" (its correlation's entries purged, after the ack). A send from outside a
# handler (an entry's request, a timer, a person's answer): "sending", before it goes out.
Step = str  # "asked" | "handled" | "charged" | "outcome" | "published" | "audited" | ...
StepHook = Callable[[Step, Delivery], None]


def _check_arguments(
    url: object,
    names: object,
    hosted: object,
    ack_wait: object,
    max_deliveries: object,
    poll: object,
) -> None:
    """Refused where given, naming the argument, rather than by the worker that reads it: a
    ``max_deliveries`` of 0 dead-letters every delivery unrun, a string of them fails the
    first delivery, a negative ``ack_wait`` the start, and a string ``hosted`` is its
    characters."""
    problems = (
        ("url", not isinstance(url, str), "a NATS server's URL (a string)", url),
        ("names", not isinstance(names, NatsNames), "a NatsNames", names),
        ("hosted", isinstance(hosted, str | bytes), "agent ids (a list, not a string)", hosted),
        (
            "ack_wait",
            ack_wait is not None and not at_least(ack_wait, 0, strictly=True),
            "a number of seconds above 0, or None",
            ack_wait,
        ),
        (
            "max_deliveries",
            not (isinstance(max_deliveries, int) and at_least(max_deliveries, 1)),
            "a whole number, 1 or more",
            max_deliveries,
        ),
        ("poll", not at_least(poll, 0), "a number of seconds, 0 or more", poll),
    )
    for name, wrong, what, value in problems:
        if wrong:
            raise ConfigurationError(f"NatsTransport: {name} must be {what}, not {value!r}")


def _opens_its_correlation(msg: Message, recipient: str) -> bool:
    """``msg`` starts its correlation (its id is the correlation's, nothing caused it) and
    goes to ``recipient`` alone (addressed to it): its one delivery is the correlation's
    first. A message to a topic has a delivery per subscriber: charged one by one."""
    return msg.correlation_id == msg.id and msg.causation_id is None and msg.recipient == recipient


def decisions(run: Run) -> list[str]:
    """The approvals the desk decided in ``run`` (one of its deliveries), and the one its
    asker withdrew there (decided before, its decision crossed the withdrawal): their
    answers are told what became of them."""
    decided = [
        o.payload.approval_id for o, _ in run.outbox if isinstance(o.payload, ApprovalDecision)
    ]
    withdrawn = run.delivery.message.payload
    if isinstance(withdrawn, ApprovalWithdrawn) and withdrawn.approval_id not in decided:
        decided.append(withdrawn.approval_id)
    return decided


class NatsTransport:
    """Moves admitted deliveries through JetStream; runs the deliveries of ``hosted`` agents.

    Pass it to ``Runtime(transport=...)`` (or ``Pipeline.runtime``), ``attach`` the runtime,
    ``connect``, then enter the runtime; ``close`` after it.

    A peer of ``LocalTransport``: it answers every call of the ``Transport`` protocol itself,
    and reaches the runtime only through the host the runtime binds it to
    (``genie/_runtime/host.py``).
    """

    def __init__(
        self,
        url: str,
        names: NatsNames,
        *,
        hosted: Iterable[str] = (),
        ack_wait: float | None = None,
        max_deliveries: int = 5,
        poll: float = 0.05,
        on_step: StepHook | None = None,
        audit_key: bytes | None = None,
        on_unhosted: Callable[[list[str]], None] | None = None,
        origin: str | None = None,
        replace: bool = False,
    ) -> None:
        _check_arguments(url, names, hosted, ack_wait, max_deliveries, poll)
        # The runtime's agents by id, once it ``attach_agents``: every process knows them all,
        # and runs the deliveries of the ``hosted`` ones its consumers take.
        self._agents: Mapping[str, Mailbox] = {}
        # The runner hands a finished delivery's next token out here; it never has one to hand
        # out (``_queue``: each delivery runs as it is queued), so this stays empty.
        self.ready_queue: deque[Mailbox] = deque()
        self.url = url
        # The pipeline this process runs, as its runtime declares it (``attach``): the
        # processes of a namespace must agree on it, and on the wire (``connect``). With
        # ``replace``, this process takes a namespace over from another version whose
        # processes have all stopped.
        self.fingerprint: str | None = None
        self.replace = replace
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self.names = names
        self.hosted = tuple(hosted)
        self.ack_wait = ack_wait
        self.max_deliveries = max_deliveries
        self.poll = poll
        self.on_step = on_step
        # The subject of the outcome records of the requests this process sends. Named
        # (``origin``), its requests are kept until they settle, and the next process of that
        # name resumes those a kill left (``unfinished``, ``replay``).
        self.origin = uuid.uuid4().hex if origin is None else check_origin(origin)
        self._entry = None if origin is None else EntryRequests(names.entry, origin)
        self._start = uuid.uuid4().hex  # this process's start, a named origin's too
        self.sent = self.received = self.redelivered = self.crashed = 0
        self._running: dict[str, Run] = {}
        self._outcomes = OutcomeReplay()  # of the requests this process started
        self._by_message: dict[str, Run] = {}
        # What a worker's observers see of the deliveries it runs, for their outcome records.
        self._recorder = Recorder(self._running, self._run_of)
        # Requests handlers of this process wait for: request id -> the asking delivery, and
        # the scope that stops waiting for the answer once the handler stops.
        self._asking: dict[str, tuple[Run, anyio.CancelScope]] = {}
        # The requests whose answer is followed (``_ask``), and of those the ones whose
        # handler gave up waiting: their answer is still followed, to be counted late here
        # when it comes, for as many as the runtime remembers given up on.
        # Each followed request's ``take`` (None until ``_ask`` subscribed): what gives its
        # answer to its waiter once, from its subscription or from the replies stream.
        self._following: dict[str, Callable[[bytes], bool] | None] = {}
        self._given_up: OrderedDict[str, anyio.CancelScope] = OrderedDict()
        # Set as the connection is made again: a core subscription misses what was published
        # while it was down, so the followed answers are read from the replies stream then.
        self._reconnected = anyio.Event()
        self._local_request: Callable[[Message, float | None], Awaitable[Message]] | None = None
        self._timer_runs: dict[str, Run] = {}  # pending ``ctx.schedule`` timers, by message id
        # Correlations whose root this process runs, published uncharged (``_send``): the
        # first charge made here for the correlation adds the root's 1 (``_admit_charged``).
        self._owed: dict[str, int] = {}
        self._beats = InProgressBeats()
        # The fan-ins this worker hosts, and what they keep across its kill.
        self._held = HeldDeliveries(names.held)
        # Per hosted agent: what its consumer pulled and started (an A/B of fetch sizing).
        self.fetching: dict[str, FetchCounts] = {}
        self._local_schedule: Callable[[Message, float], Timer] | None = None
        self._unsent: Counter[str] = Counter()  # sent from outside a handler, not yet stored
        self._sends: Counter[str] = Counter()  # every send from outside a handler, ever
        self._room: dict[str, tuple[int, float]] = {}  # free slots as last read, and when
        self._rereading: set[str] = set()  # recipients whose room is being read again
        self._holding: dict[str, int] = {}
        self._tg: TaskGroup | None = None
        self._locks: dict[str, anyio.Lock] = {}
        self._workers: set[Worker] = set()
        self._host: TransportHost | None = None  # the runtime's, from ``bind``
        self._attached = False
        self._run_one: Callable[[Mailbox, Worker], Awaitable[None]] | None = None
        self._checkpoint = any_backend().checkpoint  # the running loop's, once started
        self._ready = anyio.Event()
        # Who hosts which agent: this worker answers for its own; agents no worker hosts,
        # found when this process publishes, go to ``on_unhosted`` (by default a warning).
        self._presence = Presence(names, self.origin, self.hosted, on_unhosted or self._warn)
        self._out = NatsPublisher(names, lambda: self.js, self._max_payload)
        self.consent = NatsConsentLedger(names.consent)  # shared by every process of the namespace
        # The namespace's memories: pass it as ``Store(transport.memory)`` (genie.memory).
        self.memory = NatsMemory(names.memory)
        self.cancellations = NatsCancellations(names.cancelled, names.cancel_subject)
        # The namespace's audit stream: pass it as ``Runtime(audit=...)`` to write there.
        self.audit = NatsAuditLog(
            names.audit, names.audit_subject, key=audit_key, max_payload=self._max_payload
        )
        # The approval desk's pending list and people's answers (bound when the pipeline
        # has the desk: listed and answered from any of its processes).
        self.approvals = NatsApprovals(names.approvals)
        self._desk: ApprovalDesk | None = None  # the desk, when this worker hosts it
        self._desk_pending: Callable[[], list[Approval]] = list
        # Its pending approvals' ids -> the origin and delivery of their request: a person's
        # answer, sent from here, reports to the process that started the request.
        self._asked_at: dict[str, tuple[str, str]] = {}
        # The approvals the desk of a worker before this one took, kept in the held bucket,
        # and the round each reached there: the desk here takes them up again as resumed, not
        # asked (or escalated) twice (``asked_before``).
        self._asked: dict[str, int] = {}
        self._answer: Answer | None = None

    # --- wiring ------------------------------------------------------------------------------
    @property
    def outcomes_held(self) -> int:
        """The outcome records of children this process holds until their parent's comes."""
        return self._outcomes.held

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise ConfigurationError("NatsTransport.connect() first")
        return self._js

    async def connect(
        self, *, duplicate_window: float = 120.0, connect_timeout: float = 3.0
    ) -> None:
        """Connect (reconnecting for ever after that) and create the streams if need be."""
        self._nc = await connected(self.url, connect_timeout, lambda: self._reconnected.set())
        version = self._nc.connected_server_version
        try:
            need_server(self.url, version.major, version.minor)
            need_max_payload(self.url, self._nc.max_payload)
            self._js = self._nc.jetstream()
            claim = Claim(WIRE_VERSION, self.fingerprint, self.replace)
            await ensure_streams(
                self._js, self.names, duplicate_window=duplicate_window, claim=claim, url=self.url
            )
            await self.consent.bind(self._js)
            await self.memory.bind(self._js)
            if self._entry is not None:
                await self._entry.bind(self._js)
            if self.hosted:
                await self._held.bind(self._js)
            if DESK in self._agents:  # its pipeline may wait for a person: answer from anywhere
                await self.approvals.bind(self._js)
        except BaseException:
            # Refused, failed or cancelled once connected: the connection, which would go on
            # reconnecting for ever, is closed (even if this task is being cancelled).
            with anyio.CancelScope(shield=True):
                await self.close()
            raise

    async def close(self) -> None:
        if self._nc is not None:
            why = "the broker is unreachable"
            try:
                # The records of the run's last moments, unless the broker stays away.
                with anyio.move_on_after(10):
                    if self._js is not None:
                        try:
                            await self.audit.drain(self._js)
                        except AuditLogError as refused:  # the runtime has raised it already
                            why = str(refused)
                    if self._entry is not None:
                        await self._entry.flush()
                if self.audit.queued:
                    _log.error("%d audit records not written: %s", self.audit.queued, why)
            finally:
                await self._nc.close()
                self._nc = self._js = None

    # --- wiring by the runtime ----------------------------------------------------------------
    def _max_payload(self) -> int:
        """The largest message the server takes (its ``max_payload``, 1 MiB unless set)."""
        assert self._nc is not None, "publishes once connected"
        return self._nc.max_payload

    def attach_agents(self, mailboxes: Mapping[str, Mailbox]) -> None:
        self._agents = mailboxes

    def bind(self, host: TransportHost) -> None:
        """The runtime's host: what this transport reads and records of the runtime (the
        runtime binds it when it is given this transport)."""
        self._host = host
        if self._entry is not None:
            host.watch(self._entry)  # a request that settles is not kept any more

    def _served(self) -> TransportHost:
        if self._host is None:
            raise ConfigurationError("give the NatsTransport to Runtime(transport=...) first")
        return self._host

    def attach(self, rt: Runtime) -> None:
        """Serve ``rt`` (built with ``transport=`` this one): check the agents it hosts, and
        take its handlers' requests and timers across the broker."""
        host = self._served()
        agents = self._agents
        for agent_id in self.hosted:
            if agent_id not in agents:
                raise ConfigurationError(
                    f"cannot host agent {agent_id!r}: the pipeline has no such agent "
                    f"(it has {', '.join(sorted(agents))})"
                )
        for agent_id in agents:
            self.names.agent(agent_id)  # every id must name a subject: fail before starting
        for agent_id in self.hosted:
            keeps = keeps_of(agents[agent_id].agent)
            if keeps is not None:
                self._held.fan_ins[agent_id] = keeps
        for agent_id in self.hosted:
            agent = agents[agent_id].agent
            if isinstance(agent, AuditsItself):
                # Its records are no delivery's outcome, so they do not reach the origin:
                # it writes them to the namespace's audit stream itself.
                agent.audit_to(_RowsOfDeliveries(self.audit))
        if DESK in self.hosted:
            desk = agents[DESK].agent
            assert isinstance(desk, ApprovalDesk)
            self._desk = desk
            # The approvals still wanted: it forgets those whose request was cancelled.
            self._desk_pending = rt.approvals.pending
        self.fingerprint = fingerprint(rt)
        self._attached = True
        if self.hosted:
            rt.add_observer(self._recorder)
            # Handlers' model calls count their correlation's token and cost budgets on the
            # budget stream's counters too, so that workers together cannot overrun them.
            host.share_model_budgets(self._out)
            # ``ctx.request`` in a handler: the request crosses the broker at once, and its
            # answer comes back to this process (``_ask``). ``ctx.schedule``: a timer stays in
            # this process, and is an output of the delivery that set it, whose origin hears
            # when it ends (``_timer_ended``). A loss of a delivery run here is in its outcome
            # record, and the origin sends its notice (``_reported_elsewhere``).
            # The audit rows no outcome record carries (a handler's tool calls, memory and
            # model text, a refused fallback) go to the namespace's stream from here, as an
            # agent's own rows do, unless the runtime writes its rows there already: then
            # it leaves to the origin the rows an outcome record carries to it.
            if rt.audit is self.audit:
                rows, elsewhere = None, self._written_by_origin
            else:
                rows, elsewhere = _RowsOfDeliveries(self.audit).record, None
            self._local_request, self._local_schedule = host.serve_as_worker(
                self._request,
                self._schedule,
                self._timer_ended,
                self._reported_elsewhere,
                rows,
                elsewhere,
            )

    def start(
        self,
        tg: TaskGroup,
        run: Callable[[Mailbox, Worker], Awaitable[None]],
        backend: Backend,
    ) -> None:
        if not self._attached:
            raise ConfigurationError("NatsTransport.attach(runtime) before starting it")
        self._run_one = run
        self._checkpoint = backend.checkpoint
        self._tg = tg
        tg.start_soon(self.consent.follow, self.js, name="genie-nats-consent")
        tg.start_soon(self.audit.run, self.js, name="genie-nats-audit")
        tg.start_soon(self._origin_loop, name="genie-nats-origin")
        if self._entry is not None:
            tg.start_soon(self._entry.run, name="genie-nats-entry")
            if DESK in self._agents:  # which of its requests wait for a person
                tg.start_soon(self.approvals.follow, self.js, name="genie-nats-approvals")
        tg.start_soon(self._read_answers_again, name="genie-nats-answers")
        if self.hosted:
            tg.start_soon(self._beat, name="genie-nats-beat")
            follow = self.cancellations.follow
            tg.start_soon(follow, self.js, self._cancelled_elsewhere, name="genie-nats-cancel")
        for agent_id in self.hosted:
            mb = self._agents[agent_id]
            tg.start_soon(self._consume, mb, name=f"genie-nats-{agent_id}")

    def turn(self, worker: Worker, first: Mailbox) -> Iterable[Mailbox]:
        return (first,)  # each delivery runs in the task of the consumer that took it

    async def ready(self) -> None:
        """Wait until this process receives its outcome records and has the consent ledger
        (before the first publish or fetch)."""
        await self._ready.wait()

    async def serving(self) -> None:
        """Wait until this worker takes the deliveries of every agent it hosts (their
        consumers are bound, and it answers who hosts them)."""
        await self._presence.serving.wait()

    async def unhosted(self, agents: Iterable[str] | None = None) -> dict[str, int]:
        """The agents of ``agents`` (every agent of the runtime by default) no running worker
        hosts now, each with the number of deliveries waiting for it in the stream."""
        if self._nc is None:
            raise ConfigurationError("NatsTransport.connect() first")
        if isinstance(agents, str | bytes):  # else its characters, each an agent nobody hosts
            raise ConfigurationError(
                f"unhosted: agents must be agent ids (a list, not a string), not {agents!r}"
            )
        ids = list(self._agents if agents is None else agents)
        for agent_id in ids:  # refused here, once, not in the task of its probe
            self.names.presence(agent_id)
        found = await unhosted(self._nc, self.names, ids)
        if not found:
            return {}
        info = await self.js.stream_info(self.names.work, subjects_filter=self.names.agents)
        queued = info.state.subjects or {}
        return {a: queued.get(self.names.agent(a), 0) for a in found}

    def _warn(self, agents: list[str]) -> None:
        _log.warning("%s", unhosted_warning(self.names.namespace, agents))

    async def _check_hosts(self) -> None:
        if self._nc is not None:
            await self._presence.check(self._nc, self._agents)

    # --- the Transport calls -----------------------------------------------------------------
    def has_room(self, recipient: str) -> bool:
        """``publish_nowait`` cannot wait for a stream request: it answers from the count last
        read (at the start, then at most ``poll`` old: an older one is read again in the
        background) less this process's sends since, and refuses while a publisher of this
        process waits for that recipient (first come, first served)."""
        if self._holding.get(recipient):
            return False
        free, read_at = self._room.get(recipient, (self._capacity_left(recipient, 0), -math.inf))
        if anyio.current_time() - read_at > self.poll:
            self._read_again(recipient)
        return free >= 1

    def hold(self, recipients: Sequence[str], start: int) -> int:
        agents = self._agents
        for i in range(start, len(recipients)):
            if recipients[i] in agents and not self._try_hold(recipients[i]):
                return i
        return len(recipients)

    def _try_hold(self, recipient: str) -> bool:
        """A slot of the last reading, taken at once when it is fresh (at most ``poll`` old),
        shows room, and no publisher of this process waits for ``recipient``: what
        ``wait_for_room`` would do without waiting. Else ``wait_for_room`` reads again."""
        if self._holding.get(recipient) or not self._ready.is_set():
            return False
        free, read_at = self._room.get(recipient, (0, -math.inf))
        if free < 1 or anyio.current_time() - read_at > self.poll:
            return False
        self._room[recipient] = (free - 1, read_at)
        self._holding[recipient] = 1
        return True

    async def wait_for_room(self, recipient: str) -> None:
        lock = self._locks.setdefault(recipient, anyio.Lock())
        self._holding[recipient] = self._holding.get(recipient, 0) + 1
        try:
            await self._ready.wait()  # outcome records reach us before anything is sent
            async with lock:  # first come, first served in this process
                # The count is read again when the slots it showed are used up or it is older
                # than ``poll``: one stream request per burst, not one per publish.
                free, read_at = self._room.get(recipient, (0, -math.inf))
                while free < 1 or anyio.current_time() - read_at > self.poll:
                    await self._read_room(recipient)
                    free, read_at = self._room[recipient]
                    if free < 1:
                        await anyio.sleep(self.poll)
                self._room[recipient] = (free - 1, read_at)
        except BaseException:
            self._holding[recipient] -= 1
            raise

    def release(self, recipient: str) -> None:
        self._holding[recipient] -= 1

    def _capacity_left(self, recipient: str, queued: int, unsent: int | None = None) -> int:
        """Free slots of ``recipient`` with ``queued`` deliveries in the stream, less what
        this process has sent that the stream may not hold yet (``unsent``, else all not
        stored yet)."""
        if unsent is None:
            unsent = self._unsent[recipient]
        return self._agents[recipient].capacity - queued - unsent

    async def _read_room(self, recipient: str | None = None) -> None:
        """Read the stream's count of deliveries for ``recipient`` (None: every agent) into
        ``_room``, in one request."""
        ids = self._agents if recipient is None else (recipient,)
        agents = [(agent_id, self.names.agent(agent_id)) for agent_id in ids]
        subjects = self.names.agents if recipient is None else agents[0][1]
        # The count is taken between the request and its answer: a send stored in that
        # window may be in it or not, so it is counted as not stored (one slot too few,
        # until the next reading), and so is every send made meanwhile.
        before = {a: (self._unsent[a], self._sends[a]) for a, _ in agents}
        info = await self.js.stream_info(self.names.work, subjects_filter=subjects)
        queued = info.state.subjects or {}
        now = anyio.current_time()
        for agent_id, subject in agents:
            unsent, sends = before[agent_id]
            unsent += self._sends[agent_id] - sends
            free = self._capacity_left(agent_id, queued.get(subject, 0), unsent)
            self._room[agent_id] = (free, now)

    def _read_again(self, recipient: str) -> None:
        """Read ``recipient``'s count again in the background (once at a time)."""
        if self._tg is None or recipient in self._rereading:
            return

        async def read() -> None:
            from nats.errors import Error as NatsError

            try:
                await self._read_room(recipient)
            except (NatsError, TimeoutError) as exc:  # the next call tries again
                _log.debug("cannot read the room of %s: %s", recipient, exc)
            finally:
                self._rereading.discard(recipient)

        self._rereading.add(recipient)
        self._tg.start_soon(read)

    def put(self, item: Queued, recipient: str) -> None:
        self._put(item, recipient, False)

    def put_held(self, item: Queued, recipients: Sequence[str]) -> None:
        for recipient in recipients:
            self._holding[recipient] -= 1
            self._put(item, recipient, True)

    def _put(self, item: Queued, recipient: str, reserved: bool) -> None:
        if type(item) is Handoff:
            # The fallback runs here, inside the failed delivery (every process hosts every
            # agent's code): its outcome is that delivery's outcome.
            run = self._running.get(delivery_id(item.message, item.failed_agent))
            assert run is not None, "a handoff comes from a delivery this worker runs"
            run.handoffs.append(item)
            key = delivery_id(item.message, recipient)
            self._running[key] = run
            run.keys.append(key)
            return
        msg: Message = item  # type: ignore[assignment]
        asking = self._asking.get(msg.id)
        if asking is not None and recipient == msg.recipient:
            assert self._tg is not None
            sent = anyio.Event()
            asking[0].asking.append(sent)
            self._following[msg.id] = None  # until ``_ask`` ends
            self._tg.start_soon(self._ask, asking[0], msg, recipient, asking[1], sent)
            return
        run = self._run_of(msg)
        if run is not None:
            out = run.rename(msg)
            if self._served().watched(msg):  # by the id its handler gave it, before renaming
                run.watched.add(out.id)
            run.outbox.append((out, recipient))
        else:
            assert self._tg is not None, "a runtime sends only once started"
            if self._presence.due():  # in the background: a publish never waits for it
                self._tg.start_soon(self._check_hosts)
            if not reserved:  # ``publish_nowait`` (or a timer): a slot of the last reading
                free, read_at = self._room.get(
                    recipient, (self._capacity_left(recipient, 0), -math.inf)
                )
                self._room[recipient] = (free - 1, read_at)
            self._unsent[recipient] += 1
            self._sends[recipient] += 1
            self._tg.start_soon(self._send, msg, recipient)

    def cancel(self, correlation_id: str) -> int:
        """Cancel here, and tell every worker (the cancel stream): each cancels the handlers
        it runs for the correlation and dead-letters its deliveries it takes afterwards."""
        if self._tg is not None and self._js is not None:
            self._tg.start_soon(self.cancellations.cancel, self._js, correlation_id)
        if self._entry is not None:
            self._entry.forget(correlation_id)  # given up by its caller: not resumed
        return self._cancel_here(correlation_id)

    def _cancel_here(self, correlation_id: str) -> int:
        found = 0
        for worker in self._workers:
            if worker.correlation == correlation_id:
                worker.cancel()
                found += 1
        return found

    def _cancelled_elsewhere(self, correlation_id: str) -> None:
        if self._served().cancelled_elsewhere(correlation_id):
            self._cancel_here(correlation_id)  # its handlers end as cancelled dead letters

    def drain_queues(self) -> Iterator[tuple[Mailbox, Queued]]:
        """Nothing: a delivery leaves its mailbox for the runner as it is queued (``_run``),
        what the broker still holds stays there for the next worker, and a publisher waits
        for room in the stream (``wait_for_room``), not in a mailbox."""
        return iter(())

    def workers(self) -> WorkerCounts:
        """Each delivery runs in a task of its own: as many as run now, none idle."""
        return WorkerCounts(len(self._workers), 0, 0)

    def forward(self, msg: Message) -> bool:
        """A message nobody here receives, sent by a delivery this process runs: its outcome
        record carries it to the origin, whose waiters may take it (a reply to the caller)."""
        run = self._run_of(msg)
        if run is None:
            return False
        run.replies.append(message_json(run.rename(msg)))
        return True

    def _run_of(self, msg: Message) -> Run | None:
        """The running delivery ``msg`` is an output of (None: sent from outside a handler);
        for a timer's message, the timer's own delivery."""
        if self._timer_runs:
            timer = self._timer_runs.get(msg.id)
            if timer is not None:
                return timer
        cause = msg.causation_id
        if cause is None:
            return None
        return self._running.get(f"{cause}:{msg.sender}") or self._by_message.get(cause)

    # --- requests from handlers: ``ctx.request`` across processes ------------------------------
    async def _request(self, msg: Message, timeout: float | None) -> Message:
        """``ctx.request`` of a handler this process runs: the runtime's own request (a
        waiter, then the send), with the request's id derived from the asking delivery, so a
        re-run after a crash asks under the same id: the server drops the second request and
        the re-run reads the first one's answer."""
        assert self._local_request is not None
        run = self._run_of(msg)
        if run is None:
            return await self._local_request(msg, timeout)
        msg = run.rename(msg)
        answer = anyio.CancelScope()
        self._asking[msg.id] = (run, answer)
        try:
            reply = await self._local_request(msg, timeout)
        except BaseException:
            # Timed out or cancelled with the answer still to come: it is followed on, so it
            # is counted late when it comes, as one process counts it.
            if msg.id in self._following:
                given_up = self._given_up
                given_up[msg.id] = answer
                if len(given_up) > LATE_MEMORY:
                    given_up.popitem(last=False)[1].cancel()
            raise
        finally:
            del self._asking[msg.id]
        answer.cancel()  # answered: nothing more comes for it
        return reply

    async def _ask(
        self,
        run: Run,
        msg: Message,
        recipient: str,
        answer: anyio.CancelScope,
        sent: anyio.Event,
    ) -> None:
        """Send a handler's request (the admitted delivery ``put`` got) and hand its answer
        to the waiter. Sent as an output of the asking delivery (its origin, its parent), but
        now, not when the handler returns."""
        from nats.errors import Error as NatsError

        host = self._served()
        assert self._nc is not None
        corr = host.correlation(msg.correlation_id)
        subject = self.names.reply(msg.id)
        sub = None
        try:
            with anyio.CancelScope(shield=True):  # its outcome is the asking delivery's count
                try:
                    try:  # before the request goes out, so no answer can pass unseen
                        sub = await self._nc.subscribe(subject)
                    except NatsError as exc:  # closing: the request still goes out
                        _log.warning("cannot follow the answer to %s: %s", msg.id, exc)
                    delivery = delivery_id(msg, recipient)
                    if not await self._admit_charged(
                        [(msg, recipient)], msg.correlation_id, delivery
                    ):
                        return  # denied by the budget: the waiter heard of it
                    try:
                        ack = await self._publish(
                            msg, recipient, run.origin, run.delivery.id, request=True
                        )
                    except PublishRefusedError as exc:  # the asker hears why, at once
                        why = type(exc).__name__
                        host.dead_lettered(recipient, msg, corr, "failed", str(exc), 0, why)
                        return
                    run.asked += 1
                    host.left(corr)  # sent: its outcome goes to the origin
                    self._step("asked", run.delivery)
                finally:
                    sent.set()
            if sub is None:
                return
            # Started by this process: the answering delivery's record, which comes here,
            # counts the answer collected.
            counted = run.origin == self.origin
            taken = False

            def take(data: bytes) -> bool:
                nonlocal taken
                if not taken and give_answer(host, corr, msg, recipient, data, counted=counted):
                    taken = True
                    answer.cancel()  # nothing more comes for it
                return taken

            self._following[msg.id] = take
            with answer:
                if ack.duplicate:  # asked before, by a run of this delivery that died
                    await self._stored_answer(msg.id, take)
                async for raw in sub.messages:  # what is no answer is passed over
                    if take(raw.data):
                        return
        finally:
            self._following.pop(msg.id, None)
            self._given_up.pop(msg.id, None)
            if sub is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(NatsError):
                    await sub.unsubscribe()

    async def _stored_answer(self, request_id: str, take: Callable[[bytes], bool]) -> None:
        """Give request ``request_id`` the answer the replies stream holds for it, if any."""
        from nats.errors import Error as NatsError

        try:
            stored = await self.js.get_last_msg(self.names.replies, self.names.reply(request_id))
        except (NatsError, TimeoutError):  # not answered yet: it comes on the subscription
            return
        if stored.data:
            take(stored.data)

    async def _read_answers_again(self) -> None:
        """Until cancelled: each time the connection is made again, the answers of the
        requests followed now are read from the replies stream (one published while it was
        down reached no subscription)."""
        while True:
            await self._reconnected.wait()
            self._reconnected = anyio.Event()
            for request_id, take in list(self._following.items()):
                if take is not None:
                    await self._stored_answer(request_id, take)

    # --- timers set by handlers: ``ctx.schedule`` -------------------------------------------
    def _schedule(self, msg: Message, delay: float) -> Timer:
        """A timer of a handler this process runs: counted as a delivery its handler sent
        (so the origin keeps the request open), with an id derived from that delivery."""
        assert self._local_schedule is not None
        run = self._run_of(msg)
        if run is None:
            return self._local_schedule(msg, delay)
        msg = run.rename(msg)
        timer = Run(Delivery(msg, TIMER), run.origin, run.delivery.id, minted=run.minted)
        if timer.origin == self.origin:  # its runtime counts the timer as it ends
            self._outcomes.runs_here(timer.delivery.id)
        self._timer_runs[msg.id] = timer
        self._running[delivery_id(msg, msg.sender)] = timer  # its dead letter, if cancelled
        run.asked += 1
        return self._local_schedule(msg, delay)

    def _timer_ended(self, msg: Message) -> None:
        run = self._timer_runs.pop(msg.id, None)
        if run is not None:
            self._running.pop(delivery_id(msg, msg.sender), None)
            ending = _RUNNING.get()  # (a timer's task may have inherited a finished one)
            alone = not run.outbox  # its record is all it has to publish
            if alone and ending is not None and self._running.get(ending.delivery.id) is ending:
                # Ended by a handler running here (withdrawn): reported inside that delivery's
                # outcome record, applied right after it, so the origin never counts the
                # timer's end before what the handler sent (a person's answer, which the
                # origin did not send, ends the desk's hold: its record must come first), nor
                # an answer that record carries before the timer's end (``outcome_items``).
                ending.timers_ended.append(run)
                return
            assert self._tg is not None
            self._tg.start_soon(self._report_timer, run)

    async def _report_timer(self, run: Run) -> None:
        """A timer's outcome record (fired, withdrawn, or cancelled), after what it fired."""
        host = self._served()
        msg = run.delivery.message
        # Shielded: a timer cut short by the worker's shutdown is still reported.
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            if run.outbox:
                key = f"{run.delivery.id}/outputs"
                run.outbox = await self._admit_charged(run.outbox, msg.correlation_id, key)

            def sends() -> list[Item]:
                items = outcome_items(self.names, run, msg.sender, self._out.room)
                return items + [
                    self._out.item(o, r, run.origin, run.delivery.id) for o, r in run.outbox
                ]

            try:
                items = sends()
                refused = await self._out.publish_all(items)
            except MessageTooLargeError as exc:
                self._too_large(run, msg.sender, exc)
                items = sends()
                refused = await self._out.publish_all(items)
            await self._not_stored(run, items, refused)
            for out, _ in run.outbox:
                host.left(host.correlation(out.correlation_id))

    # --- sending -----------------------------------------------------------------------------
    async def _publish(
        self,
        msg: Message,
        recipient: str,
        origin: str,
        parent: str | None = None,
        *,
        request: bool = False,
        uncharged: bool = False,
    ) -> PubAck:
        """Publish one delivery until the stream has it (through a broker restart)."""
        ack = await self._out.retry(
            *self._out.item(msg, recipient, origin, parent, request=request, uncharged=uncharged)
        )
        self.sent += 1
        return ack

    async def _admit_charged(
        self, sent: list[tuple[Message, str]], correlation_id: str, key: str
    ) -> list[tuple[Message, str]]:
        """The deliveries of ``sent`` the correlation budget admits across processes (each
        process admitted them against its own count, which is less); the others are denied
        by ``limit:budget`` here, exactly as one process denies past the budget. The first
        charge made for a correlation whose root runs here uncharged adds the root too."""
        host = self._served()
        owed = self._owed.pop(correlation_id, 0)
        total = await self._out.charge(correlation_id, key, len(sent) + owed)
        return sent[: host.admit_charged(sent, host.correlation(correlation_id), total)]

    async def _send(self, msg: Message, recipient: str) -> None:
        """A send from outside a handler (the entry publish, a timer). Sends go out on the one
        connection in the order they were made, so the stream keeps it."""
        try:
            if not self._ready.is_set():  # set once for good: no checkpoint per send after
                await self._ready.wait()
            if self.on_step is not None:
                self.on_step("sending", Delivery(msg, recipient))
            entry = self._entry
            if entry is not None and msg.hops == 0 and msg.sender != RUNTIME:
                # A request from outside, of an entry with a name: kept before it goes out,
                # marked once the stream has it, forgotten when it settles.
                delivery = Delivery(msg, recipient)
                await entry.keep(delivery)
                await self._publish_outside(msg, recipient)
                await entry.keep(delivery, published=True)
            else:
                await self._publish_outside(msg, recipient)
        except PublishRefusedError as exc:
            # It can never reach the stream: its delivery ends here, as a failure saying so.
            self._outcomes.awaits_no_more(delivery_id(msg, recipient))
            host = self._served()
            corr = host.correlation(msg.correlation_id)
            host.dead_lettered(recipient, msg, corr, "failed", str(exc), 0, type(exc).__name__)
        finally:
            self._unsent[recipient] -= 1

    async def _publish_outside(self, msg: Message, recipient: str) -> None:
        """One send from outside a handler, charged to its correlation's shared budget."""
        key = delivery_id(msg, recipient)
        if _opens_its_correlation(msg, recipient):
            # Nothing of its correlation exists before it, so its charge cannot be refused
            # (the budget admitted it here, so it is at least 1), and nothing else of it can
            # be charged before its handler sends something: it goes out uncharged, and the
            # worker that runs it adds it to its first charge (one stream write less).
            self._outcomes.awaits(key, msg.correlation_id)
            await self._publish(msg, recipient, self.origin, uncharged=True)
        elif await self._admit_charged([(msg, recipient)], msg.correlation_id, key):
            # A person's answer to the desk here goes as part of the approval's request.
            asked = self._asked_at.get(msg.causation_id or "") if recipient == DESK else None
            origin, parent = (self.origin, None) if asked is None else asked
            if parent is None:
                self._outcomes.awaits(key, msg.correlation_id)
            await self._publish(msg, recipient, origin, parent)

    # --- the origin: outcome records of the requests this process started -----------------------
    async def _origin_loop(self) -> None:
        from nats.errors import Error as NatsError
        from nats.js.api import DeliverPolicy

        host = self._served()
        failed: list[Exception] = []
        stop = anyio.Event()

        entry = self._entry
        # With a named origin, the stream holds the records of its earlier processes: those of
        # the requests they left unfinished wait for ``replay``, the others (up to ``before``,
        # the stream's last record as this process starts) are passed over.
        before = 0
        if entry is not None:
            before = (await self.js.stream_info(self.names.outcomes)).state.last_seq

        async def apply(raw: Msg) -> None:
            # A callback, not ``async for raw in sub.messages``: nats-py's iterator starts a
            # task and an ``asyncio.wait`` per message; its callback loop takes each record
            # from the same queue, in the same order, with one await.
            nonlocal before
            if failed:
                return
            try:
                try:
                    record, bounded = load_record(raw.data)
                except (ValueError, TypeError) as exc:  # no worker's: the rest is still counted
                    seq = raw.metadata.sequence.stream
                    _log.error(
                        "%s record %d is no outcome record, passed over: %s",
                        self.names.outcomes,
                        seq,
                        described(exc),
                    )
                    return
                if entry is not None:
                    parked = entry.parked.get(record["correlation_id"])
                    if parked is not None:
                        parked.append((record, bounded, raw.metadata.sequence.stream))
                        return
                    if before:
                        if raw.metadata.sequence.stream > before:
                            before = 0  # past the records written before this process
                        elif record["correlation_id"] not in entry.earlier:
                            return  # a request an earlier process of this name saw settle
                self._outcomes.settle(host, record, bounded, raw.metadata.sequence.stream)
            except Exception as exc:  # ends the runtime, as it did from the loop itself
                failed.append(exc)
                stop.set()

        sub = await bound(
            "follow this process's outcome records",
            lambda: self.js.subscribe(
                self.names.outcome(self.origin),
                stream=self.names.outcomes,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                # Two missed beats and the client recreates the consumer: after a broker
                # restart the outcome records flow again within about two seconds.
                idle_heartbeat=1.0,
                cb=apply,
            ),
        )
        try:
            await self.consent.loaded.wait()  # policies admit against the shared ledger
            with contextlib.suppress(NatsError, TimeoutError):  # else read at the first use
                await self._read_room()  # publish_nowait answers from the start
            self._ready.set()
            await stop.wait()
            raise failed[0]
        finally:
            await sub.unsubscribe()  # stops the callback's task before its first await

    # --- a named origin's requests across its restarts (the runtime's ``Keeper``) -------------
    def unfinished(self) -> list[Message]:
        """The requests an earlier process of this origin's name left unsettled (none for an
        origin without a name)."""
        if self._entry is None:
            return []
        self._entry.decode(self._served().types)
        return self._entry.unfinished()

    def replay(self, correlation_id: str) -> int:
        """Take up ``correlation_id`` again: its outside deliveries count as in flight here,
        one never published goes out now, and the outcome records its workers wrote while no
        process of this name ran are applied in order; how many deliveries it had."""
        entry = self._entry
        if entry is None:
            return 0
        host = self._served()
        entry.decode(host.types)
        kept = entry.found.pop(correlation_id, [])
        parked = entry.parked.pop(correlation_id, [])
        corr = host.correlation(correlation_id)
        recorded = {record["delivery"] for record, _, _ in parked}
        for delivery, published in kept:
            host.resumed(corr, delivery.message, delivery.recipient)
            self._outcomes.awaits(delivery.id, correlation_id)
            if not published and delivery.id not in recorded:
                # Killed before the stream's answer came: sent again under the same id, which
                # the stream drops if it has it (within its duplicate window).
                assert self._tg is not None, "a runtime resumes only once started"
                self._unsent[delivery.recipient] += 1
                self._tg.start_soon(self._send, delivery.message, delivery.recipient)
        for record, bounded, seq in parked:
            self._outcomes.settle(host, record, bounded, seq)
        return len(kept)

    def replay_own(self) -> int:
        return 0  # the broker keeps only requests from outside (a cancellation is not one)

    def ask(self, request: Message) -> tuple[Message, Message | None]:
        # Renamed already, from the asking delivery (``_request``); its answer kept in the
        # replies stream is read when the broker drops the request as a duplicate (``_ask``).
        return request, None

    def keeps(self, correlation_id: str) -> bool:
        """Whether this named entry keeps ``correlation_id`` for its next process."""
        return self._entry is not None and self._entry.keeps(correlation_id)

    def holds(self, correlation_id: str) -> bool:
        """Whether a person's approval of ``correlation_id`` is pending (as the approvals
        bucket lists it): a named entry keeps such a request when its caller stops waiting."""
        return self._entry is not None and self.approvals.waits(correlation_id)

    def stopping(self) -> None:
        if self._entry is not None:
            self._entry.stopping()  # a request cut short by the stop is resumed next time

    def asked_before(self, approval_id: str) -> int | None:
        return self._asked.get(approval_id)

    def taken_before(self, message_id: str, agent_id: str) -> bool:
        # Taken again from the held bucket at start: written there once its outputs and
        # outcome record were published (``_take_again`` publishes nothing of it).
        return delivery_of(message_id, agent_id) in self._held.taken_again

    def keeps_session(self, agent_id: str, correlation_id: str) -> bool:
        # A fan-in's session (the desk's pending approval among them) is kept in the held
        # bucket, or its delivery waits unacked in the stream: the next worker runs it again,
        # which sets its timers again under the ids they had. The process that started the
        # request keeps such a timer in flight until that one ends: no dead letter at a stop.
        return self._held.holds(agent_id, correlation_id)

    def keeps_delivery(self, message: Message, agent_id: str) -> bool:
        # A delivery this worker took from the stream and has not acked is redelivered to the
        # next worker (its outcome not yet published, its request's origin still counts it in
        # flight): a stop loses nothing of it. A cancelled request's is not run again.
        run = self._running.get(delivery_id(message, agent_id))
        return (
            run is not None
            and run.delivery.recipient != TIMER
            and message.correlation_id not in self.cancellations
        )

    def answers_to(self, answer: Answer) -> None:
        self._answer = answer  # people's answers in the approvals bucket go to the desk here

    async def take_answers(self) -> None:
        if self._desk is None or self._answer is None:
            await anyio.sleep_forever()  # the desk is another process's
        else:
            await self.approvals.take_answers(self._answer, self._relist_approvals)

    def _reported_elsewhere(self, msg: Message, missing: Missing) -> bool:
        """Whether the runtime's loss notice (``genie.lost``, for declared gathers) of this
        loss is another process's to send: a loss of a delivery this process runs is in that
        delivery's outcome record, and the origin's replay of it sends the one notice (a
        second one from here would reach the gather twice). Where this process is that origin,
        the replay adds nothing its runtime counted as the delivery ran, so it sends none:
        the notice is this one."""
        if self._outcomes.replaying:
            return False
        run = self._run_of(msg) or self._running.get(delivery_id(msg, missing.agent_id or "-"))
        return run is not None and run.origin != self.origin

    def _written_by_origin(self, told: str, action: str, msg: Message, agent_id: str) -> bool:
        """Whether the audit row of what the observers are told (a denial, a dead letter, a
        limit) is another process's to write, to the namespace's stream this runtime writes
        too: the origin of the delivery whose outcome record carries it writes it as it
        replays the record (a second row from here would be the same record twice)."""
        if self._outcomes.replaying:
            return False
        run = self._recorder.carrier(told, action, msg, agent_id)
        return run is not None and run.origin != self.origin

    # --- the worker: running deliveries from the broker -----------------------------------------
    async def _consume(self, mb: Mailbox) -> None:

        await self._ready.wait()  # its outputs are admitted against the shared consent ledger
        await self.cancellations.loaded.wait()  # a cancelled correlation's deliveries never run
        if mb.id in self._held.fan_ins:  # its sessions first, as they were before a kill
            await self._take_again(mb)
        psub = await bound(
            f"bind the consumer of {mb.id}",
            lambda: self.js.pull_subscribe(
                self.names.agent(mb.id),
                durable=self.names.consumer(mb.id),
                stream=self.names.work,
                config=consumer_config(self.names, mb, self.ack_wait),
            ),
        )
        limiter = anyio.Semaphore(mb.max_concurrency)
        counts = self.fetching[mb.id] = FetchCounts()
        async with anyio.create_task_group() as tg:
            assert self._nc is not None
            tg.start_soon(self._presence.answer, self._nc, mb.id)  # it serves the agent now
            pending = 0
            most = 1  # the first batch: one, to learn how fast this loop starts deliveries
            pace = 0.0  # the seconds of the loop per delivery the last batch took to start
            while True:
                # A fetch for what the worker can start now: its free slots (the server hands
                # out no more than max_ack_pending across all workers), at most what it
                # started in FETCH_AHEAD at the last batch's pace, and only once every
                # delivery fetched before has started. What it cannot start soon stays in
                # the stream for the other workers (docs/scale-out.md, "Fetch sizing").
                await limiter.acquire()
                free = 1
                while limiter.value:
                    limiter.acquire_nowait()
                    free += 1
                batch = await fetch_ready(psub, min(free, most), pending, late=pace)
                fetched_at = anyio.current_time()
                counts.fetches += 1
                counts.fetched += len(batch)
                counts.unstarted = len(batch)
                counts.most_unstarted = max(counts.most_unstarted, len(batch))
                pending = batch[-1].metadata.num_pending if batch else 0
                for _ in range(free - len(batch)):
                    limiter.release()
                for raw in batch:
                    tg.start_soon(self._one, mb, raw, limiter, counts, fetched_at)
                # The batch starts in the loop's next turn (each handler up to its first
                # wait), before the next fetch; its outputs are written together after it.
                await self._checkpoint()
                if batch:
                    pace = (anyio.current_time() - fetched_at) / len(batch)
                    most = batch_limit(pace, mb.max_concurrency)

    async def _one(
        self,
        mb: Mailbox,
        raw: Msg,
        limiter: anyio.Semaphore,
        counts: FetchCounts,
        fetched_at: float,
    ) -> None:
        counts.started += 1
        counts.unstarted -= 1
        counts.unstarted_seconds += anyio.current_time() - fetched_at
        try:
            await self._deliver(mb, raw)
        finally:
            limiter.release()

    async def _deliver(self, mb: Mailbox, raw: Msg) -> None:
        host = self._served()
        headers = raw.headers or {}
        origin = headers.get(ORIGIN, "none")
        self.received += 1
        try:
            check_origin(origin)  # else its outcome could never be published: retried for ever
        except ConfigurationError as exc:
            await self._undecodable(mb, raw, None, headers, exc)
            return
        try:
            delivery = Delivery.decode(raw.data, host.types)
        except Exception as exc:
            await self._undecodable(mb, raw, origin, headers, exc)
            return
        times = raw.metadata.num_delivered
        if times > 1:
            self.redelivered += 1
            if delivery.id in self._held.taken_again or (
                # Its request's, here: a worker killed before its ack published its outcome
                # record, with its outputs in the same write, and this process counted it.
                # Run here again, its outcome would be counted a second time.
                origin == self.origin
                and self._outcomes.recorded(delivery.message.correlation_id, delivery.id)
            ):  # its outcome and outputs are out already
                await raw.ack()
                return
        run = Run(delivery, origin, headers.get(PARENT), REQUEST in headers, minted=host.minted)
        msg = delivery.message
        self._started(run)
        corr = host.correlation(msg.correlation_id)
        if UNCHARGED in headers:
            self._owed[msg.correlation_id] = 1
        # In flight here from now (the sender counted it delivered, and closed it once sent);
        # a cancelled correlation's delivery is dead-lettered without running.
        # Its sender, in another process, watches for its reply: watched here, where it is
        # handled, so the sender is told at once if it goes unanswered.
        watched = msg if WATCHED in headers else None
        host.arrived(corr, cancelled=msg.correlation_id in self.cancellations, watched=watched)
        try:
            if times > self.max_deliveries:
                self.crashed += 1
                reason = (
                    f"delivered {times - 1} times without an outcome (the worker running it "
                    "stopped each time)"
                )
                host.dead_lettered(mb.id, msg, corr, "failed", reason, times - 1)
            else:
                with self._beats.alive(raw, ack_wait_of(mb, self.ack_wait)):
                    await self._run(mb, msg, run)
                self._step("handled", delivery)
            for sent in run.asking:  # its requests are out (so counted in its record)
                await sent.wait()
            answer = answer_of(run) if run.request else None
            if answer is not None and run.answered:
                host.left(corr)  # the answer was counted in flight here: it goes out now
            if run.outbox:
                run.outbox = await self._admit_charged(
                    run.outbox, msg.correlation_id, f"{delivery.id}/outputs"
                )
                self._step("charged", delivery)
            owed = self._owed.pop(msg.correlation_id, 0)
            ended = run.timers_ended  # withdrawn by its handler: carried in its record
            run.timers_ended = []

            def sends() -> list[Item]:
                # The outcome record, the outputs and the answer at once: one round trip.
                items = outcome_items(self.names, run, mb.id, self._out.room, ended)
                if owed:  # an uncharged root that charged nothing: counted now, as it ends
                    key = f"{delivery.id}/root"
                    items.append(self._out.charge_item(msg.correlation_id, key, owed))
                items += [
                    self._out.item(o, r, origin, delivery.id, watched=o.id in run.watched)
                    for o, r in run.outbox
                ]
                if answer is not None:
                    data = json.dumps(answer, separators=(",", ":")).encode()
                    reply = self.names.reply(msg.id)
                    items.append((reply, data, {MSG_ID: f"{delivery.id}/answer"}))
                return items

            def recorded() -> None:
                self._step("outcome", delivery)

            try:
                items = sends()
                refused = await self._out.publish_all(items, recorded=recorded)
            except MessageTooLargeError as exc:
                self._too_large(run, mb.id, exc)
                answer = answer_of(run) if run.request else None
                items = sends()
                refused = await self._out.publish_all(items, recorded=recorded)
            self.sent += len(run.outbox) - await self._not_stored(run, items, refused)
            for out, _ in run.outbox:
                host.left(host.correlation(out.correlation_id))
            self._step("published", delivery)
            last = times > self.max_deliveries
            if self.audit.queued:
                # The rows its handler made (a workflow's events, the desk's decisions, its
                # tool calls and memory, a refused fallback) are in the stream before the
                # delivery is kept or acked: a kill after that, which never runs it again,
                # loses none of them.
                await self.audit.drain(self.js)
                self._step("audited", delivery)
            kept = not last and await self._keep(mb.id, run)
            if mb.id == DESK:  # before the ack: a kill before it decides again, and tells
                await self.approvals.decided(decisions(run), self._told)
            if last:
                await raw.term()
            else:
                await raw.ack()
                self._step("acked", delivery)
                if kept:
                    await self._release(mb.id, msg)
                if mb.id == DESK:
                    await self._list_approvals()
        finally:
            if UNCHARGED in headers:
                self._owed.pop(msg.correlation_id, None)
            self._ended(run)

    async def _not_stored(
        self, run: Run, items: list[Item], refused: list[tuple[int, PublishRefusedError]]
    ) -> int:
        """What a stream refused for good of what ``run``'s delivery sent (``items``): each
        output a dead letter of its recipient saying why, recorded to the request's origin
        (which counts it sent, by the delivery's outcome record) and in the dead letters, as
        the worker that took it would record it; how many outputs. Anything else refused (its
        outcome record, an answer) cannot reach the origin: an error in the log."""
        outputs = {Delivery(out, to).id: (out, to) for out, to in run.outbox}
        lost = 0
        for i, error in refused:
            sent = outputs.get(items[i][2].get(MSG_ID, ""))
            if sent is None:
                _log.error("delivery %s: %s: it is lost", middle_cut(run.delivery.id, 80), error)
                continue
            out, recipient = sent
            dead = Run(Delivery(out, recipient), run.origin, run.delivery.id)
            dead.dead = DeadLetter(
                message=out,
                agent_id=recipient,
                kind="failed",
                reason=str(error),
                error_type=type(error).__name__,
                attempts=0,
                at=datetime.now(UTC),
            )
            _log.error("agent %s: %s", recipient, error)
            letter = outcome_items(self.names, dead, recipient, self._out.room)
            for _, why in await self._out.publish_all(letter):
                _log.error("agent %s: its dead letter is lost: %s", recipient, why)
            lost += 1
        return lost

    def _too_large(self, run: Run, agent_id: str, error: MessageTooLargeError) -> None:
        """What ``run``'s handler sent cannot cross the broker (an output, or its outcome
        record with the replies, denials and sheds it carries, is over ``max_payload``): none
        of it is sent, and the delivery ends as a dead letter saying why. Its handler did
        run: its side effects stand, and the outputs stay charged to the budget. Where this
        process started the request, its runtime counted the delivery handled as it ran (the
        record it gets from itself adds nothing): each output is the loss, a dead letter here,
        as its origin keeps the books of one process."""
        host = self._served()
        why = type(error).__name__
        for out, recipient in run.outbox:  # in flight here until sent: closed, never sent
            corr = host.correlation(out.correlation_id)
            if run.origin == self.origin:
                host.dead_lettered(recipient, out, corr, "failed", f"not sent: {error}", 0, why)
            else:
                host.left(corr)
        run.outbox.clear()
        run.replies.clear()
        run.denied.clear()
        run.shed.clear()
        run.answered = 0
        run.dead = DeadLetter(
            message=run.delivery.message,
            agent_id=agent_id,
            kind="failed",
            reason=f"its outputs were not sent: {error}",
            error_type=type(error).__name__,
            attempts=1,
            at=datetime.now(UTC),
        )
        _log.error("agent %s: %s", agent_id, run.dead.reason)

    def _started(self, run: Run) -> None:
        """``run`` is under way: its outputs, timers and dead letter are found by its ids."""
        self._running[run.delivery.id] = run
        run.keys.append(run.delivery.id)
        if run.origin == self.origin:  # asked by this process: its runtime counts it as it runs
            self._outcomes.runs_here(run.delivery.id)
        msg = run.delivery.message
        self._by_message[msg.id] = run
        if run.delivery.recipient == DESK:
            self._at_the_desk(run)

    def _at_the_desk(self, run: Run) -> None:
        """A delivery to the desk here: an approval's request is noted (a person's answer to it
        goes to the request's origin), and an answer this process or a killed one sent for a
        person is trusted, as the desk trusts the answers its own process sends: it was sent
        as part of the approval's request (its parent), which an agent's output never is.
        Known by the request's id alone, it is trusted after the decision too, or in a worker
        started after it: the desk records it as too late."""
        msg = run.delivery.message
        if msg.type == _APPROVAL:
            self._asked_at[msg.id] = (run.origin, run.delivery.id)
        elif msg.type == _ANSWER and self._desk is not None:
            approval_id = getattr(msg.payload, "approval_id", "")
            if run.parent == delivery_of(approval_id, DESK):
                self._desk.issued[msg.id] = approval_id

    def _ended(self, run: Run) -> None:
        assert self._tg is not None
        for timer in run.timers_ended:  # its own record was not published (taken again, cut)
            self._tg.start_soon(self._report_timer, timer)
        for key in run.keys:
            if self._running.get(key) is run:
                del self._running[key]
        mid = run.delivery.message.id
        if self._by_message.get(mid) is run:
            del self._by_message[mid]

    # --- fan-ins: their sessions kept across a worker's kill (``_held``) ----------------------
    async def _keep(self, agent_id: str, run: Run) -> bool:
        """Write a fan-in's handled delivery to the held bucket if it is to be kept (see
        ``HeldDeliveries.holds``); whether it was written."""
        delivery = run.delivery
        if run.dead is not None or not self._held.holds(agent_id, delivery.message.correlation_id):
            return False
        held = Held(delivery, run.origin, run.parent, run.request)
        if not await self._held.keep(held, self._max_payload()):
            return False
        self._step("kept", delivery)
        return True

    async def _release(self, agent_id: str, msg: Message) -> None:
        """Purge what a fan-in kept of the correlations it keeps no more, having taken ``msg``."""
        for cid in self._held.kept_no_more(agent_id, msg):
            await self._held.release(agent_id, cid)
            self._step("released", Delivery(msg, agent_id))

    async def _take_again(self, mb: Mailbox) -> None:
        """At start: run again, through the runner, what the fan-in ``mb`` kept, in the
        order it was kept, publishing nothing (its outputs and outcome records went out
        before it was kept, under the ids they get again): its sessions are as they were.
        A timer a session sets again reports under the id it had (the origin passes over a
        record of a delivery it applied already)."""
        host = self._served()
        found = await self._held.found(mb.id, host.types)
        if mb.id == DESK:  # what it had asked (and escalated) before the kill or stop
            self._asked.update(rounds_reached(h.delivery.message for h in found))
        for held in found:
            run = Run(
                held.delivery,
                held.origin,
                held.parent,
                held.request,
                minted=host.minted,
                retaken=self._start,
            )
            msg = held.delivery.message
            self._started(run)
            corr = host.correlation(msg.correlation_id)
            host.arrived(corr, cancelled=False)
            try:
                await self._run(mb, msg, run)
            finally:
                self._ended(run)
            for out, _ in run.outbox:  # sent before the kill: not again
                host.left(host.correlation(out.correlation_id))
            if mb.id == DESK:
                await self.approvals.decided(decisions(run), self._told)
            await self._release(mb.id, msg)
        if found:
            _log.info("%s: %d kept deliveries taken again", mb.id, len(found))
        if mb.id == DESK:
            await self._list_approvals()  # the rebuilt desk's, whatever was listed before

    def _told(self, approval_id: str, by: str, approved: bool) -> str | None:
        """What the desk here tells ``by`` of their answer (``ApprovalDesk.told``)."""
        assert self._desk is not None
        return self._desk.told(approval_id, by, approved)

    async def _relist_approvals(self) -> None:
        """List the desk's approvals again if it forgot one (its request was cancelled)."""
        assert self._desk is not None
        before = len(self._desk.pending)
        self._desk_pending()
        if len(self._desk.pending) != before:
            await self._list_approvals()

    async def _list_approvals(self) -> None:
        """Make the approvals bucket list what the desk here has pending, and still wanted."""
        assert self._desk is not None
        self._desk_pending()
        pending = self._desk.pending.items()
        gone = await self.approvals.list_pending(
            (approval_id, listing(p.request, p.approval.escalated)) for approval_id, p in pending
        )
        for approval_id in gone:
            self._asked_at.pop(approval_id, None)
            self._asked.pop(approval_id, None)

    async def _run(self, mb: Mailbox, msg: Message, run: Run) -> None:
        """The delivery (and its handoff to a fallback) through the runtime's own runner."""
        assert self._run_one is not None
        item: Queued = msg
        running = _RUNNING.set(run)  # a timer its handler ends is reported after its outcome
        try:
            while True:
                worker = Worker()
                self._workers.add(worker)
                try:
                    self._queue(mb, item)
                    with worker.scope:
                        await self._run_one(mb, worker)
                finally:
                    self._workers.discard(worker)
                if not run.handoffs:
                    return
                handoff = run.handoffs.pop(0)
                item, mb = handoff, self._fallback_of(handoff)
        finally:
            _RUNNING.reset(running)

    def _fallback_of(self, handoff: Handoff) -> Mailbox:
        agents = self._agents
        fallback = agents[handoff.failed_agent].options.fallback
        assert fallback is not None
        return agents[fallback]

    @staticmethod
    def _queue(mb: Mailbox, item: Queued) -> None:
        # The runner takes the item at once (before its first await), in the task of the
        # consumer that fetched it: it runs now, even where ``push`` gave no token (a
        # fallback's handoff while the fallback runs its own deliveries), since the
        # consumers bound the concurrency (``max_ack_pending``).
        if not mb.push(item):
            mb.run_now()

    async def _beat(self) -> None:
        agents = self._agents
        every = min(ack_wait_of(agents[a], self.ack_wait) for a in self.hosted) / 6
        await self._beats.run(every)

    def _step(self, step: Step, delivery: Delivery) -> None:
        if self.on_step is not None:
            self.on_step(step, delivery)

    async def _undecodable(
        self,
        mb: Mailbox,
        raw: Msg,
        origin: str | None,
        headers: Mapping[str, str],
        exc: Exception,
    ) -> None:
        """A delivery this worker cannot read: to the dead letters as it came, then term.
        ``origin``: None where its header names no origin (no process hears such a one)."""
        sequence = f"{raw.metadata.sequence.stream}"
        ident = headers.get(MSG_ID, sequence)
        shown = middle_cut(ident, ID_CHARS)
        _log.error("undecodable delivery %s for %s: %s", shown, mb.id, described(exc))
        text = raw.data.decode(errors="replace")
        about = what_it_was(text, ident)
        record: dict[str, Any] = {
            "delivery": ident,
            "correlation_id": headers.get(CORRELATION, ident),
            "agent": mb.id,
            "outcome": "dead_lettered",
            "kind": "failed",
            "reason": f"undecodable delivery: {described(exc)}",
            "attempts": 0,
            "parent": headers.get(PARENT),
            "spawned": 0,
            "denied": [],
            "shed": [],
            "replies": [],
            "message": None,
            "about": about,  # for the origin's audit row
            "raw": text,
        }
        # The id the streams deduplicate by: a hostile one may be as long as the delivery, and
        # a header is never cut (the stream's sequence is the same for each try of it).
        out_headers = {MSG_ID: ident if len(ident) <= ID_CHARS else sequence}
        data = fitted(record, self._out.room(out_headers))
        if origin is not None:
            await self._out.retry(self.names.outcome(origin), data, out_headers)
        await self._out.retry(self.names.dead_letter(mb.id), data, out_headers)
        if self._host is not None and (
            origin != self.origin or not self._outcomes.awaited(ident, record["correlation_id"])
        ):
            # Inspectable here too, as a dead letter of this process (where this process sent
            # it, the record it gets keeps it, once; one it did not send, whatever its header
            # says, has that record refused).
            record_undecodable(self._host, mb.id, about, record, text)
        await raw.term()
