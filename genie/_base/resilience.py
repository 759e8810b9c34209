"""Failure handling shared by the runtime and the LLM layer: how often to retry, and a
circuit breaker that stops calling what keeps failing."""

from __future__ import annotations

import math
from typing import Literal

from .._errors import (
    CircuitOpenError,
    ConfigurationError,
    DeniedError,
    InvalidOutputError,
    LimitExceededError,
    MessageError,
    PublishFromHandlerError,
    UnhandledMessageError,
    WaitFromHandlerError,
)
from .record import Record

__all__ = [
    "NOT_RETRYABLE",
    "BreakerPolicy",
    "CircuitBreaker",
    "RetryPolicy",
    "at_least",
    "backoff_after",
    "positive_seconds",
]


def at_least(value: object, least: float, *, strictly: bool = False) -> bool:
    """Whether ``value`` is a number (a bool is not) of at least ``least`` (more than it,
    ``strictly``). NaN never is: an option of NaN seconds is refused when it is made, not by
    the first sleep that reads it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value > least if strictly else value >= least


def positive_seconds(value: object, argument: str, of: str = "") -> None:
    """Refuse ``value`` for ``argument`` (of ``of``: who takes it, in words) unless it is
    None or a number of seconds above 0: a deadline of 0 or less is due before the work
    starts, most likely a sign slip, and is told where it is given, not by the first wait."""
    if value is not None and not at_least(value, 0, strictly=True):
        error = ConfigurationError(
            f"{of}{': ' if of else ''}{argument} must be a positive number of seconds or "
            f"None, not {value!r}"
        )
        error.argument = argument
        raise error


# Errors that a retry cannot fix: the same input fails the same way.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    MessageError,
    InvalidOutputError,
    UnhandledMessageError,
    CircuitOpenError,
    LimitExceededError,
    PublishFromHandlerError,
    WaitFromHandlerError,
    DeniedError,  # a policy's no: a tool call, a memory write or read, a request, a residency
)


def backoff_after(attempt: int, backoff: float, multiplier: float, cap: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): ``backoff`` grown by
    ``multiplier`` each attempt, at most ``cap``; a number for any numbers the options take."""
    if not backoff:
        return 0.0  # nothing grows: 0 times an infinite multiplier would be NaN
    try:
        grown = backoff * multiplier ** (attempt - 1)
    except OverflowError:  # past any float (1e300 ** 2): past the cap too
        grown = math.inf
    return float(min(grown, cap))


class RetryPolicy(Record):
    """How often a failed handler is tried again, and after how long (exponential backoff).

    ``attempts`` counts the first call: 1 means no retry. Only exceptions that are instances of
    ``retry_on`` and not of the built-in non-retryable errors (validation, bad output, no
    handler, open circuit, a limit that refused a model call, a policy's denial, a send or a
    wait the runtime refused inside a handler) are retried.
    """

    attempts: int = 1
    backoff: float = 0.05
    multiplier: float = 2.0
    max_backoff: float = 5.0
    retry_on: tuple[type[Exception], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not (
            isinstance(self.attempts, int)
            and at_least(self.attempts, 1)
            and at_least(self.backoff, 0)
            and at_least(self.multiplier, 1)
            and at_least(self.max_backoff, 0)
        ):
            raise ConfigurationError(
                "retry: attempts >= 1, backoff >= 0, multiplier >= 1 and max_backoff >= 0 "
                f"(numbers), not {self.attempts!r}, {self.backoff!r}, {self.multiplier!r}, "
                f"{self.max_backoff!r}"
            )

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return (
            attempt < self.attempts
            and isinstance(exc, self.retry_on)
            and not isinstance(exc, NOT_RETRYABLE)
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return backoff_after(attempt, self.backoff, self.multiplier, self.max_backoff)


class BreakerPolicy(Record):
    """Open after ``failure_threshold`` consecutive failures; try again after ``reset_after``."""

    failure_threshold: int = 5
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        threshold = self.failure_threshold
        if not (
            isinstance(threshold, int) and at_least(threshold, 1) and at_least(self.reset_after, 0)
        ):
            raise ConfigurationError(
                "breaker: failure_threshold >= 1 and reset_after >= 0 (numbers), not "
                f"{self.failure_threshold!r}, {self.reset_after!r}"
            )


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

    def abandon_trial(self) -> None:
        """The trial call ended without an outcome (cancelled, or the runtime stopped): it says
        nothing of the agent's health, so the breaker stays open and the next call may be the
        trial."""
        self._trial = False

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.policy.failure_threshold:
            self._opened_at = now
            self._trial = False
