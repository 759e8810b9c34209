"""The policy plan: a runtime's policy list compiled so that each delivery pays only for what
can still decide it, with exactly the decisions of the list evaluated in order.

For each message type (on its first message) the plan keeps the policies that can apply to it:
a policy scoped to other types is dropped, and a DSL rule is partially evaluated on its
``type == ...`` comparisons. A policy splits its work in two (``_plan_step``): what depends on
the message alone runs once per message, in the list's order, and either decides (allow, or the
message's first deny) or leaves a check per delivery (a classification ceiling, the risk gate,
consent). The recipients of one message then pay for those checks only, which run in the
list's order before the message's first deny, so the first deny is the one the list finds.

A policy the plan does not know (a user's, or a subclass of a shipped one) is an opaque step:
its ``evaluate`` runs for every delivery at its place in the order, as the list runs it. The
shipped policies are pure (a decision depends on the message, the recipient and settings fixed
when the policy is built) apart from the consent ledger and the risk gate's table, which are
read for every delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from ._message import Message
from ._supervisor import Decision, Policy, refusal

__all__ = ["DeliveryCheck", "PlanStep", "PolicyPlan"]

ALLOW = Decision.ALLOW

DeliveryCheck = Callable[[Message, str], Decision]
"""What is left of a policy for each recipient of one message."""

PlanStep = Callable[[Message], "Decision | DeliveryCheck"]
"""A policy's work on one message: a decision, or the check each recipient still needs."""

_Compiler = Callable[[Policy, str], PlanStep | None]


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
        self._by_type: dict[str, tuple[tuple[Policy, PlanStep], ...]] = {}
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
        steps = self._by_type.get(msg.type)
        if steps is None:
            steps = self._by_type[msg.type] = self._compile(msg.type)
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

    def _compile(self, message_type: str) -> tuple[tuple[Policy, PlanStep], ...]:
        steps: list[tuple[Policy, PlanStep]] = []
        for policy in self.policies:
            # Trusted only from the policy's own class: a subclass may evaluate differently.
            compiler = cast(_Compiler | None, type(policy).__dict__.get("_plan_step"))
            if compiler is None:
                steps.append((policy, _opaque(policy)))
            elif (step := compiler(policy, message_type)) is not None:
                steps.append((policy, step))
        return tuple(steps)


def _opaque(policy: Policy) -> PlanStep:
    return lambda msg: policy.evaluate
