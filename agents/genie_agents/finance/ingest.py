"""The front of the finance flow: CSV in, enriched transactions out (reference §7.2)."""

from __future__ import annotations

import csv
import io
import re

from pydantic import ValidationError

from genie import BaseAgent, Context, Message, handler

from .models import (
    EnrichedTransactions,
    IngestCsv,
    NormalizedTransactions,
    RawTransactions,
    Transaction,
)

__all__ = ["Enricher", "Ingestor", "Normalizer", "normalize_merchant"]

REQUIRED_COLUMNS = ("date", "description", "amount", "type")
# Read when present (the detectors use them); see Transaction.
OPTIONAL_COLUMNS = ("time", "latitude", "longitude", "counterparty", "channel", "country")


class Ingestor(BaseAgent):
    """Parses a statement CSV (date, description, amount, type; category optional) into raw
    transactions in minor units; debits become negative."""

    capabilities = ("ingest_csv",)
    produces = (RawTransactions,)

    @handler
    async def on_csv(self, payload: IngestCsv, ctx: Context) -> Message:
        return ctx.emit(RawTransactions(transactions=parse_statement(payload.csv)))


def parse_statement(text: str) -> tuple[Transaction, ...]:
    """Raises ValueError with the Go messages: empty content, no rows, a missing column, a row
    with the wrong width, an amount that is not a number."""
    if not text.strip():
        raise ValueError("empty csv content")
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2:
        raise ValueError("csv must have header + at least one row")
    header = [h.strip().lower() for h in rows[0]]
    for column in REQUIRED_COLUMNS:
        if column not in header:
            raise ValueError(f'missing column "{column}"')
    at = {name: i for i, name in enumerate(header)}
    out = []
    for n, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise ValueError(f"row {n} has {len(row)} cols, expected {len(header)}")
        try:
            amount = float(row[at["amount"]].strip())
        except ValueError:
            raise ValueError(f"row {n} amount: {row[at['amount']]!r} is not a number") from None
        cents = int(amount * 100)  # truncation toward zero, as Go's int64(float)
        direction = row[at["type"]].strip().lower()
        if direction == "debit" and cents > 0:
            cents = -cents
        extra = {k: row[at[k]].strip() for k in OPTIONAL_COLUMNS if k in at and row[at[k]].strip()}
        try:
            out.append(
                Transaction(
                    transaction_id=f"txn-{n:04d}",
                    date=row[at["date"]].strip(),
                    amount_cents=cents,
                    description=row[at["description"]],
                    category=row[at["category"]].strip() if "category" in at else "",
                    direction=direction,
                    **extra,
                )
            )
        except ValidationError as exc:
            field = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise ValueError(f"row {n} {field}: {exc.errors()[0]['msg']}") from None
    return tuple(out)


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
