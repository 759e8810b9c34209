"""Desks that run the shipped multi-agent pipelines: onboarding, lending, treasury."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .desks import LendingDesk as LendingDesk
    from .desks import OnboardingDesk as OnboardingDesk
    from .desks import TreasuryDesk as TreasuryDesk

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "LendingDesk": ".desks",
    "OnboardingDesk": ".desks",
    "TreasuryDesk": ".desks",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "onboarding_desk": "OnboardingDesk",
    "lending_desk": "LendingDesk",
    "treasury_desk": "TreasuryDesk",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "LendingDesk",
    "OnboardingDesk",
    "TreasuryDesk",
]
