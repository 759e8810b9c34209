"""Payloads of the payments, invoices and FX agents. Payment amounts are in paise; invoice
and FX amounts are in currency units (rupees) as on the documents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

from pydantic import Field, model_validator

from genie import Payload

from .._common import MAX_AMOUNT, Record
from .._go import UNUSED, GoName, GoValueError, derived, go_names, paise, rupees_to_paise

__all__ = [
    "BuyerReceivable",
    "ConvertCurrency",
    "CurrencyConversion",
    "DiscountPick",
    "FxRate",
    "FxRateRequest",
    "Invoice",
    "InvoiceDecision",
    "InvoiceDiscountPlan",
    "InvoiceDiscountRequest",
    "InvoiceLine",
    "InvoicePacket",
    "PaymentInstruction",
    "PaymentRequest",
    "Receivable",
    "ScfRecommendation",
    "ScfRequest",
]


class PaymentRequest(Payload):
    message_type = "payment_request"
    idempotency_key: str = ""
    amount_paise: int
    currency: str = "INR"
    beneficiary: str
    beneficiary_trusted: bool = False
    vpa: str = Field("", description="UPI address; UPI needs one")
    account_number: str = ""
    ifsc: str = ""
    urgent: bool = True

    _go = go_names(
        {
            "amount_rupees": GoName("amount_paise", rupees_to_paise),
            "beneficiary_name": "beneficiary",
            "is_trusted_beneficiary": "beneficiary_trusted",
            "beneficiary_vpa": "vpa",
            "beneficiary_account": "account_number",
            "beneficiary_ifsc": "ifsc",
            # Go: "now" | "today" | "any"; only "any" lets a payment wait for NEFT.
            "urgency": GoName("urgent", lambda u: str(u).lower() != "any", "urgent unless 'any'"),
            "payer_id": UNUSED,
            "payer_account": UNUSED,
            "purpose": UNUSED,
        },
        # Go treats a blank currency as INR.
        then=lambda go, out: out | {"currency": out.get("currency") or "INR"},
    )


class PaymentInstruction(Payload):
    message_type = "payment_instruction"
    idempotency_key: str
    action: Literal["submit", "hold_hitl", "hold", "reject"]
    rail: Literal["UPI", "IMPS", "NEFT", "RTGS", ""]
    amount_paise: int
    reason: str
    replayed: bool = False


class InvoiceLine(Record):
    sku: str
    qty: float = Field(gt=0)
    unit_price: float = Field(ge=0)
    gst_rate: float | None = Field(
        None, description="the line's GST percent (default: the invoice's)"
    )
    line_total: float | None = Field(None, ge=0, description="with GST, as printed on the line")


class Invoice(Record):
    number: str
    supplier_gstin: str
    buyer_gstin: str
    irn: str = Field("", description="the e-invoice reference number (64 hex characters)")
    taxable_value: float = Field(ge=0)
    gst_rate: float = Field(description="percent")
    gst_amount: float = Field(ge=0)
    lines: tuple[InvoiceLine, ...] = Field(min_length=1)
    total: float | None = Field(None, ge=0, description="with GST (default: taxable + GST)")


def _go_invoice(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's invoice (items by HSN, a GST rate each) and reference (a PO total, GRN quantities
    by HSN, the vendor-master flag) as the port's packet: lines by HSN, the taxable value and
    GST summed from them, the PO as its total, the GRN as lines."""
    inv, ref = go.get("invoice"), go.get("reference")
    if not isinstance(inv, Mapping) or not isinstance(ref, Mapping):
        raise GoValueError("Go's request is an invoice and a reference, two objects", "reference")
    items = inv.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(i, Mapping) for i in items):
        raise GoValueError("one item or more", "invoice.items")
    lines, taxable, gst = [], 0.0, 0.0
    for n, item in enumerate(items):
        qty, price, rate = (item.get(k, 0) for k in ("quantity", "unit_price_rupees", "gst_pct"))
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in (qty, price, rate)
        ):
            raise GoValueError(
                "quantity, unit_price_rupees and gst_pct: numbers", f"invoice.items.{n}"
            )
        lines.append(
            {"sku": item.get("hsn", ""), "qty": qty, "unit_price": price, "gst_rate": rate}
            | {"line_total": item.get("line_total_rupees", 0)}
        )
        taxable += qty * price
        gst += qty * price * rate / 100
    grn = ref.get("grn_qty_by_hsn") or {}
    if not isinstance(grn, Mapping):
        raise GoValueError("an object of HSN -> quantity", "reference.grn_qty_by_hsn")
    invoice = {
        "number": inv.get("invoice_no", ""),
        "supplier_gstin": inv.get("supplier_gstin", ""),
        "buyer_gstin": inv.get("buyer_gstin", ""),
        "irn": inv.get("irn", ""),
        "taxable_value": round(taxable, 2),
        "gst_rate": lines[0]["gst_rate"],
        "gst_amount": round(gst, 2),
        "lines": lines,
        "total": inv.get("total_rupees", 0),
    }
    return out | {
        "invoice": invoice,
        "purchase_order": (),
        "po_total": ref.get("po_total_rupees") or None,  # Go: 0 is no PO matched
        # Go skipped an HSN received 0 times; here it is a line not received.
        "goods_receipt": [{"sku": h, "qty": q, "unit_price": 0} for h, q in grn.items() if q],
        "vendor_active": ref.get("vendor_active", False),
    }


class InvoicePacket(Payload):
    """The invoice with its purchase order (its lines, or its total) and goods receipt, for
    the three-way match."""

    message_type = "invoice_packet"
    invoice: Invoice
    purchase_order: tuple[InvoiceLine, ...] = ()
    po_total: float | None = Field(None, gt=0, description="the PO's total, when not its lines")
    goods_receipt: tuple[InvoiceLine, ...]
    vendor_active: bool = Field(True, description="the supplier is active in the vendor master")

    @model_validator(mode="after")
    def _one_purchase_order(self) -> InvoicePacket:
        if self.purchase_order and self.po_total is not None:
            raise ValueError("purchase_order lines or po_total, not both")
        return self

    # Go's request is {"invoice": ..., "reference": ...}: "invoice" is also the port's name,
    # so the Go shape is told by "reference", and Go's invoice is converted with it.
    _go = go_names(
        {
            "reference": derived(
                "with Go's invoice: lines by HSN (quantity, unit_price_rupees, gst_pct, "
                "line_total_rupees), taxable_value and gst_amount summed from them, "
                "total_rupees as total, invoice_no as number; po_total_rupees as po_total, "
                "grn_qty_by_hsn as goods_receipt lines, vendor_active"
            )
        },
        then=_go_invoice,
    )


class InvoiceDecision(Payload):
    message_type = "invoice_decision"
    invoice_number: str
    action: Literal["post", "hold", "reject"]
    problems: tuple[str, ...]


class Receivable(Record):
    invoice_id: str
    face_value: float = Field(gt=0, le=MAX_AMOUNT, description="at most 10^12")
    days: int = Field(gt=0, le=3650, description="days to maturity, at most ten years")
    buyer_rating: str

    _go = go_names(
        {
            "id": "invoice_id",
            "face_value_rupees": "face_value",
            "counterparty_rating": "buyer_rating",
            "counterparty": UNUSED,
            "issued_on": UNUSED,
        }
    )


def _go_days(go: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Go's invoices are due on a date: the days to maturity count from ``as_of_date``. Go
    skipped an invoice already due (not discountable), and so does the port."""
    invoices = out.get("invoices")
    if not isinstance(invoices, list) or not any(
        isinstance(i, Mapping) and "due_on" in i for i in invoices
    ):
        return out
    try:
        as_of = date.fromisoformat(str(go.get("as_of_date")))
    except ValueError:
        message = "YYYY-MM-DD, the day the days to each due_on count from"
        raise GoValueError(message, "as_of_date") from None
    kept = []
    for n, invoice in enumerate(invoices):
        if not isinstance(invoice, Mapping) or "due_on" not in invoice:
            kept.append(invoice)
            continue
        rest = dict(invoice)
        try:
            days = (date.fromisoformat(str(rest.pop("due_on"))) - as_of).days
        except ValueError:
            raise GoValueError("a date, YYYY-MM-DD", f"invoices.{n}.due_on") from None
        if days > 0:
            kept.append(rest | {"days": days})
    if not kept:
        raise GoValueError(f"every invoice is due by {as_of}: none to discount", "invoices")
    return out | {"invoices": kept}


def _go_rate(bp: Any) -> Any:
    """Go's request-wide rate in basis points (950 is 9.5 %); 0 (left out) is the port's rate
    by rating."""
    return None if bp == 0 else bp


class InvoiceDiscountRequest(Payload):
    message_type = "invoice_discount_request"
    invoices: tuple[Receivable, ...] = Field(min_length=1)
    target: float = Field(gt=0, description="cash needed now (net of the discount)")
    annual_rate_bp: float | None = Field(
        None,
        gt=0,
        le=10_000,
        description="one annual rate for all (basis points, at most 10,000: 100 %), raised by "
        "the buyer's rating (AAA x1, AA x1.1, A x1.25, BBB x1.5, lower x2); default: a rate "
        "per rating",
    )

    _go = go_names(
        {
            "target_cash_rupees": "target",
            "annualised_rate_bp": GoName("annual_rate_bp", _go_rate),
            "as_of_date": derived("with each invoice's due_on, its days to maturity"),
        },
        then=_go_days,
    )


class DiscountPick(Record):
    invoice_id: str
    face_value: float
    annual_rate: float
    days: int
    cost: float


class InvoiceDiscountPlan(Payload):
    message_type = "invoice_discount_plan"
    picks: tuple[DiscountPick, ...]
    face_value: float
    cost: float
    net_proceeds: float
    reached: bool


class BuyerReceivable(Record):
    buyer: str
    amount: float = Field(gt=0)
    days_outstanding: int = Field(ge=0)
    e_invoiced: bool = Field(False, description="GST e-invoiced (TReDS takes no other)")

    _go = go_names(
        {
            "buyer_id": "buyer",
            "amount_rupees": "amount",
            "gst_e_invoiced": "e_invoiced",
            "invoice_id": UNUSED,
            "buyer_rating": UNUSED,
        },
        defaults={"days_outstanding": 0},  # Go's zero value
    )


class ScfRequest(Payload):
    message_type = "scf_request"
    supplier: str
    receivables: tuple[BuyerReceivable, ...] = Field(min_length=1)

    _go = go_names({"supplier_id": "supplier", "invoices": "receivables"})


class ScfRecommendation(Payload):
    message_type = "scf_recommendation"
    supplier: str
    total: float
    top_buyer: str
    top_buyer_share: float
    overdue: float = Field(description="receivables outstanding more than 45 days")
    warnings: tuple[str, ...]
    advice: tuple[str, ...]


class ConvertCurrency(Payload):
    message_type = "convert_currency"
    amount: float
    from_currency: str
    to_currency: str

    _go = go_names(
        {
            "amount_minor": GoName("amount", paise),
            "from": "from_currency",
            "to": "to_currency",
        }
    )


class CurrencyConversion(Payload):
    message_type = "currency_conversion"
    amount: float
    from_currency: str
    to_currency: str
    rate: float
    converted: float


class FxRateRequest(Payload):
    message_type = "fx_rate"
    base: str
    quote: str

    _go = go_names({"from": "base", "to": "quote", "amount_minor": UNUSED})


class FxRate(Payload):
    message_type = "fx_rate_quote"
    base: str
    quote: str
    rate: float
