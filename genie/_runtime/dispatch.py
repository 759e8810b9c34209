"""The one routing path: every message, from outside or from a handler, goes route -> admission
for each consumer -> delivery.

``route`` names the consumers: the waiters of the correlation that match (gathers, asks, a
``ctx.request`` waiting for this very reply), the taps, and the agents (direct recipient and
subscribers). Each consumer is admitted under its own id and each delivery is recorded by the
ledger. Outside publishers wait for room (``publish``) or are refused before anything happens
(``publish_nowait``); handler outputs never wait, so cycles of agents cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._base.log import lazy_logger
from .._errors import (
    ConfigurationError,
    NoRouteError,
    UnknownMessageTypeError,
    UnknownRecipientError,
    WouldBlockError,
)
from .._message.envelope import Message
from .._message.types import MessageTypes
from .admission import Admission
from .correlator import Correlator, Missing, _Correlation
from .ledger import Ledger, fields
from .local.transport import LocalTransport
from .policy import Decision
from .router import Router, Tap

__all__ = ["Dispatcher"]

_log = lazy_logger("genie.runtime")


class Dispatcher:
    def __init__(
        self,
        types: MessageTypes,
        router: Router,
        transport: LocalTransport,
        admission: Admission,
        ledger: Ledger,
        correlator: Correlator,
        check_open: Callable[[], None],
    ) -> None:
        self.types = types
        self.router = router
        self.transport = transport
        self.mailboxes = transport.mailboxes
        self.admission = admission
        self.ledger = ledger
        self.correlator = correlator
        self.check_open = check_open
        self.taps: list[Tap] = []
        # Set by the runtime when its observers take a publish's deliveries in one call
        # (``deliveries_listener``); else each is told to ``observer.delivered``.
        self.delivered_many: Callable[[Message, Sequence[str]], None] | None = None

    # --- from outside ------------------------------------------------------------------------
    async def publish(self, msg: Message) -> None:
        """Wait for room if need be, then put the message in at once. Cancelled while
        waiting, nothing happened. (The caller adds the checkpoint, or waits right after.)"""
        routed, corr = self._validate(msg)
        transport = self.transport
        mailboxes = self.mailboxes
        # First a slot in every recipient's mailbox (first come, first served), then the
        # message goes in at once: route, admission and delivery do not wait.
        held = 0  # the agents of ``routed[:held]`` hold a slot
        try:
            held = transport.hold(routed, 0)  # the common case holds them all and never awaits
            while held < len(routed):
                await transport.wait_for_room(routed[held])  # gives its slot back if cancelled
                held = transport.hold(routed, held + 1)
            self.check_open()
        except BaseException:
            for rid in routed[:held]:
                if rid in mailboxes:
                    transport.release(rid)
            self._released(corr)
            raise
        ledger = self.ledger
        admission = self.admission
        limits = admission.limits
        free = not admission.policies and msg.hops <= limits.max_hops  # as in ``emit``
        budget = limits.correlation_budget
        batch = self.delivered_many
        observer = ledger.observer
        admitted: tuple[str, ...] = ()
        done = 0  # the slots of ``admitted[:done]`` were used or given back
        told: Sequence[str] = ()  # the agents it was put for, for ``batch``
        try:
            admitted = self.route(msg, corr, routed, False)
            if (
                free
                and corr.deliveries + len(admitted) <= budget
                and (batch is not None or observer is None)
            ):
                # Every recipient admitted without a call (no policies, the limits hold for
                # all), and nobody told of each as it goes: the counts once, the deliveries in
                # one call. Nothing runs between the puts (a handler starts at the next
                # checkpoint), so the counts read the same as when kept one by one.
                delivered = len(admitted)
                ledger.delivered += delivered
                ledger.in_flight += delivered
                corr.in_flight += delivered
                corr.deliveries += delivered
                transport.put_held(msg, admitted)
                done = delivered
                told = admitted
            else:
                each: list[str] = []
                told = each
                for rid in admitted:
                    if not free or corr.deliveries >= budget:
                        decision = admission.check(msg, rid, corr)
                        if not decision.allowed:
                            transport.release(rid)
                            done += 1
                            ledger.deny(msg, rid, corr, decision)
                            continue
                    # ``_deliver`` and ``Ledger.opened``, inlined: once per recipient
                    ledger.delivered += 1
                    ledger.in_flight += 1
                    corr.in_flight += 1
                    corr.deliveries += 1
                    transport.put_held(msg, (rid,))
                    done += 1
                    if batch is not None:
                        each.append(rid)
                    elif observer is not None:
                        observer.delivered(msg, rid)
        finally:
            # The slots nobody used: a waiter took the message in its agent's place (``route``
            # left the agent out), or a call above raised.
            for rid in admitted[done:]:
                transport.release(rid)
            if admitted is not routed:
                kept = set(admitted)
                for rid in routed:
                    if rid in mailboxes and rid not in kept:
                        transport.release(rid)
            if batch is not None and told:
                batch(msg, told)  # before the correlation is released, as each was
            self._released(corr)

    def publish_nowait(self, msg: Message) -> None:
        routed, corr = self._validate(msg)
        try:
            for rid in routed:
                if rid in self.mailboxes and not self.transport.has_room(rid):
                    # The transport decided (across processes it counts the stream, not
                    # this process's queue), so the message names the bound, not a count.
                    raise WouldBlockError(
                        f"cannot publish {msg.type!r} now: the mailbox of {rid!r} is full "
                        f"(capacity {self.mailboxes[rid].capacity}); use publish() to wait",
                        message_id=msg.id,
                        agent_id=rid,
                        correlation_id=msg.correlation_id,
                    )
            for rid in self.route(msg, corr, routed, output=False):
                decision = self.admission.check(msg, rid, corr)
                if decision.allowed:
                    self._deliver(msg, rid, corr)
                else:
                    self.ledger.deny(msg, rid, corr, decision)
        finally:
            self._released(corr)

    def _validate(self, msg: Message) -> tuple[tuple[str, ...], _Correlation]:
        """Check an outside publish; raises before any side effect."""
        self.check_open()
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
        if direct is not None and direct not in self.mailboxes and not awaited:
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
        return routed, self.correlator.get(msg.correlation_id)

    def _released(self, corr: _Correlation) -> None:
        if corr.in_flight == 0 and self.ledger.observer is not None:
            self.ledger.observer.settled(corr.id)  # everything was denied or collected
        self.correlator.release(corr)

    # --- from handlers, timers and requests --------------------------------------------------
    def emit(self, msg: Message, output: bool = True, corr: _Correlation | None = None) -> None:
        """Send without waiting: a full mailbox is overdrawn (counted) or sheds, per its
        options. ``output``: ``msg`` is what a handler returned (so it may answer a request).
        ``corr``: ``msg``'s correlation, if the caller holds it (an output of a delivery in
        flight: stamped with the input's correlation, which stays active until handled)."""
        if corr is None:
            corr = self.correlator.active.get(msg.correlation_id) or self.correlator.get(
                msg.correlation_id
            )
        mailboxes = self.mailboxes
        ledger = self.ledger
        recipient = msg.recipient
        if (
            corr.waiters
            and recipient is not None
            and recipient not in mailboxes
            and not corr.cancelled
            and not self.taps
            and self.correlator.on_gathered is None
            # no subscriber of the type (one not looked up yet takes ``route``, which does)
            and not self.router.cache.get(msg.type, True)
        ):
            # The fan-in: a reply to a caller outside the runtime (no agent of that id, nobody
            # subscribed to the type), which only the correlation's waiters can take. ``route``
            # for it, inlined: this runs once per gathered reply.
            ledger.published += 1
            waiters = corr.waiters
            limits = self.admission.limits
            if (
                len(waiters) == 1
                and not self.admission.policies
                and msg.hops <= limits.max_hops
                and corr.deliveries < limits.correlation_budget
            ):
                # ``_offer`` for one waiter, admitted without a call (no policies, the limits
                # hold): a gather's reply, once per gathered reply.
                waiter = waiters[0]
                taken = (output or not waiter.consumes) and waiter.take(msg)
                if taken:  # counted once taken: nothing in ``take`` reads the counts
                    ledger.delivered += 1
                    ledger.handled += 1
                    ledger.collected += 1
                    corr.deliveries += 1
            else:
                taken = self._offer(msg, corr, output)[0]
            if not taken and not self.transport.forward(msg):
                ledger.unrouted_letter(msg, f"unknown recipient {recipient!r}")
            if ledger.observer is not None:
                ledger.observer.published(msg, 0)
            return
        routed = self.router.recipients(msg)
        if (
            corr.cancelled
            or corr.waiters
            or self.taps
            or not routed
            or (recipient is not None and recipient not in mailboxes)
        ):
            routed = self.route(msg, corr, routed, output)
            if not routed:  # a reply a waiter took (the fan-in), or nobody to deliver to
                return
        else:
            # ``route`` for the common case (nobody waits on the correlation, no tap, every
            # recipient known), inlined: this runs once a hop.
            ledger.published += 1
            if self.correlator.closed_criteria:
                self.correlator.check_late(msg)
            if ledger.observer is not None:
                ledger.observer.published(msg, len(routed))
        admission = self.admission
        limits = admission.limits
        # ``Admission.check`` decides without a call when there are no policies and the limits
        # hold (the budget is checked per recipient: each delivery counts against it).
        free = not admission.policies and msg.hops <= limits.max_hops
        budget = limits.correlation_budget
        put = self.transport.put
        for rid in routed:
            if not free or corr.deliveries >= budget:
                decision = admission.check(msg, rid, corr)
                if not decision.allowed:
                    ledger.deny(msg, rid, corr, decision)
                    continue
            mb = mailboxes[rid]
            if len(mb.queue) >= mb.capacity:
                if mb.options.overflow == "shed":
                    reason = f"mailbox of {rid!r} full ({mb.capacity}); overflow policy 'shed'"
                    ledger.shed_one(msg, rid, corr, reason)
                    continue
                mb.overdrafts += 1
            # ``_deliver`` and ``Ledger.opened``, inlined: this runs once a hop
            ledger.delivered += 1
            ledger.in_flight += 1
            corr.in_flight += 1
            corr.deliveries += 1
            put(msg, rid)
            if ledger.observer is not None:
                ledger.observer.delivered(msg, rid)

    # --- the path ----------------------------------------------------------------------------
    def route(
        self, msg: Message, corr: _Correlation, routed: tuple[str, ...], output: bool
    ) -> tuple[str, ...]:
        """Count the message, deliver it to the waiters and taps it concerns; the agents that
        remain to be admitted. (The message was frozen when it was built.)"""
        ledger = self.ledger
        ledger.published += 1
        obs = ledger.observer
        if corr.cancelled:
            if obs is not None:
                obs.published(msg, 0)
            ledger.unrouted_letter(msg, "correlation cancelled")
            return ()
        collected = holding = False
        if corr.waiters:
            # Only an observer is told of gathers, so only for one is the order kept.
            holding = self.correlator.on_gathered is not None
            if holding:
                self.correlator.hold()
            collected, consumed = self._offer(msg, corr, output)
            if consumed:  # the request waiter stands in for its agent; subscribers still get it
                routed = tuple(r for r in routed if r != msg.recipient)
        elif self.correlator.closed_criteria:
            self.correlator.check_late(msg)
        if self.taps:
            self._tap(msg)
        recipient = msg.recipient
        if recipient is not None and recipient not in self.mailboxes:
            # The common case, a reply to a caller that is not an agent, without a generator.
            routed = (
                () if routed == (recipient,) else tuple(r for r in routed if r in self.mailboxes)
            )
            if not collected and not self.transport.forward(msg):
                ledger.unrouted_letter(msg, f"unknown recipient {recipient!r}")
        elif not routed and not collected and not self.transport.forward(msg):
            ledger.unrouted_letter(msg, "no recipient and no subscriber")
        if obs is not None:
            obs.published(msg, len(routed))
        if holding:
            self.correlator.flush()
        return routed

    def _offer(self, msg: Message, corr: _Correlation, output: bool) -> tuple[bool, bool]:
        """Deliver ``msg`` to each matching waiter, admitted for the waiter's consumer: (some
        waiter took it or was refused it, a request waiter took it in its agent's place)."""
        collected = consumed = False
        ledger = self.ledger
        admission = self.admission
        limits = admission.limits
        free = not admission.policies and msg.hops <= limits.max_hops  # as in ``emit``
        for waiter in tuple(corr.waiters):
            if (waiter.consumes and not output) or not waiter.matches(msg):
                continue
            collected = True
            consumed = consumed or waiter.consumes
            if free and corr.deliveries < limits.correlation_budget:
                decision = Decision.ALLOW
            else:
                decision = admission.check(msg, waiter.consumer, corr)
            if decision.allowed:
                # ``Ledger.collect``, inlined: once per gathered reply
                ledger.delivered += 1
                ledger.handled += 1
                ledger.collected += 1
                corr.deliveries += 1
                waiter.offer(msg)
            else:
                ledger.deny(msg, waiter.consumer, corr, decision, notify=False)
                waiter.refused(
                    msg,
                    Missing(
                        waiter.consumer,
                        "denied",
                        decision.reason,
                        decision.policy,
                        msg.sender,
                        msg.id,
                    ),
                )
        return collected, consumed

    def _tap(self, msg: Message) -> None:
        for tap in self.taps:
            if self.admission.policies and not self.admission.evaluate(msg, tap.id, 0).allowed:
                self.ledger.taps_denied += 1
                continue
            try:
                tap.observe(msg)
            except Exception:
                self.ledger.tap_errors += 1
                _log.exception(
                    "tap %r failed on message %s", tap.id, msg.id, extra=fields(tap.id, msg)
                )

    def _deliver(self, msg: Message, rid: str, corr: _Correlation) -> None:
        self.ledger.opened(corr)
        self.transport.put(msg, rid)
        if self.ledger.observer is not None:
            self.ledger.observer.delivered(msg, rid)
