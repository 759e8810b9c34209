"""Residency: the data-residency policy's rules applied to the provider a call would reach."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from .._message.payload import Classification
from ._errors import ResidencyDeniedError
from ._provider import Provider, a_provider
from ._types import Request, Response, StreamEvent

__all__ = ["Residency", "residency_refusal"]


def residency_refusal(
    classification: Classification,
    *,
    home_region: str,
    region: str,
    allow_cross_border_for_public: bool = True,
) -> str | None:
    """Why data of ``classification`` may not go to ``region``, or None if it may: the rules
    (and words) of :class:`genie.policies.DataResidency`, a test keeps the two in step. PII and
    secret data stay home, internal data too; ``on-prem`` is home."""
    if not region or region in (home_region, "on-prem"):
        return None
    if classification in (Classification.PII, Classification.SECRET):
        return (
            f'classification "{classification.value}" cannot leave region "{home_region}" '
            f'(target="{region}")'
        )
    if classification is Classification.INTERNAL:
        return "internal data cannot leave home region"
    if not allow_cross_border_for_public:
        return "public-data cross-border disabled"
    return None


class Residency:
    """Refuses, before anything is sent, a call whose context's classification may not go to
    the inner provider's region."""

    def __init__(
        self,
        inner: Provider,
        *,
        home_region: str = "in",
        allow_cross_border_for_public: bool = True,
    ) -> None:
        self.inner = a_provider(inner, "Residency(inner)")
        self.home_region = home_region
        self.allow_cross_border_for_public = allow_cross_border_for_public

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def check(self, request: Request) -> None:
        reason = residency_refusal(
            request.context.classification,
            home_region=self.home_region,
            region=self.inner.region,
            allow_cross_border_for_public=self.allow_cross_border_for_public,
        )
        if reason is not None:
            raise ResidencyDeniedError(
                f"llm call to {self.name} ({self.inner.region}) refused by residency: {reason}",
                provider=self.name,
                reason=reason,
            )

    async def complete(self, request: Request) -> Response:
        self.check(request)
        return await self.inner.complete(request)

    def stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        self.check(request)
        return self.inner.stream(request)
