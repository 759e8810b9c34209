"""Treasury agents: VaR, liquidity coverage, asset-liability gaps, working capital."""

from .risk import AlmAgent, LcrProjector, VarCalculator, WorkingCapitalForecaster

AGENTS = {
    "var_calculator": VarCalculator,
    "lcr_projector": LcrProjector,
    "alm_agent": AlmAgent,
    "working_capital_forecaster": WorkingCapitalForecaster,
}

__all__ = ["AGENTS", "AlmAgent", "LcrProjector", "VarCalculator", "WorkingCapitalForecaster"]
