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

    def check(self, msg: Message, consumer: str, corr: _Correlation) -> Decision:
        """The decision for one delivery: the limits, then the policies' plan, its decision
        counted as ``evaluate`` counts it. With no policies, a delivery within the limits is
        allowed at once."""
        limits = self.limits
        if msg.hops > limits.max_hops or corr.deliveries >= limits.correlation_budget:
            return self.evaluate(msg, consumer, corr.deliveries)
        if not self.policies:
            return Decision.ALLOW
        # Within the limits the plan decides, as in ``evaluate``: every consumer of a message
        # passes the same policies, in order, and the first deny is the one recorded.
        decision = self.plan.decide(msg, consumer)
        if decision.allowed:
            self.allowed += 1
        else:
            self.denials[decision.policy] += 1
        return decision

    def evaluate(self, msg: Message, consumer: str, deliveries: int) -> Decision:
        limits = self.limits
        if msg.hops > limits.max_hops or deliveries >= limits.correlation_budget:
            decision = admit(msg, consumer, deliveries, limits, ())  # the limit's deny, worded
        else:
            decision = self.plan.decide(msg, consumer)
        if decision.allowed:
            self.allowed += 1  # one count per admission; PolicyStatistics derives the rest
        else:
            self.denials[decision.policy] += 1
        return decision

    def statistics(self) -> PolicyStatistics:
        return PolicyStatistics(
            tuple(getattr(p, "name", type(p).__name__) for p in self.policies),
            self.allowed,
            dict(self.denials),
        )
