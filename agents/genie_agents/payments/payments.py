"""Payment routing and currency conversion."""

from __future__ import annotations

from collections import OrderedDict

from genie import ApprovalDecision, ApprovalRequest, BaseAgent, Context, Message, Risk, handler
from genie._base.resilience import positive_seconds

from .._common import from_the_desk, shown
from .models import (
    ConvertCurrency,
    CurrencyConversion,
    FxRate,
    FxRateRequest,
    PaymentInstruction,
    PaymentRequest,
)

__all__ = ["CurrencyConverter", "PaymentOrchestrator", "fx_rate"]

RUPEE = 100  # paise
UPI_MAX = 100_000 * RUPEE
IMPS_MAX = 500_000 * RUPEE
RTGS_MIN = 200_000 * RUPEE
HITL_AT = 50_000 * RUPEE  # also the untrusted-beneficiary hold


class PaymentOrchestrator(BaseAgent):
    """Validates a payment and picks its rail. Rejects non-INR, a non-positive amount, a
    missing idempotency key, or no VPA/account to pay. An untrusted beneficiary at Rs 50,000+
    is held. Rail: UPI up to Rs 1 lakh when a VPA is given; otherwise (account + IFSC) IMPS
    up to Rs 5 lakh and RTGS above when urgent, NEFT when not. Rs 50,000+
    needs a human: with ``approval_role``, the payment waits for a person of that role to approve
    it (docs/durability.md), within ``approval_deadline`` seconds, and is then submitted or
    rejected (a decision not sent by the approval desk is refused); without, it ends as Go's
    ``hold_hitl`` flag. Smaller ones are submitted. A repeated
    idempotency key replays the first instruction (the last ``remember`` keys are kept); the
    key used again for another payment is refused, not replayed."""

    capabilities = ("route_payment",)
    risk = Risk.HIGH
    produces = (PaymentInstruction, ApprovalRequest)

    def __init__(
        self,
        id: str,
        *,
        remember: int = 10_000,
        approval_role: str | None = None,
        approval_deadline: float | None = None,
    ) -> None:
        super().__init__(id)
        if remember < 1:
            raise ValueError("remember must be at least 1")
        self.remember = remember
        self.approval_role = approval_role
        positive_seconds(approval_deadline, "approval_deadline", f"payment_orchestrator {id!r}")
        self.approval_deadline = approval_deadline
        # By key: the payment first sent under it (its fields but the key) and its instruction.
        self._seen: OrderedDict[str, tuple[dict[str, object], PaymentInstruction]] = OrderedDict()

    @handler
    async def on_payment(self, payload: PaymentRequest, ctx: Context) -> Message:
        key = payload.idempotency_key.strip()
        if key in self._seen:
            first, kept = self._seen[key]
            if _payment(payload) != first:
                # A key names one payment: another one under it is neither run nor answered
                # with the first's instruction, which its caller would take for its own.
                reason = f"idempotency key {key!r} was used for another payment"
                return ctx.emit(self.decide(payload, refused=reason))
            return ctx.emit(kept.model_copy(update={"replayed": True}))
        out = self.decide(payload)
        if key:
            self._seen[key] = (_payment(payload), out)
            if len(self._seen) > self.remember:
                self._seen.popitem(last=False)
        if out.action == "hold_hitl" and self.approval_role is not None:
            rupees = payload.amount_paise / RUPEE
            ask = ApprovalRequest(
                subject=f"pay Rs {rupees:,.2f} to {payload.beneficiary} by {out.rail}",
                role=self.approval_role,
                deadline=self.approval_deadline,
                details=out.model_dump_json(),
            )
            return ctx.emit(ask)
        return ctx.emit(out)

    @handler
    async def on_decision(self, decision: ApprovalDecision, ctx: Context) -> Message:
        """A held payment, decided: submitted on its rail, or rejected, saying by whom."""
        from_the_desk(ctx)
        held = PaymentInstruction.model_validate_json(decision.details)
        action = "submit" if decision.approved else "reject"
        out = held.model_copy(update={"action": action, "reason": decision.said()})
        key = held.idempotency_key.strip()
        if key in self._seen:  # (else forgotten meanwhile: a later send under it runs anew)
            self._seen[key] = (self._seen[key][0], out)
        return ctx.emit(out)

    def decide(self, p: PaymentRequest, refused: str = "") -> PaymentInstruction:
        def result(action: str, rail: str, reason: str) -> PaymentInstruction:
            return PaymentInstruction.model_validate(
                {
                    "idempotency_key": p.idempotency_key,
                    "action": action,
                    "rail": rail,
                    "amount_paise": p.amount_paise,
                    "reason": reason,
                }
            )

        if refused:
            return result("reject", "", refused)
        amount = p.amount_paise
        if p.currency.upper() != "INR":
            return result("reject", "", f"only INR payments are supported, not {p.currency}")
        if amount <= 0:
            return result("reject", "", "amount must be positive")
        if not p.idempotency_key.strip():
            return result("reject", "", "idempotency key required")
        if not p.beneficiary_trusted and amount >= HITL_AT:
            return result("hold", "", "untrusted beneficiary at or above Rs 50,000")
        if p.vpa and amount <= UPI_MAX:
            rail = "UPI"
        elif not (p.account_number and p.ifsc):
            return result("reject", "", "no VPA within the UPI limit and no account + IFSC")
        elif p.urgent and amount <= IMPS_MAX:
            rail = "IMPS"
        elif p.urgent and amount >= RTGS_MIN:
            rail = "RTGS"
        else:
            rail = "NEFT"
        if amount >= HITL_AT:
            return result("hold_hitl", rail, "Rs 50,000 or more needs a human approval")
        return result("submit", rail, "ok")


# Static reference rates: units of INR per unit of the currency.
INR_PER_UNIT = {
    "INR": 1.0,
    "USD": 83.0,
    "EUR": 90.0,
    "GBP": 105.0,
    "AED": 22.6,
    "SGD": 62.0,
    "JPY": 0.56,
}


def fx_rate(base: str, quote: str) -> float:
    """Units of ``quote`` per unit of ``base``, through INR; ValueError if unsupported."""
    for code in (base, quote):
        if code.upper() not in INR_PER_UNIT:
            known = ", ".join(sorted(INR_PER_UNIT))
            raise ValueError(f"unsupported currency {shown(code)} (supported: {known})")
    return round(INR_PER_UNIT[base.upper()] / INR_PER_UNIT[quote.upper()], 6)


class CurrencyConverter(BaseAgent):
    """Converts amounts and quotes rates from a static table (USD 83.0, EUR 90.0, GBP 105.0,
    AED 22.6, SGD 62.0, JPY 0.56 rupees). Unsupported currencies are an error. Unlike Go, the
    answer has its own type (``currency_conversion``, ``fx_rate_quote``), so a route for the
    request can never loop the answer back."""

    capabilities = ("convert_currency", "fx_rate")
    produces = (CurrencyConversion, FxRate)

    @handler
    async def on_convert(self, payload: ConvertCurrency, ctx: Context) -> Message:
        rate = fx_rate(payload.from_currency, payload.to_currency)
        return ctx.emit(
            CurrencyConversion(
                amount=payload.amount,
                from_currency=payload.from_currency.upper(),
                to_currency=payload.to_currency.upper(),
                rate=rate,
                converted=round(payload.amount * rate, 2),
            )
        )

    @handler
    async def on_rate(self, payload: FxRateRequest, ctx: Context) -> Message:
        rate = fx_rate(payload.base, payload.quote)
        return ctx.emit(FxRate(base=payload.base.upper(), quote=payload.quote.upper(), rate=rate))


def _payment(p: PaymentRequest) -> dict[str, object]:
    """What makes ``p`` one payment: all it says but its idempotency key."""
    return p.model_dump(exclude={"idempotency_key"})
