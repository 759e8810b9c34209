"""What a simulation runs with, and the error for settings it cannot run with."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .._base.clock import seconds, spelt
from .._errors import ConfigurationError
from ._faults import Fault, seed_text

__all__ = [
    "ClockKind",
    "Settings",
    "SimulationError",
    "check_seed",
    "check_timeout",
    "fault_list",
    "whole",
]

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


# Checked where they are given, by ``simulate`` and by ``genie.testing.TestRuntime``: each
# would otherwise fail deep in the run, or run as something else than what was meant.


def whole(value: object, least: int | None) -> bool:
    """Whether ``value`` is a whole number (not a bool), of at least ``least`` if given."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return least is None or value >= least


def check_seed(seed: object) -> None:
    # The seed names every stream ("{seed}:input:{session}"): "7" ran as 7, reported as "7".
    if not whole(seed, None):
        raise SimulationError(f"seed must be a whole number, got {spelt(seed)}")
    assert isinstance(seed, int)
    if not seed_text(seed):
        raise SimulationError(
            f"seed must be a whole number of at most {sys.get_int_max_str_digits()} digits, "
            f"got {spelt(seed)}"
        )


def check_timeout(timeout: object) -> None:
    if not 0 < (seconds(timeout) or 0) < math.inf:
        raise SimulationError(f"timeout must be a positive number of seconds, got {spelt(timeout)}")


def fault_list(faults: object) -> tuple[Fault | str, ...]:
    """``faults`` as given: a list of specs or ``Fault``s, else a ``SimulationError``."""
    # A spec is itself iterable: given for the list, it was read character by character.
    if isinstance(faults, str | Fault) or not isinstance(faults, Iterable):
        raise SimulationError(
            f"faults must be a list of fault specs or Faults, not a {type(faults).__name__}"
        )
    given = tuple(faults)
    for f in given:
        if not isinstance(f, str | Fault):
            raise SimulationError(
                "faults must be a list of fault specs or Faults, not a list holding "
                f"{type(f).__name__}"
            )
    return given
