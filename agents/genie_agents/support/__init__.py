"""Agents that support pipelines rather than a business domain: the fallback, the auditor,
complaint triage, the semantic router, and the simulation helpers (echo, delay, flaky,
fan-out, sink)."""

from .fallback import Fallback as Fallback
from .fallback import FallbackNotice as FallbackNotice
from .review import Auditor as Auditor
from .review import ComplaintTriage as ComplaintTriage
from .semantic import HSupervisor as HSupervisor
from .semantic import SemanticRoute as SemanticRoute
from .sim import Delay as Delay
from .sim import Echo as Echo
from .sim import FanOut as FanOut
from .sim import Flaky as Flaky
from .sim import FlakyError as FlakyError
from .sim import Sink as Sink

AGENTS = {
    "fallback": Fallback,
    "llm_auditor": Auditor,
    "complaint_triage": ComplaintTriage,
    "echo": Echo,
    "delay": Delay,
    "flaky": Flaky,
    "fanout": FanOut,
    "sink": Sink,
    "h_supervisor": HSupervisor,
}

__all__ = [
    "AGENTS",
    "Auditor",
    "ComplaintTriage",
    "Delay",
    "Echo",
    "Fallback",
    "FallbackNotice",
    "FanOut",
    "Flaky",
    "FlakyError",
    "HSupervisor",
    "SemanticRoute",
    "Sink",
]
