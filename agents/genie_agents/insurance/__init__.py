"""Insurance agents: claims, cashless pre-authorisation, motor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .claims import AutoInsurance as AutoInsurance
    from .claims import ClaimAdjudicator as ClaimAdjudicator
    from .claims import HealthPreauth as HealthPreauth

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "AutoInsurance": ".claims",
    "ClaimAdjudicator": ".claims",
    "HealthPreauth": ".claims",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "claim_adjudicator": "ClaimAdjudicator",
    "health_preauth": "HealthPreauth",
    "auto_insurance": "AutoInsurance",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "AutoInsurance",
    "ClaimAdjudicator",
    "HealthPreauth",
]
