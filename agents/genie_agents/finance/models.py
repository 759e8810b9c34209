"""Payloads of the finance flow (reference §7.1-7.2). Field order follows the Go structs, so a
payload's JSON (``model_dump_json()``) is the Go content byte for byte."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from genie import Payload
from genie.pipeline import Gathered

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


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Transaction(_Record):
    """Amounts are in minor units (paise, cents): credits positive, debits negative."""

    transaction_id: str = ""
    account_id: str = ""
    date: str
    amount_cents: int
    currency: str = ""
    description: str = ""
    merchant: str = ""
    category: str = ""
    direction: str = ""


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


class CategoryTotal(_Record):
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


class Anomaly(_Record):
    transaction_id: str
    category: str
    amount_cents: int
    z_score: float
    reason: str


class Anomalies(Payload):
    """``anomalies`` is None (JSON null) when there were fewer than two transactions, as in Go."""

    message_type = "anomalies"
    anomalies: tuple[Anomaly, ...] | None


class Recommendation(_Record):
    title: str
    category: str | None = None  # omitted from the JSON when None (Go omitempty)
    impact_cents: int
    confidence: str
    action: str
    rationale: str
    informational: bool

    @model_serializer(mode="wrap")
    def _omit_empty_category(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("category") is None:
            del data["category"]
        return data


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
