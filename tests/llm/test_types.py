"""The request/response model: frozen, canonical, and the accumulator agrees with complete."""

from __future__ import annotations

from types import ModuleType

import pytest
from pydantic import ValidationError

import genie.llm
from genie.llm import (
    Accumulator,
    CallContext,
    ChatMessage,
    Finish,
    ProviderResponseError,
    Request,
    Response,
    ScriptedProvider,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
    complete_by_streaming,
)

from .helpers import SearchRbi, rich_request, simple_request


def test_all_is_exactly_what_is_exported() -> None:
    public = {
        name
        for name, value in vars(genie.llm).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert set(genie.llm.__all__) == public


def test_requests_are_frozen_and_refuse_unknown_fields() -> None:
    request = simple_request()
    with pytest.raises(ValidationError, match="frozen"):
        request.max_tokens = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="max_tokens"):
        Request(messages=(), max_tokens=0)
    with pytest.raises(ValidationError, match="extra"):
        Request(messages=(), maxtokens=5)  # type: ignore[call-arg]


def test_the_canonical_form_ignores_who_asks_but_not_what_is_asked() -> None:
    a = rich_request()
    b = rich_request(context=CallContext(principal="someone else", correlation_id="c9"))
    assert a.canonical() == b.canonical()
    assert a.canonical() != rich_request(temperature=0.5).canonical()
    assert a.canonical() != rich_request(model="m-2").canonical()
    from .helpers import Verdict

    assert a.canonical() != rich_request(output=Verdict).canonical()


def test_tools_come_from_pydantic_models() -> None:
    tool = Tool.from_model(SearchRbi)
    assert tool.name == "search_rbi"
    assert tool.description == "Search RBI circulars."
    assert tool.parameters["required"] == ["query"]


def test_the_prompt_estimate_is_cautious() -> None:
    text = "word " * 1000  # about 1000-1250 tokens in real tokenizers
    estimate = Request(messages=(ChatMessage.user(text),)).prompt_estimate()
    assert estimate >= 1250
    with_image = rich_request().prompt_estimate()
    assert with_image > 768


def test_the_accumulator_joins_deltas_and_tool_call_pieces() -> None:
    acc = Accumulator("p", "m")
    for event in (
        TextDelta(text="Hel"),
        ToolCallDelta(index=1, id="b", name="two", arguments='{"x":'),
        ToolCallDelta(index=0, id="a", name="one"),
        TextDelta(text="lo"),
        ToolCallDelta(index=1, arguments="2}"),
        UsageEvent(usage=Usage(input_tokens=5)),
        UsageEvent(usage=Usage(output_tokens=7)),
        Finish(reason="tool_calls", model="m-2", request_id="r"),
    ):
        acc.add(event)
    response = acc.response()
    assert response == Response(
        text="Hello",
        tool_calls=(ToolCall(id="a", name="one"), ToolCall(id="b", name="two", arguments={"x": 2})),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=5, output_tokens=7),
        provider="p",
        model="m-2",
        request_id="r",
    )


def test_tool_arguments_that_are_not_an_object_are_a_response_error() -> None:
    acc = Accumulator("p")
    acc.add(ToolCallDelta(index=0, id="a", name="one", arguments="[1, 2"))
    with pytest.raises(ProviderResponseError, match="tool call 'one'"):
        acc.response()


async def test_a_stream_adds_up_to_what_complete_returns() -> None:
    answer = Response(
        text="a longer answer in pieces",
        tool_calls=(ToolCall(id="1", name="t", arguments={"k": [1, 2]}),),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=3, output_tokens=4, cached_tokens=1),
    )
    scripted = ScriptedProvider([answer], chunk=3)
    whole = await scripted.complete(simple_request())
    streamed = await complete_by_streaming(scripted, simple_request())
    assert streamed == whole
    assert len(scripted.requests) == 2


async def test_the_scripted_provider_repeats_its_last_answer() -> None:
    scripted = ScriptedProvider(["one", "two"])
    got = [(await scripted.complete(simple_request())).text for _ in range(3)]
    assert got == ["one", "two", "two"]
    with pytest.raises(ValueError, match="at least one"):
        ScriptedProvider([])


def test_a_lone_surrogate_anywhere_in_a_request_is_estimated_and_keyed() -> None:
    # Text UTF-8 cannot carry, as a tool's or a model's JSON escape makes it: the estimate and
    # the cache key used to raise while writing it.
    def asked(odd: str) -> Request:
        call = ToolCall(id="c1", name="search_rbi", arguments={"query": f"a{odd}b"})
        return rich_request(
            system=f"x{odd}",
            messages=(ChatMessage.assistant("", (call,)), ChatMessage.tool_result(call, odd)),
        )

    lone, replaced = asked("\ud800"), asked("\ufffd")  # as the adapters send it
    assert lone.prompt_estimate() >= replaced.prompt_estimate()  # cautious, as ever
    assert lone.canonical() != replaced.canonical()
    assert lone.canonical().encode()  # a cache key's text is UTF-8


def test_a_usage_count_is_an_integer_not_text_or_a_boolean() -> None:
    for wrong in ("10", True, 1.0):
        with pytest.raises(ValidationError):
            Usage(input_tokens=wrong)
    assert Usage(input_tokens=10).input_tokens == 10
