"""The one interface every adapter and every wrapper implements."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Protocol, runtime_checkable

from .._base.clock import spelt
from .._errors import InvalidArgumentError
from ._types import (
    Accumulator,
    Finish,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
)

__all__ = [
    "EventStream",
    "Provider",
    "a_provider",
    "complete_by_streaming",
    "events_of",
    "models_of",
    "open_attempt",
]

EventStream = AbstractAsyncContextManager[AsyncIterator[StreamEvent]]


@runtime_checkable
class Provider(Protocol):
    """A model behind a name, in a region.

    ``name`` identifies it in errors, metrics and records; ``region`` is where the data goes
    (``on-prem`` for a server of ours), which residency decides on.
    """

    @property
    def name(self) -> str: ...

    @property
    def region(self) -> str: ...

    async def complete(self, request: Request) -> Response:
        """Send ``request`` and return the whole answer.

        Raises an :class:`~genie.llm.LLMError`: a ``ProviderError`` subclass for an error
        status, ``ProviderConnectionError`` when no answer came, ``ProviderResponseError`` for
        an answer that is not the provider's format; wrappers add their refusals.
        """
        ...

    def stream(self, request: Request) -> EventStream:
        """``async with provider.stream(request) as events: async for event in events: ...``

        Entering sends the request and waits for the answer's status, so the errors of
        ``complete`` before any token are raised there; an error after the first event is
        raised from the iteration, and nothing retries or falls back past that point.
        """
        ...


def a_provider(given: object, where: str) -> Provider:
    """``given``, if it is a provider: a str ``name`` and ``region``, ``complete`` and
    ``stream`` to call. Otherwise an ``InvalidArgumentError`` saying so where it was given, not
    an ``AttributeError`` at its first call (the protocol's check sees only that the four
    names are there)."""
    if (
        isinstance(given, Provider)
        and isinstance(given.name, str)
        and isinstance(given.region, str)
        and callable(given.complete)
        and callable(given.stream)
    ):
        return given
    raise InvalidArgumentError(
        f"{where}: {type(given).__name__} ({spelt(given)}) is no genie.llm Provider (a str "
        "name, a str region, complete and stream): give it a provider or a stack, such as "
        "OpenAIProvider(...)"
    )


def models_of(provider: object) -> tuple[str, ...]:
    """The models a call that names none may reach through ``provider``: the default model of
    each adapter under its wrappers (every member of a fallback chain, a shadow's primary),
    in order. A wrapper that names the model itself (a kill switch's ``model``) stops there."""
    found: list[str] = []
    todo = [provider]
    while todo:
        current = todo.pop(0)
        model = getattr(current, "model", None)
        if isinstance(model, str) and model:
            if model not in found:
                found.append(model)
            continue
        for attribute in ("inner", "primary"):
            inner = getattr(current, attribute, None)
            if inner is not None:
                todo.append(inner)
        todo.extend(getattr(current, "providers", ()))
    return tuple(found)


async def open_attempt(
    provider: Provider, request: Request
) -> tuple[AsyncExitStack, AsyncGenerator[StreamEvent, None]]:
    """One attempt of a stream that a layer trying again (``Retry``, ``Fallback``) commits to
    only once its first event came: ``provider.stream(request)`` opened and its first event
    read. Returns the attempt's exit stack, for the caller to close when done, and the events,
    the first put back. Whatever ends the attempt before then, an error or a cancellation (the
    caller's deadline), closes it at once with that exception, so the layers under it (a budget,
    the cost observer) settle and record the call as it ended, not when the garbage collector
    reaches the stream."""
    attempt = AsyncExitStack()
    try:
        events = await attempt.enter_async_context(provider.stream(request))
        first = await anext(events, None)
    except BaseException as exc:
        await attempt.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    return attempt, _prepend(first, events)


async def _prepend(
    first: StreamEvent | None, rest: AsyncIterator[StreamEvent]
) -> AsyncGenerator[StreamEvent, None]:
    if first is None:
        return
    yield first
    async for event in rest:
        yield event


async def complete_by_streaming(provider: Provider, request: Request) -> Response:
    """The response ``provider.stream`` adds up to (what a stream-only provider completes with)."""
    acc = Accumulator(provider.name, request.model or "")
    async with provider.stream(request) as events:
        async for event in events:
            acc.add(event)
    return acc.response()


async def events_of(response: Response, chunk: int = 0) -> AsyncGenerator[StreamEvent, None]:
    """The events a stream of ``response`` would send: its text in ``chunk``-character deltas
    (0: one delta), each tool call whole, its usage, its finish."""
    text = response.text
    step = chunk or len(text) or 1
    for start in range(0, len(text), step):
        yield TextDelta(text=text[start : start + step])
    for index, call in enumerate(response.tool_calls):
        arguments = json.dumps(call.arguments)
        yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=arguments)
    yield UsageEvent(usage=response.usage)
    yield Finish(
        reason=response.finish_reason, model=response.model, request_id=response.request_id
    )
