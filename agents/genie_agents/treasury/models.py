"""Payloads of the treasury agents (amounts in one currency unit, e.g. rupees or crores)."""

from __future__ import annotations

from pydantic import Field

from genie import Payload

from .._common import Record

__all__ = [
    "AlmRequest",
    "AlmResult",
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


class VarRequest(Payload):
    message_type = "var_request"
    portfolio_value: float = Field(gt=0)
    returns: tuple[float, ...] = Field(min_length=2, description="daily returns, 0.01 = 1 %")
    confidence: float = Field(0.99, gt=0, lt=1)
    horizon_days: int = Field(1, ge=1)


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


class Outflows(Record):
    """30-day stressed outflow balances by category (each has its run-off factor)."""

    retail_stable: float = Field(0.0, ge=0)
    retail_less_stable: float = Field(0.0, ge=0)
    wholesale_operational: float = Field(0.0, ge=0)
    wholesale_non_operational: float = Field(0.0, ge=0)
    financial_institutions: float = Field(0.0, ge=0)
    committed_facilities: float = Field(0.0, ge=0)
    other: float = Field(0.0, ge=0)


class LcrRequest(Payload):
    message_type = "lcr_request"
    hqla: Hqla
    outflows: Outflows
    inflows: float = Field(0.0, ge=0, description="contractual 30-day inflows")


class LcrResult(Payload):
    message_type = "lcr_result"
    hqla: float
    gross_outflows: float
    capped_inflows: float
    net_outflows: float
    lcr_pct: float
    compliant: bool
    shortfall: float


class AlmRequest(Payload):
    message_type = "alm_request"
    total_assets: float = Field(gt=0)
    assets: dict[str, float] = Field(description="by maturity bucket")
    liabilities: dict[str, float] = Field(description="by maturity bucket")
    rate_shock_bp: int = 200


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


class WorkingCapitalRequest(Payload):
    message_type = "working_capital_request"
    annual_revenue: float = Field(gt=0)
    annual_cogs: float = Field(gt=0)
    receivables: float = Field(ge=0)
    inventory: float = Field(ge=0)
    payables: float = Field(ge=0)
    cash: float = Field(ge=0)
    monthly_operating_expenses: float = Field(0.0, ge=0)


class WorkingCapitalForecast(Payload):
    message_type = "working_capital_forecast"
    dso: float
    dio: float
    dpo: float
    cash_conversion_cycle: float
    monthly_cashflow: float
    cash_by_month: tuple[float, ...]
    runway_months: float | None
