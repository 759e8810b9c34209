"""The finance flow of the Go system: ingest, normalise, enrich, analyse, fan out to forecast,
anomalies and recommendations, fan in at the supervisor, report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .analysis import Analyzer as Analyzer
    from .analysis import AnomalyDetector as AnomalyDetector
    from .analysis import Forecaster as Forecaster
    from .analysis import Recommender as Recommender
    from .ingest import Enricher as Enricher
    from .ingest import Ingestor as Ingestor
    from .ingest import Normalizer as Normalizer
    from .insights import BulkStatementAnalyzer as BulkStatementAnalyzer
    from .insights import CarbonEstimator as CarbonEstimator
    from .insights import SubscriptionDetector as SubscriptionDetector
    from .receipts import ReceiptOcr as ReceiptOcr
    from .report import Reporter as Reporter
    from .supervisor import FinancialSupervisor as FinancialSupervisor

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "Analyzer": ".analysis",
    "AnomalyDetector": ".analysis",
    "Forecaster": ".analysis",
    "Recommender": ".analysis",
    "Enricher": ".ingest",
    "Ingestor": ".ingest",
    "Normalizer": ".ingest",
    "BulkStatementAnalyzer": ".insights",
    "CarbonEstimator": ".insights",
    "SubscriptionDetector": ".insights",
    "ReceiptOcr": ".receipts",
    "Reporter": ".report",
    "FinancialSupervisor": ".supervisor",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "ingestor": "Ingestor",
    "normalizer": "Normalizer",
    "enricher": "Enricher",
    "analyzer": "Analyzer",
    "forecaster": "Forecaster",
    "anomaly_detector": "AnomalyDetector",
    "recommender": "Recommender",
    "financial_supervisor": "FinancialSupervisor",
    "reporter": "Reporter",
    "subscription_detector": "SubscriptionDetector",
    "carbon_estimator": "CarbonEstimator",
    "bulk_statement_analyzer": "BulkStatementAnalyzer",
    "receipt_ocr": "ReceiptOcr",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "Analyzer",
    "AnomalyDetector",
    "BulkStatementAnalyzer",
    "CarbonEstimator",
    "Enricher",
    "FinancialSupervisor",
    "Forecaster",
    "Ingestor",
    "Normalizer",
    "ReceiptOcr",
    "Recommender",
    "Reporter",
    "SubscriptionDetector",
]
