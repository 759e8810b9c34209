"""Payloads of the finance flow (reference §7.1-7.2). Field order follows the Go structs, so a
payload's JSON (``model_dump_json()``) is the Go content byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from genie import Payload
from genie.pipeline import Gathered

from .._common import Record

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


def _empty(value: object) -> bool:
    return value is None or value == ""


# Fields the Go struct tags omitempty, plus this port's optional detail (time of day, place,
# counterparty, channel, country) that the fraud, mule and AML detectors read: left out of the
# JSON when empty.
def _none(value: object) -> bool:
    return value is None


def _omitted(default: str | None = "") -> Any:
    return Field(default, exclude_if=_empty)


class Transaction(Record):
    """Amounts are in minor units (paise, cents): credits positive, debits negative.

    ``time`` ("HH:MM" or "HH:MM:SS"), ``latitude``/``longitude``, ``counterparty``, ``channel``
    (cash, wire, upi, card, ...) and ``country`` (ISO code) are optional; the statement CSV
    fills them from columns of the same names when present.
    """

    transaction_id: str = ""
    account_id: str = ""
    date: str
    amount_cents: int
    currency: str = ""
    description: str = ""
    merchant: str = _omitted()
    category: str = _omitted()
    direction: str = _omitted()
    time: str = Field("", pattern=r"^(([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?)?$", exclude_if=_empty)
    latitude: float | None = _omitted(None)
    longitude: float | None = _omitted(None)
    counterparty: str = _omitted()
    channel: str = _omitted()
    country: str = _omitted()

    @property
    def instant(self) -> datetime:
        """Date and time of day (midnight when the time is not known), UTC."""
        when = datetime.fromisoformat(f"{self.date}T{self.time or '00:00'}")
        return when.replace(tzinfo=UTC)


class FinanceQuestion(Payload):
    """A user's question about a statement (Go: content = question, ``metadata["csv"]``)."""

    message_type = "finance_question"
    question: str
    csv: str


class IngestCsv(Payload):
    message_type = "ingest_csv"
    csv: str


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


class BulkStatementRequest(Payload):
    message_type = "bulk_statement_request"
    statements: tuple[str, ...] = Field(min_length=1, description="statement CSVs")


class MonthFlow(Record):
    month: str
    income_cents: int
    expense_cents: int


class ConsolidatedCashflow(Payload):
    message_type = "consolidated_cashflow"
    statements: int
    transactions: int
    duplicates_removed: int
    total_income_cents: int
    total_expense_cents: int
    net_cents: int
    by_month: tuple[MonthFlow, ...]
