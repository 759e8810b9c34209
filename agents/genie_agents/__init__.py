"""Genie's agent catalogue, grouped by domain.

Installed as ``genie_agents`` (not ``agents``: another well-known distribution installs a
top-level ``agents`` package, and two distributions must not write the same directory). The
``genie`` library never imports it; it finds ``register`` through the ``genie.catalogue`` entry
point, as it finds any third-party catalogue. The domain packages import their agents lazily
(``_lazy``), so registering the catalogue imports no agent.
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
    """Add every agent of this catalogue under its Go id (each domain's ``AGENTS``), by
    reference: an agent's module is imported when a pipeline first uses it."""
    for domain, module in DOMAINS.items():
        for name, cls in module.AGENTS.items():
            where = f"{module.__name__}{module.CLASSES[cls]}:{cls}"
            catalogue.add(where, name=name, domain=domain)
