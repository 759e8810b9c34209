"""Admission's vocabulary: a policy, its decision, how it opts into the compiled plan, the
limits, and ``admit`` (fail closed)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from .._base.clock import spelt
from .._base.record import Record
from .._errors import (
    ConfigurationError,
    InvalidArgumentError,
    described,
)
from .._message.envelope import Message

__all__ = [
    "Decision",
    "DeclaredPolicy",
    "DeliveryCheck",
    "Limits",
    "PlanStep",
    "PlannedPolicy",
    "Policy",
    "PolicyStatistics",
    "Screen",
    "ScreenPart",
    "VersionedPolicy",
    "admit",
    "checked_policies",
    "refusal",
]


class Decision(Record):
    """The outcome of admission: allowed, or denied by ``policy`` for ``reason``."""

    allowed: bool
    policy: str = ""
    reason: str = ""

    ALLOW: ClassVar[Decision]

    def __post_init__(self) -> None:
        # A denial is audited, counted and reported by its policy and reason, so it must have
        # both, as text; and only a bool says yes or no ("no" is a true value).
        if not isinstance(self.allowed, bool):
            raise InvalidArgumentError(
                f"Decision(allowed=...) takes True or False, not {spelt(self.allowed)}"
            )
        if not self.allowed and not (_named(self.policy) and _named(self.reason)):
            raise InvalidArgumentError(
                "a denial names its policy and its reason, each non-empty text, not "
                f"Decision.deny({_shown(self.policy)}, {_shown(self.reason)})"
            )

    @classmethod
    def deny(cls, policy: str, reason: str) -> Decision:
        return cls(False, policy, reason)


Decision.ALLOW = Decision(True)


def _named(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _shown(value: object) -> str:
    """A refused name or reason as the error quotes it: text is not shown (a reason may hold
    what the message said), only whether it was there."""
    if isinstance(value, str):
        return "'...'" if value else "''"
    return spelt(value)


class Policy(Protocol):
    """A governance rule, evaluated for every delivery before the recipient's mailbox.

    ``evaluate`` is synchronous and pure (the plan may run what depends on the message alone
    once for all its recipients: ``PlannedPolicy``). It returns
    ``Decision.ALLOW`` or ``Decision.deny(self.name, reason)``. If it raises, the delivery is
    denied (fail closed) with a reason that names the exception.
    """

    @property
    def name(self) -> str: ...

    def evaluate(self, msg: Message, recipient: str) -> Decision: ...


@runtime_checkable
class DeclaredPolicy(Policy, Protocol):
    """A policy that declares what it decides by: the processes of one NATS namespace
    compare it (docs/scale-out.md, "One pipeline, one wire"), so that two workers that
    would admit one message differently (another role map, another ceiling) never share a
    namespace. A policy that does not declare it is compared by its name and class alone.
    """

    @property
    def settings(self) -> Mapping[str, object]:
        """The settings fixed when the policy was built, as JSON data in an order that does
        not depend on the process (sets as sorted lists): not what it learns as it runs (a
        consent ledger's grants, the risk gate's table of the agents it was bound to)."""
        ...


# --- how a policy opts into the compiled plan (``PolicyPlan``) ------------------------------

DeliveryCheck = Callable[[Message, str], Decision]
"""What is left of a policy for each recipient of one message."""

PlanStep = Callable[[Message], "Decision | DeliveryCheck"]
"""A policy's work on one message: a decision, or the check each recipient still needs."""


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


@runtime_checkable
class PlannedPolicy(Policy, Protocol):
    """A policy that opts into the compiled plan (``PolicyPlan``), promising that the plan
    decides as its ``evaluate`` does for every message and recipient. The plan runs what
    depends on the message alone once per message, and for each recipient only what depends
    on the recipient; a policy that does not opt in is asked about every delivery.

    The plan trusts these members only on an instance of ``plan_class`` itself: a subclass
    inherits them but may decide differently (it overrides ``evaluate``), so it runs as an
    opaque step unless it names itself as ``plan_class``.
    """

    @property
    def plan_class(self) -> type[object]:
        """The class whose ``evaluate`` the plan step reproduces."""
        ...

    @property
    def plan_reads_envelope(self) -> bool:
        """True when the steps read only the message's type, classification and metadata
        (and what a ``VersionedPolicy`` counts), so the same envelope gets the same answer."""
        ...

    def plan_step(self, message_type: str) -> PlanStep | None:
        """The policy's work on a message of this type, or None when it allows every one."""
        ...

    def screen_part(self, message_type: str) -> ScreenPart | None:
        """What the step needs to allow a message of this type, checked with the other content
        checks' parts; None when it has no such part. A message the screen clears skips the
        step, so the part must never clear a message the step would deny or fail on."""
        ...


@runtime_checkable
class VersionedPolicy(Protocol):
    """A planned policy whose step reads what changes at run time (the risk gate's table):
    each change adds one to ``plan_version``, and the plan reads it for every delivery."""

    @property
    def plan_version(self) -> int: ...


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
        except KeyboardInterrupt:  # a Ctrl-C, not the policy's: sys.exit() in it denies
            raise
        except BaseException as exc:  # fail closed: whatever a policy raises denies
            # A policy is synchronous, so even a CancelledError out of it is its own bug, not
            # the runtime being cancelled: it denies like any other exception.
            return refusal(policy, exc)
        if not decision.allowed:
            return decision
    return Decision.ALLOW


class PolicyStatistics(Record):
    """The policies' decisions since the runtime started, on what they decide once:
    deliveries (to agents, fallbacks, taps and waiters), tool calls and their results, memory
    writes and reads; not model text, judged again at each release as it grows.

    ``allowed`` counts decisions every policy allowed; ``denied`` counts denials by policy
    name, including the limits (``limit:hops``, ``limit:budget``: deliveries and tool calls).
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
    return Decision.deny(_policy_name(policy), f"policy raised {described(exc)}")


def _policy_name(policy: object) -> str:
    """The name a denial by ``policy`` is given: its own, else its class's (a deny names the
    policy that fired, whatever the policy says its name is)."""
    try:
        name = str(policy.name)  # type: ignore[attr-defined]
    except Exception:
        name = ""
    return name or type(policy).__name__


def checked_policies(policies: object) -> tuple[Policy, ...]:
    """``Runtime(policies=...)`` as the runtime keeps them, each checked to be a policy when the
    runtime is made: a mistake there would otherwise show only as every delivery denied (a
    policy that raises fails closed), far from the line that made it. A policy that learns the
    runtime's agents (``for_runtime``: the risk gate) is kept as a copy of the runtime's own,
    so runtimes given one policy list never gate by each other's agents."""
    if isinstance(policies, str | bytes) or not isinstance(policies, Iterable):
        hint = " (give () for none)" if policies is None else ""
        if isinstance(getattr(policies, "policies", None), Sequence):
            hint = ": give its .policies, the list a policy file builds"
        raise ConfigurationError(
            f"Runtime(policies=...) takes a sequence of policies, not {type(policies).__name__}"
            + hint
        )
    kept = tuple(policies)
    for i, policy in enumerate(kept):
        if isinstance(policy, type):
            what = (
                f"the class {policy.__name__}, not one of its policies: give {policy.__name__}(...)"
            )
        elif not callable(getattr(policy, "evaluate", None)):
            what = (
                f"not a policy: its type, {type(policy).__name__}, has no "
                "evaluate(msg, recipient) returning a Decision"
            )
        else:
            continue
        raise ConfigurationError(f"Runtime(policies=...)[{i}] is {what}")
    return tuple(_own(policy) for policy in kept)


def _own(policy: Policy) -> Policy:
    """The runtime's own copy of ``policy`` when its class makes one (``for_runtime``, looked
    up on the class: a wrapper that hands on its attributes would give back what it wraps,
    and the runtime would drop the wrapper)."""
    own = getattr(type(policy), "for_runtime", None)
    if not callable(own):
        return policy
    copied: Policy = own(policy)
    if type(copied) is not type(policy):
        name = type(policy).__name__
        raise ConfigurationError(
            f"{name}.for_runtime() gave a {type(copied).__name__}: it must give a {name}"
        )
    return copied
