"""A reader's end of a live stream (``Runtime.events``, ``Runtime.model_text``): an async
iterator and context manager that a hub feeds and ends, and that detaches from its hub when
the reader closes it."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol, Self

import anyio

__all__ = ["Reading"]


class _Hub(Protocol):
    def detach(self, stream: Any) -> None: ...


class Reading:
    """What every live stream does besides choosing what it yields: ``_wake`` its reader,
    ``_end`` (the hub says nothing more will come), ``aclose`` (the reader stops listening;
    what was buffered can still be read)."""

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub
        self._ended = False
        self._wakeup: anyio.Event | None = None

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _wait(self) -> None:
        """Until the hub pushes or ends (call when nothing is buffered and not ended)."""
        self._wakeup = anyio.Event()
        await self._wakeup.wait()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def __aiter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        """Stop listening; what was buffered already can still be read."""
        self._hub.detach(self)
        self._end()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
