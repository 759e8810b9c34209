"""Payments, invoices, supply-chain finance and FX: hand-computed cases at each limit."""

from __future__ import annotations

from typing import Any

import pytest
from genie_agents.payments import (
    CurrencyConverter,
    InvoiceDiscounter,
    InvoiceProcessor,
    PaymentOrchestrator,
    SupplyChainFinance,
)
from genie_agents.payments.models import (
    ConvertCurrency,
    FxRateRequest,
    Invoice,
    InvoiceDiscountRequest,
    InvoiceLine,
    InvoicePacket,
    PaymentRequest,
    Receivable,
    ScfRequest,
)

from genie import Catalogue, InvalidMessageError, MessageTypes, Runtime

from .helpers import one

RUPEE = 100


# --- payment_orchestrator ---------------------------------------------------------------------
def pay(rupees: float, **changes: Any) -> PaymentRequest:
    base: dict[str, Any] = {
        "idempotency_key": f"k-{rupees}-{sorted(changes.items())}",
        "amount_paise": round(rupees * RUPEE),
        "beneficiary": "Meera",
        "beneficiary_trusted": True,
        "account_number": "001234",
        "ifsc": "HDFC0000001",
    }
    return PaymentRequest(**(base | changes))


@pytest.mark.parametrize(
    ("request_", "action", "rail", "reason"),
    [
        (pay(100, currency="USD"), "reject", "", "only INR payments are supported, not USD"),
        (pay(0), "reject", "", "amount must be positive"),
        (pay(100, idempotency_key=" "), "reject", "", "idempotency key required"),
        (
            pay(50_000, beneficiary_trusted=False, vpa="m@upi"),
            "hold",
            "",
            "untrusted beneficiary at or above Rs 50,000",
        ),
        (pay(49_999.99, beneficiary_trusted=False, vpa="m@upi"), "submit", "UPI", "ok"),
        (pay(100_000, vpa="m@upi"), "hold_hitl", "UPI", "Rs 50,000 or more needs a human approval"),
        (
            pay(100_000.01, vpa="m@upi", account_number=""),
            "reject",
            "",
            "no VPA within the UPI limit and no account + IFSC",
        ),
        (
            pay(100_000.01, vpa="m@upi"),
            "hold_hitl",
            "IMPS",
            "Rs 50,000 or more needs a human approval",
        ),
        (pay(10_000), "submit", "IMPS", "ok"),
        (pay(500_000), "hold_hitl", "IMPS", "Rs 50,000 or more needs a human approval"),
        (pay(500_000.01), "hold_hitl", "RTGS", "Rs 50,000 or more needs a human approval"),
        (
            pay(300_000, urgent=False),
            "hold_hitl",
            "NEFT",
            "Rs 50,000 or more needs a human approval",
        ),
        (pay(10_000, urgent=False), "submit", "NEFT", "ok"),
    ],
)
async def test_payment_rules(request_: PaymentRequest, action: str, rail: str, reason: str) -> None:
    out = await one(PaymentOrchestrator("payment_orchestrator"), request_)
    assert (out.action, out.rail, out.reason) == (action, rail, reason)
    assert out.amount_paise == request_.amount_paise


async def test_a_repeated_key_replays_the_first_instruction() -> None:
    agent = PaymentOrchestrator("p", remember=1)
    first = await one(agent, pay(10_000, idempotency_key="k1"))
    again = await one(agent, pay(10_000, idempotency_key=" k1 "))  # the same payment, again
    assert again == first.model_copy(update={"replayed": True})
    await one(agent, pay(10, idempotency_key="k2"))  # evicts k1 (remember=1)
    assert (await one(agent, pay(90_000, idempotency_key="k1"))).action == "hold_hitl"
    with pytest.raises(ValueError, match="remember must be at least 1"):
        PaymentOrchestrator("p", remember=0)


# --- currency_converter -----------------------------------------------------------------------
async def test_currency_conversion_through_inr() -> None:
    agent = CurrencyConverter("currency_converter")
    usd = await one(agent, ConvertCurrency(amount=100, from_currency="usd", to_currency="INR"))
    assert (usd.rate, usd.converted, usd.from_currency) == (83.0, 8300.0, "USD")
    eur = await one(agent, ConvertCurrency(amount=100, from_currency="EUR", to_currency="USD"))
    assert (eur.rate, eur.converted) == (1.084337, 108.43)  # 90 / 83
    quote = await one(agent, FxRateRequest(base="INR", quote="EUR"))
    assert quote.rate == round(1 / 90, 6)
    with pytest.raises(ValueError, match="unsupported currency 'XYZ'"):
        await one(agent, ConvertCurrency(amount=1, from_currency="XYZ", to_currency="INR"))


# --- invoice_processor ------------------------------------------------------------------------
GSTIN_A, GSTIN_B = "27AAPFU0939F1ZV", "29AAACB1234C1Z5"
ORDER = (InvoiceLine(sku="A", qty=10, unit_price=100), InvoiceLine(sku="B", qty=5, unit_price=200))


def packet(lines: tuple[InvoiceLine, ...] = ORDER, **changes: Any) -> InvoicePacket:
    taxable = sum(line.qty * line.unit_price for line in lines)
    invoice: dict[str, Any] = {
        "number": "INV-1",
        "supplier_gstin": GSTIN_A,
        "buyer_gstin": GSTIN_B,
        "irn": "ab" * 32,
        "taxable_value": taxable,
        "gst_rate": 18.0,
        "gst_amount": taxable * 0.18,
        "lines": lines,
    }
    return InvoicePacket(
        invoice=Invoice(**(invoice | changes)), purchase_order=ORDER, goods_receipt=ORDER
    )


@pytest.mark.parametrize(
    ("pkt", "action", "problems"),
    [
        (packet(), "post", ()),
        (  # +Rs 100 on a line is within tolerance; +Rs 100.01 is not
            packet((InvoiceLine(sku="A", qty=10, unit_price=200), ORDER[1])),
            "post",
            (),
        ),
        (
            packet((InvoiceLine(sku="A", qty=10, unit_price=200.01), ORDER[1])),
            "hold",
            ("A: price 200.01 vs ordered 100.00 (more than Rs 100 apart)",),
        ),
        (  # 10.2 vs 10 received: 0.2 <= 2 % of 10.2
            packet((InvoiceLine(sku="A", qty=10.2, unit_price=100), ORDER[1])),
            "post",
            (),
        ),
        (
            packet((InvoiceLine(sku="A", qty=10.3, unit_price=100), ORDER[1])),
            "hold",
            ("A: invoiced 10.3 but received 10", "A: invoiced 10.3 but ordered 10"),
        ),
        (
            packet((*ORDER, InvoiceLine(sku="C", qty=1, unit_price=5))),
            "hold",
            ("C: not on the purchase order",),
        ),
        (
            packet(supplier_gstin="27AAPFU0939F1Z", irn="", gst_rate=17.0, gst_amount=340),
            "reject",
            (
                "supplier GSTIN '27AAPFU0939F1Z' is not a valid GSTIN",
                "IRN missing or not 64 hex characters",
                "GST rate 17% is not a GST slab",
            ),
        ),
        (packet(gst_amount=362.0), "reject", ("GST amount 362.00 != 360.00 at 18%",)),
        (
            packet(taxable_value=1990.0, gst_amount=358.2),
            "reject",
            ("taxable value 1990.00 != lines total 2000.00",),
        ),
    ],
)
async def test_invoice_checks(pkt: InvoicePacket, action: str, problems: tuple[str, ...]) -> None:
    out = await one(InvoiceProcessor("invoice_processor"), pkt)
    assert (out.action, out.problems) == (action, problems)


def test_invoice_without_lines_is_refused_by_the_model() -> None:
    types = MessageTypes([InvoicePacket])
    data = packet().model_dump(mode="json")
    data["invoice"]["lines"] = []
    with pytest.raises(
        InvalidMessageError, match=r"'invoice_packet' message: field 'invoice\.lines'"
    ):
        types.parse_payload("invoice_packet", data)


# --- invoice_discounter -----------------------------------------------------------------------
# cost = face x rate x days / 365: I1 100000 x 8 % x 90 = 1972.60, I2 50000 x 12.5 % x 30 =
# 513.70, I3 80000 x 9 % x 60 = 1183.56. Cost per rupee: I2 (3.75) < I3 (5.4) < I1 (7.2).
INVOICES = (
    Receivable(invoice_id="I1", face_value=100_000, days=90, buyer_rating="AAA"),
    Receivable(invoice_id="I2", face_value=50_000, days=30, buyer_rating="BBB"),
    Receivable(invoice_id="I3", face_value=80_000, days=60, buyer_rating="aa"),
)


@pytest.mark.parametrize(
    ("target", "picks", "face", "cost", "reached"),
    [
        (120_000, ["I2", "I3"], 130_000, 1697.26, True),
        (60_000, ["I3"], 80_000, 1183.56, True),  # I2 dropped: I3 alone reaches the target
        (300_000, ["I2", "I3", "I1"], 230_000, 3669.86, False),
    ],
)
async def test_discounting_picks_the_cheapest_set(
    target: float, picks: list[str], face: float, cost: float, reached: bool
) -> None:
    plan = await one(
        InvoiceDiscounter("invoice_discounter"),
        InvoiceDiscountRequest(invoices=INVOICES, target=target),
    )
    assert [p.invoice_id for p in plan.picks] == picks
    assert (plan.face_value, plan.cost, plan.reached) == (face, cost, reached)
    assert plan.net_proceeds == round(face - cost, 2)


async def test_discounting_unknown_rating_is_an_error() -> None:
    bad = Receivable(invoice_id="X", face_value=1, days=1, buyer_rating="BB")
    with pytest.raises(ValueError, match=r"invoice X: unknown rating 'BB' \(AAA, AA, A, BBB\)"):
        await one(InvoiceDiscounter("d"), InvoiceDiscountRequest(invoices=(bad,), target=1))


@pytest.mark.parametrize(
    ("name", "request_", "refusal"),
    [
        (
            "invoice_discounter",
            InvoiceDiscountRequest(
                invoices=(
                    Receivable(invoice_id="X", face_value=1, days=1, buyer_rating="B" * 3000),
                ),
                target=1,
            ),
            "invoice X: unknown rating 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB...' "
            "(AAA, AA, A, BBB)",
        ),
        (
            "currency_converter",
            FxRateRequest(base="X" * 3000, quote="INR"),
            "unsupported currency 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX...' (supported: AED, "
            "EUR, GBP, INR, JPY, SGD, USD)",
        ),
    ],
)
async def test_a_refusal_quotes_a_long_value_cut(name: str, request_: Any, refusal: str) -> None:
    # A 3,000-character rating or currency was quoted whole: the message as long as the input.
    async with Runtime([Catalogue.installed().get(name).factory(name)]) as rt:
        await rt.ask(rt.message(request_, recipient=name), timeout=2)
    assert [letter.reason for letter in rt.dead_letters if letter.kind == "failed"] == [
        "ValueError: " + refusal
    ]


# --- supply_chain_finance ---------------------------------------------------------------------
def receivable(buyer: str, amount: float, days: int, e_invoiced: bool = True) -> dict[str, Any]:
    return {"buyer": buyer, "amount": amount, "days_outstanding": days, "e_invoiced": e_invoiced}


async def test_concentration_and_treds_advice() -> None:
    req = ScfRequest.model_validate(
        {
            "supplier": "S1",
            "receivables": [
                receivable("BuyerA", 60_000, 30),
                receivable("BuyerA", 40_000, 46),
                receivable("BuyerB", 30_000, 60),
                receivable("BuyerB", 20_000, 50, e_invoiced=False),  # not for TReDS yet
                receivable("BuyerC", 50_000, 45),  # 45 days is not over 45
            ],
        }
    )
    out = await one(SupplyChainFinance("supply_chain_finance"), req)
    assert (out.total, out.top_buyer, out.top_buyer_share, out.overdue) == (
        200_000,
        "BuyerA",
        0.5,
        90_000,
    )
    assert out.warnings == ("single-buyer concentration: BuyerA holds 50% of receivables",)
    assert out.advice == (
        "discount BuyerA's Rs 40,000.00 outstanding over 45 days on TReDS",
        "discount BuyerB's Rs 30,000.00 outstanding over 45 days on TReDS",
        "e-invoice BuyerB's Rs 20,000.00 outstanding over 45 days (GST IRN) to discount it on "
        "TReDS",
    )
    even = ScfRequest.model_validate(
        {
            "supplier": "S1",
            "receivables": [receivable("A", 40, 1), receivable("B", 30, 1), receivable("C", 30, 1)],
        }
    )
    assert (await one(SupplyChainFinance("s"), even)).warnings == ()  # exactly 40 %: no warning


async def test_a_key_used_again_for_another_payment_is_refused_not_replayed() -> None:
    """Go replayed the first instruction for any request under its key: a Rs 90,000 payment
    sent under a Rs 100 payment's key came back as the Rs 100 one, 'replayed', and a caller
    that read only the action took its payment for done. A key names one payment."""
    agent = PaymentOrchestrator("p")
    first = await one(agent, pay(10_000, idempotency_key="k1"))
    other = await one(agent, pay(90_000, idempotency_key="k1"))
    assert (other.action, other.rail, other.amount_paise, other.replayed) == (
        "reject",
        "",
        90_000 * 100,
        False,
    )
    assert other.reason == "idempotency key 'k1' was used for another payment"
    again = await one(agent, pay(10_000, idempotency_key="k1"))  # the first is still kept
    assert again == first.model_copy(update={"replayed": True})
