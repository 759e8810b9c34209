"""Payloads of the treasury agents (amounts in one currency unit, e.g. rupees or crores)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from genie import Payload

from .._common import MAX_BALANCE, Amount, Record
from .._go import GoName, GoValueError, derived, go_names, percent, scaled

__all__ = [
    "AlmRequest",
    "AlmResult",
    "BUCKETS",
    "AlmRow",
    "Hqla",
    "LcrRequest",
    "LcrResult",
    "Outflows",
    "VarRequest",
    "VarResult",
    "WorkingCapitalForecast",
    "WorkingCapitalRequest",
]


def _go_var_zeros(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """A Go client sends every field; Go read a zero confidence as 95 % and a zero horizon as
    one day."""
    if go.get("confidence_pct") == 0:
        out["confidence"] = 0.95
    if go.get("horizon_days") == 0:
        out["horizon_days"] = 1
    return out


class VarRequest(Payload):
    message_type = "var_request"
    portfolio_value: float = Field(gt=0, le=MAX_BALANCE, description="at most 10^15")
    # A day's return from all lost (-1) to ten times over: 10^303 made the VaR infinite, and
    # the result failed its own model; 10^400 days was no float for sqrt.
    returns: tuple[Annotated[float, Field(ge=-1, le=10)], ...] = Field(
        min_length=2, description="daily returns, 0.01 = 1 %, each -1 to 10"
    )
    confidence: float = Field(0.99, gt=0, lt=1)
    horizon_days: int = Field(1, ge=1, le=365, description="at most a year")

    _go = go_names(
        {
            "daily_returns": "returns",
            "portfolio_value_rupees": "portfolio_value",
            "confidence_pct": GoName("confidence", percent),
        },
        then=_go_var_zeros,
        defaults={"confidence": 0.95},  # Go: 95 % unless told
    )


class VarResult(Payload):
    message_type = "var_result"
    confidence: float
    horizon_days: int
    observations: int
    historical_var: float
    parametric_var: float
    expected_shortfall: float


class Hqla(Record):
    level1: float = Field(ge=0)
    level2a: float = Field(0.0, ge=0)
    level2b: float = Field(0.0, ge=0)

    _go = go_names(
        {
            "level1_cash_govsec_rupees": "level1",
            "level2a_corp_bonds_aa_plus_rupees": "level2a",
            "level2b_lower_rupees": "level2b",
        }
    )


class Outflows(Record):
    """30-day stressed outflow balances by category (each has its run-off factor)."""

    retail_stable: float = Field(0.0, ge=0)
    retail_less_stable: float = Field(0.0, ge=0)
    wholesale_operational: float = Field(0.0, ge=0)
    wholesale_non_operational: float = Field(0.0, ge=0)
    financial_institutions: float = Field(0.0, ge=0)
    committed_facilities: float = Field(0.0, ge=0)
    other: float = Field(0.0, ge=0)

    _go = go_names(
        {
            "stable_retail_deposits": "retail_stable",
            "less_stable_retail_deposits": "retail_less_stable",
            "operational_corporate_deposits": "wholesale_operational",
            "non_operational_corporate_deposits": "wholesale_non_operational",
            "undrawn_credit_commitments": "committed_facilities",
            # Go runs unsecured wholesale funding off at 75 %; the port's "other" at 100 %.
            "unsecured_wholesale_funding": GoName("other", scaled(0.75)),
        }
    )


GO_INFLOW_RATES = {
    "contractual_retail_inflows": 0.50,
    "contractual_wholesale_inflows": 0.50,
    "other_inflows": 0.20,
}


class LcrRequest(Payload):
    message_type = "lcr_request"
    hqla: Hqla
    outflows: Outflows
    inflows: float = Field(0.0, ge=0, description="contractual 30-day inflows")

    @field_validator("inflows", mode="before")
    @classmethod
    def _go_inflows(cls, inflows: Any) -> Any:
        """Go's inflows by kind, at Go's inflow rates (retail and wholesale 50 %, other 20 %)."""
        if not isinstance(inflows, dict):
            return inflows
        unknown = sorted(set(inflows) - set(GO_INFLOW_RATES))
        if unknown:
            raise ValueError(f"unknown Go inflow {unknown[0]!r} ({', '.join(GO_INFLOW_RATES)})")
        if not all(isinstance(v, int | float) for v in inflows.values()):
            raise ValueError("Go inflows are numbers")
        return sum(GO_INFLOW_RATES[k] * v for k, v in inflows.items())


class LcrResult(Payload):
    message_type = "lcr_result"
    hqla: float
    gross_outflows: float
    capped_inflows: float
    net_outflows: float
    lcr_pct: float
    compliant: bool
    shortfall: float


# Maturity buckets, and whether each reprices within a year (and so moves the NII).
BUCKETS = {
    "1-7d": True,
    "8-14d": True,
    "15-30d": True,
    "31d-3m": True,
    "3-6m": True,
    "6-12m": True,
    "1-3y": False,
    "3-5y": False,
    ">5y": False,
}

# Go's alm_agent JSON bucket keys and the port's bucket names.
GO_BUCKETS = {
    "day_1_7": "1-7d",
    "day_8_14": "8-14d",
    "day_15_30": "15-30d",
    "day_31_90": "31d-3m",
    "day_91_180": "3-6m",
    "day_181_365": "6-12m",
    "year_1_3": "1-3y",
    "year_3_5": "3-5y",
    "year_5_plus": ">5y",
}


class AlmRequest(Payload):
    message_type = "alm_request"
    total_assets: float = Field(gt=0)
    assets: dict[str, Amount] = Field(description="by maturity bucket (BUCKETS)")
    liabilities: dict[str, Amount] = Field(description="by maturity bucket (BUCKETS)")
    rate_shock_bp: int = 200

    _go = go_names(
        {"total_assets_for_breach_threshold": "total_assets"},
        defaults={"rate_shock_bp": 0},  # Go: no shock unless told
    )

    @field_validator("assets", "liabilities", mode="before")
    @classmethod
    def _go_buckets(cls, side: Any) -> Any:
        """Go's bucket keys (``day_1_7`` ...) to the port's (``1-7d`` ...), either or both
        shapes in one request, a bucket named twice refused."""
        if not isinstance(side, dict):
            return side
        out = {GO_BUCKETS.get(key, key): value for key, value in side.items()}
        if len(out) < len(side):
            twice = sorted(k for k in side if k in GO_BUCKETS and GO_BUCKETS[k] in side)
            raise ValueError(f"bucket {GO_BUCKETS[twice[0]]!r} given twice, also as {twice[0]!r}")
        return out

    @field_validator("assets", "liabilities")
    @classmethod
    def _on_the_ladder(cls, side: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(side) - set(BUCKETS))
        if unknown:
            raise ValueError(f"unknown bucket {unknown[0]!r} (buckets: {', '.join(BUCKETS)})")
        return side

    @model_validator(mode="after")
    def _total_holds_the_buckets(self) -> AlmRequest:
        # The breach threshold is a share of total assets: a total below the assets laid out
        # on the ladder makes every gap look larger than it is, and breaches that are not.
        bucketed = sum(self.assets.values())
        if bucketed - self.total_assets > 0.005:  # half a cent: the sum's rounding
            raise ValueError(
                f"total_assets {self.total_assets:g} is less than the assets by bucket "
                f"({bucketed:g}): it is the whole balance sheet, the buckets a part of it"
            )
        return self


class AlmRow(Record):
    bucket: str
    assets: float
    liabilities: float
    gap: float
    cumulative_gap: float
    cumulative_gap_pct: float
    breach: bool


class AlmResult(Payload):
    message_type = "alm_result"
    rows: tuple[AlmRow, ...]
    breaches: tuple[str, ...]
    nii_impact: float = Field(description="one-year net interest income change for the shock")


def _go_cycle(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's monthly revenue, gross margin and days to the port's annual figures and balances:
    the balances that give exactly Go's DSO, DIO and DPO (receivables = DSO x revenue / 365;
    inventory and payables on the cost of goods)."""
    revenue, margin = go.get("monthly_revenue_rupees"), go.get("gross_margin_pct", 0)
    if not isinstance(revenue, int | float) or revenue <= 0:
        raise GoValueError("a positive monthly revenue", "monthly_revenue_rupees")
    if not isinstance(margin, int | float) or not 0 <= margin < 100:
        raise GoValueError("a gross margin from 0 to under 100 %", "gross_margin_pct")
    annual = 12 * revenue
    cogs = annual * (100 - margin) / 100
    days = {}
    for key in ("dso_days", "dio_days", "dpo_days"):
        value = go.get(key, 0)
        if not isinstance(value, int | float) or value < 0:
            raise GoValueError("days: a number, 0 or more", key)
        days[key] = value
    return out | {
        "annual_revenue": annual,
        "annual_cogs": cogs,
        "receivables": days["dso_days"] * annual / 365,
        "inventory": days["dio_days"] * cogs / 365,
        "payables": days["dpo_days"] * cogs / 365,
    }


class WorkingCapitalRequest(Payload):
    message_type = "working_capital_request"
    # A balance over revenue or cost is days of it: 10^300 of inventory on 10^-9 of cost was
    # infinite days, and the forecast failed its own model.
    annual_revenue: float = Field(ge=0.01, le=MAX_BALANCE, description="a paisa to 10^15")
    annual_cogs: float = Field(ge=0.01, le=MAX_BALANCE, description="a paisa to 10^15")
    receivables: float = Field(ge=0, le=MAX_BALANCE, description="at most 10^15")
    inventory: float = Field(ge=0, le=MAX_BALANCE, description="at most 10^15")
    payables: float = Field(ge=0, le=MAX_BALANCE, description="at most 10^15")
    cash: float = Field(ge=0, le=MAX_BALANCE, description="at most 10^15")
    monthly_operating_expenses: float = Field(
        0.0, ge=0, le=MAX_BALANCE, description="at most 10^15"
    )
    forecast_months: int = Field(6, ge=1, le=120)

    _go = go_names(
        {
            "monthly_revenue_rupees": derived("x 12 is annual_revenue; with dso_days, receivables"),
            "gross_margin_pct": derived("annual_cogs = annual_revenue x (1 - margin)"),
            "dso_days": derived("receivables = days x annual_revenue / 365"),
            "dio_days": derived("inventory = days x annual_cogs / 365"),
            "dpo_days": derived("payables = days x annual_cogs / 365"),
            "operating_costs_monthly_rupees": "monthly_operating_expenses",
            "opening_cash_rupees": "cash",
            "horizon_months": "forecast_months",
        },
        then=_go_cycle,
    )


class WorkingCapitalForecast(Payload):
    message_type = "working_capital_forecast"
    dso: float
    dio: float
    dpo: float
    cash_conversion_cycle: float
    monthly_cashflow: float
    cash_by_month: tuple[float, ...]
    runway_months: float | None
