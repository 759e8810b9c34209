"""The runtime: a facade that wires the rooms of the data flow (docs/architecture.md).

publish -> ``Dispatcher`` (route, admission for each consumer) -> a ``Transport`` (by default
``LocalTransport``: the agents' mailboxes and the executors) -> ``DeliveryRunner`` (the
supervised handler call) -> outputs back to the ``Dispatcher``. The runtime owns the agents (a
``Mailbox`` each, by id) and hands that registry to the transport. The ``Ledger`` records
every outcome, so that ``delivered == handled + denied + dead_lettered + shed + in_flight``
holds at every moment.
"""

from __future__ import annotations

import enum
import gc
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio

from .._agent.agent import (
    Agent,
    BaseAgent,
    BoundHandler,
    SyncBinder,
    agent_risk,
    bound_sync_handlers,
    check_handle,
    declared_payloads,
)
from .._agent.context import ContextServices
from .._agent.memory import MemoryStore, named_stores
from .._agent.tools import ToolServer
from .._base.backend import any_backend, running_backend
from .._base.clock import Clock, checked_timeout
from .._base.log import lazy_logger
from .._base.record import Record
from .._base.resilience import at_least
from .._base.surrogates import lone_surrogate
from .._errors import (
    ConfigurationError,
    DeliveryError,
    DuplicateAgentError,
    GenieError,
    InvalidArgumentError,
    RuntimeClosedError,
    UnknownMessageTypeError,
    UnknownRecipientError,
    WaitFromHandlerError,
    WouldBlockError,
    unwrapped,
)
from .._message.envelope import Message
from .._message.ids import IdSource
from .._message.payload import MetaValue, Payload, Role
from .._message.types import MessageTypes
from .admission import Admission
from .audit import AuditGate, AuditSink, AuditsItself, MemoryAuditLog
from .correlator import (
    Correlator,
    Gather,
    GatherResult,
    Missing,
    ReplyWatch,
    RequestWaiter,
    _Correlation,
    checked_predicate,
)
from .deadletter import DeadLetters
from .delivery import CANCELLED_WITH_REQUEST, DeliveryRunner
from .dispatch import HANDLING, Dispatcher
from .ledger import Ledger
from .local.mailbox import Handoff, Mailbox
from .local.transport import LocalTransport
from .memory_calls import MemoryCalls
from .model_calls import ModelCalls
from .observe.observer import (
    Observer,
    Observers,
    deliveries_listener,
    gather_listener,
    unguarded,
)
from .options import AgentOptions
from .policy import Limits, Policy, checked_policies
from .router import Router, Tap
from .timers import Timers
from .tool_calls import ToolCalls
from .transport import DESK, RESERVED_IDS, RUNTIME, Keeper, KeptOnPublish, Transport

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..llm._cost import PriceTable
    from .approvals import Approvals
    from .durable.transport import DurableTransport
    from .model_text import ModelTextStream
    from .observe.events import EventHub, EventStream
    from .observe.metrics import Metrics
    from .offload import Offload
    from .statistics import RuntimeStatistics
    from .transport import Transport

_APPROVAL = "genie.approval_request"  # ApprovalRequest's type: its desk is added with it

__all__ = ["Runtime", "RuntimeState", "ShutdownReport"]

_log = lazy_logger("genie.runtime")

# `Lost.message_type`: the `Lost` model (costly to define, with its module) loads
# when an agent subscribes to loss notices; the event stream's module when `events` is first
# called; the statistics record when `statistics` is (docs/design/imports-and-gc.md).
_LOST = "genie.lost"
_CANCELLED = "genie.cancelled"  # `Cancelled.message_type`, loaded as `Lost` is

CLOSE_TIMEOUT = 5.0  # seconds each ``on_close`` callback may take at shutdown


class RuntimeState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class ShutdownReport(Record):
    """What was still in flight when the runtime closed: what was cut short is in the dead
    letters; ``kept_timers``, timers of sessions the store keeps (a pending approval's
    deadline), and ``kept_deliveries``, deliveries running or queued that the store keeps,
    are not lost (the next start sets them again, runs them again) and stay in flight."""

    drained: bool
    cancelled_running: int
    discarded_queued: int
    by_agent: Mapping[str, int]
    cancelled_timers: int = 0
    kept_timers: int = 0
    kept_deliveries: int = 0


def _no_sync_handlers(agent: BaseAgent, name: str, payload: type[Payload]) -> BoundHandler:
    raise AssertionError("only an agent with plain def handlers has them bound")


def _a_message(msg: object, call: str) -> None:
    """Refuse, saying how to make one, what ``rt.<call>`` was given that is no ``Message``
    (a payload passed as it is, most often)."""
    if isinstance(msg, Message):
        return
    how = (
        f"build one with rt.message({type(msg).__qualname__}(...))"
        if isinstance(msg, Payload)
        else "build one with rt.message(payload)"
    )
    raise InvalidArgumentError(
        f"rt.{call}() takes a genie.Message, not {type(msg).__qualname__}: {how}"
    )


def _a_correlation_id(correlation_id: object, call: str) -> None:
    """Refuse a correlation id that is no string: a gather or a stream of it could only wait
    for a correlation no message has."""
    if not isinstance(correlation_id, str):
        given = type(correlation_id).__qualname__
        if isinstance(correlation_id, Message):
            given = "a Message: pass its correlation_id"
        raise InvalidArgumentError(
            f"rt.{call}() takes a correlation id, a str (a message's correlation_id), not {given}"
        )


class Runtime:
    """Hosts agents and moves messages between them. Use it as ``async with Runtime(...)``.

    On exit it waits up to ``drain_timeout`` seconds for in-flight work (when the block ended
    without an exception), then cancels what is left; ``shutdown_report`` says what that was.
    It does not wait for approvals pending with a person: waiting would not end them (a store
    keeps them for the next start; without one they are cut short and reported).
    ``prices`` (a ``genie.llm.PriceTable``) prices the model calls handlers make through
    ``ctx.llm``; ``limits.correlation_cost`` needs it.

    ``freeze_gc=True`` (opt-in, off by default) collects garbage once the runtime has started
    (after the agents' ``on_start``) and calls ``gc.freeze()``: what exists then (modules,
    agents, their data) is never scanned again by the garbage collector, so a collection costs
    what the requests in flight allocated, not the whole heap. It is process-wide: objects that
    were alive at start-up and die later are not reclaimed until ``gc.unfreeze()``, which the
    runtime calls when it closes.

    ``threads`` bounds the worker threads its plain ``def`` handlers run in, all agents
    together (each agent also by its ``max_concurrency``); ``processes`` sizes the process pool
    of the agents with ``AgentOptions(offload="process")`` (default: one per core), started on
    first use and shut down when the runtime closes. See docs/concepts.md, "Handler signatures".

    ``store`` (a file path) keeps every admitted delivery in a SQLite file until it ends, so
    that a process killed mid-request resumes it when started again on the same file
    (``unfinished``); ``store_sync`` says when its writes reach the disk: every so many
    seconds (a write survives a kill of the process at once), or ``"always"`` (each write
    waits for the disk: it survives a loss of power too); see docs/durability.md.
    ``store_pipeline``: the pipeline file this runtime runs (``Pipeline.runtime`` gives it),
    recorded in the store so that ``genie approvals`` can say the command that resumes its
    requests.

    ``tools`` names the tool servers its handlers call (``ctx.tool(name)``; an MCP server is
    ``genie.mcp.McpServer``): each is connected at its first call and closed with the runtime,
    and every call passes the policies both ways; see docs/tools.md.

    ``memory`` is what handlers remember (``ctx.memory(name)``): a ``genie.memory.Store``
    (named ``"default"``) or stores by name; a sqlite store without a path keeps its tables
    in ``store``'s file. Every write is judged by the policies first; see docs/memory.md.
    """

    def __init__(
        self,
        agents: Iterable[Agent] = (),
        *,
        types: MessageTypes | None = None,
        policies: Sequence[Policy] = (),
        limits: Limits | None = None,
        defaults: AgentOptions | None = None,
        clock: Clock | None = None,
        audit: AuditSink | None = None,
        seed: int | None = None,
        drain_timeout: float = 10.0,
        dead_letter_capacity: int = 10_000,
        retention: timedelta | None = None,
        metrics: bool | Metrics = False,
        prices: PriceTable | None = None,
        freeze_gc: bool = False,
        transport: Transport | None = None,
        threads: int = 40,
        processes: int | None = None,
        store: str | PathLike[str] | None = None,
        store_sync: float | Literal["always"] = 1.0,
        store_pipeline: str | PathLike[str] | None = None,
        tools: Mapping[str, ToolServer] | None = None,
        memory: MemoryStore | Mapping[str, MemoryStore] | None = None,
    ) -> None:
        # Refused here, not by the close that reads them, after it cut work short.
        if not at_least(drain_timeout, 0):
            raise ConfigurationError(
                f"drain_timeout must be a number of seconds, 0 or more, not {drain_timeout!r}"
            )
        if not (isinstance(dead_letter_capacity, int) and at_least(dead_letter_capacity, 0)):
            raise ConfigurationError(
                "dead_letter_capacity must be a whole number, 0 or more, not "
                f"{dead_letter_capacity!r}"
            )
        if not isinstance(metrics, bool):
            from .observe.metrics import Metrics  # a genie.Metrics given has loaded it

            if not isinstance(metrics, Metrics):
                raise ConfigurationError(
                    "metrics must be True, False or a genie.Metrics, not "
                    f"{type(metrics).__qualname__}"
                )
        for name, number in (("threads", threads), ("processes", processes)):
            if number is not None and not (isinstance(number, int) and at_least(number, 1)):
                raise ConfigurationError(
                    f"{name} must be a whole number, 1 or more, not {number!r}"
                )
        self.types = types if types is not None else MessageTypes()
        self.policies: tuple[Policy, ...] = checked_policies(policies)
        self.limits = limits or Limits()
        self.defaults = defaults or AgentOptions()
        self.clock = clock or Clock()
        self.audit: AuditSink = audit if audit is not None else MemoryAuditLog()
        self.drain_timeout = drain_timeout
        self.freeze_gc = freeze_gc
        self.shutdown_report: ShutdownReport | None = None
        self._ids = IdSource(seed)
        self._new_id = self._ids.next
        self._state = RuntimeState.NEW
        self._tg: TaskGroup | None = None
        self._backend = any_backend()  # the running loop's primitives, once started
        self._loop_thread = threading.get_ident()  # the loop's thread, once started
        # The rooms, in the order a message meets them.
        self._correlator = Correlator(self.clock)
        self._admission = Admission(self.limits, self.policies)
        # Policies that ask something slow (a classifier) before a message from outside is
        # admitted: awaited by ``publish`` and ``ask``, never on the message path.
        self._preparers: tuple[Callable[[Message], Awaitable[None]], ...] = tuple(
            prepare for p in self.policies if callable(prepare := getattr(p, "prepare", None))
        )
        # ``publish_nowait`` cannot await them: it asks each whether it would (``prepared``).
        self._preparing: tuple[Policy, ...] = tuple(
            p for p in self.policies if callable(getattr(p, "prepare", None))
        )
        dead_letters = DeadLetters(dead_letter_capacity, retention, self.clock)
        # The first record the sink refuses stops the runtime (``failure``).
        self._audit = AuditGate(self.audit, self._audit_failed)
        self._ledger = Ledger(self.clock, self._audit, dead_letters, self._correlator)
        # The agents of this runtime, by id: the registry routing, admission and the supervisor
        # read. The transport is handed it and moves admitted deliveries into these mailboxes
        # (another transport, such as NATS, moves them between processes first).
        self._mailboxes: dict[str, Mailbox] = {}
        # The policies that gate by agents (the risk gate, this runtime's copy) hear of each
        # agent, and its risk, as it is hosted.
        self._agent_hosted = tuple(
            hosted for p in self.policies if callable(hosted := getattr(p, "agent_hosted", None))
        )
        self._router = Router(self._mailboxes)
        # Where plain ``def`` handlers run: this runtime's own threads and process pool, made
        # when the first agent that has such handlers is added.
        self._threads = threads
        self._processes = processes
        self._offload: Offload | None = None
        self._model_calls = ModelCalls(
            self.limits, prices, self._ledger, self._correlator, self._admission, self.clock
        )
        self._tool_calls = ToolCalls(
            tools or {}, self._admission, self._ledger, self._correlator, self.clock
        )
        # The memories are checked (and bound to the durable store's file) before that file
        # is locked below: a runtime refused for its memory must leave the file free.
        self._memory = MemoryCalls(
            named_stores(memory, "Runtime(memory=...)"),
            self._admission,
            self._ledger,
            self.clock,
            self._model_calls.provider,
            None if store is None else str(store),
        )
        if store is None and store_pipeline is not None:
            raise ConfigurationError("store_pipeline is recorded in a store: give store too")
        outlived = store is not None or not isinstance(transport, LocalTransport | None)
        if seed is not None and outlived:
            # Ids that outlive the process would meet themselves again: a new request would
            # take a kept one's place, or a broker drop it as the other's duplicate.
            raise ConfigurationError(
                "give seed without a store or a transport between processes: a seeded runtime "
                "makes the same message ids at every start, and a store (or a broker) keeps "
                "the ids of the starts before"
            )
        # The store's transport, for what only a store keeps: requests it cannot read.
        self._store: DurableTransport | None = None
        if store is not None:
            if transport is not None:
                raise ConfigurationError(
                    "give a store or a transport, not both: a store is kept by the transport"
                )
            from .durable.transport import DurableTransport

            named = None if store_pipeline is None else Path(store_pipeline)
            transport = self._store = DurableTransport(store, store_sync, named)
        self._observers: list[Observer] = []
        self._guarded: Observers | None = None  # counts what the observers raised
        self._transport: Transport = transport if transport is not None else LocalTransport()
        # A transport that keeps requests across restarts (durable mode), asked once here.
        self._keeper = self._transport if isinstance(self._transport, Keeper) else None
        written = self._transport if isinstance(self._transport, KeptOnPublish) else None
        self._published_kept = written  # a publish returns once its message is written
        self._transport.attach_agents(self._mailboxes)
        self._dispatcher = Dispatcher(
            self.types,
            self._router,
            self._mailboxes,
            self._transport,
            self._admission,
            self._ledger,
            self._correlator,
            self._check_open,
        )
        self._timers = Timers(self._ledger, self._correlator, self.clock, self._fire)
        if self._keeper is not None:
            self._timers.keeps_session = self._keeper.keeps_session
            self._ledger.keeps_delivery = self._keeper.keeps_delivery
        services = ContextServices(
            self.clock,
            self._new_id,
            self._request,
            self._timers.schedule,
            self._model_calls.provider,
            self._tool_calls.tools,
            self._memory.memory,
            self._on_loop,
        )
        self._runner = DeliveryRunner(
            self.clock,
            self.types,
            self._ledger,
            self._correlator,
            self._admission,
            self._dispatcher,
            self._mailboxes,
            self._transport,
            services,
        )
        if transport is not None and not isinstance(transport, LocalTransport):
            # A transport between processes reaches this runtime through its host alone.
            from .host import HostedTransport, RuntimeHost

            if isinstance(transport, HostedTransport):
                transport.bind(
                    RuntimeHost(
                        self.types,
                        self._ledger,
                        self._admission,
                        self._dispatcher,
                        self._timers,
                        services,
                        self._model_calls,
                        self.add_observer,
                        self._ids.minted,
                        self._watch_resumed,
                        self._watched,
                    )
                )
        self._closers: list[Callable[[], Awaitable[object]]] = [self._memory.aclose]
        self._hub: EventHub | None = None
        self._approvals: Approvals | None = None
        self.metrics: Metrics | None = None
        try:
            if metrics:
                from .observe.metrics import Metrics  # prometheus-client loads only when on

                self.metrics = Metrics() if metrics is True else metrics
                self.metrics.bind(self)
            for agent in agents:
                self.add(agent)
        except BaseException:
            self._refused()
            raise

    @property
    def state(self) -> RuntimeState:
        return self._state

    def _stopping(self) -> bool:
        return self._state in (RuntimeState.CLOSING, RuntimeState.CLOSED)

    @property
    def failure(self) -> GenieError | None:
        """Why the runtime stopped on its own, if it did: a write its store's disk refused
        (a ``StoreError``), or a record its audit sink refused (an ``AuditWriteError``), which
        ``async with`` raises once it has closed. Set as soon as the write failed, while the
        runtime is still stopping: a server asks it to say why its requests ended. None while
        nothing failed."""
        if self._audit.failure is not None:
            return self._audit.failure
        return None if self._published_kept is None else self._published_kept.failure()

    def _audit_failed(self) -> None:
        """The audit sink refused a record: the runtime stops (``failure`` says why)."""
        if self._tg is not None:
            self._runner.cut_short(self._tg)

    @property
    def dead_letters(self) -> DeadLetters:
        """Recent dead letters (the original message, where it was going, why it ended)."""
        return self._ledger.dead_letters

    @dead_letters.setter
    def dead_letters(self, store: DeadLetters) -> None:
        self._ledger.dead_letters = store  # e.g. a smaller store for a long simulation

    # --- wiring ------------------------------------------------------------------------------
    def add(
        self,
        agent: Agent,
        *,
        subscribe: Iterable[str] = (),
        options: AgentOptions | None = None,
    ) -> None:
        """Host ``agent``; ``subscribe`` lists message types or patterns (``finance.*``)."""
        agent_id = getattr(agent, "id", None)
        if isinstance(agent_id, str) and agent_id in RESERVED_IDS:
            raise ConfigurationError(
                f"agent id {agent_id!r} is the runtime's own ({RESERVED_IDS[agent_id]}): give "
                "this agent another id"
            )
        self._host(agent, subscribe, options)

    def _host(self, agent: Agent, subscribe: Iterable[str], options: AgentOptions | None) -> None:
        if isinstance(agent, type) and not isinstance(agent, Agent):
            name = agent.__qualname__
            raise ConfigurationError(
                f'{name} is a class: pass an agent, {name}("its-id"), to the runtime'
            )
        if not isinstance(agent, Agent) or not isinstance(agent.id, str) or not agent.id:
            raise ConfigurationError(
                f"{agent!r} is not an Agent: it needs a non-empty str id, name, capabilities "
                "and an async handle(msg, ctx)"
            )
        check_handle(agent)
        if (at := lone_surrogate(agent.id)) is not None:
            # The sender of all it emits: no log, file or policy could read it.
            raise ConfigurationError(
                f"agent id {agent.id!r} is not valid UTF-8 text (a lone surrogate at index {at})"
            )
        if agent.id in self._mailboxes:
            raise DuplicateAgentError(
                f"agent id {agent.id!r} is already registered in this runtime", agent_id=agent.id
            )
        options = options or self.defaults
        if options.fallback is not None and options.fallback == agent.id:
            raise ConfigurationError(f"agent {agent.id!r} cannot be its own fallback")
        risk = agent_risk(agent)
        # Plain def handlers are bound to this runtime's threads or processes (refused here,
        # before anything is registered, if they cannot run there).
        bind_sync: SyncBinder = _no_sync_handlers
        if options.offload != "thread" or bound_sync_handlers(agent):
            if self._offload is None:
                from .offload import Offload

                self._offload = Offload(self.types, self._threads, self._processes, self._stopping)
                self._closers.insert(0, self._offload.aclose)
            bind_sync = self._offload.binder(agent, options)
        consumes, produces = declared_payloads(agent)
        models = (*produces, *consumes)
        self.types.register(*models)
        for hosted in self._agent_hosted:  # before anything can reach the agent
            hosted(agent.id, risk)
        self._mailboxes[agent.id] = Mailbox(agent, options, bind_sync)
        if isinstance(agent, AuditsItself):
            # Its records go through the runtime's gate, as a delivery's do: one the sink
            # refuses stops the runtime, rather than failing the agent's handler.
            agent.audit_to(self._audit)
        self._router.agent_added()
        for pattern in subscribe:
            self._router.subscribe(agent.id, pattern)
        self._watch_losses()
        if (
            self._approvals is None
            and agent.id != DESK  # the desk itself
            and any(m.message_type == _APPROVAL for m in models)
        ):
            _ = self.approvals  # an agent asks for approvals: the desk takes them

    def subscribe(self, agent_id: str, *patterns: str) -> None:
        self._mailbox(agent_id)
        for pattern in patterns:
            self._router.subscribe(agent_id, pattern)
        self._watch_losses()

    def _watch_losses(self) -> None:
        # Loss notices cost nothing until an agent subscribes to them (see _losses.py).
        if self._router.subscribers(_CANCELLED):
            from .losses import Cancelled

            self.types.register(Cancelled)
        if self._router.subscribers(_LOST):
            from .losses import Lost, Unanswered

            # An agent that hears of losses may watch its requests for a reply too
            # (``watch_reply``): a notice of one kept by a store is read at the next start.
            self.types.register(Lost, Unanswered)
            self._ledger.on_loss = self._notify_loss
        else:
            self._ledger.on_loss = None

    def _notify(self, cause: Message, notice: Payload, recipient: str | None) -> None:
        """Send the runtime's ``notice`` of what became of ``cause`` (to ``recipient``, else
        to the notice type's subscribers), caused by it, in its correlation. Routed like a
        handler's output, at once: it is in flight before what it tells of settles the
        correlation, so whoever waits on that correlation hears of it before the request ends."""
        self._dispatcher.route(
            cause.child(
                notice,
                sender=RUNTIME,
                id=self._new_id(),
                created_at=self.clock.timestamp(),
                recipient=recipient,
                role=Role.SYSTEM,
            ),
            False,
        )

    def _notify_loss(self, msg: Message, corr: _Correlation, missing: Missing) -> None:
        from .losses import Lost  # loaded by `_watch_losses`, which set this hook

        if (
            msg.type == _LOST  # a lost notice is not told about: no loops
            or corr.cancelled
            or self._state is not RuntimeState.RUNNING
        ):
            return
        notice = Lost(
            message_id=msg.id,
            type_name=msg.type,
            sender=msg.sender,
            consumer=missing.agent_id or "-",
            kind=missing.kind,  # the ledger tells only denied, failed, shed, cancelled
            reason=missing.reason,
            policy=missing.policy,
        )
        self._notify(msg, notice, None)

    def watch_reply(self, request: Message) -> None:
        """Tell ``request``'s sender, by an ``Unanswered`` notice (``genie.unanswered``) caused
        by the request, the moment its recipient (or the recipient's fallback) handles it and
        no reply reached the sender (none returned, or each denied or shed on its way): for an
        agent that sends a request among its handler's outputs and goes on (a workflow's
        step), rather than awaiting ``ctx.request``. Called by that handler, before it returns
        ``request`` (built by its ``ctx.emit``, to one agent); watched twice, it is watched
        once. A loss of the request is told by the loss notice (``genie.lost``), to its
        subscribers; a request to no agent of this runtime (another process's) is not
        watched. Raises ``InvalidArgumentError`` outside a handler of this runtime, for a
        request with no recipient, for one of another correlation than the handling's, and
        when its sender, a ``BaseAgent``, has no handler of ``Unanswered``."""
        if HANDLING.get() is not self._dispatcher:
            raise InvalidArgumentError(
                f"rt.watch_reply() refused for {request.type!r}: it was called outside a "
                "handler of this runtime; it watches a request that a handler sends among its "
                "outputs, and is called inside that handler, before it returns the request"
            )
        # The watch joins the correlation's waiters, which the loop's deliveries read.
        self._on_loop(
            f"rt.watch_reply() refused for {request.type!r}",
            "anyio.from_thread.run_sync(rt.watch_reply, request)",
        )
        recipient = request.recipient
        if recipient is None:
            raise InvalidArgumentError(
                f"rt.watch_reply(): the {request.type!r} has no recipient: a reply is watched "
                "for a request to one agent (ctx.emit(payload, recipient=...))"
            )
        if recipient not in self._mailboxes:
            return
        corr = self._correlator.lookup(request.correlation_id)
        if corr is None or not corr.in_flight:
            # Routed, it would take the handling's correlation: a watch on its own could
            # only wait for ever.
            raise InvalidArgumentError(
                f"rt.watch_reply(): the {request.type!r} is not of the correlation of the "
                "message being handled: build it with ctx.emit(payload, recipient=...)"
            )
        from .losses import Unanswered

        sender = self._mailboxes.get(request.sender)
        if (
            sender is not None
            and isinstance(sender.agent, BaseAgent)
            and not issubclass(Unanswered, type(sender.agent).consumes())
        ):
            # Else the notice would end as a dead letter of its own, far from the mistake.
            raise InvalidArgumentError(
                f"rt.watch_reply(): agent {request.sender!r} has no handler for "
                f"{Unanswered.message_type!r}, the notice it would be sent: give it a handler "
                "of genie.Unanswered"
            )
        self.types.register(Unanswered)
        self._reply_watch(corr).watch(request, self._responders(recipient))

    def _on_loop(self, refused: str, advice: str) -> None:
        """Raise, saying ``refused`` and ``advice`` (how to call it instead), in a thread other
        than this runtime's loop's (a def handler's worker thread): what the call changes is
        read by the loop's deliveries, and what it awaits is the loop's to wake."""
        if threading.get_ident() != self._loop_thread:
            raise InvalidArgumentError(
                f"{refused}: it was called in a handler's worker thread (a def handler); "
                f"call it on the event loop: {advice}"
            )

    def _watch_resumed(self, corr: _Correlation, msg: Message) -> None:
        """``msg``, a request its sender watched, runs again from the store (watched again
        from the start, as it was, whenever its sender, rebuilding its run, watches it again;
        it may end before), or runs here for a sender in another process (NATS), which hears
        of its handling only from here."""
        from .losses import Unanswered

        recipient = msg.recipient
        if recipient in self._mailboxes:
            self.types.register(Unanswered)
            self._reply_watch(corr).watch(msg, self._responders(recipient))

    def _watched(self, msg: Message) -> bool:
        """Whether ``msg``'s sender watches for its reply (``watch_reply``)."""
        corr = self._correlator.lookup(msg.correlation_id)
        watch = None if corr is None else ReplyWatch.of(self._correlator, corr)
        return watch is not None and watch.watching(msg.id)

    def _reply_watch(self, corr: _Correlation) -> ReplyWatch:
        watch = ReplyWatch.of(self._correlator, corr)
        if watch is None:
            watch = ReplyWatch(self._correlator, corr, self._notify_unanswered)
        return watch

    def _responders(self, recipient: str) -> frozenset[str]:
        """Who handles a request to ``recipient``: it, or its fallback."""
        fallback = self._mailboxes[recipient].options.fallback
        return frozenset((recipient,) if fallback is None else (recipient, fallback))

    def _notify_unanswered(self, request: Message, handled_by: str, why: str) -> None:
        from .losses import Unanswered  # loaded by `watch_reply`, which watches the request

        corr = self._correlator.lookup(request.correlation_id)
        if corr is None or corr.cancelled or self._state is not RuntimeState.RUNNING:
            return
        notice = Unanswered(
            message_id=request.id, type_name=request.type, consumer=handled_by, reason=why
        )
        self._notify(request, notice, request.sender)  # after any reply the handler returned

    def on_close(self, close: Callable[[], Awaitable[object]]) -> None:
        """Await ``close()`` when the runtime stops, after the agents' ``on_stop`` (say, the
        ``aclose`` of the model clients its agents use); in the order given, each error logged."""
        self._closers.append(close)

    def subscriptions(self) -> dict[str, list[str]]:
        """Pattern or type -> subscribed agent ids (for graphs and docs)."""
        return self._router.subscriptions()

    def add_tap(self, tap: Tap) -> None:
        # Its id is read at each publish, outside the guard around ``observe``: one without
        # would fail every publish the policies govern, so it is refused here.
        if not (
            isinstance(getattr(tap, "id", None), str) and callable(getattr(tap, "observe", None))
        ):
            raise InvalidArgumentError(
                "rt.add_tap() takes a tap: an object with an id (a str) and an observe(msg) "
                f"method, not {type(tap).__qualname__}"
            )
        self._dispatcher.taps.append(tap)

    def add_observer(self, observer: Observer) -> None:
        """Tell ``observer`` what happens to every message from now on (see ``Observer``)."""
        if not isinstance(observer, Observer):
            # Refused before it is held: held, it would break each observer added after it.
            given = type(observer).__qualname__
            if isinstance(observer, type):
                given = f"the class {observer.__qualname__}: pass an instance"
            raise InvalidArgumentError(
                f"rt.add_observer() takes a genie.Observer (subclass it), not {given}"
            )
        self._observers.append(observer)
        self._rebuild_observer()

    def remove_observer(self, observer: Observer) -> None:
        if observer not in self._observers:
            raise InvalidArgumentError(
                f"rt.remove_observer(): {type(observer).__qualname__} is no observer of this "
                "runtime (never added, or removed already)"
            )
        self._observers.remove(observer)
        self._rebuild_observer()

    def _rebuild_observer(self) -> None:
        errors = self._guarded.errors if self._guarded is not None else 0
        self._guarded = Observers(self._observers, errors)
        observer: Observer | None = self._guarded
        if not self._observers:
            observer = None
        elif len(self._observers) == 1 and unguarded(self._observers[0]):
            observer = self._observers[0]  # a built-in one never raises: no guard to pass
        self._ledger.observer = observer
        self._correlator.on_gathered = gather_listener(observer)
        self._dispatcher.delivered_many = deliveries_listener(observer)

    def events(self, correlation_id: str | None = None, *, buffer: int = 1024) -> EventStream:
        """A live stream of what happens to one request (or, without an id, to all of them).

        Use it as ``async with rt.events(msg.correlation_id) as events`` before publishing,
        then ``async for event in events``. It ends when nothing of the correlation is in
        flight (or the runtime closes). It holds at most ``buffer`` events (at least 2): a slow
        reader never slows the runtime, it loses events and is told how many (a ``dropped``
        event); the ``settled`` event that ends a request's stream always reaches it.
        """
        if correlation_id is not None:
            _a_correlation_id(correlation_id, "events")
        if self._state is RuntimeState.CLOSED:
            raise RuntimeClosedError("cannot stream events: the runtime is closed")
        if self._hub is None:
            from .observe.events import EventHub

            self._hub = EventHub(self.clock, self.add_observer, self.remove_observer)
        return self._hub.open(correlation_id, buffer)

    @property
    def approvals(self) -> Approvals:
        """The approvals waiting for a person, and the answers to them (see
        genie/_runtime/approvals.py and docs/durability.md): the desk, agent ``approvals``, is
        added with the first agent that produces an ``ApprovalRequest``, or here."""
        if self._approvals is None:
            from .approvals import ApprovalDesk, ApprovalRequest, Approvals

            desk = ApprovalDesk(self.clock, self._audit)
            self._host(desk, (ApprovalRequest.message_type,), None)
            ledger = self._ledger
            self._approvals = Approvals(
                desk,
                lambda answer: ledger.refusal_of(answer, self.publish_nowait),
                self._new_id,
                self.clock,
                self._in_flight,
            )
            if self._keeper is not None:
                self._keeper.answers_to(self._approvals.answer_left)
                desk.asked_before = self._keeper.asked_before
        return self._approvals

    def _in_flight(self, correlation_id: str) -> bool:
        corr = self._correlator.lookup(correlation_id)
        return corr is not None and corr.in_flight > 0 and not corr.cancelled

    def in_flight_of(self, correlation_id: str) -> int:
        """How many deliveries of ``correlation_id`` are in flight in this runtime now: queued,
        running (retries and fallbacks included) or a pending timer. A declared gather reads
        it to tell a part still coming from one that cannot come any more."""
        corr = self._correlator.lookup(correlation_id)
        return 0 if corr is None else corr.in_flight

    def end_fan_in(self, correlation_id: str, agent_id: str) -> None:
        """The fan-in ``agent_id`` (a declared gather or workflow) ended its session of
        ``correlation_id``: the runtime keeps it with the correlation while anything of the
        request is in flight here, so a part (or a state) that comes after, a slow agent's,
        is known late however many other requests ended meanwhile (``fan_in_ended``)."""
        self._correlator.end_fan_in(correlation_id, agent_id)

    def fan_in_ended(self, correlation_id: str, agent_id: str) -> bool:
        """Whether the fan-in ``agent_id`` ended its session of ``correlation_id`` while the
        request has had work in flight here ever since (``end_fan_in``)."""
        return self._correlator.fan_in_ended(correlation_id, agent_id)

    def unfinished(self) -> list[Message]:
        """With a store (``Runtime(store=path)``): the requests published from outside that
        had not settled when the store was last used (the process was killed, or stopped with
        work in flight). ``resume`` runs each again and waits for its end (``genie run
        --store`` resumes them all). Without a store: none."""
        return [] if self._keeper is None else self._keeper.unfinished()

    def unreadable(self) -> dict[str, str]:
        """With a store: the requests it keeps that this runtime cannot read (their type is
        not registered here, or their payload no longer fits its model: a pipeline edited
        since), by correlation id, each with why. ``unfinished`` leaves them out, and they
        stay in the store until a runtime that reads them resumes them, or ``discard``."""
        return {} if self._store is None else self._store.unreadable()

    def discard(self, correlation_id: str) -> None:
        """With a store: forget the kept request ``correlation_id`` (one of ``unreadable``, or
        of ``unfinished`` not resumed) and all the store kept of it, without running it: its
        work is lost. Raises ``InvalidArgumentError`` without a store, or for a request it
        does not keep (or that was resumed), and ``RuntimeClosedError`` once the runtime has
        closed (its store given back: a runtime started on it again discards it)."""
        if self._store is None:
            raise InvalidArgumentError(
                f"rt.discard({correlation_id!r}): the runtime has no store to discard it from"
            )
        if self._state is RuntimeState.CLOSED:
            raise RuntimeClosedError(
                f"cannot discard {correlation_id}: the runtime is closed, and its store with it"
            )
        self._store.discard(correlation_id)

    def taken_before(self, message_id: str, agent_id: str) -> bool:
        """Whether the fan-in ``agent_id`` (a workflow, a declared gather) handled the message
        ``message_id`` in a process before this one, with what that handling sent kept (by a
        store, or the broker): run again so that it rebuilds its session, its handling sends
        nothing and records nothing a second time. Without a store: never."""
        return self._keeper is not None and self._keeper.taken_before(message_id, agent_id)

    def model_text(
        self, correlation_id: str, *, reader: str, hold_back: int | None = 64
    ) -> ModelTextStream:
        """The text the model calls of one request stream (``ctx.llm(p).stream(...)``), as
        ``reader`` (a principal, or an agent id) may see it: ``TextChunk`` after ``TextChunk``.

        Use it as ``async with rt.model_text(cid, reader="alice") as text`` before publishing,
        then ``async for chunk in text``. Every release is judged by the runtime's policies as a
        ``model_text`` message from the agent to ``reader`` holding all of that call's text so
        far, and the last ``hold_back`` characters are held until more arrives or the call
        ends (``None``: only a whole call's text is released, once it ends); a denial ends the
        call's text for this reader. It ends when nothing of the correlation is in flight.
        Model calls made in other processes (genie.nats) are not relayed.
        """
        if self._state is RuntimeState.CLOSED:
            raise RuntimeClosedError("cannot read model text: the runtime is closed")
        return self._model_calls.read_text(
            correlation_id, reader, hold_back, self.add_observer, self.remove_observer
        )

    def agents(self) -> list[Agent]:
        return [mb.agent for mb in self._mailboxes.values()]

    def hosts(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is an agent of this runtime: not a caller outside (whose name
        is whatever it sent under), nor an agent of another process."""
        return agent_id in self._mailboxes

    def _mailbox(self, agent_id: str) -> Mailbox:
        try:
            return self._mailboxes[agent_id]
        except KeyError:
            raise UnknownRecipientError(
                f"no agent {agent_id!r} in this runtime", agent_id=agent_id
            ) from None

    # --- lifecycle ---------------------------------------------------------------------------
    def _refused(self) -> None:
        """A runtime refused before it started (its agents, its options) is never closed, so
        it is closed here: the store it opened is given back, for a runtime made after it, and
        so are the metrics it was given (nothing ran to count)."""
        self._state = RuntimeState.CLOSED
        if self.metrics is not None:
            self.metrics.unbind(self)
        if self._store is not None:
            self._store.store.close()

    async def __aenter__(self) -> Self:
        if self._state is not RuntimeState.NEW:
            raise RuntimeClosedError("a runtime can be started once")
        for mb in self._mailboxes.values():
            fallback = mb.options.fallback
            if fallback is not None and fallback not in self._mailboxes:
                self._refused()
                raise ConfigurationError(
                    f"agent {mb.id!r} has fallback {fallback!r}, which is not registered"
                )
        self.clock.start()
        self._loop_thread = threading.get_ident()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        # Gathers, requests and executors make an event a request, and a publish yields once.
        backend = self._backend = running_backend()
        self._correlator.backend = backend
        self._runner.start(tg, backend)
        if self._keeper is not None:
            tg.start_soon(self._keeper.take_answers)  # a task of the runtime's, not a handler's
        self._timers.start(tg)
        self._tool_calls.start(tg)
        self._state = RuntimeState.RUNNING
        try:
            for mb in self._mailboxes.values():
                on_start = getattr(mb.agent, "on_start", None)
                if on_start is not None:
                    await on_start()
        except BaseException:
            # Nothing may keep running: close as if the block had failed, then re-raise.
            await self._stop(drain=False)
            raise
        if self._keeper is not None:
            self._keeper.replay_own()  # a cancelled workflow's compensations, say
        if self.freeze_gc:
            gc.collect()
            gc.freeze()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self._stop(drain=exc_type is None)
        return None

    async def _stop(self, *, drain: bool) -> None:
        assert self._tg is not None
        ledger = self._ledger
        try:
            if drain and ledger.in_flight:
                # Each pending approval is one delivery in flight (its hold) that no wait ends.
                people = len(self._approvals.pending()) if self._approvals is not None else 0
                with anyio.move_on_after(self.drain_timeout):
                    await ledger.wait_idle(people)
        finally:
            self._state = RuntimeState.CLOSING
            if self._keeper is not None:
                self._keeper.stopping()  # what ends from now on is cut short
            self._runner.cut_short(self._tg)
            try:
                # The group is cancelled already; the caller's own exception (if any) is not
                # passed in, so it propagates as itself rather than inside an ExceptionGroup.
                # So does genie's error that stopped a task of the runtime's own (a write the
                # store's disk refused), once the runtime is closed.
                with unwrapped(GenieError):
                    await self._tg.__aexit__(None, None, None)
            finally:
                # What the cancellation cut short was recorded as it happened (the group may
                # have been cancelled before this, by a handler's SystemExit, say).
                self._close(ledger.cut_short, self._timers.cut_short)
                self._timers.stop()
                if self.freeze_gc:
                    gc.unfreeze()
                await self._stop_agents()
            # The store failed as the runtime closed: its last write refused, its file gone.
            failure = self.failure
            if failure is not None:
                raise failure

    def _close(self, running: Mapping[str, int], timers: int) -> None:
        by_agent = dict(running)
        discarded = 0
        for mb, item in self._transport.drain_queues():
            msg, agent = (
                (item.message, item.failed_agent) if isinstance(item, Handoff) else (item, mb.id)
            )
            if self._ledger.kept_at_stop(msg, agent):
                continue  # the store runs it again at the next start: not lost
            discarded += 1
            by_agent[mb.id] = by_agent.get(mb.id, 0) + 1
            corr = self._correlator.get(msg.correlation_id)
            # Its request was cancelled before the stop: it ends for that, as the worker that
            # reached it would have said (and a store does not keep it), not for the stop.
            reason = CANCELLED_WITH_REQUEST if corr.cancelled else "discarded at shutdown"
            self._ledger.dead_letter(agent, msg, corr, "cancelled", reason, None, 0, log=False)
        self._state = RuntimeState.CLOSED
        drained = not (running or discarded or timers)
        self._correlator.close_all("the runtime closed")
        self.shutdown_report = ShutdownReport(
            drained,
            sum(running.values()),
            discarded,
            by_agent,
            timers,
            self._timers.kept,
            self._ledger.kept,
        )
        if self._ledger.observer is not None:
            self._ledger.observer.closed()
        if not drained:
            _log.warning(
                "runtime closed with work in flight: %d running handlers cancelled, "
                "%d queued messages discarded, %d timers cancelled (see dead letters)",
                sum(running.values()),
                discarded,
                timers,
                extra={"agent_id": "-", "message_type": "-", "correlation_id": "-"},
            )

    async def _stop_agents(self) -> None:
        for mb in self._mailboxes.values():
            on_stop = getattr(mb.agent, "on_stop", None)
            if on_stop is None:
                continue
            try:
                await on_stop()
            except Exception:
                _log.exception(
                    "on_stop of agent %r failed",
                    mb.id,
                    extra={"agent_id": mb.id, "message_type": "-", "correlation_id": "-"},
                )
        for close in self._closers:
            try:
                # Shielded: a runtime stopped by a cancellation still closes its clients.
                with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await close()
            except Exception:
                _log.exception(
                    "closing %r failed",
                    close,
                    extra={"agent_id": "-", "message_type": "-", "correlation_id": "-"},
                )

    def _check_open(self) -> None:
        if self._state is not RuntimeState.RUNNING:
            what = "not started yet" if self._state is RuntimeState.NEW else "closed"
            raise RuntimeClosedError(f"cannot publish: the runtime is {what}")
        stopper = self._runner.exiting
        if stopper is not None:
            raise RuntimeClosedError(
                f"cannot publish: the runtime is stopping (a handler raised "
                f"{type(stopper).__name__})"
            )

    async def wait_idle(self) -> None:
        """Return once nothing is in flight (no delivery queued or running, no timer pending).

        New work published meanwhile is waited for too. Guard it with a timeout of your own
        (``anyio.fail_after``) when an agent may keep the runtime busy for ever.

        Raises WaitFromHandlerError inside a handler of this runtime (or a task it started):
        the runtime is idle only once that handler has returned, so the wait could not end.
        """
        if HANDLING.get() is self._dispatcher:
            raise WaitFromHandlerError(
                "rt.wait_idle() refused: it was awaited inside a handler of this runtime (or "
                "in a task the handler started), and the runtime is idle only once that "
                "handler has returned. Wait for what the handler needs instead: await "
                "ctx.request(...) for an answer"
            )
        await self._ledger.wait_idle()

    # --- building messages -------------------------------------------------------------------
    def message(
        self,
        payload: Payload,
        *,
        sender: str = "user",
        recipient: str | None = None,
        role: Role = Role.USER,
        **fields: Any,
    ) -> Message:
        """A top-level message stamped with this runtime's ids and clock."""
        if not fields and isinstance(role, Role):
            # The common call (typed values only): build it without pydantic's validation;
            # the checks are the ones validation would make.
            return Message.top(
                payload, self._new_id(), sender, recipient, role, self.clock.timestamp()
            )
        fields.setdefault("id", self._new_id())
        fields.setdefault("correlation_id", self._new_id())
        fields.setdefault("trace_id", fields["correlation_id"])
        fields.setdefault("created_at", self.clock.now())
        return Message.new(payload, sender=sender, recipient=recipient, role=role, **fields)

    def parse(
        self,
        type_name: str,
        payload: Mapping[str, Any] | str | bytes,
        *,
        sender: str = "user",
        recipient: str | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
        **fields: Any,
    ) -> Message:
        """Like ``message`` from a type name and raw data, validated through ``types``."""
        return self.message(
            self.types.parse_payload(type_name, payload),
            sender=sender,
            recipient=recipient,
            metadata=metadata or {},
            **fields,
        )

    # --- publishing --------------------------------------------------------------------------
    async def publish(self, msg: Message) -> None:
        """Deliver ``msg`` to its recipients, waiting while a recipient's mailbox is full.

        Raises ``InvalidArgumentError`` for what is no ``Message`` (a payload: ``rt.message``
        makes a message of it), ``UnknownMessageTypeError``, ``UnknownRecipientError``,
        ``NoRouteError``, ``RuntimeClosedError``, or ``PublishFromHandlerError`` inside a
        handler of this runtime
        (a handler returns its messages instead), before anything is delivered. Denials are
        not errors here: they are recorded and reported to the correlation's gathers. It is a
        checkpoint, as anyio's memory streams: it yields first, and cancelled before the
        message is in (while it waits for room, say), nothing happened. With a store, it
        returns once the message is in the store (a kill after that loses nothing of it).
        """
        _a_message(msg, "publish")
        await self._backend.checkpoint()
        if self._preparers:
            # Refused (inside a handler, published already, nobody to take it) before a
            # preparer shows the text to its classifier, whose call costs.
            self._dispatcher.checked(msg, "publish")
            for prepare in self._preparers:
                await prepare(msg)
        await self._dispatcher.publish(msg)
        if self._published_kept is not None:
            await self._published_kept.kept()  # it returns with the message in the store

    def publish_nowait(self, msg: Message) -> None:
        """Like ``publish`` but raises ``WouldBlockError`` if it would wait (a full mailbox,
        or a policy's preparation: a classifier with no verdict on the text yet); then
        nothing happened (no delivery, no count, no tap, no policy evaluated)."""
        _a_message(msg, "publish_nowait")
        if self._preparing:
            self._dispatcher.check_caller("publish_nowait", msg)  # refused first, as publish
        for policy in self._preparing:
            prepared = getattr(policy, "prepared", None)
            if not (callable(prepared) and prepared(msg)):
                # Sent on unprepared, a message from outside would go unjudged (a screen that
                # fails open would let it through): preparing it is a wait.
                raise WouldBlockError(
                    f"cannot publish {msg.type!r} now: policy {policy.name!r} would wait to "
                    "prepare it (a classifier's verdict on its text); use publish() to wait",
                    message_id=msg.id,
                    correlation_id=msg.correlation_id,
                )
        self._dispatcher.publish_nowait(msg)

    def _fire(self, msg: Message) -> None:
        self._dispatcher.route(msg, False)

    # --- fan-in ------------------------------------------------------------------------------
    def gather(
        self,
        correlation_id: str,
        *,
        count: int | None = None,
        senders: Iterable[str] = (),
        types: Iterable[str] = (),
        where: Callable[[Message], bool] | None = None,
        timeout: float | None = None,
        consumer: str = "user",
    ) -> Gather:
        """Start collecting replies of ``correlation_id`` (see ``Gather``); then publish.

        Each reply passes admission for ``consumer`` (whom the gather collects for) first.
        """
        _a_correlation_id(correlation_id, "gather")
        return self._correlator.gather(
            correlation_id,
            count=count,
            senders=senders,
            types=types,
            where=where,
            timeout=timeout,
            consumer=consumer,
        )

    async def ask(
        self,
        msg: Message,
        *,
        until: str | Callable[[Message], bool] | None = None,
        timeout: float | None = None,
        wait: bool = True,
    ) -> GatherResult:
        """Publish ``msg`` and wait for the message that ends the request.

        That is the first message of its correlation of type ``until`` (a type name), or
        matching ``until`` (a predicate), or by default addressed back to ``msg.sender``; it
        passes admission for ``msg.sender`` first. The result is partial at once when a deny
        or failure leaves nothing in flight. ``timeout`` bounds the whole call (waiting for
        mailbox room included, and the policies' ``prepare``). On timeout the request is
        cancelled (``cancel``), unless a store keeps it paused for a person's approval; when
        the caller is cancelled too, unless a store (or a named NATS entry) keeps it: it then
        goes on, and a stop leaves it for the next start. Inside a handler of this runtime it raises
        ``PublishFromHandlerError``: a handler asks with ``ctx.request``. With ``wait=False``
        a recipient's full mailbox raises ``WouldBlockError`` at once, as ``publish_nowait``
        does, and nothing was sent (a server tells its client to come back).
        """
        return await self._ask("ask", msg, until, timeout, wait)

    async def resume(
        self,
        msg: Message,
        *,
        until: str | Callable[[Message], bool] | None = None,
        timeout: float | None = None,
    ) -> GatherResult:
        """Run again what the store kept of the request ``msg`` (one of ``unfinished()``), and
        wait, as ``ask`` does, for the message that ends it; ``msg`` itself is not sent again.
        A request nobody resumes stays in the store for a later start."""
        return await self._ask("resume", msg, until, timeout)

    async def _ask(
        self,
        how: str,
        msg: Message,
        until: str | Callable[[Message], bool] | None,
        timeout: float | None,
        wait: bool = True,
    ) -> GatherResult:
        _a_message(msg, how)
        # Refused inside a handler before anything happens: no gather, and no ``cancel`` of
        # the correlation, which may be the handler's own.
        self._dispatcher.check_caller(how, msg)
        timeout = checked_timeout(timeout, "rt.ask" if how == "ask" else "rt.resume")
        where: Callable[[Message], bool]
        if until is None:
            sender = msg.sender
            where = lambda m: m.recipient == sender  # noqa: E731
        elif isinstance(until, str):
            type_name = until
            where = lambda m: m.type == type_name  # noqa: E731
        elif callable(until):
            where = checked_predicate(until, f"rt.{how}: until")
        else:
            raise InvalidArgumentError(
                f"rt.{how}: until must be a message type's name or a function of a message, "
                f"got {type(until).__name__}"
            )
        late = False
        if how == "ask":
            # Asked before the ask's own gather opens: it cannot take its message, so it is no
            # reason to accept a message nobody here can take (a typo in the recipient).
            self._dispatcher.checked(msg, how)
            if self._preparers:
                # The timeout bounds the whole call, the policies' preparation too (a slow
                # classifier): the gather waits only for what is left of it.
                started = self.clock.monotonic()
                due = math.inf if timeout is None else started + timeout
                with anyio.CancelScope(deadline=due) as preparing:
                    for prepare in self._preparers:
                        await prepare(msg)
                if timeout is not None:
                    timeout = due - self.clock.monotonic()
                late = preparing.cancelled_caught
        # The gather keeps the deadline: an answer made after it is not taken, even when a
        # handler held the loop so long that the deadline could not be noticed in time.
        gather = self.gather(msg.correlation_id, where=where, consumer=msg.sender, timeout=timeout)
        if late:  # the deadline came during the preparation: nothing was sent
            return gather.expire()
        published = how == "resume"
        keeper = self._keeper
        if published and keeper is not None:
            keeper.replay(msg.correlation_id)  # its kept deliveries, now that the gather waits
        try:
            # No checkpoint before publishing: waiting for the reply is one.
            if not (published or wait):  # room now, or WouldBlockError: nothing was sent
                self._dispatcher.publish_nowait(msg, how)
                published = True
            if not published:  # waiting for mailbox room counts against the timeout
                outcome = await self._dispatcher.publish(msg, gather.deadline, how)
                published = outcome != "timed_out"
                if outcome == "cancelled":  # as its caller hears of a cancel at any point
                    gather.cancel(CANCELLED_WITH_REQUEST)
            result = await gather.wait() if published else gather.expire()
        except BaseException:
            gather.cancel("the caller was cancelled" if published else "publish failed")
            # The caller went away (Ctrl-C, a client gone): a request the store keeps goes on,
            # and a stop leaves it for the next start.
            # An ask that put nothing in leaves the correlation's other work alone.
            if published and (keeper is None or not keeper.keeps(msg.correlation_id)):
                self.cancel(msg.correlation_id)
            raise
        # Timed out: what is left of the request stops, unless it is paused for a person.
        if (
            result.status == "timed_out"
            and published  # else it timed out waiting for room: it put nothing in
            and (keeper is None or not keeper.holds(msg.correlation_id))
        ):
            self.cancel(msg.correlation_id)
        return result

    def cancel(self, correlation_id: str) -> None:
        """Stop a request: its running handlers are cancelled, its queued work and pending
        timers end as cancelled dead letters, its further outputs are not delivered, and a
        publish of it waiting for room stops waiting (its message is not delivered either)."""
        _a_correlation_id(correlation_id, "cancel")
        corr = self._correlator.lookup(correlation_id)
        # A publish of it still waiting for room has nothing in flight to stop: its wait ends,
        # and its message goes where the request's later messages go (nowhere).
        waited = self._dispatcher.cancel_waiting(correlation_id)
        if corr is not None and (corr.in_flight or waited):
            told = corr.cancelled
            corr.cancelled = True
            # The notice first: a store learns who must take the cancellation before the
            # request can settle (ending its queued work below may settle it at once).
            if not told and self._router.subscribers(_CANCELLED):
                self._notify_cancel(correlation_id)
            self._transport.cancel(correlation_id)
            self._timers.cancel(correlation_id)

    def _notify_cancel(self, correlation_id: str) -> None:
        """Tell the subscribers of ``genie.cancelled``, in a correlation of the notice's own
        (see losses.py): the cancelled one delivers nothing more."""
        from .losses import Cancelled, cancellation  # registered by `_watch_losses`

        if self._state is not RuntimeState.RUNNING:
            return
        notice = self.message(
            Cancelled(correlation_id=correlation_id, reason="the request was cancelled"),
            sender=RUNTIME,
            role=Role.SYSTEM,
            correlation_id=cancellation(correlation_id),
            trace_id=correlation_id,
        )
        self._dispatcher.route_alone(notice)

    async def _request(self, msg: Message, timeout: float | None) -> Message:
        self._check_open()
        checked_timeout(timeout, "ctx.request")
        recipient = msg.recipient
        if recipient is None:
            raise InvalidArgumentError(
                f"ctx.request() refused {msg.type!r}: its recipient is None, and a request goes "
                "to one agent, named by its id (to send it to the subscribers of its type, "
                "return ctx.emit(payload) from the handler)"
            )
        options = self._mailbox(recipient).options
        if recipient == msg.sender and options.max_concurrency == 1:
            raise DeliveryError(
                f"ctx.request to {recipient!r} from {recipient!r} itself: its one worker runs "
                "this handler, so the request could only wait out its timeout; give the agent "
                "max_concurrency of 2 or more, or do the work in this handler",
                message_id=msg.id,
                agent_id=recipient,
                correlation_id=msg.correlation_id,
            )
        fallback = options.fallback
        if not self.types.is_registered(msg.payload):
            raise UnknownMessageTypeError(msg.type, self.types.names())
        # The answer comes from the recipient, or from its fallback if the delivery fails.
        responders = frozenset((recipient,) if fallback is None else (recipient, fallback))
        corr = self._correlator.in_flight_here(msg.correlation_id, "ctx.request()")
        kept = None
        if self._keeper is not None:  # asked under the id it has on every run of its asker
            msg, kept = self._keeper.ask(msg)
        waiter = RequestWaiter(self._correlator, corr, msg, responders)
        if kept is None:
            self._dispatcher.route(msg, False)
        else:  # answered before a crash: given again, the answering agent does not run
            self._ledger.collect(corr)
            waiter.offer(kept)
        return await waiter.wait(self.limits.request_timeout if timeout is None else timeout)

    # --- introspection -----------------------------------------------------------------------
    def statistics(self) -> RuntimeStatistics:
        from .offload import OffloadStatistics
        from .statistics import RuntimeStatistics

        workers = self._transport.workers()
        ledger = self._ledger
        return RuntimeStatistics(
            published=self._dispatcher.published,
            delivered=ledger.delivered,
            handled=ledger.handled,
            collected=ledger.collected,
            denied=ledger.denied,
            dead_lettered=ledger.dead_lettered,
            shed=ledger.shed,
            in_flight=ledger.in_flight,
            unrouted=ledger.unrouted,
            retries=ledger.retries,
            fallbacks=ledger.fallbacks,
            taps_denied=ledger.taps_denied,
            tap_errors=ledger.tap_errors,
            observer_errors=self._guarded.errors if self._guarded is not None else 0,
            timers_pending=len(self._timers.pending),
            timers_set=self._timers.scheduled,
            timers_handled=self._timers.handled,
            executors=workers.executors,
            idle_executors=workers.idle,
            ready=workers.ready,
            # A copy first: the metrics endpoint reads this from its own thread.
            mailboxes={mb.id: mb.statistics() for mb in list(self._mailboxes.values())},
            policies=self._admission.statistics(),
            correlations=self._correlator.statistics(),
            offload=(
                self._offload.statistics()
                if self._offload is not None
                else OffloadStatistics.unused(self._threads, self._processes)
            ),
        )
