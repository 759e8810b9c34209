"""What a simulation runs with, and the error for settings it cannot run with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigurationError
from ._faults import Fault

__all__ = ["ClockKind", "Settings", "SimulationError"]

ClockKind = Literal["virtual", "real"]


class SimulationError(ConfigurationError):
    """Settings the simulation cannot run with (and what to do about it)."""


@dataclass(frozen=True)
class Settings:
    """What a simulation ran with (``timeout`` resolved to the pipeline's when not given)."""

    sessions: int
    concurrency: int
    seed: int
    clock: ClockKind
    timeout: float
    faults: tuple[Fault, ...]
