"""Loans for people: EMI and eligibility, cash-flow underwriting, prepayment, debt payoff."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import money
from .models import (
    MAX_MONTHS,
    DebtPayoff,
    DebtPayoffPlan,
    DebtPayoffRequest,
    Loan,
    LoanSimulation,
    PrepaymentOption,
    PrepaymentPlan,
    PrepaymentRequest,
    SimulateLoan,
    UnderwriteRequest,
    UnderwriteScore,
)

__all__ = [
    "CashflowUnderwriter",
    "DebtOptimizer",
    "LoanAdvisor",
    "PrepaymentAdvisor",
    "amortize",
    "emi",
]

DSCR_MIN = 1.25
PAISA = 0.01


def emi(principal: float, annual_rate_pct: float, months: int) -> float:
    """The annuity instalment (not rounded); zero rate divides evenly. Written with the
    discount (1 + r)^-n, which tends to 0 over a long term (the EMI to the interest, P x r),
    where the growth (1 + r)^n overflows a float."""
    r = annual_rate_pct / 1200
    if r == 0:
        return principal / months
    return principal * r / -math.expm1(-months * math.log1p(r))


class LoanAdvisor(BaseAgent):
    """EMI of a loan (annuity, shown rounded to the rupee), total interest, and the debt-service
    cover ratio (monthly net income / the exact EMI): eligible at 1.25 or more. A non-positive
    principal or tenure, or a negative rate: ``invalid loan parameters``; a principal under a
    paisa (Go's none, in paise) or a tenure over 1,200 months: the same, saying which."""

    capabilities = ("simulate_loan",)
    produces = (LoanSimulation,)

    @handler
    async def on_simulate(self, payload: SimulateLoan, ctx: Context) -> Message:
        p = payload
        if p.principal <= 0 or p.months <= 0 or p.annual_rate_pct < 0:
            raise ValueError("invalid loan parameters")
        if p.principal < PAISA:  # the EMI is so small that the cover ratio is infinite
            raise ValueError("invalid loan parameters: a principal under a paisa (0.01)")
        if p.months > MAX_MONTHS:  # no number of months in the message: it may have 300 digits
            raise ValueError(f"invalid loan parameters: a term over {MAX_MONTHS:,} months")
        exact = emi(p.principal, p.annual_rate_pct, p.months)
        instalment = round(exact)
        # On the exact EMI: rounding it to the rupee first can move the ratio across 1.25.
        ratio = p.monthly_net_income / exact
        out = LoanSimulation(
            principal=p.principal,
            annual_rate_pct=p.annual_rate_pct,
            months=p.months,
            emi=instalment,
            total_interest=round(instalment * p.months - p.principal),
            dscr=round(ratio, 2),
            eligible=ratio >= DSCR_MIN,  # the exact ratio: 1.2499 rounds to 1.25 but fails
        )
        return ctx.emit(out)


# Signal weights; each signal is 0..100 and the weighted sum maps onto 300..900.
UNDERWRITING_WEIGHTS = {
    "inflow_stability": 0.25,
    "savings_rate": 0.20,
    "debt_burden": 0.20,
    "bounce_rate": 0.15,
    "expense_volatility": 0.10,
    "tenure": 0.10,
}
FULL_SAVINGS, MAX_DTI, FULL_TENURE, BOUNCE_PENALTY = 0.30, 0.50, 36, 25.0


def _clamp(x: float) -> float:
    return max(0.0, min(100.0, x))


def _cv(values: Sequence[float]) -> float:
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean > 0 else 1.0


class CashflowUnderwriter(BaseAgent):
    """Scores an applicant from bank cash flows on six 0-100 signals: inflow stability
    (1 - coefficient of variation), savings rate (30 % saved scores 100), debt burden (debt
    service / income, 50 % scores 0), bounces (-25 each), expense volatility, tenure (36
    months scores 100); weighted 25/20/20/15/10/10 and mapped onto 300-900. Bands: prime 750+,
    near_prime 650+, subprime."""

    capabilities = ("underwrite",)
    risk = Risk.HIGH
    produces = (UnderwriteScore,)

    @handler
    async def on_request(self, payload: UnderwriteRequest, ctx: Context) -> Message:
        p = payload
        income, spend = sum(p.monthly_inflows), sum(p.monthly_outflows)
        if income <= 0:
            raise ValueError("no inflows to underwrite")
        dti = p.monthly_debt_service / statistics.fmean(p.monthly_inflows)
        signals = {
            "inflow_stability": _clamp(100 * (1 - _cv(p.monthly_inflows))),
            "savings_rate": _clamp(100 * (income - spend) / income / FULL_SAVINGS),
            "debt_burden": _clamp(100 * (1 - dti / MAX_DTI)),
            "bounce_rate": _clamp(100 - BOUNCE_PENALTY * p.bounces),
            "expense_volatility": _clamp(100 * (1 - _cv(p.monthly_outflows))),
            "tenure": _clamp(100 * p.tenure_months / FULL_TENURE),
        }
        weighted = sum(UNDERWRITING_WEIGHTS[k] * v for k, v in signals.items())
        score = round(300 + 6 * weighted)
        band = "prime" if score >= 750 else "near_prime" if score >= 650 else "subprime"
        rounded = {k: round(v, 2) for k, v in signals.items()}
        out = UnderwriteScore(applicant_id=p.applicant_id, score=score, band=band, signals=rounded)
        return ctx.emit(out)


def amortize(balance: float, annual_rate_pct: float, instalment: float) -> tuple[int, float]:
    """(months, interest) to repay ``balance`` at a fixed instalment; the last one is partial.
    A balance still owed after ``MAX_MONTHS`` is an error: the interest of a schedule cut
    short is not the loan's."""
    r = annual_rate_pct / 1200
    if balance <= 0:
        return 0, 0.0
    if instalment <= balance * r:
        raise ValueError("the EMI does not cover the monthly interest")
    months, interest = 0, 0.0
    while balance > 1e-9 and months < MAX_MONTHS:
        charge = balance * r
        interest += charge
        balance = balance + charge - min(instalment, balance + charge)
        months += 1
    if balance > 1e-9:
        raise ValueError(f"not repaid within {MAX_MONTHS:,} months at this EMI")
    return months, interest


class PrepaymentAdvisor(BaseAgent):
    """For a lump sum, the interest each loan would save if the sum went to it (same EMI,
    shorter tenure), less its foreclosure or prepayment penalty; flags loans the sum would
    close. Options best first. Interest on a ``tax_deductible`` loan is saved after tax (x (1 -
    the borrower's ``marginal_rate_pct``)). The allocation splits the sum as Go did: the loan
    dearest after tax first (rate x (1 - slab) when deductible), each up to its outstanding,
    the rest to the next. A loan's EMI, when not given, is the annuity over its
    ``months_remaining``."""

    capabilities = ("prepayment_advice",)
    risk = Risk.MEDIUM
    produces = (PrepaymentPlan,)

    @handler
    async def on_request(self, payload: PrepaymentRequest, ctx: Context) -> Message:
        slab = payload.marginal_rate_pct
        options = sorted(
            (self.option(loan, payload.lump_sum, slab) for loan in payload.loans),
            key=lambda o: -o.net_saving,
        )
        dearest = sorted(payload.loans, key=lambda loan: -_after_tax_rate(loan, slab))
        allocation, left = [], payload.lump_sum
        for loan in dearest:
            if left <= 0:
                break
            allocation.append(self.option(loan, left, slab))
            left -= min(left, loan.outstanding)
        plan = PrepaymentPlan(
            best=options[0].loan_id,
            options=tuple(options),
            allocation=tuple(allocation),
            allocation_net_saving=money(sum(o.net_saving for o in allocation)),
        )
        return ctx.emit(plan)

    @staticmethod
    def option(loan: Loan, lump_sum: float, slab_pct: float = 0.0) -> PrepaymentOption:
        instalment = loan.emi or emi(
            loan.outstanding, loan.annual_rate_pct, loan.months_remaining or 1
        )
        try:
            months, interest = amortize(loan.outstanding, loan.annual_rate_pct, instalment)
        except ValueError as exc:
            raise ValueError(f"loan {loan.loan_id}: {exc}") from None
        prepay = min(lump_sum, loan.outstanding)
        after_months, after_interest = amortize(
            loan.outstanding - prepay, loan.annual_rate_pct, instalment
        )
        penalty = prepay * loan.foreclosure_penalty_pct / 100
        saved = interest - after_interest
        kept = saved * (1 - slab_pct / 100) if loan.tax_deductible else saved
        return PrepaymentOption(
            loan_id=loan.loan_id,
            prepay=money(prepay),
            interest_saved=money(saved),
            penalty=money(penalty),
            net_saving=money(kept - penalty),
            months_saved=months - after_months,
            forecloses=prepay >= loan.outstanding,
        )


def _after_tax_rate(loan: Loan, slab_pct: float) -> float:
    """What a rupee of the loan costs a year after tax (Go's effective rate)."""
    return loan.annual_rate_pct * (1 - slab_pct / 100 if loan.tax_deductible else 1)


PAYOFF_CAP_MONTHS = 600


class DebtOptimizer(BaseAgent):
    """A month-by-month payoff schedule for a fixed budget: minimums on every debt, the rest
    to the highest rate (avalanche) or the smallest balance (snowball); payments freed by a
    closed debt roll on. Capped at 600 months. A budget below the minimums is an error."""

    capabilities = ("debt_payoff",)
    risk = Risk.MEDIUM
    produces = (DebtPayoffPlan,)

    @handler
    async def on_request(self, payload: DebtPayoffRequest, ctx: Context) -> Message:
        minimums = sum(d.min_payment for d in payload.debts)
        # to the paisa: fifty minimums of 0.01 add up to 0.5000000000000002, above 0.50
        if money(payload.monthly_budget) < money(minimums):
            raise ValueError(
                f"budget {payload.monthly_budget:,.2f} is below the minimum payments "
                f"{minimums:,.2f}"
            )
        balances = {d.name: d.balance for d in payload.debts}
        rates = {d.name: d.annual_rate_pct / 1200 for d in payload.debts}
        mins = {d.name: d.min_payment for d in payload.debts}
        interest = dict.fromkeys(balances, 0.0)
        paid_off: list[DebtPayoff] = []
        month = 0
        while balances and month < PAYOFF_CAP_MONTHS:
            month += 1
            for name in balances:
                charge = balances[name] * rates[name]
                interest[name] += charge
                balances[name] += charge
            budget = payload.monthly_budget
            for name in balances:
                pay = min(mins[name], balances[name])
                balances[name] -= pay
                budget -= pay
            if payload.strategy == "avalanche":
                order = sorted(balances, key=lambda n: (-rates[n], balances[n]))
            else:
                order = sorted(balances, key=lambda n: (balances[n], -rates[n]))
            for name in order:
                pay = min(budget, balances[name])
                balances[name] -= pay
                budget -= pay
            for name in [n for n, b in balances.items() if b <= 1e-6]:
                del balances[name]
                paid_off.append(DebtPayoff(name=name, month=month, interest=money(interest[name])))
        plan = DebtPayoffPlan(
            strategy=payload.strategy,
            months=month,
            total_interest=money(sum(interest.values())),
            payoffs=tuple(paid_off),
            capped=bool(balances),
        )
        return ctx.emit(plan)
