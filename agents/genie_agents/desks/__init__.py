"""Desks that run the shipped multi-agent pipelines: onboarding, lending, treasury."""

from .desks import LendingDesk, OnboardingDesk, TreasuryDesk

AGENTS = {
    "onboarding_desk": OnboardingDesk,
    "lending_desk": LendingDesk,
    "treasury_desk": TreasuryDesk,
}

__all__ = ["AGENTS", "LendingDesk", "OnboardingDesk", "TreasuryDesk"]
