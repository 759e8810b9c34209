"""What data may go where: classification ceilings and residency."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from .._message.envelope import Message
from .._message.payload import Classification
from .._runtime.policy import Decision, DeliveryCheck, PlanStep
from ._content import quote

__all__ = ["ClassificationCeiling", "DataResidency"]

ALLOW = Decision.ALLOW


class ClassificationCeiling:
    """Deny a message classified above the recipient's ceiling (``allowed_to[recipient]``,
    else ``default_ceiling``)."""

    name = "classification"

    def __init__(
        self,
        allowed_to: Mapping[str, Classification | str] | None = None,
        default_ceiling: Classification | str = Classification.INTERNAL,
    ) -> None:
        self.allowed_to: Mapping[str, Classification] = MappingProxyType(
            {k: Classification(v) for k, v in (allowed_to or {}).items()}
        )
        self.default_ceiling = Classification(default_ceiling)
        # A message at or below every ceiling passes whoever receives it, so the plan leaves
        # no check per recipient for a message classified as one of these.
        lowest = min(c.rank for c in (self.default_ceiling, *self.allowed_to.values()))
        self._passes_all = tuple(c for c in Classification if c.rank <= lowest)

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {
            "allowed_to": {k: v.value for k, v in self.allowed_to.items()},
            "default_ceiling": self.default_ceiling.value,
        }

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        ceiling = self.allowed_to.get(recipient, self.default_ceiling)
        if msg.classification.rank > ceiling.rank:
            return Decision.deny(self.name, "classification exceeds recipient ceiling")
        return ALLOW

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return ClassificationCeiling

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._for_message

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _for_message(self, msg: Message) -> Decision | DeliveryCheck:
        return ALLOW if msg.classification in self._passes_all else self.evaluate


class DataResidency:
    """Data leaves ``home_region`` (``metadata.region`` names the target) only when public,
    and public data only when ``allow_cross_border_for_public``. ``on-prem`` stays home."""

    name = "data_residency"

    def __init__(self, home_region: str = "in", allow_cross_border_for_public: bool = True) -> None:
        self.home_region = home_region
        self.allow_cross_border_for_public = allow_cross_border_for_public

    @property
    def settings(self) -> dict[str, object]:
        """What it decides by (``DeclaredPolicy``)."""
        return {
            "home_region": self.home_region,
            "allow_cross_border_for_public": self.allow_cross_border_for_public,
        }

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return DataResidency

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _check(self, msg: Message) -> Decision:
        region = msg.metadata.get("region")
        if not region or region == self.home_region or region == "on-prem":
            return ALLOW
        # By value, never by identity: a label equal to a member (rebuilt from a pickle as
        # text) is judged as that member, not waved through as public.
        cls = msg.classification
        if cls in (Classification.PII, Classification.SECRET):
            return Decision.deny(
                self.name,
                f'classification "{cls}" cannot leave region "{self.home_region}" '
                f'(target="{quote(region)}")',
            )
        if cls == Classification.INTERNAL:
            return Decision.deny(self.name, "internal data cannot leave home region")
        if not self.allow_cross_border_for_public:
            return Decision.deny(self.name, "public-data cross-border disabled")
        return ALLOW
