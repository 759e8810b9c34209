"""The event loop a command runs on: asyncio's own, or uvloop (the ``uvloop`` extra)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

import anyio

from .._errors import ConfigurationError

__all__ = ["LOOPS", "add_loop_option", "run_on"]

LOOPS = ("asyncio", "uvloop")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="the event loop: asyncio's own (default) or uvloop (pip install "
        "'genie-bus[uvloop]'; docs/install.md)",
    )


def run_on(loop: str, func: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """``anyio.run(func, *args)`` on the event loop named ``loop``; a clear error when uvloop is
    asked for and not installed."""
    if loop not in LOOPS:
        raise ConfigurationError(f"unknown event loop {loop!r} (known: {', '.join(LOOPS)})")
    uvloop = loop == "uvloop"
    if uvloop:
        try:
            import uvloop as _installed  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "--loop uvloop: uvloop is not installed (pip install 'genie-bus[uvloop]')"
            ) from None
    return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": uvloop})
