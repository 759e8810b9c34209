"""Personal-finance advisory agents."""

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
}

__all__ = [
    "AGENTS",
    "AssetAllocator",
    "DividendPlanner",
    "EmergencyFundAdvisor",
    "FinancialEducator",
    "GoalPlanner",
]
