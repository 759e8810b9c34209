"""Personal-finance advisory agents."""

from .moa import MoaRecommender
from .planning import (
    AssetAllocator,
    DividendPlanner,
    EmergencyFundAdvisor,
    FinancialEducator,
    GoalPlanner,
)

AGENTS = {
    "goal_planner": GoalPlanner,
    "emergency_fund_advisor": EmergencyFundAdvisor,
    "asset_allocator": AssetAllocator,
    "dividend_planner": DividendPlanner,
    "financial_educator": FinancialEducator,
    "moa_recommender": MoaRecommender,
}

__all__ = [
    "AGENTS",
    "AssetAllocator",
    "DividendPlanner",
    "EmergencyFundAdvisor",
    "FinancialEducator",
    "GoalPlanner",
    "MoaRecommender",
]
