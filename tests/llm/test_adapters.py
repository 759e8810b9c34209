"""Each adapter against its wire format over ``httpx.MockTransport``: the request as sent (byte
for byte against a checked-in fixture), the answer and the stream as the provider sends them,
and every error status translated once, with the key nowhere to be read."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError

from genie import GenieError
from genie.llm import (
    Accumulator,
    AnthropicProvider,
    AuthenticationError,
    BadRequestError,
    BudgetLedger,
    Cache,
    CallContext,
    CallRecord,
    ChatMessage,
    CostObserver,
    Finish,
    GeminiProvider,
    KillSwitch,
    LLMError,
    OllamaProvider,
    OpenAIProvider,
    PriceTable,
    Provider,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderUnavailableError,
    RateLimitedError,
    Request,
    Shadow,
    ShadowResult,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
    Usage,
    complete_by_streaming,
)
from genie.llm._providers.http import HTTPAdapter

from .helpers import (
    API_KEY,
    HTTPX_HALF_READ,
    Recorder,
    Scripted,
    Verdict,
    answer,
    fixture,
    read_into,
    rich_request,
    simple_request,
    texts,
)


@dataclass(frozen=True)
class Wire:
    name: str
    cls: type[HTTPAdapter]
    url: str
    stream_url: str
    auth: tuple[str, str] | None
    stream_file: str
    stream_type: str
    model: str

    def __str__(self) -> str:
        return self.name


WIRES = [
    Wire(
        "openai",
        OpenAIProvider,
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/chat/completions",
        ("authorization", f"Bearer {API_KEY}"),
        "openai_stream.txt",
        "text/event-stream",
        "gpt-4.1-mini-2025-04-14",
    ),
    Wire(
        "anthropic",
        AnthropicProvider,
        "https://api.anthropic.com/v1/messages",
        "https://api.anthropic.com/v1/messages",
        ("x-api-key", API_KEY),
        "anthropic_stream.txt",
        "text/event-stream",
        "claude-sonnet-4-6",
    ),
    Wire(
        "gemini",
        GeminiProvider,
        "https://generativelanguage.googleapis.com/v1beta/models/m-1:generateContent",
        "https://generativelanguage.googleapis.com/v1beta/models/m-1:streamGenerateContent?alt=sse",
        ("x-goog-api-key", API_KEY),
        "gemini_stream.txt",
        "text/event-stream",
        "gemini-2.5-flash",
    ),
    Wire(
        "ollama",
        OllamaProvider,
        "http://localhost:11434/api/chat",
        "http://localhost:11434/api/chat",
        None,
        "ollama_stream.ndjson",
        "application/x-ndjson",
        "llama3.2:1b",
    ),
]


def provider(wire: Wire, rec: Recorder) -> HTTPAdapter:
    return wire.cls(api_key=None if wire.auth is None else API_KEY, client=rec.client())


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_the_request_is_the_wire_format_byte_for_byte(wire: Wire) -> None:
    rec = Recorder(answer(200, fixture(f"{wire.name}_response.json")))
    await provider(wire, rec).complete(rich_request())
    sent = rec.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == wire.url
    assert sent.headers["content-type"] == "application/json"
    assert sent.content + b"\n" == fixture(f"{wire.name}_request.json")
    if wire.auth is not None:
        assert sent.headers[wire.auth[0]] == wire.auth[1]
    if wire.name == "anthropic":
        assert sent.headers["anthropic-version"] == "2023-06-01"
    # The key goes in a header only: never in the URL, where proxies and error texts show it.
    assert API_KEY not in str(sent.url)


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_the_answer_is_read_into_one_response_shape(wire: Wire) -> None:
    rec = Recorder(answer(200, fixture(f"{wire.name}_response.json"), **{"x-request-id": "rq-9"}))
    response = await provider(wire, rec).complete(rich_request())
    assert response.text == "The image shows a PNG header."
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("search_rbi", {"query": "KYC norms"})
    ]
    assert response.tool_calls[0].id
    cached = 0 if wire.name == "ollama" else 64
    assert response.usage == Usage(input_tokens=120, output_tokens=18, cached_tokens=cached)
    assert response.finish_reason == "tool_calls"
    assert response.provider == wire.name
    assert response.model == wire.model
    assert response.request_id == "rq-9"


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_a_stream_adds_up_to_the_answer(wire: Wire) -> None:
    rec = Recorder(answer(200, fixture(wire.stream_file), wire.stream_type))
    events = []
    async with provider(wire, rec).stream(rich_request()) as stream:
        events = [e async for e in stream]
    body = rec.body
    assert isinstance(body, dict)
    assert str(rec.requests[0].url) == wire.stream_url
    if wire.name == "openai":
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
    elif wire.name in ("anthropic", "ollama"):
        assert body["stream"] is True
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == ["Hello", " there"]
    assert events[-1].type == "finish"
    acc = Accumulator(wire.name)
    for event in events:
        acc.add(event)
    response = acc.response()
    assert response.text == "Hello there"
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("search_rbi", {"query": "KYC"})
    ]
    assert response.usage.input_tokens == 120
    assert response.usage.output_tokens == 18
    assert response.finish_reason == "tool_calls"
    assert response.model == wire.model


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_a_stream_that_stops_before_its_end_is_a_connection_error(wire: Wire) -> None:
    whole = fixture(wire.stream_file)
    cut = whole[: whole.index(b"there") + 10]
    rec = Recorder(answer(200, cut, wire.stream_type))
    seen: list[StreamEvent] = []
    with pytest.raises(ProviderConnectionError, match="stream ended before"):
        await read_into(provider(wire, rec).stream(simple_request()), seen)
    # The error came out of the iteration, after the deltas that did arrive.
    assert texts(seen)[:1] == ["Hello"]


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_what_follows_a_streams_last_event_does_not_lose_the_answer(wire: Wire) -> None:
    # A stray byte (a part-line) or a reset after the terminal event used to raise "the stream
    # ended before the end of a line" and lose the whole answer.
    whole = fixture(wire.stream_file)

    class Reset(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield whole
            raise httpx.ReadError("connection reset by peer")

    def reset(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Reset(), headers={"content-type": wire.stream_type})

    for rec in (Recorder(answer(200, whole + b"x", wire.stream_type)), Recorder(reset)):
        response = await complete_by_streaming(provider(wire, rec), rich_request())
        assert (response.text, response.finish_reason) == ("Hello there", "tool_calls")
        events = await read_into(provider(wire, rec).stream(simple_request()), [])
        assert events[-1].type == "finish"


@pytest.mark.parametrize("wire", WIRES, ids=str)
@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (404, BadRequestError, False),
        (408, ProviderUnavailableError, True),
        (409, ProviderUnavailableError, True),
        (429, RateLimitedError, True),
        (500, ProviderUnavailableError, True),
        (503, ProviderUnavailableError, True),
        (529, ProviderUnavailableError, True),
    ],
)
async def test_each_error_status_becomes_one_error_class(
    wire: Wire, status: int, error: type[LLMError], retryable: bool
) -> None:
    rec = Recorder(answer(status, b'{"error":{"message":"nope"}}', **{"request-id": "req_7"}))
    with pytest.raises(error, match=rf"{wire.name} answered HTTP {status} \(request id req_7\)"):
        await provider(wire, rec).complete(simple_request())
    with pytest.raises(error) as caught:
        async with provider(wire, rec).stream(simple_request()):
            pass
    assert isinstance(caught.value, GenieError)
    assert caught.value.retryable is retryable
    assert caught.value.status == status  # type: ignore[attr-defined]
    assert caught.value.provider == wire.name


async def test_retry_after_is_read_in_seconds_and_in_milliseconds() -> None:
    for headers, expected in (
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({}, None),
    ):
        rec = Recorder(answer(429, b"slow down", **headers))
        with pytest.raises(RateLimitedError) as caught:
            await OpenAIProvider(client=rec.client()).complete(simple_request())
        assert caught.value.retry_after == expected


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_the_key_is_in_no_error_no_log_line_and_no_repr(
    wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile or careless server echoes the key back, in a body 100 times the excerpt's size.
    echo = json.dumps({"error": f"bad key {API_KEY} " + "x" * 50_000}).encode()
    rec = Recorder(answer(401, echo))
    p = wire.cls(api_key=API_KEY, client=rec.client())
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as caught:
        await p.complete(simple_request())
    text = str(caught.value)
    assert "[redacted]" in text
    assert API_KEY not in text
    assert API_KEY not in caught.value.excerpt
    assert len(caught.value.excerpt) <= 512
    assert "llm call failed" in caplog.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(p)
    assert API_KEY not in repr(caught.value.__dict__)


def _key_shown(text: str) -> str | None:
    """The longest beginning of the key (6 characters or more) that ``text`` shows, if any."""
    return next((API_KEY[:n] for n in range(len(API_KEY), 5, -1) if API_KEY[:n] in text), None)


@HTTPX_HALF_READ
@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_the_key_is_blanked_before_the_excerpt_is_cut_and_in_the_request_id(
    wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    # Blanking after the cut missed a key that straddles it: its beginning stayed readable.
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    for pad in (500, 505, 510):
        straddling = ("x" * pad + API_KEY).encode()
        for status, body, content_type in (
            (400, straddling, "text/plain"),
            (200, straddling, "application/json"),  # not a JSON object
            (200, json.dumps({"unexpected": "y" * pad + API_KEY}).encode(), "application/json"),
        ):
            keyed = wire.cls(
                api_key=API_KEY, client=Recorder(answer(status, body, content_type)).client()
            )
            with pytest.raises(LLMError) as caught:
                await keyed.complete(simple_request())
            shown += [str(caught.value), repr(caught.value.__dict__)]
        line = b"data: " if wire.stream_type == "text/event-stream" else b""
        if wire.name == "anthropic":
            line = b"event: message_start\n" + line
        keyed = wire.cls(
            api_key=API_KEY,
            client=Recorder(answer(200, line + straddling + b"\n\n", wire.stream_type)).client(),
        )
        with pytest.raises(LLMError) as caught:
            await read_into(keyed.stream(simple_request()), [])
        shown += [str(caught.value), repr(caught.value.__dict__)]
    # A server that echoes the key in its request id header.
    echoing = answer(400, b'{"error": "bad"}', **{"x-request-id": f"req-{API_KEY}"})
    keyed = wire.cls(api_key=API_KEY, client=Recorder(echoing).client())
    with pytest.raises(BadRequestError) as rejected:
        await keyed.complete(simple_request())
    assert rejected.value.request_id == "req-[redacted]"
    shown += [str(rejected.value), repr(rejected.value.__dict__), caplog.text]
    assert [_key_shown(text) for text in shown] == [None] * len(shown)


@HTTPX_HALF_READ
@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_malformed_json_is_a_response_error_not_a_traceback(wire: Wire) -> None:
    rec = Recorder(answer(200, b'{"choices": [ truncated'))
    with pytest.raises(ProviderResponseError, match="not a JSON object"):
        await provider(wire, rec).complete(simple_request())
    rec = Recorder(answer(200, b'{"unexpected": "shape"}'))
    with pytest.raises(ProviderResponseError, match="malformed"):
        await provider(wire, rec).complete(simple_request())
    garbage = b"data: {not json\n\n" if wire.stream_type == "text/event-stream" else b"{not json\n"
    if wire.name == "anthropic":
        garbage = b"event: message_start\n" + garbage
    rec = Recorder(answer(200, garbage, wire.stream_type))
    with pytest.raises(ProviderResponseError, match="malformed"):
        async with provider(wire, rec).stream(simple_request()) as stream:
            _ = [e async for e in stream]


def _not_gzip(status: int, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
    """An answer whose ``Content-Encoding`` says gzip over a body that is not (a broken proxy)."""

    def reply(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": content_type, "content-encoding": "gzip"}
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b'{"not": 1}'))

    return reply


@HTTPX_HALF_READ
@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_a_body_that_does_not_decode_as_its_encoding_says_is_a_response_error(
    wire: Wire,
) -> None:
    with pytest.raises(ProviderResponseError, match="does not decode as its Content-Encoding"):
        await provider(wire, Recorder(_not_gzip(200))).complete(simple_request())
    with pytest.raises(ProviderResponseError, match="does not decode as its Content-Encoding"):
        await read_into(
            provider(wire, Recorder(_not_gzip(200, wire.stream_type))).stream(simple_request()),
            [],
        )
    # An error status keeps its class: only its excerpt, which did not decode, is lost.
    with pytest.raises(ProviderUnavailableError) as busy:
        await provider(wire, Recorder(_not_gzip(503))).complete(simple_request())
    assert busy.value.status == 503


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_a_request_holding_nan_or_infinity_is_refused_unsent_and_unbilled(wire: Wire) -> None:
    """A tool's schema (the server's words) with an infinite bound, or a tool call's arguments
    fed back with NaN (Python's JSON reader takes a model's ``NaN``): the encoder's ValueError
    came out of the adapter, and the kill switch charged the prompt of a call never sent."""
    rec = Recorder(answer(200, fixture(f"{wire.name}_response.json")))
    ledger = BudgetLedger(max_tokens=100_000)
    guarded = KillSwitch(provider(wire, rec), ledger)
    context = CallContext(correlation_id="c")
    schema = {"type": "object", "properties": {"a": {"type": "number", "maximum": math.inf}}}
    call = ToolCall(id="c1", name="add", arguments={"a": math.nan})
    fed_back = (
        ChatMessage.user("Add."),
        ChatMessage.assistant("", (call,)),
        ChatMessage.tool_result(call, "error: not a number"),
    )
    requests = [simple_request(tools=(Tool(name="add", parameters=schema),), context=context)]
    if wire.name != "openai":  # OpenAI takes a call's arguments as a string of JSON: NaN fits
        requests.append(simple_request(messages=fed_back, context=context))
    for request in requests:
        with pytest.raises(
            LLMError, match=r"holds a number JSON cannot carry \(NaN or infin"
        ) as no:
            await guarded.complete(request)
        assert not no.value.sent
    assert (rec.requests, ledger.statistics().tokens_used) == ([], 0)
    with pytest.raises(ValidationError, match="finite number"):
        Request.model_validate({"messages": [], "temperature": math.inf})


DEEP = "[" * 100_000 + "]" * 100_000  # nested past the JSON parser's recursion limit


@HTTPX_HALF_READ
@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_json_nested_too_deeply_is_a_response_error_not_a_recursion_error(
    wire: Wire,
) -> None:
    for body in (DEEP, '{"choices": ' + DEEP + "}"):
        rec = Recorder(answer(200, body.encode()))
        with pytest.raises(ProviderResponseError, match="not a JSON object"):
            await provider(wire, rec).complete(simple_request())
    prefix = "data: " if wire.stream_type == "text/event-stream" else ""
    if wire.name == "anthropic":
        prefix = "event: message_start\n" + prefix
    rec = Recorder(answer(200, (prefix + DEEP + "\n\n").encode(), wire.stream_type))
    with pytest.raises(ProviderResponseError, match="malformed"):
        await read_into(provider(wire, rec).stream(simple_request()), [])


async def test_streamed_tool_arguments_nested_too_deeply_are_a_response_error() -> None:
    arguments = json.dumps({"x": 1})[:-1] + ', "y": ' + DEEP + "}"
    chunks = [
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "function": {"name": "f", "arguments": arguments},
                            }
                        ]
                    }
                }
            ]
        },
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    rec = Recorder(answer(200, body.encode(), "text/event-stream"))
    with pytest.raises(ProviderResponseError, match="arguments are not a JSON object"):
        await complete_by_streaming(OpenAIProvider(client=rec.client()), simple_request())


async def test_malformed_tool_arguments_end_a_stream_alike_under_any_wrapper() -> None:
    """A stream whose tool-call arguments are not a JSON object reads the same whatever
    wrappers watch it: its events, then its end. The answer built from it is the malformed
    one, ``ProviderResponseError``, alike too. Before, the cache, the cost observer and the
    shadow each built the answer as the stream finished and raised inside the stream, so a
    watcher (the shadow's promise: it never changes the answer) turned it into an error."""
    whole = fixture("openai_stream.txt")
    body = whole.replace(b'"\\"KYC\\"}"', b'"\\"KYC\\""')  # the closing brace lost
    assert body != whole
    model = OpenAIProvider(client=Recorder(answer(200, body, "text/event-stream")).client())
    records: list[CallRecord] = []
    results: list[ShadowResult] = []
    prices = PriceTable.of({"*": {"input": 1.0, "output": 2.0}})
    bare = await read_into(model.stream(simple_request()), [])
    assert isinstance(bare[-1], Finish)
    async with anyio.create_task_group() as tg:
        cache = Cache(model)
        stacks: dict[str, Provider] = {
            "bare": model,
            "cost": CostObserver(model, prices, on_call=records.append),
            "cache": cache,
            "shadow": Shadow(model, Scripted(["other"]), tg, on_result=results.append),
            "all": Shadow(
                Cache(CostObserver(model, prices, on_call=records.append)),
                Scripted(["other"]),
                tg,
                on_result=results.append,
            ),
        }
        for name, stack in stacks.items():
            assert await read_into(stack.stream(simple_request()), []) == bare, name
            with pytest.raises(ProviderResponseError, match="arguments are not a JSON object"):
                await complete_by_streaming(stack, simple_request())
    assert results == []  # no answer to compare
    assert cache.statistics().entries == 0  # nor to keep
    assert [(r.error, r.usage.input_tokens) for r in records] == [(None, 120)] * 4


# Where each answer holds the counts the adapter reads (the path to them, then their keys).
COUNTS = {
    "openai": (("usage",), ("prompt_tokens", "completion_tokens")),
    "anthropic": (("usage",), ("input_tokens", "output_tokens", "cache_read_input_tokens")),
    "gemini": (
        ("usageMetadata",),
        ("promptTokenCount", "candidatesTokenCount", "cachedContentTokenCount"),
    ),
    "ollama": ((), ("prompt_eval_count", "eval_count")),
}


def _with_count(wire: Wire, key: str, value: object) -> Recorder:
    """The wire's canned answer with its count ``key`` set to ``value``."""
    path, _ = COUNTS[wire.name]
    data = json.loads(fixture(f"{wire.name}_response.json"))
    holder = data
    for step in path:
        holder = holder[step]
    holder[key] = value
    return Recorder(answer(200, json.dumps(data).encode()))


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_usage_counts_must_be_integers_not_text_or_booleans(wire: Wire) -> None:
    # pydantic's lax reading believed "10" and true (as 1), and a sum of counts turned true
    # into 1 before any check: such an answer is malformed, as a count of "lots" is.
    for key in COUNTS[wire.name][1]:
        for wrong in ("10", True, False, 10.5, ""):
            with pytest.raises(ProviderResponseError, match="malformed"):
                await provider(wire, _with_count(wire, key, wrong)).complete(simple_request())
        for absent in (None, 0):  # a count that is null reports none, as one left out
            await provider(wire, _with_count(wire, key, absent)).complete(simple_request())


async def test_a_refused_connection_is_a_connection_error_naming_the_provider() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    with pytest.raises(ProviderConnectionError, match="ollama: connection failed"):
        await OllamaProvider(client=client).complete(simple_request())


async def test_structured_output_is_asked_for_in_each_providers_own_way() -> None:
    asks = {}
    for wire in WIRES:
        rec = Recorder(answer(500, b"{}"))
        with pytest.raises(ProviderUnavailableError):
            await provider(wire, rec).complete(simple_request(output=Verdict))
        asks[wire.name] = rec.body
    schema = Verdict.model_json_schema()
    assert asks["openai"]["response_format"] == {  # type: ignore[index]
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": schema},
    }
    assert asks["anthropic"]["tool_choice"] == {"type": "tool", "name": "Verdict"}  # type: ignore[index]
    assert asks["gemini"]["generationConfig"]["responseJsonSchema"] == schema  # type: ignore[index]
    assert asks["ollama"]["format"] == schema  # type: ignore[index]


async def test_anthropic_structured_output_comes_back_as_text() -> None:
    body = {
        "id": "msg_1",
        "model": "claude-sonnet-4-6",
        "content": [
            {
                "type": "tool_use",
                "id": "t1",
                "name": "Verdict",
                "input": {"score": 9, "reasoning": "ok"},
            }
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    rec = Recorder(answer(200, json.dumps(body).encode()))
    response = await AnthropicProvider(client=rec.client()).complete(simple_request(output=Verdict))
    assert response.parse(Verdict) == Verdict(score=9, reasoning="ok")
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"


async def test_an_openai_compatible_server_needs_only_its_base_url_and_no_key() -> None:
    rec = Recorder(answer(200, fixture("openai_response.json")))
    local = OpenAIProvider(base_url="http://127.0.0.1:8080/", region="on-prem", client=rec.client())
    await local.complete(simple_request())
    assert str(rec.requests[0].url) == "http://127.0.0.1:8080/v1/chat/completions"
    assert "authorization" not in rec.requests[0].headers
    assert local.region == "on-prem"


def test_tool_calls_parse_into_their_model() -> None:
    from .helpers import SearchRbi

    call = ToolCall(id="1", name="search_rbi", arguments={"query": "KYC"})
    assert call.parse(SearchRbi) == SearchRbi(query="KYC", limit=3)


@HTTPX_HALF_READ
@pytest.mark.parametrize("wire", [w for w in WIRES if w.name != "anthropic"], ids=str)
async def test_an_error_inside_a_started_stream_is_raised_not_swallowed(wire: Wire) -> None:
    error = b'{"error": {"message": "model crashed", "key": "' + API_KEY.encode() + b'"}}'
    body = error + b"\n" if wire.name == "ollama" else b"data: " + error + b"\n\n"
    rec = Recorder(
        answer(
            200, body + (b"" if wire.name == "ollama" else b"data: [DONE]\n\n"), wire.stream_type
        )
    )
    keyed = wire.cls(api_key=API_KEY, client=rec.client())
    with pytest.raises(ProviderConnectionError, match=r"the stream failed: .*model crashed") as e:
        await read_into(keyed.stream(simple_request()), [])
    assert API_KEY not in str(e.value)


async def test_a_blocked_gemini_prompt_finishes_as_content_filter() -> None:
    blocked = (
        b'{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}'
    )
    rec = Recorder(answer(200, blocked))
    response = await GeminiProvider(client=rec.client()).complete(simple_request())
    assert (response.finish_reason, response.text, response.usage.input_tokens) == (
        "content_filter",
        "",
        4,
    )
    rec = Recorder(answer(200, b"data: " + blocked + b"\n\n", "text/event-stream"))
    events: list[StreamEvent] = []
    await read_into(GeminiProvider(client=rec.client()).stream(simple_request()), events)
    assert [e.type for e in events] == ["finish"]


# --- every value of the wire format of the wrong shape ------------------------------------------
# Each value of a provider's checked-in answer and stream, replaced by one of the wrong type: the
# adapter answers or raises an LLMError (ProviderResponseError for what it cannot read), never
# a bare AttributeError or pydantic ValidationError that retry, fallback and the kill switch
# cannot classify.

# One of each JSON type, so whatever a field should be, some replacement is wrong for it.
WRONG: tuple[object, ...] = ("x", 7, -1.5, [1], {"k": 1}, None, True)


def _mutations(value: Any) -> Iterator[Any]:
    """``value`` with one of its nodes (not the root) replaced by each wrong value in turn."""
    if isinstance(value, dict):
        for key, inner in value.items():
            for wrong in (*WRONG, *_mutations(inner)):
                yield {**value, key: wrong}
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            for wrong in (*WRONG, *_mutations(inner)):
                yield [*value[:i], wrong, *value[i + 1 :]]


def _answers(wire: Wire) -> list[bytes]:
    data = json.loads(fixture(f"{wire.name}_response.json"))
    return [json.dumps(m).encode() for m in _mutations(data)]


def _streams(wire: Wire) -> Iterator[bytes]:
    """The stream fixture with one event's JSON mutated, for each event and mutation."""
    raw = fixture(wire.stream_file).decode()
    lines = raw.split("\n")
    for i, line in enumerate(lines):
        prefix = "data: " if wire.stream_type == "text/event-stream" else ""
        text = line.removeprefix(prefix)
        if not line.startswith(prefix) or not text.startswith("{"):
            continue
        for mutated in _mutations(json.loads(text)):
            changed = [*lines[:i], prefix + json.dumps(mutated), *lines[i + 1 :]]
            yield "\n".join(changed).encode()


@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_an_answer_of_the_wrong_shape_is_an_llm_error(wire: Wire) -> None:
    for body in _answers(wire):
        try:
            await provider(wire, Recorder(answer(200, body))).complete(rich_request())
        except LLMError:
            pass
        except Exception as error:  # pragma: no cover - the failure being tested for
            pytest.fail(f"{type(error).__name__}: {error} for {body.decode()}")


@HTTPX_HALF_READ
@pytest.mark.parametrize("wire", WIRES, ids=str)
async def test_a_stream_of_the_wrong_shape_is_an_llm_error(wire: Wire) -> None:
    for body in _streams(wire):
        rec = Recorder(answer(200, body, wire.stream_type))
        events: list[StreamEvent] = []
        try:
            await read_into(provider(wire, rec).stream(rich_request()), events)
        except LLMError:
            pass
        except Exception as error:  # pragma: no cover - the failure being tested for
            pytest.fail(f"{type(error).__name__}: {error} for {body.decode()}")


async def test_a_long_stream_line_costs_its_length_not_its_square() -> None:
    """One 16 MB event (a whole answer, an inline image) arriving in 4 KB reads. Each read
    used to copy the part-line so far: 16 MB took about 25 s of CPU, against 0.2 s now."""
    text = "x" * (16 << 20)
    event = b"data: " + json.dumps({"choices": [{"delta": {"content": text}}]}).encode()

    class Body(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for i in range(0, len(event), 4096):
                yield event[i : i + 4096]
            yield b"\n\ndata: [DONE]\n\n"

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(), headers={"content-type": "text/event-stream"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    started = time.perf_counter()
    events = await read_into(OpenAIProvider(client=client).stream(simple_request()), [])
    assert time.perf_counter() - started < 5
    assert texts(events) == [text]
