"""Every error the LLM layer raises, under :class:`genie.GenieError`.

::

    GenieError
    └── LLMError                       a model call failed or was refused
        ├── ProviderError              the provider answered with an error status
        │   ├── BadRequestError        4xx other than 401/403/408/409/429: never retried
        │   ├── AuthenticationError    401, 403: the key is missing, wrong or not allowed
        │   ├── RateLimitedError       429: retried after ``retry_after``
        │   └── ProviderUnavailableError  408, 409, 5xx: retried
        ├── ProviderConnectionError    no answer: connect failure, reset, disconnect mid-stream
        ├── ProviderResponseError      an answer we cannot read (malformed JSON, wrong shape)
        ├── LLMTimeoutError            the call's deadline passed (over all its attempts)
        ├── LLMCircuitOpenError        the provider's circuit breaker is open: nothing was sent
        ├── ResidencyDeniedError       the data may not go to the provider's region: nothing sent
        │                              (also a genie.DeniedError, policy "residency": never retried)
        ├── BudgetExceededError        a token or cost budget would be overrun: nothing was sent
        │                              (also a genie.LimitExceededError: never retried)
        └── AllProvidersFailedError    every provider of a fallback chain failed or was skipped

``retryable`` says whether the retry wrapper may try again. Errors that refuse a call before it
is sent say so in ``sent`` (False), which is what the kill switch's tests assert.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import DeniedError, GenieError, LimitExceededError

__all__ = [
    "AllProvidersFailedError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "LLMCircuitOpenError",
    "LLMError",
    "LLMTimeoutError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "ResidencyDeniedError",
]

EXCERPT_LIMIT = 512
"""Characters of an error body kept in an error: enough to read the provider's reason, bounded
so a 10 MB HTML error page does not end up in a log line or an audit record."""


class LLMError(GenieError):
    """A model call failed or was refused; ``provider`` names the provider it concerns."""

    retryable = False
    sent = True

    def __init__(self, message: str, *, provider: str = "", **ids: str | None) -> None:
        super().__init__(message, **ids)
        self.provider = provider


class ProviderError(LLMError):
    """The provider answered with an error status."""

    def __init__(
        self,
        *,
        provider: str,
        status: int,
        request_id: str | None,
        excerpt: str,
        retry_after: float | None = None,
    ) -> None:
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"{provider} answered HTTP {status}{rid}: {excerpt}", provider=provider)
        self.status = status
        self.request_id = request_id
        self.excerpt = excerpt
        self.retry_after = retry_after


class BadRequestError(ProviderError):
    """The provider refused the request itself: retrying or falling back would not help."""


class AuthenticationError(ProviderError):
    """The API key is missing, wrong, or lacks access to the model."""


class RateLimitedError(ProviderError):
    """HTTP 429: the provider asks us to slow down, ``retry_after`` seconds if it said so."""

    retryable = True


class ProviderUnavailableError(ProviderError):
    """HTTP 408, 409 or 5xx: the provider could not serve the call now."""

    retryable = True


class ProviderConnectionError(LLMError):
    """No complete answer arrived: connection refused or reset, or the stream broke off."""

    retryable = True


class ProviderResponseError(LLMError):
    """The provider answered 2xx with something that is not its wire format."""


class LLMTimeoutError(LLMError):
    """The call's deadline passed; the call (and any retries) were cancelled."""


class LLMCircuitOpenError(LLMError):
    """The provider failed too often; calls are refused until the breaker's reset time."""

    sent = False


class ResidencyDeniedError(LLMError, DeniedError):
    """The call's classification may not leave the home region for the provider's region.

    The data-residency rule refused it, as a policy denies a message: it is a
    :class:`genie.DeniedError` too (``policy`` ``"residency"``, ``reason`` the rule's), caught
    with the other denials, and an agent's retry policy does not retry it (the same data would
    be refused again, and each attempt would repeat what the handler did before the call)."""

    sent = False

    def __init__(self, message: str, *, provider: str, reason: str) -> None:
        super().__init__(message, provider=provider, policy="residency", reason=reason)


class BudgetExceededError(LLMError, LimitExceededError):
    """A budget would be overrun: ``limit`` names it, ``requested`` and ``remaining`` are in
    its unit (tokens or currency). The call was refused before anything was sent. It is a
    :class:`genie.LimitExceededError` too, so an agent's retry policy does not retry it.
    ``message`` replaces the usual text (the runtime's "the limit fired already")."""

    sent = False

    def __init__(
        self,
        *,
        limit: str,
        key: str,
        requested: float,
        remaining: float,
        provider: str = "",
        correlation_id: str | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(
            message
            or f"llm call refused: {limit} budget for {key} has {remaining:g} left, "
            f"the call may need {requested:g}",
            provider=provider,
            correlation_id=correlation_id,
        )
        self.limit = limit
        self.key = key
        self.requested = requested
        self.remaining = remaining


class AllProvidersFailedError(LLMError):
    """Every provider of a fallback chain failed or was skipped; ``errors`` in order."""

    def __init__(self, errors: Sequence[LLMError]) -> None:
        summary = "; ".join(f"{e.provider}: {e}" for e in errors) or "no providers"
        super().__init__(f"every provider failed: {summary}")
        self.errors = tuple(errors)
        self.sent = any(e.sent for e in errors)
