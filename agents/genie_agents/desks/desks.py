"""Desks: an agent that splits one application into the specialists' requests, and decides
once a declared gather hands back their answers (see config/pipelines/onboarding.yaml,
lending.yaml, treasury.yaml). Not ports of a Go agent: Go had no such flows. A part the
gather could not collect before its deadline is named in ``missing`` and never approves."""

from __future__ import annotations

import statistics

from genie import BaseAgent, Context, Message, Risk, handler

from ..finance.models import IngestCsv
from ..fraud.models import AmlReports, FraudSignals, KycRequest, KycVerdict, MuleSignals
from ..lending.models import (
    LoanSimulation,
    PrepaymentPlan,
    PrepaymentRequest,
    SimulateLoan,
    UnderwriteRequest,
    UnderwriteScore,
)
from ..payments.models import PaymentInstruction, PaymentRequest
from ..treasury.models import (
    AlmRequest,
    AlmResult,
    LcrRequest,
    LcrResult,
    VarRequest,
    VarResult,
)
from .models import (
    LendingDecision,
    LendingParts,
    LoanApplication,
    OnboardingApplication,
    OnboardingDecision,
    OnboardingParts,
    TreasuryParts,
    TreasuryReport,
    TreasurySnapshot,
)

__all__ = ["LendingDesk", "OnboardingDesk", "TreasuryDesk"]


class OnboardingDesk(BaseAgent):
    """Opens an account: sends the customer to KYC, the statement to the finance flow (whose
    analysis the fraud, mule and AML detectors read) and the first payment to the payment
    orchestrator; then decides. Reject: sanctions, an STR to file, high mule or fraud risk.
    Review: enhanced due diligence, medium fraud or mule risk, a threshold report, a payment
    not submitted, or a missing part. Approve otherwise."""

    capabilities = ("onboarding",)
    risk = Risk.HIGH
    produces = (KycRequest, IngestCsv, PaymentRequest, OnboardingDecision)

    @handler
    async def on_application(
        self, payload: OnboardingApplication, ctx: Context
    ) -> tuple[Message, ...]:
        return (
            ctx.emit(payload.customer),
            ctx.emit(IngestCsv(csv=payload.statement_csv)),
            ctx.emit(payload.first_payment),
        )

    @handler
    async def on_parts(self, payload: OnboardingParts, ctx: Context) -> Message:
        kyc = payload.part(KycVerdict)
        fraud, mule = payload.part(FraudSignals), payload.part(MuleSignals)
        aml, pay = payload.part(AmlReports), payload.part(PaymentInstruction)
        rejects, reviews = [], payload.missing_lines()
        if kyc is not None:
            if kyc.decision == "reject":
                rejects.append(f"KYC rejected ({', '.join(kyc.reasons)})")
            elif kyc.decision == "edd":
                reviews.append(f"KYC needs enhanced due diligence (score {kyc.score})")
        if aml is not None and aml.reports:
            kinds = ", ".join(r.kind for r in aml.reports)
            (rejects if aml.str_required else reviews).append(f"AML: {kinds}")
        for label, level, found in (
            ("fraud", fraud.severity if fraud else None, fraud.signals if fraud else ()),
            ("mule", mule.risk if mule else None, mule.signals if mule else ()),
        ):
            if found and level == "high":
                rejects.append(f"{label} risk high: {', '.join(s.kind for s in found)}")
            elif found:
                reviews.append(f"{label} signals: {', '.join(s.kind for s in found)}")
        if pay is not None and pay.action != "submit":
            reviews.append(f"first payment {pay.action}: {pay.reason}")
        decision = "reject" if rejects else "review" if reviews else "approve"
        out = OnboardingDecision(
            customer_id=kyc.customer_id if kyc else "",
            decision=decision,
            reasons=(*rejects, *reviews),
            missing=payload.missing,
        )
        return ctx.emit(out)


class LendingDesk(BaseAgent):
    """Takes a loan application: cash-flow underwriting, the EMI and DSCR of the loan asked
    for (monthly net = mean inflow - mean outflow), and, with existing loans and a budget, the
    best prepayment. Approve when the band is prime or near-prime and the DSCR is eligible;
    refer when one of the two fails or a part is missing; decline when both fail."""

    capabilities = ("lending",)
    risk = Risk.HIGH
    produces = (UnderwriteRequest, SimulateLoan, PrepaymentRequest, LendingDecision)

    @handler
    async def on_application(self, payload: LoanApplication, ctx: Context) -> tuple[Message, ...]:
        p = payload
        net = statistics.fmean(p.monthly_inflows) - statistics.fmean(p.monthly_outflows)
        out = [
            ctx.emit(
                UnderwriteRequest(
                    applicant_id=p.applicant_id,
                    monthly_inflows=p.monthly_inflows,
                    monthly_outflows=p.monthly_outflows,
                    monthly_debt_service=p.monthly_debt_service,
                    bounces=p.bounces,
                    tenure_months=p.tenure_months,
                )
            ),
            ctx.emit(
                SimulateLoan(
                    principal=p.principal,
                    annual_rate_pct=p.annual_rate_pct,
                    months=p.months,
                    monthly_net_income=net,
                )
            ),
        ]
        if p.existing_loans and p.prepayment_budget > 0:
            prepay = PrepaymentRequest(loans=p.existing_loans, lump_sum=p.prepayment_budget)
            out.append(ctx.emit(prepay))
        return tuple(out)

    @handler
    async def on_parts(self, payload: LendingParts, ctx: Context) -> Message:
        score, loan = payload.part(UnderwriteScore), payload.part(LoanSimulation)
        plan = payload.part(PrepaymentPlan)
        failures, reasons = 0, []
        if score is not None:
            reasons.append(f"cash-flow score {score.score} ({score.band})")
            failures += score.band == "subprime"
        if loan is not None:
            verdict = "eligible" if loan.eligible else "below 1.25"
            reasons.append(f"EMI {loan.emi:,} with DSCR {loan.dscr} ({verdict})")
            failures += not loan.eligible
        missing = tuple(m for m in payload.missing if m != "prepayment_plan")
        reasons += payload.missing_lines(missing)
        if failures == 2:
            decision = "decline"
        elif failures or missing:
            decision = "refer"
        else:
            decision = "approve"
        tip = ""
        if plan is not None and plan.options and plan.options[0].net_saving > 0:
            best = plan.options[0]
            tip = (
                f"prepay {best.prepay:,.2f} on {best.loan_id}: saves {best.net_saving:,.2f} "
                f"net of penalty and {best.months_saved} months"
            )
        out = LendingDecision(
            applicant_id=score.applicant_id if score else "",
            decision=decision,
            reasons=tuple(reasons),
            score=score.score if score else None,
            emi=loan.emi if loan else None,
            dscr=loan.dscr if loan else None,
            prepayment_tip=tip,
            missing=payload.missing,
        )
        return ctx.emit(out)


class TreasuryDesk(BaseAgent):
    """The daily risk pack: VaR, LCR and ALM from one snapshot. Red when the LCR is below
    100 % or an ALM bucket breaches; amber when historical VaR exceeds the desk's ``var_limit``
    or a part is missing; green otherwise."""

    capabilities = ("treasury_risk_pack",)
    risk = Risk.HIGH
    produces = (VarRequest, LcrRequest, AlmRequest, TreasuryReport)

    def __init__(self, id: str, *, var_limit: float | None = None) -> None:
        super().__init__(id)
        if var_limit is not None and var_limit <= 0:
            raise ValueError("var_limit must be positive")
        self.var_limit = var_limit

    @handler
    async def on_snapshot(self, payload: TreasurySnapshot, ctx: Context) -> tuple[Message, ...]:
        return (ctx.emit(payload.var), ctx.emit(payload.lcr), ctx.emit(payload.alm))

    @handler
    async def on_parts(self, payload: TreasuryParts, ctx: Context) -> Message:
        var, lcr = payload.part(VarResult), payload.part(LcrResult)
        alm = payload.part(AlmResult)
        red, amber, lines = False, bool(payload.missing), []
        if var is not None:
            lines.append(
                f"VaR {var.confidence:.0%} {var.horizon_days}d: historical "
                f"{var.historical_var:,.2f}, parametric {var.parametric_var:,.2f}, "
                f"ES {var.expected_shortfall:,.2f}"
            )
            if self.var_limit is not None and var.historical_var > self.var_limit:
                amber = True
                lines.append(f"VaR above the limit {self.var_limit:,.2f}")
        if lcr is not None:
            red |= not lcr.compliant
            state = "compliant" if lcr.compliant else f"short by {lcr.shortfall:,.2f}"
            lines.append(f"LCR {lcr.lcr_pct}% ({state})")
        if alm is not None:
            red |= bool(alm.breaches)
            breaches = ", ".join(alm.breaches) or "none"
            lines.append(f"ALM breaches: {breaches}; NII impact {alm.nii_impact:,.2f}")
        lines += payload.missing_lines()
        status = "red" if red else "amber" if amber else "green"
        return ctx.emit(TreasuryReport(status=status, lines=tuple(lines), missing=payload.missing))
