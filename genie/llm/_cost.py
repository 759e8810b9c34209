"""Cost: prices per model, and the observer that prices and records every call."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

import anyio
from pydantic import BaseModel, ConfigDict, Field

from ._clock import loop_time
from ._provider import Provider, a_provider, models_of
from ._types import Accumulator, Finish, Request, Response, StreamEvent, Usage

__all__ = [
    "CANCELLED",
    "UNFINISHED",
    "CallRecord",
    "CostObserver",
    "CostStatistics",
    "Price",
    "PriceTable",
]


class Price(BaseModel):
    """Price per million tokens; ``cached_input`` defaults to ``input``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class PriceTable(BaseModel):
    """Prices by model name (the YAML ``llm.prices`` map). A model not listed has no price,
    unless the table has a ``"*"`` entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    prices: dict[str, Price] = Field(default_factory=dict)

    @classmethod
    def of(cls, prices: Mapping[str, Mapping[str, float]]) -> PriceTable:
        return cls.model_validate({"prices": prices})

    def price(self, model: str) -> Price | None:
        return self.prices.get(model) or self.prices.get("*")

    def cost(self, model: str, usage: Usage) -> float | None:
        price = self.price(model)
        if price is None:
            return None
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_price = price.input if price.cached_input is None else price.cached_input
        return (
            (usage.input_tokens - cached) * price.input
            + cached * cached_price
            + usage.output_tokens * price.output
        ) / 1_000_000

    def answer_cost(self, answered: str, asked: Iterable[str], usage: Usage) -> float | None:
        """The cost of ``usage`` by an answer from the model ``answered`` to a call that could
        reach the models ``asked``: at the answered model's price when the table names it,
        else at the dearest of the asked ones (a provider answers "gpt-4o" as
        "gpt-4o-2024-08-06", which a ``"*"`` entry would price as any unlisted model, and
        no entry at all as free); None when none of them has a price."""
        if answered in self.prices:
            return self.cost(answered, usage)
        costs = [cost for model in asked if (cost := self.cost(model, usage)) is not None]
        return max(costs) if costs else self.cost(answered, usage)

    def worst_case(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        return self.cost(model, Usage(input_tokens=input_tokens, output_tokens=output_tokens))


CANCELLED = "cancelled"
"""A call's outcome when it was cancelled: by its caller, or by a deadline outside the observer
(which raises its own error, out there)."""

UNFINISHED = "unfinished"
"""A stream's outcome when it closed before its last event without an error: its reader left
it early."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call as the observer saw it; ``error`` is None for an answer, else what ended the
    call: the error's class name, :data:`CANCELLED` or :data:`UNFINISHED`."""

    provider: str
    model: str
    usage: Usage
    cost: float | None
    seconds: float
    error: str | None
    stream: bool


def _ended_by(exc: BaseException) -> str:
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return CANCELLED
    if isinstance(exc, GeneratorExit):  # the reader's own generator was closed over it
        return UNFINISHED
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class CostStatistics:
    calls: int
    failures: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: float


class CostObserver:
    """Prices each answer from ``prices`` (``Response.cost``), adds it to ``statistics()``
    and hands a :class:`CallRecord` to ``on_call`` (metrics, events) for every call, whatever
    ended it: an error of any kind, a cancellation, a stream its reader left early. It never
    changes an error, a cancellation or an answer's content."""

    def __init__(
        self,
        inner: Provider,
        prices: PriceTable | None = None,
        *,
        on_call: Callable[[CallRecord], None] | None = None,
        clock: Callable[[], float] = loop_time,
    ) -> None:
        self.inner = a_provider(inner, "CostObserver(inner)")
        self.prices = prices or PriceTable()
        self._on_call = on_call
        self._clock = clock
        self._stats = CostStatistics(0, 0, 0, 0, 0, 0.0)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def statistics(self) -> CostStatistics:
        return self._stats

    def _priced(self, request: Request, model: str, usage: Usage) -> tuple[Usage, float | None]:
        """What is recorded of a call's reported ``usage``, and its price (``answer_cost``:
        the answering ``model``'s, else the one ``request`` asked for): nothing of a usage
        that cannot be true (``Usage.plausible``), so a lying provider cannot take a counter
        down or give an answer a negative cost."""
        if not usage.plausible:
            return Usage(), None
        asked = (request.model,) if request.model else models_of(self.inner)
        return usage, self.prices.answer_cost(model, asked, usage)

    def _record(self, record: CallRecord) -> None:
        s, u = self._stats, record.usage
        self._stats = CostStatistics(
            calls=s.calls + 1,
            failures=s.failures + (record.error is not None),
            input_tokens=s.input_tokens + u.input_tokens,
            output_tokens=s.output_tokens + u.output_tokens,
            cached_tokens=s.cached_tokens + u.cached_tokens,
            cost=s.cost + (record.cost or 0.0),
        )
        if self._on_call is not None:
            self._on_call(record)

    async def complete(self, request: Request) -> Response:
        started = self._clock()
        try:
            response = await self.inner.complete(request)
        except BaseException as exc:  # a cancellation included: recorded, then re-raised
            acc = Accumulator(self.name, request.model or "")
            self._ended(request, acc, started, exc, stream=False)
            raise
        usage, cost = self._priced(request, response.model, response.usage)
        self._record(
            CallRecord(self.name, response.model, usage, cost, self._clock() - started, None, False)
        )
        return response.model_copy(update={"cost": cost})

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        started = self._clock()
        acc = Accumulator(self.name, request.model or "")
        try:
            async with (
                self.inner.stream(request) as events,
                aclosing(self._watched(request, events, acc, started)) as reader,
            ):
                yield reader
        except BaseException as exc:  # a cancellation included: recorded, then re-raised
            if not acc.finished:
                self._ended(request, acc, started, exc, stream=True)
            raise
        if not acc.finished:
            self._ended(request, acc, started, None, stream=True)

    def _ended(
        self,
        request: Request,
        acc: Accumulator,
        started: float,
        exc: BaseException | None,
        *,
        stream: bool,
    ) -> None:
        """Records a call that ended without its answer, in ``exc`` (None: a stream left
        early). What the provider reported before it ended was still used: it is kept."""
        model = acc.model
        usage, cost = self._priced(request, model, acc.usage)
        self._record(
            CallRecord(
                self.name,
                model,
                usage,
                cost if usage.total else None,
                self._clock() - started,
                UNFINISHED if exc is None else _ended_by(exc),
                stream,
            )
        )

    async def _watched(
        self,
        request: Request,
        events: AsyncIterator[StreamEvent],
        acc: Accumulator,
        started: float,
    ) -> AsyncGenerator[StreamEvent, None]:
        async for event in events:
            if acc.finished:  # after its Finish: not the call's (read to the end, not passed on)
                continue
            acc.add(event)
            if isinstance(event, Finish):
                # What was used and what it cost, never the answer: the observer records a
                # finished stream whatever its tool calls hold.
                usage, cost = self._priced(request, acc.model, acc.usage)
                self._record(
                    CallRecord(
                        self.name,
                        acc.model,
                        usage,
                        cost,
                        self._clock() - started,
                        None,
                        True,
                    )
                )
            yield event
