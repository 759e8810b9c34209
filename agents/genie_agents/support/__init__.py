"""Agents that support pipelines rather than a business domain: the fallback, the auditor,
complaint triage, the semantic router, and the simulation helpers (echo, delay, flaky,
fan-out, sink)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
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

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "Fallback": ".fallback",
    "FallbackNotice": ".fallback",
    "Auditor": ".review",
    "ComplaintTriage": ".review",
    "HSupervisor": ".semantic",
    "SemanticRoute": ".semantic",
    "Delay": ".sim",
    "Echo": ".sim",
    "FanOut": ".sim",
    "Flaky": ".sim",
    "FlakyError": ".sim",
    "Sink": ".sim",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "fallback": "Fallback",
    "llm_auditor": "Auditor",
    "complaint_triage": "ComplaintTriage",
    "echo": "Echo",
    "delay": "Delay",
    "flaky": "Flaky",
    "fanout": "FanOut",
    "sink": "Sink",
    "h_supervisor": "HSupervisor",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
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
