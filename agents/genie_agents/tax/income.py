"""Income tax: the new-regime estimate, advance-tax instalments, unused deductions."""

from __future__ import annotations

from datetime import date

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import money
from .models import (
    AdvanceTaxPlan,
    AdvanceTaxRequest,
    DeductionGap,
    DeductionsPlan,
    DeductionsRequest,
    Instalment,
    TaxEstimate,
    TaxEstimateRequest,
)

__all__ = ["AdvanceTaxPlanner", "DeductionsOptimizer", "TaxEstimator", "slab_tax"]

LAKH = 100_000.0
# New regime, FY 2024-25 (after the July 2024 budget): upper bound of each slab, rate.
NEW_REGIME_SLABS = (
    (3 * LAKH, 0.00),
    (7 * LAKH, 0.05),
    (10 * LAKH, 0.10),
    (12 * LAKH, 0.15),
    (15 * LAKH, 0.20),
    (float("inf"), 0.30),
)
STANDARD_DEDUCTION = 75_000.0
REBATE_LIMIT = 7 * LAKH  # section 87A: no tax up to here, marginal relief just above
SURCHARGES = ((200 * LAKH, 0.25), (100 * LAKH, 0.15), (50 * LAKH, 0.10))  # capped at 25 %
CESS = 0.04


def slab_tax(taxable: float) -> float:
    tax, lower = 0.0, 0.0
    for upper, rate in NEW_REGIME_SLABS:
        if taxable > lower:
            tax += (min(taxable, upper) - lower) * rate
        lower = upper
    return tax


class TaxEstimator(BaseAgent):
    """Income tax under the new regime for FY 2024-25: standard deduction Rs 75,000 for
    salaried income; slabs 0-3 L nil, 3-7 L 5 %, 7-10 L 10 %, 10-12 L 15 %, 12-15 L 20 %,
    above 30 %; the section 87A rebate up to Rs 7 L with marginal relief; surcharge 10/15/25 %
    above Rs 50 L / 1 Cr / 2 Cr (without surcharge marginal relief); 4 % cess."""

    capabilities = ("tax_estimate",)
    risk = Risk.MEDIUM
    produces = (TaxEstimate,)

    @handler
    async def on_request(self, payload: TaxEstimateRequest, ctx: Context) -> Message:
        p = payload
        standard = min(STANDARD_DEDUCTION, p.gross_income) if p.salaried else 0.0
        taxable = max(0.0, p.gross_income - standard - p.other_deductions)
        base = slab_tax(taxable)
        # Marginal relief: above the limit, the tax may not exceed the income over it.
        over = taxable - REBATE_LIMIT
        rebate = base if over <= 0 else max(0.0, base - over)
        after = base - rebate
        rate = next((r for floor, r in SURCHARGES if taxable > floor), 0.0)
        surcharge = after * rate
        cess = (after + surcharge) * CESS
        total = after + surcharge + cess
        out = TaxEstimate(
            regime="new",
            financial_year="2024-25",
            gross_income=money(p.gross_income),
            standard_deduction=money(standard),
            taxable_income=money(taxable),
            slab_tax=money(base),
            rebate=money(rebate),
            surcharge=money(surcharge),
            cess=money(cess),
            total_tax=money(total),
            effective_rate_pct=round(100 * total / p.gross_income, 2) if p.gross_income else 0.0,
        )
        return ctx.emit(out)


ADVANCE_TAX_MIN = 10_000.0
# (month, day, cumulative percent, months of 234C interest on a shortfall)
INSTALMENTS = ((6, 15, 15, 3), (9, 15, 45, 3), (12, 15, 75, 3), (3, 15, 100, 1))
SHORTFALL_WARN = 0.10
INTEREST_PER_MONTH = 0.01


class AdvanceTaxPlanner(BaseAgent):
    """Advance-tax instalments for a financial year: 15 % by 15 June, 45 % by 15 September,
    75 % by 15 December, 100 % by 15 March; none needed below Rs 10,000. For each passed due
    date the shortfall and its section 234C interest (1 % a month, three months; one for
    March); a shortfall of 10 % or more of what was due is a warning. Also the next due date
    and amount."""

    capabilities = ("advance_tax",)
    risk = Risk.MEDIUM
    produces = (AdvanceTaxPlan,)

    @handler
    async def on_request(self, payload: AdvanceTaxRequest, ctx: Context) -> Message:
        p = payload
        if p.estimated_tax < ADVANCE_TAX_MIN:
            plan = AdvanceTaxPlan(
                required=False, instalments=(), next_due=None, next_amount=0.0, warnings=()
            )
            return ctx.emit(plan)
        rows, warnings = [], []
        next_due, next_amount = None, 0.0
        for month, day, pct, months in INSTALMENTS:
            due = date(p.financial_year_start + (month < 4), month, day)
            cumulative = p.estimated_tax * pct / 100
            shortfall = interest = 0.0
            if due <= p.as_of:
                shortfall = max(0.0, cumulative - p.paid_so_far)
                interest = shortfall * INTEREST_PER_MONTH * months
                if shortfall >= SHORTFALL_WARN * cumulative:
                    warnings.append(
                        f"{due.isoformat()}: short by {shortfall:,.2f} "
                        f"({shortfall / cumulative:.0%} of the {pct}% due): "
                        "interest under sections 234B/234C at 1% a month"
                    )
            elif next_due is None:
                next_due, next_amount = due, max(0.0, cumulative - p.paid_so_far)
            rows.append(
                Instalment(
                    due=due,
                    cumulative_pct=pct,
                    cumulative_due=money(cumulative),
                    shortfall=money(shortfall),
                    interest=money(interest),
                )
            )
        plan = AdvanceTaxPlan(
            required=True,
            instalments=tuple(rows),
            next_due=next_due,
            next_amount=money(next_amount),
            warnings=tuple(warnings),
        )
        return ctx.emit(plan)


DEDUCTION_LIMITS = {
    "80c": 150_000.0,
    "80ccd_1b": 50_000.0,
    "80d_self": 25_000.0,
    "80d_parents": 25_000.0,
    "80tta": 10_000.0,
}
SENIOR_80D = 50_000.0


class DeductionsOptimizer(BaseAgent):
    """Unused old-regime deductions and the tax they would save at the marginal rate plus
    cess: 80C Rs 1.5 L, 80CCD(1B) Rs 50,000, 80D Rs 25,000 for self (Rs 50,000 if senior) and
    Rs 25,000 for parents (Rs 50,000 if senior), 80TTA Rs 10,000. An unknown section is an
    error naming the known ones."""

    capabilities = ("tax_deductions",)
    risk = Risk.MEDIUM
    produces = (DeductionsPlan,)

    @handler
    async def on_request(self, payload: DeductionsRequest, ctx: Context) -> Message:
        p = payload
        claimed = {k.casefold(): v for k, v in p.claimed.items()}
        unknown = sorted(set(claimed) - set(DEDUCTION_LIMITS))
        if unknown:
            known = ", ".join(DEDUCTION_LIMITS)
            raise ValueError(f"unknown section {unknown[0]!r} (known: {known})")
        limits = dict(DEDUCTION_LIMITS)
        if p.self_senior:
            limits["80d_self"] = SENIOR_80D
        if p.parents_senior:
            limits["80d_parents"] = SENIOR_80D
        rate = p.marginal_rate_pct / 100 * (1 + CESS)
        gaps = []
        for section, limit in limits.items():
            used = min(max(0.0, claimed.get(section, 0.0)), limit)
            gap = limit - used
            gaps.append(
                DeductionGap(
                    section=section,
                    limit=limit,
                    claimed=money(used),
                    unused=money(gap),
                    tax_saving=money(gap * rate),
                )
            )
        plan = DeductionsPlan(
            gaps=tuple(gaps),
            total_unused=money(sum(g.unused for g in gaps)),
            total_tax_saving=money(sum(g.tax_saving for g in gaps)),
        )
        return ctx.emit(plan)
