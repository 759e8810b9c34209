"""Payloads of the personal-finance advisory agents (amounts in rupees)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genie import Payload

from .._common import Record

__all__ = [
    "AssetAllocationPlan",
    "AssetAllocationRequest",
    "DividendProjection",
    "DividendRequest",
    "DividendYear",
    "EmergencyFundPlan",
    "EmergencyFundRequest",
    "ExplainFinance",
    "FinanceExplanation",
    "GoalPlan",
    "GoalRequest",
]


class GoalRequest(Payload):
    message_type = "goal_request"
    goal: str = ""
    target: float = Field(gt=0)
    years: int = Field(ge=1, le=60)
    current_corpus: float = Field(0.0, ge=0)
    monthly_contribution: float = Field(0.0, ge=0)
    expected_return_pct: float = Field(12.0, gt=-100, le=100)
    volatility_pct: float = Field(15.0, ge=0, le=100)


class GoalPlan(Payload):
    message_type = "goal_plan"
    goal: str
    paths: int
    success_probability: float
    p10: float
    p50: float
    p90: float


class EmergencyFundRequest(Payload):
    message_type = "emergency_fund_request"
    monthly_expenses: tuple[float, ...] = Field(min_length=1)
    current_savings: float = Field(0.0, ge=0)


class EmergencyFundPlan(Payload):
    message_type = "emergency_fund_plan"
    monthly_need: float
    minimum: float
    recommended: float
    comfortable: float
    months_covered: float
    gap_to_recommended: float


class AssetAllocationRequest(Payload):
    message_type = "asset_allocation_request"
    age: int = Field(ge=18, le=100)
    risk_profile: Literal["conservative", "moderate", "aggressive"]
    horizon_years: int = Field(ge=0)
    holdings: dict[Literal["equity", "debt"], float] = Field(default_factory=dict)


class AssetAllocationPlan(Payload):
    message_type = "asset_allocation_plan"
    equity_pct: int
    debt_pct: int
    target: dict[str, float]
    trades: dict[str, float] = Field(description="positive buys, negative sells")


class DividendRequest(Payload):
    message_type = "dividend_request"
    shares: float = Field(gt=0)
    price: float = Field(gt=0)
    dividend_yield_pct: float = Field(ge=0, le=100)
    dividend_growth_pct: float = 0.0
    price_growth_pct: float = 0.0
    years: int = Field(ge=1, le=50)
    slab_rate_pct: float = Field(ge=0, le=42.74, description="dividends are taxed at the slab")
    reinvest: bool = True


class DividendYear(Record):
    year: int
    shares: float
    price: float
    gross_dividend: float
    net_dividend: float
    value: float


class DividendProjection(Payload):
    message_type = "dividend_projection"
    rows: tuple[DividendYear, ...]
    total_gross: float
    total_net: float


class ExplainFinance(Payload):
    message_type = "explain_finance"
    term: str


class FinanceExplanation(Payload):
    message_type = "finance_explanation"
    term: str
    found: bool
    text: str
