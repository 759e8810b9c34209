"""The SME loan workflow: a fixed DAG of steps, each recorded in the offer."""

from __future__ import annotations

import statistics

from genie import BaseAgent, Context, Message, Risk, handler

from ..payments.invoices import GSTIN
from .loans import emi
from .models import SmeLoanOffer, SmeLoanRequest, WorkflowStep

__all__ = ["SmeLoanWorkflow"]

CRORE = 10_000_000.0
CGTMSE_MAX = 5 * CRORE
TURNOVER_SHARE = 0.30
MIN_GST_ON_TIME = 9  # of 12 returns
SURPLUS_SHARE = 0.50  # the EMI may take at most half the monthly surplus
BASE_RATE, NO_GUARANTEE_SPREAD, TENURE = 10.5, 1.5, 60
# With a cash-flow score (Go's pricing): the score's floor, the spread a score of 0 pays over
# the base, and the guarantee's relief.
MIN_CASHFLOW_SCORE, SCORE_SPREAD, GUARANTEE_RELIEF = 0.30, 5.0, 0.5
CGTMSE_SECTORS = ("manufacturing", "services", "trading")
STEPS = (
    "gst_fetch",
    "cashflow_analysis",
    "cgtmse_eligibility",
    "indicative_offer",
    "human_approval",
    "sanction_letter",
)


class SmeLoanWorkflow(BaseAgent):
    """Runs gst_fetch -> cashflow_analysis -> cgtmse_eligibility -> indicative_offer ->
    human_approval -> sanction_letter. GST: a valid GSTIN (when given) and 9+ of 12 returns on
    time (or regular filing). Cash flow: a positive monthly surplus after existing EMIs, and a
    cash-flow score of 0.30 or more, whichever is given (both: both). CGTMSE guarantee for
    micro and small enterprises up to Rs 5 crore, Udyam-registered and in manufacturing,
    services or trading (when told). Offer: the least of the request, 30 % of turnover and
    what half the surplus can service over the tenure (default 60 months); at 10.5 % (+1.5 %
    without the guarantee), or with a score at 10.5 % + (1 - score) x 5 % (-0.5 % with the
    guarantee). Human approval: the Go handler auto-approved after polling; here
    ``auto_approve`` (default true) says so, and false leaves the offer ``awaiting_approval``.
    A failed step declines and the later steps are skipped."""

    capabilities = ("sme_lending",)
    risk = Risk.HIGH
    produces = (SmeLoanOffer,)

    def __init__(self, id: str, *, auto_approve: bool = True) -> None:
        super().__init__(id)
        self.auto_approve = auto_approve

    @handler
    async def on_request(self, payload: SmeLoanRequest, ctx: Context) -> Message:
        return ctx.emit(self.run(payload))

    def run(self, p: SmeLoanRequest) -> SmeLoanOffer:
        steps: list[WorkflowStep] = []
        offer = {"amount": 0.0, "rate": 0.0, "emi": 0, "cgtmse": False}

        def step(status: str, detail: str) -> None:
            steps.append(
                WorkflowStep.model_validate(
                    {"name": STEPS[len(steps)], "status": status, "detail": detail}
                )
            )

        def finish(status: str, letter: str = "") -> SmeLoanOffer:
            steps.extend(
                WorkflowStep(name=name, status="skipped", detail="") for name in STEPS[len(steps) :]
            )
            return SmeLoanOffer.model_validate(
                {
                    "business_id": p.business_id,
                    "status": status,
                    "amount": offer["amount"],
                    "annual_rate_pct": offer["rate"],
                    "tenure_months": (p.tenure_months or TENURE) if offer["amount"] else 0,
                    "emi": offer["emi"],
                    "cgtmse": offer["cgtmse"],
                    "steps": tuple(steps),
                    "sanction_letter": letter,
                }
            )

        if p.gstin is not None and not GSTIN.fullmatch(p.gstin.strip().upper()):
            step("failed", f"GSTIN {p.gstin!r} is not valid")
            return finish("declined")
        no_gstin = "; no GSTIN given" if p.gstin is None else ""
        if p.gst_returns_on_time is not None:
            if p.gst_returns_on_time < MIN_GST_ON_TIME:
                step("failed", f"{p.gst_returns_on_time}/12 GST returns on time (needs 9)")
                return finish("declined")
            step("done", f"{p.gst_returns_on_time}/12 GST returns on time{no_gstin}")
        elif not p.gst_filing_regular:
            step("failed", "GST filing not regular (the last 12 returns not all on time)")
            return finish("declined")
        else:
            step("done", f"GST filing regular{no_gstin}")
        surplus, found = None, []
        if p.monthly_inflows is not None and p.monthly_outflows is not None:
            surplus = (
                statistics.fmean(p.monthly_inflows)
                - statistics.fmean(p.monthly_outflows)
                - p.existing_emi
            )
            if surplus <= 0:
                step("failed", f"monthly surplus {surplus:,.2f} after existing EMIs")
                return finish("declined")
            found.append(f"monthly surplus {surplus:,.2f}")
        score = p.cashflow_score
        if score is not None:
            if score < MIN_CASHFLOW_SCORE:
                step("failed", f"cash-flow score {score:.2f} below {MIN_CASHFLOW_SCORE:.2f}")
                return finish("declined")
            found.append(f"cash-flow score {score:.2f}")
        step("done", ", ".join(found))
        not_eligible = [
            why
            for why, fails in (
                ("not a micro or small enterprise", not p.micro_or_small),
                ("not Udyam-registered", p.udyam_registered is False),
                (
                    f"sector {p.sector!r} not covered",
                    bool(p.sector) and p.sector.casefold() not in CGTMSE_SECTORS,
                ),
                ("above Rs 5 crore", p.requested_amount > CGTMSE_MAX),
            )
            if fails
        ]
        cgtmse = not not_eligible
        offer["cgtmse"] = cgtmse
        step("done", "eligible" if cgtmse else f"not eligible ({', '.join(not_eligible)})")
        tenure = p.tenure_months or TENURE
        if score is None:
            rate = BASE_RATE + (0.0 if cgtmse else NO_GUARANTEE_SPREAD)
        else:  # the score prices the risk; the guarantee takes some off
            spread = (1 - score) * SCORE_SPREAD - (GUARANTEE_RELIEF if cgtmse else 0.0)
            rate = round(BASE_RATE + spread, 2)
        caps = [p.requested_amount, TURNOVER_SHARE * p.annual_turnover]
        if surplus is not None:
            caps.append(SURPLUS_SHARE * surplus / emi(1.0, rate, tenure))
        amount = round(min(caps))
        offer.update(amount=float(amount), rate=rate, emi=round(emi(amount, rate, tenure)))
        limit = "" if amount == p.requested_amount else " (reduced from the request)"
        step("done", f"Rs {amount:,} at {rate}% for {tenure} months{limit}")
        if not self.auto_approve:
            step("waiting", "awaiting a credit officer")
            return finish("awaiting_approval")
        step("done", "auto-approved")
        letter = (
            f"Sanctioned to {p.business_id}: Rs {amount:,} at {rate}% a year for {tenure} "
            f"months, EMI Rs {offer['emi']:,}" + (", CGTMSE guarantee cover." if cgtmse else ".")
        )
        step("done", "issued")
        return finish("sanctioned", letter)
