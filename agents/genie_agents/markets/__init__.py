"""Markets and investing: fund screening, SIP against lumpsum, options, the RBI's MPC, search
trends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .funds import MfScreener as MfScreener
    from .funds import SipVsLumpsum as SipVsLumpsum
    from .mpc import MpcResearch as MpcResearch
    from .options import OptionsExplainer as OptionsExplainer
    from .trends import GoogleTrends as GoogleTrends
    from .trends import InMemoryTrendFetcher as InMemoryTrendFetcher
    from .trends import TrendFetcher as TrendFetcher

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "MfScreener": ".funds",
    "SipVsLumpsum": ".funds",
    "MpcResearch": ".mpc",
    "OptionsExplainer": ".options",
    "GoogleTrends": ".trends",
    "InMemoryTrendFetcher": ".trends",
    "TrendFetcher": ".trends",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "mf_screener": "MfScreener",
    "sip_vs_lumpsum": "SipVsLumpsum",
    "options_explainer": "OptionsExplainer",
    "mpc_research": "MpcResearch",
    "google_trends": "GoogleTrends",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "GoogleTrends",
    "InMemoryTrendFetcher",
    "MfScreener",
    "MpcResearch",
    "OptionsExplainer",
    "SipVsLumpsum",
    "TrendFetcher",
]
