"""Payments, invoices, supply-chain finance and FX agents."""

from .invoices import InvoiceDiscounter, InvoiceProcessor, SupplyChainFinance
from .payments import CurrencyConverter, PaymentOrchestrator

AGENTS = {
    "payment_orchestrator": PaymentOrchestrator,
    "invoice_processor": InvoiceProcessor,
    "invoice_discounter": InvoiceDiscounter,
    "supply_chain_finance": SupplyChainFinance,
    "currency_converter": CurrencyConverter,
}

__all__ = [
    "AGENTS",
    "CurrencyConverter",
    "InvoiceDiscounter",
    "InvoiceProcessor",
    "PaymentOrchestrator",
    "SupplyChainFinance",
]
