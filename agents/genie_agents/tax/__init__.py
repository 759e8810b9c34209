"""Income-tax agents: estimate, capital-gains harvesting, advance tax, deductions."""

from .capital_gains import TaxHarvester
from .income import AdvanceTaxPlanner, DeductionsOptimizer, TaxEstimator

AGENTS = {
    "tax_estimator": TaxEstimator,
    "tax_harvester": TaxHarvester,
    "advance_tax_planner": AdvanceTaxPlanner,
    "deductions_optimizer": DeductionsOptimizer,
}

__all__ = ["AGENTS", "AdvanceTaxPlanner", "DeductionsOptimizer", "TaxEstimator", "TaxHarvester"]
