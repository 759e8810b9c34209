"""Payloads of the personal-finance advisory agents (amounts in rupees)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from genie import Payload

from .._common import MAX_AMOUNT, Amount, Record
from .._go import UNUSED, GoName, GoValueError, go_names, go_text, unit_share

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


def _whole_years(months: Any) -> Any:
    """Go's months to whole years (a multiple of 12 only)."""
    if isinstance(months, int) and months % 12:
        raise GoValueError("the port plans in whole years: a multiple of 12 months")
    return months // 12 if isinstance(months, int) else months


def _go_simulation_settings(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go let each request set its paths and seed (0: 1000 and 42); the port sets them on the
    agent (params ``paths``, ``seed``), so a request that asks for others is refused."""
    for field in ("paths", "seed"):
        if go.get(field):
            raise GoValueError(
                f"set on the agent in the port (param {field!r}), not per request", field
            )
    return out


class GoalRequest(Payload):
    message_type = "goal_request"
    goal: str = ""
    target: float = Field(gt=0)
    years: int = Field(ge=1, le=60)
    current_corpus: float = Field(0.0, ge=0)
    monthly_contribution: float = Field(0.0, ge=0)
    expected_return_pct: float = Field(12.0, gt=-100, le=100)
    volatility_pct: float = Field(15.0, ge=0, le=100)

    _go = go_names(
        {
            "current_corpus_rupees": "current_corpus",
            "monthly_contribution_rupees": "monthly_contribution",
            "target_corpus_rupees": "target",
            "horizon_months": GoName("years", _whole_years),
            "expected_annual_return": GoName("expected_return_pct", unit_share),
            "annual_volatility": GoName("volatility_pct", unit_share),
            "paths": UNUSED,
            "seed": UNUSED,
        },
        then=_go_simulation_settings,
    )


class GoalPlan(Payload):
    message_type = "goal_plan"
    goal: str
    paths: int
    success_probability: float
    p10: float
    p50: float
    p90: float


def _monthly_debits(transactions: Any) -> Any:
    """Go's transactions to monthly spending: debits (negative ``amount_cents``) summed by
    the month of their ``date``, in rupees, month by month."""
    if not isinstance(transactions, list):
        return transactions
    months: dict[str, float] = {}
    for i, t in enumerate(transactions):
        if not isinstance(t, dict) or not isinstance(t.get("amount_cents"), int):
            raise GoValueError(f"item {i}: a transaction with integer amount_cents")
        if t["amount_cents"] < 0:
            month = str(t.get("date", ""))[:7]
            months[month] = months.get(month, 0.0) + -t["amount_cents"] / 100
    return [months[m] for m in sorted(months)]


class EmergencyFundRequest(Payload):
    message_type = "emergency_fund_request"
    monthly_expenses: tuple[float, ...] = Field(min_length=1)
    current_savings: float = Field(0.0, ge=0)

    # Go picked one tier from these two; the port always answers all three.
    _go = go_names(
        {
            "transactions": GoName("monthly_expenses", _monthly_debits),
            "liquid_reserves_rupees": "current_savings",
            "income_profile": UNUSED,
            "has_dependents": UNUSED,
        }
    )


class EmergencyFundPlan(Payload):
    message_type = "emergency_fund_plan"
    monthly_need: float
    minimum: float
    recommended: float
    comfortable: float
    months_covered: float
    gap_to_recommended: float


_GO_OTHER_SLEEVES = ("gold_rupees", "cash_rupees")


def _go_holdings(current: Any) -> Any:
    """Go's ``current`` (``equity_rupees``, ``debt_rupees``, ``gold_rupees``, ``cash_rupees``):
    the port allocates equity and debt only, so gold or cash held is refused, not dropped."""
    if not isinstance(current, Mapping):
        return current
    if any(current.get(k) for k in _GO_OTHER_SLEEVES):
        raise GoValueError("gold and cash holdings: the port allocates equity and debt only")
    names = {"equity_rupees": "equity", "debt_rupees": "debt"}
    return {names.get(k, k): v for k, v in current.items() if k not in _GO_OTHER_SLEEVES}


class AssetAllocationRequest(Payload):
    message_type = "asset_allocation_request"
    age: int = Field(ge=18, le=100)
    risk_profile: Literal["conservative", "moderate", "aggressive"]
    horizon_years: int = Field(ge=0)
    holdings: dict[Literal["equity", "debt"], Amount] = Field(default_factory=dict)

    _go = go_names(
        {
            # Go tilted only conservative and aggressive; a blank tolerance was moderate.
            "risk_tolerance": GoName(
                "risk_profile", lambda r: r or "moderate", "blank is moderate"
            ),
            "current": GoName("holdings", _go_holdings),
        }
    )


class AssetAllocationPlan(Payload):
    message_type = "asset_allocation_plan"
    equity_pct: int
    debt_pct: int
    target: dict[str, float]
    trades: dict[str, float] = Field(description="positive buys, negative sells")


def _dividend_yield(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go gives the dividend per share; the port its yield on today's price."""
    if "dividend_per_share_rupees" not in go:
        return out
    if "dividend_yield_pct" in out:
        raise GoValueError(
            "given twice, as 'dividend_yield_pct' and as the Go system's "
            "'dividend_per_share_rupees': send one",
            "dividend_yield_pct",
        )
    dps, price = go["dividend_per_share_rupees"], out.get("price")
    if not (isinstance(dps, int | float) and isinstance(price, int | float) and price > 0):
        raise GoValueError("needs a positive current_price_rupees", "dividend_per_share_rupees")
    return out | {"dividend_yield_pct": dps * 100 / price}


class DividendRequest(Payload):
    message_type = "dividend_request"
    shares: float = Field(gt=0, le=MAX_AMOUNT, description="at most 10^12")
    price: float = Field(ge=0.01, le=MAX_AMOUNT, description="a paisa to 10^12")
    dividend_yield_pct: float = Field(ge=0, le=100)
    # A year's growth: a price cannot fall by all of itself (it divides the reinvested
    # dividend), and 10^18 % a year overflowed the projection.
    dividend_growth_pct: float = Field(0.0, ge=-99, le=100, description="a year, -99 to 100")
    price_growth_pct: float = Field(0.0, ge=-99, le=100, description="a year, -99 to 100")
    years: int = Field(ge=1, le=50)
    slab_rate_pct: float = Field(ge=0, le=42.74, description="dividends are taxed at the slab")
    reinvest: bool = True

    _go = go_names(
        {
            "current_price_rupees": "price",
            "dividend_per_share_rupees": UNUSED,  # a yield on the price, below
            "dividend_growth_annual": GoName("dividend_growth_pct", unit_share),
            "price_appreciation_annual": GoName("price_growth_pct", unit_share),
            "horizon_years": "years",
            "tds_and_slab_pct": "slab_rate_pct",
            "reinvest_dividends": "reinvest",
        },
        then=_dividend_yield,
        defaults={"reinvest": False},  # Go: no DRIP unless told
    )


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

    _go = go_text("term")  # Go's content was the term itself


class FinanceExplanation(Payload):
    message_type = "finance_explanation"
    term: str
    found: bool
    text: str
