"""Agents in front of an outside service, each behind an interface with an in-memory or echo
implementation shipped: the account aggregator and voice."""

from .aa import AaFetcher, FIClient, InMemoryFIClient
from .voice import EchoVoiceProvider, StreamingVoiceProvider, Voice, VoiceProvider, VoiceStreaming

AGENTS = {
    "aa_fetcher": AaFetcher,
    "voice": Voice,
    "voice_streaming": VoiceStreaming,
}

__all__ = [
    "AGENTS",
    "AaFetcher",
    "EchoVoiceProvider",
    "FIClient",
    "InMemoryFIClient",
    "StreamingVoiceProvider",
    "Voice",
    "VoiceProvider",
    "VoiceStreaming",
]
