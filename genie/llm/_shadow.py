"""Shadow: a second provider answers the same calls on the side, for comparison only."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from .._base.log import lazy_logger
from .._errors import described
from ._errors import LLMError
from ._provider import Provider, a_provider
from ._types import Accumulator, Finish, Request, Response, StreamEvent

__all__ = ["Shadow", "ShadowResult", "ShadowStatistics"]

logger = lazy_logger("genie.llm")


@dataclass(frozen=True, slots=True)
class ShadowResult:
    """A primary answer beside the shadow's (None with ``error`` set when the shadow failed:
    the error's text, or ``"timeout"``)."""

    request: Request
    primary: Response
    shadow: Response | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ShadowStatistics:
    started: int
    skipped: int
    in_flight: int


class Shadow:
    """Returns the primary's answer, always, and after it succeeds asks ``shadow`` the same
    question in ``task_group`` (the caller's: the shadow never delays the answer), for at most
    ``timeout`` seconds and at most ``max_in_flight`` at once (more are skipped and counted).
    Each comparison goes to ``on_result``; the shadow's errors go nowhere else.
    """

    def __init__(
        self,
        primary: Provider,
        shadow: Provider,
        task_group: TaskGroup,
        *,
        on_result: Callable[[ShadowResult], None],
        timeout: float = 10.0,
        max_in_flight: int = 4,
    ) -> None:
        self.primary = a_provider(primary, "Shadow(primary)")
        self.shadow = a_provider(shadow, "Shadow(shadow)")
        self._tg = task_group
        self._on_result = on_result
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self._in_flight = 0
        self._started = 0
        self._skipped = 0

    @property
    def name(self) -> str:
        return f"{self.primary.name}|shadow:{self.shadow.name}"

    @property
    def region(self) -> str:
        return self.primary.region

    def statistics(self) -> ShadowStatistics:
        return ShadowStatistics(self._started, self._skipped, self._in_flight)

    def _launch(self, request: Request, primary: Response) -> None:
        if self._in_flight >= self.max_in_flight:
            self._skipped += 1
            return
        self._in_flight += 1
        self._started += 1
        self._tg.start_soon(self._run, request, primary)

    async def _run(self, request: Request, primary: Response) -> None:
        shadow: Response | None = None
        error: str | None = "timeout"
        try:
            with anyio.move_on_after(self.timeout):
                try:
                    shadow = await self.shadow.complete(request)
                    error = None
                except LLMError as exc:
                    error = str(exc)
                except Exception as exc:
                    # Whatever breaks on the side stays there: this task shares the caller's
                    # task group, and an exception here would cancel the caller.
                    error = described(exc)
        finally:
            self._in_flight -= 1
        try:
            self._on_result(ShadowResult(request, primary, shadow, error))
        except Exception:
            logger.exception("shadow result handler failed for %s", self.name)

    async def complete(self, request: Request) -> Response:
        response = await self.primary.complete(request)
        self._launch(request, response)
        return response

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        async with (
            self.primary.stream(request) as events,
            aclosing(self._watched(request, events)) as reader,
        ):
            yield reader

    async def _watched(
        self, request: Request, events: AsyncIterator[StreamEvent]
    ) -> AsyncGenerator[StreamEvent, None]:
        acc = Accumulator(self.primary.name, request.model or "")
        async for event in events:
            acc.add(event)
            # A malformed answer (its tool calls unreadable) has nothing to compare.
            if isinstance(event, Finish) and (response := acc.watched()) is not None:
                self._launch(request, response)
            yield event
