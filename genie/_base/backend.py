"""The running event loop's primitives a request waits with: an event (a gather's, a request's,
an idle executor's), a wait for one with a time limit, and a checkpoint (a publish's yield),
looked up once when a runtime starts.

anyio's own ask sniffio which library runs on every call, and its event wraps the backend's in
a second object: work every request would pay again (docs/benchmarks.md, "A request's own
cost", has what it came to). On asyncio, and loops
built on it such as uvloop, the runtime uses ``Flag`` (``asyncio_flag``: an event made of the
loop's futures, whose wait takes a time limit as a timer) and ``asyncio.sleep(0)``; on any
other backend (trio), anyio's, the limit a cancel scope. Nothing here imports asyncio or
anyio's primitives before a runtime asks (``import genie`` stays lean).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol, cast

import anyio

__all__ = ["Backend", "Event", "any_backend", "running_backend"]


class Event(Protocol):
    """What the runtime asks of an event: ``anyio.Event``'s set, is_set and wait."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class Backend(NamedTuple):
    new_event: Callable[[], Event]
    checkpoint: Callable[[], Awaitable[None]]
    # ``wait_at_most(event, seconds)``: return once ``event`` (one of ``new_event``'s) is set,
    # or once ``seconds`` have passed (None: no limit), without raising.
    wait_at_most: Callable[[Event, float | None], Awaitable[None]]
    # ``stray_cancel()``, asked as a cancellation is raised in a task of the runtime's: whether
    # it is a native cancel no cancel scope made (asyncio's ``task.cancel()``, which a handler
    # may leave behind to land after it returned), now withdrawn so that the task goes on.
    stray_cancel: Callable[[], bool]


def _no_stray_cancel() -> bool:
    """On trio every cancellation is a cancel scope's."""
    return False


def _stray_asyncio_cancel() -> bool:
    import asyncio

    if anyio.current_effective_deadline() == -math.inf:  # a cancel scope's: it stands
        return False
    task = asyncio.current_task()
    if task is None or not task.cancelling():
        return False
    task.uncancel()
    return True


async def _wait_at_most(event: Event, seconds: float | None) -> None:
    if seconds is None:  # no limit: no cancel scope
        await event.wait()
        return
    with anyio.move_on_after(seconds):
        await event.wait()


def any_backend() -> Backend:
    """anyio's, which work on any backend (asked each call): what a runtime uses before it
    starts."""
    return Backend(anyio.Event, functools.partial(anyio.sleep, 0), _wait_at_most, _no_stray_cancel)


def running_backend() -> Backend:
    """The primitives of the event loop running this task."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio, say
        # The backend's own event class builds what ``anyio.Event()`` would, without asking
        # sniffio again; ``anyio.sleep(0)`` is the backend's checkpoint.
        return Backend(
            type(anyio.Event()), functools.partial(anyio.sleep, 0), _wait_at_most, _no_stray_cancel
        )
    from .asyncio_flag import Flag

    # ``Flag.wait`` takes the limit itself: the events it is given are this backend's Flags.
    wait_at_most = cast(Callable[[Event, float | None], Awaitable[None]], Flag.wait)
    return Backend(Flag, functools.partial(asyncio.sleep, 0), wait_at_most, _stray_asyncio_cancel)
