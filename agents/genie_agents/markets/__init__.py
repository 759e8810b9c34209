"""Markets and investing: fund screening, SIP against lumpsum, options, the RBI's MPC, search
trends."""

from .funds import MfScreener, SipVsLumpsum
from .mpc import MpcResearch
from .options import OptionsExplainer
from .trends import GoogleTrends, InMemoryTrendFetcher, TrendFetcher

AGENTS = {
    "mf_screener": MfScreener,
    "sip_vs_lumpsum": SipVsLumpsum,
    "options_explainer": OptionsExplainer,
    "mpc_research": MpcResearch,
    "google_trends": GoogleTrends,
}

__all__ = [
    "AGENTS",
    "GoogleTrends",
    "InMemoryTrendFetcher",
    "MfScreener",
    "MpcResearch",
    "OptionsExplainer",
    "SipVsLumpsum",
    "TrendFetcher",
]
