"""A provider that answers from a script: offline runs, examples and tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import aclosing, asynccontextmanager

from anyio.lowlevel import checkpoint

from .._errors import LLMError
from .._provider import events_of
from .._types import Request, Response, StreamEvent

__all__ = ["ScriptedProvider"]

Answer = Response | str | LLMError | Callable[[Request], Response]


class ScriptedProvider:
    """Answers each call with the next item of ``script`` and repeats the last one, as Go's
    mock does: a :class:`Response`, a text, an error to raise, or a function of the request.
    Every request is kept in ``requests``. Streams send the text in ``chunk``-sized deltas,
    letting the event loop run other tasks between two, as a stream from a server does."""

    def __init__(
        self,
        script: Iterable[Answer] = ("(scripted empty response)",),
        *,
        name: str = "scripted",
        region: str = "on-prem",
        model: str = "scripted-model",
        chunk: int = 8,
    ) -> None:
        self._script = list(script)
        if not self._script:
            raise ValueError("a scripted provider needs at least one answer")
        self._name = name
        self._region = region
        self.model = model
        self.chunk = chunk
        self.requests: list[Request] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def region(self) -> str:
        return self._region

    def _next(self, request: Request) -> Response:
        self.requests.append(request)
        answer = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        if isinstance(answer, LLMError):
            raise answer
        if isinstance(answer, str):
            answer = Response(text=answer)
        elif not isinstance(answer, Response):
            answer = answer(request)
        return answer.model_copy(
            update={"provider": self._name, "model": answer.model or request.model or self.model}
        )

    async def complete(self, request: Request) -> Response:
        return self._next(request)

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        async with aclosing(_paced(events_of(self._next(request), self.chunk))) as reader:
            yield reader


async def _paced(events: AsyncGenerator[StreamEvent, None]) -> AsyncGenerator[StreamEvent, None]:
    async with aclosing(events):
        async for event in events:
            await checkpoint()
            yield event
