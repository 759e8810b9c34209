"""Fan-in by correlation id: gathers (N of M replies) and request/reply.

The correlator keeps, per correlation, how many deliveries are still in flight. A gather ends
when it has what it expects; when every expected sender has replied or is known lost (denied,
failed, shed); when nothing of the correlation is in flight any more (so no further reply can
come); or at its deadline. A failed branch never makes the caller wait for the deadline, and the
branches still working are waited for, so the partial result holds everything that could arrive.
"""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal

from .._base.backend import Backend, Event, any_backend
from .._base.clock import Clock, checked_timeout
from .._base.record import Record
from .._errors import (
    AgentError,
    DeliveryError,
    DeniedError,
    GenieError,
    InvalidArgumentError,
    RuntimeClosedError,
    described,
)
from .._message.envelope import Message

__all__ = [
    "CorrelatorStatistics",
    "Gather",
    "GatherResult",
    "Missing",
    "NoReplyError",
    "ReplyWatch",
    "checked_predicate",
]

MissingKind = Literal["denied", "failed", "shed", "no_route", "cancelled", "timed_out", "no_reply"]


class Missing(Record):
    """Why an expected reply is absent. ``key`` is the sender or type expected, or ``"reply"``."""

    key: str
    kind: MissingKind
    reason: str
    policy: str | None = None
    agent_id: str | None = None
    message_id: str | None = None


class NoReplyError(GenieError, LookupError):
    """``GatherResult.message`` read where the gather collected no reply; ``missing`` says
    why each expected reply is absent (as ``GatherResult.missing`` does). A ``LookupError``
    too, as it always was."""

    def __init__(self, correlation_id: str, missing: tuple[Missing, ...]) -> None:
        why = "; ".join(f"{m.key}: {m.kind}: {m.reason}" for m in missing) or "none"
        super().__init__(
            f"no reply for correlation {correlation_id} ({why})", correlation_id=correlation_id
        )
        self.missing = missing


class GatherResult(Record):
    """What a gather collected. ``status``: ``complete`` (expectation met), ``partial`` (the
    rest can no longer arrive) or ``timed_out``."""

    correlation_id: str
    status: Literal["complete", "partial", "timed_out"]
    replies: tuple[Message, ...]
    missing: tuple[Missing, ...]

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def message(self) -> Message:
        """The first reply; raises ``NoReplyError`` (a ``LookupError``) naming what is missing
        when there is none."""
        if not self.replies:
            raise NoReplyError(self.correlation_id, self.missing)
        return self.replies[0]


class CorrelatorStatistics(Record):
    correlations_active: int
    gathers_pending: int
    gathers_complete: int
    gathers_partial: int
    gathers_timed_out: int
    late_replies: int


def checked_predicate(predicate: Callable[[Message], bool], what: str) -> Callable[[Message], bool]:
    """``predicate`` (``what`` names it: ``rt.gather: where``), refused if it is an ``async
    def`` function: it is asked as each message is routed, which waits for nobody, and the
    coroutine it would return is no answer (truthy, so it would take any message)."""
    call: object = predicate
    if not inspect.iscoroutinefunction(call) and not inspect.isroutine(call):
        call = type(predicate).__call__  # an object's ``async def __call__`` is one too
    if inspect.iscoroutinefunction(call):
        raise InvalidArgumentError(
            f"{what}: {getattr(call, '__qualname__', 'the function')} is an async def "
            "function, and the predicate is asked as each message is routed, without "
            "awaiting: make it a plain def that returns a bool"
        )
    return predicate


class _Criteria:
    """What a gather matches replies by. The correlator remembers only this of a closed gather
    (not the gather, which holds every reply) to count late replies."""

    __slots__ = ("_due", "_senders", "_types", "_where")

    def __init__(
        self,
        senders: frozenset[str],
        types: frozenset[str],
        where: Callable[[Message], bool] | None,
        due: float | None = None,
    ) -> None:
        self._senders = senders
        self._types = types
        # The caller's predicate, whose answer is read as true or false: kept as answering
        # any object, so that a compiled build reads an awaitable it returns too (and refuses
        # it below) instead of raising a TypeError of its own first.
        self._where: Callable[[Message], object] | None = where
        # When the wait for what matches ends (a gather's deadline, on the runtime's clock):
        # from then on ``overdue`` decides. None: never (and nothing is read per message).
        self._due = due

    def matches(self, msg: Message) -> bool:
        # A gather collects what agents produce. A message with no cause is published from
        # outside: the request the gather was opened for, never one of its replies.
        if msg.causation_id is None:
            return False
        if self._senders and msg.sender not in self._senders:
            return False
        if self._types and msg.type not in self._types:
            return False
        if self._where is not None:
            try:
                matched = self._where(msg)
                if not matched:
                    return False
                if matched is not True and inspect.isawaitable(matched):
                    _refuse_awaitable(matched)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # the caller's predicate: its error is the caller's
                # Synchronous, so even a CancelledError out of it is its own bug, not a
                # cancellation.
                self.predicate_raised(exc)
                return False
        return self._due is None or not self.overdue()

    def overdue(self) -> bool:
        """The wait for a matching message is over (``_due`` has passed): it is not taken.
        Only a waiter with a deadline is asked."""
        return False

    def predicate_raised(self, error: BaseException) -> None:
        """``where`` raised on a message, which is then not matched: an ended gather's memory
        does not count it late."""


def _refuse_awaitable(answer: object) -> None:
    """A predicate answered with an awaitable (a callable that returns a coroutine): no
    answer, and an error of the caller's, as if the predicate had raised it."""
    if inspect.iscoroutine(answer):
        answer.close()  # never to be awaited: no warning of it when it is collected
    raise InvalidArgumentError(
        f"a gather's where= (an ask's until=) returned {type(answer).__name__}, an awaitable: "
        "the predicate is asked as each message is routed, without awaiting; make it a "
        "plain function that returns a bool"
    )


class _Waiter(_Criteria):
    """Something waiting on a correlation: a gather or a request.

    ``consumer`` is whom the waiter collects for: admission decides each offer under that id.
    A gather matches by its criteria (it is one); a request overrides ``matches``.
    """

    consumes = False  # a consumed reply is not routed to its recipient's mailbox
    # Told when a delivery of the correlation is handled (``on_handled``); matches only what
    # handlers return (a request's reply is an output).
    watches = False
    consumer = "user"

    def offer(self, msg: Message) -> None:
        raise NotImplementedError

    def refused(self, msg: Message, missing: Missing) -> None:
        """Admission denied ``msg`` to this waiter's consumer."""

    def on_failure(self, missing: Missing, message_id: str, recipient: str) -> None:
        pass

    def on_handled(self, message_id: str, agent_id: str) -> None:
        pass

    def on_quiescent(self) -> None:
        pass

    def close(self, reason: str) -> None:
        """The runtime is closing: stop waiting."""


class _Correlation:
    __slots__ = (
        "cancelled",
        "deliveries",
        "ended_here",
        "id",
        "in_flight",
        "on_release",
        "requests",
        "waiters",
    )

    def __init__(self, cid: str) -> None:
        self.id = cid
        self.in_flight = 0
        self.deliveries = 0  # counted against the correlation budget
        # Replaced, never changed in place: whoever walks it meanwhile keeps the one it read.
        self.waiters: tuple[_Waiter, ...] = ()
        self.requests = 0  # how many waiters watch for handled messages (a request's)
        self.cancelled = False
        # The fan-ins (declared gathers, workflows) that ended their session of it: a part
        # that comes while anything of the request is still in flight here opens no new one,
        # however many other requests ended meanwhile.
        self.ended_here: frozenset[str] = frozenset()
        # Told the id when the correlation ends (its model budget is forgotten with it).
        self.on_release: Callable[[str], None] | None = None


# The gathers closed and the requests given up on that a runtime remembers, to count what
# answers them afterwards as late.
LATE_MEMORY = 4096


class Correlator:
    """Owned by one runtime; see the module docstring."""

    def __init__(self, clock: Clock, late_memory: int = LATE_MEMORY) -> None:
        self._clock = clock
        # Read directly by the dispatcher and the runner; only the correlator adds and removes.
        self.active: dict[str, _Correlation] = {}
        # What recently closed gathers matched, so replies that arrive after them are counted
        # as late (the criteria only: a gather holds all its replies).
        self.closed_criteria: OrderedDict[str, _Criteria] = OrderedDict()
        # The ``ctx.request``s whose requester stopped waiting (timed out, cancelled) before
        # the answer came, by the request's id: the requester and who may answer. An answer
        # that comes later is late, as a closed gather's reply is, and is not put in the
        # requester's mailbox, which would take it for a message of its own.
        self.given_up: OrderedDict[str, tuple[str, frozenset[str]]] = OrderedDict()
        self._late_memory = late_memory
        self.pending = 0
        self.complete = 0
        self.partial = 0
        self.timed_out = 0
        self.late = 0
        self.on_gathered: Callable[[GatherResult], None] | None = None  # the runtime's observer
        self.backend: Backend = any_backend()  # the running loop's, once the runtime starts
        # Gathers that end while a message is being offered are reported after the runtime
        # reports that message, so an event stream reads published -> gathered.
        self._holding = False
        self.held: list[GatherResult] = []

    # --- bookkeeping called by the runtime -------------------------------------------------
    def get(self, cid: str) -> _Correlation:
        corr = self.active.get(cid)
        if corr is None:
            corr = self.active[cid] = _Correlation(cid)
        return corr

    def lookup(self, cid: str) -> _Correlation | None:
        return self.active.get(cid)

    def end_fan_in(self, cid: str, agent_id: str) -> None:
        """The fan-in ``agent_id`` ended its session of ``cid`` (see ``ended_here``); kept
        while the correlation is active here, forgotten with it."""
        corr = self.active.get(cid)
        if corr is not None:
            corr.ended_here |= {agent_id}

    def fan_in_ended(self, cid: str, agent_id: str) -> bool:
        """Whether the fan-in ``agent_id`` ended its session of ``cid`` while the correlation
        has been active here."""
        corr = self.active.get(cid)
        return corr is not None and agent_id in corr.ended_here

    def in_flight_here(self, cid: str, call: str) -> _Correlation:
        """The correlation a handler's ``call`` (a request, a timer) adds work to: one with a
        delivery in flight here. A context kept past its handler, whose request has ended, is
        refused: the correlation would start again, its delivery budget whole."""
        corr = self.active.get(cid)
        if corr is None:
            raise DeliveryError(
                f"{call} refused: correlation {cid} has ended here (no delivery of it is in "
                "flight): a context kept past its handler starts no more work in it"
            )
        return corr

    async def wait_until(self, event: Event, deadline: float) -> None:
        """Wait for ``event`` until ``deadline`` on the runtime's clock (``math.inf``: no
        limit). The loop's timer may end a wait before the clock reaches the deadline (uvloop
        counts whole milliseconds from its own clock): what is left is waited for again, so a
        wait never ends early and a reply made at the deadline's instant is in time."""
        if deadline == math.inf:  # no timer at all
            await event.wait()
            return
        wait_at_most = self.backend.wait_at_most
        clock = self._clock
        # Waited for once whatever is left, as a wait with no time left is a checkpoint still:
        # a caller cancelled meanwhile is cancelled here, and a handler asking again and again
        # with no time lets the loop run others.
        await wait_at_most(event, deadline - clock.monotonic())
        while not event.is_set() and (left := deadline - clock.monotonic()) > 0:
            await wait_at_most(event, left)

    def hold(self) -> None:
        """Gathers that end from now until ``flush`` are reported then (see ``held``)."""
        self._holding = True

    def flush(self) -> None:
        self._holding = False
        held, self.held = self.held, []
        for result in held:
            if self.on_gathered is not None:
                self.on_gathered(result)

    def check_late(self, msg: Message) -> bool:
        """Count ``msg`` if a closed gather of its correlation would have taken it (callers on
        the message path test ``closed_criteria`` first); whether it did."""
        criteria = self.closed_criteria.get(msg.correlation_id)
        if criteria is not None and criteria.matches(msg):
            self.late += 1
            return True
        return False

    def answered_late(self, msg: Message) -> bool:
        """Count ``msg``, a handler's output, if it answers a request its requester gave up
        on (callers on the message path test ``given_up`` first); whether it does."""
        given_up = self.given_up.get(msg.causation_id or "")
        if given_up is None:
            return False
        requester, responders = given_up
        if msg.recipient != requester or msg.sender not in responders:
            return False
        del self.given_up[msg.causation_id or ""]  # the first answer is the answer
        self.late += 1
        return True

    def gave_up(self, request: Message, responders: frozenset[str]) -> None:
        """``request``'s requester stopped waiting with no answer (see ``given_up``)."""
        given_up = self.given_up
        given_up[request.id] = (request.sender, responders)
        if len(given_up) > self._late_memory:
            given_up.popitem(last=False)

    def failed(self, corr: _Correlation, missing: Missing, message_id: str, recipient: str) -> None:
        for waiter in corr.waiters:
            waiter.on_failure(missing, message_id, recipient)

    def handled(self, corr: _Correlation, message_id: str, agent_id: str) -> None:
        for waiter in corr.waiters:
            waiter.on_handled(message_id, agent_id)

    def settle(self, corr: _Correlation) -> None:
        """Called when the correlation has nothing in flight."""
        for waiter in corr.waiters:
            waiter.on_quiescent()
        self.release(corr)

    def close_all(self, reason: str) -> None:
        for corr in list(self.active.values()):
            for waiter in corr.waiters:
                waiter.close(reason)

    def release(self, corr: _Correlation) -> None:
        if corr.in_flight == 0 and not corr.waiters and self.active.get(corr.id) is corr:
            del self.active[corr.id]
            on_release = corr.on_release
            if on_release is not None:
                corr.on_release = None
                on_release(corr.id)

    def remove(self, corr: _Correlation, waiter: _Waiter) -> None:
        if waiter in corr.waiters:
            corr.waiters = tuple(w for w in corr.waiters if w is not waiter)
            if waiter.watches:
                corr.requests -= 1
        self.release(corr)

    # --- public API ------------------------------------------------------------------------
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
        checked_timeout(timeout, "rt.gather")
        if where is not None:
            checked_predicate(where, "rt.gather: where")
        corr = self.get(correlation_id)
        try:
            gather = Gather(self, corr, count, senders, types, where, timeout)
        except InvalidArgumentError:
            self.release(corr)  # a gather refused keeps no correlation open
            raise
        gather.consumer = consumer
        self.pending += 1
        return gather

    def closed(self, gather: Gather, status: str) -> None:
        self.pending -= 1
        if status == "complete":
            self.complete += 1
        elif status == "partial":
            self.partial += 1
        else:
            self.timed_out += 1
        closed = self.closed_criteria
        closed[gather.correlation_id] = gather._criteria
        if len(closed) > self._late_memory:
            closed.popitem(last=False)
        if self.on_gathered is not None and gather._result is not None:
            if self._holding:
                self.held.append(gather._result)
            else:
                self.on_gathered(gather._result)

    def statistics(self) -> CorrelatorStatistics:
        return CorrelatorStatistics(
            correlations_active=len(self.active),
            gathers_pending=self.pending,
            gathers_complete=self.complete,
            gathers_partial=self.partial,
            gathers_timed_out=self.timed_out,
            late_replies=self.late,
        )


class Gather(_Waiter):
    """Collects replies of one correlation; ``await wait()`` for the ``GatherResult``.

    Replies are matched by ``types``, ``senders`` and ``where`` (all that are given). With
    ``senders`` (or ``types``) each sender (type) counts once and ``count`` defaults to all of
    them (N of M); otherwise ``count`` defaults to 1. Create the gather before publishing the
    request (``Runtime.ask`` does both); the correlation's quiescence only ends it once ``wait``
    has been called, so publishing several messages first is safe. Until then nothing ends it
    but ``cancel``: ``with rt.gather(...) as gather:`` cancels it as the block is left, so a
    publish that fails or is cancelled before the ``wait`` leaves no gather open.
    """

    def __init__(
        self,
        owner: Correlator,
        corr: _Correlation,
        count: int | None,
        senders: Iterable[str],
        types: Iterable[str],
        where: Callable[[Message], bool] | None,
        timeout: float | None,
    ) -> None:
        self._owner = owner
        self._corr = corr
        self.correlation_id = corr.id
        self._deadline = math.inf if timeout is None else owner._clock.monotonic() + timeout
        due = None if timeout is None else self._deadline
        _Criteria.__init__(self, frozenset(senders), frozenset(types), where, due)
        # What a closed gather's memory keeps: its criteria alone, not the gather and its
        # replies.
        self._criteria = _Criteria(self._senders, self._types, where)
        self._keys = sorted(self._senders or self._types)
        self._needed = count if count is not None else (len(self._keys) or 1)
        if self._needed < 1 or (self._keys and self._needed > len(self._keys)):
            bound = f"between 1 and {len(self._keys)}" if self._keys else "at least 1"
            raise InvalidArgumentError(f"gather: count must be {bound}, got {self._needed}")
        self._replies: dict[str, Message] = {}
        self._extra: list[Message] = []  # replies in count mode (no keys)
        self._lost: dict[str, Missing] = {}
        self._failures: list[Missing] = []
        self._armed = False
        self._done = owner.backend.new_event()
        self._result: GatherResult | None = None
        self._raised: BaseException | None = None  # what ``where`` raised, if it did
        corr.waiters += (self,)

    def _key(self, msg: Message) -> str:
        return msg.sender if self._senders else msg.type

    def _arrived(self) -> int:
        return len(self._replies) if self._keys else len(self._extra)

    @property
    def deadline(self) -> float:
        """When the gather ends timed out, on the runtime's clock (``inf``: never)."""
        return self._deadline

    def _now(self) -> float:
        return self._owner._clock.monotonic()

    def overdue(self) -> bool:
        # Read when something would end the gather, not only by the timer: a handler that held
        # the loop (CPU-bound, or a run of handlers that never await) keeps the timer from
        # firing, and what it made after the deadline is no answer to a wait that is over.
        if self._now() <= self._deadline:
            return False
        self._finish("timed_out")  # closed first: the reply is counted late, not taken
        return True

    def offer(self, msg: Message) -> None:
        if self._keys:
            key = self._key(msg)
            self._replies.setdefault(key, msg)
            if self._lost:
                self._lost.pop(key, None)  # an earlier reply of its type was denied: not missing
            arrived = len(self._replies)
        else:
            extra = self._extra
            extra.append(msg)
            arrived = len(extra)
        if arrived >= self._needed:
            self._finish("complete")

    def refused(self, msg: Message, missing: Missing) -> None:
        key = self._key(msg) if self._keys else "reply"
        lost = Missing(
            key, missing.kind, missing.reason, missing.policy, missing.agent_id, missing.message_id
        )
        if self._keys:
            if key not in self._replies and key not in self._lost:
                self._lost[key] = lost
        elif len(self._failures) < 64:
            self._failures.append(lost)
        # An expected sender's reply was denied: when every other sender has answered or is
        # lost too, nothing more can come, and the gather ends at once. By type or by count,
        # another reply may still stand in for it (a second branch, the same handler's next
        # output): the gather ends once nothing of the correlation is in flight.
        if self._senders and len(self._replies) + len(self._lost) == len(self._keys):
            self._finish("partial")

    def on_failure(self, missing: Missing, message_id: str, recipient: str) -> None:
        if self._senders and recipient in self._senders:
            if recipient not in self._replies and recipient not in self._lost:
                self._lost[recipient] = Missing(
                    recipient,
                    missing.kind,
                    missing.reason,
                    missing.policy,
                    missing.agent_id,
                    missing.message_id,
                )
                # Every expected sender has answered or is known lost: nothing more can come.
                if len(self._replies) + len(self._lost) == len(self._keys):
                    self._finish("partial")
        elif len(self._failures) < 64:
            self._failures.append(missing)

    def predicate_raised(self, error: BaseException) -> None:
        """The gather ends, and ``wait`` raises ``error``: the predicate is the caller's code,
        and its caller hears of its bug at once (the runtime goes on)."""
        if self._raised is None and self._result is None:
            self._raised = error
            if len(self._failures) < 64:
                reason = f"the gather's where= raised {described(error)}"
                self._failures.append(Missing("reply", "failed", reason))
            self._finish("partial")

    def on_quiescent(self) -> None:
        if self._armed:
            self._finish("complete" if self._arrived() >= self._needed else "partial")

    def _missing(self, kind: Literal["timed_out", "no_reply"]) -> tuple[Missing, ...]:
        out = list(self._lost.values())
        if self._keys:
            reason = "no reply before the deadline" if kind == "timed_out" else "no reply"
            out += [
                Missing(k, kind, reason)
                for k in self._keys
                if k not in self._replies and k not in self._lost
            ]
            out += self._failures
        else:
            short = self._needed - len(self._extra)
            out += self._failures
            if short > 0 and (kind == "timed_out" or not self._failures):
                reason = (
                    f"{short} of {self._needed} replies did not arrive before the deadline"
                    if kind == "timed_out"
                    else f"{short} of {self._needed} replies never came (nothing left in flight)"
                )
                out.append(Missing("reply", kind, reason))
        return tuple(out)

    def _finish(self, status: Literal["complete", "partial", "timed_out"]) -> None:
        if self._result is not None:
            return
        if status != "timed_out" and self._due is not None and self._now() > self._due:
            status = "timed_out"  # a loss or the end of the work, heard after the deadline
        replies = tuple(self._replies.values()) if self._keys else tuple(self._extra)
        missing = (
            ()
            if status == "complete" and not self._keys
            else self._missing("timed_out" if status == "timed_out" else "no_reply")
        )
        if status == "complete" and self._keys:
            missing = tuple(m for m in missing if m.kind != "no_reply")
        self._result = GatherResult(self.correlation_id, status, replies, missing)
        self._owner.remove(self._corr, self)
        self._owner.closed(self, status)
        self._done.set()

    async def wait(self) -> GatherResult:
        """Wait for the outcome (arms the gather: quiescence may now end it)."""
        self._armed = True
        if self._result is None and self._corr.in_flight == 0:
            self.on_quiescent()
        if self._result is None:
            await self._owner.wait_until(self._done, self._deadline)
        if self._raised is not None:
            raise self._raised
        # expire() reads the result anew: ``_finish`` set it while this waited, whatever the
        # test above narrowed it to.
        return self.expire()

    def __enter__(self) -> Gather:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving the block ends a gather that no ``wait`` ended (the caller's publish failed
        or was cancelled first): only ``wait`` arms its quiescence and its deadline, so it
        would hold its correlation open for as long as the runtime runs."""
        if self._result is None:
            self.cancel("the caller left without waiting")

    def expire(self) -> GatherResult:
        """End now as timed out (unless it has ended already); the result."""
        self._finish("timed_out")
        assert self._result is not None
        return self._result

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Stop waiting: the gather ends partial, with ``reason`` among what is missing."""
        if len(self._failures) < 64:
            self._failures.append(Missing("reply", "cancelled", reason))
        self._finish("partial")

    def close(self, reason: str) -> None:
        self.cancel(reason)


class RequestWaiter(_Waiter):
    """Waits for the reply to one request: the first message the responder's handler returns
    that is caused by the request and addressed to the requester. It is consumed (not put in
    the requester's mailbox); everything else the responder returns is routed as usual."""

    consumes = True
    watches = True

    def __init__(
        self,
        owner: Correlator,
        corr: _Correlation,
        request: Message,
        responders: frozenset[str],
    ) -> None:
        self._owner = owner
        self._corr = corr
        self._request = request
        # Who answers: the recipient, or the fallback its failed delivery is handed to. Other
        # subscribers of the request's type get it too; what they return or how they fare is
        # not the answer.
        self._responders = responders
        self.consumer = request.sender
        self._done = owner.backend.new_event()
        self.reply: Message | None = None
        self.error: Exception | None = None
        corr.waiters += (self,)
        corr.requests += 1

    def matches(self, msg: Message) -> bool:
        return (
            msg.causation_id == self._request.id
            and msg.recipient == self.consumer
            and msg.sender in self._responders
            and self.reply is None
            and self.error is None
        )

    def offer(self, msg: Message) -> None:
        if self.reply is None and self.error is None:
            self.reply = msg
            self._done.set()

    def _fail(self, error: Exception) -> None:
        if self.reply is None and self.error is None:
            self.error = error
            self._done.set()

    def refused(self, msg: Message, missing: Missing) -> None:
        self._fail(
            DeniedError(
                f"the reply {msg.type!r} to request {self._request.type!r} was denied to "
                f"{self.consumer!r} by {missing.policy}: {missing.reason}",
                policy=missing.policy or "",
                reason=missing.reason,
                message_id=msg.id,
                agent_id=self.consumer,
                correlation_id=msg.correlation_id,
            )
        )

    def on_failure(self, missing: Missing, message_id: str, recipient: str) -> None:
        # A handed-off delivery's loss is recorded for the agent that failed it first.
        if message_id != self._request.id or recipient != self._request.recipient:
            return
        ids = {
            "message_id": message_id,
            "agent_id": recipient,
            "correlation_id": self._request.correlation_id,
        }
        text = f"request {self._request.type!r} to {recipient!r}: {missing.reason}"
        if missing.kind == "denied":
            text = (  # names the policy, as every denial does
                f"request {self._request.type!r} to {recipient!r} denied by "
                f"{missing.policy}: {missing.reason}"
            )
            self._fail(DeniedError(text, policy=missing.policy or "", reason=missing.reason, **ids))
        elif missing.kind == "failed":
            self._fail(AgentError(text, **ids))
        else:
            self._fail(DeliveryError(text, **ids))

    def on_handled(self, message_id: str, agent_id: str) -> None:
        if message_id == self._request.id and agent_id in self._responders and self.reply is None:
            self._fail(
                AgentError(
                    f"request {self._request.type!r}: {self._request.recipient!r} handled it "
                    "without replying",
                    message_id=message_id,
                    agent_id=self._request.recipient,
                    correlation_id=self._request.correlation_id,
                )
            )

    def close(self, reason: str) -> None:
        self._fail(RuntimeClosedError(f"request {self._request.type!r}: {reason}"))

    async def wait(self, timeout: float | None) -> Message:
        owner = self._owner
        deadline = math.inf if timeout is None else owner._clock.monotonic() + timeout
        try:
            await owner.wait_until(self._done, deadline)
        finally:
            owner.remove(self._corr, self)
            if self.reply is None and self.error is None:  # timed out, or its caller cancelled
                owner.gave_up(self._request, self._responders)
        # The outcome, even when it came in the loop turn the deadline fell due: a reply taken
        # (collected, kept out of the requester's mailbox) is never dropped for a timeout.
        if self.error is not None:
            raise self.error
        if self.reply is None:
            raise TimeoutError(
                f"request {self._request.type!r} to {self._request.recipient!r}: no answer "
                f"within {timeout:g}s"
            )
        return self.reply


class _Watched:
    """One request ``ReplyWatch`` watches: who may answer it, and the replies its responders
    routed to its sender so far that were not lost on the way (``lost``: why the last lost
    one was)."""

    __slots__ = ("lost", "replies", "request", "responders")

    def __init__(self, request: Message, responders: frozenset[str]) -> None:
        self.request = request
        self.responders = responders
        self.replies: list[str] = []
        self.lost: tuple[str, Missing] | None = None  # the reply's type, why it was lost


class ReplyWatch(_Waiter):
    """Watches the requests agents sent in one correlation from their handlers' outputs, for
    agents that go on rather than wait (a workflow's steps): ``unanswered`` is told (the
    request, who handled it, how it went unanswered) the moment a request's responders (the
    recipient, or its fallback) handled it and no reply reached its sender: none was
    returned, or each was denied or shed on its way (``Runtime.watch_reply``).

    One per correlation, each request found by its id (a fan-out of watched requests costs
    each the same), a request watched twice watched once. It takes no message: it notes a
    reply as the reply is routed to the sender, before the handling that returned it ends,
    and forgets it if the sender's delivery of it is refused there. A request leaves once it is
    handled or lost; the watch leaves with its last request, or once nothing of the
    correlation is in flight (a request handled before: a run rebuilt after a restart
    watches what may have ended in an earlier process).

    A store keeps with each request that it is watched (``watching``): run again after a
    restart, it is watched from the start, and its sender told in the write that ends it,
    not only once its sender, rebuilding its run, watches it again."""

    watches = True

    def __init__(
        self,
        owner: Correlator,
        corr: _Correlation,
        unanswered: Callable[[Message, str, str], None],
    ) -> None:
        self._owner = owner
        self._corr = corr
        self._unanswered = unanswered
        self._watched: dict[str, _Watched] = {}  # by the request's id
        self._replies: dict[str, tuple[str, str]] = {}  # reply id: its request's id, its type
        corr.waiters += (self,)
        corr.requests += 1

    @staticmethod
    def of(owner: Correlator, corr: _Correlation) -> ReplyWatch | None:
        """The watch of ``corr``, if it has one."""
        for waiter in corr.waiters:
            if isinstance(waiter, ReplyWatch):
                return waiter
        return None

    def watch(self, request: Message, responders: frozenset[str]) -> None:
        if request.id not in self._watched:
            self._watched[request.id] = _Watched(request, responders)

    def watching(self, message_id: str) -> bool:
        """Whether the request ``message_id`` is watched (not yet handled or lost)."""
        return message_id in self._watched

    def matches(self, msg: Message) -> bool:
        cause = msg.causation_id
        watched = None if cause is None else self._watched.get(cause)
        if (
            watched is not None
            and msg.recipient == watched.request.sender
            and msg.sender in watched.responders
        ):
            watched.replies.append(msg.id)
            self._replies[msg.id] = (watched.request.id, msg.type)
        return False  # routed on to the sender as if nobody watched

    def on_handled(self, message_id: str, agent_id: str) -> None:
        watched = self._watched.get(message_id)
        if watched is None or agent_id not in watched.responders:
            return
        self._forget(watched)
        if watched.replies:
            return
        request = watched.request
        why = f"handled the {request.type} without replying"
        if watched.lost is not None:
            reply, missing = watched.lost
            how = f"denied by {missing.policy}" if missing.kind == "denied" else missing.kind
            why = f"handled the {request.type}, but its reply {reply!r} was {how}: {missing.reason}"
        self._unanswered(request, agent_id, why)

    def on_failure(self, missing: Missing, message_id: str, recipient: str) -> None:
        watched = self._watched.get(message_id)
        if watched is not None:
            if recipient == watched.request.recipient:
                self._forget(watched)  # its loss notice tells the sender
            return
        noted = self._replies.get(message_id)
        if noted is None:
            return
        watched = self._watched[noted[0]]
        if recipient == watched.request.sender:  # the reply, refused to the sender
            del self._replies[message_id]
            watched.replies.remove(message_id)
            watched.lost = (noted[1], missing)

    def _forget(self, watched: _Watched) -> None:
        del self._watched[watched.request.id]
        for reply in watched.replies:
            self._replies.pop(reply, None)
        if not self._watched:
            self._owner.remove(self._corr, self)

    def on_quiescent(self) -> None:
        self._watched.clear()
        self._replies.clear()
        self._owner.remove(self._corr, self)

    def close(self, reason: str) -> None:
        self.on_quiescent()
