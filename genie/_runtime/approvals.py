"""Human in the loop: a request paused until a person approves or rejects a step.

A handler asks by emitting an ``ApprovalRequest`` (``ctx.emit(ApprovalRequest(...))``). The
runtime's approval desk, the agent ``approvals``, takes it and holds its correlation open while
the approval is pending. The hold is a timer, so ``ask`` and ``wait_idle`` wait for it as for
any work in flight. A person answers through ``Runtime.approvals``: the answer is a message from
that principal to the desk, governed like any other (the policies see it and may deny it). The
desk checks that the answerer may answer, records the decision in the audit log (who, what,
when) and sends an ``ApprovalDecision`` to the agent that asked. The first answer wins. Every
answer refused is recorded too, with who gave it, what it said and why it was refused: one
that comes after the decision as too late, one to an id the desk does not know as unknown. The
answer that decided, delivered to the desk again (a transport delivers at least once: on NATS,
an answer redelivered after its ack wait), is that answer, taken already: neither refused nor
recorded a second time; a refused answer delivered again is recorded once. An asker's
withdrawal that crosses the deciding answer on the way (the desk decided before it came) is
recorded after the decision, with that answer refused as too late: the asker never takes a
decision on an approval it withdrew. An approval can
carry a deadline: when it passes, the request is rejected, or escalated once to another role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from pydantic import Field

from .._agent.agent import BaseAgent, handler
from .._agent.context import Context, Timer
from .._base.clock import Clock
from .._base.record import Record
from .._base.surrogates import lone_surrogate
from .._errors import GenieError, InvalidArgumentError, WouldBlockError
from .._message.envelope import Message
from .._message.payload import Payload, Role
from .audit import AuditRecord, AuditSink
from .policy import Decision
from .transport import DESK

__all__ = [
    "DESK",
    "Approval",
    "ApprovalAnswer",
    "ApprovalDecision",
    "ApprovalDesk",
    "ApprovalNotPendingError",
    "ApprovalRefusedError",
    "ApprovalRequest",
    "ApprovalWithdrawn",
    "Approvals",
    "not_a_name",
]

FOREVER = 10 * 365 * 86400.0  # the hold of an approval without a deadline, in seconds
# Seconds an approval found past its deadline when the desk takes it (a start after the
# deadline passed) waits before the deadline decides: the answers given in time and left for
# it (genie approvals, looked for every quarter second) are taken first.
GRACE = 0.5


class ApprovalRequest(Payload):
    """What a handler emits to pause its request for a person. ``role`` (one of the answerer's
    ``user_roles``) or ``principal`` (the answerer's ``user_id``) says who may answer (neither:
    anyone). After ``deadline`` seconds unanswered it is rejected, or, with ``escalate_to``,
    offered once to that role for another ``deadline``; a negative deadline is refused, as a
    pipeline file's is."""

    message_type = "genie.approval_request"
    subject: str
    role: str | None = None
    principal: str | None = None
    # 0 is due when asked; a negative one was the same, and most likely a sign slip.
    deadline: float | None = Field(default=None, ge=0)
    escalate_to: str | None = None
    details: str = ""


class ApprovalAnswer(Payload):
    """A person's answer, sent to the desk (``Runtime.approvals`` builds it)."""

    message_type = "genie.approval_answer"
    approval_id: str
    approved: bool
    reason: str = ""


class ApprovalTimeout(Payload):
    """The desk's own timer: the approval's deadline passed."""

    message_type = "genie.approval_timeout"
    approval_id: str
    round: int


class ApprovalWithdrawn(Payload):
    """The agent that asked no longer needs the answer (a workflow failed while its approval
    step waited): the desk forgets the approval and answers its agent ``rejected`` by
    ``withdrawn``."""

    message_type = "genie.approval_withdrawn"
    approval_id: str
    reason: str


class ApprovalDecision(Payload):
    """The decision, sent to the agent that asked: ``by`` is the principal who answered, or
    ``deadline`` when nobody did in time; ``details`` are the request's, so an agent can go on
    from the decision alone (its own memory may not have survived a restart)."""

    message_type = "genie.approval_decision"
    approval_id: str
    approved: bool
    by: str
    reason: str = ""
    details: str = ""

    def said(self) -> str:
        """The decision in words: ``approved by tina: invoice checked``; withdrawn by the
        agent that asked, ``withdrawn: WHY`` (no person, nor anyone called ``withdrawn``,
        rejected it: the desk audits it ``withdrawn``)."""
        if self.by == "withdrawn" and not self.approved:
            return f"withdrawn: {self.reason}" if self.reason else "withdrawn"
        verdict = "approved" if self.approved else "rejected"
        return (
            f"{verdict} by {self.by}: {self.reason}" if self.reason else f"{verdict} by {self.by}"
        )


class Approval(Record):
    """A pending approval as ``Runtime.approvals.pending()`` lists it. ``id`` is the id of its
    request message; ``agent_id`` asked for it; ``role``/``principal`` may answer it now
    (after an escalation, the role escalated to); ``deadline_at`` is a runtime clock time."""

    id: str
    correlation_id: str
    agent_id: str
    subject: str
    role: str | None
    principal: str | None
    deadline_at: float | None
    escalated: bool
    details: str


# Why an answer was refused for its approval's id (the audit's reason): it came after the
# approval was decided, or the desk does not know the id (never asked here, the request
# cancelled, or decided longer ago than the desk remembers).
TOO_LATE = "too late: it was decided already"
PAST_DEADLINE = "it came after the deadline"
UNKNOWN = "unknown: never asked here, or forgotten"
# Why an answer that decided an approval is refused after all: its asker had withdrawn the
# approval, and the withdrawal reached the desk after the answer.
CROSSED = "too late: its agent withdrew the approval as the answer came"
DECIDED_KEPT = 1000  # the approvals decided last that the desk remembers, for late answers
# Why the desk records an approval resumed: the request was asked before a restart, and the
# store kept it pending (its deadline still counts from the asking).
RESUMED = "kept pending across a restart"
# Its action: news of the start that took the approval up again, one row at each start.
RESUMED_ACTION = "approval_resumed"


class ApprovalRefusedError(GenieError):
    """An answer refused: no such pending approval, or the answerer may not answer it."""


class ApprovalNotPendingError(ApprovalRefusedError):
    """An answer refused for its id: the approval was decided already, or is unknown."""


class _Pending:
    __slots__ = ("approval", "overdue", "request", "round", "timer")

    def __init__(self, approval: Approval, request: Message, timer: Timer) -> None:
        self.approval = approval
        self.request = request
        self.timer = timer
        self.round = 0
        # Its round's deadline passed already (taken up after a restart, its timer waits the
        # grace for answers left in time): an answer given now is late.
        self.overdue = False


class ApprovalDesk(BaseAgent):
    """The runtime's agent ``approvals``: holds each pending approval and decides it."""

    produces = (ApprovalDecision, ApprovalTimeout)

    def __init__(self, clock: Clock, audit: AuditSink) -> None:
        super().__init__(DESK)
        self.clock = clock
        self.audit = audit
        self.pending: dict[str, _Pending] = {}
        # The answers ``Approvals`` sent, by id, with the approval each answers: an answer an
        # agent made up is ignored.
        self.issued: dict[str, str] = {}
        # The approvals decided last, oldest first, with their decisions and the id of the
        # answer message that decided each ("": the deadline, or the asker withdrawing): what
        # an answer that comes after the decision is recorded against, as too late, and told,
        # and how the deciding answer delivered again is known as the one taken already.
        self._decided: dict[str, _Decided] = {}
        # Why the desk refused the answers sent to it, by answer message id, the last
        # DECIDED_KEPT: what the transport tells the person who left the answer, and how a
        # refused answer delivered again is known as refused already.
        self._refused: dict[str, str] = {}
        # Whether the desk of a process before this one took the approval of this id and
        # recorded it asked, and the round it reached there (1: escalated), or None: a store
        # that keeps approvals across restarts says (``Keeper.asked_before``), so that the
        # desk taking it up again records it resumed, not asked (or escalated) twice.
        self.asked_before: Callable[[str], int | None] = _never

    def audit_to(self, sink: AuditSink) -> None:
        """Record the desk's decisions in ``sink`` (``AuditsItself``)."""
        self.audit = sink

    def keeps(self, correlation_id: str) -> bool:
        """Whether an approval of ``correlation_id`` is pending here: on NATS, a worker
        hosting the desk keeps what it took of that correlation until none is, so that a
        worker started after a kill rebuilds the pending approvals (docs/durability.md)."""
        return any(p.approval.correlation_id == correlation_id for p in self.pending.values())

    @handler
    async def on_request(self, payload: ApprovalRequest, ctx: Context) -> None:
        msg = ctx.message
        if msg.id in self.pending:
            return  # a resumed request asked again: it is pending already
        round_before = self.asked_before(msg.id)
        # Escalated before a restart: taken up escalated, for what is left of its second
        # deadline, not offered to the first role again nor escalated a second time.
        escalated = bool(round_before) and payload.escalate_to is not None
        rounds = 2 if escalated else 1
        left = self._left(msg, payload.deadline, rounds)
        overdue = payload.deadline is not None and left == 0.0
        # Past its deadline already: answers left in the store in time come first.
        delay = GRACE if overdue else left
        timer = ctx.schedule(delay, ApprovalTimeout(approval_id=msg.id, round=rounds - 1))
        approval = Approval(
            msg.id,
            msg.correlation_id,
            msg.sender,
            payload.subject,
            payload.escalate_to if escalated else payload.role,
            None if escalated else payload.principal,
            None if payload.deadline is None else self.clock.monotonic() + left,
            escalated,
            payload.details,
        )
        pending = self.pending[msg.id] = _Pending(approval, msg, timer)
        pending.round = rounds - 1
        pending.overdue = overdue
        if round_before is not None:
            self._record(DESK, RESUMED_ACTION, approval, RESUMED)
        else:
            self._record(msg.sender, "approval_requested", approval, payload.subject)

    @handler
    async def on_answer(self, payload: ApprovalAnswer, ctx: Context) -> Message | None:
        if self.issued.pop(ctx.message.id, None) is None:
            return None  # not a person's answer: an agent's output, or a replay
        approval_id, approved = payload.approval_id, payload.approved
        pending = self.pending.get(approval_id)
        by = ctx.message.sender
        if pending is None and self._decided_by(approval_id, ctx.message):
            return None  # the answer that decided it, delivered again: taken already
        if ctx.message.id in self._refused:
            return None  # refused, then delivered again: the refusal stands, recorded once
        if pending is None:  # pending when it was sent: decided since, the first answer won
            self._keep_refusal(
                ctx.message.id, self.refuse_not_pending(by, approval_id, approved, ctx.message)
            )
            return None
        refusal = may_answer(pending.approval, by, roles_of(ctx.message.metadata))
        if refusal is not None:  # checked before it was sent; the policies may differ
            self._keep_refusal(
                ctx.message.id, self.refuse_answerer(by, approval_id, approved, refusal)
            )
            return None
        return self._decide(pending, ctx, approved, by, payload.reason)

    @handler
    async def on_withdrawn(self, payload: ApprovalWithdrawn, ctx: Context) -> Message | None:
        pending = self.pending.get(payload.approval_id)
        if pending is None:
            self._crossed(payload, ctx.message.sender)
            return None
        if pending.approval.agent_id != ctx.message.sender:
            return None  # not the asker's to withdraw
        return self._decide(pending, ctx, False, "withdrawn", payload.reason)

    def _crossed(self, withdrawn: ApprovalWithdrawn, sender: str) -> None:
        """The asker withdrew an approval the desk decided meanwhile: the decision and the
        withdrawal crossed on their way, and the asker, which waited for no answer since it
        sent this, does not take the decision. The audit says so after the decision it
        recorded: the approval ended withdrawn, and a person's answer that decided it came
        too late (``CROSSED``), as it is when the withdrawal reaches the desk first."""
        kept = self._decided.get(withdrawn.approval_id)
        if kept is None:
            return  # never asked here, or decided longer ago than the desk remembers
        approval, decision, answer_id = kept.approval, kept.decision, kept.answer_id
        if approval.agent_id != sender or decision.by == "withdrawn":
            return  # not the asker's, or withdrawn already (this delivered again)
        self._record("withdrawn", "withdrawn", approval, withdrawn.reason)
        withdrawal = ApprovalDecision(
            approval_id=approval.id,
            approved=False,
            by="withdrawn",
            reason=withdrawn.reason,
            details=approval.details,
        )
        crossed = decision if answer_id else None  # a person's answer decided it, not the deadline
        self._decided[approval.id] = _Decided(approval, withdrawal, "", crossed)
        if crossed is not None:
            why = _not_taken(crossed)
            self.refuse(crossed.by, approval.id, crossed.approved, why)
            self._keep_refusal(answer_id, why)

    @handler
    async def on_timeout(self, payload: ApprovalTimeout, ctx: Context) -> Message | None:
        pending = self.pending.get(payload.approval_id)
        if pending is None or pending.round != payload.round:
            return None
        request = pending.request.payload
        assert isinstance(request, ApprovalRequest)
        if request.escalate_to is not None and not pending.approval.escalated:
            pending.round += 1
            # Another deadline from the first's end, not from now: a restart in between
            # (which fired the first at once) does not extend it. A deadline of 0 is one
            # too (passed at once), not none.
            delay = self._left(pending.request, request.deadline, 2)
            pending.overdue = delay == 0.0
            pending.timer = ctx.schedule(
                delay, ApprovalTimeout(approval_id=payload.approval_id, round=pending.round)
            )
            pending.approval = pending.approval.replace(
                role=request.escalate_to,
                principal=None,
                escalated=True,
                deadline_at=self.clock.monotonic() + delay,
            )
            self._record("deadline", "approval_escalated", pending.approval, request.escalate_to)
            return None
        return self._decide(pending, ctx, False, "deadline", "nobody answered in time")

    def refuse(
        self,
        by: str,
        approval_id: str,
        approved: bool,
        why: str | None = None,
        answer: Message | None = None,
    ) -> str:
        """Record ``by``'s answer (``approved``) to ``approval_id`` as refused, ``why``; without
        a why, it is refused for the id alone: too late when the approval is known decided
        here, else unknown. The why recorded. ``answer``: the answer's message, whose
        correlation is its approval's."""
        approval = self.pending[approval_id].approval if approval_id in self.pending else None
        if approval is None and approval_id in self._decided:
            approval = self._decided[approval_id].approval
        if why is None:
            why = UNKNOWN if approval is None else TOO_LATE
        if approval is None:
            cid = "" if answer is None else answer.correlation_id
            approval = Approval(approval_id, cid, "", "", None, None, None, False, "")
            if why != UNKNOWN:  # an approval there was (a worker started after its decision)
                why += " (its agent and subject are not known here)"
        self._record(
            by, "approval_refused", approval, why, answer="approve" if approved else "reject"
        )
        return why

    def refuse_not_pending(
        self, by: str, approval_id: str, approved: bool, answer: Message | None = None
    ) -> str:
        """Refuse (and audit) ``by``'s answer to ``approval_id``, which is not pending here;
        the refusal as every door says it: ``no pending approval 'ID' (decided already:
        approved by tina)`` when the desk remembers deciding it, else why it was refused
        (``unknown: never asked here, or forgotten``). ``answer``: the answer's message, sent
        while the approval was pending, so decided since (perhaps by another process)."""
        why = self.refuse(by, approval_id, approved, None if answer is None else TOO_LATE, answer)
        decision = self.decided(approval_id)
        if decision is not None:
            why = f"decided already: {decision.said()}"
        return f"no pending approval {approval_id!r} ({why})"

    def decided(self, approval_id: str) -> ApprovalDecision | None:
        """The decision on ``approval_id``, if it is one of the approvals decided last here."""
        return self._decided[approval_id].decision if approval_id in self._decided else None

    def told(self, approval_id: str, by: str, approved: bool) -> str | None:
        """What a person is told of ``by``'s answer ``approved`` to ``approval_id``, which
        the desk decided: ``approved`` or ``rejected`` when that answer decided it, ``refused:
        too late: ...`` when it did but its asker's withdrawal crossed it (not taken), else
        ``decided already: ...`` with the decision made first. None: the desk has not decided
        it, or decided it longer ago than it remembers."""
        kept = self._decided.get(approval_id)
        if kept is None:
            return None
        if kept.crossed is not None and (by, approved) == (kept.crossed.by, kept.crossed.approved):
            return f"refused: {_not_taken(kept.crossed)}"
        decision = kept.decision
        if (by, approved) == (decision.by, decision.approved):
            return "approved" if approved else "rejected"
        return f"decided already: {decision.said()}"

    def _decided_by(self, approval_id: str, answer: Message) -> bool:
        """Whether ``answer`` is the answer message that decided ``approval_id`` here: the
        same message (its id), from the same person, saying the same."""
        if approval_id not in self._decided:
            return False
        kept = self._decided[approval_id]
        decision, answer_id = kept.decision, kept.answer_id
        said = answer.payload
        return (
            answer.id == answer_id
            and isinstance(said, ApprovalAnswer)
            and (answer.sender, said.approved) == (decision.by, decision.approved)
        )

    def refuse_answerer(self, by: str, approval_id: str, approved: bool, refusal: str) -> str:
        """Refuse (and audit) the answer of ``by``, who may not answer ``approval_id``
        (``refusal``: why not); the refusal in words."""
        self.refuse(by, approval_id, approved, refusal)
        return f"{by} may not answer approval {approval_id}: {refusal}"

    def refusal_of(self, answer_id: str) -> str | None:
        """Why the desk refused the answer message ``answer_id`` it was sent (None: it did
        not, or it is longer ago than the desk remembers)."""
        return self._refused.get(answer_id)

    def _keep_refusal(self, answer_id: str, refusal: str) -> None:
        self._refused[answer_id] = refusal
        if len(self._refused) > DECIDED_KEPT:
            del self._refused[next(iter(self._refused))]

    def _left(self, asked: Message, deadline: float | None, rounds: int) -> float:
        """What is left of the last of ``rounds`` deadlines counted from when ``asked`` was
        asked (a restart in between does not extend it), and never more than one deadline
        (a clock set back since would read the asking as still to come); FOREVER: none."""
        if deadline is None:
            return FOREVER
        return max(0.0, min(deadline, self.clock.left(asked.created_at, rounds * deadline)))

    def _decide(
        self, pending: _Pending, ctx: Context, approved: bool, by: str, reason: str
    ) -> Message:
        del self.pending[pending.approval.id]
        if by != "deadline":
            pending.timer.cancel()
        action = "approved" if approved else "withdrawn" if by == "withdrawn" else "rejected"
        self._record(by, action, pending.approval, reason)
        decision = ApprovalDecision(
            approval_id=pending.approval.id,
            approved=approved,
            by=by,
            reason=reason,
            details=pending.approval.details,
        )
        # The answer that decided, if a person's did (the deadline's or a withdrawal's
        # message is not an answer, and never sent to the desk again as one).
        answer_id = ctx.message.id if ctx.message.type == ApprovalAnswer.message_type else ""
        self._decided[pending.approval.id] = _Decided(pending.approval, decision, answer_id)
        if len(self._decided) > DECIDED_KEPT:
            del self._decided[next(iter(self._decided))]
        # The request goes on as its requester's: the answerer is named in the decision, and
        # the policies judge the rest of the request by the identity it began with.
        identity = dict(pending.request.metadata)
        return ctx.emit(decision, recipient=pending.approval.agent_id, metadata=identity)

    def _record(
        self, actor: str, action: str, approval: Approval, reason: str, answer: str = ""
    ) -> None:
        details = {
            "approval_id": approval.id,
            "correlation_id": approval.correlation_id,
            "agent": approval.agent_id,
            "subject": approval.subject,
            "reason": reason,
        }
        if answer:  # a refused answer: what it said (an answer that decided is its action)
            details["answer"] = answer
        self.audit.record(AuditRecord(self.clock.now(), actor, action, approval.id, details))


@dataclass(frozen=True, slots=True)
class _Decided:
    """An approval the desk decided, as it remembers it for the answers after."""

    approval: Approval
    decision: ApprovalDecision
    # The answer message that decided it ("": the deadline, or the asker withdrawing).
    answer_id: str
    # A person's decision the asker's withdrawal crossed: taken by the desk, never by the
    # asker (``decision`` is then the withdrawal).
    crossed: ApprovalDecision | None = None


def _not_taken(crossed: ApprovalDecision) -> str:
    """Why the answer that decided ``crossed`` is refused after all: the withdrawal crossed it."""
    return f"{CROSSED} ({crossed.said()}, not taken)"


def _never(approval_id: str) -> int | None:
    return None  # without a store, every approval the desk takes is asked here


def rounds_reached(taken: Iterable[Message]) -> dict[str, int]:
    """The round (0; 1: escalated) each approval reached at a desk that took ``taken``, the
    deliveries it kept of its pending approvals, in the order it took them: what
    ``Keeper.asked_before`` says of them to the desk that takes them up again. A first
    deadline taken while the approval was pending escalated it (a decided approval is
    kept no more)."""
    rounds: dict[str, int] = {}
    for msg in taken:
        payload = msg.payload
        if isinstance(payload, ApprovalRequest):
            rounds.setdefault(msg.id, 0)
        elif (
            isinstance(payload, ApprovalTimeout)
            and payload.round == 0
            and rounds.get(payload.approval_id) == 0
        ):
            rounds[payload.approval_id] = 1
    return rounds


def roles_of(metadata: Mapping[str, object]) -> tuple[str, ...]:
    """The answerer's roles: ``user_roles`` as a list or a comma-separated string."""
    roles = metadata.get("user_roles")
    if isinstance(roles, str):
        return tuple(r.strip() for r in roles.split(",") if r.strip())
    if isinstance(roles, tuple | list):
        return tuple(str(r) for r in roles)
    return ()


def _arguments(verb: str, approval_id: object, by: object, roles: object, reason: object) -> None:
    """Refuse an answer's argument of a type no answer carries, naming it. A str given as
    ``roles`` above all: ``role in roles`` would read as a substring, so ``roles="sysadmin"``
    would pass the check for ``admin`` here, and the answer be sent, only to be refused unseen
    by the desk, which reads the string as a comma-separated list."""
    for name, value in (("approval_id", approval_id), ("by", by), ("reason", reason)):
        if not isinstance(value, str):
            raise InvalidArgumentError(
                f"rt.approvals.{verb}(): {name} is a str, not {type(value).__qualname__}"
            )
    if not isinstance(roles, tuple | list):
        given: str | None = f"a {type(roles).__qualname__}"
    else:
        odd = [type(r).__qualname__ for r in roles if not isinstance(r, str)]
        given = f"a {type(roles).__qualname__} holding a {odd[0]}" if odd else None
    if given is not None:
        raise InvalidArgumentError(
            f"rt.approvals.{verb}(): roles is a tuple of role names (roles=('treasurer',)), "
            f"not {given}"
        )
    texts = [("approval_id", approval_id), ("by", by), ("reason", reason)]
    for name, text in [*texts, *(("roles", r) for r in cast(Iterable[object], roles))]:
        assert isinstance(text, str)  # checked above
        if (at := lone_surrogate(text)) is not None:
            # Sent, it would reach the audit log and a store's rows, which cannot hold it.
            raise InvalidArgumentError(
                f"rt.approvals.{verb}(): {name} is not valid text (a lone surrogate at {at})"
            )


RESERVED = ("deadline", "withdrawn", "genie")
"""Who decides when no person does (the deadline, the asker withdrawing, the runtime): never
an answerer's name, so a decision's ``by`` and the audit's actor cannot be forged."""


def may_answer(approval: Approval, principal: str, roles: tuple[str, ...]) -> str | None:
    """Why ``principal`` with ``roles`` may not answer ``approval`` (None: they may)."""
    # Blank, spaced, with a line break or a terminal's escape in it, or the desk's own word
    # in another case: a name that would read as something it is not where it is shown.
    if (
        not principal
        or principal != principal.strip()
        or not principal.isprintable()
        or principal.lower() in RESERVED
    ):
        return f"{principal!r} is not a person's name"
    if approval.principal is not None and principal != approval.principal:
        return f"only {approval.principal} may answer it"
    if approval.role is not None and approval.role not in roles:
        return f"it needs the role {approval.role!r}, which {principal} does not hold"
    return None


def not_a_name(principal: str) -> str | None:
    """Why ``principal`` may answer no approval at all (blank, spaced, unprintable, the
    desk's own word), by the desk's own rule; None when it is a name."""
    anyone = Approval("", "", "", "", None, None, None, False, "")
    return may_answer(anyone, principal, ())


class Approvals:
    """A runtime's pending approvals, and the answers people give (``Runtime.approvals``)."""

    def __init__(
        self,
        desk: ApprovalDesk,
        publish: Callable[[Message], Decision | None],
        new_id: Callable[[], str],
        clock: Clock,
        live: Callable[[str], bool],
    ) -> None:
        self._desk = desk
        self._publish = publish  # sends an answer; the decision that kept it from the desk
        self._new_id = new_id
        self._clock = clock
        self._live = live  # whether a correlation is still in flight, not cancelled

    def pending(self) -> list[Approval]:
        """The approvals waiting for a person, oldest first (an approval whose request was
        cancelled, or timed out without a store to keep it, is forgotten)."""
        desk = self._desk
        gone = {a for a, p in desk.pending.items() if not self._live(p.request.correlation_id)}
        for approval_id in gone:
            del desk.pending[approval_id]
        if gone:  # with the answers given to them the desk will never take (cancelled on the way)
            desk.issued = {k: a for k, a in desk.issued.items() if a not in gone}
        return [p.approval for p in desk.pending.values()]

    def knows(self, approval_id: str) -> bool:
        """Whether ``approval_id`` is pending here, or one of the approvals the desk decided
        last (its answer is refused as decided already, not as unknown)."""
        return approval_id in self._desk.pending or self._desk.decided(approval_id) is not None

    def answer_left(
        self,
        approval_id: str,
        approved: bool,
        by: str,
        roles: tuple[str, ...],
        reason: str,
        given_at: float | None = None,
        kept: bool = False,
    ) -> Message | str | None:
        """An answer another process left in the store (``genie approvals``), ``given_at``
        (seconds since the epoch): the answer message sent to the desk (what became of it is
        the desk's decision), ``refused: WHY``, or None while its approval is not pending
        here but ``kept`` by the transport (its request not resumed yet). One to an approval
        neither pending nor kept (decided since, or unknown here) is refused, and audited, as
        ``approve`` of it is. One given after the approval's last deadline is refused: left
        while no process held the request, it is taken after the deadline passed, and the
        deadline decides. One taken before the deadline by this runtime's clock was given in
        time, whatever ``given_at`` (the answering host's clock) says."""
        pending = self._desk.pending.get(approval_id)
        if pending is None:
            if kept:
                return None
            return f"refused: {self._desk.refuse_not_pending(by, approval_id, approved)}"
        request = pending.request.payload
        assert isinstance(request, ApprovalRequest)
        if given_at is not None and request.deadline is not None:
            # The deadline of the round it answers: the first role's ends with the first.
            ends = pending.request.created_at.timestamp() + (pending.round + 1) * request.deadline
            # Taken before the deadline by the desk's own clock, it was given in time,
            # whatever the answering host's clock says: that one is read only for an answer
            # taken after the deadline (left while no process held the request).
            if min(given_at, self._clock.now().timestamp()) > ends:
                self._desk.refuse(by, approval_id, approved, PAST_DEADLINE)
                return f"refused: the answer came after approval {approval_id}'s deadline"
        try:
            return self._answer(approval_id, approved, by, roles, reason, in_time=True)
        except (ApprovalRefusedError, InvalidArgumentError) as refused:  # text no row holds
            return f"refused: {refused}"
        except WouldBlockError:
            return None  # the desk's mailbox is full: taken at a later look

    def approve(
        self, approval_id: str, *, by: str, roles: tuple[str, ...] = (), reason: str = ""
    ) -> Message:
        """Answer yes as the principal ``by`` holding ``roles`` (the server's or the CLI's word
        for who is asking); the answer message sent. Raises ``ApprovalRefusedError`` when there
        is no such pending approval (``ApprovalNotPendingError``: decided already, or unknown)
        or ``by`` may not answer it: audited either way, with ``by``, the answer and why; and
        when a policy denies the answer to the desk (audited ``denied``), which then was not
        given: the approval is still pending."""
        return self._answer(approval_id, True, by, roles, reason)

    def reject(
        self, approval_id: str, *, by: str, roles: tuple[str, ...] = (), reason: str = ""
    ) -> Message:
        """Answer no (see ``approve``)."""
        return self._answer(approval_id, False, by, roles, reason)

    def _answer(
        self,
        approval_id: str,
        approved: bool,
        by: str,
        roles: tuple[str, ...],
        reason: str,
        in_time: bool = False,
    ) -> Message:
        """Send ``by``'s answer to the desk. ``in_time``: it was given before its deadline (one
        left in the store: ``answer_left``); else it is given now, and refused once the
        deadline of the approval's round has passed."""
        _arguments("approve" if approved else "reject", approval_id, by, roles, reason)
        self.pending()  # forgets those whose request is gone
        pending = self._desk.pending.get(approval_id)
        if pending is None:
            raise ApprovalNotPendingError(self._desk.refuse_not_pending(by, approval_id, approved))
        refusal = may_answer(pending.approval, by, roles)
        if refusal is not None:
            raise ApprovalRefusedError(
                self._desk.refuse_answerer(by, approval_id, approved, refusal)
            )
        if pending.overdue and not in_time:
            self._desk.refuse(by, approval_id, approved, PAST_DEADLINE)
            raise ApprovalRefusedError(f"the answer came after approval {approval_id}'s deadline")
        answer = pending.request.child(
            ApprovalAnswer(approval_id=approval_id, approved=approved, reason=reason),
            sender=by,
            id=self._new_id(),
            created_at=self._clock.timestamp(),
            recipient=DESK,
            role=Role.USER,
            metadata={**pending.request.metadata, "user_id": by, "user_roles": roles},
        )
        self._desk.issued[answer.id] = approval_id
        try:
            denied = self._publish(answer)
        except BaseException:
            del self._desk.issued[answer.id]
            raise
        if denied is not None:
            # Never at the desk (the ledger audited it ``denied``): no answer was given, and
            # the approval waits for one the policies let through.
            del self._desk.issued[answer.id]
            raise ApprovalRefusedError(
                f"denied by {denied.policy}: {denied.reason} (the answer of {by} is not "
                f"given: approval {approval_id} is still pending)",
                message_id=answer.id,
                agent_id=DESK,
                correlation_id=answer.correlation_id,
            )
        return answer
