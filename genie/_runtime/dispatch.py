"""The one routing path: every message, from outside or from a handler, goes ``route`` ->
admission for each consumer -> delivery.

``route`` names the consumers: the waiters of the correlation that match (gathers, asks, a
``ctx.request`` waiting for this very reply), the taps, and the agents (direct recipient and
subscribers). Each consumer is admitted under its own id and each delivery is recorded by the
ledger. Outside publishers wait for room (``publish``) or are refused before anything happens
(``publish_nowait``); handler outputs never wait, so cycles of agents cannot deadlock.

A handler is no outside publisher: inside a handler of this runtime (or a task it started)
``publish``, ``publish_nowait`` and ``ask`` are refused (``check_caller``), so every send of a
handler is one of its outputs, stamped with its correlation, causation and hops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Literal

import anyio

from .._base.log import lazy_logger
from .._errors import (
    ConfigurationError,
    DuplicateMessageError,
    NoRouteError,
    PublishFromHandlerError,
    UnknownMessageTypeError,
    UnknownRecipientError,
    WouldBlockError,
)
from .._message.envelope import Message
from .._message.types import MessageTypes
from .admission import Admission
from .correlator import Correlator, Missing, _Correlation
from .ledger import Ledger, fields
from .local.mailbox import Mailbox
from .router import Router, Tap
from .transport import KeptOnPublish, Transport

__all__ = ["HANDLING", "Dispatcher", "Published"]

_log = lazy_logger("genie.runtime")

# Why a message that a gather which has ended would have taken is a dead letter: it came after
# the wait for it was over (its deadline passed, or the caller stopped waiting).
_LATE = "late: the wait for it had ended"

# Whose handlers the running task works for: the dispatcher of their runtime, else None. The
# runner sets it for the tasks that run handlers (``DeliveryRunner.start`` and ``run``), and a
# task starts with a copy of its starter's value, so the tasks a handler starts work for it
# too. Each runtime compares it with itself alone: to another runtime, a handler is an
# outside caller.
HANDLING: ContextVar[Dispatcher | None] = ContextVar("genie_handling", default=None)

# How an outside publish that may wait for room ended: its message went in; the deadline came
# first and nothing was sent; or its request was cancelled (``rt.cancel``) while it waited, and
# the message went where a cancelled request's messages go (an ``unrouted`` dead letter).
Published = Literal["in", "timed_out", "cancelled"]

# The ids of the last messages taken from outside that a runtime remembers, to refuse one
# published again: an id is one message, and its recipients would get it twice.
SEEN_KEPT = 4096


class _RoomWait:
    """An outside publisher waiting for room. Nothing of its request is in flight yet for
    ``rt.cancel`` to stop: the cancel ends this wait instead (``cancel_waiting``)."""

    __slots__ = ("cancelled", "scope")

    def __init__(self, deadline: float) -> None:
        self.scope = anyio.CancelScope(deadline=deadline)
        self.cancelled = False


class Dispatcher:
    def __init__(
        self,
        types: MessageTypes,
        router: Router,
        mailboxes: Mapping[str, Mailbox],
        transport: Transport,
        admission: Admission,
        ledger: Ledger,
        correlator: Correlator,
        check_open: Callable[[], None],
    ) -> None:
        self.types = types
        self.router = router
        self.routes = router.table  # the router's answers, read on the routing path
        self.mailboxes = mailboxes  # the runtime's agents: who is a recipient in this process
        self.transport = transport
        # A transport that writes what it admits refuses what it could not write, first.
        self.check = transport.check if isinstance(transport, KeptOnPublish) else None
        self.admission = admission
        self.ledger = ledger
        self.correlator = correlator
        self.check_open = check_open
        self.taps: list[Tap] = []
        self.published = 0  # messages routed (each once, whoever it went to)
        # Set by the runtime when its observers take a publish's deliveries in one call
        # (``deliveries_listener``); else each is told to ``observer.delivered``.
        self.delivered_many: Callable[[Message, Sequence[str]], None] | None = None
        # The outside publishers waiting for room, by their message's correlation.
        self.waiting: dict[str, list[_RoomWait]] = {}
        # The ids of the last messages taken from outside, oldest first (``SEEN_KEPT``).
        self.seen: dict[str, None] = {}

    # --- from outside ------------------------------------------------------------------------
    async def publish(
        self, msg: Message, deadline: float = math.inf, verb: str = "publish"
    ) -> Published:
        """Wait for room if need be, then put the message in at once: "in". Cancelled while
        waiting, nothing happened; so too when the wait outlasts ``deadline`` (on the loop's
        clock): "timed_out". Its request cancelled while it waits (``cancel_waiting``), it goes
        where a cancelled request's messages go, taking no slot: "cancelled". (The caller adds
        the checkpoint, or waits right after.) ``verb``: the ``rt`` method its errors name."""
        routed, corr = self._validate(msg, verb)
        transport = self.transport
        # First a slot in every recipient's mailbox (first come, first served), then the
        # message goes in at once: route, admission and delivery do not wait.
        order = routed  # the agents of ``order[:held]`` hold a slot
        held = 0
        outcome: Published = "in"
        try:
            held = transport.hold(order, 0)  # the common case holds them all and never awaits
            if held < len(order):
                # A publisher waits holding the slots it has: two that took them in opposite
                # orders would wait for each other for good. Every waiting publisher takes
                # them in one order, its recipients' ids sorted, so none waits on another
                # that waits on it.
                self._release(order[:held])
                order, held = tuple(sorted(routed)), 0
                held = transport.hold(order, 0)
                # The deadline bounds only this wait: a publish with room has no scope to pay.
                wait = _RoomWait(deadline)
                self.waiting.setdefault(msg.correlation_id, []).append(wait)
                try:
                    with wait.scope:
                        while held < len(order):
                            await transport.wait_for_room(order[held])  # gives it back if cancelled
                            held = transport.hold(order, held + 1)
                finally:
                    self._stopped_waiting(msg.correlation_id, wait)
                    # The rest of the correlation may have settled meanwhile, and its record
                    # been let go: the message counts in the correlation as it is now.
                    corr = self.correlator.get(msg.correlation_id)
                if wait.cancelled:
                    # Whatever room it found meanwhile, its request is over: the slots go back,
                    # and the message goes where the request's later messages go.
                    self._release(order[:held])
                    order, held, routed, outcome = (), 0, (), "cancelled"
                    corr.cancelled = True
                elif held < len(order):  # the deadline came first: nothing was sent
                    self._release(order[:held])
                    self._released(corr)
                    return "timed_out"
            self.check_open()
            self._kept_check(msg)
            self._taken(msg, verb)
        except BaseException:
            self._release(order[:held])
            self._released(corr)
            raise
        try:
            self.route(msg, False, corr, routed, True)
        finally:
            self._released(corr)
        return outcome

    def _stopped_waiting(self, correlation_id: str, wait: _RoomWait) -> None:
        waits = self.waiting.get(correlation_id)
        if waits is not None and wait in waits:
            waits.remove(wait)
            if not waits:
                del self.waiting[correlation_id]

    def cancel_waiting(self, correlation_id: str) -> bool:
        """End the wait for room of the outside publishers of ``correlation_id`` (its request
        is cancelled): whether there were any."""
        waits = self.waiting.pop(correlation_id, None)
        if waits is None:
            return False
        for wait in waits:
            wait.cancelled = True
            wait.scope.cancel()
        return True

    def publish_nowait(self, msg: Message, verb: str = "publish_nowait") -> None:
        routed, corr = self._validate(msg, verb)
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
            # Every recipient has room: none is overdrawn or shed.
            self._kept_check(msg)
            self._taken(msg, verb)
            self.route(msg, False, corr, routed)
        finally:
            self._released(corr)

    def check_caller(self, verb: str, msg: Message) -> None:
        """Refuse ``rt.<verb>(msg)`` inside a handler of this runtime, before anything
        happens: its send would begin a request of its own (no hops, a budget of its own),
        and an awaited publish could wait for room only the handler's own worker can make."""
        if HANDLING.get() is self:
            raise PublishFromHandlerError(
                f"rt.{verb}() refused {msg.type!r}: it was called inside a handler of this "
                "runtime (or in a task the handler started), and a handler sends only its "
                "outputs, which carry its correlation, causation and hop count. Return the "
                "message from the handler (ctx.emit or ctx.reply builds it), or await "
                "ctx.request(...) for an answer",
                message_id=msg.id,
                agent_id=msg.recipient,
                correlation_id=msg.correlation_id,
            )

    def _validate(self, msg: Message, verb: str) -> tuple[tuple[str, ...], _Correlation]:
        """Check an outside publish; raises before any side effect."""
        routed = self.checked(msg, verb)
        return routed, self.correlator.get(msg.correlation_id)

    def _kept_check(self, msg: Message) -> None:
        """The keeping transport's check of an outside publish (a store's: not kept already,
        keepable), asked when nothing more is awaited before the message is routed: the
        transport knows it for one from outside until it keeps it."""
        if self.check is not None:
            self.check(msg)

    def _taken(self, msg: Message, verb: str) -> None:
        """Remember ``msg`` as taken from outside, as it goes in; raises if this runtime took
        a message of its id from outside meanwhile (another publish of it waited for room
        beside this one)."""
        seen = self.seen
        self._unseen(msg, verb)
        seen[msg.id] = None
        if len(seen) > SEEN_KEPT:
            del seen[next(iter(seen))]

    def _unseen(self, msg: Message, verb: str) -> None:
        """Raise if this runtime took a message of ``msg``'s id from outside lately."""
        if msg.id in self.seen:
            raise DuplicateMessageError(
                f"cannot {verb} {msg.type!r}: message {msg.id} was published to this runtime "
                "already, and a message is delivered once; rt.message(...) makes a new one",
                message_id=msg.id,
                agent_id=msg.recipient,
                correlation_id=msg.correlation_id,
            )

    def checked(self, msg: Message, verb: str) -> tuple[str, ...]:
        """The agents here that ``msg``, published from outside by ``rt.<verb>``, goes to;
        raises if it may not be published now, or if nobody can take it. An ask asks before
        its own gather opens, which cannot take its message, and before the policies prepare
        it: a message refused costs no classifier's call. A message this runtime took lately
        is refused here, before the store is asked (it knows what the process before left)."""
        self.check_caller(verb, msg)
        self.check_open()
        self._unseen(msg, verb)
        if not self.types.is_registered(msg.payload):
            if msg.type in self.types:
                raise ConfigurationError(
                    f"message type {msg.type!r} is registered to "
                    f"{self.types.get(msg.type).__qualname__}, not {type(msg.payload).__qualname__}"
                )
            raise UnknownMessageTypeError(msg.type, self.types.names())
        direct = msg.recipient
        # A message from outside may be a reply made outside (it has a cause) that a gather or
        # an ask of its correlation takes; nothing else can take it but an agent here. (A
        # ``ctx.request`` and a reply watch take only what handlers return.)
        waiting = self.correlator.lookup(msg.correlation_id)
        awaited = (
            waiting is not None
            and msg.causation_id is not None
            and any(not waiter.watches for waiter in waiting.waiters)
        )
        if direct is not None and direct not in self.mailboxes and not awaited:
            raise UnknownRecipientError(
                f"cannot publish {msg.type!r}: no agent {direct!r} in this runtime",
                message_id=msg.id,
                agent_id=direct,
                correlation_id=msg.correlation_id,
            )
        routed = self.router.recipients(msg.type, direct)
        if not routed and not awaited:
            raise NoRouteError(
                f"cannot publish {msg.type!r}: it has no recipient and no agent subscribes to it",
                message_id=msg.id,
                correlation_id=msg.correlation_id,
            )
        return routed

    def _release(self, held: Sequence[str]) -> None:
        """Give back the slots an outside publisher held for ``held`` (unused)."""
        for rid in held:
            if rid in self.mailboxes:
                self.transport.release(rid)

    def _released(self, corr: _Correlation) -> None:
        if corr.in_flight == 0 and self.ledger.observer is not None:
            self.ledger.observer.settled(corr.id)  # everything was denied or collected
        self.correlator.release(corr)

    # --- the path ----------------------------------------------------------------------------
    def route(
        self,
        msg: Message,
        output: bool = True,
        corr: _Correlation | None = None,
        routed: tuple[str, ...] | None = None,
        held: bool = False,
    ) -> None:
        """The one routing path of every message: count it, deliver it to the correlation's
        waiters that match (gathers, asks, a ``ctx.request`` waiting for this very reply) and
        to the taps, record it as unrouted if nobody takes it, then admit and queue it for
        each agent of ``routed`` (the router's recipients, looked up when None).

        ``output``: a handler returned ``msg`` (so it may answer a request). ``corr``: its
        correlation, if the caller holds it (a delivery's outputs share its input's). ``held``:
        an outside publish holds a slot in the mailbox of each agent of ``routed``; each slot
        is used or given back here, whatever happens. Otherwise nothing waits: a full mailbox
        is overdrawn (counted) or sheds, per its options, so cycles of agents cannot deadlock.
        """
        if corr is None:
            corr = self.correlator.active.get(msg.correlation_id) or self.correlator.get(
                msg.correlation_id
            )
        if routed is None:
            try:  # the router's answer, when it has given it before
                routed = self.routes[msg.recipient][msg.type]
            except KeyError:
                routed = self.router.recipients(msg.type, msg.recipient)
        agents = routed
        put = 0  # the agents of ``agents[:put]`` had their delivery queued or refused
        try:
            self.published += 1
            ledger = self.ledger
            obs = ledger.observer
            if corr.cancelled:
                if obs is not None:
                    obs.published(msg, 0)
                ledger.unrouted_letter(msg, "correlation cancelled")
                agents = ()
                return
            admission = self.admission
            waiters = corr.waiters
            # One question for everyone the message may reach; when its answer is no, each
            # delivery is asked alone.
            free = admission.admits_all(msg, corr, len(waiters) + len(agents))
            taken = 0  # waiters that took the message (or were refused it)
            holding = False
            if waiters:
                # Only an observer is told of gathers, so only for one is the order kept.
                holding = obs is not None and self.correlator.on_gathered is not None
                if holding:
                    self.correlator.hold()
                # A waiter that takes what it waits for leaves: ``corr.waiters`` is replaced then,
                # and this walk goes on over the tuple it read.
                # A waiter that watches a request takes only a handler's outputs as its reply
                # (a ``ctx.request`` asking the requester back is none).
                for waiter in waiters:
                    if (waiter.watches and not output) or not waiter.matches(msg):
                        continue
                    taken += 1
                    if waiter.consumes:
                        # The request's waiter takes (or is refused) the reply in its agent's
                        # place; subscribers of the type still get it.
                        agents = tuple(r for r in agents if r != msg.recipient)
                    decision = None if free else admission.check(msg, waiter.consumer, corr)
                    if decision is None or decision.allowed:
                        ledger.collect(corr)
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
            late = False
            if not taken:
                correlator = self.correlator
                if output and correlator.given_up and correlator.answered_late(msg):
                    # The answer to a request its requester gave up on: late, and not the
                    # requester's to handle (its waiter would have taken it).
                    late = True
                    agents = tuple(r for r in agents if r != msg.recipient)
                elif correlator.closed_criteria:
                    # Nobody waiting now took it: late, if a gather that ended would have.
                    late = correlator.check_late(msg)
            if free and admission.policies:
                admission.passed(taken + len(agents))  # each admitted by the one question
            if self.taps:
                self._tap(msg)
            if not taken:  # nobody here took it: another process may, or nobody can
                recipient = msg.recipient
                if recipient is not None and recipient not in self.mailboxes:
                    # A reply to a caller that is not an agent here (the router named only
                    # the subscribers of its type): only another process may take it.
                    if not self.transport.forward(msg):
                        ledger.unrouted_letter(
                            msg, _LATE if late else f"unknown recipient {recipient!r}"
                        )
                elif not agents and not self.transport.forward(msg):
                    ledger.unrouted_letter(msg, _LATE if late else "no recipient and no subscriber")
            if obs is not None:
                obs.published(msg, len(agents))
            if holding:
                self.correlator.flush()
            if not agents:
                return
            # Admit and queue the message for each agent.
            transport = self.transport
            batch = self.delivered_many
            if free and held and (batch is not None or obs is None):
                # Every recipient admitted at once, each in the slot held for it, and nobody
                # told of each as it goes: the whole fan-out is counted and queued in one call
                # each. Nothing runs between the puts (a handler starts at the next
                # checkpoint), so the counts read the same as when kept one by one.
                ledger.opened(corr, len(agents))
                transport.put_held(msg, agents)
                put = len(agents)
                if batch is not None:
                    batch(msg, agents)
                return
            # The recipients to tell the observers of at once, when they take them so.
            told: list[str] | None = [] if batch is not None else None
            for rid in agents:
                if not free:
                    decision = admission.check(msg, rid, corr)
                    if not decision.allowed:
                        if held:
                            transport.release(rid)
                        put += 1
                        ledger.deny(msg, rid, corr, decision)
                        continue
                if held:
                    ledger.opened(corr)
                    transport.put_held(msg, (rid,))
                else:
                    mb = self.mailboxes[rid]
                    if len(mb.queue) >= mb.capacity:
                        if mb.options.overflow == "shed":
                            put += 1
                            reason = (
                                f"mailbox of {rid!r} full ({mb.capacity}); overflow policy 'shed'"
                            )
                            ledger.shed_one(msg, rid, corr, reason)
                            continue
                        mb.overdrafts += 1
                    ledger.opened(corr)
                    transport.put(msg, rid)
                put += 1
                if told is not None:
                    told.append(rid)
                elif obs is not None:
                    obs.delivered(msg, rid)
            if told and batch is not None:
                batch(msg, told)
        finally:
            if held:
                # The slots nobody used: a waiter took the message in its agent's place, the
                # delivery was refused, or a call above raised.
                for rid in agents[put:]:
                    self.transport.release(rid)
                if agents is not routed:
                    kept = set(agents)
                    for rid in routed:
                        if rid not in kept and rid in self.mailboxes:
                            self.transport.release(rid)

    def route_alone(self, msg: Message) -> None:
        """Route ``msg``, which begins a correlation of its own (the runtime's notice of a
        cancellation): its record is let go once routed if none of its deliveries is in
        flight (each was denied or shed), as an outside publish's is."""
        corr = self.correlator.get(msg.correlation_id)
        try:
            self.route(msg, False, corr)
        finally:
            self._released(corr)

    def reply_arrived(self, reply: Message, corr: _Correlation) -> None:
        """A reply nobody received in the process that sent it, carried here: routed to this
        runtime's waiters and taps only (its agents had it where it was sent)."""
        self.route(reply, True, corr, ())

    def _tap(self, msg: Message) -> None:
        for tap in self.taps:
            if self.admission.policies and not self.admission.evaluate(msg, tap.id, 0).allowed:
                self.ledger.tap_denied()
                continue
            try:
                tap.observe(msg)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # synchronous: even a CancelledError is its own bug
                self.ledger.tap_failed()
                _log.exception(
                    "tap %r failed on message %s", tap.id, msg.id, extra=fields(tap.id, msg)
                )
