"""Ollama ``/api/chat``: newline-delimited JSON when streamed, images as base64."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

from .._errors import ProviderConnectionError
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
from .http import HTTPAdapter, count, drain, iter_ndjson

__all__ = ["OllamaProvider"]

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


def _message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.text}
    if m.images:
        out["images"] = [i.data for i in m.images]
    if m.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls
        ]
    if m.role == "tool" and m.tool_name:
        out["tool_name"] = m.tool_name
    return out


def _calls(message: dict[str, Any], start: int) -> list[ToolCall]:
    return [
        ToolCall(
            id=c.get("id") or f"{c['function']['name']}-{start + i}",
            name=c["function"]["name"],
            arguments=c["function"].get("arguments") or {},
        )
        for i, c in enumerate(message.get("tool_calls") or ())
    ]


def _reason(data: dict[str, Any], calls: bool) -> FinishReason:
    return "tool_calls" if calls else _FINISH.get(data.get("done_reason") or "stop", "other")


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=count(data, "prompt_eval_count"), output_tokens=count(data, "eval_count")
    )


class OllamaProvider(HTTPAdapter):
    """``POST {base_url}/api/chat``; no key; ``on-prem`` unless told otherwise."""

    default_base_url = "http://localhost:11434"
    default_model = "llama3.2:1b"
    default_region = "on-prem"

    def body(self, request: Request, *, stream: bool) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [_message(m) for m in request.messages]
        options: dict[str, Any] = {"num_predict": request.max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": messages,
            "stream": stream,
            "options": options,
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        if request.output is not None:
            body["format"] = request.output_schema
        return body

    async def complete(self, request: Request) -> Response:
        data, rid = await self._post("/api/chat", self.body(request, stream=False))
        with self._reading("chat answer", data):
            message = data["message"]
            calls = _calls(message, 0)
            return Response(
                text=message.get("content") or "",
                tool_calls=tuple(calls),
                finish_reason=_reason(data, bool(calls)),
                usage=_usage(data),
                provider=self.name,
                model=data.get("model") or request.model or self.model,
                request_id=rid,
            )

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        body = self.body(request, stream=True)
        async with (
            self._stream_lines("/api/chat", body) as (lines, rid),
            aclosing(self._events(lines, rid, body["model"])) as reader,
        ):
            yield reader

    async def _events(
        self, lines: AsyncIterator[str], rid: str | None, model: str
    ) -> AsyncGenerator[StreamEvent, None]:
        calls_seen = 0
        async with aclosing(iter_ndjson(lines)) as parsed:
            async for line in parsed:
                with self._reading("stream line", line):
                    chunk = self._json("stream line", line)
                    if "error" in chunk:
                        raise self._failed_in_stream(chunk["error"])
                    message = chunk.get("message") or {}
                    calls = _calls(message, calls_seen)
                    if message.get("content"):
                        yield TextDelta(text=message["content"])
                    for call in calls:
                        arguments = json.dumps(call.arguments)
                        yield ToolCallDelta(
                            index=calls_seen, id=call.id, name=call.name, arguments=arguments
                        )
                        calls_seen += 1
                    if chunk.get("done"):
                        yield UsageEvent(usage=_usage(chunk))
                        reason = _reason(chunk, calls_seen > 0)
                        model = chunk.get("model") or model
                        yield Finish(reason=reason, model=model, request_id=rid)
                        await drain(lines)
                        return
        raise ProviderConnectionError(
            f"{self.name}: the stream ended before done", provider=self.name
        )
