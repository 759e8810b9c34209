"""The SME loan workflow: a fixed DAG of steps, each recorded in the offer."""

from __future__ import annotations

import statistics
from typing import Literal, NamedTuple

from genie import BaseAgent, Context, Message, Risk, handler

from ..payments.invoices import GSTIN
from .loans import emi
from .models import SmeLoanFile, SmeLoanOffer, SmeLoanRequest, SmeOfferRelease, WorkflowStep

__all__ = ["SmeLoanStep", "SmeLoanWorkflow"]

CRORE = 10_000_000.0
CGTMSE_MAX = 5 * CRORE
TURNOVER_SHARE = 0.30
MIN_GST_ON_TIME = 9  # of 12 returns
SURPLUS_SHARE = 0.50  # the EMI may take at most half the monthly surplus
BASE_RATE, NO_GUARANTEE_SPREAD, TENURE = 10.5, 1.5, 60
# With a cash-flow score (Go's pricing): the score's floor, the spread a score of 0 pays over
# the base, and the guarantee's relief.
MIN_CASHFLOW_SCORE, SCORE_SPREAD, GUARANTEE_RELIEF = 0.30, 5.0, 0.5
StepName = Literal[
    "gst_fetch", "cashflow_analysis", "cgtmse_eligibility", "indicative_offer", "sanction_letter"
]
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
        offer = Offer(0.0, 0.0, 0, 0)
        cgtmse = False

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
                    "amount": offer.amount,
                    "annual_rate_pct": offer.rate,
                    "tenure_months": offer.tenure,
                    "emi": offer.emi,
                    "cgtmse": cgtmse,
                    "steps": tuple(steps),
                    "sanction_letter": letter,
                }
            )

        try:
            step("done", gst_check(p))
            surplus, found = cashflow_check(p)
            step("done", found)
        except LoanDeclinedError as declined:
            step("failed", str(declined))
            return finish("declined")
        cgtmse, why = cgtmse_check(p)
        step("done", why)
        offer = price_offer(p, surplus, cgtmse)
        step("done", offer.detail)
        if not self.auto_approve:
            step("waiting", "awaiting a credit officer")
            return finish("awaiting_approval")
        step("done", "auto-approved")
        letter = sanction_letter(p, offer, cgtmse)
        step("done", "issued")
        return finish("sanctioned", letter)


class SmeLoanStep(BaseAgent):
    """One step of the SME loan workflow as a pipeline runs it (config/pipelines/sme-loan.yaml):
    ``step`` is gst_fetch, cashflow_analysis, cgtmse_eligibility, indicative_offer or
    sanction_letter, each the same check as ``sme_loan_workflow``'s, on the workflow's state.
    A failed check declines the loan: the step fails, and the workflow compensates.
    ``indicative_offer`` holds the offered amount in the lender's book (``held``, keyed by the
    delivery id, so a step run again after a restart holds it once) and releases it when the
    workflow compensates the offer; ``limit`` caps what the book may hold at once."""

    capabilities = ("sme_lending",)
    risk = Risk.HIGH
    produces = (SmeLoanFile,)

    def __init__(self, id: str, *, step: StepName, limit: float = 50 * CRORE) -> None:
        super().__init__(id)
        self.step = step
        self.limit = limit
        self.held: dict[str, float] = {}  # the reservation (a delivery id) -> the amount

    @handler
    async def on_file(self, file: SmeLoanFile, ctx: Context) -> Message:
        p = file.request
        found: dict[str, object]
        if self.step == "gst_fetch":
            found = {"gst": gst_check(p)}
        elif self.step == "cashflow_analysis":
            surplus, detail = cashflow_check(p)
            found = {"surplus": surplus, "cashflow": detail}
        elif self.step == "cgtmse_eligibility":
            cgtmse, detail = cgtmse_check(p)
            found = {"cgtmse": cgtmse, "cgtmse_detail": detail}
        elif self.step == "indicative_offer":
            offer = price_offer(p, file.surplus, bool(file.cgtmse))
            reservation = f"{ctx.message.id}:{self.id}"  # the delivery id: held once
            if reservation not in self.held:
                if sum(self.held.values()) + offer.amount > self.limit:
                    raise LoanDeclinedError(
                        f"the lender's book cannot hold Rs {round(offer.amount):,} more"
                    )
                self.held[reservation] = offer.amount
            found = {
                "amount": offer.amount,
                "annual_rate_pct": offer.rate,
                "tenure_months": offer.tenure,
                "emi": offer.emi,
                "offer": offer.detail,
                "reservation": reservation,
            }
        else:
            offer = Offer(file.amount, file.annual_rate_pct, file.emi, file.tenure_months)
            found = {"sanction_letter": sanction_letter(p, offer, bool(file.cgtmse))}
        return ctx.reply(file.model_copy(update=found))

    @handler
    async def on_release(self, release: SmeOfferRelease, ctx: Context) -> Message:
        self.held.pop(release.reservation, None)  # released already: nothing more to do
        return ctx.reply(release)


class LoanDeclinedError(Exception):
    """A step's check failed: the loan is declined, for the reason given."""


class Offer(NamedTuple):
    amount: float
    rate: float
    emi: int
    tenure: int
    detail: str = ""


def gst_check(p: SmeLoanRequest) -> str:
    """GST: a valid GSTIN (when given) and 9+ of 12 returns on time (or regular filing)."""
    if p.gstin is not None and not GSTIN.fullmatch(p.gstin.strip().upper()):
        raise LoanDeclinedError(f"GSTIN {p.gstin!r} is not valid")
    no_gstin = "; no GSTIN given" if p.gstin is None else ""
    if p.gst_returns_on_time is not None:
        if p.gst_returns_on_time < MIN_GST_ON_TIME:
            raise LoanDeclinedError(f"{p.gst_returns_on_time}/12 GST returns on time (needs 9)")
        return f"{p.gst_returns_on_time}/12 GST returns on time{no_gstin}"
    if not p.gst_filing_regular:
        raise LoanDeclinedError("GST filing not regular (the last 12 returns not all on time)")
    return f"GST filing regular{no_gstin}"


def cashflow_check(p: SmeLoanRequest) -> tuple[float | None, str]:
    """The monthly surplus after existing EMIs (when the flows are given), and what was found."""
    surplus, found = None, []
    if p.monthly_inflows is not None and p.monthly_outflows is not None:
        surplus = (
            statistics.fmean(p.monthly_inflows)
            - statistics.fmean(p.monthly_outflows)
            - p.existing_emi
        )
        if surplus <= 0:
            raise LoanDeclinedError(f"monthly surplus {surplus:,.2f} after existing EMIs")
        found.append(f"monthly surplus {surplus:,.2f}")
    score = p.cashflow_score
    if score is not None:
        if score < MIN_CASHFLOW_SCORE:
            raise LoanDeclinedError(f"cash-flow score {score:.2f} below {MIN_CASHFLOW_SCORE:.2f}")
        found.append(f"cash-flow score {score:.2f}")
    return surplus, ", ".join(found)


def cgtmse_check(p: SmeLoanRequest) -> tuple[bool, str]:
    """Whether the CGTMSE guarantee covers the loan, and why not."""
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
    if not_eligible:
        return False, f"not eligible ({', '.join(not_eligible)})"
    return True, "eligible"


def price_offer(p: SmeLoanRequest, surplus: float | None, cgtmse: bool) -> Offer:
    """The least of the request, 30 % of turnover and what half the surplus can service."""
    tenure = p.tenure_months or TENURE
    score = p.cashflow_score
    if score is None:
        rate = BASE_RATE + (0.0 if cgtmse else NO_GUARANTEE_SPREAD)
    else:  # the score prices the risk; the guarantee takes some off
        spread = (1 - score) * SCORE_SPREAD - (GUARANTEE_RELIEF if cgtmse else 0.0)
        rate = round(BASE_RATE + spread, 2)
    caps = [p.requested_amount, TURNOVER_SHARE * p.annual_turnover]
    if surplus is not None:
        caps.append(SURPLUS_SHARE * surplus / emi(1.0, rate, tenure))
    amount = round(min(caps))
    limit = "" if amount == p.requested_amount else " (reduced from the request)"
    detail = f"Rs {amount:,} at {rate}% for {tenure} months{limit}"
    return Offer(float(amount), rate, round(emi(amount, rate, tenure)), tenure, detail)


def sanction_letter(p: SmeLoanRequest, offer: Offer, cgtmse: bool) -> str:
    return (
        f"Sanctioned to {p.business_id}: Rs {round(offer.amount):,} at {offer.rate}% a year for "
        f"{offer.tenure} months, EMI Rs {offer.emi:,}"
        + (", CGTMSE guarantee cover." if cgtmse else ".")
    )
