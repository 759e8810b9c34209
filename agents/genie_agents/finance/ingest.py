"""The front of the finance flow: CSV in, enriched transactions out."""

from __future__ import annotations

import re

from genie import BaseAgent, Context, Message, handler

from .models import (
    EnrichedTransactions,
    IngestCsv,
    NormalizedTransactions,
    RawTransactions,
)
from .statement import parse_statement

__all__ = ["Enricher", "Ingestor", "Normalizer", "normalize_merchant"]


class Ingestor(BaseAgent):
    """Parses a statement CSV (date, description, amount, type; category optional) into raw
    transactions in minor units; debits become negative."""

    capabilities = ("ingest_csv",)
    produces = (RawTransactions,)

    @handler
    async def on_csv(self, payload: IngestCsv, ctx: Context) -> Message:
        return ctx.emit(RawTransactions(transactions=parse_statement(payload.csv)))


_MERCHANT_END = re.compile(r"[ \t*#/_-]")


def normalize_merchant(description: str) -> str:
    """Lower-case, trim, and keep what precedes the first space, tab, ``*#/_-``."""
    text = description.strip().lower()
    return _MERCHANT_END.split(text, maxsplit=1)[0]


class Normalizer(BaseAgent):
    """Fills currency (metadata ``currency``, else INR) and account id (metadata
    ``account_id``), trims descriptions and derives the merchant."""

    capabilities = ("normalize_transactions",)
    produces = (NormalizedTransactions,)

    @handler
    async def on_raw(self, payload: RawTransactions, ctx: Context) -> Message:
        meta = ctx.message.metadata
        currency = str(meta.get("currency") or "INR")
        account = str(meta.get("account_id") or "")
        out = []
        for i, t in enumerate(payload.transactions, start=1):
            acct = t.account_id or account
            out.append(
                t.model_copy(
                    update={
                        "currency": t.currency or currency,
                        "account_id": acct,
                        "description": t.description.strip(),
                        "merchant": normalize_merchant(t.description),
                        "transaction_id": t.transaction_id or f"txn-{acct}-{i:04d}",
                    }
                )
            )
        return ctx.emit(NormalizedTransactions(transactions=tuple(out)))


MERCHANT_CATEGORIES = {
    "swiggy": "food:delivery",
    "zomato": "food:delivery",
    "uber": "transport:ride",
    "ola": "transport:ride",
    "amazon": "shopping:ecom",
    "flipkart": "shopping:ecom",
    "netflix": "entertainment:streaming",
    "spotify": "entertainment:streaming",
    "salary": "income:salary",
    "rent": "housing:rent",
    "electric": "utilities:power",
}


class Enricher(BaseAgent):
    """Categorises by merchant: a known merchant overrides the CSV category, an unknown one
    keeps it (or gets ``uncategorized``)."""

    capabilities = ("enrich_transactions",)
    produces = (EnrichedTransactions,)

    @handler
    async def on_normalized(self, payload: NormalizedTransactions, ctx: Context) -> Message:
        out = []
        for t in payload.transactions:
            category = MERCHANT_CATEGORIES.get(t.merchant) or t.category or "uncategorized"
            out.append(t.model_copy(update={"category": category}))
        return ctx.emit(EnrichedTransactions(transactions=tuple(out)))
