"""The kill switch: a call that could overrun its budget is refused before it is sent."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager, contextmanager
from contextvars import ContextVar

from anyio.lowlevel import checkpoint

from .._base.log import lazy_logger
from ._cost import PriceTable
from ._errors import AllProvidersFailedError, LLMError, ProviderError, ProviderResponseError
from ._ledger import BudgetLedger, Reservation
from ._provider import Provider, a_provider, models_of
from ._types import (
    Accumulator,
    CallContext,
    Finish,
    Request,
    Response,
    StreamEvent,
    Usage,
    estimated_tokens,
)

__all__ = ["USAGE_SLACK", "KillSwitch", "billed", "by_correlation", "count_attempt"]

logger = lazy_logger("genie.llm")

UNCORRELATED = "(uncorrelated)"

USAGE_SLACK = 3
"""A reported usage may reach this many times the call's reservation. The prompt estimate
counts one token per 3 bytes, and no tokenizer of the providers here spends more than one
token per byte, so an honest report stays under it; a report above it (or a negative count)
is not believed."""


def billed(error: BaseException) -> bool:
    """Whether a call that ended in ``error`` may have been billed by its provider.

    Only two outcomes prove it was not: nothing was sent (a refusal, an open circuit, a
    connection that was never made: ``sent`` is False), or the provider refused the request
    with a 4xx before processing it. A 5xx may come after the model read the prompt (a
    gateway's 502 or 504), and a cancellation or a lost connection after the request left
    cannot tell what the provider did, so all of those are billed. A fallback chain that failed
    everywhere is billed as its last provider's error: it told the switch above of each
    provider before (``count_attempt``)."""
    if isinstance(error, AllProvidersFailedError):
        return billed(error.errors[-1])
    if isinstance(error, LLMError) and not error.sent:
        return False
    return not (isinstance(error, ProviderError) and error.status < 500)


# What a layer that tries again (``Retry``, ``Fallback``) tells the nearest kill switch above
# of each failed attempt before the next: set by each switch for the duration of its call, in
# the calling task, so two calls never share it.
_ATTEMPTS: ContextVar[Callable[[BaseException], None] | None] = ContextVar(
    "genie_llm_attempts", default=None
)


def count_attempt(error: BaseException) -> None:
    """Tell the kill switch above (if any) of a failed attempt its caller is about to try
    again after (or fall back from): charged its prompt at once if its provider may have billed
    it, and :class:`BudgetExceededError` raised, for the caller to let go, when the next
    attempt would no longer fit the budget or the budget's limit fired meanwhile. An attempt
    that cost nothing (a 429) is told too: the limit may have fired while the call waited."""
    attempted = _ATTEMPTS.get()
    if attempted is not None:
        attempted(error)


@contextmanager
def _attempts(attempted: Callable[[BaseException], None]) -> Iterator[None]:
    token = _ATTEMPTS.set(attempted)
    try:
        yield
    finally:
        _ATTEMPTS.reset(token)


def by_correlation(context: CallContext) -> str:
    """The ledger key of the kill switch: the correlation (all calls of one conversation, one
    request, one looping agent share it); calls without one share one account."""
    return context.correlation_id or UNCORRELATED


class KillSwitch:
    """Reserves each call's worst case in ``ledger`` before it goes out, and settles it to
    what the call used after.

    The worst case is :meth:`Request.prompt_estimate` plus ``max_tokens``, priced from
    ``prices`` when the ledger has a cost budget: for the request's model, else ``model``, else
    the dearest of the default models under ``inner`` (:func:`models_of`); a model without a
    price is refused then: its cost could not be bounded. A call that does not fit raises
    :class:`BudgetExceededError` and nothing is sent. An answer settles to its reported usage
    (estimated from its text if the provider reported none), priced by the answer's model (or
    as reserved, when the table does not know it). A usage that cannot be true (a negative
    count, more than :data:`USAGE_SLACK` times the reservation) is charged the reservation and
    counted in the ledger's ``usage_violations``. A call that ended without an answer is
    released only when :func:`billed` proves nothing was billed; otherwise it is charged as the
    provider bills it: the prompt estimate (a call cancelled, timed out or cut off after its
    request left), the prompt plus what arrived (a stream), or the whole reservation (a 2xx
    answer that could not be read: the model did the work).
    """

    def __init__(
        self,
        inner: Provider,
        ledger: BudgetLedger,
        *,
        prices: PriceTable | None = None,
        key: Callable[[CallContext], str] = by_correlation,
        model: str = "",
    ) -> None:
        self.inner = a_provider(inner, "KillSwitch(inner)")
        self.model = model
        self.ledger = ledger
        self.prices = prices or PriceTable()
        self._key = key
        self._defaults: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def _models(self, request: Request) -> tuple[str, ...]:
        if request.model:
            return (request.model,)
        if self._defaults is None:  # the stack under a switch does not change: walk it once
            self._defaults = (self.model,) if self.model else models_of(self.inner) or ("",)
        return self._defaults

    def _cost(self, request: Request, usage: Usage) -> float:
        """The dearest price of ``usage`` among the models the call may reach."""
        costs = []
        if self.prices.prices:  # else nothing is priced (a token budget): every cost is 0
            costs = [self.prices.cost(model, usage) for model in self._models(request)]
        if self.ledger.max_cost is not None and (not costs or None in costs):
            missing = self._models(request)[costs.index(None) if costs else 0]
            error = LLMError(
                f"llm call refused: no price for model {missing or '(provider default)'!r}, "
                f"so the {self.ledger.name}_cost budget cannot be checked; name the model "
                'in the price table or give it a "*" entry',
                provider=self.name,
            )
            error.sent = False
            raise error
        return max((c or 0.0 for c in costs), default=0.0)

    def reserve(self, request: Request, prompt: int) -> Reservation:
        cost = 0.0
        if self.prices.prices or self.ledger.max_cost is not None:
            cost = self._cost(request, Usage(input_tokens=prompt, output_tokens=request.max_tokens))
        return self.ledger.reserve(
            self._key(request.context),
            tokens=prompt + request.max_tokens,
            cost=cost,
            provider=self.name,
            correlation_id=request.context.correlation_id,
        )

    def attempted(
        self, reservation: Reservation, request: Request, prompt: int, error: BaseException
    ) -> None:
        """An attempt of the call failed in ``error``, and the call is about to try again
        (``count_attempt``): its prompt is charged now if its provider may have billed it
        (:func:`billed`), and the next attempt refused when the call's worst case no longer
        fits beside what was spent. A task the call started that outlives it (a shadow's) is
        not the call: once the call settled, it is not told."""
        if reservation.settled:
            return
        spent = prompt if billed(error) else 0
        cost = self._cost(request, Usage(input_tokens=spent)) if reservation.cost else 0.0
        reservation.spend(
            tokens=spent,
            cost=cost,
            provider=self.name,
            correlation_id=request.context.correlation_id,
        )

    def _told(
        self, reservation: Reservation, request: Request, prompt: int
    ) -> Callable[[BaseException], None]:
        return lambda error: self.attempted(reservation, request, prompt, error)

    def _settle(
        self, reservation: Reservation, request: Request, prompt: int, response: Response
    ) -> None:
        usage = response.usage
        if not (usage.input_tokens and usage.output_tokens):
            # A provider that reports no usage (some compatible servers) is charged an estimate.
            usage = Usage(
                input_tokens=usage.input_tokens or prompt,
                output_tokens=usage.output_tokens or estimated_tokens(response.text),
                cached_tokens=usage.cached_tokens,
            )
        if not self._believable(reservation, usage):
            self._violated(reservation, request, usage)
            return
        # Priced as the call was reserved unless the table names the answer's model.
        cost = self.prices.answer_cost(response.model, self._models(request), usage)
        reservation.settle(tokens=usage.total, cost=cost or 0.0)

    @staticmethod
    def _believable(reservation: Reservation, usage: Usage) -> bool:
        return usage.plausible and usage.total <= USAGE_SLACK * reservation.tokens

    def _violated(self, reservation: Reservation, request: Request, usage: Usage) -> None:
        # A provider's report is not allowed to refund the budget (a negative count) or to
        # wreck it (a count beyond any tokenizer): the worst case the call reserved is charged.
        logger.warning(
            "llm usage not believed: %s reported %d input, %d output, %d cached tokens for a "
            "call that reserved %d (correlation %s); the reservation is charged",
            self.name,
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_tokens,
            reservation.tokens,
            request.context.correlation_id,
        )
        reservation.violated()

    def _cut_off(
        self, reservation: Reservation, request: Request, prompt: int, error: BaseException
    ) -> None:
        """Settles a call that ended in ``error`` (an exception or a cancellation)."""
        if not billed(error):
            reservation.release()
        elif isinstance(error, ProviderResponseError):
            reservation.settle(tokens=reservation.tokens, cost=reservation.cost)
        else:
            prompt_cost = 0.0
            if reservation.cost:
                prompt_cost = self._cost(request, Usage(input_tokens=prompt))
            reservation.settle(tokens=prompt, cost=prompt_cost)

    async def hold(self, request: Request, prompt: int) -> Reservation:
        """The call's reservation (``reserve``), or its refusal. A subclass may hold it in a
        budget elsewhere too (the runtime's, shared across processes), and then hears of its
        settlement in ``settled``."""
        try:
            return self.reserve(request, prompt)
        except LLMError:
            # A refusal still yields to the loop: a handler that loops on refusals cannot
            # starve the other tasks, and its deadline or a cancel can stop it.
            await checkpoint()
            raise

    async def settled(self, reservation: Reservation) -> None:
        """Called once each reservation ``hold`` made is settled (nothing to do here)."""

    async def complete(self, request: Request) -> Response:
        prompt = request.prompt_estimate()
        reservation = await self.hold(request, prompt)
        try:
            with _attempts(self._told(reservation, request, prompt)):
                response = await self.inner.complete(request)
        except BaseException as error:  # a cancellation included: it is settled, then re-raised
            self._cut_off(reservation, request, prompt, error)
            await self.settled(reservation)
            raise
        self._settle(reservation, request, prompt, response)
        await self.settled(reservation)
        return response

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        prompt = request.prompt_estimate()
        reservation = await self.hold(request, prompt)
        acc = Accumulator(self.name, request.model or "")
        ended: BaseException | None = None
        try:
            async with AsyncExitStack() as stack:
                # The attempts before the first event are made as the stream opens.
                with _attempts(self._told(reservation, request, prompt)):
                    events = await stack.enter_async_context(self.inner.stream(request))
                watched = self._watched(events, acc, reservation, request, prompt)
                yield await stack.enter_async_context(aclosing(watched))
        except BaseException as error:  # a cancellation included: it is settled, then re-raised
            ended = error
            raise
        finally:
            if not reservation.settled:
                if ended is not None and not billed(ended):
                    reservation.release()
                elif isinstance(ended, ProviderResponseError):
                    self._cut_off(reservation, request, prompt, ended)
                else:
                    # The request left: the prompt is spent, and whatever arrived before the
                    # stream stopped (broken, cancelled, or left unread by its reader).
                    self._settle(reservation, request, prompt, _partial(acc))
            await self.settled(reservation)

    async def _watched(
        self,
        events: AsyncIterator[StreamEvent],
        acc: Accumulator,
        reservation: Reservation,
        request: Request,
        prompt: int,
    ) -> AsyncGenerator[StreamEvent, None]:
        async for event in events:
            if acc.finished:  # after its Finish: not the call's (read to the end, not passed on)
                continue
            acc.add(event)
            if isinstance(event, Finish):
                self._settle(reservation, request, prompt, _partial(acc))
            yield event


def _partial(acc: Accumulator) -> Response:
    return Response(text=acc.text, usage=acc.usage, model=acc.model)
