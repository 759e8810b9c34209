"""The policy plan: a runtime's policy list compiled so that each delivery pays only for what
can still decide it, with exactly the decisions of the list evaluated in order.

For each message type (on its first message) the plan keeps the policies that can apply to it:
a policy scoped to other types is dropped, and a DSL rule is partially evaluated on its
``type == ...`` comparisons. A policy that opts in (``PlannedPolicy``) splits its work in two
(``plan_step``): what depends on the message alone runs once per message, in the list's order,
and either decides (allow, or the message's first deny) or leaves a check per delivery (a
classification ceiling, the risk gate, consent). The recipients of one message then pay for
those checks only, which run in the list's order before the message's first deny, so the first
deny is the one the list finds. When a message's steps allowed it and left no check, every
recipient is allowed alike (``allows_all``): admission then asks one question for a whole
fan-out.

Content checks (the PII, injection, length and ``content contains`` checks of the shipped
policies) can also say what they need to allow a message (``screen_part``): the plan joins those
of one type into a screen over the text they share, and for a message the screen clears, skips
them (they would all allow); otherwise they run at their places.

A policy whose step reads only the envelope (the message's type, classification and metadata)
says so (``plan_reads_envelope``). When every step left for a message is one of those (the
common case: a reply whose screen clears, leaving the classification ceiling, data residency
and the risk gate), the plan answers from what it remembers of the same envelope: a fan-out's
replies share their request's frozen metadata, so they are decided as their request's first
reply was. Only metadata that cannot change is remembered (frozen, scalars or tuples of
strings), each entry holds the metadata it is keyed by (so the key is not reused), the memory is
bounded, and a step that raises is not remembered. A step that reads what changes at run time
(the risk gate's table) belongs to a ``VersionedPolicy``, whose ``plan_version`` each change
bumps: the plan reads it for every delivery, so nothing it prepared outlives the change.

A policy that does not opt in (a user's, or a subclass of a shipped one, which may decide
differently) is an opaque step: its ``evaluate`` runs for every delivery at its place in the
order, as the list runs it. The shipped policies are pure (a decision depends on the message,
the recipient and settings fixed when the policy is built) apart from the consent ledger and
the risk gate's table, which are read for every delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, cast

from .._message.envelope import Message
from .._message.frozen import FrozenDict
from .._message.payload import Classification, MetaValue
from .policy import (
    Decision,
    DeliveryCheck,
    PlannedPolicy,
    PlanStep,
    Policy,
    ScreenPart,
    VersionedPolicy,
    refusal,
)

__all__ = ["Check", "PolicyPlan", "Preparation", "Step", "TypePlan"]

ALLOW = Decision.ALLOW


class Step(NamedTuple):
    """One policy's place in a type's plan: what runs for each message."""

    policy: Policy
    run: PlanStep


class Check(NamedTuple):
    """What a message's steps left for each of its recipients, in the list's order."""

    policy: Policy
    check: DeliveryCheck


class Preparation(NamedTuple):
    """What the steps left for a message whose steps read only its envelope, remembered for
    the next message with the same envelope: the checks left for its recipients and the
    verdict if they all allow."""

    metadata: Mapping[str, MetaValue]  # held, so the key by its identity is not reused
    classification: Classification
    version: int  # what versioned steps read, when they read it
    checks: tuple[Check, ...]
    verdict: Decision


class TypePlan:
    """The plan for one message type, made once when its first message comes and never
    changed (a small class, as every class on genie's import path: no dataclass)."""

    __slots__ = ("clear", "memo", "steps", "unscreened", "watched")

    def __init__(
        self,
        steps: tuple[Step, ...],
        clear: Callable[[Message], bool] | None,
        unscreened: tuple[Step, ...],
        memo: dict[int, Preparation] | None,
        watched: VersionedPolicy | None,
    ) -> None:
        self.steps = steps  # every step that can decide a message of the type, in order
        self.clear = clear  # the screen of its content checks, if any
        self.unscreened = unscreened  # the steps left for a message the screen clears
        self.memo = memo  # by the metadata's identity; None: a step reads more than that
        self.watched = watched  # what the steps read that changes at run time


_MEMO_SIZE = 256  # distinct metadata in flight at once (a fan-out's replies share one)
_SCALARS = frozenset({str, int, float, bool, type(None)})


class PolicyPlan:
    """``decide(msg, recipient)`` equals the first deny of ``policies`` evaluated in order (a
    policy that raises denies, as ``admit`` says), else ``Decision.ALLOW``.

    It remembers the last message (by identity, as ``ContentView``): the dispatcher admits all
    the recipients of a message one after the other, so they share one preparation.
    """

    __slots__ = ("_by_type", "_checks", "_msg", "_seen", "_verdict", "_watched", "policies")

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)
        # One entry per message type met; types are the registered payload classes, so this
        # is bounded by the program, not by traffic.
        self._by_type: dict[str, TypePlan] = {}
        self._msg: Message | None = None
        self._checks: tuple[Check, ...] = ()
        self._verdict = ALLOW
        self._watched: VersionedPolicy | None = None  # what the last message's steps read
        self._seen = 0  # its version when they read it

    def decide(self, msg: Message, recipient: str) -> Decision:
        watched = self._watched
        # The preparation holds while what its steps read is unchanged (a risk gate's table).
        if msg is not self._msg or (watched is not None and watched.plan_version != self._seen):
            self._ready(msg)
        policy = None  # the policy whose check runs, named if it raises
        try:
            for policy, check in self._checks:  # noqa: B007
                decision = check(msg, recipient)
                if not decision.allowed:
                    return decision
        except KeyboardInterrupt:  # a Ctrl-C, not the policy's: sys.exit() in it denies
            raise
        except BaseException as exc:  # fail closed, as admit
            return refusal(cast(Policy, policy), exc)
        return self._verdict

    def allows_all(self, msg: Message) -> bool:
        """Whether ``decide(msg, r)`` allows every recipient ``r``: the steps left no check per
        recipient and allowed ``msg``. One question for a whole fan-out (the dispatcher then
        queues it in one call), prepared as ``decide`` prepares it, which then asks nothing
        again for the same message."""
        watched = self._watched
        if msg is not self._msg or (watched is not None and watched.plan_version != self._seen):
            self._ready(msg)
        return not self._checks and self._verdict is ALLOW

    def _ready(self, msg: Message) -> None:
        """Prepare ``msg``: its type's steps run (or their remembered outcome is taken), leaving
        ``_checks`` for each recipient and the ``_verdict`` if those all allow."""
        # Forgotten until the new preparation is whole: a step interrupted (Ctrl-C) leaves
        # no half-made preparation that a later delivery of ``msg`` could take as done.
        self._msg = None
        plan = self._by_type.get(msg.type)
        if plan is None:
            plan = self._by_type[msg.type] = self._compile(msg.type)
        steps, unscreened, memo = plan.steps, plan.unscreened, plan.memo
        if plan.clear is not None:
            try:
                if plan.clear(msg):
                    steps = unscreened  # the screened checks would all allow
            except KeyboardInterrupt:  # a Ctrl-C, not the policy's: sys.exit() in it denies
                raise
            except BaseException:  # the checks then run one by one, and say why
                pass
        watched = plan.watched
        now = 0 if watched is None else watched.plan_version  # before the steps read it
        if memo is None or steps is not unscreened:
            self._prepare(msg, steps, None, now)
        else:
            # Only steps that read the envelope remain: the same envelope, the same answer.
            meta = msg.metadata
            seen = memo.get(id(meta))
            if (
                seen is not None
                and seen.metadata is meta
                and seen.classification is msg.classification
                and seen.version == now
            ):
                self._checks, self._verdict = seen.checks, seen.verdict
            else:
                self._prepare(msg, steps, memo, now)
        self._msg, self._watched, self._seen = msg, watched, now

    def _prepare(
        self, msg: Message, steps: tuple[Step, ...], memo: dict[int, Preparation] | None, now: int
    ) -> None:
        """Run ``msg``'s steps and keep what they leave for its recipients (and the verdict if
        all those allow), remembered in ``memo`` when given and the envelope cannot change."""
        left: list[Check] = []
        verdict = ALLOW
        raised = False
        for policy, step in steps:
            try:
                out = step(msg)
            except KeyboardInterrupt:  # a Ctrl-C, not the policy's: sys.exit() in it denies
                raise
            except BaseException as exc:
                out, raised = refusal(policy, exc), True
            if out is ALLOW:
                continue
            if isinstance(out, Decision):
                if out.allowed:
                    continue
                verdict = out  # later policies cannot decide: this deny comes first
                break
            left.append(Check(policy, out))
        checks = tuple(left)
        meta = msg.metadata
        if memo is not None and not raised and _unchanging(meta):
            if len(memo) >= _MEMO_SIZE:
                memo.clear()  # envelopes come from traffic: keep the newest
            memo[id(meta)] = Preparation(meta, msg.classification, now, checks, verdict)
        self._checks, self._verdict = checks, verdict

    def _compile(self, message_type: str) -> TypePlan:
        compiled = [_compiled(policy, message_type) for policy in self.policies]
        entries = [entry for entry in compiled if entry is not None]
        steps = tuple(entry.step for entry in entries)
        screened: list[_Compiled] = []
        clear: Callable[[Message], bool] | None = None
        parts = [entry for entry in entries if entry.part is not None]
        if parts:
            # One screen a type: the largest group (the shipped policies share one content view).
            groups: dict[int, list[_Compiled]] = {}
            for entry in parts:
                groups.setdefault(id(cast(ScreenPart, entry.part).group), []).append(entry)
            screened = max(groups.values(), key=len)
            screen = cast(ScreenPart, screened[0].part).screen([e.part for e in screened])
            clear = screen.clear
        kept = [entry for entry in entries if entry not in screened]
        unscreened = steps if not screened else tuple(entry.step for entry in kept)
        memo: dict[int, Preparation] | None = None
        if kept and all(entry.reads_envelope for entry in kept):
            memo = {}
        versioned = [entry.versioned for entry in entries if entry.versioned is not None]
        watched: VersionedPolicy | None = None
        if len(versioned) == 1:
            watched = versioned[0]
        elif versioned:
            watched = _Versions(versioned)
        return TypePlan(steps, clear, unscreened, memo, watched)


class _Compiled:
    """One policy compiled for a message type, before the type's screen is chosen."""

    __slots__ = ("part", "reads_envelope", "step", "versioned")

    def __init__(
        self,
        step: Step,
        part: ScreenPart | None,
        reads_envelope: bool,
        versioned: VersionedPolicy | None,
    ) -> None:
        self.step = step
        self.part = part  # what it needs to allow a message, screened with the others
        self.reads_envelope = reads_envelope
        self.versioned = versioned


def _compiled(policy: Policy, message_type: str) -> _Compiled | None:
    """``policy`` as a step for ``message_type``; None when it allows every such message.
    A policy that cannot be compiled (its plan raises) runs as written, in order: its
    ``evaluate`` decides, and fails closed if it raises too."""
    planned = _planned(policy)
    if planned is not None:
        try:
            run = planned.plan_step(message_type)
            if run is None:
                return None
            return _Compiled(
                Step(planned, run),
                planned.screen_part(message_type),
                bool(planned.plan_reads_envelope),
                planned if isinstance(planned, VersionedPolicy) else None,
            )
        except Exception:
            pass
    return _Compiled(Step(policy, _opaque(policy)), None, False, None)


def _planned(policy: Policy) -> PlannedPolicy | None:
    """``policy`` when the plan may compile it: it opts in, for its own class."""
    try:
        if isinstance(policy, PlannedPolicy) and policy.plan_class is type(policy):
            return policy
    except Exception:  # a member that cannot be read: the policy runs as written, in order
        pass
    return None


class _Versions:
    """Several versioned policies as one: the sum of their versions, which only grow."""

    __slots__ = ("policies",)

    def __init__(self, policies: Sequence[VersionedPolicy]) -> None:
        self.policies = tuple(policies)

    @property
    def plan_version(self) -> int:
        return sum(policy.plan_version for policy in self.policies)


def _unchanging(meta: object) -> bool:
    """Metadata that can never change: frozen, each value a scalar or a tuple of strings, as
    validation leaves them (a list put inside a ``FrozenDict`` could change in place)."""
    if type(meta) is not FrozenDict:
        return False
    for value in meta.values():
        if type(value) is tuple:
            if not all(type(item) is str for item in value):
                return False
        elif type(value) not in _SCALARS:
            return False
    return True


def _opaque(policy: Policy) -> PlanStep:
    return lambda msg: policy.evaluate
