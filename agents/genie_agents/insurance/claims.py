"""Claims: health claims adjudication, cashless pre-authorisation, motor."""

from __future__ import annotations

from datetime import timedelta

from genie import ApprovalDecision, ApprovalRequest, BaseAgent, Context, Message, Risk, handler
from genie._base.resilience import positive_seconds

from .._common import from_the_desk, money
from .models import (
    NCB_LADDER,
    ClaimDecision,
    ClaimRequest,
    MotorRequest,
    MotorResponse,
    PreauthDecision,
    PreauthRequest,
)

__all__ = ["AutoInsurance", "ClaimAdjudicator", "HealthPreauth", "adjudicate"]

CLAIM_HITL_AT = 200_000.0


def adjudicate(req: ClaimRequest) -> ClaimDecision:
    """What the policy pays, item by item, then the action."""
    terms = req.policy
    claimed = money(sum(i.amount for i in req.items))

    def decision(action: str, payable: float, reasons: list[str]) -> ClaimDecision:
        return ClaimDecision.model_validate(
            {
                "claim_id": req.claim_id,
                "action": action,
                "claimed": claimed,
                "payable": money(payable),
                "reasons": tuple(reasons),
            }
        )

    if req.incident_date < terms.start_date:
        reason = f"incident on {req.incident_date}, before the policy started on {terms.start_date}"
        return decision("deny", 0.0, [reason])
    waiting_ends = terms.start_date + timedelta(days=terms.waiting_period_days)
    if req.incident_date < waiting_ends:
        reason = f"incident within the {terms.waiting_period_days}-day waiting period"
        return decision("deny", 0.0, [reason])
    diagnosis = req.diagnosis.lower()
    for word in terms.exclusions:
        if diagnosis and word.lower() in diagnosis:
            return decision("deny", 0.0, [f"the diagnosis matches the exclusion {word!r}"])
    rules = {r.category: r for r in terms.coverage}
    # What the policy admits per item (its sublimit caps the expense), then the deductible
    # off the admitted total, then each item's co-pay on what the deductible leaves of it:
    # the order Indian health policies state ("co-payment on the admissible claim amount
    # after the deductible"). The deductible is shared across the items in proportion to
    # their admitted amounts, so the order of the items cannot change the payout. A
    # sublimit is the category's: items of one category are summed before it caps them, so
    # a bill split into items is paid as the same bill in one.
    by_category: dict[str, float] = {}
    for item in req.items:
        by_category[item.category] = by_category.get(item.category, 0.0) + item.amount
    admitted: list[tuple[float, float]] = []  # (amount admitted, co-pay share)
    reasons: list[str] = []
    copays: list[str] = []
    for category, amount in by_category.items():
        rule = rules.get(category)
        if category in terms.exclusions:
            reasons.append(f"{category}: excluded")
        elif category in terms.network_only and not req.in_network:
            reasons.append(f"{category}: covered at network hospitals only")
        elif rule is None:
            reasons.append(f"{category}: not covered")
        else:
            if rule.sublimit is not None and amount > rule.sublimit:
                reasons.append(f"{category}: capped at the sublimit {rule.sublimit:,.2f}")
                amount = rule.sublimit
            if rule.copay:
                copays.append(f"{category}: {rule.copay:.0%} co-payment")
            admitted.append((amount, rule.copay))
    total = sum(amount for amount, _ in admitted)
    if terms.deductible and total:
        reasons.append(f"deductible {terms.deductible:,.2f}")
    left = max(0.0, total - terms.deductible) / total if total else 0.0
    payable = sum(amount * left * (1 - copay) for amount, copay in admitted)
    reasons.extend(copays if payable else ())
    remaining = max(0.0, terms.sum_insured - req.paid_this_year)
    if payable > remaining:
        reasons.append(f"capped at the remaining sum insured {remaining:,.2f}")
        payable = remaining
    if claimed >= CLAIM_HITL_AT:
        reasons.append(f"claims of {CLAIM_HITL_AT:,.0f} or more need a human adjuster")
        return decision("hitl", payable, reasons)
    if payable <= 0:
        return decision("deny", 0.0, reasons)
    return decision("approve" if money(payable) == claimed else "approve_partial", payable, reasons)


class ClaimAdjudicator(BaseAgent):
    """Adjudicates a health claim against the policy's rules given as data: waiting period,
    exclusions (an item's category, or a word of the diagnosis: the whole claim), covered
    categories with sublimits and co-payments, categories covered at network hospitals only,
    deductible, the sum insured left this year; an incident before the policy's start is
    denied. The items of a category are capped together at its sublimit, the
    deductible comes off the total (shared in proportion), then each item's co-pay applies
    to what is left of it. Pays in full (approve), in part
    (approve_partial) or nothing (deny); a claim of Rs 2 lakh or more goes to a human with the
    computed amount: with ``approval_role``, it waits for an adjuster of that role to approve
    the amount (docs/durability.md), within ``approval_deadline`` seconds; without, it ends as
    Go's ``hitl`` flag. A decision not sent by the approval desk is refused."""

    capabilities = ("adjudicate_claim",)
    risk = Risk.HIGH
    produces = (ClaimDecision, ApprovalRequest)

    def __init__(
        self,
        id: str,
        *,
        approval_role: str | None = None,
        approval_deadline: float | None = None,
    ) -> None:
        super().__init__(id)
        self.approval_role = approval_role
        positive_seconds(approval_deadline, "approval_deadline", f"claim_adjudicator {id!r}")
        self.approval_deadline = approval_deadline

    @handler
    async def on_claim(self, payload: ClaimRequest, ctx: Context) -> Message:
        out = adjudicate(payload)
        if out.action == "hitl" and self.approval_role is not None:
            ask = ApprovalRequest(
                subject=f"claim {out.claim_id}: pay {out.payable:,.2f} of {out.claimed:,.2f}",
                role=self.approval_role,
                deadline=self.approval_deadline,
                details=out.model_dump_json(),
            )
            return ctx.emit(ask)
        return ctx.emit(out)

    @handler
    async def on_decision(self, decision: ApprovalDecision, ctx: Context) -> Message:
        """A claim an adjuster decided: the computed amount paid, or the claim denied."""
        from_the_desk(ctx)
        held = ClaimDecision.model_validate_json(decision.details)
        reasons = (*held.reasons, decision.said())
        if decision.approved and held.payable > 0:
            action = "approve" if held.payable == held.claimed else "approve_partial"
            out = held.model_copy(update={"action": action, "reasons": reasons})
        else:  # rejected, or approved with nothing payable
            out = held.model_copy(update={"action": "deny", "payable": 0.0, "reasons": reasons})
        return ctx.emit(out)


PREAUTH_TAT = timedelta(hours=1)


class HealthPreauth(BaseAgent):
    """Cashless pre-authorisation, answered within the 1-hour turnaround (``respond_by``).
    Inactive policy, not a network hospital, excluded procedure, or an admission within a
    waiting period (pre-existing disease, specific condition): deny. An estimate of ``hitl_at``
    (Rs 5 lakh) or more: a human decides. Deductions (approve_with_deduction): a room above
    the policy's rent limit cuts every charge in proportion; ICU rent above its limit is not
    paid for the ICU days; the procedure's package rate caps the rest; the co-payment is the
    insured's share. More than the sum insured left: approve_partial. Otherwise
    approve_full."""

    capabilities = ("health_preauth",)
    risk = Risk.HIGH
    produces = (PreauthDecision,)

    def __init__(self, id: str, *, hitl_at: float = 500_000.0) -> None:
        super().__init__(id)
        if hitl_at <= 0:
            raise ValueError("hitl_at must be positive")
        self.hitl_at = hitl_at

    @handler
    async def on_request(self, payload: PreauthRequest, ctx: Context) -> Message:
        p = payload
        respond_by = ctx.now() + PREAUTH_TAT

        def decision(action: str, amount: float, reasons: list[str]) -> Message:
            out = PreauthDecision.model_validate(
                {
                    "request_id": p.request_id,
                    "action": action,
                    "approved_amount": money(amount),
                    "reasons": tuple(reasons),
                    "respond_by": respond_by,
                }
            )
            return ctx.emit(out)

        if not p.policy_active:
            return decision("deny", 0.0, ["policy not active"])
        if not p.network_hospital:
            return decision("deny", 0.0, ["not a network hospital: claim as reimbursement"])
        if p.procedure.casefold() in {e.casefold() for e in p.excluded_procedures}:
            return decision("deny", 0.0, [f"procedure {p.procedure!r} is excluded"])
        if p.waiting_period != "served":
            kind = p.waiting_period.replace("_", "-")
            return decision("deny", 0.0, [f"within the {kind} waiting period"])
        if p.estimate >= self.hitl_at:
            return decision("hitl", 0.0, [f"estimate of {self.hitl_at:,.0f} or more"])
        amount, reasons, action = p.estimate, [], "approve_full"
        room_limit = p.room_rent_limit_per_day
        if room_limit is not None and p.room_rent_per_day > room_limit:
            ratio = room_limit / p.room_rent_per_day
            amount *= ratio
            reasons.append(f"room rent above the limit: charges paid at {ratio:.0%}")
        icu_limit = p.icu_rent_limit_per_day
        if icu_limit is not None and p.icu_rent_per_day > icu_limit and p.icu_days:
            excess = (p.icu_rent_per_day - icu_limit) * p.icu_days
            amount -= excess
            reasons.append(f"ICU rent above the limit: {excess:,.2f} not paid")
        if p.package_cap is not None and amount > p.package_cap:
            amount = p.package_cap
            reasons.append(f"the procedure's package rate {p.package_cap:,.2f}")
        if p.copay:
            amount *= 1 - p.copay
            reasons.append(f"{p.copay:.0%} co-payment")
        amount = max(0.0, amount)
        if reasons:
            action = "approve_with_deduction"
        if amount > p.sum_insured_remaining:
            amount = p.sum_insured_remaining
            action = "approve_partial"
            reasons.append(f"capped at the remaining sum insured {amount:,.2f}")
        return decision(action, amount, reasons)


TOTAL_LOSS_SHARE = 0.75
OWN_DAMAGE_RATE = 0.03  # of IDV
THIRD_PARTY_PREMIUM = 2094.0  # private car 1000-1500 cc
ZERO_DEP_LOADING = 0.10  # of the own-damage premium
EXPIRY_WARNING_HOURS = 72
NETWORK_GARAGES = {
    "mumbai": ("Andheri Motors", "Powai Auto Care"),
    "delhi": ("Karol Bagh Garage", "Okhla Service Hub"),
    "bengaluru": ("Koramangala Autoworks", "Whitefield Car Clinic"),
}


class AutoInsurance(BaseAgent):
    """Motor insurance desk. The city is the one given, else the one the coordinates fall in
    (Delhi, Mumbai, Bengaluru). ``fnol``: a repair above 75 % of the IDV is a total loss (pays
    the IDV less the deductible), otherwise the repair less the deductible, with network
    garages in the city. ``roadside``: dispatches help. ``renewal_quote``: own damage 3 % of
    IDV less the no-claim bonus (0/20/25/35/45/50 % by claim-free years), 10 % more with the
    zero-depreciation add-on, plus third-party cover; a policy expiring within 72 hours is
    warned. Any other kind answers ``action: unknown``."""

    capabilities = ("motor_insurance",)
    risk = Risk.MEDIUM
    produces = (MotorResponse,)

    @handler
    async def on_request(self, payload: MotorRequest, ctx: Context) -> Message:
        p = payload
        garages = NETWORK_GARAGES.get(p.located_city.casefold(), ())
        base = {"kind": p.kind, "policy_id": p.policy_id}
        idv = p.idv or 0.0  # the model requires it for fnol and renewal_quote
        if p.kind == "fnol":
            total_loss = p.repair_estimate > TOTAL_LOSS_SHARE * idv
            gross = idv if total_loss else p.repair_estimate
            out = MotorResponse(
                **base,
                action="total_loss" if total_loss else "repair",
                payable=money(max(0.0, gross - p.deductible)),
                garages=() if total_loss else garages,
                detail=f"repair {p.repair_estimate / idv:.0%} of IDV",
            )
        elif p.kind == "roadside":
            where = garages[0] if garages else "the nearest partner"
            out = MotorResponse(**base, action="dispatch", garages=garages, detail=f"from {where}")
        elif p.kind == "renewal_quote":
            ncb = NCB_LADDER[min(p.claim_free_years, len(NCB_LADDER) - 1)]
            own_damage = idv * OWN_DAMAGE_RATE * (1 - ncb)
            if p.zero_dep:
                own_damage *= 1 + ZERO_DEP_LOADING
            expiring = p.hours_to_expiry is not None and p.hours_to_expiry < EXPIRY_WARNING_HOURS
            detail = (
                f"expires within {EXPIRY_WARNING_HOURS} hours: driving uninsured is an offence "
                "under the Motor Vehicles Act"
                if expiring
                else ""
            )
            premium = own_damage + THIRD_PARTY_PREMIUM
            out = MotorResponse(
                **base, action="quote", premium=money(premium), ncb=ncb, detail=detail
            )
        else:
            out = MotorResponse(**base, action="unknown", detail=f"unknown kind {p.kind!r}")
        return ctx.emit(out)
