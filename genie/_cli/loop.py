"""The event loop a command runs on: asyncio's own, or uvloop (the ``uvloop`` extra)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, TypeVarTuple

import anyio
from anyio.abc import TaskStatus

from .._base.failure import exiting
from .._errors import ConfigurationError

__all__ = ["LOOPS", "add_loop_option", "run_on", "stop_on_signal"]

LOOPS = ("asyncio", "uvloop")
_EXECUTOR_NEVER_RUN = "coroutine 'Executors._executor' was never awaited"

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
    new_loop = asyncio.new_event_loop
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise ConfigurationError(
                "--loop uvloop: uvloop is not installed (pip install 'genie-bus[uvloop]')"
            ) from None
        new_loop = uvloop.new_event_loop

    def made() -> asyncio.AbstractEventLoop:
        created = new_loop()
        created.set_exception_handler(_exits_said)
        return created

    try:
        with warnings.catch_warnings():
            # The runtime starts an executor only to run it; one it started as a handler's
            # exit left the loop never ran, and asyncio's teardown drops it unawaited.
            warnings.filterwarnings("ignore", _EXECUTOR_NEVER_RUN, RuntimeWarning)
            return anyio.run(func, *args, backend="asyncio", backend_options={"loop_factory": made})
    except (SystemExit, KeyboardInterrupt):
        # A task started just before the exit, which asyncio then cancelled before its first
        # step, holds a coroutine never awaited: Python would say so as the process ends, of
        # an exit the command says already.
        warnings.filterwarnings("ignore", "coroutine '.*' was never awaited", RuntimeWarning)
        raise


def _exits_said(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio lets a handler's ``sys.exit()`` or ``KeyboardInterrupt`` out of the task that
    raised it (``run_on`` raises it, for the command to say in a line), then logs each task
    that held it too ("unhandled exception during asyncio.run() shutdown"): a traceback of
    what the command says already. Anything else is logged as asyncio logs it."""
    found = context.get("exception")
    if isinstance(found, BaseException) and exiting(found) is not None:
        return
    loop.default_exception_handler(context)


async def stop_on_signal(
    scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM (a service manager's stop): what it
    runs stops as a cancellation, its runtimes recording what they cut short."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
