"""Genie's agent catalogue, grouped by domain.

Installed as ``genie_agents`` (not ``agents``: another well-known distribution installs a
top-level ``agents`` package, and two distributions must not write the same directory). The
``genie`` library never imports it; it finds ``register`` through the ``genie.catalogue`` entry
point, as it finds any third-party catalogue.
"""

from __future__ import annotations

from genie import Catalogue

from . import (
    advisory,
    connectors,
    desks,
    finance,
    fraud,
    insurance,
    lending,
    markets,
    payments,
    research,
    support,
    tax,
    treasury,
)

__all__ = ["register"]

DOMAINS = {
    "finance": finance,
    "fraud": fraud,
    "payments": payments,
    "insurance": insurance,
    "lending": lending,
    "treasury": treasury,
    "tax": tax,
    "advisory": advisory,
    "markets": markets,
    "connectors": connectors,
    "research": research,
    "support": support,
    "desks": desks,
}


def register(catalogue: Catalogue) -> None:
    """Add every agent of this catalogue under its Go id (each domain's ``AGENTS``)."""
    for domain, module in DOMAINS.items():
        for name, factory in module.AGENTS.items():
            catalogue.add(factory, name=name, domain=domain)
