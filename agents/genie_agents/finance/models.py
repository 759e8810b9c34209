"""Payloads of the finance flow. Field order follows the Go structs, so a
payload's JSON (``model_dump_json()``) is the Go content byte for byte."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import date
from typing import Any

from pydantic import Field, field_validator, model_validator

from genie import Payload
from genie.pipeline import Gathered

from .._common import Record
from .._go import UNUSED, GoName, GoValueError, go_names, go_text
from .statement import Transaction, parse_statement

__all__ = [
    "AnalysisResult",
    "Anomalies",
    "Anomaly",
    "CategoryTotal",
    "EnrichedTransactions",
    "FinalReport",
    "FinalReportRequest",
    "FinanceQuestion",
    "ForecastResult",
    "IngestCsv",
    "NormalizedTransactions",
    "RawTransactions",
    "ReportParts",
    "Recommendation",
    "Recommendations",
    "Transaction",
]


def _none(value: object) -> bool:
    return value is None


class FinanceQuestion(Payload):
    """A user's question about a statement (Go: content = question, ``metadata["csv"]``).

    ``csv`` must be a statement the ingestor accepts: a bad one is refused here, where the
    request enters, naming its line (``genie run`` then exits 2), not by a failed run. A Go
    message (the question as bare text) has none: the supervisor reads its ``csv``
    metadata, and refuses a bad one there."""

    message_type = "finance_question"
    question: str
    # Required; null only in Go's shape, where the statement is the csv metadata: a payload of
    # ours without a statement is refused at the boundary, naming the field.
    csv: str | None = Field(description="the statement; null: the csv metadata (Go's place)")

    _go = go_text("question")  # Go's content was the question itself

    @model_validator(mode="before")
    @classmethod
    def _go_question(cls, data: Any) -> Any:
        # Runs before go_text (pydantic runs before-validators last defined first): Go's bare
        # question says its statement is in the metadata.
        return {"question": data, "csv": None} if isinstance(data, str) else data

    @field_validator("csv")
    @classmethod
    def _readable(cls, csv: str | None) -> str | None:
        if csv is not None:  # an empty statement is refused here too
            parse_statement(csv)
        return csv


class IngestCsv(Payload):
    message_type = "ingest_csv"
    csv: str

    _go = go_text("csv")  # Go's content was the CSV text itself


class _Batch(Payload):
    transactions: tuple[Transaction, ...]


class RawTransactions(_Batch):
    message_type = "raw_transactions"


class NormalizedTransactions(_Batch):
    message_type = "normalized_transactions"


class EnrichedTransactions(_Batch):
    message_type = "enriched_transactions"


class CategoryTotal(Record):
    category: str
    amount_cents: int
    count: int


class AnalysisResult(Payload):
    message_type = "analysis_result"
    total_income_cents: int
    total_expense_cents: int
    net_cents: int
    currency: str
    by_category: tuple[CategoryTotal, ...]
    top_overspend: tuple[str, ...]
    transactions: tuple[Transaction, ...]


class ForecastResult(Payload):
    message_type = "forecast_result"
    currency: str
    monthly_net_cents: int
    horizon_1m_cents: int
    horizon_3m_cents: int
    horizon_6m_cents: int


class Anomaly(Record):
    transaction_id: str
    category: str
    amount_cents: int
    z_score: float
    reason: str


class Anomalies(Payload):
    """``anomalies`` is None (JSON null) when there were fewer than two transactions, as in Go."""

    message_type = "anomalies"
    anomalies: tuple[Anomaly, ...] | None


class Recommendation(Record):
    title: str
    category: str | None = Field(None, exclude_if=_none)  # Go omitempty on a *string
    impact_cents: int
    confidence: str
    action: str
    rationale: str
    informational: bool


class Recommendations(Payload):
    message_type = "recommendations"
    currency: str
    recommendations: tuple[Recommendation, ...]


class FinalReportRequest(Payload):
    """The supervisor's fan-in bundle: the question, the analysis totals and each branch."""

    message_type = "final_report_request"
    question: str
    currency: str
    total_income_cents: int
    total_expense_cents: int
    net_cents: int
    top_overspend: tuple[str, ...]
    forecast: ForecastResult | None = None
    anomalies: Anomalies | None = None
    recommendations: Recommendations | None = None


class FinalReport(Payload):
    message_type = "final_report"
    text: str


class ReportParts(Gathered):
    """The four branches collected by a declared gather (``config/pipelines/finance-gather.yaml``)
    instead of the supervisor; the question travels in metadata ``question``."""

    message_type = "report_parts"


class Subscription(Record):
    merchant: str
    months: int
    first_cents: int
    latest_cents: int
    day_of_month: int
    price_change_pct: float
    zombie: bool


class Subscriptions(Payload):
    message_type = "subscriptions"
    subscriptions: tuple[Subscription, ...]
    monthly_total_cents: int


class CategoryEmission(Record):
    category: str
    spend_cents: int
    kg_co2e: float


class CarbonFootprint(Payload):
    message_type = "carbon_footprint"
    total_kg_co2e: float
    by_category: tuple[CategoryEmission, ...]
    by_month: dict[str, float]
    trend_pct: float | None
    tips: tuple[str, ...]


def _go_statements(records: Any) -> Any:
    """Go's transaction records (account_id, date, description, amount_rupees, type), one
    statement CSV per account, in the order the accounts first appear."""
    if not isinstance(records, list):
        return records
    by_account: dict[str, list[list[str]]] = {}
    for n, r in enumerate(records):
        if not isinstance(r, Mapping) or r.get("type") not in ("credit", "debit"):
            raise GoValueError("a record with type credit or debit", f"transactions.{n}")
        amount = r.get("amount_rupees")
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount < 0:
            raise GoValueError("amount_rupees: 0 or more", f"transactions.{n}")
        try:
            day = date.fromisoformat(str(r.get("date", ""))).isoformat()
        except ValueError:
            raise GoValueError("date: YYYY-MM-DD", f"transactions.{n}") from None
        row = [day, str(r.get("description", "")), f"{amount:.2f}", r["type"]]
        by_account.setdefault(str(r.get("account_id", "")), []).append(row)
    statements = []
    for rows in by_account.values():
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([["date", "description", "amount", "type"], *rows])
        statements.append(out.getvalue())
    return statements


class BulkStatementRequest(Payload):
    message_type = "bulk_statement_request"
    statements: tuple[str, ...] = Field(min_length=1, description="statement CSVs")

    _go = go_names({"transactions": GoName("statements", _go_statements), "applicant_id": UNUSED})


class MonthFlow(Record):
    month: str
    income_cents: int
    expense_cents: int


class ConsolidatedCashflow(Payload):
    message_type = "consolidated_cashflow"
    statements: int
    transactions: int
    duplicates_removed: int
    transfers_removed: int = Field(description="transfers between the statements (two legs each)")
    total_income_cents: int
    total_expense_cents: int
    net_cents: int
    by_month: tuple[MonthFlow, ...]
