"""Admission: the limits and the governance policies, asked once for every consumer of a message.

A consumer is whoever would receive the message: an agent's mailbox, a fallback agent, a tap, or
a waiter (a ``ctx.request`` answers its requesting agent, an ``ask`` its caller, a gather the
consumer it names). Each is admitted under its own id, so a reply to ``"user"`` passes the same
policies as a delivery to an agent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .._message.envelope import Message
from .correlator import _Correlation
from .policy import Decision, Limits, Policy, PolicyStatistics, admit
from .policy_plan import PolicyPlan

__all__ = ["Admission"]


class Admission:
    def __init__(self, limits: Limits, policies: Sequence[Policy]) -> None:
        self.limits = limits
        self.policies = tuple(policies)
        # Decides exactly as ``admit`` over the same policies (tests/policies/test_plan.py).
        self.plan = PolicyPlan(self.policies)
        self.allowed = 0
        self.denials: Counter[str] = Counter()

    def admits_all(self, msg: Message, corr: _Correlation, count: int) -> bool:
        """Whether ``count`` more deliveries of ``msg`` are all allowed, whoever receives them:
        the hop limit and the correlation's budget hold for every one, and the policies (if
        any) allow ``msg`` with no check left per recipient (``PolicyPlan.allows_all``). One
        question decides a whole fan-out; when its answer is no, ``check`` decides each. The
        deliveries it admits are counted by ``passed``."""
        limits = self.limits
        return (
            msg.hops <= limits.max_hops
            and corr.deliveries + count <= limits.correlation_budget
            # No consumer here (a message forwarded or unrouted): nothing for the policies.
            and (not self.policies or not count or self.plan.allows_all(msg))
        )

    def passed(self, count: int) -> None:
        """``count`` deliveries were admitted by ``admits_all``: counted as allowed, as
        ``evaluate`` counts each it allows, when there are policies to allow them."""
        if self.policies:
            self.allowed += count

    def check(self, msg: Message, consumer: str, corr: _Correlation) -> Decision:
        """The decision for one delivery to ``consumer`` (the limits, then the policies)."""
        if self.admits_all(msg, corr, 1):
            self.passed(1)
            return Decision.ALLOW
        return self.evaluate(msg, consumer, corr.deliveries)

    def within_charged_budget(self, count: int, total: int) -> int:
        """Of ``count`` deliveries admitted here, how many the correlation's budget admits
        once every process together has charged ``total`` deliveries including them (the
        first ones: the budget is charged in order)."""
        return max(0, min(count, self.limits.correlation_budget - (total - count)))

    def over_charged_budget(self, msg: Message, consumer: str) -> Decision:
        """The denial of a delivery past the correlation's budget as charged across
        processes (``within_charged_budget`` left it out), counted as any denial."""
        return self.evaluate(msg, consumer, self.limits.correlation_budget)

    def evaluate(self, msg: Message, consumer: str, deliveries: int) -> Decision:
        limits = self.limits
        if msg.hops > limits.max_hops or deliveries >= limits.correlation_budget:
            decision = admit(msg, consumer, deliveries, limits, ())  # the limit's deny, worded
        else:
            decision = self.plan.decide(msg, consumer)
        return self._counted(decision)

    def judge(self, msg: Message, reader: str, *, counted: bool = True) -> Decision:
        """The policies' decision on ``msg`` for ``reader`` when ``msg`` is no new delivery: the
        limits are not asked (it is charged to no budget). What is judged once (a tool's
        result, a memory write or read, a failed delivery handed to its agent's fallback) is
        counted as a delivery's decision is; model text on its way out, judged at each
        release, is not (``counted=False``), as the text is judged again and again while it
        grows."""
        decision = self.plan.decide(msg, reader)
        return self._counted(decision) if counted else decision

    def _counted(self, decision: Decision) -> Decision:
        if decision.allowed:
            self.allowed += 1  # one count per decision; PolicyStatistics derives the rest
        else:
            self.denials[decision.policy] += 1
        return decision

    def statistics(self) -> PolicyStatistics:
        return PolicyStatistics(
            tuple(getattr(p, "name", type(p).__name__) for p in self.policies),
            self.allowed,
            dict(self.denials),
        )
