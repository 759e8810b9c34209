"""Agents in front of an outside service, each behind an interface with an in-memory or echo
implementation shipped: the account aggregator, voice, and the broker portfolio over MCP (its
client needs the ``portfolio`` extra)."""

from .aa import AaFetcher, FIClient, InMemoryFIClient
from .portfolio import McpPortfolioSource, PortfolioAdvisor, PortfolioSource
from .vault import TokenVault
from .voice import EchoVoiceProvider, StreamingVoiceProvider, Voice, VoiceProvider, VoiceStreaming

AGENTS = {
    "aa_fetcher": AaFetcher,
    "voice": Voice,
    "voice_streaming": VoiceStreaming,
    "portfolio_advisor": PortfolioAdvisor,
}

__all__ = [
    "AGENTS",
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
