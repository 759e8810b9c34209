"""The adapters and wrappers over a real socket, against the provider server's scripted faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from genie import Classification
from genie.llm import (
    AnthropicProvider,
    BudgetExceededError,
    BudgetLedger,
    CallContext,
    Deadline,
    Fallback,
    GeminiProvider,
    KillSwitch,
    LLMTimeoutError,
    OllamaProvider,
    OpenAIProvider,
    Provider,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderUnavailableError,
    Retry,
    StreamEvent,
    complete_by_streaming,
)
from genie.llm._providers.http import HTTPAdapter

from .helpers import API_KEY, HTTPX_HALF_READ, Sleeps, read_into, simple_request, texts
from .server import ProviderServer, Reply, sse

ADAPTERS: list[type[HTTPAdapter]] = [
    OpenAIProvider,
    AnthropicProvider,
    GeminiProvider,
    OllamaProvider,
]
PATHS = {
    OpenAIProvider: "/v1/chat/completions",
    AnthropicProvider: "/v1/messages",
    GeminiProvider: "/v1beta/models/",
    OllamaProvider: "/api/chat",
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as shared:
        yield shared


def adapter(
    cls: type[HTTPAdapter], server: ProviderServer, client: httpx.AsyncClient, **options: Any
) -> HTTPAdapter:
    return cls(base_url=server.url, api_key=API_KEY, client=client, **options)


@pytest.mark.parametrize("cls", ADAPTERS, ids=lambda c: c.__name__)
async def test_each_adapter_completes_and_streams_over_a_socket(
    cls: type[HTTPAdapter], server: ProviderServer, client: httpx.AsyncClient
) -> None:
    p = adapter(cls, server, client)
    whole = await p.complete(simple_request())
    events: list[StreamEvent] = []
    await read_into(p.stream(simple_request()), events)
    assert whole.text == "The image shows a PNG header."
    assert texts(events) == ["Hello", " there"]
    assert [r.path.split("?")[0].startswith(PATHS[cls]) for r in server.received] == [True, True]
    assert server.received[0].headers.get("x-api-key", API_KEY) == API_KEY


async def test_a_429_is_retried_after_the_wait_the_server_asked_for(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    server.script("/v1/chat", Reply(429, (b'{"error":"slow down"}',), {"retry-after": "2"}))
    sleeps = Sleeps()
    p = adapter(OpenAIProvider, server, client)
    response = await Retry(p, sleep=sleeps, seed=1).complete(simple_request())
    assert response.text == "The image shows a PNG header."
    assert sleeps.waits == [2.0]
    assert len(server.received) == 2


async def test_503s_back_off_exponentially_with_seeded_jitter_then_give_up(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    server.script("/api/chat", *[Reply(503, (b"overloaded",))] * 4)
    sleeps = Sleeps()
    p = adapter(OllamaProvider, server, client)
    retry = Retry(p, attempts=4, backoff=1, jitter=0.5, seed=7, sleep=sleeps)
    with pytest.raises(ProviderUnavailableError, match="HTTP 503"):
        await retry.complete(simple_request())
    assert len(server.received) == 4
    assert len(sleeps.waits) == 3
    for n, wait in enumerate(sleeps.waits):
        assert 0.5 * 2**n <= wait <= 2**n
    # Same seed, same waits: a run can be replayed.
    twin = Retry(p, attempts=4, backoff=1, jitter=0.5, seed=7)
    error = ProviderUnavailableError(provider="x", status=503, request_id=None, excerpt="")
    assert [twin.delay(n, error) for n in (1, 2, 3)] == sleeps.waits


async def test_a_slow_first_byte_hits_the_deadline_over_all_attempts(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    server.script("/v1/messages", *[Reply(first_byte_delay=2.0)] * 3)
    stack = Deadline(Retry(adapter(AnthropicProvider, server, client), attempts=3), timeout=0.3)
    started = anyio.current_time()
    with pytest.raises(LLMTimeoutError, match="deadline"):
        await stack.complete(simple_request())
    assert anyio.current_time() - started < 1.5
    assert len(server.received) == 1  # the deadline cut the first attempt: no second one


async def test_a_disconnect_mid_stream_reaches_the_reader_and_is_not_retried(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    chunks = sse(
        {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}}]},
        "[DONE]",
    )
    server.script("/v1/chat", Reply(chunks=chunks, disconnect_after=1))
    events: list[StreamEvent] = []
    stack = Retry(adapter(OpenAIProvider, server, client), attempts=5, sleep=Sleeps())
    with pytest.raises(ProviderConnectionError, match="openai"):
        await read_into(stack.stream(simple_request()), events)
    assert texts(events) == ["Hel"]
    assert len(server.received) == 1


async def test_a_stream_is_retried_while_nothing_has_arrived(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    server.script("/v1/chat", Reply(503, (b"busy",)), Reply(chunks=(), disconnect_after=0))
    sleeps = Sleeps()
    stack = Retry(adapter(OpenAIProvider, server, client), attempts=3, sleep=sleeps)
    events: list[StreamEvent] = []
    await read_into(stack.stream(simple_request()), events)
    assert texts(events) == ["Hello", " there"]
    assert len(server.received) == 3
    assert len(sleeps.waits) == 2


async def test_malformed_json_is_reported_and_not_retried(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    server.script("/api/chat", Reply(chunks=(b'{"message": {"content": "cut',)))
    stack = Retry(adapter(OllamaProvider, server, client), attempts=3, sleep=Sleeps())
    with pytest.raises(ProviderResponseError, match="not a JSON object"):
        await stack.complete(simple_request())
    assert len(server.received) == 1


async def test_fallback_moves_on_after_retries_and_skips_a_foreign_region(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    server.script("/v1/messages", *[Reply(503, (b"down",))] * 2)
    abroad = adapter(OpenAIProvider, server, client, name="abroad", region="us")
    first = Retry(
        adapter(AnthropicProvider, server, client, region="in"), attempts=2, sleep=Sleeps()
    )
    local = adapter(OllamaProvider, server, client)  # on-prem
    chain = Fallback(abroad, first, local, home_region="in")
    request = simple_request(context=CallContext(classification=Classification.PII))
    response = await complete_by_streaming(chain, request)
    assert response.text == "Hello there"
    paths = [r.path for r in server.received]
    assert paths == ["/v1/messages", "/v1/messages", "/api/chat"]  # "abroad" got nothing


async def test_with_the_budget_spent_the_server_receives_nothing(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    ledger = BudgetLedger(max_tokens=500, name="correlation")
    providers: list[Provider] = [
        KillSwitch(adapter(cls, server, client), ledger) for cls in ADAPTERS
    ]
    request = simple_request(max_tokens=400, context=CallContext(correlation_id="loop-1"))
    await providers[0].complete(request)  # 138 tokens used: 362 left, the next may need ~412
    before = len(server.received)
    for p in providers:
        with pytest.raises(BudgetExceededError, match="correlation_tokens budget for loop-1"):
            await p.complete(request)
        with pytest.raises(BudgetExceededError):
            await read_into(p.stream(request), [])
    assert len(server.received) == before == 1
    assert ledger.statistics().refusals == 8


MIB = 1 << 20
PIECE = b"x" * (64 * 1024)


@HTTPX_HALF_READ
async def test_an_answer_larger_than_the_limit_is_refused_as_it_arrives_not_held(
    server: ProviderServer, client: httpx.AsyncClient
) -> None:
    """A server's answer is untrusted in size too: a body past ``max_response_bytes`` is a
    malformed answer (not retried: the server would send it again), found while it arrives,
    whether a JSON answer, one endless stream line, or an error page; before, each was read
    whole into memory, however large, and the endless line was retried as a lost connection."""
    huge = (b'{"choices": [{"message": {"content": "', *[PIECE] * 40, b'"}}]}')  # 2.5 MiB
    endless = (b"data: ", *[PIECE] * 40)  # one line that never ends
    page = Reply(status=503, chunks=(b"<html>", *[PIECE] * 40))
    path = "/v1/chat/completions"
    server.script(path, Reply(chunks=huge), Reply(chunks=endless), page)
    model = adapter(OpenAIProvider, server, client, max_response_bytes=MIB)
    stack = Retry(model, attempts=2, sleep=Sleeps())
    with pytest.raises(ProviderResponseError, match="larger than 1048576 bytes"):
        await stack.complete(simple_request())
    with pytest.raises(ProviderResponseError, match="larger than 1048576 bytes"):
        await read_into(stack.stream(simple_request()), [])
    with pytest.raises(ProviderUnavailableError, match="<html>xxxx") as busy:
        await model.complete(simple_request())
    assert len(busy.value.excerpt) <= 512
    assert len(server.received) == 3  # neither refusal was retried
