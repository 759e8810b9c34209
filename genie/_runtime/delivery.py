"""The supervisor at work: runs one delivery to its end (deadline, retries with backoff, circuit
breaker, fallback, dead letter), through one invocation path for every handler call
(``DeliveryRunner.run``, the only place an agent's handler is called).

Whatever a handler raises is a failure of that delivery, except what stops the runtime: its own
cancellation (of the runtime, or of the request the handler works for) and ``KeyboardInterrupt``
/ ``SystemExit`` raised on the event loop's thread. Those end the delivery as a cancelled dead
letter and propagate, and so does a handler that returns after such a cancellation (it caught
it, say): what it returned is not sent, and its delivery is not handled. A plain ``def``
handler's ``SystemExit`` or ``KeyboardInterrupt``, raised in its worker thread or child process,
reaches here as the ``AgentError`` of that delivery (``offload``): in Python it ends only the
thread that raises it. A stray ``CancelledError``
(say, from awaiting a future another task cancelled) is a failure like any.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from contextvars import copy_context
from typing import TYPE_CHECKING

import anyio

from .._agent.context import ContextServices, runtime_context
from .._agent.outputs import outputs_of
from .._base.backend import Backend
from .._base.clock import Clock
from .._base.failure import attempts_of, exiting, remember_attempt, stops_runtime
from .._base.resilience import NOT_RETRYABLE
from .._errors import CircuitOpenError, HandlerTimeoutError, InvalidOutputError, described
from .._message.envelope import Message
from .._message.payload import Payload
from .._message.types import MessageTypes
from .admission import Admission
from .correlator import Correlator, _Correlation
from .dispatch import HANDLING, Dispatcher
from .ledger import Ledger
from .local.executor import Worker
from .local.mailbox import Handoff, Mailbox
from .policy import Decision
from .transport import Transport

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["CANCELLED_WITH_REQUEST", "DeliveryRunner"]

# The reason of a delivery, queued or running, that its request's cancellation ended (a
# caller's timeout, ``rt.cancel``): what a deadline cut short, as opposed to a shutdown's.
CANCELLED_WITH_REQUEST = "correlation cancelled"


class DeliveryRunner:
    def __init__(
        self,
        clock: Clock,
        types: MessageTypes,
        ledger: Ledger,
        correlator: Correlator,
        admission: Admission,
        dispatcher: Dispatcher,
        mailboxes: Mapping[str, Mailbox],
        transport: Transport,
        services: ContextServices,
    ) -> None:
        self.clock = clock
        self.types = types
        self.ledger = ledger
        self.correlator = correlator
        self.admission = admission
        self.dispatcher = dispatcher
        self.mailboxes = mailboxes  # the runtime's agents (a fallback is looked up here)
        self.transport = transport
        self.services = services
        self._known: set[type[Payload]] = set()  # output payload types checked registered
        # The runtime is cancelling its task group (``cut_short``): a handler that returns
        # all the same is cut short, its outputs unsent.
        self.stopping = False
        # A handler raised ``KeyboardInterrupt`` or ``SystemExit`` on the loop's thread: the
        # runtime is stopping from that moment, though its task group hears of it a loop turn
        # later on some loops (uvloop), and a publish meanwhile is refused, not discarded.
        self.exiting: BaseException | None = None

    def start(self, tg: TaskGroup, backend: Backend) -> None:
        """The runtime started: the transport runs deliveries with ``run`` from now on.

        The tasks it starts here run this runtime's handlers, and so does every task they or
        a handler start (a task begins with a copy of its starter's context): they are marked
        so once, here (``HANDLING``), and a turn of ``run`` finds its task marked already."""
        marked = copy_context()
        marked.run(HANDLING.set, self.dispatcher)
        marked.run(self.transport.start, tg, self.run, backend)

    async def run(self, first: Mailbox, worker: Worker) -> None:
        """Run the next delivery queued in ``first`` to its outcome, then those of the
        mailboxes the transport's ``turn`` names, one after the other in this one call: which
        mailbox runs next, and when the task yields, stay the transport's to say.

        Each delivery is attempted here, and only here: the first attempt, each retry (after
        ``_again`` has waited its backoff and asked the breaker), and a fallback's attempt of a
        delivery its agent failed (a ``Handoff``). A success is settled here too; a delivery
        that cannot succeed goes to ``_give_up`` (the fallback, else a dead letter)."""
        if HANDLING.get() is not self.dispatcher:
            # A task the transport did not start in ``start``: marked for this turn alone,
            # so that its handlers' sends are refused as anywhere (``check_caller``).
            marked = HANDLING.set(self.dispatcher)
            try:
                await self.run(first, worker)
            finally:
                HANDLING.reset(marked)
            return
        transport = self.transport
        correlator = self.correlator
        ready = transport.ready_queue
        ledger = self.ledger
        services = self.services
        known = self._known
        route = self.dispatcher.route
        for mb in transport.turn(worker, first):
            # The token becomes a running delivery (still ``busy``): the oldest queued
            # message. Its slot is free, so the publishers waiting for room go next.
            mb.scheduled -= 1
            item = mb.queue.popleft()
            if mb.waiters:
                mb.wake_publishers()
            if isinstance(item, Handoff):
                handoff: Handoff | None = item
                msg = item.message
            else:
                handoff, msg = None, item
            cid = msg.correlation_id
            corr = correlator.active.get(cid) or correlator.get(cid)
            worker.correlation = cid
            trial = False  # the attempt under way is a half-open breaker's one trial
            attempt = 0  # attempts that failed so far
            try:
                if corr.cancelled:
                    agent, attempt = (
                        (handoff.failed_agent, handoff.attempts)
                        if handoff is not None
                        else (mb.id, 0)
                    )
                    ledger.dead_letter(
                        agent, msg, corr, "cancelled", CANCELLED_WITH_REQUEST, None, attempt
                    )
                else:
                    # A tripped breaker is asked before the first attempt, as before every
                    # retry; only a breaker counting failures can be tripped.
                    failing = mb.failing
                    error: BaseException | None = None
                    # The tracebacks of the attempts before the one that ended in ``error``:
                    # this delivery's own (another's may have raised the same exception).
                    earlier: tuple[str, ...] = ()
                    again = failing is not None and handoff is None and failing.tripped
                    while True:
                        if again:
                            # ``error``: the last attempt's failure, kept for the next one's.
                            given_up = await self._again(mb, msg, error, attempt)
                            if given_up is not None:
                                # ``error``, or an open circuit (made, not raised), whose
                                # letter keeps the failures that kept it open.
                                earlier = remember_attempt(earlier, error, given_up)
                                self._give_up(mb, msg, corr, given_up, attempt, earlier)
                                break
                            # Let through a half-open breaker: this attempt is its one trial.
                            trial = mb.breaker is not None and mb.breaker.state == "half_open"
                        obs = ledger.observer
                        started = self.clock.monotonic() if obs is not None else 0.0
                        ctx = runtime_context(services, mb.id, msg)
                        bound = mb.handlers.get(type(msg.payload))
                        try:
                            # The one call of an agent's handler: a ``BaseAgent``'s handler for the
                            # payload's very type directly (what its ``handle`` would call), else
                            # the agent's ``handle``.
                            if bound is None:
                                pending: Awaitable[object] = mb.agent.handle(msg, ctx)
                            else:
                                pending = bound(msg.payload, ctx)
                            if mb.options.deadline is None:
                                returned = await pending
                            else:
                                returned = await self._within_deadline(mb, msg, pending)
                            if worker.cancelled or self.stopping:
                                # It caught the cancellation of its request or of the stop
                                # and returned: cut short all the same, its outputs unsent.
                                # The cancellation still holds here (anyio's is level
                                # triggered): raised again, it ends the delivery as it would
                                # have, had the handler let it through. Imported only
                                # here: `import genie` does not load anyio.lowlevel.
                                from anyio.lowlevel import checkpoint_if_cancelled

                                await checkpoint_if_cancelled()
                            if (
                                returned is ctx.last_emitted
                                and returned is not None
                                and type(returned.payload) in known
                            ):
                                # The common reply: the one message this delivery's own context
                                # built (stamped by construction), of a type already checked.
                                single: Message | None = returned
                                outputs: Sequence[Message] = ()
                            else:
                                single = None
                                outputs = self._outputs(
                                    mb, msg, returned, ctx.last_emitted, bound is not None
                                )
                        except BaseException as exc:
                            if stops_runtime(exc):
                                raise
                            if obs is not None:
                                obs.failed(msg, mb.id, self.clock.monotonic() - started, exc)
                            if handoff is not None:
                                reason = (
                                    f"{handoff.reason}; fallback {mb.id!r} failed: {described(exc)}"
                                )
                                # The agent's attempts, then the fallback's, which was last.
                                agents = remember_attempt(handoff.earlier, handoff.error, exc)
                                ledger.dead_letter(
                                    handoff.failed_agent,
                                    msg,
                                    corr,
                                    "failed",
                                    reason,
                                    handoff.error,
                                    handoff.attempts,
                                    tracebacks=attempts_of(exc, agents),
                                )
                                break
                            attempt += 1
                            trial = False  # a failed trial is recorded (``_again``)
                            earlier = remember_attempt(earlier, error, exc)
                            error = exc
                            again = True
                        else:
                            if obs is not None:
                                count = 1 if single is not None else len(outputs)
                                obs.handled(msg, mb.id, self.clock.monotonic() - started, count)
                            # Handled: the breaker closes, the outputs go out (stamped with
                            # ``msg``'s correlation, open until this delivery closes), then
                            # its outcome is recorded.
                            if handoff is not None:
                                ledger.fell_back()  # the fallback's own breaker is not its agent's
                            elif mb.failing is not None:  # read again: a retry may have set it
                                mb.failing.record_success()
                                mb.failing = None
                            if single is not None:
                                route(single, True, corr)
                            else:
                                for out in outputs:
                                    route(out, True, corr)
                            mb.handled += 1
                            ledger.closed(corr, msg, mb.id)
                            break
            except BaseException as exc:
                # Only what stops the runtime gets here, always before the delivery's outcome.
                if trial and mb.breaker is not None:
                    mb.breaker.abandon_trial()
                agent = handoff.failed_agent if handoff is not None else mb.id
                stopper = exiting(exc)
                if stopper is not None and self.exiting is None:
                    self.exiting = stopper
                if corr.cancelled:
                    reason = CANCELLED_WITH_REQUEST
                elif ledger.kept_at_stop(msg, agent):
                    raise  # the store runs it again at the next start: not lost
                else:
                    ledger.cut_short_by_shutdown(agent)
                    reason = (
                        f"the runtime stopped: {type(stopper).__name__}"
                        if stopper is not None
                        else "cancelled at shutdown"
                    )
                # What failed before it stopped (a retry's backoff, say) is counted still.
                attempts = handoff.attempts if handoff is not None else attempt
                ledger.dead_letter(agent, msg, corr, "cancelled", reason, None, attempts)
                raise
            finally:
                worker.correlation = None
                # The delivery has its outcome: its token passes to the next message, if one
                # waits without a token and the agent may go on running as many handlers
                # (``scheduled <= len(queue)``, ``busy <= max_concurrency``); else it is
                # given back.
                if mb.scheduled < len(mb.queue) and mb.busy <= mb.max_concurrency:
                    mb.scheduled += 1
                    ready.append(mb)
                else:
                    mb.busy -= 1

    def cut_short(self, tg: TaskGroup) -> None:
        """The runtime stops what runs in ``tg``: its handlers are cancelled, and one that
        returns all the same is cut short (``run``)."""
        self.stopping = True
        tg.cancel_scope.cancel()

    async def _again(
        self, mb: Mailbox, msg: Message, error: BaseException | None, attempt: int
    ) -> BaseException | None:
        """Before another attempt, after ``attempt`` attempts (the last failed with ``error``;
        None: none failed, the breaker was found tripped): the error to give up with, or None
        once the retry's backoff has passed and the breaker lets it through."""
        breaker = mb.breaker
        if error is not None:
            if breaker is not None:
                if not isinstance(error, NOT_RETRYABLE):
                    breaker.record_failure(self.clock.monotonic())
                    mb.failing = breaker
                elif breaker.state == "half_open":
                    # The same input fails the same way (a denial, an invalid output, a message
                    # no handler takes): nothing of the agent's health, so no trial either.
                    breaker.abandon_trial()
            retry = mb.options.retry
            if not retry.should_retry(error, attempt):
                return error
            self.ledger.retried()
            await self.clock.sleep(retry.delay(attempt))
        if breaker is not None and not breaker.allow(self.clock.monotonic()):
            return CircuitOpenError(
                f"circuit of agent {mb.id!r} is open after repeated failures",
                message_id=msg.id,
                agent_id=mb.id,
                correlation_id=msg.correlation_id,
            )
        return None

    def _give_up(
        self,
        mb: Mailbox,
        msg: Message,
        corr: _Correlation,
        error: BaseException,
        attempts: int,
        earlier: tuple[str, ...],
    ) -> None:
        """The delivery failed for good: on to the agent's fallback, else a dead letter.
        ``earlier``: the tracebacks of its attempts before the one that ended in ``error``."""
        mb.failed += 1
        reason = described(error)
        fallback = mb.options.fallback
        fb = None if fallback is None else self.mailboxes.get(fallback)
        if fallback is not None and fb is None:
            # Added to the running runtime before its fallback (the start checks every agent
            # present then): nobody to hand the delivery to yet, so its failure is its own.
            reason += f"; fallback {fallback!r} is not an agent of this runtime (yet)"
        elif fallback is not None and fb is not None:
            # The same delivery, admitted once within the limits (its hops are the same, and it
            # is charged to the budget once): only the policies judge it for its new consumer.
            admission = self.admission
            decision = admission.judge(msg, fallback) if admission.policies else Decision.ALLOW
            if decision.allowed:
                # The same delivery goes on in the fallback's mailbox (still in flight); a
                # handoff never waits, like any send from a handler.
                if len(fb.queue) >= fb.capacity:
                    fb.overdrafts += 1
                handoff = Handoff(msg, mb.id, reason, error, attempts, earlier)
                self.transport.put(handoff, fallback)
                return
            # Audited as any refusal is; the delivery itself ends as the failure it is.
            self.ledger.refused(msg, fallback, decision)
            reason += f"; fallback {fallback!r} denied by {decision.policy}: {decision.reason}"
        tracebacks = attempts_of(error, earlier)
        self.ledger.dead_letter(
            mb.id, msg, corr, "failed", reason, error, attempts, tracebacks=tracebacks
        )

    async def _within_deadline(
        self, mb: Mailbox, msg: Message, pending: Awaitable[object]
    ) -> object:
        # Only agents with a deadline pay for a cancel scope of their own.
        deadline = mb.options.deadline
        assert deadline is not None
        due = self.clock.monotonic() + deadline
        result: object = None
        with anyio.CancelScope(deadline=due) as scope:
            result = await pending
        if scope.cancelled_caught:
            overran = ""
        else:
            # A cancel scope interrupts a handler only where it awaits: one that blocks the
            # event loop (or shields itself) runs past its deadline all the same. Returned
            # late, it has overrun like one cancelled, and its outputs are discarded as a
            # given-up thread's are.
            late = self.clock.monotonic() - due
            if late <= 0:
                return result
            overran = (
                f": it returned {late:.3g}s late, having blocked the event loop (or shielded "
                "itself from cancellation), so it could not be cancelled, and its outputs are "
                "discarded; run blocking work in a plain def handler (a worker thread) or "
                "with offload='process'"
            )
        raise HandlerTimeoutError(
            f"agent {mb.id!r} overran its {deadline:g}s deadline on {msg.type!r}{overran}",
            message_id=msg.id,
            agent_id=mb.id,
            correlation_id=msg.correlation_id,
        )

    def _outputs(
        self, mb: Mailbox, msg: Message, result: object, built: Message | None, typed: bool
    ) -> Sequence[Message]:
        """Check what a handler returned, and stamp it: correlation, trace, causation, hops and
        sender always come from the input, whatever the handler built (so no output escapes the
        hop limit or the correlation's budget). ``built``: the last message this delivery's own
        context built, stamped right by construction. ``typed``: a ``BaseAgent`` handler
        returned it, which may also return one message or None (as ``BaseAgent.handle``
        takes them)."""
        known = self._known
        result = outputs_of(mb.id, msg, result, typed)
        hops = msg.hops + 1
        stamped: list[Message] | None = None
        for i, out in enumerate(result):
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
