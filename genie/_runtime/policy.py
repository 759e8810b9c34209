"""Admission's vocabulary: a policy, its decision, the limits, and ``admit`` (fail closed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol

from .._base.record import Record
from .._errors import (
    ConfigurationError,
)
from .._message.envelope import Message

__all__ = ["Decision", "Limits", "Policy", "PolicyStatistics", "admit", "refusal"]


class Decision(Record):
    """The outcome of admission: allowed, or denied by ``policy`` for ``reason``."""

    allowed: bool
    policy: str = ""
    reason: str = ""

    ALLOW: ClassVar[Decision]

    @classmethod
    def deny(cls, policy: str, reason: str) -> Decision:
        return cls(False, policy, reason)


Decision.ALLOW = Decision(True)


class Policy(Protocol):
    """A governance rule, evaluated for every delivery before the recipient's mailbox.

    ``evaluate`` is synchronous and pure (it runs on the hot path). It returns
    ``Decision.ALLOW`` or ``Decision.deny(self.name, reason)``. If it raises, the delivery is
    denied (fail closed) with a reason that names the exception.
    """

    @property
    def name(self) -> str: ...

    def evaluate(self, msg: Message, recipient: str) -> Decision: ...


class Limits(Record):
    """The kill switch: a message storm stops at the hop limit or the correlation's budget,
    a model-calling loop at the correlation's token or cost budget.

    The budget counts deliveries (a message to N recipients costs N), so a fan-out storm is
    stopped as early as a chain. ``request_timeout`` bounds a ``ctx.request`` that sets none.
    ``correlation_tokens`` and ``correlation_cost`` (None: no limit) bound what the model
    calls a correlation's handlers make through ``ctx.llm`` may spend, each call's worst case
    reserved before it is sent (see docs/llm.md); the cost is in the price table's unit.
    """

    max_hops: int = 32
    correlation_budget: int = 10_000
    # A ``ctx.request`` without a timeout of its own waits at most this long, so two
    # agents requesting each other (each blocked, each the other's only worker) cannot
    # wedge for ever.
    request_timeout: float = 60.0
    correlation_tokens: int | None = None
    correlation_cost: float | None = None

    def __post_init__(self) -> None:
        if self.max_hops < 1 or self.correlation_budget < 1:
            raise ConfigurationError("limits: max_hops and correlation_budget must be at least 1")
        if not self.request_timeout > 0:
            raise ConfigurationError("limits: request_timeout must be positive (seconds)")
        tokens, cost = self.correlation_tokens, self.correlation_cost
        if tokens is not None and (type(tokens) is not int or tokens < 0):
            raise ConfigurationError(
                f"limits: correlation_tokens must be a whole number of tokens >= 0, not {tokens!r}"
            )
        if cost is not None and (
            isinstance(cost, bool) or not isinstance(cost, int | float) or not 0 <= cost < math.inf
        ):
            raise ConfigurationError(
                f"limits: correlation_cost must be a finite amount >= 0, not {cost!r}"
            )

    @property
    def model_budget(self) -> bool:
        """Whether model calls are budgeted (a token or a cost limit is set)."""
        return self.correlation_tokens is not None or self.correlation_cost is not None


HOP_LIMIT = "limit:hops"
BUDGET_LIMIT = "limit:budget"


def admit(
    msg: Message,
    recipient: str,
    deliveries_in_correlation: int,
    limits: Limits,
    policies: Sequence[Policy],
) -> Decision:
    """Limits first, then each policy in order; the first deny wins; an exception denies."""
    if msg.hops > limits.max_hops:
        return Decision.deny(
            HOP_LIMIT, f"hop limit {limits.max_hops} exceeded (message has {msg.hops} hops)"
        )
    if deliveries_in_correlation >= limits.correlation_budget:
        return Decision.deny(
            BUDGET_LIMIT,
            f"correlation budget of {limits.correlation_budget} deliveries exhausted",
        )
    for policy in policies:
        try:
            decision = policy.evaluate(msg, recipient)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # fail closed: whatever a policy raises denies
            # A policy is synchronous, so even a CancelledError out of it is its own bug, not
            # the runtime being cancelled: it denies like any other exception.
            return refusal(policy, exc)
        if not decision.allowed:
            return decision
    return Decision.ALLOW


class PolicyStatistics(Record):
    """Admission outcomes since the runtime started (deliveries, fallbacks and taps).

    ``allowed`` counts admissions every policy allowed; ``denied`` counts denials by policy
    name, including the limits (``limit:hops``, ``limit:budget``).
    """

    policies: tuple[str, ...]
    allowed: int
    denied: Mapping[str, int]

    def decisions(self) -> dict[tuple[str, str], int]:
        """``(policy, "allow" | "deny")`` -> count, per policy of the set.

        Policies run in order and the first deny wins, so policy *i* allowed everything every
        policy allowed plus everything a later policy denied: the runtime counts one number per
        admission and this derives the rest.
        """
        out: dict[tuple[str, str], int] = {}
        later = 0
        for name in reversed(self.policies):
            out[name, "allow"] = out.get((name, "allow"), 0) + self.allowed + later
            denied = self.denied.get(name, 0)
            out[name, "deny"] = denied
            later += denied
        return out


def refusal(policy: Policy, exc: BaseException) -> Decision:
    """The deny of a policy that raised ``exc``."""
    return Decision.deny(_policy_name(policy), f"policy raised {type(exc).__name__}: {exc}")


def _policy_name(policy: object) -> str:
    try:
        return str(policy.name)  # type: ignore[attr-defined]
    except Exception:
        return type(policy).__name__
