"""Income-tax agents: estimate, capital-gains harvesting, advance tax, deductions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .capital_gains import TaxHarvester as TaxHarvester
    from .income import AdvanceTaxPlanner as AdvanceTaxPlanner
    from .income import DeductionsOptimizer as DeductionsOptimizer
    from .income import TaxEstimator as TaxEstimator

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "TaxHarvester": ".capital_gains",
    "AdvanceTaxPlanner": ".income",
    "DeductionsOptimizer": ".income",
    "TaxEstimator": ".income",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "tax_estimator": "TaxEstimator",
    "tax_harvester": "TaxHarvester",
    "advance_tax_planner": "AdvanceTaxPlanner",
    "deductions_optimizer": "DeductionsOptimizer",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "AdvanceTaxPlanner",
    "DeductionsOptimizer",
    "TaxEstimator",
    "TaxHarvester",
]
