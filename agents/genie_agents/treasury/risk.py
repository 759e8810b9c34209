"""Market and liquidity risk: VaR and expected shortfall, LCR, ALM gaps, working capital."""

from __future__ import annotations

import math
import statistics

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import money
from .models import (
    BUCKETS,
    AlmRequest,
    AlmResult,
    AlmRow,
    LcrRequest,
    LcrResult,
    VarRequest,
    VarResult,
    WorkingCapitalForecast,
    WorkingCapitalRequest,
)

__all__ = ["AlmAgent", "LcrProjector", "VarCalculator", "WorkingCapitalForecaster"]


class VarCalculator(BaseAgent):
    """Value at risk of a portfolio from its daily returns. Historical: the loss at the
    ceil((1 - confidence) x n)-th worst return; expected shortfall: the mean loss of those
    worst returns; parametric: (z sigma sqrt(h) - mu h) x value with the sample sigma. Losses
    are positive; the horizon scales by sqrt(days)."""

    capabilities = ("value_at_risk",)
    risk = Risk.HIGH
    produces = (VarResult,)

    @handler
    async def on_request(self, payload: VarRequest, ctx: Context) -> Message:
        p = payload
        n, value, h = len(p.returns), p.portfolio_value, p.horizon_days
        worst = sorted(p.returns)
        k = max(1, math.ceil(round((1 - p.confidence) * n, 9)))
        scale = value * math.sqrt(h)
        mu, sigma = statistics.fmean(p.returns), statistics.stdev(p.returns)
        z = statistics.NormalDist().inv_cdf(p.confidence)
        out = VarResult(
            confidence=p.confidence,
            horizon_days=h,
            observations=n,
            historical_var=money(-worst[k - 1] * scale),
            parametric_var=money((z * sigma * math.sqrt(h) - mu * h) * value),
            expected_shortfall=money(-statistics.fmean(worst[:k]) * scale),
        )
        return ctx.emit(out)


RUN_OFF = {
    "retail_stable": 0.05,
    "retail_less_stable": 0.10,
    "wholesale_operational": 0.25,
    "wholesale_non_operational": 0.40,
    "financial_institutions": 1.00,
    "committed_facilities": 0.10,
    "other": 1.00,
}
HAIRCUT_L2A, HAIRCUT_L2B = 0.15, 0.50
INFLOW_CAP = 0.75


class LcrProjector(BaseAgent):
    """Liquidity coverage ratio = HQLA / 30-day net outflows, at least 100 %. HQLA after
    haircuts (level 2A 15 %, 2B 50 %) and the Basel caps (2B at most 15 % and all level 2 at
    most 40 % of the stock); outflows by run-off factor (retail stable 5 %, less stable 10 %,
    operational wholesale 25 %, non-operational 40 %, financial institutions 100 %, committed
    facilities 10 %, other 100 %); inflows capped at 75 % of outflows."""

    capabilities = ("liquidity_coverage",)
    risk = Risk.HIGH
    produces = (LcrResult,)

    @handler
    async def on_request(self, payload: LcrRequest, ctx: Context) -> Message:
        h = payload.hqla
        l1 = h.level1
        l2a = min(h.level2a * (1 - HAIRCUT_L2A), 2 / 3 * l1)
        l2b = min(h.level2b * (1 - HAIRCUT_L2B), 15 / 85 * (l1 + l2a), 2 / 3 * l1 - l2a)
        hqla = l1 + l2a + l2b
        balances = payload.outflows.model_dump()
        gross = sum(balances[k] * RUN_OFF[k] for k in RUN_OFF)
        if gross <= 0:
            raise ValueError("no stressed outflows: the LCR is undefined")
        inflows = min(payload.inflows, INFLOW_CAP * gross)
        net = gross - inflows
        ratio = 100 * hqla / net
        out = LcrResult(
            hqla=money(hqla),
            gross_outflows=money(gross),
            capped_inflows=money(inflows),
            net_outflows=money(net),
            lcr_pct=round(ratio, 2),
            compliant=ratio >= 100,
            shortfall=money(max(0.0, net - hqla)),
        )
        return ctx.emit(out)


BREACH_THRESHOLD = 0.15


class AlmAgent(BaseAgent):
    """Asset-liability gaps over 9 maturity buckets (1-7d ... >5y). A bucket breaches when its
    cumulative gap, deficit or surplus, is more than 15 % of total assets. NII impact of a
    parallel rate shock (the Go formula): shock x the summed gap of the six buckets within a
    year (assets less liabilities repricing inside one year)."""

    capabilities = ("asset_liability_management",)
    risk = Risk.HIGH
    produces = (AlmResult,)

    @handler
    async def on_request(self, payload: AlmRequest, ctx: Context) -> Message:
        p = payload
        rows, cumulative, nii = [], 0.0, 0.0
        shock = p.rate_shock_bp / 10_000
        for bucket, within_a_year in BUCKETS.items():
            a, li = p.assets.get(bucket, 0.0), p.liabilities.get(bucket, 0.0)
            gap = a - li
            cumulative += gap
            share = cumulative / p.total_assets
            if within_a_year:
                nii += shock * gap
            rows.append(
                AlmRow(
                    bucket=bucket,
                    assets=money(a),
                    liabilities=money(li),
                    gap=money(gap),
                    cumulative_gap=money(cumulative),
                    cumulative_gap_pct=round(100 * share, 2),
                    breach=abs(share) > BREACH_THRESHOLD,
                )
            )
        breaches = tuple(r.bucket for r in rows if r.breach)
        return ctx.emit(AlmResult(rows=tuple(rows), breaches=breaches, nii_impact=money(nii)))


DAYS = 365


class WorkingCapitalForecaster(BaseAgent):
    """Cash conversion cycle = DSO + DIO - DPO (receivables / revenue, inventory / COGS,
    payables / COGS, in days), the monthly operating cash flow ((revenue - COGS) / 12 - opex),
    cash over the next ``forecast_months`` (6 unless asked) and, when cash is burning, the
    runway in months."""

    capabilities = ("working_capital",)
    risk = Risk.MEDIUM
    produces = (WorkingCapitalForecast,)

    @handler
    async def on_request(self, payload: WorkingCapitalRequest, ctx: Context) -> Message:
        p = payload
        dso = p.receivables / p.annual_revenue * DAYS
        dio = p.inventory / p.annual_cogs * DAYS
        dpo = p.payables / p.annual_cogs * DAYS
        flow = (p.annual_revenue - p.annual_cogs) / 12 - p.monthly_operating_expenses
        cash = tuple(money(p.cash + k * flow) for k in range(1, p.forecast_months + 1))
        out = WorkingCapitalForecast(
            dso=round(dso, 1),
            dio=round(dio, 1),
            dpo=round(dpo, 1),
            cash_conversion_cycle=round(dso + dio - dpo, 1),
            monthly_cashflow=money(flow),
            cash_by_month=cash,
            runway_months=round(p.cash / -flow, 1) if flow < 0 else None,
        )
        return ctx.emit(out)
