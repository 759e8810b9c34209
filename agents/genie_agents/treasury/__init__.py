"""Treasury agents: VaR, liquidity coverage, asset-liability gaps, working capital."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .risk import AlmAgent as AlmAgent
    from .risk import LcrProjector as LcrProjector
    from .risk import VarCalculator as VarCalculator
    from .risk import WorkingCapitalForecaster as WorkingCapitalForecaster

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "AlmAgent": ".risk",
    "LcrProjector": ".risk",
    "VarCalculator": ".risk",
    "WorkingCapitalForecaster": ".risk",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "var_calculator": "VarCalculator",
    "lcr_projector": "LcrProjector",
    "alm_agent": "AlmAgent",
    "working_capital_forecaster": "WorkingCapitalForecaster",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "AlmAgent",
    "LcrProjector",
    "VarCalculator",
    "WorkingCapitalForecaster",
]
