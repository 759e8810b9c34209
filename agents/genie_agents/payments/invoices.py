"""Invoices: e-invoice checks with the three-way match, discounting, supply-chain finance."""

from __future__ import annotations

import re
from collections import defaultdict

from genie import BaseAgent, Context, Message, Risk, handler

from .._common import money, shown
from .models import (
    DiscountPick,
    Invoice,
    InvoiceDecision,
    InvoiceDiscountPlan,
    InvoiceDiscountRequest,
    InvoiceLine,
    InvoicePacket,
    ScfRecommendation,
    ScfRequest,
)

__all__ = ["InvoiceDiscounter", "InvoiceProcessor", "SupplyChainFinance", "check_invoice"]

GSTIN = re.compile(r"[0-3][0-9][A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]")
IRN = re.compile(r"[0-9a-fA-F]{64}")
GST_RATES = (0.0, 0.25, 3.0, 5.0, 12.0, 18.0, 28.0)
PRICE_TOLERANCE = 100.0  # rupees per line
QTY_TOLERANCE = 0.02
ROUNDING = 1.0  # rupee: totals may differ by rounding


def check_invoice(packet: InvoicePacket) -> tuple[list[str], list[str]]:
    """(e-invoice problems that reject it, match problems that hold it)."""
    inv = packet.invoice
    rejects = []
    for label, gstin in (("supplier", inv.supplier_gstin), ("buyer", inv.buyer_gstin)):
        if not GSTIN.fullmatch(gstin.strip().upper()):
            rejects.append(f"{label} GSTIN {gstin!r} is not a valid GSTIN")
    if not IRN.fullmatch(inv.irn.strip()):
        rejects.append("IRN missing or not 64 hex characters")
    rates = {_rate(line, inv) for line in inv.lines}
    rejects += [f"GST rate {rate:g}% is not a GST slab" for rate in sorted(rates - set(GST_RATES))]
    lines_total = sum(line.qty * line.unit_price for line in inv.lines)
    if abs(lines_total - inv.taxable_value) > ROUNDING:
        rejects.append(f"taxable value {inv.taxable_value:.2f} != lines total {lines_total:.2f}")
    if len(rates) == 1:
        expected_gst = inv.taxable_value * inv.gst_rate / 100
        at = f" at {inv.gst_rate:g}%"
    else:  # a rate per line: the GST of each line
        expected_gst = sum(
            line.qty * line.unit_price * _rate(line, inv) / 100 for line in inv.lines
        )
        at = ", the lines' GST"
    if abs(expected_gst - inv.gst_amount) > ROUNDING:
        rejects.append(f"GST amount {inv.gst_amount:.2f} != {expected_gst:.2f}{at}")
    for line in inv.lines:
        expected = line.qty * line.unit_price * (1 + _rate(line, inv) / 100)
        if line.line_total is not None and abs(expected - line.line_total) > PRICE_TOLERANCE:
            rejects.append(f"{line.sku}: line total {line.line_total:.2f} != {expected:.2f}")
    holds = []
    if not packet.vendor_active:
        holds.append("the supplier is not active in the vendor master")
    if not packet.purchase_order:
        total = inv.total if inv.total is not None else inv.taxable_value + inv.gst_amount
        if packet.po_total is None:
            holds.append("no purchase order to match")
        elif abs(total - packet.po_total) > PRICE_TOLERANCE:
            holds.append(
                f"total {total:,.2f} vs the PO's {packet.po_total:,.2f} "
                f"(more than Rs {PRICE_TOLERANCE:.0f} apart)"
            )
    ordered, received = _by_sku(packet.purchase_order), _by_sku(packet.goods_receipt)
    for line in inv.lines:
        po, grn = ordered.get(line.sku), received.get(line.sku)
        if packet.purchase_order and po is None:
            holds.append(f"{line.sku}: not on the purchase order")
            continue
        if po is not None and abs(line.unit_price - po.unit_price) > PRICE_TOLERANCE:
            holds.append(
                f"{line.sku}: price {line.unit_price:.2f} vs ordered {po.unit_price:.2f} "
                f"(more than Rs {PRICE_TOLERANCE:.0f} apart)"
            )
        got = grn.qty if grn is not None else 0.0
        if abs(line.qty - got) > QTY_TOLERANCE * max(got, line.qty):
            holds.append(f"{line.sku}: invoiced {line.qty:g} but received {got:g}")
        if po is not None and line.qty > po.qty * (1 + QTY_TOLERANCE):
            holds.append(f"{line.sku}: invoiced {line.qty:g} but ordered {po.qty:g}")
    return rejects, holds


def _rate(line: InvoiceLine, inv: Invoice) -> float:
    return inv.gst_rate if line.gst_rate is None else line.gst_rate


def _by_sku(lines: tuple[InvoiceLine, ...]) -> dict[str, InvoiceLine]:
    """Lines of the same SKU add up (quantity) at their quantity-weighted price."""
    qty: dict[str, float] = defaultdict(float)
    value: dict[str, float] = defaultdict(float)
    for line in lines:
        qty[line.sku] += line.qty
        value[line.sku] += line.qty * line.unit_price
    return {sku: InvoiceLine(sku=sku, qty=q, unit_price=value[sku] / q) for sku, q in qty.items()}


class InvoiceProcessor(BaseAgent):
    """Checks a GST e-invoice (GSTINs, IRN, GST slabs, totals, each line's total with GST when
    printed) and matches it three ways against the purchase order and goods receipt (price
    within Rs 100 per line, quantity within 2 %; a PO given as its total alone: the invoice
    total within Rs 100, each line's quantity against the receipt). A supplier inactive in
    the vendor master holds. A document problem rejects, a match problem holds, a clean
    invoice posts."""

    capabilities = ("process_invoice",)
    risk = Risk.MEDIUM
    produces = (InvoiceDecision,)

    @handler
    async def on_packet(self, payload: InvoicePacket, ctx: Context) -> Message:
        rejects, holds = check_invoice(payload)
        action = "reject" if rejects else "hold" if holds else "post"
        decision = InvoiceDecision(
            invoice_number=payload.invoice.number, action=action, problems=(*rejects, *holds)
        )
        return ctx.emit(decision)


# Annual discount rate by the buyer's rating.
RATING_RATES = {"AAA": 0.08, "AA": 0.09, "A": 0.105, "BBB": 0.125}
# Go's premium on one request-wide rate, by rating; any lower rating doubles it.
RATING_PREMIUMS, BELOW_BBB_PREMIUM = {"AAA": 1.0, "AA": 1.10, "A": 1.25, "BBB": 1.50}, 2.0


def _annual_rate(rating: str, rate_bp: float | None, invoice_id: str) -> float:
    rating = rating.upper()
    if rate_bp is not None:
        return round(rate_bp / 10_000 * RATING_PREMIUMS.get(rating, BELOW_BBB_PREMIUM), 9)
    rate = RATING_RATES.get(rating)
    if rate is None:
        known = ", ".join(RATING_RATES)
        raise ValueError(f"invoice {invoice_id}: unknown rating {shown(rating)} ({known})")
    return rate


class InvoiceDiscounter(BaseAgent):
    """Picks invoices to discount to raise ``target`` now (net of the discount) at the least
    cost, where discounting costs face x rate x days / 365 and the rate follows the buyer's
    rating (AAA 8 %, AA 9 %, A 10.5 %, BBB 12.5 %; an unknown rating is an error) or, given
    ``annual_rate_bp``, is that rate raised by the rating as in Go (AAA x1, AA x1.1, A x1.25,
    BBB x1.5, lower x2). Greedy by cost per rupee raised, then drops picks that are no
    longer needed (costliest first)."""

    capabilities = ("invoice_discounting",)
    risk = Risk.MEDIUM
    produces = (InvoiceDiscountPlan,)

    @handler
    async def on_request(self, payload: InvoiceDiscountRequest, ctx: Context) -> Message:
        picks = []
        for inv in payload.invoices:
            rate = _annual_rate(inv.buyer_rating, payload.annual_rate_bp, inv.invoice_id)
            cost = inv.face_value * rate * inv.days / 365
            pick = DiscountPick(
                invoice_id=inv.invoice_id,
                face_value=inv.face_value,
                annual_rate=rate,
                days=inv.days,
                cost=money(cost),
            )
            picks.append(pick)
        picks.sort(key=lambda p: (p.annual_rate * p.days, -p.face_value))
        chosen: list[DiscountPick] = []
        for pick in picks:
            if _net(chosen) >= payload.target:
                break
            chosen.append(pick)
        for pick in sorted(chosen, key=lambda p: -p.cost):
            if _net(chosen) - (pick.face_value - pick.cost) >= payload.target:
                chosen.remove(pick)
        face = sum(p.face_value for p in chosen)
        cost = money(sum(p.cost for p in chosen))
        plan = InvoiceDiscountPlan(
            picks=tuple(chosen),
            face_value=money(face),
            cost=cost,
            net_proceeds=money(face - cost),
            reached=_net(chosen) >= payload.target,
        )
        return ctx.emit(plan)


def _net(picks: list[DiscountPick]) -> float:
    """The cash the picks raise now: their face less the discount."""
    return money(sum(p.face_value - p.cost for p in picks))


CONCENTRATION_LIMIT, TREDS_AFTER_DAYS = 0.40, 45


class SupplyChainFinance(BaseAgent):
    """Reviews a supplier's receivables: warns when one buyer holds more than 40 % of them, and
    advises discounting on TReDS each buyer's GST e-invoiced receivables outstanding more than
    45 days (TReDS takes no other; those not e-invoiced are advised to be e-invoiced first)."""

    capabilities = ("supply_chain_finance",)
    risk = Risk.MEDIUM
    produces = (ScfRecommendation,)

    @handler
    async def on_request(self, payload: ScfRequest, ctx: Context) -> Message:
        by_buyer: dict[str, float] = defaultdict(float)
        late: dict[str, float] = defaultdict(float)
        late_on_paper: dict[str, float] = defaultdict(float)  # late, but not e-invoiced
        for r in payload.receivables:
            by_buyer[r.buyer] += r.amount
            if r.days_outstanding > TREDS_AFTER_DAYS:
                (late if r.e_invoiced else late_on_paper)[r.buyer] += r.amount
        total = sum(by_buyer.values())
        top = max(by_buyer, key=lambda b: by_buyer[b])
        share = by_buyer[top] / total
        warnings = []
        if share > CONCENTRATION_LIMIT:
            warnings.append(f"single-buyer concentration: {top} holds {share:.0%} of receivables")
        advice = tuple(
            f"discount {buyer}'s Rs {amount:,.2f} outstanding over {TREDS_AFTER_DAYS} days on TReDS"
            for buyer, amount in late.items()
        ) + tuple(
            f"e-invoice {buyer}'s Rs {amount:,.2f} outstanding over {TREDS_AFTER_DAYS} days "
            "(GST IRN) to discount it on TReDS"
            for buyer, amount in late_on_paper.items()
        )
        rec = ScfRecommendation(
            supplier=payload.supplier,
            total=money(total),
            top_buyer=top,
            top_buyer_share=round(share, 4),
            overdue=money(sum(late.values()) + sum(late_on_paper.values())),
            warnings=tuple(warnings),
            advice=advice,
        )
        return ctx.emit(rec)
