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

    async def wait(self, seconds: float | None = None) -> None:
        """Return once the flag is set, or once ``seconds`` (if given) have passed on the
        loop's clock, without raising: the caller reads what it waited for. A timer, where
        anyio's ``move_on_after`` would make a cancel scope."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        timer = None if seconds is None else loop.call_later(seconds, _time_up, waiter)
        try:
            await waiter
        finally:
            waiters.remove(waiter)
            if timer is not None:
                timer.cancel()


def _time_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # set meanwhile, or its wait cancelled
        waiter.set_result(None)
