"""Anthropic messages API, streamed as named server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

from .._errors import ProviderConnectionError, ProviderUnavailableError
from .._types import (
    ChatMessage,
    Finish,
    FinishReason,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from .http import HTTPAdapter, count, drain, iter_sse

__all__ = ["AnthropicProvider"]

VERSION = "2023-06-01"

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _content(m: ChatMessage) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text}]
    out: list[dict[str, Any]] = [
        {"type": "text", "text": p.text}
        if p.type == "text"
        else {
            "type": "image",
            "source": {"type": "base64", "media_type": p.mime_type, "data": p.data},
        }
        for p in m.parts
    ]
    out += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls
    ]
    return out


def _usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    cached = count(raw, "cache_read_input_tokens")
    # Anthropic counts cache reads and writes apart from input_tokens; ours includes them.
    prompt = count(raw, "input_tokens") + cached + count(raw, "cache_creation_input_tokens")
    return Usage(
        input_tokens=prompt, output_tokens=count(raw, "output_tokens"), cached_tokens=cached
    )


class AnthropicProvider(HTTPAdapter):
    """``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``.

    Structured output is asked for as one forced tool whose input is the output model; the
    answer's text is that input as JSON.
    """

    default_base_url = "https://api.anthropic.com"
    default_model = "claude-sonnet-4-6"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def body(self, request: Request, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": "user" if m.role == "tool" else m.role, "content": _content(m)}
                for m in request.messages
            ],
        }
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        tools: list[dict[str, Any]] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        if request.output is not None:
            tools.append({"name": request.output.__name__, "input_schema": request.output_schema})
            body["tool_choice"] = {"type": "tool", "name": request.output.__name__}
        if tools:
            body["tools"] = tools
        if stream:
            body["stream"] = True
        return body

    async def complete(self, request: Request) -> Response:
        data, rid = await self._post("/v1/messages", self.body(request, stream=False))
        with self._reading("message", data):
            text = "".join(b["text"] for b in data["content"] if b["type"] == "text")
            calls = [
                ToolCall(id=b["id"], name=b["name"], arguments=b["input"])
                for b in data["content"]
                if b["type"] == "tool_use"
            ]
            reason = _FINISH.get(data.get("stop_reason") or "", "other")
            if request.output is not None:
                text, calls, reason = _unwrap_output(request.output.__name__, text, calls, reason)
            return Response(
                text=text,
                tool_calls=tuple(calls),
                finish_reason=reason,
                usage=_usage(data.get("usage")),
                provider=self.name,
                model=data.get("model") or request.model or self.model,
                request_id=rid or data.get("id"),
            )

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        body = self.body(request, stream=True)
        async with (
            self._stream_lines("/v1/messages", body) as (lines, rid),
            aclosing(self._events(lines, rid, body["model"], request)) as reader,
        ):
            yield reader

    async def _events(
        self, lines: AsyncIterator[str], rid: str | None, model: str, request: Request
    ) -> AsyncGenerator[StreamEvent, None]:
        output = request.output.__name__ if request.output is not None else None
        reason: FinishReason = "other"
        usage: dict[str, Any] = {}
        blocks: dict[int, str] = {}  # index -> "text" | "tool_use" | "output"
        async with aclosing(iter_sse(lines)) as parsed:
            async for event, data in parsed:
                with self._reading(f"{event} event", data):
                    if event == "ping":
                        continue
                    payload = self._json(f"{event} event", data)
                    if event == "message_start":
                        message = payload.get("message") or {}
                        model = message.get("model") or model
                        rid = rid or message.get("id")
                        usage.update(message.get("usage") or {})
                        yield UsageEvent(usage=_usage(usage))
                    elif event == "content_block_start":
                        block = payload.get("content_block") or {}
                        index = payload.get("index", 0)
                        kind = block.get("type", "text")
                        if kind == "tool_use" and block.get("name") == output:
                            kind = "output"
                        blocks[index] = kind
                        if kind == "tool_use":
                            yield ToolCallDelta(
                                index=index, id=block.get("id"), name=block.get("name")
                            )
                    elif event == "content_block_delta":
                        delta = payload.get("delta") or {}
                        index = payload.get("index", 0)
                        if delta.get("type") == "text_delta":
                            yield TextDelta(text=delta.get("text", ""))
                        elif delta.get("type") == "input_json_delta":
                            piece = delta.get("partial_json", "")
                            if blocks.get(index) == "output":
                                yield TextDelta(text=piece)
                            else:
                                yield ToolCallDelta(index=index, arguments=piece)
                    elif event == "message_delta":
                        stop = (payload.get("delta") or {}).get("stop_reason")
                        reason = _FINISH.get(stop or "", "other")
                        if output is not None and reason == "tool_calls":
                            reason = "stop"
                        usage.update(payload.get("usage") or {})
                        yield UsageEvent(usage=_usage(usage))
                    elif event == "message_stop":
                        yield Finish(reason=reason, model=model, request_id=rid)
                        await drain(lines)
                        return
                    elif event == "error":
                        error = payload.get("error") or {}
                        raise ProviderUnavailableError(
                            provider=self.name,
                            status=529 if error.get("type") == "overloaded_error" else 500,
                            request_id=rid,
                            excerpt=self._redact.shown(str(error.get("message", data))),
                        )
        raise ProviderConnectionError(
            f"{self.name}: the stream ended before message_stop", provider=self.name
        )


def _unwrap_output(
    name: str, text: str, calls: list[ToolCall], reason: FinishReason
) -> tuple[str, list[ToolCall], FinishReason]:
    """The forced output tool's input becomes the text, as the other providers answer."""
    for call in calls:
        if call.name == name:
            rest = [c for c in calls if c is not call]
            return json.dumps(call.arguments), rest, "stop" if reason == "tool_calls" else reason
    return text, calls, reason
