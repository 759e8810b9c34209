"""The supervisor's parts: admission (limits and policies, fail closed) and failure handling
(retry policy, circuit breaker), plus the per-agent options that configure them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal, Protocol

from ._errors import (
    CircuitOpenError,
    ConfigurationError,
    InvalidOutputError,
    LimitExceededError,
    MessageError,
    UnhandledMessageError,
)
from ._message import Message
from ._record import Record, set_field

__all__ = [
    "AgentOptions",
    "BreakerPolicy",
    "CircuitBreaker",
    "Decision",
    "Limits",
    "Policy",
    "PolicyStatistics",
    "RetryPolicy",
    "admit",
    "refusal",
]


class Decision(Record):
    """The outcome of admission: allowed, or denied by ``policy`` for ``reason``."""

    __slots__ = ("allowed", "policy", "reason")
    __match_args__ = ("allowed", "policy", "reason")
    allowed: bool
    policy: str
    reason: str

    ALLOW: ClassVar[Decision]

    def __init__(self, allowed: bool, policy: str = "", reason: str = "") -> None:
        set_field(self, "allowed", allowed)
        set_field(self, "policy", policy)
        set_field(self, "reason", reason)

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

    __slots__ = (
        "correlation_budget",
        "correlation_cost",
        "correlation_tokens",
        "max_hops",
        "request_timeout",
    )
    __match_args__ = (
        "max_hops",
        "correlation_budget",
        "request_timeout",
        "correlation_tokens",
        "correlation_cost",
    )
    max_hops: int
    correlation_budget: int
    request_timeout: float
    correlation_tokens: int | None
    correlation_cost: float | None

    def __init__(
        self,
        max_hops: int = 32,
        correlation_budget: int = 10_000,
        # A ``ctx.request`` without a timeout of its own waits at most this long, so two
        # agents requesting each other (each blocked, each the other's only worker) cannot
        # wedge for ever.
        request_timeout: float = 60.0,
        correlation_tokens: int | None = None,
        correlation_cost: float | None = None,
    ) -> None:
        set_field(self, "max_hops", max_hops)
        set_field(self, "correlation_budget", correlation_budget)
        set_field(self, "request_timeout", request_timeout)
        set_field(self, "correlation_tokens", correlation_tokens)
        set_field(self, "correlation_cost", correlation_cost)
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

    __slots__ = ("allowed", "denied", "policies")
    __match_args__ = ("policies", "allowed", "denied")
    policies: tuple[str, ...]
    allowed: int
    denied: Mapping[str, int]

    def __init__(self, policies: tuple[str, ...], allowed: int, denied: Mapping[str, int]) -> None:
        set_field(self, "policies", policies)
        set_field(self, "allowed", allowed)
        set_field(self, "denied", denied)

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


# Errors that a retry cannot fix: the same input fails the same way.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    MessageError,
    InvalidOutputError,
    UnhandledMessageError,
    CircuitOpenError,
    LimitExceededError,
)


class RetryPolicy(Record):
    """How often a failed handler is tried again, and after how long (exponential backoff).

    ``attempts`` counts the first call: 1 means no retry. Only exceptions that are instances of
    ``retry_on`` and not of the built-in non-retryable errors (validation, bad output, no
    handler, open circuit, a limit that refused a model call) are retried.
    """

    __slots__ = ("attempts", "backoff", "max_backoff", "multiplier", "retry_on")
    __match_args__ = ("attempts", "backoff", "multiplier", "max_backoff", "retry_on")
    attempts: int
    backoff: float
    multiplier: float
    max_backoff: float
    retry_on: tuple[type[Exception], ...]

    def __init__(
        self,
        attempts: int = 1,
        backoff: float = 0.05,
        multiplier: float = 2.0,
        max_backoff: float = 5.0,
        retry_on: tuple[type[Exception], ...] = (Exception,),
    ) -> None:
        set_field(self, "attempts", attempts)
        set_field(self, "backoff", backoff)
        set_field(self, "multiplier", multiplier)
        set_field(self, "max_backoff", max_backoff)
        set_field(self, "retry_on", retry_on)
        if self.attempts < 1 or self.backoff < 0 or self.multiplier < 1 or self.max_backoff < 0:
            raise ConfigurationError(
                "retry: attempts >= 1, backoff >= 0, multiplier >= 1 and max_backoff >= 0"
            )

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return (
            attempt < self.attempts
            and isinstance(exc, self.retry_on)
            and not isinstance(exc, NOT_RETRYABLE)
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff * self.multiplier ** (attempt - 1), self.max_backoff))


class BreakerPolicy(Record):
    """Open after ``failure_threshold`` consecutive failures; try again after ``reset_after``."""

    __slots__ = ("failure_threshold", "reset_after")
    __match_args__ = ("failure_threshold", "reset_after")
    failure_threshold: int
    reset_after: float

    def __init__(self, failure_threshold: int = 5, reset_after: float = 30.0) -> None:
        set_field(self, "failure_threshold", failure_threshold)
        set_field(self, "reset_after", reset_after)


_NO_RETRY = RetryPolicy()
_DEFAULT_BREAKER = BreakerPolicy()


class CircuitBreaker:
    """Per-agent breaker: closed → open (calls refused) → half-open (one trial) → closed."""

    __slots__ = ("_opened_at", "_trial", "failures", "policy")

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        # Consecutive failures (read-only outside the breaker). A plain attribute, not a
        # property: the supervisor reads it after every handler, and only a breaker with
        # failures can be tripped, so one read decides the common case.
        self.failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def tripped(self) -> bool:
        """Open or half-open: calls must ask ``allow`` first (never without ``failures``)."""
        return self._opened_at is not None

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._trial else "open"

    def allow(self, now: float) -> bool:
        if self._opened_at is None:
            return True
        if self._trial:
            return False  # one trial call at a time while half-open
        if now - self._opened_at >= self.policy.reset_after:
            self._trial = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._trial = False

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.policy.failure_threshold:
            self._opened_at = now
            self._trial = False


Overflow = Literal["overdraft", "shed"]


class AgentOptions(Record):
    """How the runtime hosts one agent.

    ``mailbox_size`` bounds what outside publishers can queue (they wait, or get
    ``WouldBlockError``). Sends from handlers never wait, so cycles cannot deadlock: with
    ``overflow="overdraft"`` (default) they are queued past the bound and counted; with
    ``"shed"`` they are shed, recorded and reported to waiting gathers.
    """

    __slots__ = (
        "breaker",
        "deadline",
        "fallback",
        "mailbox_size",
        "max_concurrency",
        "overflow",
        "retry",
    )
    __match_args__ = (
        "mailbox_size",
        "max_concurrency",
        "deadline",
        "retry",
        "breaker",
        "fallback",
        "overflow",
    )
    mailbox_size: int
    max_concurrency: int
    deadline: float | None
    retry: RetryPolicy
    breaker: BreakerPolicy | None
    fallback: str | None
    overflow: Overflow

    def __init__(
        self,
        mailbox_size: int = 1024,
        max_concurrency: int = 1,
        deadline: float | None = None,
        # Frozen values: one default instance serves every options object.
        retry: RetryPolicy = _NO_RETRY,
        breaker: BreakerPolicy | None = _DEFAULT_BREAKER,
        fallback: str | None = None,
        overflow: Overflow = "overdraft",
    ) -> None:
        set_field(self, "mailbox_size", mailbox_size)
        set_field(self, "max_concurrency", max_concurrency)
        set_field(self, "deadline", deadline)
        set_field(self, "retry", retry)
        set_field(self, "breaker", breaker)
        set_field(self, "fallback", fallback)
        set_field(self, "overflow", overflow)
        if self.mailbox_size < 1 or self.max_concurrency < 1:
            raise ConfigurationError("mailbox_size and max_concurrency must be at least 1")
        if self.deadline is not None and self.deadline <= 0:
            raise ConfigurationError("deadline must be positive (seconds) or None")
        if self.overflow not in ("overdraft", "shed"):
            raise ConfigurationError(
                f"overflow must be 'overdraft' or 'shed', not {self.overflow!r}"
            )
