"""The runtime: router → supervisor admission → mailbox → executor → supervised handler → publish.

Every delivery (a message to one recipient) ends in exactly one of: handled, denied,
dead-lettered or shed, and ``statistics()`` counts each, so that
``delivered == handled + denied + dead_lettered + shed + in_flight`` holds at every moment.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.abc import TaskGroup

from ._agent import Agent, BaseAgent, agent_risk
from ._audit import AuditRecord, AuditSink, MemoryAuditLog
from ._clock import Clock
from ._context import Timer, _ContextBase
from ._correlator import Correlator, Gather, GatherResult, Missing, RequestWaiter, _Correlation
from ._deadletter import DeadLetter, DeadLetterKind, DeadLetters
from ._errors import (
    CircuitOpenError,
    ConfigurationError,
    DuplicateAgentError,
    HandlerTimeoutError,
    InvalidOutputError,
    NoRouteError,
    RuntimeClosedError,
    UnknownMessageTypeError,
    UnknownRecipientError,
    WouldBlockError,
)
from ._events import EventHub, EventStream
from ._executor import Executors
from ._mailbox import Mailbox, MailboxStatistics
from ._message import IdSource, Message, MessageTypes, MetaValue, Payload, Role
from ._observe import Observer, Observers
from ._router import Router, Tap
from ._supervisor import AgentOptions, Decision, Limits, Policy, PolicyStatistics, admit

if TYPE_CHECKING:
    from ._metrics import Metrics

__all__ = ["Runtime", "RuntimeStatistics", "ShutdownReport"]

_log = logging.getLogger("genie.runtime")


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    published: int
    delivered: int
    handled: int
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
    executors: int
    idle_executors: int
    ready: int


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What was still in flight when the runtime closed (all of it is in the dead letters)."""

    drained: bool
    cancelled_running: int
    discarded_queued: int
    by_agent: Mapping[str, int]


def _not_running(mailbox: Mailbox) -> None:
    raise RuntimeClosedError("the runtime is not running")


class _RuntimeContext(_ContextBase):
    __slots__ = ("_rt",)

    def __init__(self, rt: Runtime, agent_id: str, message: Message) -> None:
        self._agent_id = agent_id
        self._message = message
        self._new_id = rt._new_id
        self._rt = rt

    def now(self) -> Any:
        return self._rt.clock.now()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def request(
        self, recipient: str, payload: Payload, *, timeout: float | None = None
    ) -> Message:
        return await self._rt._request(self.emit(payload, recipient=recipient), timeout)

    def schedule(self, delay: float, payload: Payload) -> Timer:
        return self._rt._later(self.emit(payload, recipient=self._agent_id), delay)


class Runtime:
    """Hosts agents and moves messages between them. Use it as ``async with Runtime(...)``.

    On exit it waits up to ``drain_timeout`` seconds for in-flight work (when the block ended
    without an exception), then cancels what is left; ``shutdown_report`` says what that was.
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
    ) -> None:
        self.types = types if types is not None else MessageTypes()
        self.policies: tuple[Policy, ...] = tuple(policies)
        self.limits = limits or Limits()
        self.defaults = defaults or AgentOptions()
        self.clock = clock or Clock()
        self.audit: AuditSink = audit if audit is not None else MemoryAuditLog()
        self.dead_letters = DeadLetters(dead_letter_capacity, retention)
        self.drain_timeout = drain_timeout
        self.correlator = Correlator(self.clock)
        self.router = Router()
        self.shutdown_report: ShutdownReport | None = None
        self._new_id = IdSource(seed)
        self._mailboxes: dict[str, Mailbox] = {}
        self._known_payloads: set[type[Payload]] = set()
        self._taps: list[Tap] = []
        self._tg: TaskGroup | None = None
        self._executors: Executors | None = None
        self._schedule: Callable[[Mailbox], None] = _not_running
        self._state = "new"
        self._drained: anyio.Event | None = None
        self._published = self._delivered = self._handled = self._denied = 0
        self._dead_lettered = self._shed_count = self._in_flight = self._unrouted = 0
        self._retries = self._fallbacks = self._taps_denied = self._tap_errors = 0
        self._allowed = 0
        self._denials: Counter[str] = Counter()
        self._observers: list[Observer] = []
        # The one observer the hot path checks; None when nobody observes (one `is` test).
        self._observer: Observer | None = None
        self._guarded: Observers | None = None  # counts what the observers raised
        self._hub: EventHub | None = None
        self.metrics: Metrics | None = None
        if metrics:
            from ._metrics import Metrics  # prometheus-client loads only when metrics are on

            self.metrics = Metrics() if metrics is True else metrics
            self.metrics.bind(self)
        for agent in agents:
            self.add(agent)

    # --- wiring ------------------------------------------------------------------------------
    def add(
        self,
        agent: Agent,
        *,
        subscribe: Iterable[str] = (),
        options: AgentOptions | None = None,
    ) -> None:
        """Host ``agent``; ``subscribe`` lists message types or patterns (``finance.*``)."""
        if not isinstance(agent, Agent) or not isinstance(agent.id, str) or not agent.id:
            raise ConfigurationError(
                f"{agent!r} is not an Agent: it needs a non-empty str id, name, capabilities "
                "and an async handle(msg, ctx)"
            )
        if agent.id in self._mailboxes:
            raise DuplicateAgentError(
                f"agent id {agent.id!r} is already registered in this runtime", agent_id=agent.id
            )
        options = options or self.defaults
        if options.fallback is not None and options.fallback == agent.id:
            raise ConfigurationError(f"agent {agent.id!r} cannot be its own fallback")
        models: list[type[Payload]] = list(getattr(agent, "produces", ()))
        if isinstance(agent, BaseAgent):
            models += agent.consumes()
        self.types.register(*models)
        self._mailboxes[agent.id] = Mailbox(agent, options)
        for pattern in subscribe:
            self.router.subscribe(agent.id, pattern)

    def subscribe(self, agent_id: str, *patterns: str) -> None:
        self._mailbox(agent_id)
        for pattern in patterns:
            self.router.subscribe(agent_id, pattern)

    def add_tap(self, tap: Tap) -> None:
        self._taps.append(tap)

    def add_observer(self, observer: Observer) -> None:
        """Tell ``observer`` what happens to every message from now on (see ``Observer``)."""
        self._observers.append(observer)
        self._rebuild_observer()

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)
        self._rebuild_observer()

    def _rebuild_observer(self) -> None:
        errors = self._guarded.errors if self._guarded is not None else 0
        self._guarded = Observers(self._observers, errors)
        observer: Observer | None = self._guarded
        if not self._observers:
            observer = None
        elif len(self._observers) == 1 and self._observers[0].never_raises:
            observer = self._observers[0]  # the built-in ones skip the guard: ~1 µs a delivery
        self._observer = self.correlator.observer = observer

    def events(self, correlation_id: str | None = None, *, buffer: int = 1024) -> EventStream:
        """A live stream of what happens to one request (or, without an id, to all of them).

        Use it as ``async with rt.events(msg.correlation_id) as events`` before publishing,
        then ``async for event in events``. It ends when nothing of the correlation is in
        flight (or the runtime closes). It holds at most ``buffer`` events: a slow reader never
        slows the runtime, it loses events and is told how many (a ``dropped`` event).
        """
        if self._state == "closed":
            raise RuntimeClosedError("cannot stream events: the runtime is closed")
        if self._hub is None:
            self._hub = EventHub(self.clock, self)
        return self._hub.open(correlation_id, buffer)

    def agents(self) -> list[Agent]:
        return [mb.agent for mb in self._mailboxes.values()]

    def _mailbox(self, agent_id: str) -> Mailbox:
        try:
            return self._mailboxes[agent_id]
        except KeyError:
            raise UnknownRecipientError(
                f"no agent {agent_id!r} in this runtime", agent_id=agent_id
            ) from None

    # --- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeClosedError("a runtime can be started once")
        for mb in self._mailboxes.values():
            fallback = mb.options.fallback
            if fallback is not None and fallback not in self._mailboxes:
                raise ConfigurationError(
                    f"agent {mb.id!r} has fallback {fallback!r}, which is not registered"
                )
        risks = {agent_id: agent_risk(mb.agent) for agent_id, mb in self._mailboxes.items()}
        for policy in self.policies:
            bind = getattr(policy, "bind_agents", None)
            if bind is not None:
                bind(risks)  # e.g. the risk gate learns which agents are high-risk
        self.clock.start()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        # anyio.Event() asks sniffio for the backend on every call (~2 µs); the backend's own
        # class, taken once, builds the same event. Gathers and executors make one per request.
        new_event: Callable[[], anyio.Event] = type(anyio.Event())
        self.correlator.new_event = new_event
        self._executors = Executors(tg, self._run_one, new_event)
        self._executors.start()
        self._schedule = self._executors.schedule
        self._state = "running"
        for mb in self._mailboxes.values():
            on_start = getattr(mb.agent, "on_start", None)
            if on_start is not None:
                await on_start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        drained = self._in_flight == 0
        try:
            if exc_type is None and not drained:
                self._drained = anyio.Event()
                with anyio.move_on_after(self.drain_timeout):
                    await self._drained.wait()
                drained = self._in_flight == 0
        finally:
            self._state = "closing"
            running = {mb.id: mb.active for mb in self._mailboxes.values() if mb.active}
            self._tg.cancel_scope.cancel()
            try:
                # The group is cancelled already; the caller's own exception (if any) is not
                # passed in, so it propagates as itself rather than inside an ExceptionGroup.
                await self._tg.__aexit__(None, None, None)
            finally:
                self._close(drained, running)
        return None

    def _close(self, drained: bool, running: Mapping[str, int]) -> None:
        by_agent = dict(running)
        discarded = 0
        for mb in self._mailboxes.values():
            while mb.queue:
                msg = mb.queue.popleft()
                discarded += 1
                by_agent[mb.id] = by_agent.get(mb.id, 0) + 1
                corr = self.correlator.get(msg.correlation_id)
                self._dead_letter(
                    mb.id, msg, corr, "cancelled", "discarded at shutdown", None, 0, log=False
                )
            while mb.waiters:
                mb.waiters.popleft().set()  # waiting publishers wake up to RuntimeClosedError
        self._state = "closed"
        self.correlator.close_all("the runtime closed")
        self.shutdown_report = ShutdownReport(drained, sum(running.values()), discarded, by_agent)
        if self._observer is not None:
            self._observer.closed()
        if not drained:
            _log.warning(
                "runtime closed with work in flight: %d running handlers cancelled, "
                "%d queued messages discarded (see dead letters)",
                sum(running.values()),
                discarded,
                extra={"agent_id": "-", "message_type": "-", "correlation_id": "-"},
            )

    def _check_open(self) -> None:
        if self._state != "running":
            what = "not started yet" if self._state == "new" else "closed"
            raise RuntimeClosedError(f"cannot publish: the runtime is {what}")

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
            # The common call (typed values only): build it without pydantic's validation,
            # which costs ~10 µs a request; the checks are the ones validation would make.
            return Message.top(payload, self._new_id(), sender, recipient, role, self.clock.now())
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

        Raises ``UnknownMessageTypeError``, ``UnknownRecipientError``, ``NoRouteError`` or
        ``RuntimeClosedError`` before anything is delivered. Denials are not errors here: they
        are recorded and reported to the correlation's gathers.
        """
        recipients, corr = self._prepare(msg)
        try:
            for rid in recipients:
                mb = self._mailboxes[rid]
                decision = self._admit(msg, rid, corr)
                if not decision.allowed:
                    self._deny(msg, rid, corr, decision)
                    continue
                if mb.waiters or mb.full:
                    await mb.wait_for_room()
                    self._check_open()
                self._enqueue(mb, msg, corr)
        finally:
            self._released(corr)

    def publish_nowait(self, msg: Message) -> None:
        """Like ``publish`` but raises ``WouldBlockError`` (delivering nothing) if it would wait."""
        recipients, corr = self._prepare(msg)
        try:
            decisions = [(rid, self._admit(msg, rid, corr)) for rid in recipients]
            for rid, decision in decisions:
                mb = self._mailboxes[rid]
                if decision.allowed and (mb.full or mb.waiters):
                    raise WouldBlockError(
                        f"cannot publish {msg.type!r} now: the mailbox of {rid!r} is full "
                        f"({len(mb.queue)}/{mb.capacity}); use publish() to wait",
                        message_id=msg.id,
                        agent_id=rid,
                        correlation_id=msg.correlation_id,
                    )
            for rid, decision in decisions:
                if decision.allowed:
                    self._enqueue(self._mailboxes[rid], msg, corr)
                else:
                    self._deny(msg, rid, corr, decision)
        finally:
            self._released(corr)

    def _released(self, corr: _Correlation) -> None:
        if corr.in_flight == 0 and self._observer is not None:
            self._observer.settled(corr.id)  # everything was denied or collected: it is over
        self.correlator.release(corr)

    def _prepare(self, msg: Message) -> tuple[tuple[str, ...], _Correlation]:
        """Validate an outside publish and route it; raises before any side effect."""
        self._check_open()
        if not self.types.is_registered(msg.payload):
            if msg.type in self.types:
                raise ConfigurationError(
                    f"message type {msg.type!r} is registered to "
                    f"{self.types.get(msg.type).__qualname__}, not {type(msg.payload).__qualname__}"
                )
            raise UnknownMessageTypeError(msg.type, self.types.names())
        direct = msg.recipient
        waiting = self.correlator.lookup(msg.correlation_id)
        awaited = waiting is not None and bool(waiting.waiters)
        if direct is not None and direct not in self._mailboxes and not awaited:
            raise UnknownRecipientError(
                f"cannot publish {msg.type!r}: no agent {direct!r} in this runtime",
                message_id=msg.id,
                agent_id=direct,
                correlation_id=msg.correlation_id,
            )
        routed = self.router.recipients(msg)
        if not routed and not awaited:
            raise NoRouteError(
                f"cannot publish {msg.type!r}: it has no recipient and no agent subscribes to it",
                message_id=msg.id,
                correlation_id=msg.correlation_id,
            )
        corr = self.correlator.get(msg.correlation_id)
        return self._route(msg, corr, routed), corr

    def _route(self, msg: Message, corr: _Correlation, routed: tuple[str, ...]) -> tuple[str, ...]:
        """Count the message, show it to waiters and taps; the agent recipients that remain."""
        self._published += 1
        collected = consumed = False
        if corr.waiters:
            collected, consumed = self.correlator.offer(corr, msg)
        else:
            self.correlator.check_late(msg)
        if self._taps:
            self._tap(msg)
        if consumed:
            routed = ()
        elif msg.recipient is not None and msg.recipient not in self._mailboxes:
            routed = tuple(r for r in routed if r in self._mailboxes)
            if not collected:
                self._unrouted_letter(msg, f"unknown recipient {msg.recipient!r}")
        elif not routed and not collected:
            self._unrouted_letter(msg, "no recipient and no subscriber")
        if self._observer is not None:
            self._observer.published(msg, len(routed))
            if self.correlator.held:
                self.correlator.flush()
        return routed

    def _emit(self, msg: Message) -> None:
        """Publish a handler's output: never waits, so cycles of agents cannot deadlock.

        The common case (no waiter, no tap, a known recipient) skips the generic routing.
        """
        corr = self.correlator.active.get(msg.correlation_id) or self.correlator.get(
            msg.correlation_id
        )
        if corr.cancelled:
            self._published += 1
            if self._observer is not None:
                self._observer.published(msg, 0)
            self._unrouted_letter(msg, "correlation cancelled")
            return
        routed = self.router.recipients(msg)
        recipient = msg.recipient
        mailboxes = self._mailboxes
        if (
            corr.waiters
            or self._taps
            or not routed
            or (recipient is not None and recipient not in mailboxes)
        ):
            routed = self._route(msg, corr, routed)
        else:
            self._published += 1
            self.correlator.check_late(msg)
            if self._observer is not None:
                self._observer.published(msg, len(routed))
        for rid in routed:
            mb = mailboxes[rid]
            decision = self._admit(msg, rid, corr)
            if not decision.allowed:
                self._deny(msg, rid, corr, decision)
                continue
            if len(mb.queue) >= mb.capacity:
                if mb.options.overflow == "shed":
                    self._shed(mb, msg, corr)
                    continue
                mb.overdrafts += 1
            self._enqueue(mb, msg, corr)

    def _admit(self, msg: Message, recipient: str, corr: _Correlation) -> Decision:
        limits = self.limits
        if (
            self.policies
            or msg.hops > limits.max_hops
            or corr.deliveries >= limits.correlation_budget
        ):
            return self._evaluate(msg, recipient, corr.deliveries)
        return Decision.ALLOW

    def _evaluate(self, msg: Message, recipient: str, deliveries: int) -> Decision:
        decision = admit(msg, recipient, deliveries, self.limits, self.policies)
        if decision.allowed:
            self._allowed += 1  # one count per admission; PolicyStatistics derives the rest
        else:
            self._denials[decision.policy] += 1
        return decision

    def _tap(self, msg: Message) -> None:
        for tap in self._taps:
            if self.policies and not self._evaluate(msg, tap.id, 0).allowed:
                self._taps_denied += 1
                continue
            try:
                tap.observe(msg)
            except Exception:
                self._tap_errors += 1
                _log.exception(
                    "tap %r failed on message %s", tap.id, msg.id, extra=_fields(tap.id, msg)
                )

    # --- accounting --------------------------------------------------------------------------
    def _enqueue(self, mb: Mailbox, msg: Message, corr: _Correlation) -> None:
        self._delivered += 1
        self._in_flight += 1
        corr.in_flight += 1
        corr.deliveries += 1
        if mb.push(msg):
            self._schedule(mb)
        if self._observer is not None:
            self._observer.delivered(msg, mb.id)

    def _finish(self, corr: _Correlation) -> None:
        self._in_flight -= 1
        corr.in_flight -= 1
        if corr.in_flight == 0:
            if self._observer is not None:
                self._observer.settled(corr.id)
            self.correlator.settle(corr)
        if self._in_flight == 0 and self._drained is not None:
            self._drained.set()

    def _deny(self, msg: Message, recipient: str, corr: _Correlation, decision: Decision) -> None:
        self._delivered += 1
        corr.deliveries += 1
        self._denied += 1
        action = "limit_fired" if decision.policy.startswith("limit:") else "denied"
        self._audit(decision.policy, action, recipient, msg, decision.reason)
        _log.info(
            "denied %s %s to %s by %s: %s",
            msg.type,
            msg.id,
            recipient,
            decision.policy,
            decision.reason,
            extra=_fields(recipient, msg),
        )
        if self._observer is not None:
            self._observer.denied(msg, recipient, decision.policy, decision.reason)
        if corr.waiters:
            missing = Missing(
                recipient, "denied", decision.reason, decision.policy, recipient, msg.id
            )
            self.correlator.failed(corr, missing, msg.id, recipient)

    def _shed(self, mb: Mailbox, msg: Message, corr: _Correlation) -> None:
        self._delivered += 1
        corr.deliveries += 1
        self._shed_count += 1
        reason = f"mailbox of {mb.id!r} full ({mb.capacity}); overflow policy 'shed'"
        self._store(mb.id, msg, "shed", reason, None, 0)
        if corr.waiters:
            missing = Missing(mb.id, "shed", reason, None, mb.id, msg.id)
            self.correlator.failed(corr, missing, msg.id, mb.id)

    def _unrouted_letter(self, msg: Message, reason: str) -> None:
        self._unrouted += 1
        self._store(msg.recipient, msg, "unrouted", reason, None, 0)

    def _dead_letter(
        self,
        agent_id: str,
        msg: Message,
        corr: _Correlation,
        kind: DeadLetterKind,
        reason: str,
        error: BaseException | None,
        attempts: int,
        *,
        log: bool = True,
    ) -> None:
        self._dead_lettered += 1
        self._store(agent_id, msg, kind, reason, error, attempts, log=log)
        if corr.waiters:
            missing = Missing(
                agent_id,
                "failed" if kind == "failed" else "cancelled",
                reason,
                None,
                agent_id,
                msg.id,
            )
            self.correlator.failed(corr, missing, msg.id, agent_id)
        self._finish(corr)

    def _store(
        self,
        agent_id: str | None,
        msg: Message,
        kind: DeadLetterKind,
        reason: str,
        error: BaseException | None,
        attempts: int,
        *,
        log: bool = True,
    ) -> None:
        error_type = type(error).__name__ if error is not None else None
        letter = DeadLetter(msg, agent_id, kind, reason, error_type, attempts, self.clock.now())
        self.dead_letters.add(letter)
        if self._observer is not None:
            self._observer.dead_lettered(letter)
        self._audit(agent_id or "router", f"dead_letter:{kind}", agent_id or "-", msg, reason)
        if not log:
            return
        _log.warning(
            "dead letter (%s) %s %s for %s: %s",
            kind,
            msg.type,
            msg.id,
            agent_id,
            reason,
            extra=_fields(agent_id, msg),
        )

    def _audit(self, actor: str, action: str, target: str, msg: Message, reason: str) -> None:
        details = {
            "message_id": msg.id,
            "message_type": msg.type,
            "sender": msg.sender,
            "correlation_id": msg.correlation_id,
            "reason": reason,
        }
        self.audit.record(AuditRecord(self.clock.now(), actor, action, target, details))

    # --- execution ---------------------------------------------------------------------------
    async def _run_one(self, mb: Mailbox) -> None:
        """Run the next message of ``mb``. The first attempt is inlined: it is the hot path."""
        msg = mb.pop()
        corr = self.correlator.active.get(msg.correlation_id) or self.correlator.get(
            msg.correlation_id
        )
        try:
            if corr.cancelled:
                self._dead_letter(mb.id, msg, corr, "cancelled", "correlation cancelled", None, 0)
                return
            breaker = mb.breaker
            if breaker is not None and breaker.tripped:
                await self._recover(mb, msg, corr, None)
                return
            obs = self._observer
            started = self.clock.monotonic() if obs is not None else 0.0
            try:
                ctx = _RuntimeContext(self, mb.id, msg)
                result: object
                if mb.options.deadline is None:
                    result = await mb.agent.handle(msg, ctx)
                else:
                    result = await self._handle_with_deadline(mb, msg, ctx)
                outputs = self._check_outputs(mb, msg, result)
            except Exception as exc:
                if obs is not None:
                    obs.failed(msg, mb.id, self.clock.monotonic() - started, exc)
                await self._recover(mb, msg, corr, exc)
                return
            if obs is not None:
                obs.handled(msg, mb.id, self.clock.monotonic() - started, len(outputs))
            if breaker is not None and breaker.failures:
                breaker.record_success()
            self._succeed(mb, msg, corr, outputs)
        except anyio.get_cancelled_exc_class():
            self._dead_letter(mb.id, msg, corr, "cancelled", "cancelled at shutdown", None, 0)
            raise
        finally:
            if mb.done():
                self._schedule(mb)

    async def _recover(
        self, mb: Mailbox, msg: Message, corr: _Correlation, error: Exception | None
    ) -> None:
        """After a failed first attempt (or with the breaker tripped): retries with backoff,
        then the fallback agent, then a dead letter."""
        retry = mb.options.retry
        breaker = mb.breaker
        attempt = 0 if error is None else 1
        while True:
            if error is not None:
                if breaker is not None:
                    breaker.record_failure(self.clock.monotonic())
                if not retry.should_retry(error, attempt):
                    break
                self._retries += 1
                await anyio.sleep(retry.delay(attempt))
            attempt += 1
            if breaker is not None and not breaker.allow(self.clock.monotonic()):
                error = CircuitOpenError(
                    f"circuit of agent {mb.id!r} is open after repeated failures",
                    message_id=msg.id,
                    agent_id=mb.id,
                    correlation_id=msg.correlation_id,
                )
                break
            try:
                outputs = await self._invoke(mb, msg)
            except Exception as exc:
                error = exc
                continue
            if breaker is not None:
                breaker.record_success()
            self._succeed(mb, msg, corr, outputs)
            return
        mb.failed += 1
        reason = f"{type(error).__name__}: {error}"
        fallback = mb.options.fallback
        if fallback is not None:
            reason = await self._fall_back(self._mailboxes[fallback], msg, corr, reason)
            if not reason:
                return
        self._dead_letter(mb.id, msg, corr, "failed", reason, error, attempt)

    async def _fall_back(self, fb: Mailbox, msg: Message, corr: _Correlation, reason: str) -> str:
        """Hand the failed message to the fallback agent: '' if it handled it, else why not."""
        decision = self._admit(msg, fb.id, corr)
        if not decision.allowed:
            return f"{reason}; fallback {fb.id!r} denied by {decision.policy}: {decision.reason}"
        try:
            outputs = await self._invoke(fb, msg)
        except Exception as exc:
            return f"{reason}; fallback {fb.id!r} failed: {type(exc).__name__}: {exc}"
        self._fallbacks += 1
        self._succeed(fb, msg, corr, outputs)
        return ""

    async def _invoke(self, mb: Mailbox, msg: Message) -> Sequence[Message]:
        """One more handler call, after the first (inlined in ``_run_one``) failed."""
        obs = self._observer
        started = self.clock.monotonic() if obs is not None else 0.0
        ctx = _RuntimeContext(self, mb.id, msg)
        result: object
        try:
            if mb.options.deadline is None:
                result = await mb.agent.handle(msg, ctx)
            else:
                result = await self._handle_with_deadline(mb, msg, ctx)
            outputs = self._check_outputs(mb, msg, result)
        except Exception as exc:
            if obs is not None:
                obs.failed(msg, mb.id, self.clock.monotonic() - started, exc)
            raise
        if obs is not None:
            obs.handled(msg, mb.id, self.clock.monotonic() - started, len(outputs))
        return outputs

    async def _handle_with_deadline(
        self, mb: Mailbox, msg: Message, ctx: _RuntimeContext
    ) -> object:
        # A cancel scope costs several µs, so only agents with a deadline pay for one.
        deadline = mb.options.deadline
        assert deadline is not None
        result: object = None
        with anyio.CancelScope(deadline=self.clock.monotonic() + deadline) as scope:
            result = await mb.agent.handle(msg, ctx)
        if scope.cancelled_caught:
            raise HandlerTimeoutError(
                f"agent {mb.id!r} overran its {deadline:g}s deadline on {msg.type!r}",
                message_id=msg.id,
                agent_id=mb.id,
                correlation_id=msg.correlation_id,
            )
        return result

    def _check_outputs(self, mb: Mailbox, msg: Message, result: object) -> Sequence[Message]:
        if not isinstance(result, (list, tuple)):  # the tuple form is faster than list | tuple
            raise InvalidOutputError(
                f"agent {mb.id!r} returned {type(result).__name__} from handle(); "
                "it must return a list or tuple of Message",
                message_id=msg.id,
                agent_id=mb.id,
                correlation_id=msg.correlation_id,
            )
        known = self._known_payloads
        for out in result:
            if not isinstance(out, Message):
                raise InvalidOutputError(
                    f"agent {mb.id!r} returned a {type(out).__name__} among its outputs; "
                    "only Message objects can be published",
                    message_id=msg.id,
                    agent_id=mb.id,
                    correlation_id=msg.correlation_id,
                )
            if type(out.payload) not in known:
                if not self.types.is_registered(out.payload):
                    raise InvalidOutputError(
                        f"agent {mb.id!r} emitted {out.type!r} "
                        f"({type(out.payload).__qualname__}), which is not registered: "
                        "list it in the agent's produces",
                        message_id=msg.id,
                        agent_id=mb.id,
                        correlation_id=msg.correlation_id,
                    )
                known.add(type(out.payload))
        return result

    def _succeed(
        self, mb: Mailbox, msg: Message, corr: _Correlation, outputs: Sequence[Message]
    ) -> None:
        for out in outputs:
            self._emit(out)
        mb.handled += 1
        self._handled += 1
        if corr.requests:
            self.correlator.handled(corr, msg.id)
        self._finish(corr)

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
    ) -> Gather:
        """Start collecting replies of ``correlation_id`` (see ``Gather``); then publish."""
        return self.correlator.gather(
            correlation_id, count=count, senders=senders, types=types, where=where, timeout=timeout
        )

    async def ask(
        self,
        msg: Message,
        *,
        until: str | Callable[[Message], bool] | None = None,
        timeout: float | None = None,
    ) -> GatherResult:
        """Publish ``msg`` and wait for the message that ends the request.

        That is the first message of its correlation of type ``until`` (a type name), or
        matching ``until`` (a predicate), or by default addressed back to ``msg.sender``. The
        result is partial at once when a deny or failure leaves nothing in flight; on timeout
        the correlation's outstanding work is cancelled.
        """
        where: Callable[[Message], bool]
        if until is None:
            sender = msg.sender
            where = lambda m: m.recipient == sender  # noqa: E731
        elif isinstance(until, str):
            type_name = until
            where = lambda m: m.type == type_name  # noqa: E731
        else:
            where = until
        gather = self.gather(msg.correlation_id, where=where, timeout=timeout)
        try:
            await self.publish(msg)
        except BaseException:
            gather.cancel("publish failed")
            raise
        result = await gather.wait()
        if result.status == "timed_out":
            self.cancel(msg.correlation_id)
        return result

    def cancel(self, correlation_id: str) -> None:
        """Stop a request: its queued work is dead-lettered, its further outputs not delivered."""
        corr = self.correlator.lookup(correlation_id)
        if corr is not None and corr.in_flight:
            corr.cancelled = True

    def _later(self, msg: Message, delay: float) -> Timer:
        corr = self.correlator.get(msg.correlation_id)
        self._in_flight += 1
        corr.in_flight += 1
        timer = Timer()
        assert self._tg is not None
        self._tg.start_soon(self._fire, timer, msg, corr, delay)
        return timer

    async def _fire(self, timer: Timer, msg: Message, corr: _Correlation, delay: float) -> None:
        try:
            with anyio.CancelScope() as scope:
                timer._scope = scope
                if not timer.cancelled:
                    await anyio.sleep(delay)
                    self._emit(msg)
        finally:
            self._finish(corr)

    async def _request(self, msg: Message, timeout: float | None) -> Message:
        self._check_open()
        recipient = msg.recipient
        assert recipient is not None
        self._mailbox(recipient)
        if not self.types.is_registered(msg.payload):
            raise UnknownMessageTypeError(msg.type, self.types.names())
        waiter = RequestWaiter(self.correlator, self.correlator.get(msg.correlation_id), msg)
        self._emit(msg)
        return await waiter.wait(timeout)

    # --- introspection -----------------------------------------------------------------------
    def statistics(self) -> RuntimeStatistics:
        ex = self._executors
        return RuntimeStatistics(
            published=self._published,
            delivered=self._delivered,
            handled=self._handled,
            denied=self._denied,
            dead_lettered=self._dead_lettered,
            shed=self._shed_count,
            in_flight=self._in_flight,
            unrouted=self._unrouted,
            retries=self._retries,
            fallbacks=self._fallbacks,
            taps_denied=self._taps_denied,
            tap_errors=self._tap_errors,
            observer_errors=self._guarded.errors if self._guarded is not None else 0,
            executors=ex.count if ex else 0,
            idle_executors=ex.idle if ex else 0,
            ready=len(ex.ready) if ex else 0,
        )

    def mailbox_statistics(self) -> dict[str, MailboxStatistics]:
        # A copy first: the metrics endpoint reads this from its own thread.
        return {mb.id: mb.statistics() for mb in list(self._mailboxes.values())}

    def policy_statistics(self) -> PolicyStatistics:
        return PolicyStatistics(
            tuple(getattr(p, "name", type(p).__name__) for p in self.policies),
            self._allowed,
            dict(self._denials),
        )


def _fields(agent_id: str | None, msg: Message) -> dict[str, str]:
    """The fields every runtime log record carries (see docs/observability.md)."""
    return {
        "agent_id": agent_id or "-",
        "message_type": msg.type,
        "correlation_id": msg.correlation_id,
    }
