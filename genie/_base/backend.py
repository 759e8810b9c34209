"""The running event loop's primitives a request waits with: an event (a gather's, a request's,
an idle executor's) and a checkpoint (a publish's yield), looked up once when a runtime starts.

anyio's own ask sniffio which library runs on every call, and its event wraps the backend's in
a second object: on asyncio a round trip (``rt.ask`` of an echo agent) paid about a tenth of
its instructions for them (docs/benchmarks.md, "A request's own cost"). On asyncio, and loops
built on it such as uvloop, the runtime uses ``Flag`` (an event made of the loop's futures) and
``asyncio.sleep(0)``; on any other backend (trio), anyio's.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

import anyio

__all__ = ["ANY_BACKEND", "Backend", "Event", "Flag", "running_backend"]


class Event(Protocol):
    """What the runtime asks of an event: ``anyio.Event``'s set, is_set and wait."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


class Flag:
    """An event on asyncio: set once, waited for by any number of tasks, each wait cancellable
    (a cancelled wait leaves nothing behind). Unlike anyio's, waiting for a flag already set
    returns at once rather than yielding first: the runtime waits for one only while it is
    not set."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None  # made by the first wait

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        if self._waiters is not None:
            for waiter in self._waiters:
                if not waiter.done():  # a cancelled wait's future is done
                    waiter.set_result(None)

    async def wait(self) -> None:
        if self._set:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            await waiter
        finally:
            waiters.remove(waiter)


class Backend(NamedTuple):
    new_event: Callable[[], Event]
    checkpoint: Callable[[], Awaitable[None]]


ANY_BACKEND = Backend(anyio.Event, functools.partial(anyio.sleep, 0))
"""anyio's, which work on any backend (asked each call): what a runtime uses before it starts."""

_ASYNCIO = Backend(Flag, functools.partial(asyncio.sleep, 0))


def running_backend() -> Backend:
    """The primitives of the event loop running this task."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio, say
        # The backend's own event class builds what ``anyio.Event()`` would, without asking
        # sniffio again; ``anyio.sleep(0)`` is the backend's checkpoint.
        return Backend(type(anyio.Event()), ANY_BACKEND.checkpoint)
    return _ASYNCIO
