"""OpenAI chat completions, and any server that speaks it (vLLM, llama.cpp, Azure's v1 API)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

from ..._base.nesting import loads_bounded
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
from .http import HTTPAdapter, count, drain, iter_sse

__all__ = ["OpenAIProvider"]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text}
    content: str | list[dict[str, Any]]
    if m.images:
        content = [
            {"type": "text", "text": p.text}
            if p.type == "text"
            else {"type": "image_url", "image_url": {"url": f"data:{p.mime_type};base64,{p.data}"}}
            for p in m.parts
        ]
    else:
        content = m.text
    out: dict[str, Any] = {"role": m.role, "content": content}
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in m.tool_calls
        ]
    return out


def _usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=count(raw, "prompt_tokens"),
        output_tokens=count(raw, "completion_tokens"),
        cached_tokens=count(details, "cached_tokens"),
    )


class OpenAIProvider(HTTPAdapter):
    """``POST {base_url}/v1/chat/completions`` with ``Authorization: Bearer``.

    For an OpenAI-compatible server give its ``base_url`` (without ``/v1``) and, if it needs
    none, no key; ``region="on-prem"`` for a server of your own.
    """

    default_base_url = "https://api.openai.com"
    default_model = "gpt-4.1-mini"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def body(self, request: Request, *, stream: bool) -> dict[str, Any]:
        """The JSON body for ``request`` (public so the wire format can be checked)."""
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [_message(m) for m in request.messages]
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
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
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.output.__name__, "schema": request.output_schema},
            }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, request: Request) -> Response:
        data, rid = await self._post("/v1/chat/completions", self.body(request, stream=False))
        with self._reading("chat completion", data):
            choice = data["choices"][0]
            message = choice["message"]
            calls = tuple(
                ToolCall(
                    id=c["id"],
                    name=c["function"]["name"],
                    arguments=loads_bounded(c["function"]["arguments"] or "{}"),
                )
                for c in message.get("tool_calls") or ()
            )
            return Response(
                text=message.get("content") or "",
                tool_calls=calls,
                finish_reason=_FINISH.get(choice.get("finish_reason") or "", "other"),
                usage=_usage(data.get("usage")),
                provider=self.name,
                model=data.get("model") or request.model or self.model,
                request_id=rid or data.get("id"),
            )

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        body = self.body(request, stream=True)
        async with (
            self._stream_lines("/v1/chat/completions", body) as (lines, rid),
            aclosing(self._events(lines, rid, body["model"])) as reader,
        ):
            yield reader

    async def _events(
        self, lines: AsyncIterator[str], rid: str | None, model: str
    ) -> AsyncGenerator[StreamEvent, None]:
        reason: FinishReason | None = None
        async with aclosing(iter_sse(lines)) as parsed:
            async for _, data in parsed:
                with self._reading("stream chunk", data):
                    if data == "[DONE]":
                        yield Finish(reason=reason or "other", model=model, request_id=rid)
                        await drain(lines)
                        return
                    chunk = self._json("stream chunk", data)
                    if "error" in chunk:  # vLLM and others report a failure mid-stream this way
                        raise self._failed_in_stream(chunk["error"])
                    model = chunk.get("model") or model
                    rid = rid or chunk.get("id")
                    if chunk.get("usage"):
                        yield UsageEvent(usage=_usage(chunk["usage"]))
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            yield TextDelta(text=delta["content"])
                        for call in delta.get("tool_calls") or ():
                            function = call.get("function") or {}
                            yield ToolCallDelta(
                                index=call.get("index", 0),
                                id=call.get("id"),
                                name=function.get("name"),
                                arguments=function.get("arguments") or "",
                            )
                        if choice.get("finish_reason"):
                            reason = _FINISH.get(choice["finish_reason"], "other")
        raise ProviderConnectionError(
            f"{self.name}: the stream ended before [DONE]", provider=self.name
        )
