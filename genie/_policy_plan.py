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

A policy the plan does not know (a user's, or a subclass of a shipped one) is an opaque step:
its ``evaluate`` runs for every delivery at its place in the order, as the list runs it. The
shipped policies are pure (a decision depends on the message, the recipient and settings fixed
when the policy is built) apart from the consent ledger and the risk gate's table, which are
read for every delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from ._message import Message
from ._supervisor import Decision, Policy, refusal

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
# A type's plan: its steps, the screen of its content checks (or None), the steps it leaves.
_TypePlan = tuple[_Steps, Callable[[Message], bool] | None, _Steps]


class PolicyPlan:
    """``decide(msg, recipient)`` equals the first deny of ``policies`` evaluated in order (a
    policy that raises denies, as ``admit`` says), else ``Decision.ALLOW``.

    It remembers the last message (by identity, as ``ContentView``): the dispatcher admits all
    the recipients of a message one after the other, so they share one preparation.
    """

    __slots__ = ("_by_type", "_checks", "_msg", "_verdict", "policies")

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)
        # One entry per message type met; types are the registered payload classes, so this
        # is bounded by the program, not by traffic.
        self._by_type: dict[str, _TypePlan] = {}
        self._msg: Message | None = None
        self._checks: tuple[tuple[Policy, DeliveryCheck], ...] = ()
        self._verdict = ALLOW

    def decide(self, msg: Message, recipient: str) -> Decision:
        if msg is not self._msg:
            self._prepare(msg)
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

    def _prepare(self, msg: Message) -> None:
        plan = self._by_type.get(msg.type)
        if plan is None:
            plan = self._by_type[msg.type] = self._compile(msg.type)
        steps, clear, unscreened = plan
        if clear is not None:
            try:
                if clear(msg):
                    steps = unscreened  # the screened checks would all allow
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # the checks then run one by one, and say why
                pass
        checks: list[tuple[Policy, DeliveryCheck]] = []
        verdict = ALLOW
        for policy, step in steps:
            try:
                out = step(msg)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                out = refusal(policy, exc)
            if out is ALLOW:  # the common answer, without the type test
                continue
            if isinstance(out, Decision):
                if out.allowed:
                    continue
                verdict = out  # later policies cannot decide: this deny comes first
                break
            checks.append((policy, out))
        self._checks, self._verdict, self._msg = tuple(checks), verdict, msg

    def _compile(self, message_type: str) -> _TypePlan:
        steps: list[tuple[Policy, PlanStep]] = []
        parts: list[tuple[int, ScreenPart]] = []  # the step's index, its part
        for policy in self.policies:
            # Trusted only from the policy's own class: a subclass may evaluate differently.
            own = type(policy).__dict__
            compiler = cast(_Compiler | None, own.get("_plan_step"))
            if compiler is None:
                steps.append((policy, _opaque(policy)))
            elif (step := compiler(policy, message_type)) is not None:
                screener = cast(_Screener | None, own.get("_screen_part"))
                part = None if screener is None else screener(policy, message_type)
                if part is not None:
                    parts.append((len(steps), part))
                steps.append((policy, step))
        if not parts:
            return tuple(steps), None, tuple(steps)
        # One screen a type: the largest group (the shipped policies share one content view).
        groups: dict[int, list[tuple[int, ScreenPart]]] = {}
        for index, part in parts:
            groups.setdefault(id(part.group), []).append((index, part))
        group = max(groups.values(), key=len)
        screened = {index for index, _ in group}
        screen = group[0][1].screen([part for _, part in group])
        unscreened = tuple(s for i, s in enumerate(steps) if i not in screened)
        return tuple(steps), screen.clear, unscreened


def _opaque(policy: Policy) -> PlanStep:
    return lambda msg: policy.evaluate
