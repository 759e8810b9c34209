"""Payloads of the payments, invoices and FX agents. Payment amounts are in paise; invoice
and FX amounts are in currency units (rupees) as on the documents."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genie import Payload

from .._common import Record
from .._go import UNUSED, GoName, go_names, paise, rupees_to_paise

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


class Invoice(Record):
    number: str
    supplier_gstin: str
    buyer_gstin: str
    irn: str = Field("", description="the e-invoice reference number (64 hex characters)")
    taxable_value: float = Field(ge=0)
    gst_rate: float = Field(description="percent")
    gst_amount: float = Field(ge=0)
    lines: tuple[InvoiceLine, ...] = Field(min_length=1)


class InvoicePacket(Payload):
    """The invoice with its purchase order and goods receipt, for the three-way match."""

    message_type = "invoice_packet"
    invoice: Invoice
    purchase_order: tuple[InvoiceLine, ...]
    goods_receipt: tuple[InvoiceLine, ...]


class InvoiceDecision(Payload):
    message_type = "invoice_decision"
    invoice_number: str
    action: Literal["post", "hold", "reject"]
    problems: tuple[str, ...]


class Receivable(Record):
    invoice_id: str
    face_value: float = Field(gt=0)
    days: int = Field(gt=0, description="days to maturity")
    buyer_rating: str


class InvoiceDiscountRequest(Payload):
    message_type = "invoice_discount_request"
    invoices: tuple[Receivable, ...] = Field(min_length=1)
    target: float = Field(gt=0, description="cash needed now")


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
