"""The policy plan: a runtime's policy list compiled so that each delivery pays only for what
can still decide it, with exactly the decisions of the list evaluated in order.

For each message type (on its first message) the plan keeps the policies that can apply to it:
a policy scoped to other types is dropped, and a DSL rule is partially evaluated on its
``type == ...`` comparisons. A policy splits its work in two (``_plan_step``): what depends on
the message alone runs once per message, in the list's order, and either decides (allow, or the
message's first deny) or leaves a check per delivery (a classification ceiling, the risk gate,
consent). The recipients of one message then pay for those checks only, which run in the
list's order before the message's first deny, so the first deny is the one the list finds.

Content checks (the PII, injection, length and ``content contains`` checks of the shipped
policies) can also say what they need to allow a message (``_screen_part``): the plan joins
those of one type into a screen, a few tests in C over the text they share, and for a message
the screen clears, skips them (they would all allow); otherwise they run at their places.

A shipped policy whose step reads only the envelope (the message's type, classification and
metadata) says so (``_plan_memo``). When every step left for a message is one of those (the
common case: a reply whose screen clears, leaving the classification ceiling, data residency
and the risk gate), the plan answers from a memo by the metadata's identity and the
classification: a fan-out's replies share their request's frozen metadata, so they are decided
by one dict lookup instead of a call per step. Only metadata that cannot change is memoised
(frozen, scalars or tuples of strings), the memo holds the metadata it is keyed by (so the id is
not reused), it is bounded, and a step that raises is not memoised. A step that reads what
changes at run time (the risk gate's table) has a ``_plan_version`` that each change bumps: the
plan reads it for every delivery, so neither the memo nor a message's preparation outlives it.

A policy the plan does not know (a user's, or a subclass of a shipped one) is an opaque step:
its ``evaluate`` runs for every delivery at its place in the order, as the list runs it. The
shipped policies are pure (a decision depends on the message, the recipient and settings fixed
when the policy is built) apart from the consent ledger and the risk gate's table, which are
read for every delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from .._message.envelope import Message
from .._message.freeze import FrozenDict
from .._message.payload import Classification
from .policy import Decision, Policy, refusal

__all__ = ["DeliveryCheck", "PlanStep", "PolicyPlan", "Screen", "ScreenPart"]

ALLOW = Decision.ALLOW

DeliveryCheck = Callable[[Message, str], Decision]
"""What is left of a policy for each recipient of one message."""

PlanStep = Callable[[Message], "Decision | DeliveryCheck"]
"""A policy's work on one message: a decision, or the check each recipient still needs."""

_Compiler = Callable[[Policy, str], PlanStep | None]


class Screen(Protocol):
    def clear(self, msg: Message) -> bool:
        """True only when every check the screen was built from allows ``msg``."""
        ...


class ScreenPart(Protocol):
    """What one check needs to allow a message. Parts of one ``group`` are screened together
    (``screen``)."""

    @property
    def group(self) -> object: ...

    def screen(self, parts: Sequence[Any]) -> Screen: ...


_Screener = Callable[[Policy, str], ScreenPart | None]
_Steps = tuple[tuple[Policy, PlanStep], ...]
_Checks = tuple[tuple[Policy, DeliveryCheck], ...]
# By the metadata's id: the metadata (held, so its id is not reused), the classification, the
# version of what the steps read (``_Versioned``), the checks left and the verdict.
_Memo = dict[int, tuple[object, Classification, int, _Checks, Decision]]
# A type's plan: its steps, the screen of its content checks (or None), the steps it leaves,
# their memo (None: a step reads more than the envelope) and what its steps read that changes.
_TypePlan = tuple[
    _Steps, Callable[[Message], bool] | None, _Steps, _Memo | None, "_Versioned | None"
]
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
        self._by_type: dict[str, _TypePlan] = {}
        self._msg: Message | None = None
        self._checks: _Checks = ()
        self._verdict = ALLOW
        self._watched: _Versioned | None = None  # what the preparation's steps read that changes
        self._seen = 0  # its version then

    def decide(self, msg: Message, recipient: str) -> Decision:
        watched = self._watched
        # The preparation holds while what its steps read is unchanged (a risk gate's table).
        if msg is not self._msg or (watched is not None and watched._plan_version != self._seen):
            plan = self._by_type.get(msg.type)
            if plan is None:
                plan = self._by_type[msg.type] = self._compile(msg.type)
            steps, clear, unscreened, memo, watched = plan
            if clear is not None:
                try:
                    if clear(msg):
                        steps = unscreened  # the screened checks would all allow
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException:  # the checks then run one by one, and say why
                    pass
            now = 0 if watched is None else watched._plan_version  # before the steps read it
            if memo is None or steps is not unscreened:
                checks, verdict = self._run(msg, steps, None, now)
            else:
                # Only steps that read the envelope remain: the same envelope, the same answer.
                # (In line: a Python call less for most replies of a fan-out.)
                meta = msg.metadata
                seen = memo.get(id(meta))
                if (
                    seen is not None
                    and seen[0] is meta
                    and seen[1] is msg.classification
                    and seen[2] == now
                ):
                    checks, verdict = seen[3], seen[4]
                else:
                    checks, verdict = self._run(msg, steps, memo, now)
            # Set together, once the steps ran: a step interrupted leaves the last message's.
            self._checks, self._verdict, self._msg = checks, verdict, msg
            self._watched, self._seen = watched, now
        policy = None  # the policy whose check runs, named if it raises
        try:
            for policy, check in self._checks:  # noqa: B007
                decision = check(msg, recipient)
                if not decision.allowed:
                    return decision
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # fail closed, as admit
            return refusal(cast(Policy, policy), exc)
        return self._verdict

    def _run(
        self, msg: Message, steps: _Steps, memo: _Memo | None, now: int
    ) -> tuple[_Checks, Decision]:
        """Run ``msg``'s steps: the checks they leave and the verdict; into ``memo`` if given."""
        left: list[tuple[Policy, DeliveryCheck]] = []
        verdict = ALLOW
        raised = False
        for policy, step in steps:
            try:
                out = step(msg)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                out, raised = refusal(policy, exc), True
            if out is ALLOW:  # the common answer, without the type test
                continue
            if isinstance(out, Decision):
                if out.allowed:
                    continue
                verdict = out  # later policies cannot decide: this deny comes first
                break
            left.append((policy, out))
        checks = tuple(left)
        meta = msg.metadata
        if memo is not None and not raised and _unchanging(meta):
            if len(memo) >= _MEMO_SIZE:
                memo.clear()  # envelopes come from traffic: keep the newest
            memo[id(meta)] = (meta, msg.classification, now, checks, verdict)
        return checks, verdict

    def _compile(self, message_type: str) -> _TypePlan:
        steps: list[tuple[Policy, PlanStep]] = []
        parts: list[tuple[int, ScreenPart]] = []  # the step's index, its part
        memoised: list[bool] = []  # the step's ``_plan_memo``
        for policy in self.policies:
            # Trusted only from the policy's own class: a subclass may evaluate differently.
            own = type(policy).__dict__
            compiler = cast(_Compiler | None, own.get("_plan_step"))
            if compiler is None:
                steps.append((policy, _opaque(policy)))
                memoised.append(False)
            elif (step := compiler(policy, message_type)) is not None:
                screener = cast(_Screener | None, own.get("_screen_part"))
                part = None if screener is None else screener(policy, message_type)
                if part is not None:
                    parts.append((len(steps), part))
                steps.append((policy, step))
                memoised.append(bool(own.get("_plan_memo")))
        every = tuple(steps)
        screened: set[int] = set()
        clear: Callable[[Message], bool] | None = None
        if parts:
            # One screen a type: the largest group (the shipped policies share one content view).
            groups: dict[int, list[tuple[int, ScreenPart]]] = {}
            for index, part in parts:
                groups.setdefault(id(part.group), []).append((index, part))
            group = max(groups.values(), key=len)
            screened = {index for index, _ in group}
            clear = group[0][1].screen([part for _, part in group]).clear
        kept = [i for i in range(len(steps)) if i not in screened]
        unscreened = every if not screened else tuple(steps[i] for i in kept)
        memo: _Memo | None = None
        if kept and all(memoised[i] for i in kept):
            memo = {}
        versioned = [
            cast(_Versioned, policy)
            for policy, _ in every
            if "_plan_version" in type(policy).__dict__
        ]
        watched: _Versioned | None = None
        if len(versioned) == 1:
            watched = versioned[0]
        elif versioned:
            watched = _Versions(versioned)
        return every, clear, unscreened, memo, watched


class _Versioned(Protocol):
    """A shipped policy whose plan step reads what changes at run time (the risk gate's
    table): each change adds one to ``_plan_version``, and the plan reads it per delivery."""

    @property
    def _plan_version(self) -> int: ...


class _Versions:
    """Several versioned policies as one: the sum of their versions, which only grow."""

    __slots__ = ("policies",)

    def __init__(self, policies: Sequence[_Versioned]) -> None:
        self.policies = tuple(policies)

    @property
    def _plan_version(self) -> int:
        return sum(policy._plan_version for policy in self.policies)


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
