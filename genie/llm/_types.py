"""What a model call says and answers: requests, responses, stream events, the call context."""

from __future__ import annotations

import base64
import json
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic_core import PydanticSerializationError

from .._base.nesting import loads_bounded
from .._message.envelope import Message
from .._message.payload import Classification
from ._errors import EXCERPT_LIMIT, ProviderResponseError

__all__ = [
    "Accumulator",
    "CallContext",
    "ChatMessage",
    "Finish",
    "FinishReason",
    "ImagePart",
    "Part",
    "Request",
    "Response",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "UsageEvent",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
M = TypeVar("M", bound=BaseModel)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "other"]
"""Why the model stopped, the same words whatever the provider says."""


class CallContext(BaseModel):
    """Who a call is for, filled from the message that caused it, so wrappers can govern it.

    ``deadline`` is absolute, on the event loop's clock (``anyio.current_time()``), like a
    cancel scope's. None of this goes on the wire, and none of it is part of a cache key.
    """

    model_config = _FROZEN

    principal: str = "anonymous"
    classification: Classification = Classification.INTERNAL
    correlation_id: str | None = None
    deadline: float | None = None
    # The delivery that made the call (the message's id, the agent handling it): a tracer
    # hangs the call's span under that delivery's span.
    message_id: str | None = None
    agent_id: str | None = None

    @classmethod
    def of(
        cls, message: Message, *, deadline: float | None = None, agent_id: str | None = None
    ) -> CallContext:
        """The context of a call caused by ``message`` (delivered to ``agent_id``): its
        correlation, classification and id, and as principal its ``user_id`` metadata (on
        whose behalf) or else its sender."""
        user = message.metadata.get("user_id")
        return cls(
            principal=user if isinstance(user, str) and user else message.sender,
            classification=message.classification,
            correlation_id=message.correlation_id,
            deadline=deadline,
            message_id=message.id,
            agent_id=agent_id,
        )


class TextPart(BaseModel):
    model_config = _FROZEN
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image sent inline, base64-encoded (every provider here takes that form)."""

    model_config = _FROZEN
    type: Literal["image"] = "image"
    data: str = Field(description="base64 of the image bytes")
    mime_type: str = "image/png"

    @classmethod
    def from_bytes(cls, raw: bytes, mime_type: str = "image/png") -> ImagePart:
        return cls(data=base64.b64encode(raw).decode("ascii"), mime_type=mime_type)


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ToolCall(BaseModel):
    """The model asks for ``name`` to be called with ``arguments`` (a JSON object)."""

    model_config = _FROZEN
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def parse(self, model: type[M]) -> M:
        """The arguments validated by the tool's model (pydantic's ``ValidationError`` if not)."""
        return model.model_validate(self.arguments)


class ChatMessage(BaseModel):
    """One turn. ``tool`` turns answer the call ``tool_call_id`` (Gemini also needs its name)."""

    model_config = _FROZEN
    role: Literal["user", "assistant", "tool"]
    parts: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None

    @classmethod
    def user(cls, text: str, *images: ImagePart) -> ChatMessage:
        return cls(role="user", parts=(TextPart(text=text), *images))

    @classmethod
    def assistant(cls, text: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> ChatMessage:
        parts = (TextPart(text=text),) if text else ()
        return cls(role="assistant", parts=parts, tool_calls=tool_calls)

    @classmethod
    def tool_result(cls, call: ToolCall, content: str) -> ChatMessage:
        return cls(
            role="tool", parts=(TextPart(text=content),), tool_call_id=call.id, tool_name=call.name
        )

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Tool(BaseModel):
    """A function the model may call; ``parameters`` is a JSON schema."""

    model_config = _FROZEN
    name: str
    description: str = ""
    parameters: dict[str, Any]

    @classmethod
    def from_model(
        cls, model: type[BaseModel], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """The tool whose arguments are ``model`` (name: the class name in snake case,
        description: its docstring)."""
        return cls(
            name=name or _snake(model.__name__),
            description=description if description is not None else (model.__doc__ or "").strip(),
            parameters=model.model_json_schema(),
        )


def estimated_tokens(text: str) -> int:
    """Tokens of ``text`` at one per 3 UTF-8 bytes, the budgets' cautious rate. A lone
    surrogate (text a tool's or a model's JSON escape can make, which UTF-8 cannot carry)
    counts as the 3 bytes of the replacement character it is sent as."""
    return -(-len(text.encode("utf-8", "surrogatepass")) // 3)


def _json_of(model: BaseModel, exclude: set[str] | None = None) -> str:
    """``model`` as compact JSON. pydantic's writer refuses a string holding a lone surrogate;
    Python's writes it as an escape, so such a request is still estimated and keyed."""
    try:
        return model.model_dump_json(exclude=exclude)
    except PydanticSerializationError:
        return json.dumps(model.model_dump(mode="json", exclude=exclude), separators=(",", ":"))


class Request(BaseModel):
    """One model call. ``model`` None means the provider's default; ``output`` asks for a JSON
    answer matching that pydantic model (structured output, where the provider supports it)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    messages: tuple[ChatMessage, ...]
    system: str = ""
    model: str | None = None
    tools: tuple[Tool, ...] = ()
    output: type[BaseModel] | None = None
    max_tokens: int = Field(default=1024, gt=0)
    temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    context: CallContext = CallContext()

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return None if self.output is None else self.output.model_json_schema()

    def canonical(self) -> str:
        """What the call asks, as stable JSON: equal for equal questions, whoever asks (the
        context is left out), so it can key a cache."""
        # pydantic's serialiser keeps field order, so equal requests give equal text (a dict
        # argument written in another key order only costs a cache miss).
        text = _json_of(self, exclude={"context", "output"})
        if self.output is not None:
            text += json.dumps(self.output_schema, sort_keys=True)
        return text

    def prompt_estimate(self) -> int:
        """A cautious token count for the prompt without a tokenizer: one token per 3 UTF-8
        bytes of text (real tokenizers average about 4), plus 8 per message and 768 per image
        (above what the providers here charge for a typical image). The text is all that is
        sent: the system prompt, the turns, the tools and the answer's schema."""
        # Runs for every call under every budget: the common case (no tools, no tool calls,
        # text parts only) takes no generator and no JSON.
        parts = [self.system]
        if self.tools:
            parts += [_json_of(t) for t in self.tools]
        if self.output is not None:  # sent with the prompt, and billed as part of it
            parts.append(json.dumps(self.output_schema))
        tokens = 8 + 8 * len(self.messages)
        for m in self.messages:
            for part in m.parts:
                if isinstance(part, TextPart):
                    parts.append(part.text)
                else:
                    tokens += 768
            if m.tool_calls:
                parts += [_json_of(c) for c in m.tool_calls]
        return tokens + estimated_tokens("".join(parts))


class Usage(BaseModel):
    """Tokens a call used; ``cached_tokens`` are the part of ``input_tokens`` served from the
    provider's prompt cache."""

    model_config = _FROZEN
    # Strict: a count is an integer, never text ("10") or a boolean (true), which a lax
    # reading would believe as a count of 10 or 1.
    input_tokens: StrictInt = 0
    output_tokens: StrictInt = 0
    cached_tokens: StrictInt = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def plausible(self) -> bool:
        """Whether a tokenizer could have counted this: no count below 0, and no more
        cached tokens than input ones. A provider's report that is not is not believed (the
        kill switch charges the reservation, the cost observer records no usage)."""
        return (
            min(self.input_tokens, self.output_tokens, self.cached_tokens) >= 0
            and self.cached_tokens <= self.input_tokens
        )


class Response(BaseModel):
    """A model's answer. ``cost`` is filled by the cost observer, in the price table's unit."""

    model_config = _FROZEN
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage = Usage()
    cost: float | None = None
    provider: str = ""
    model: str = ""
    request_id: str | None = None

    def parse(self, model: type[M]) -> M:
        """The text validated as ``model`` (for a request with ``output=model``)."""
        return model.model_validate_json(self.text)


class TextDelta(BaseModel):
    model_config = _FROZEN
    type: Literal["text"] = "text"
    text: str


class ToolCallDelta(BaseModel):
    """A piece of tool call ``index``: its id and name come first, its arguments (JSON text)
    arrive in pieces."""

    model_config = _FROZEN
    type: Literal["tool_call"] = "tool_call"
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class UsageEvent(BaseModel):
    """Usage so far; a later one replaces an earlier one field by field where it is not 0."""

    model_config = _FROZEN
    type: Literal["usage"] = "usage"
    usage: Usage


class Finish(BaseModel):
    model_config = _FROZEN
    type: Literal["finish"] = "finish"
    reason: FinishReason
    model: str = ""
    request_id: str | None = None


StreamEvent = TextDelta | ToolCallDelta | UsageEvent | Finish


class Accumulator:
    """Folds stream events into the :class:`Response` the same call would have returned."""

    def __init__(self, provider: str = "", model: str = "") -> None:
        self._provider = provider
        self._model = model
        self._request_id: str | None = None
        self._text: list[str] = []
        self._calls: dict[int, list[str]] = {}
        self._call_ids: dict[int, str] = {}
        self._call_names: dict[int, str] = {}
        self._usage = Usage()
        self._reason: FinishReason | None = None

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self._calls.setdefault(event.index, []).append(event.arguments)
            if event.id:
                self._call_ids[event.index] = event.id
            if event.name:
                self._call_names[event.index] = event.name
        elif isinstance(event, UsageEvent):
            new, old = event.usage, self._usage
            self._usage = Usage(
                input_tokens=new.input_tokens or old.input_tokens,
                output_tokens=new.output_tokens or old.output_tokens,
                cached_tokens=new.cached_tokens or old.cached_tokens,
            )
        else:
            self._reason = event.reason
            self._model = event.model or self._model
            self._request_id = event.request_id or self._request_id

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def model(self) -> str:
        return self._model

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def finished(self) -> bool:
        return self._reason is not None

    def watched(self) -> Response | None:
        """The response so far, or None when there is none to give (tool-call arguments that
        are not a JSON object). For a wrapper that only watches a stream: the stream reads
        the same with it or without, and the malformed answer is an error for whoever builds
        the response (:meth:`response`), not inside the stream."""
        try:
            return self.response()
        except ProviderResponseError:
            return None

    def response(self) -> Response:
        """The response so far. Tool-call arguments that are not a JSON object raise
        :class:`ProviderResponseError` naming the call."""
        calls = []
        for index in sorted(self._calls):
            raw = "".join(self._calls[index]) or "{}"
            name = self._call_names.get(index, "")
            try:
                arguments = loads_bounded(raw)
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                raise ProviderResponseError(
                    f"{self._provider}: tool call {name!r}: the arguments are not a JSON object: "
                    f"{raw[:EXCERPT_LIMIT]!r}",
                    provider=self._provider,
                )
            calls.append(
                ToolCall(id=self._call_ids.get(index, name), name=name, arguments=arguments)
            )
        return Response(
            text=self.text,
            tool_calls=tuple(calls),
            finish_reason=self._reason or "other",
            usage=self._usage,
            provider=self._provider,
            model=self._model,
            request_id=self._request_id,
        )
