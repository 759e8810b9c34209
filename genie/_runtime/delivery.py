"""The supervisor at work: runs one delivery to its end (deadline, retries with backoff, circuit
breaker, fallback, dead letter), through one invocation path for every handler call.

Whatever a handler raises is a failure of that delivery, except what stops the runtime: its own
cancellation (of the runtime, or of the request the handler works for) and ``KeyboardInterrupt``
/ ``SystemExit``. Those end the delivery as a cancelled dead letter and propagate. A stray
``CancelledError`` (say, from awaiting a future another task cancelled) is a failure like any.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import anyio

from .._agent.context import ContextServices, RuntimeContext, runtime_context
from .._base.clock import Clock
from .._errors import CircuitOpenError, HandlerTimeoutError, InvalidOutputError
from .._message.envelope import Message
from .._message.payload import Payload
from .._message.types import MessageTypes
from .admission import Admission
from .correlator import Correlator, _Correlation
from .dispatch import Dispatcher
from .ledger import Ledger
from .local.executor import Worker
from .local.mailbox import Handoff, Mailbox
from .local.transport import LocalTransport

__all__ = ["DeliveryRunner", "stops_runtime"]


def stops_runtime(exc: BaseException) -> bool:
    """True for what must not be handled as a failure (see the module docstring)."""
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return True
    # Cancellation that is ours shows as an effective deadline of -inf; a stray one does not.
    return isinstance(exc, anyio.get_cancelled_exc_class()) and (
        anyio.current_effective_deadline() == -math.inf
    )


class DeliveryRunner:
    def __init__(
        self,
        clock: Clock,
        types: MessageTypes,
        ledger: Ledger,
        correlator: Correlator,
        admission: Admission,
        dispatcher: Dispatcher,
        transport: LocalTransport,
        services: ContextServices,
    ) -> None:
        self.clock = clock
        self.types = types
        self.ledger = ledger
        self.correlator = correlator
        self.admission = admission
        self.dispatcher = dispatcher
        self.transport = transport
        self.services = services
        self._known_payloads: set[type[Payload]] = set()

    async def run(self, first: Mailbox, worker: Worker) -> None:
        """Run the next delivery queued in ``first`` to its outcome; on the local executors, then
        the next deliveries of the executor's turn (``Executors.turn``), one loop for all.

        Why a loop: a coroutine per delivery (this one, which awaits the handler's) cost ~1,000
        instructions more than a turn of a loop. Which mailbox runs next, and when the
        executor yields, stay the executors' to say: ``turn`` takes them as their own loop did.
        """
        executors = self.transport.executors
        # Read once a turn, not once a delivery: none is replaced while the runtime runs (the
        # observer is, when one is added: it is read per delivery).
        ledger = self.ledger
        active = self.correlator.active
        services = self.services
        known = self._known_payloads
        emit = self.dispatcher.emit
        for mb in (first,) if executors is None else executors.turn(worker, first):
            # ``Mailbox.pop``, inlined: once a delivery.
            mb.scheduled -= 1
            mb.active += 1
            item = mb.queue.popleft()
            if mb.waiters:
                mb.wake_publishers()
            handoff: Handoff | None = None
            if type(item) is Handoff:  # never subclassed; cheaper than isinstance, once a hop
                handoff, msg = item, item.message
            else:
                msg = item  # type: ignore[assignment]  # mypy narrows only the positive type() test
            cid = msg.correlation_id  # one read: pydantic's __getattr__ makes each read a hook
            corr = active.get(cid) or self.correlator.get(cid)
            worker.correlation = cid
            try:
                if corr.cancelled:
                    agent = handoff.failed_agent if handoff is not None else mb.id
                    self.ledger.dead_letter(
                        agent, msg, corr, "cancelled", "correlation cancelled", None, 0
                    )
                elif handoff is not None:
                    # (Branches, not ``continue``: mypyc cannot compile a ``continue`` inside a
                    # try/finally.)
                    await self._fall_back(mb, msg, corr, handoff)
                elif (breaker := mb.breaker) is not None and breaker.failures and breaker.tripped:
                    await self._recover(mb, msg, corr, None)
                else:
                    obs = ledger.observer
                    started = 0.0
                    single: Message | None = None  # the only output, if it needs no check
                    try:
                        if mb.options.deadline is None:
                            # _attempt without a coroutine of its own, for the common case (no
                            # deadline): it saves ~0.3 µs of a ~9 µs hop, and metrics keep it.
                            if obs is not None:
                                # A local, read twice: CPython cannot specialize
                                # ``self.clock.monotonic()``, a call of a function an instance
                                # holds.
                                tick = self.clock.monotonic
                                started = tick()
                            ctx = runtime_context(services, mb.id, msg)
                            handlers = mb.handlers
                            payload = msg.payload
                            name = handlers.get(type(payload)) if handlers is not None else None
                            if name is not None:
                                # ``BaseAgent.handle``, fused: the handler for the payload's very
                                # type is called here, one coroutine instead of two.
                                returned = await getattr(mb.agent, name)(payload, ctx)
                                built = ctx.last_emitted
                                if (
                                    returned is built
                                    and built is not None
                                    and type(built.payload) in known
                                ):
                                    # ``_outputs`` for the common case, decided without a call: the
                                    # one message this delivery's own context built, of a registered
                                    # type, returned alone (a reply, an emit).
                                    single = built
                                    outputs: Sequence[Message] = ()
                                elif returned is None:
                                    outputs = ()
                                elif type(returned) is Message or isinstance(returned, Message):
                                    outputs = self._outputs(mb, msg, (returned,), built)
                                else:
                                    outputs = self._outputs(mb, msg, returned, built)
                            else:
                                result = await mb.agent.handle(msg, ctx)
                                outputs = self._outputs(mb, msg, result, ctx.last_emitted)
                            if obs is not None:
                                count = len(outputs) if single is None else 1
                                obs.handled(msg, mb.id, tick() - started, count)
                        else:
                            outputs = await self._attempt(mb, msg)
                    except BaseException as exc:
                        if stops_runtime(exc):
                            raise
                        if (
                            obs is not None and mb.options.deadline is None
                        ):  # _attempt tells its own
                            obs.failed(msg, mb.id, self.clock.monotonic() - started, exc)
                        await self._recover(mb, msg, corr, exc)
                    else:
                        if breaker is not None and breaker.failures:
                            breaker.record_success()
                        # ``_succeed``, inlined: once a hop (outputs are stamped with ``msg``'s
                        # correlation)
                        if single is not None:
                            emit(single, True, corr)
                        else:
                            for out in outputs:
                                emit(out, True, corr)
                        mb.handled += 1
                        if corr.requests or corr.in_flight == 1 or ledger.in_flight == 1:
                            ledger.handled_one(corr, msg)  # a request watches, or something settles
                        else:
                            # ``Ledger.handled_one`` when nothing settles: once a delivery, no call.
                            ledger.handled += 1
                            ledger.in_flight -= 1
                            corr.in_flight -= 1
            except BaseException as exc:
                # Only what stops the runtime gets here, always before the delivery's outcome.
                agent = handoff.failed_agent if handoff is not None else mb.id
                if corr.cancelled:
                    reason = "correlation cancelled"
                else:
                    self.ledger.cut_short[agent] += 1
                    reason = (
                        f"the runtime stopped: {type(exc).__name__}"
                        if isinstance(exc, KeyboardInterrupt | SystemExit)
                        else "cancelled at shutdown"
                    )
                self.ledger.dead_letter(agent, msg, corr, "cancelled", reason, None, 0)
                raise
            finally:
                worker.correlation = None
                # ``Mailbox.done``, inlined: once a delivery.
                mb.active -= 1
                if mb.scheduled < len(mb.queue) and mb.scheduled + mb.active < mb.max_concurrency:
                    mb.scheduled += 1
                    # Back in the executors' ready queue, once a delivery while the agent has a
                    # backlog. Not ``Executors.schedule``: the executor running this delivery is
                    # free once this returns and takes from that queue next, so there is no idle
                    # executor to wake nor a monitor to tell. Only local executors run from a
                    # queue (a transport without them, such as NATS, marks every queued item
                    # scheduled, so this never runs there).
                    executors = self.transport.executors
                    if executors is not None:
                        executors.ready.append(mb)

    async def _recover(
        self, mb: Mailbox, msg: Message, corr: _Correlation, error: BaseException | None
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
                self.ledger.retries += 1
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
                outputs = await self._attempt(mb, msg)
            except BaseException as exc:
                if stops_runtime(exc):
                    raise
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
            decision = self.admission.check(msg, fallback, corr)
            if decision.allowed:
                # The same delivery goes on in the fallback's mailbox (still in flight); a
                # handoff never waits, like any send from a handler.
                fb = self.transport.mailboxes[fallback]
                if len(fb.queue) >= fb.capacity:
                    fb.overdrafts += 1
                self.transport.put(Handoff(msg, mb.id, reason, error, attempt), fallback)
                return
            reason += f"; fallback {fallback!r} denied by {decision.policy}: {decision.reason}"
        self.ledger.dead_letter(mb.id, msg, corr, "failed", reason, error, attempt)

    async def _fall_back(
        self, fb: Mailbox, msg: Message, corr: _Correlation, handoff: Handoff
    ) -> None:
        try:
            outputs = await self._attempt(fb, msg)
        except BaseException as exc:
            if stops_runtime(exc):
                raise
            reason = f"{handoff.reason}; fallback {fb.id!r} failed: {type(exc).__name__}: {exc}"
            self.ledger.dead_letter(
                handoff.failed_agent, msg, corr, "failed", reason, handoff.error, handoff.attempts
            )
            return
        self.ledger.fallbacks += 1
        self._succeed(fb, msg, corr, outputs)

    async def _attempt(self, mb: Mailbox, msg: Message) -> Sequence[Message]:
        """One handler call (``run`` inlines the first attempt of the common case)."""
        obs = self.ledger.observer
        started = self.clock.monotonic() if obs is not None else 0.0
        ctx = runtime_context(self.services, mb.id, msg)
        result: object
        try:
            if mb.options.deadline is None:
                result = await mb.agent.handle(msg, ctx)
            else:
                result = await self._handle_with_deadline(mb, msg, ctx)
            outputs = self._outputs(mb, msg, result, ctx.last_emitted)
        except BaseException as exc:
            if obs is not None and not stops_runtime(exc):
                obs.failed(msg, mb.id, self.clock.monotonic() - started, exc)
            raise
        if obs is not None:
            obs.handled(msg, mb.id, self.clock.monotonic() - started, len(outputs))
        return outputs

    async def _handle_with_deadline(self, mb: Mailbox, msg: Message, ctx: RuntimeContext) -> object:
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

    def _outputs(
        self, mb: Mailbox, msg: Message, result: object, built: Message | None
    ) -> Sequence[Message]:
        """Check what a handler returned, and stamp it: correlation, trace, causation, hops and
        sender always come from the input, whatever the handler built (so no output escapes the
        hop limit or the correlation's budget). ``built``: the last message this delivery's own
        context built, stamped right by construction."""
        if not isinstance(result, (list, tuple)):  # the tuple form is faster than list | tuple
            raise InvalidOutputError(
                f"agent {mb.id!r} returned {type(result).__name__} from handle(); "
                "it must return a list or tuple of Message",
                message_id=msg.id,
                agent_id=mb.id,
                correlation_id=msg.correlation_id,
            )
        known = self._known_payloads
        hops = msg.hops + 1
        stamped: list[Message] | None = None
        for i, out in enumerate(result):
            if type(out) is not Message and not isinstance(out, Message):
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
            if out is built:
                if stamped is not None:
                    stamped.append(out)
                continue
            # What ctx.emit builds shares the input's very strings: identity first (cheap).
            if not (
                (out.causation_id is msg.id or out.causation_id == msg.id)
                and out.hops == hops
                and (
                    out.correlation_id is msg.correlation_id
                    or out.correlation_id == msg.correlation_id
                )
                and (out.trace_id is msg.trace_id or out.trace_id == msg.trace_id)
                and (out.sender is mb.id or out.sender == mb.id)
            ):
                if stamped is None:
                    stamped = list(result[:i])
                out = out.model_copy(
                    update={
                        "causation_id": msg.id,
                        "hops": hops,
                        "correlation_id": msg.correlation_id,
                        "trace_id": msg.trace_id,
                        "sender": mb.id,
                    }
                )
            if stamped is not None:
                stamped.append(out)
        return result if stamped is None else stamped

    def _succeed(
        self, mb: Mailbox, msg: Message, corr: _Correlation, outputs: Sequence[Message]
    ) -> None:
        emit = self.dispatcher.emit
        for out in outputs:
            emit(out, True, corr)  # stamped with ``msg``'s correlation
        mb.handled += 1
        self.ledger.handled_one(corr, msg)
