"""Payments, invoices, supply-chain finance and FX agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .invoices import InvoiceDiscounter as InvoiceDiscounter
    from .invoices import InvoiceProcessor as InvoiceProcessor
    from .invoices import SupplyChainFinance as SupplyChainFinance
    from .payments import CurrencyConverter as CurrencyConverter
    from .payments import PaymentOrchestrator as PaymentOrchestrator

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "InvoiceDiscounter": ".invoices",
    "InvoiceProcessor": ".invoices",
    "SupplyChainFinance": ".invoices",
    "CurrencyConverter": ".payments",
    "PaymentOrchestrator": ".payments",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "payment_orchestrator": "PaymentOrchestrator",
    "invoice_processor": "InvoiceProcessor",
    "invoice_discounter": "InvoiceDiscounter",
    "supply_chain_finance": "SupplyChainFinance",
    "currency_converter": "CurrencyConverter",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "CurrencyConverter",
    "InvoiceDiscounter",
    "InvoiceProcessor",
    "PaymentOrchestrator",
    "SupplyChainFinance",
]
