"""Genie's agent catalogue, grouped by domain.

Installed as ``genie_agents`` (not ``agents``: another well-known distribution installs a
top-level ``agents`` package, and two distributions must not write the same directory). The
``genie`` library never imports it; it finds ``register`` through the ``genie.catalogue`` entry
point, as it finds any third-party catalogue.
"""

from __future__ import annotations

from genie import Agent, Catalogue

from . import finance, support

__all__ = ["register"]


def register(catalogue: Catalogue) -> None:
    """Add every agent of this catalogue under its Go id."""
    domains: dict[str, dict[str, type[Agent]]] = {
        "finance": {
            "ingestor": finance.Ingestor,
            "normalizer": finance.Normalizer,
            "enricher": finance.Enricher,
            "analyzer": finance.Analyzer,
            "forecaster": finance.Forecaster,
            "anomaly_detector": finance.AnomalyDetector,
            "recommender": finance.Recommender,
            "financial_supervisor": finance.FinancialSupervisor,
            "reporter": finance.Reporter,
        },
        "support": {
            "fallback": support.Fallback,
            "echo": support.Echo,
            "delay": support.Delay,
            "flaky": support.Flaky,
            "fanout": support.FanOut,
            "sink": support.Sink,
        },
    }
    for domain, agents in domains.items():
        for name, factory in agents.items():
            catalogue.add(factory, name=name, domain=domain)
