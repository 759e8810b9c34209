"""Payloads of the Indian income-tax agents (amounts in rupees)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from genie import Payload

from .._common import MAX_AMOUNT, Amount, Record, shown
from .._go import UNUSED, GoName, GoValueError, go_names

__all__ = [
    "AdvanceTaxPlan",
    "AdvanceTaxRequest",
    "DeductionGap",
    "DeductionsPlan",
    "DeductionsRequest",
    "HarvestAction",
    "Instalment",
    "Lot",
    "TaxEstimate",
    "TaxEstimateRequest",
    "TaxHarvestPlan",
    "TaxHarvestRequest",
]


def _new_regime_only(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    if str(go.get("regime") or "new").lower() != "new":
        raise GoValueError("the port estimates the new regime only", "regime")
    return out


class TaxEstimateRequest(Payload):
    message_type = "tax_estimate_request"
    gross_income: float = Field(ge=0)
    salaried: bool = True
    other_deductions: float = Field(0.0, ge=0, description="allowed in the new regime")

    _go = go_names({"gross_income_rupees": "gross_income", "regime": UNUSED}, then=_new_regime_only)


class TaxEstimate(Payload):
    message_type = "tax_estimate"
    regime: str
    financial_year: str
    gross_income: float
    standard_deduction: float
    taxable_income: float
    slab_tax: float
    rebate: float
    surcharge: float
    cess: float
    total_tax: float
    effective_rate_pct: float


class Lot(Record):
    symbol: str
    bought_on: date
    # Within these a lot's gain is at most 10^21: 10^300 units, or a price near 10^308, made
    # it infinite, and the plan failed its own model.
    quantity: float = Field(gt=0, le=1e9, description="units, at most 10^9")
    cost_per_unit: float = Field(ge=0, le=MAX_AMOUNT, description="at most 10^12")
    price: float = Field(ge=0, le=MAX_AMOUNT, description="today's price, at most 10^12")


def _go_lots(holdings: Any) -> Any:
    """Go's holdings carry the total cost (``cost_basis_rupees``); a lot, the cost per unit."""
    if not isinstance(holdings, list):
        return holdings
    lots = []
    for i, h in enumerate(holdings):
        qty, cost = (
            (h.get("quantity"), h.get("cost_basis_rupees")) if isinstance(h, dict) else (0, 0)
        )
        if not (isinstance(qty, int | float) and qty > 0 and isinstance(cost, int | float)):
            raise GoValueError(f"item {i}: a holding with a positive quantity and a cost basis")
        lots.append(
            {
                "symbol": h.get("symbol"),
                "bought_on": h.get("purchase_date"),
                "quantity": qty,
                "cost_per_unit": cost / qty,
                "price": h.get("current_price_rupees"),
            }
        )
    return lots


def _go_realised(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    gains = go.get("realised_gains")
    if gains is None:
        return out
    if not isinstance(gains, Mapping):
        raise GoValueError("an object of short_term_rupees and long_term_rupees")
    names = {"short_term_rupees": "realised_stcg", "long_term_rupees": "realised_ltcg"}
    for go_name, field in names.items():
        if go_name in gains:
            if field in out:
                message = f"given twice, as {field!r} and as the Go system's {go_name!r}"
                raise GoValueError(message + ": send one", field)
            out[field] = gains[go_name]
    return out


class TaxHarvestRequest(Payload):
    message_type = "tax_harvest_request"
    as_of: date
    lots: tuple[Lot, ...]
    realised_stcg: float = 0.0
    realised_ltcg: float = 0.0

    _go = go_names(
        {
            "holdings": GoName("lots", _go_lots),
            "realised_gains": UNUSED,  # split into the two fields, below
            "as_of_date": "as_of",
            "horizon_fy": UNUSED,  # Go: cosmetic
        },
        then=_go_realised,
    )

    @field_validator("lots")
    @classmethod
    def _bought_by_as_of(cls, lots: tuple[Lot, ...], info: ValidationInfo) -> tuple[Lot, ...]:
        """A lot dated after the plan's day was held a negative time: short term, and a wash
        risk, on a purchase that had not happened."""
        as_of = info.data.get("as_of")
        for held in lots:
            if as_of is not None and held.bought_on > as_of:
                raise ValueError(
                    f"{shown(held.symbol)} bought on {held.bought_on}, after as_of {as_of}"
                )
        return lots


class HarvestAction(Record):
    symbol: str
    bought_on: date
    action: Literal["sell_loss", "sell_gain"]
    term: Literal["short", "long"]
    gain: float
    wash_risk: bool


class TaxHarvestPlan(Payload):
    message_type = "tax_harvest_plan"
    actions: tuple[HarvestAction, ...]
    tax_before: float
    tax_after: float
    saving: float


def _financial_year_of(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go names no financial year: it is the one ``as_of_date`` falls in (April to March)."""
    if "financial_year_start" in out or not isinstance(out.get("as_of"), str):
        return out
    try:
        day = date.fromisoformat(out["as_of"])
    except ValueError:
        return out  # the model names the bad date
    return out | {"financial_year_start": day.year if day.month >= 4 else day.year - 1}


class AdvanceTaxRequest(Payload):
    message_type = "advance_tax_request"
    financial_year_start: int = Field(ge=2000, le=2100, description="2024 for FY 2024-25")
    estimated_tax: float = Field(ge=0, description="the year's tax less TDS")
    paid_so_far: float = Field(0.0, ge=0)
    as_of: date

    _go = go_names(
        {
            "projected_annual_tax_rupees": "estimated_tax",
            "paid_so_far_rupees": "paid_so_far",
            "as_of_date": "as_of",
        },
        then=_financial_year_of,
    )


class Instalment(Record):
    due: date
    cumulative_pct: int
    cumulative_due: float
    shortfall: float
    interest: float


class AdvanceTaxPlan(Payload):
    message_type = "advance_tax_plan"
    required: bool
    instalments: tuple[Instalment, ...]
    next_due: date | None
    next_amount: float
    warnings: tuple[str, ...]


GO_DEFAULT_SLAB_PCT = 30.0  # Go: a slab of 0 or none is the 30 % bracket


def _go_slab(pct: Any) -> Any:
    """Go's slab in percent; 0 or less (left out) is Go's default 30 %."""
    return GO_DEFAULT_SLAB_PCT if isinstance(pct, int | float) and pct <= 0 else pct


def _go_sections(used: Any) -> Any:
    """Go's section keys without their `sec_` prefix (`sec_80c` is `80c`)."""
    if not isinstance(used, Mapping):
        return used
    return {str(k).removeprefix("sec_"): v for k, v in used.items()}


class DeductionsRequest(Payload):
    message_type = "deductions_request"
    claimed: dict[str, Amount] = Field(
        default_factory=dict, description="by section: 80c, 80ccd_1b, 80d_self, 80d_parents, 80tta"
    )
    self_senior: bool = False
    parents_senior: bool = False
    marginal_rate_pct: float = Field(ge=0, le=42.74)

    _go = go_names(
        {
            "borrower_slab_pct": GoName("marginal_rate_pct", _go_slab),
            # sec_80c, sec_80ccd_1b, sec_80d_self, sec_80d_parents, sec_80tta
            "used_so_far": GoName("claimed", _go_sections),
            "parents_senior_citizen": "parents_senior",
        },
        defaults={"marginal_rate_pct": GO_DEFAULT_SLAB_PCT},
    )


class DeductionGap(Record):
    section: str
    limit: float
    claimed: float
    unused: float
    tax_saving: float


class DeductionsPlan(Payload):
    message_type = "deductions_plan"
    gaps: tuple[DeductionGap, ...]
    total_unused: float
    total_tax_saving: float
