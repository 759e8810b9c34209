"""Capital gains: harvesting losses (and tax-free long-term gains) on listed equity."""

from __future__ import annotations

from datetime import timedelta

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import money
from .models import HarvestAction, Lot, TaxHarvestPlan, TaxHarvestRequest

__all__ = ["TaxHarvester", "capital_gains_tax"]

STCG_RATE, LTCG_RATE, LTCG_EXEMPTION = 0.20, 0.125, 125_000.0
LONG_TERM_AFTER = timedelta(days=365)
WASH_WINDOW = timedelta(days=30)


def capital_gains_tax(stcg: float, ltcg: float) -> float:
    return STCG_RATE * max(0.0, stcg) + LTCG_RATE * max(0.0, ltcg - LTCG_EXEMPTION)


class TaxHarvester(BaseAgent):
    """Plans sales of listed-equity lots against the year's realised gains: STCG 20 %, LTCG
    12.5 % above Rs 1.25 L, long term after 365 days. Losses are sold largest first while
    taxable gains remain (short-term losses offset STCG first, then LTCG; long-term losses only
    LTCG); then long-term gains are booked while they stay within the exemption. Lots bought
    in the last 30 days carry a wash-sale flag."""

    capabilities = ("tax_harvest",)
    risk = Risk.MEDIUM
    produces = (TaxHarvestPlan,)

    @handler
    async def on_request(self, payload: TaxHarvestRequest, ctx: Context) -> Message:
        p = payload
        stcg, ltcg = p.realised_stcg, p.realised_ltcg
        before = capital_gains_tax(stcg, ltcg)

        def action(lot: Lot, kind: str) -> HarvestAction:
            return HarvestAction.model_validate(
                {
                    "symbol": lot.symbol,
                    "bought_on": lot.bought_on,
                    "action": kind,
                    "term": "long" if self._long(lot, p) else "short",
                    "gain": money(self._gain(lot)),
                    "wash_risk": p.as_of - lot.bought_on < WASH_WINDOW,
                }
            )

        actions = []
        for lot in sorted((x for x in p.lots if self._gain(x) < 0), key=self._gain):
            if stcg <= 0 and ltcg <= LTCG_EXEMPTION:
                break
            loss = -self._gain(lot)
            if self._long(lot, p):
                ltcg -= loss
            else:
                used = min(loss, max(0.0, stcg))
                stcg -= used
                ltcg -= loss - used
            actions.append(action(lot, "sell_loss"))
        for lot in sorted((x for x in p.lots if self._gain(x) > 0), key=lambda x: -self._gain(x)):
            if self._long(lot, p) and ltcg + self._gain(lot) <= LTCG_EXEMPTION:
                ltcg += self._gain(lot)
                actions.append(action(lot, "sell_gain"))
        after = capital_gains_tax(stcg, ltcg)
        plan = TaxHarvestPlan(
            actions=tuple(actions),
            tax_before=money(before),
            tax_after=money(after),
            saving=money(before - after),
        )
        return ctx.emit(plan)

    @staticmethod
    def _gain(lot: Lot) -> float:
        return (lot.price - lot.cost_per_unit) * lot.quantity

    @staticmethod
    def _long(lot: Lot, p: TaxHarvestRequest) -> bool:
        return p.as_of - lot.bought_on > LONG_TERM_AFTER
