"""Agents that support pipelines rather than a business domain: the fallback, and the
simulation helpers (echo, delay, flaky, fan-out, sink)."""

from .fallback import Fallback as Fallback
from .fallback import FallbackNotice as FallbackNotice
from .sim import Delay as Delay
from .sim import Echo as Echo
from .sim import FanOut as FanOut
from .sim import Flaky as Flaky
from .sim import FlakyError as FlakyError
from .sim import Latency as Latency
from .sim import Sink as Sink

__all__ = [
    "Delay",
    "Echo",
    "Fallback",
    "FallbackNotice",
    "FanOut",
    "Flaky",
    "FlakyError",
    "Latency",
    "Sink",
]
