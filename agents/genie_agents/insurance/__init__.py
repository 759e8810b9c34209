"""Insurance agents: claims, cashless pre-authorisation, motor."""

from .claims import AutoInsurance, ClaimAdjudicator, HealthPreauth

AGENTS = {
    "claim_adjudicator": ClaimAdjudicator,
    "health_preauth": HealthPreauth,
    "auto_insurance": AutoInsurance,
}

__all__ = ["AGENTS", "AutoInsurance", "ClaimAdjudicator", "HealthPreauth"]
