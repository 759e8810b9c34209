"""The finance flow of the Go system: ingest, normalise, enrich, analyse, fan out to forecast,
anomalies and recommendations, fan in at the supervisor, report."""

from .analysis import Analyzer as Analyzer
from .analysis import AnomalyDetector as AnomalyDetector
from .analysis import Forecaster as Forecaster
from .analysis import Recommender as Recommender
from .ingest import Enricher as Enricher
from .ingest import Ingestor as Ingestor
from .ingest import Normalizer as Normalizer
from .report import Reporter as Reporter
from .supervisor import FinancialSupervisor as FinancialSupervisor

__all__ = [
    "Analyzer",
    "AnomalyDetector",
    "Enricher",
    "FinancialSupervisor",
    "Forecaster",
    "Ingestor",
    "Normalizer",
    "Recommender",
    "Reporter",
]
