"""A declared workflow: a saga of steps over one typed state, run by the pipeline.

The workflow is a node of the pipeline, as a declared gather is. Its request is the state, a
payload of the workflow's ``state`` type. Each step is an agent that gets the state and replies
with it, changed: the fields it changed are the step's result, merged into the state (two
steps running at once that set one field differently fail the later one). A step starts once
the steps it comes ``after`` are done, so independent steps run at once. An approval step asks
a person (the runtime's approval desk) and goes on when they approve.

When a step fails (its handler raised, its delivery was denied, shed or cancelled, its agent
handled it without replying or replied with another type, it did not reply within its
deadline, or a person rejected it), no further step starts; once the steps
still running have ended, each completed step that declares a ``compensate`` message type is
sent that message, built from the state, one at a time in the reverse order of completion.
The same happens when the workflow's own deadline passes, and when its request is cancelled:
the compensations then run in the correlation of the cancellation notice (``<id>.cancel``).
A compensation that fails is dead-lettered by the runtime, as any failed delivery is, and
reported in the outcome. A step the workflow gave up on (its deadline, or the workflow's,
passed) that replies after all did its work: it is undone too, with the run's undos or, once
the run ended, on its own. A compensation given up on at its deadline that replies after all
did undo its step: it is recorded undone late. The workflow ends by emitting its outcome:
the state, the status, and the event log, whose every event is also an audit record.

Its messages to steps have ids made from the request's (``<request id>~<workflow>~<step>``): a
step whose delivery a crash cut short runs again under the same id, so a step handler's
idempotency key (the delivery id) holds across the restart (docs/durability.md). A run
resumed from a store (or, on NATS, by the next worker) is rebuilt from the messages the
workflow took of it: one that a process before this one handled, with what it sent kept
(``taken_before``), is handled again to rebuild the run, sending nothing and auditing nothing
a second time; a step it had started runs again only if its delivery had not ended. Notices
are taken from the runtime only, decisions from its desk only: an agent cannot approve a step.
"""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
import string
import types
import typing
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .._agent.agent import Risk
from .._agent.context import Context, Timer
from .._base.clock import Clock
from .._errors import InvalidArgumentError, did_you_mean
from .._message.envelope import Message
from .._message.payload import MetaValue, Payload
from .._runtime.approvals import DESK, ApprovalDecision, ApprovalRequest, ApprovalWithdrawn
from .._runtime.audit import AuditRecord, AuditSink
from .._runtime.losses import Cancelled, Lost, Unanswered
from ._finished import FINISHED_KEPT, EndsKept, Finished

__all__ = [
    "STEP_DEADLINE",
    "ApprovalStep",
    "CarriedRun",
    "RunDefinition",
    "RunRefused",
    "Step",
    "StepDeadline",
    "WorkflowDeadline",
    "WorkflowEvent",
    "WorkflowNode",
    "WorkflowChanged",
    "WorkflowOutcome",
    "Workflow",
    "definition_of",
    "outcome_model",
    "template_fields",
    "template_problems",
]

STEP_DEADLINE = 60.0  # seconds an agent step may take to reply, unless it says
P = TypeVar("P", bound=Payload)

EventKind = Literal[
    "started",
    "completed",
    "completed_late",
    "failed",
    "awaiting_approval",
    "approved",
    "rejected",
    "withdrawn",
    "compensated",
    "compensation_failed",
    "compensated_late",
    "timed_out",
    "cancelled",
]
Status = Literal["completed", "failed", "rejected", "timed_out", "cancelled"]


class WorkflowEvent(BaseModel):
    """One entry of a workflow's event log: ``step`` (the workflow's own id for the events
    of the whole run: ``timed_out``, ``cancelled``), what happened, when, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    kind: EventKind
    at: datetime
    detail: str = ""


class WorkflowOutcome(Payload):
    """What a workflow emits when it ends. ``status``: ``completed``, or why it did not
    (``failed``, ``rejected`` by a person, ``timed_out``, ``cancelled``), with the step and
    the reason; ``state`` is the state as JSON data; ``compensated`` the steps undone, in
    order; ``not_compensated`` those whose compensation failed (each a dead letter or a
    denial, named in the event log). A catalogue agent that consumes an outcome declares a
    subclass with its own ``message_type``."""

    workflow: str
    status: Status
    state: dict[str, Any]
    failed_step: str | None = None
    reason: str = ""
    events: tuple[WorkflowEvent, ...] = ()
    compensated: tuple[str, ...] = ()
    not_compensated: tuple[str, ...] = ()

    def state_as(self, model: type[P]) -> P:
        """The state, parsed as ``model`` (the workflow's state type)."""
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            # A name, or an instance: refused naming the argument, not an AttributeError.
            given = type(model).__qualname__
            raise InvalidArgumentError(
                f"state_as() takes the state's model (a Payload class), not {given}: "
                "outcome.state_as(Trip)"
            )
        return model.model_validate(self.state)


class StepDeadline(Payload):
    """The tick a workflow schedules to itself for a step (or a compensation) it sent."""

    message_type = "genie.step_deadline"
    message_id: str


class WorkflowDeadline(Payload):
    """The tick of the workflow's own deadline."""

    message_type = "genie.workflow_deadline"


class RunDefinition(Payload):
    """The workflow as it was declared when a run started: sent by the workflow to itself
    with the run's first steps, so that a store keeps it with the run. A resume under a
    workflow whose ``fingerprint`` differs (its pipeline file edited meanwhile) rebuilds the
    run from these ``steps``, refuses to go on, and undoes what was done as declared here."""

    message_type = "genie.workflow_definition"

    fingerprint: str
    definition: dict[str, Any]
    steps: list[dict[str, Any]]


class RunRefused(Payload):
    """A run's refusal taken at once: sent by the workflow to itself as it refuses the run on
    taking its definition for the first time (``RunDefinition``, a resume under another
    definition), so that a store (or the broker) keeps it with the run. Until then only the
    run's request had been taken: the run sent its first steps, and, refused, never a step
    after them. A later resume, rebuilding the run, cannot tell that from the definition
    alone (a process that took it under the definition kept went on, and did send the next
    steps): this tells it, with the ``reason`` the run was refused for."""

    message_type = "genie.workflow_refused"

    reason: str


class CarriedRun(Payload):
    """A cancelled run, as the workflow carries it into the cancellation's correlation: a
    message to itself, so that a store keeps it there once the cancelled request's own
    messages, from which a restart would rebuild the run, are gone. The compensations left
    (``undo``, and ``sent``: message id -> step, those under way) resume from it, by the
    ``definition`` the run went by (None: carried by a genie before runs kept theirs)."""

    message_type = "genie.workflow_carried_run"

    cancelled: str  # the correlation of the cancelled request
    start_id: str
    state: dict[str, Any]
    status: dict[str, str]
    sent: dict[str, str]
    completed: list[str]
    events: list[WorkflowEvent]
    failure: tuple[Status, str | None, str]
    undo: list[str]
    compensated: list[str]
    not_compensated: list[str]
    definition: RunDefinition | None = None


class WorkflowChanged(Payload):
    """The workflow's tick, set as a resume finds that the run was started under another
    definition: the run has been rebuilt from what was kept, and now fails (``reason``), at
    ``step`` where it is one the run kept a reply of and the workflow no longer has (a run
    kept without its definition)."""

    message_type = "genie.workflow_changed"

    reason: str
    step: str | None = None


def outcome_model(type_name: str) -> type[WorkflowOutcome]:
    """A ``WorkflowOutcome`` subclass registered under ``type_name``."""
    return type(
        type_name.title().replace("_", "").replace(".", ""),
        (WorkflowOutcome,),
        {"message_type": type_name},
    )


@dataclass(frozen=True)
class ApprovalStep:
    """Who may approve (a role, a principal), the request's subject and details (templates
    filled from the state's fields), and the escalation."""

    subject: str
    role: str | None = None
    principal: str | None = None
    details: str = ""
    escalate_to: str | None = None


@dataclass(frozen=True)
class Step:
    """A step: the ``agent`` that runs it, or an ``approval``; the steps it comes ``after``;
    how long it may take (for an approval, the approval's deadline; None: no limit); the
    message type that undoes it."""

    id: str
    after: tuple[str, ...] = ()
    agent: str | None = None
    approval: ApprovalStep | None = None
    deadline: float | None = None
    compensate: type[Payload] | None = None


@dataclass(frozen=True)
class Workflow:
    """A checked workflow declaration: its state type, steps and outcome type."""

    state: type[Payload]
    steps: tuple[Step, ...]
    outcome: type[WorkflowOutcome]

    def hops(self) -> int:
        """The most hops a run's messages can reach: each step of the longest chain, and
        each compensation, is a message and its reply; the outcome one more."""
        depth: dict[str, int] = {}
        steps = {s.id: s for s in self.steps}

        def chain(step: str) -> int:
            if step not in depth:
                # An approval: its request, the answer (or a deadline's tick, escalated and
                # ticking again) and the decision.
                cost = 4 if steps[step].approval is not None else 2
                depth[step] = cost + max((chain(d) for d in steps[step].after), default=0)
            return depth[step]

        longest = max(chain(s.id) for s in self.steps)
        undo = sum(s.compensate is not None for s in self.steps)
        return longest + 2 * undo + 2


def definition_of(workflow: Workflow) -> dict[str, Any]:
    """What identifies a workflow, as JSON data: its state and outcome types, and its steps
    in their declared order, each with the steps it comes after, who runs it (an agent, or a
    person) and the type that undoes it. Deadlines and an approval's wording are not in it:
    changing them does not change what a run has done or how it is undone."""
    return {
        "state": workflow.state.message_type,
        "outcome": workflow.outcome.message_type,
        "steps": [
            {
                "id": s.id,
                "after": list(s.after),
                "agent": s.agent,
                "approval": s.approval is not None,
                "compensate": None if s.compensate is None else s.compensate.message_type,
            }
            for s in workflow.steps
        ],
    }


def fingerprint(definition: Mapping[str, Any]) -> str:
    """A stable hash of ``definition`` (``definition_of``): the same across processes and
    Python versions, as the JSON it is made of is written one way."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def changes(was: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between two definitions (``definition_of``), in words: ``step 'hotel'
    removed``, ``step 'ok' after [inn], not [hotel]``..."""
    found = [
        f"{key} {now[key]!r}, not {was[key]!r}"
        for key in ("state", "outcome")
        if was[key] != now[key]
    ]
    before = {s["id"]: s for s in was["steps"]}
    after = {s["id"]: s for s in now["steps"]}
    found += [f"step {s!r} removed" for s in before if s not in after]
    found += [f"step {s!r} added" for s in after if s not in before]
    for step, old in before.items():
        new = after.get(step)
        if new is None:
            continue
        if old["after"] != new["after"]:
            found.append(
                f"step {step!r} after [{', '.join(new['after'])}], not [{', '.join(old['after'])}]"
            )
        if (old["agent"], old["approval"]) != (new["agent"], new["approval"]):
            found.append(f"step {step!r} run by {_runner(new)}, not {_runner(old)}")
        if old["compensate"] != new["compensate"]:
            found.append(
                f"step {step!r} undone by {new['compensate'] or 'nothing'}, not "
                f"{old['compensate'] or 'nothing'}"
            )
    kept = [s for s in before if s in after]
    if kept != [s for s in after if s in before]:
        found.append(f"steps in the order {', '.join(s for s in after if s in before)}")
    return found


def _runner(step: Mapping[str, Any]) -> str:
    return "a person's approval" if step["approval"] else f"agent {step['agent']!r}"


_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[[^\[\]]+\])*)$")
_INDEX = re.compile(r"\[([^\[\]]+)\]")
_DIGITS = re.compile(r"\d+")
# The widest value a template fills in, in characters: a subject or details line is read by
# a person, kept in the audit log and the store.
MAX_WIDTH = 1000


def template_fields(text: str) -> list[tuple[str, list[str | int]]]:
    """The state's values ``text`` fills in, each as its field and keys: ``{a}`` and
    ``{b[key][0]}`` -> ``[("a", []), ("b", ["key", 0])]`` (digits index a list, as
    ``str.format`` reads them). Raises ValueError for what would not fill in: ``{}``, ``{a.attr}``,
    ``{a!x}``, and for a format spec that fills in a field (``{a:>{b}}``: a width the request's
    data would choose) or is wider than ``MAX_WIDTH`` (``{a:>999999999}``: a gigabyte of text
    for the approver, the audit log and the store)."""
    paths: list[tuple[str, list[str | int]]] = []
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        found = _FIELD.match(name)
        if found is None:
            raise ValueError(f"{{{name}}} names no field (write {{field}} or {{field[key]}})")
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(f"{{{name}!{conversion}}}: the conversion is !r, !s or !a")
        if spec and "{" in spec:
            raise ValueError(f"{{{name}:{spec}}}: a format spec fills in no field")
        # Digits of any script: ``str.format`` reads a width in each.
        if spec and any(len(d) > 4 or int(d) > MAX_WIDTH for d in _DIGITS.findall(spec)):
            raise ValueError(
                f"{{{name}:{spec}}}: a width or precision is at most {MAX_WIDTH} characters"
            )
        keys = [int(k) if k.isascii() and k.isdigit() else k for k in _INDEX.findall(name)]
        paths.append((found.group(1), keys))
    return paths


def template_problems(text: str, state: type[Payload]) -> list[str]:
    """What of ``text`` the state's model says it can never fill: a field it does not have
    (``{ofer}``), a key the model a field holds does not have (``{request[busines_id]}``), a
    list indexed by a name or a model by a number. What only a run can tell (a key of a
    mapping, an index past a list's end) is not checked. Raises ValueError as
    ``template_fields``."""
    found = []
    for field_name, keys in template_fields(text):
        shown = f"{{{field_name}{''.join(f'[{k}]' for k in keys)}}}"
        if field_name not in state.model_fields:
            hint = did_you_mean(field_name, state.model_fields)
            found.append(f"{shown}: {state.message_type!r} has no field {field_name!r}{hint}")
            continue
        annotation: Any = state.model_fields[field_name].annotation
        held = field_name
        for key in keys:
            annotation = _plain(annotation)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                what = f"{held} is a {annotation.__name__}"
                if isinstance(key, int):
                    found.append(f"{shown}: {what}: name one of its fields, not a number")
                    break
                if key not in annotation.model_fields:
                    hint = did_you_mean(key, annotation.model_fields)
                    found.append(f"{shown}: {what}, which has no field {key!r}{hint}")
                    break
                annotation = annotation.model_fields[key].annotation
            elif _is_list(annotation):
                if not isinstance(key, int):
                    found.append(f"{shown}: {held} is a list: index it by number")
                    break
                args = typing.get_args(annotation)
                annotation = args[0] if args else Any
            else:
                break  # a mapping, or a value only a run can tell
            held += f"[{key}]"
    return found


def _plain(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` and without ``| None``; a union of several kinds
    stays as it is (what it holds only a run can tell)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) == 1:
            return _plain(kinds[0])
    return annotation


def _is_list(annotation: Any) -> bool:
    """A list in the state's JSON form: ``list[X]``, ``tuple[X, ...]``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    return origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis)


@dataclass
class _Sent:
    step: str
    kind: Literal["run", "undo", "approval"]
    state: dict[str, Any]  # the state as it was sent: the reply's changes are its result
    timer: Timer | None


@dataclass(frozen=True)
class _GivenUp:
    """A step the workflow stopped waiting for (its deadline, or the workflow's, passed) while
    its handler still ran: if it replies after all, its work was done, and is undone. Or a
    compensation given up on at its deadline: if it replies after all, the step was undone."""

    step: Step  # as the run went by
    kind: Literal["run", "undo"]
    correlation_id: str
    start_id: str
    metadata: Mapping[str, MetaValue]  # the request's: the undo runs as the request did


@dataclass
class _Session:
    start_id: str
    state: dict[str, Any]
    timer: Timer | None
    status: dict[str, str]  # step -> waiting, running, awaiting, done, failed
    sent: dict[str, _Sent] = field(default_factory=dict)
    writer: dict[str, str] = field(default_factory=dict)  # field -> the step that set it
    completed: list[str] = field(default_factory=list)  # in the order they completed
    events: list[WorkflowEvent] = field(default_factory=list)
    failure: tuple[Status, str | None, str] | None = None
    undo: list[str] | None = None  # the compensations left, once compensating
    compensated: list[str] = field(default_factory=list)
    not_compensated: list[str] = field(default_factory=list)
    # The request's metadata (its principal and roles): its undo runs as the request did,
    # whatever set it off (a failure, a rejection, the runtime's cancellation notice).
    metadata: Mapping[str, MetaValue] = field(default_factory=dict)
    # The steps the run goes by: the workflow's, or, resumed under a changed workflow, those
    # declared when it started (``RunDefinition``).
    steps: Mapping[str, Step] = field(default_factory=dict)
    # Steps of such a run whose undo, declared then, cannot be sent now, and why.
    undo_gone: dict[str, str] = field(default_factory=dict)
    # The definition the run goes by: carried with it into a cancellation's correlation.
    defined: RunDefinition | None = None
    # What rebuilding the run found it must be refused for (a changed definition, a step
    # lost: the reason, the step), told at a tick this process set (``_tell_changed``) and
    # not taken yet; and that tick, for a changed definition: withdrawn once the run is
    # refused, by a tick the process before fired and the store kept, say.
    told: list[tuple[str, str | None]] = field(default_factory=list)
    changed: Timer | None = None
    # Whether this process took a message of the run for the first time (its request, or one
    # after what it rebuilt): a refusal the process before took at once is rebuilt before
    # that, not after (``_rebuilding``).
    taken_here: bool = False
    # While the definition's handling, taken for the first time, rebuilds what the request's
    # handling did under the steps kept (``_defined``): the process before audited that.
    retelling: bool = False
    # The state to build a step's undo from, where not the run's: a step that completed
    # after the workflow gave up on it is undone by what it replied.
    undo_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Opened after the run ended, to undo a step that completed late: it ends emitting no
    # second outcome.
    after_end: bool = False


class WorkflowNode:
    capabilities: Sequence[str] = ("workflow",)
    risk = Risk.LOW
    consumes_any: ClassVar[bool] = True

    def __init__(
        self,
        id: str,
        *,
        state: type[Payload],
        steps: Sequence[Step],
        emit: type[WorkflowOutcome],
        to: str | None = None,
        deadline: float | None = None,
        clock: Clock,
        taken_before: Callable[[str, str], bool] | None = None,
        watch_reply: Callable[[Message], None] | None = None,
        types: Callable[[str], type[Payload] | None] | None = None,
        hosts: Callable[[str], bool] | None = None,
        ends: EndsKept | None = None,
    ) -> None:
        self.id = self.name = id
        self.state_model = state
        self.steps = {s.id: s for s in steps}
        # What a run keeps of the workflow it started under (``RunDefinition``).
        self.definition = definition_of(Workflow(state, tuple(steps), emit))
        self.fingerprint = fingerprint(self.definition)
        # The payload type of a name, for the undo a run declared when it started: the
        # runtime's registry (None: a type it does not know).
        self.types = types or _own_types(steps)
        # Whether an agent of that id is in the pipeline (hosted here or by a worker).
        self.hosts = hosts or _anyone
        self.emit_model = emit
        self.to = to
        self.deadline = deadline
        self.clock = clock
        # Where its events are recorded: given by the runtime that hosts it (``audit_to``).
        self.audit: AuditSink | None = None
        # Whether a process before this one handled a message (its id, this workflow's id),
        # with what it sent kept: the runtime's ``taken_before``.
        self.taken_before = taken_before or _never
        # Asks the runtime to say at once when a step's agent handled its message without
        # replying (``Runtime.watch_reply``): else only the step's deadline would tell.
        self.watch_reply = watch_reply or _unwatched
        undo = [s.compensate for s in steps if s.compensate is not None]
        asks: list[type[Payload]] = []
        if any(s.approval for s in steps):
            asks = [ApprovalRequest, ApprovalWithdrawn]
        self.produces: tuple[type[Payload], ...] = (
            emit,
            state,
            *dict.fromkeys(undo),
            *asks,
            *((CarriedRun,) if undo else ()),
            RunDefinition,
            RunRefused,
            WorkflowChanged,
            StepDeadline,
            WorkflowDeadline,
        )
        self.ignored = 0
        self._sessions: dict[str, _Session] = {}
        # The steps given up on whose handlers may still reply, by their message's id: the
        # last FINISHED_KEPT, as a run's end is remembered.
        self._given_up: OrderedDict[str, _GivenUp] = OrderedDict()
        # How many of them each correlation has: kept (``keeps``) until each replies or ends.
        self._given_up_in: Counter[str] = Counter()
        # Correlations whose run ended: a state that comes after must not start a second run.
        # Kept by the runtime (``ends``) with each request still in flight there.
        self._closed = Finished(id, ends)

    def audit_to(self, sink: AuditSink) -> None:
        """Record the workflow's events in ``sink`` (``AuditsItself``)."""
        self.audit = sink

    @property
    def pending(self) -> int:
        return len(self._sessions)

    def keeps(self, correlation_id: str) -> bool:
        """Whether a run of ``correlation_id`` is under way, or ended with a step (or an undo)
        it gave up on whose handling has not ended: a store (or the broker) keeps every
        message the workflow took of it until neither, so that a restart delivers them again
        and the run is rebuilt, with what it gave up on (docs/durability.md)."""
        return correlation_id in self._sessions or correlation_id in self._given_up_in

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        out = self._handle(msg, ctx)
        # Rebuilding the run: what this handling sends went out the first time, under these
        # same ids (a step's delivery that had not ended runs again from the store itself).
        # News only this resume can tell (the workflow changed since the run began) is a
        # timer's tick (``_tell_changed``), set again by a rebuild on every transport.
        return () if self._rebuilding(ctx) else out

    def _tell_changed(
        self, ctx: Context, session: _Session, reason: str, step: str | None = None
    ) -> None:
        """Found while rebuilding the run: it was started under another definition, or kept
        a reply of a step this workflow no longer has. It fails at the tick this sets, taken
        once everything kept has been taken again, or at a message taken for the first time
        before it (``_handle``), whose handling sends what the refusal does (a withdrawal,
        the undos). A timer, not a message: a store sends what a
        rebuilt handling returns, but a NATS worker rebuilding from the held bucket sends
        nothing of it, and sets its timers again on both. A new tick at each resume: a stop
        before it fired sets it again; one fired and kept is taken first, and this one is
        withdrawn then (``_refuse``)."""
        tick = ctx.schedule(0, WorkflowChanged(reason=reason, step=step))
        session.told.append((reason, step))
        if step is None:
            session.changed = tick

    def _rebuilding(self, ctx: Context) -> bool:
        message = ctx.message
        if isinstance(message.payload, RunRefused):
            # What its handling does, the process that sent it did (and audited) when it
            # refused the run, before anything else of it: rebuilt where it comes back before
            # any message this process takes for the first time, taken or not before. After
            # one, it is news: the process before took nothing after what was rebuilt.
            session = self._sessions.get(message.correlation_id)
            if session is not None and not session.taken_here:
                return True
        return self.taken_before(message.id, self.id)

    def _handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        payload = msg.payload
        if not self._trusted(msg):
            self.ignored += 1
            return ()
        if isinstance(payload, Lost | Unanswered):  # its handling ended: no reply will come
            self._forget_given_up(payload.message_id)
        if isinstance(payload, Cancelled):
            return self._cancelled(payload, ctx)
        if isinstance(payload, CarriedRun):
            return self._carried(payload, ctx)
        session = self._sessions.get(msg.correlation_id)
        if isinstance(payload, RunRefused):
            # None: the run ended before its refusal came back to it; nothing is left to do.
            if session is None:
                return ()
            return self._refused_at_once(ctx, session, payload, msg.correlation_id)
        if session is not None and not self._rebuilding(ctx):
            session.taken_here = True
        if session is not None and isinstance(payload, RunDefinition):
            return self._defined(ctx, session, payload, msg.correlation_id)
        late = self._given_up.get(msg.causation_id or "")
        if late is not None and late.correlation_id == msg.correlation_id:
            if late.kind == "undo":  # any reply, as one in time (a loss was taken above)
                self._forget_given_up(msg.causation_id or "")
                return self._compensated_late(ctx, session, late, msg.correlation_id)
            if type(payload) is self.state_model:
                self._forget_given_up(msg.causation_id or "")
                return self._completed_late(ctx, session, late, payload, msg.correlation_id)
        if session is None:
            if (
                type(payload) is self.state_model
                and msg.correlation_id not in self._closed
                and f"~{self.id}~" not in (msg.causation_id or "")  # a step's late reply
            ):
                return self._start(msg, ctx)
            self.ignored += 1
            return ()
        out: list[Message] = []
        if session.told and not self._rebuilding(ctx):
            # Taken for the first time while a refusal found rebuilding the run is told: the
            # process before took nothing after what was rebuilt, this one is past it, so the
            # run is refused before it, not gone on with. A refusal the process before took
            # at once is made again here when its record (``RunRefused``) comes after this.
            for reason, step in session.told:
                out += self._refuse(ctx, session, reason, step)
            session.told = []
        lost = self._lost_step(session, msg)
        if lost is not None:
            # Kept under a definition of this workflow its pipeline file no longer has (a
            # step renamed or removed before the resume): the run cannot go on as it was
            # asked, so it fails now, and what it did is undone, rather than waiting for a
            # step or an approval the rebuilt run never sent.
            what = "the approval" if isinstance(payload, ApprovalDecision) else "the reply"
            why = (
                f"{what} of step {lost!r}, which workflow {self.id} no longer has: its "
                "pipeline changed while the request was kept"
            )
            if type(payload) is self.state_model and msg.causation_id == (
                f"{session.start_id}~{self.id}~{lost}"
            ):
                # Its work was done, and nothing here says how to undo it: named not undone.
                session.completed.append(lost)
                self._undo_unknown(session, [lost])
            if self._rebuilding(ctx):
                self._tell_changed(ctx, session, why, lost)
                return ()
            out += self._refuse(ctx, session, why, lost)
        elif isinstance(payload, Lost):
            sent = session.sent.pop(payload.message_id, None)
            if sent is not None:
                self._ended_badly(ctx, session, sent, f"{payload.kind}: {payload.reason}")
        elif isinstance(payload, Unanswered):
            # Its reply, had it sent one, would have come first: the handling has ended.
            sent = session.sent.pop(payload.message_id, None)
            if sent is not None:
                self._ended_badly(ctx, session, sent, f"{payload.consumer} {payload.reason}")
        elif isinstance(payload, ApprovalDecision):
            sent = session.sent.pop(payload.approval_id, None)
            if sent is not None:
                self._decided(ctx, session, sent, payload)
        elif isinstance(payload, StepDeadline):
            sent = session.sent.pop(payload.message_id, None)
            if sent is not None:
                sent.timer = None
                gone = session.undo_gone.get(sent.step) if sent.kind == "undo" else None
                if sent.kind != "approval" and gone is None:  # else it was never sent here
                    mid, key = payload.message_id, msg.correlation_id
                    self._gave_up_on(session, mid, sent.step, sent.kind, key)
                if gone is None:  # else an undo taken up that cannot run here (``_taken_up``)
                    gone = f"no reply within {session.steps[sent.step].deadline:g}s"
                self._ended_badly(ctx, session, sent, gone)
        elif isinstance(payload, WorkflowChanged):
            out += self._refuse(ctx, session, payload.reason, payload.step)
        elif isinstance(payload, WorkflowDeadline):
            session.timer = None
            if session.failure is None:
                why = f"the workflow's {self.deadline:g}s deadline passed"
                self._event(ctx, session, self.id, "timed_out", why)
                session.failure = ("timed_out", None, why)
                why = "cut short by the workflow's deadline"
                self._abandon(ctx, session, why, msg.correlation_id)
        else:
            sent = session.sent.get(msg.causation_id or "")
            if sent is None or sent.kind == "approval":
                self.ignored += 1
                return ()
            del session.sent[msg.causation_id or ""]
            if sent.timer is not None:
                sent.timer.cancel()
            if sent.kind == "undo":
                session.compensated.append(sent.step)
                self._event(ctx, session, sent.step, "compensated")
            else:
                self._replied(ctx, session, sent, payload)
        out += self._advance(ctx, session, msg.correlation_id)
        return out

    def _lost_step(self, session: _Session, msg: Message) -> str | None:
        """The step of this run that ``msg`` answers for (a reply, a decision, a notice of
        its loss), when this workflow has no such step."""
        payload = msg.payload
        if isinstance(payload, ApprovalDecision):
            about = payload.approval_id
        elif isinstance(payload, Lost | Unanswered | StepDeadline):
            about = payload.message_id
        else:
            about = msg.causation_id or ""
        mine = f"{session.start_id}~{self.id}~"
        if not about.startswith(mine) or about in session.sent:  # sent by this run: known
            return None
        step = about.removeprefix(mine).removesuffix("~undo")
        return None if step in session.steps else step

    def _trusted(self, msg: Message) -> bool:
        """Notices come from the runtime, decisions from its desk, ticks from the workflow
        itself: the same payload from anyone else (an agent's output) is ignored."""
        payload = msg.payload
        if isinstance(payload, Lost | Cancelled | Unanswered):
            return msg.sender == "genie"
        if isinstance(payload, ApprovalDecision):
            return msg.sender == DESK
        if isinstance(
            payload,
            StepDeadline
            | WorkflowDeadline
            | CarriedRun
            | RunDefinition
            | RunRefused
            | WorkflowChanged,
        ):
            return msg.sender == self.id
        return True

    # --- the run -------------------------------------------------------------------------------
    def _start(self, msg: Message, ctx: Context) -> Sequence[Message]:
        # Kept with the run, as its first steps are: a resume compares it with the workflow
        # it finds, and undoes as it says.
        steps = [_step_data(s) for s in self.steps.values()]
        defined = RunDefinition(
            fingerprint=self.fingerprint, definition=self.definition, steps=steps
        )
        session = self._sessions[msg.correlation_id] = _Session(
            msg.id,
            msg.payload.model_dump(mode="json"),
            None,
            dict.fromkeys(self.steps, "waiting"),
            metadata=msg.metadata,
            steps=self.steps,
            defined=defined,
            taken_here=not self._rebuilding(ctx),
        )
        if self.deadline is not None:
            # From when the request was made: a restart in between does not extend it.
            delay = self.clock.left(msg.created_at, self.deadline)
            session.timer = ctx.schedule(delay, WorkflowDeadline())
        # The definition goes out first: the run's own mailbox (or stream) has it before any
        # reply of the first steps, in one process or across several.
        defining = ctx.emit(defined, recipient=self.id)
        return [defining, *self._advance(ctx, session, msg.correlation_id)]

    def _defined(
        self, ctx: Context, session: _Session, defined: RunDefinition, key: str
    ) -> Sequence[Message]:
        """The definition the run started under. Another than this workflow's (its pipeline
        file edited before a resume): the run, just begun to be rebuilt (this comes right
        after its request), is rebuilt from the steps declared then, so that the replies kept
        find their steps and each done step is undone as declared; and once everything kept
        has been taken again, the ``WorkflowChanged`` tick this sets fails it."""
        what = self._go_by(session, defined)
        if what is None:
            return ()
        reason = (
            f"workflow {self.id} changed while the request was kept ({what}): the run is not "
            "resumed under it"
        )
        for sent in session.sent.values():  # sent by no one: the run starts over, as it was
            if sent.timer is not None:
                sent.timer.cancel()
        session.status = dict.fromkeys(session.steps, "waiting")
        session.sent = {}
        session.events = []
        # What this sends went out with the definition, by the request's handling (as the
        # run started, under the steps kept): it runs again from the store if it had not ended,
        # and was audited then.
        session.retelling = True
        try:
            self._advance(ctx, session, key)
        finally:
            session.retelling = False
        if not self._rebuilding(ctx):
            # Taken for the first time: the process before stopped between the request's
            # handling and this, so nothing of the run was taken after the request. It fails
            # now, before a reply of its first steps can start the next one; and says so to a
            # later resume, which rebuilds this handling as one that tells it at a tick.
            self._refuse(ctx, session, reason)
            refused = ctx.emit(RunRefused(reason=reason), recipient=self.id)
            return [refused, *self._advance(ctx, session, key)]
        self._tell_changed(ctx, session, reason)
        return ()

    def _refused_at_once(
        self, ctx: Context, session: _Session, refused: RunRefused, key: str
    ) -> list[Message]:
        """A refusal taken at once (``RunRefused``) comes back. Where it was sent, or after a
        message taken for the first time refused the run (``_handle``), the run is refused
        already. A resume that rebuilt the run took the definition for a run maybe gone on
        with, and took the steps its first ones' replies set off for sent (so they were, by
        a process that went on): here none was, so each is taken back, not waited for, and
        the run is refused as the process before had it, then goes on: to the undos that
        process sent, or, after a message taken for the first time here, to those it did not."""
        # Refused at once, the run had sent the steps its request's handling did, those after
        # no other, and none after them: any other it holds sent is the rebuild's guess.
        never_sent = {
            sent.step
            for sent in session.sent.values()
            if sent.kind != "undo" and session.steps[sent.step].after
        }
        if not never_sent and session.failure is not None:
            return []
        for mid, sent in list(session.sent.items()):
            if sent.kind != "undo" and sent.step in never_sent:
                del session.sent[mid]
                if sent.timer is not None:
                    sent.timer.cancel()
        session.status.update(dict.fromkeys(never_sent, "waiting"))
        session.events = [e for e in session.events if e.step not in never_sent]
        # Told at a tick, from the definition rebuilt: refused now, by the process before's
        # reason (the file it refused under may not be this one).
        session.told = [(reason, step) for reason, step in session.told if step is not None]
        self._refuse(ctx, session, refused.reason)
        return self._advance(ctx, session, key)

    def _refuse(
        self, ctx: Context, session: _Session, reason: str, step: str | None = None
    ) -> list[Message]:
        """Fail a run started under another definition of this workflow (``reason``), at
        ``step`` if it is a step of it this workflow no longer has. Then the run was rebuilt
        under the edited steps, and may not have come to an approval the process before
        asked: each not asked in it is withdrawn (the desk passes over one it never had)."""
        if step is None:
            if session.failure is None:  # told again by a second resume: failed already
                self._event(ctx, session, self.id, "failed", reason)
                session.failure = ("failed", None, reason)
            if session.changed is not None:  # refused: the tick this process set is moot
                session.changed.cancel()
                session.changed = None
            return []
        if session.status.get(step) == "failed":
            # Told again: a second resume rebuilt the first one's refusal from its kept tick,
            # and finds the kept reply of the step again. It failed, and was audited, then.
            return []
        self._failed(ctx, session, step, reason)
        return [
            withdrawn
            for s in session.steps.values()
            if s.approval is not None and session.status[s.id] == "waiting"
            for withdrawn in self._withdraw(ctx, f"{session.start_id}~{self.id}~{s.id}", reason)
        ]

    def _undo_unknown(self, session: _Session, step_ids: Sequence[str]) -> None:
        """Name in ``session.undo_gone`` each of ``step_ids`` (steps a run did) whose undo
        nothing tells any more: the step is gone from this workflow, or declares none now,
        and no definition kept with the run says what it declared. Reported not undone."""
        for step_id in step_ids:
            step = session.steps.get(step_id)
            if step is None:
                session.undo_gone[step_id] = (
                    f"step {step_id!r} is no longer in workflow {self.id}, and no definition "
                    "kept with the run tells its undo: undo it by hand if it declared one"
                )
            elif step.compensate is None:
                session.undo_gone[step_id] = (
                    f"step {step_id!r} declares no undo in workflow {self.id} now, and no "
                    "definition kept with the run tells the one it had: undo it by hand"
                )

    def _go_by(self, session: _Session, defined: RunDefinition) -> str | None:
        """Whether ``defined``, the definition a run started under, is another than this
        workflow's: None if not, else what changed, in words. Then the run goes by the steps
        declared in it (``session.steps``), each whose undo cannot be sent here named in
        ``session.undo_gone``; or, where they cannot be read (kept by another genie, or the
        store edited), by this workflow's, as a run kept without its definition does."""
        if defined.fingerprint == self.fingerprint:
            return None
        session.defined = defined
        try:
            steps, gone = self._steps_of(defined.steps)
        except _UnreadableSteps as exc:
            return f"the definition kept with it cannot be read: {exc}"
        session.steps = steps
        session.undo_gone.update(gone)
        try:
            what = changes(defined.definition, self.definition)
        except (KeyError, TypeError, AttributeError):
            what = []  # its words are another genie's making: the steps say what was done
        # No change in words (a definition of another genie's making): the fingerprint's.
        return ", ".join(what) or "its fingerprint"

    def _steps_of(self, kept: Sequence[Any]) -> tuple[dict[str, Step], dict[str, str]]:
        """The steps as ``_step_data`` kept them, and, for each whose undo cannot be sent here
        (its type or its agent is gone from the pipeline), why: then it has none, and is
        reported not undone. Raises ``_UnreadableSteps``, saying what, for steps that are not
        such."""
        steps: dict[str, Step] = {}
        gone: dict[str, str] = {}
        for data in kept:
            step, why = self._step_of(data)
            if step.id in steps:
                raise _UnreadableSteps(f"step {step.id!r} is declared twice")
            steps[step.id] = step
            if why is not None:
                gone[step.id] = why
        for step in steps.values():
            for before in step.after:
                if before not in steps:
                    raise _UnreadableSteps(f"step {step.id!r} comes after {before!r}, not a step")
        return steps, gone

    def _step_of(self, data: Any) -> tuple[Step, str | None]:
        """One step of ``_steps_of``."""
        if not isinstance(data, Mapping):
            raise _UnreadableSteps(f"a step is no mapping: {reprlib.repr(data)}")
        sid = data.get("id")
        if not isinstance(sid, str):
            raise _UnreadableSteps(f"a step's id is no text: {reprlib.repr(sid)}")
        after, agent, undo = data.get("after", []), data.get("agent"), data.get("compensate")
        approval, deadline = data.get("approval"), data.get("deadline")
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise _UnreadableSteps(
                f"step {sid!r} comes after {reprlib.repr(after)}, no list of steps"
            )
        if not isinstance(agent, str | None) or not isinstance(undo, str | None):
            raise _UnreadableSteps(f"step {sid!r} has an agent or an undo that is no name")
        if deadline is not None and (
            isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0
        ):
            raise _UnreadableSteps(
                f"step {sid!r} has a deadline of {reprlib.repr(deadline)}, no seconds"
            )
        asks = None
        if approval is not None:
            try:
                asks = ApprovalStep(**approval)
            except TypeError as exc:
                raise _UnreadableSteps(
                    f"step {sid!r} has an approval that is none: {exc}"
                ) from None
            if not all(isinstance(v, str | None) for v in asdict(asks).values()):
                raise _UnreadableSteps(f"step {sid!r} has an approval that is none: no text")
        if (agent is None) == (asks is None):
            raise _UnreadableSteps(f"step {sid!r} has no agent and no approval, or both")
        compensate = None if undo is None else self.types(undo)
        gone = None
        if undo is not None and compensate is None:
            gone = f"its undo {undo!r}, declared when the run started, is no longer a type here"
        elif undo is not None and agent is not None and not self.hosts(agent):
            gone = f"its agent {agent!r}, declared when the run started, is gone"
            compensate = None
        step = Step(sid, tuple(after), agent, asks, deadline, compensate)
        return step, gone

    def _advance(self, ctx: Context, session: _Session, key: str) -> list[Message]:
        """Start what can start; compensate once a failed run has nothing running; end."""
        out: list[Message] = []
        if session.failure is None:
            ready = [
                step
                for step in session.steps.values()
                if session.status[step.id] == "waiting"
                and all(session.status[d] == "done" for d in step.after)
            ]
            for step in ready:
                run = self._send(ctx, session, step)
                if run is not None:
                    out.append(run)
            if all(s == "done" for s in session.status.values()):
                return out + self._end(ctx, session, key)
            return out
        if any(s == "running" for s in session.status.values()):
            return out  # their replies, losses or deadlines come first
        if session.undo is None:
            for step_id, status in session.status.items():
                if status == "awaiting":  # nobody waits for the answer now
                    session.status[step_id] = "failed"
                    self._event(ctx, session, step_id, "withdrawn", self._why(session))
                    for mid, sent in list(session.sent.items()):
                        if sent.step == step_id:
                            del session.sent[mid]
                            if sent.timer is not None:
                                sent.timer.cancel()
                            out += self._withdraw(ctx, mid, self._why(session))
            session.undo = [
                s
                for s in reversed(session.completed)
                if s in session.undo_gone or session.steps[s].compensate is not None
            ]
        if any(sent.kind == "undo" for sent in session.sent.values()):
            return out  # one compensation at a time
        while session.undo:
            step_id = session.undo.pop(0)
            if step_id in session.undo_gone:  # declared when the run started, not sent now
                mid = f"{session.start_id}~{self.id}~{step_id}~undo"
                if self._rebuilding(ctx):
                    # The process before may have known the undo, and sent it here.
                    self._taken_up(ctx, session, mid, step_id, session.state)
                else:
                    # Named not undone at a tick, not here: the tick is kept with the run,
                    # so a resume after it names the step again at it and goes on to the
                    # undos this process sent after, rather than taking this handling's
                    # undo for sent and sending those a second time.
                    tick = ctx.schedule(0, StepDeadline(message_id=mid))
                    session.sent[mid] = _Sent(step_id, "undo", dict(session.state), tick)
                return out
            undo = self._send(ctx, session, session.steps[step_id], undo=True)
            if undo is not None:
                return [*out, undo]
        return out + self._end(ctx, session, key)

    def _send(
        self, ctx: Context, session: _Session, step: Step, undo: bool = False
    ) -> Message | None:
        mid = f"{session.start_id}~{self.id}~{step.id}" + ("~undo" if undo else "")
        approval = step.approval
        if approval is not None:
            # The desk keeps the deadline (from when it was asked, across a restart) and
            # rejects or escalates at it.
            ask = ApprovalRequest(
                subject=_filled(approval.subject, session.state),
                role=approval.role,
                principal=approval.principal,
                deadline=step.deadline,
                escalate_to=approval.escalate_to,
                details=_filled(approval.details, session.state),
            )
            session.sent[mid] = _Sent(step.id, "approval", {}, None)
            session.status[step.id] = "awaiting"
            self._event(ctx, session, step.id, "awaiting_approval", ask.subject)
            return self._child(ctx, ask, mid, None)
        assert step.agent is not None
        payload: Payload
        if undo:
            assert step.compensate is not None  # else named in ``undo_gone`` (``_advance``)
            fields = step.compensate.model_fields
            state = session.undo_state.get(step.id, session.state)
            try:
                payload = step.compensate.model_validate(
                    {k: v for k, v in state.items() if k in fields}
                )
            except ValidationError as exc:
                session.not_compensated.append(step.id)
                why = f"its {step.compensate.message_type!r} cannot be built from the state: "
                self._event(ctx, session, step.id, "compensation_failed", why + str(exc))
                return None
        else:
            payload = self.state_model.model_validate(session.state)
            session.status[step.id] = "running"
            self._event(ctx, session, step.id, "started")
        timer = (
            None
            if step.deadline is None
            else ctx.schedule(step.deadline, StepDeadline(message_id=mid))
        )
        session.sent[mid] = _Sent(step.id, "undo" if undo else "run", dict(session.state), timer)
        child = self._child(ctx, payload, mid, step.agent, session.metadata if undo else None)
        # Watched when rebuilding too: the step's delivery that had not ended runs again.
        self.watch_reply(child)
        return child

    def _child(
        self,
        ctx: Context,
        payload: Payload,
        mid: str,
        to: str | None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        # Its id is the request's and the step's: the same after a restart (see the top). An
        # undo carries the request's metadata as it was, not merged over what set it off.
        built = ctx.emit(payload, recipient=to)
        update: dict[str, object] = {"id": mid}
        if metadata is not None:
            update["metadata"] = metadata
        return built.model_copy(update=update)

    def _replied(self, ctx: Context, session: _Session, sent: _Sent, payload: Payload) -> None:
        step = sent.step
        if type(payload) is not self.state_model:
            state = self.state_model.message_type
            why = f"replied with {payload.message_type!r}, not the state {state!r}"
            self._failed(ctx, session, step, why)
            return
        new = payload.model_dump(mode="json")
        changed = {k: v for k, v in new.items() if sent.state.get(k) != v}
        for key, value in changed.items():
            now = session.state.get(key)
            if now != sent.state.get(key) and now != value:  # set meanwhile, otherwise
                other = session.writer.get(key, "?")
                session.completed.append(step)  # its work was done: it is undone too
                self._failed(ctx, session, step, f"set {key!r}, which step {other!r} set too")
                return
        for key, value in changed.items():
            session.state[key] = value
            session.writer[key] = step
        session.status[step] = "done"
        session.completed.append(step)
        self._event(ctx, session, step, "completed")

    def _decided(
        self, ctx: Context, session: _Session, sent: _Sent, decision: ApprovalDecision
    ) -> None:
        if sent.timer is not None:
            sent.timer.cancel()
        if decision.approved:
            session.status[sent.step] = "done"
            session.completed.append(sent.step)
            self._event(ctx, session, sent.step, "approved", decision.said())
            return
        session.status[sent.step] = "failed"
        self._event(ctx, session, sent.step, "rejected", decision.said())
        if session.failure is None:
            session.failure = ("rejected", sent.step, decision.said())

    def _ended_badly(self, ctx: Context, session: _Session, sent: _Sent, why: str) -> None:
        if sent.timer is not None:
            sent.timer.cancel()
        if sent.kind == "undo":
            session.not_compensated.append(sent.step)
            self._event(ctx, session, sent.step, "compensation_failed", why)
        else:
            self._failed(ctx, session, sent.step, why)

    def _failed(self, ctx: Context, session: _Session, step: str, why: str) -> None:
        session.status[step] = "failed"
        self._event(ctx, session, step, "failed", why)
        if session.failure is None:
            session.failure = ("failed", step, why)

    def _abandon(self, ctx: Context, session: _Session, why: str, key: str | None = None) -> None:
        """Stop waiting for the steps still running: they fail. With ``key`` (the run's
        correlation: not a cancelled one, which delivers nothing more), one that replies
        after all is undone (``_completed_late``)."""
        for mid, sent in list(session.sent.items()):
            if sent.kind == "run":
                if key is not None:
                    self._gave_up_on(session, mid, sent.step, "run", key)
                del session.sent[mid]
                if sent.timer is not None:
                    sent.timer.cancel()
                session.status[sent.step] = "failed"
                self._event(ctx, session, sent.step, "failed", why)

    def _gave_up_on(
        self, session: _Session, mid: str, step: str, kind: Literal["run", "undo"], key: str
    ) -> None:
        if mid in self._given_up:  # remembered once, so its correlation's count holds
            return
        given_up = _GivenUp(session.steps[step], kind, key, session.start_id, session.metadata)
        self._given_up[mid] = given_up
        self._given_up_in[key] += 1
        if len(self._given_up) > FINISHED_KEPT:
            self._forget_given_up(next(iter(self._given_up)))

    def _forget_given_up(self, mid: str) -> None:
        given_up = self._given_up.pop(mid, None)
        if given_up is not None:
            key = given_up.correlation_id
            self._given_up_in[key] -= 1
            if not self._given_up_in[key]:
                del self._given_up_in[key]

    def _completed_late(
        self, ctx: Context, session: _Session | None, late: _GivenUp, payload: Payload, key: str
    ) -> list[Message]:
        """A step the workflow gave up on replied after all: its work was done, after the
        run had failed for it (or for the workflow's deadline). It is undone, by what it
        replied, as the completed steps are: among them while the run still undoes them or
        waits for steps still running, else on its own, after the run's outcome (which it
        does not change), its events audited as the run's."""
        step = late.step
        if session is None:
            session = self._reopened(late, payload.model_dump(mode="json"), key)
        undone = step.compensate is not None
        what = "undone" if undone else "it declares no undo"
        self._event(ctx, session, step.id, "completed_late", f"after its run gave up on it: {what}")
        if undone:
            session.undo_state[step.id] = payload.model_dump(mode="json")
            if session.undo is None:  # undone with the others, in the order they completed
                session.completed.append(step.id)
            else:  # it completed last: undone next
                session.undo.insert(0, step.id)
        return self._advance(ctx, session, key)

    def _compensated_late(
        self, ctx: Context, session: _Session | None, late: _GivenUp, key: str
    ) -> list[Message]:
        """A compensation the workflow gave up on at its deadline replied after all: the step
        was undone, late. While the run still undoes others, its outcome names the step
        undone (no longer among those whose undo failed); after the outcome went out, the
        event is audited as the run's, and the outcome is not sent again."""
        if session is None:
            session = self._reopened(late, {}, key)
        step = late.step.id
        detail = "its undo replied after the workflow gave up on it"
        self._event(ctx, session, step, "compensated_late", detail)
        if step in session.not_compensated:
            session.not_compensated.remove(step)
        session.compensated.append(step)
        return self._advance(ctx, session, key)

    def _reopened(self, late: _GivenUp, state: dict[str, Any], key: str) -> _Session:
        """The run of ``key``, ended, opened again for what a step it gave up on does after
        all (``late``): it ends emitting no second outcome."""
        step = late.step
        session = self._sessions[key] = _Session(
            late.start_id,
            state,
            None,
            {step.id: "failed"},
            failure=("failed", step.id, "completed after the workflow gave up on it"),
            undo=[],
            metadata=late.metadata,
            steps={step.id: step},
            after_end=True,
        )
        return session

    def _cancelled(self, notice: Cancelled, ctx: Context) -> Sequence[Message]:
        session = self._sessions.pop(notice.correlation_id, None)
        if session is None:
            return ()
        # The cancelled correlation delivers nothing more: what was under way there ended,
        # and the desk forgets an approval of it by itself.
        self._abandon(ctx, session, "cut short by the cancellation")
        for mid, sent in list(session.sent.items()):
            if sent.timer is not None:
                sent.timer.cancel()
            del session.sent[mid]
            if sent.kind == "undo":  # cut short: sent again, first, where it can run
                assert session.undo is not None
                session.undo.insert(0, sent.step)
            else:  # an approval: the desk forgets it with its correlation
                session.status[sent.step] = "failed"
                self._event(ctx, session, sent.step, "withdrawn", notice.reason)
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        key = ctx.message.correlation_id
        self._sessions[key] = session
        self._closed.add(notice.correlation_id)
        self._event(ctx, session, self.id, "cancelled", notice.reason)
        if session.failure is None:
            session.failure = ("cancelled", None, notice.reason)
        out = self._advance(ctx, session, key)
        if key in self._sessions:  # compensations under way: carried where they run
            out.append(self._carry(ctx, session, notice.correlation_id))
        return out

    def _carry(self, ctx: Context, session: _Session, cancelled: str) -> Message:
        assert session.failure is not None
        assert session.undo is not None
        carried = CarriedRun(
            cancelled=cancelled,
            start_id=session.start_id,
            state=session.state,
            status=session.status,
            sent={mid: sent.step for mid, sent in session.sent.items()},
            completed=session.completed,
            events=session.events,
            failure=session.failure,
            undo=session.undo,
            compensated=session.compensated,
            not_compensated=session.not_compensated,
            definition=session.defined,
        )
        built = ctx.emit(carried, recipient=self.id)
        return built.model_copy(update={"metadata": session.metadata})  # the request's, as is

    def _carried(self, carried: CarriedRun, ctx: Context) -> Sequence[Message]:
        """A run carried into a cancellation's correlation: nothing when it runs here (this
        process carried it); the run again when a store resumed it after a restart."""
        key = ctx.message.correlation_id
        if key in self._sessions or key in self._closed:
            return ()
        session = self._sessions[key] = _Session(
            carried.start_id,
            dict(carried.state),
            None,
            dict(carried.status),
            completed=list(carried.completed),
            events=list(carried.events),
            failure=carried.failure,
            undo=list(carried.undo),
            compensated=list(carried.compensated),
            not_compensated=list(carried.not_compensated),
            metadata=ctx.message.metadata,  # the request's: carried with it (``_carry``)
            steps=self.steps,
            defined=carried.definition,
        )
        if carried.definition is not None:
            # Its pipeline file may have been edited before this restart: what is left is
            # undone as declared when the run started, as a resumed run is.
            self._go_by(session, carried.definition)
        else:  # carried by a genie before runs kept theirs: the file's, where it still tells
            self._undo_unknown(session, carried.undo)
        for mid, step_id in carried.sent.items():  # its delivery runs again from the store
            self._taken_up(ctx, session, mid, step_id, carried.state)
        self._closed.add(carried.cancelled)
        return self._advance(ctx, session, key)

    def _taken_up(
        self, ctx: Context, session: _Session, mid: str, step_id: str, state: Mapping[str, Any]
    ) -> None:
        """An undo the process before sent (``mid``), taken up by a resume: its kept delivery
        runs again, and its reply or loss is awaited as any undo's (for a step the file no
        longer has, without a deadline: none is known). One whose type or agent is gone here
        is not run again (a store reports it, not run): it ends at a tick set now, named not
        undone (``undo_gone``), rather than in the rebuild, whose outcome would not be sent."""
        step = session.steps.get(step_id)
        delay = None if step is None else step.deadline
        if step is not None and step_id in session.undo_gone:
            delay = 0
        timer = None if delay is None else ctx.schedule(delay, StepDeadline(message_id=mid))
        session.sent[mid] = _Sent(step_id, "undo", dict(state), timer)

    def _withdraw(self, ctx: Context, approval_id: str, why: str) -> list[Message]:
        if ApprovalWithdrawn not in self.produces:
            # An approval the run asked under a definition it kept, and this workflow asks
            # none now (its file edited before the resume): it cannot tell the desk, which
            # the runtime adds only with an agent that asks, and the run waits for it no more.
            return []
        return [ctx.emit(ApprovalWithdrawn(approval_id=approval_id, reason=why), recipient=DESK)]

    def _why(self, session: _Session) -> str:
        return "the workflow failed" if session.failure is None else session.failure[2]

    def _end(self, ctx: Context, session: _Session, key: str) -> list[Message]:
        del self._sessions[key]
        self._closed.add(key)
        if session.timer is not None:
            session.timer.cancel()
        if session.after_end:  # a late step's undo: the run's outcome went out already
            return []
        status, step, reason = session.failure or ("completed", None, "")
        outcome = self.emit_model(
            workflow=self.id,
            status=status,
            state=session.state,
            failed_step=step,
            reason=reason,
            events=tuple(session.events),
            compensated=tuple(session.compensated),
            not_compensated=tuple(session.not_compensated),
        )
        return [ctx.emit(outcome, recipient=self.to)]

    def _event(
        self, ctx: Context, session: _Session, step: str, kind: EventKind, detail: str = ""
    ) -> None:
        rebuilding = session.retelling or self._rebuilding(ctx)
        # Rebuilt after a restart, an event happened when the process before this one took
        # the message (made a moment before): the outcome's log says when, as the audit did,
        # not when the run was rebuilt, maybe days later.
        at = ctx.message.created_at if rebuilding else self.clock.now()
        session.events.append(WorkflowEvent(step=step, kind=kind, at=at, detail=detail))
        if rebuilding or self.audit is None:
            # Audited when it happened, by the process that handled this message (a workflow
            # runs only in a runtime, which gives it its audit log when it is added).
            return
        self.audit.record(
            AuditRecord(
                at,
                self.id,
                f"workflow_{kind}",
                f"{session.start_id}~{self.id}~{step}",
                {"correlation_id": ctx.message.correlation_id, "step": step, "detail": detail},
            )
        )


class _UnreadableSteps(Exception):
    """The steps kept with a run (``RunDefinition.steps``) are not steps: what is wrong."""


def _step_data(step: Step) -> dict[str, Any]:
    """A step as JSON data, all of it: a run resumed under a changed workflow is rebuilt
    from it (``WorkflowNode._step_of``)."""
    return {
        "id": step.id,
        "after": list(step.after),
        "agent": step.agent,
        "approval": None if step.approval is None else asdict(step.approval),
        "deadline": step.deadline,
        "compensate": None if step.compensate is None else step.compensate.message_type,
    }


def _own_types(steps: Sequence[Step]) -> Callable[[str], type[Payload] | None]:
    """A workflow's own undo types by name: where no runtime registry is given."""
    known = {s.compensate.message_type: s.compensate for s in steps if s.compensate}
    return known.get


def _anyone(agent_id: str) -> bool:
    return True


def _never(message_id: str, agent_id: str) -> bool:
    return False


def _unwatched(request: Message) -> None:
    """No runtime watches the steps' messages: a step that does not reply fails at its
    deadline."""


def _filled(template: str, state: Mapping[str, Any]) -> str:
    """``template`` with ``{field}`` (``{field[key]}``) filled from the state. A placeholder
    the state cannot fill (a key its mapping lacks, an index past a list's end: what no check
    at load can know) stays as written, and the rest is still filled: the approver sees what
    is known, and which value was not."""
    formatter = string.Formatter()
    out = []
    try:
        for literal, name, spec, conversion in formatter.parse(template):
            out.append(literal)
            if name is None:
                continue
            conversion = f"!{conversion}" if conversion else ""
            written = f"{{{name}{conversion}{f':{spec}' if spec else ''}}}"
            try:
                out.append(formatter.vformat(written, (), state))
            except (KeyError, IndexError, ValueError, AttributeError, TypeError):
                out.append(written)
    except ValueError:  # not a template: refused at load, so a hand-built Workflow's
        return template
    return "".join(out)
