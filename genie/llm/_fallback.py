"""Fallback: the first provider of a chain that answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

from ._errors import (
    AllProvidersFailedError,
    BadRequestError,
    BudgetExceededError,
    LLMError,
    ResidencyDeniedError,
)
from ._killswitch import count_attempt
from ._provider import Provider, a_provider, open_attempt
from ._residency import residency_refusal
from ._types import Request, Response, StreamEvent

__all__ = ["Fallback"]

# Another provider would refuse the same request, or the caller's own limit applies to all.
_FINAL = (BadRequestError, BudgetExceededError)


class Fallback:
    """Tries ``providers`` in order and returns the first answer.

    A provider whose region the call's classification may not reach is skipped without a
    request (residency, as :class:`Residency` decides). A 400-class refusal of the request or
    a budget refusal is raised at once: the next provider would be asked the same thing. A
    stream falls back only until its first event. When every provider failed or was skipped,
    :class:`AllProvidersFailedError` lists why, in order.
    """

    def __init__(
        self,
        *providers: Provider,
        home_region: str = "in",
        allow_cross_border_for_public: bool = True,
    ) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.providers = tuple(a_provider(p, "Fallback(*providers)") for p in providers)
        self.home_region = home_region
        self.allow_cross_border_for_public = allow_cross_border_for_public

    @property
    def name(self) -> str:
        return "->".join(p.name for p in self.providers)

    @property
    def region(self) -> str:
        return self.providers[0].region

    def _refusal(self, provider: Provider, request: Request) -> ResidencyDeniedError | None:
        reason = residency_refusal(
            request.context.classification,
            home_region=self.home_region,
            region=provider.region,
            allow_cross_border_for_public=self.allow_cross_border_for_public,
        )
        if reason is None:
            return None
        return ResidencyDeniedError(
            f"{provider.name} ({provider.region}) skipped: {reason}",
            provider=provider.name,
            reason=reason,
        )

    async def complete(self, request: Request) -> Response:
        errors: list[LLMError] = []
        for i, provider in enumerate(self.providers, 1):
            refused = self._refusal(provider, request)
            if refused is not None:
                errors.append(refused)
                continue
            try:
                return await provider.complete(request)
            except _FINAL:
                raise
            except LLMError as exc:
                self._failed(exc, errors, last=i == len(self.providers))
        raise AllProvidersFailedError(errors)

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        errors: list[LLMError] = []
        for i, provider in enumerate(self.providers, 1):
            refused = self._refusal(provider, request)
            if refused is not None:
                errors.append(refused)
                continue
            try:
                opened, events = await open_attempt(provider, request)
            except _FINAL:
                raise
            except LLMError as exc:
                self._failed(exc, errors, last=i == len(self.providers))
                continue
            async with opened, aclosing(events) as reader:
                yield reader
            return
        raise AllProvidersFailedError(errors)

    @staticmethod
    def _failed(error: LLMError, errors: list[LLMError], *, last: bool) -> None:
        """A provider failed with ``error``. Unless it was the chain's last, the kill switch
        above is told of it as an attempt before the next (``count_attempt``), and may refuse
        that next one; the last is the chain's own error (``billed`` judges it by that one)."""
        errors.append(error)
        if not last:
            count_attempt(error)
