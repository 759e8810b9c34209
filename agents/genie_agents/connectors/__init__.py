"""Agents in front of an outside service, each behind an interface with an in-memory or echo
implementation shipped: the account aggregator, voice, and the broker portfolio over MCP (its
client needs the ``portfolio`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .aa import AaFetcher as AaFetcher
    from .aa import FIClient as FIClient
    from .aa import InMemoryFIClient as InMemoryFIClient
    from .portfolio import McpPortfolioSource as McpPortfolioSource
    from .portfolio import PortfolioAdvisor as PortfolioAdvisor
    from .portfolio import PortfolioSource as PortfolioSource
    from .vault import TokenVault as TokenVault
    from .voice import EchoVoiceProvider as EchoVoiceProvider
    from .voice import StreamingVoiceProvider as StreamingVoiceProvider
    from .voice import Voice as Voice
    from .voice import VoiceProvider as VoiceProvider
    from .voice import VoiceStreaming as VoiceStreaming

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "AaFetcher": ".aa",
    "FIClient": ".aa",
    "InMemoryFIClient": ".aa",
    "McpPortfolioSource": ".portfolio",
    "PortfolioAdvisor": ".portfolio",
    "PortfolioSource": ".portfolio",
    "TokenVault": ".vault",
    "EchoVoiceProvider": ".voice",
    "StreamingVoiceProvider": ".voice",
    "Voice": ".voice",
    "VoiceProvider": ".voice",
    "VoiceStreaming": ".voice",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "aa_fetcher": "AaFetcher",
    "voice": "Voice",
    "voice_streaming": "VoiceStreaming",
    "portfolio_advisor": "PortfolioAdvisor",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "AaFetcher",
    "EchoVoiceProvider",
    "FIClient",
    "InMemoryFIClient",
    "McpPortfolioSource",
    "PortfolioAdvisor",
    "PortfolioSource",
    "StreamingVoiceProvider",
    "TokenVault",
    "Voice",
    "VoiceProvider",
    "VoiceStreaming",
]
