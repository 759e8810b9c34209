"""What the LLM tests share: the fixture folder, one rich request, a transport that records."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from pydantic import BaseModel

from genie.llm import (
    CallContext,
    ChatMessage,
    EventStream,
    ImagePart,
    ProviderConnectionError,
    Request,
    Response,
    ScriptedProvider,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
)
from genie.llm._providers.scripted import Answer

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "sk-test-0123456789abcdef"

# httpx's own stream iterators are async generators (httpcore's under them, over a socket): a
# stream left half-read (an error found mid-stream, an answer past max_response_bytes) leaves
# them to the garbage collector, and trio warns (encode/httpx#3686, open).
# Only that warning is ignored, only in the tests of such errors.
HTTPX_HALF_READ = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object "
    r"(Response\.aiter|ByteStream\.__aiter__|BoundAsyncStream\.__aiter__"
    r"|AsyncResponseStream\.__aiter__|PoolByteStream\.__aiter__"
    r"|HTTP11ConnectionByteStream\.__aiter__|AsyncHTTP11Connection\._receive_response_body)"
    ":pytest.PytestUnraisableExceptionWarning"
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class SearchRbi(BaseModel):
    """Search RBI circulars."""

    query: str
    limit: int = 3


class Verdict(BaseModel):
    score: int
    reasoning: str


PIXEL = ImagePart.from_bytes(b"\x89PNG\r\n\x1a\n", "image/png")


def rich_request(**changes: object) -> Request:
    """A request that uses every part of the wire format: system, image, tools, a tool turn."""
    call = ToolCall(id="call_1", name="search_rbi", arguments={"query": "KYC"})
    base = Request(
        model="m-1",
        system="You are terse.",
        messages=(
            ChatMessage.user("What does this show?", PIXEL),
            ChatMessage.assistant("", (call,)),
            ChatMessage.tool_result(call, "3 circulars"),
        ),
        tools=(Tool.from_model(SearchRbi),),
        max_tokens=64,
        temperature=0.0,
        context=CallContext(principal="p1", correlation_id="c1"),
    )
    return base.model_copy(update=changes)


def simple_request(**changes: object) -> Request:
    base = Request(messages=(ChatMessage.user("Hi"),), model="m-1", max_tokens=16)
    return base.model_copy(update=changes)


class Recorder:
    """An ``httpx.MockTransport`` handler that records requests and answers with ``reply``."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response]) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.reply(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    @property
    def body(self) -> object:
        return json.loads(self.requests[-1].content)


def answer(status: int, content: bytes, content_type: str = "application/json", **headers: str):  # type: ignore[no-untyped-def]
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, content=content, headers={"content-type": content_type, **headers}
        )

    return reply


async def read_into(stream: EventStream, out: list[StreamEvent]) -> list[StreamEvent]:
    """Reads a stream to its end into ``out``, which keeps what arrived if it fails."""
    async with stream as events:
        async for event in events:
            out.append(event)
    return out


def texts(events: list[StreamEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


class Sleeps:
    """A ``sleep`` for the retry wrapper that records each wait instead of waiting (the
    virtual time of tests whose other side is a real socket, which a mock clock cannot skip)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await anyio.lowlevel.checkpoint()


class Scripted(ScriptedProvider):
    """The scripted provider with two test-only faults: a pause before answering (to meet a
    deadline or a TTL on virtual time), and a stream that breaks after ``break_after`` events."""

    def __init__(
        self,
        script: Sequence[Answer] = ("ok",),
        *,
        pause: float = 0.0,
        break_after: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(script, **options)
        self.pause = pause
        self.break_after = break_after

    async def complete(self, request: Request) -> Response:
        if self.pause:
            await anyio.sleep(self.pause)
        return await super().complete(request)

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        if self.pause:
            await anyio.sleep(self.pause)
        async with (
            super().stream(request) as events,
            aclosing(self._breaking(events)) as reader,
        ):
            yield reader

    async def _breaking(
        self, events: AsyncIterator[StreamEvent]
    ) -> AsyncGenerator[StreamEvent, None]:
        sent = 0
        async for event in events:
            if self.break_after is not None and sent == self.break_after:
                raise ProviderConnectionError(f"{self.name}: connection reset", provider=self.name)
            sent += 1
            yield event
