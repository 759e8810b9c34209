"""Personal-finance advisory agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .moa import MoaRecommender as MoaRecommender
    from .planning import AssetAllocator as AssetAllocator
    from .planning import DividendPlanner as DividendPlanner
    from .planning import EmergencyFundAdvisor as EmergencyFundAdvisor
    from .planning import FinancialEducator as FinancialEducator
    from .planning import GoalPlanner as GoalPlanner

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "MoaRecommender": ".moa",
    "AssetAllocator": ".planning",
    "DividendPlanner": ".planning",
    "EmergencyFundAdvisor": ".planning",
    "FinancialEducator": ".planning",
    "GoalPlanner": ".planning",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "goal_planner": "GoalPlanner",
    "emergency_fund_advisor": "EmergencyFundAdvisor",
    "asset_allocator": "AssetAllocator",
    "dividend_planner": "DividendPlanner",
    "financial_educator": "FinancialEducator",
    "moa_recommender": "MoaRecommender",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "AssetAllocator",
    "DividendPlanner",
    "EmergencyFundAdvisor",
    "FinancialEducator",
    "GoalPlanner",
    "MoaRecommender",
]
