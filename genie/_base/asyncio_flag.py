"""An event on asyncio made of the loop's futures: what a runtime on asyncio waits with
(``backend.running_backend``)."""

from __future__ import annotations

import asyncio

__all__ = ["Flag"]


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
