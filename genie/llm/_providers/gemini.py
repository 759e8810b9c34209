"""Google Gemini ``generateContent`` and ``streamGenerateContent?alt=sse``."""

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
from .http import HTTPAdapter, count, drain, iter_sse

__all__ = ["GeminiProvider"]

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}


def _parts(m: ChatMessage) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"functionResponse": {"name": m.tool_name or "", "response": {"content": m.text}}}]
    out: list[dict[str, Any]] = [
        {"text": p.text}
        if p.type == "text"
        else {"inlineData": {"mimeType": p.mime_type, "data": p.data}}
        for p in m.parts
    ]
    out += [{"functionCall": {"name": c.name, "args": c.arguments}} for c in m.tool_calls]
    return out


def _usage(raw: dict[str, Any] | None) -> Usage:
    raw = raw or {}
    return Usage(
        input_tokens=count(raw, "promptTokenCount"),
        output_tokens=count(raw, "candidatesTokenCount") + count(raw, "thoughtsTokenCount"),
        cached_tokens=count(raw, "cachedContentTokenCount"),
    )


class GeminiProvider(HTTPAdapter):
    """``POST {base_url}/v1beta/models/{model}:generateContent`` with ``x-goog-api-key``
    (in a header, never in the URL, where it would reach logs and error text)."""

    default_base_url = "https://generativelanguage.googleapis.com"
    default_model = "gemini-2.5-flash"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"x-goog-api-key": api_key} if api_key else {}

    def body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "contents": [
                {"role": "model" if m.role == "assistant" else "user", "parts": _parts(m)}
                for m in request.messages
            ]
        }
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        if request.tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {"name": t.name, "description": t.description, "parameters": t.parameters}
                        for t in request.tools
                    ]
                }
            ]
        config: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.output is not None:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = request.output_schema
        body["generationConfig"] = config
        return body

    def _decode(
        self, data: dict[str, Any], index_base: int
    ) -> tuple[str, list[ToolCall], FinishReason | None]:
        candidates = data.get("candidates") or []
        if not candidates:
            return "", [], None
        candidate = candidates[0]
        text: list[str] = []
        calls: list[ToolCall] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "text" in part and not part.get("thought"):
                text.append(part["text"])
            elif "functionCall" in part:
                call = part["functionCall"]
                calls.append(
                    ToolCall(
                        id=call.get("id") or f"{call['name']}-{index_base + len(calls)}",
                        name=call["name"],
                        arguments=call.get("args") or {},
                    )
                )
        raw = candidate.get("finishReason")
        reason = None if raw is None else _FINISH.get(raw, "other")
        if calls and reason == "stop":
            reason = "tool_calls"
        return "".join(text), calls, reason

    async def complete(self, request: Request) -> Response:
        model = request.model or self.model
        data, rid = await self._post(f"/v1beta/models/{model}:generateContent", self.body(request))
        with self._reading("generateContent answer", data):
            if not data.get("candidates"):
                if "promptFeedback" not in data:
                    raise self._malformed("generateContent answer", json.dumps(data))
                # The prompt itself was blocked: no candidates, and the reason in promptFeedback.
                return Response(
                    finish_reason="content_filter",
                    usage=_usage(data.get("usageMetadata")),
                    provider=self.name,
                    model=data.get("modelVersion") or model,
                    request_id=rid or data.get("responseId"),
                )
            text, calls, reason = self._decode(data, 0)
            return Response(
                text=text,
                tool_calls=tuple(calls),
                finish_reason=reason or "other",
                usage=_usage(data.get("usageMetadata")),
                provider=self.name,
                model=data.get("modelVersion") or model,
                request_id=rid or data.get("responseId"),
            )

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        model = request.model or self.model
        path = f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
        async with (
            self._stream_lines(path, self.body(request)) as (lines, rid),
            aclosing(self._events(lines, rid, model)) as reader,
        ):
            yield reader

    async def _events(
        self, lines: AsyncIterator[str], rid: str | None, model: str
    ) -> AsyncGenerator[StreamEvent, None]:
        calls_seen = 0
        async with aclosing(iter_sse(lines)) as parsed:
            async for _, data in parsed:
                with self._reading("stream chunk", data):
                    chunk = self._json("stream chunk", data)
                    if "error" in chunk:
                        raise self._failed_in_stream(chunk["error"])
                    if not chunk.get("candidates") and "promptFeedback" in chunk:
                        # The prompt itself was blocked: no candidates, the reason in
                        # promptFeedback.
                        yield Finish(reason="content_filter", model=model, request_id=rid)
                        await drain(lines)
                        return
                    text, calls, reason = self._decode(chunk, calls_seen)
                    model = chunk.get("modelVersion") or model
                    rid = rid or chunk.get("responseId")
                    if text:
                        yield TextDelta(text=text)
                    for call in calls:
                        # Gemini sends each call whole, so one delta carries it all.
                        arguments = json.dumps(call.arguments)
                        yield ToolCallDelta(
                            index=calls_seen, id=call.id, name=call.name, arguments=arguments
                        )
                        calls_seen += 1
                    if chunk.get("usageMetadata"):
                        yield UsageEvent(usage=_usage(chunk["usageMetadata"]))
                    if reason is not None:
                        yield Finish(reason=reason, model=model, request_id=rid)
                        await drain(lines)
                        return
        raise ProviderConnectionError(
            f"{self.name}: the stream ended before a finishReason", provider=self.name
        )
