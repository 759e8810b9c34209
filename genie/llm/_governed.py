"""The runtime's kill switch for model calls: what ``ctx.llm(provider)`` gives a handler.

Every call through it carries the handler's message (its correlation, classification,
principal and deadline) and, when the runtime's ``Limits`` set ``correlation_tokens`` or
``correlation_cost``, reserves its worst case against the correlation's budget before a byte
is sent. The first refusal of a correlation fires the limit (the runtime records it once);
from then on every call of that correlation is refused at once, whether it would fit or not,
so a handler that catches the refusal and loops is stopped as well.

With counters every process of a deployment shares (genie.nats's), a correlation's budget is
one across processes (``_shared.py``): each call is held there too, after its own process's
ledger, and settles there what it used; only the first refusal anywhere fires the limit.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import checkpoint

from .._base.clock import spelt
from .._errors import InvalidArgumentError
from .._message.envelope import Message
from ._cost import PriceTable
from ._errors import BudgetExceededError, LLMError
from ._killswitch import KillSwitch
from ._ledger import BudgetLedger, Reservation
from ._provider import Provider, a_provider
from ._shared import SharedBudget, SharedCounters
from ._types import CallContext, Finish, Request, Response, StreamEvent, TextDelta

if TYPE_CHECKING:
    from .._runtime.model_text import TextCall

__all__ = ["CorrelationBudget", "HandlerProvider"]

_DEFAULT_CONTEXT = CallContext()


@dataclass(frozen=True, slots=True)
class Firing:
    """A budget limit that fired: for the runtime's records."""

    limit: str  # limit:correlation_tokens or limit:correlation_cost
    agent_id: str
    message: Message
    reason: str


class CorrelationBudget:
    """One runtime's per-correlation model budgets: a ledger keyed by correlation id.

    ``on_fire`` records a firing (once per correlation); ``track`` is told of each correlation
    the first time it reserves, so the runtime can ``forget`` it when the correlation ends (its
    delivery budget ends then too) and the ledger stays bounded.
    """

    def __init__(
        self,
        *,
        max_tokens: int | None,
        max_cost: float | None,
        prices: PriceTable,
        on_fire: Callable[[Firing], None],
        track: Callable[[str], None],
    ) -> None:
        self.ledger = BudgetLedger(max_tokens=max_tokens, max_cost=max_cost, name="correlation")
        # Prices only bound a cost budget: without one, pricing each call would cost for nothing.
        self.prices = prices if max_cost is not None else PriceTable()
        self._on_fire = on_fire
        self._track = track
        self._tracked: set[str] = set()
        self._fired: dict[str, BudgetExceededError] = {}
        self.shared: SharedBudget | None = None  # across processes (``share``)
        # Per correlation, per delivery: how many calls its handler reserved (the n-th
        # call's key on the shared counters is the same when a crashed delivery runs again).
        self._calls: dict[str, dict[str, int]] = {}
        # The calls held on the shared counters: their correlation and key there.
        self._held: dict[Reservation, tuple[str, str]] = {}

    def share(self, counters: SharedCounters) -> None:
        """Count the budgets on ``counters`` too, shared with every process."""
        self.shared = SharedBudget(counters, self.ledger)

    def fired(self, correlation_id: str) -> str | None:
        """The limit that fired for ``correlation_id``, if one did."""
        refusal = self._fired.get(correlation_id)
        return None if refusal is None else refusal.limit

    def forget(self, correlation_id: str) -> None:
        self.ledger.forget(correlation_id)
        self._fired.pop(correlation_id, None)
        self._tracked.discard(correlation_id)
        self._calls.pop(correlation_id, None)

    def reserve(
        self, switch: KillSwitch, request: Request, prompt: int, agent_id: str, message: Message
    ) -> Reservation:
        """The call's worst case held in this process's ledger, or the refusal (the first
        of a correlation fires the limit)."""
        self._begin(message.correlation_id, switch.name)
        try:
            return KillSwitch.reserve(switch, request, prompt)
        except BudgetExceededError as refused:
            self._refused(refused, agent_id, message, first=True)
            raise

    async def hold(
        self, switch: KillSwitch, request: Request, prompt: int, agent_id: str, message: Message
    ) -> Reservation:
        """``reserve``, then, with shared counters, the same worst case held on them: a call
        this process admits is refused when every process together would overrun the
        budget. Only the first refusal anywhere fires the limit."""
        shared = self.shared
        if shared is None:
            return self.reserve(switch, request, prompt, agent_id, message)
        cid = message.correlation_id
        self._begin(cid, switch.name)
        calls = self._calls.setdefault(cid, {})
        delivery = f"{message.id}:{agent_id}"  # the delivery's id (genie.nats's Delivery.id)
        calls[delivery] = n = calls.get(delivery, 0) + 1
        key = f"{delivery}/llm/{n}"
        try:
            reservation = KillSwitch.reserve(switch, request, prompt)
        except BudgetExceededError as refused:
            # Refused by this process's own count, so the shared one is over as well: tripped
            # there, so that every process refuses from now on.
            first = await shared.trip(cid, refused.limit, key)
            self._refused(refused, agent_id, message, first)
            raise
        try:
            refusal = await shared.hold(cid, key, reservation, switch.name)
        except BaseException:
            reservation.release()
            raise
        if refusal is None:
            self._held[reservation] = cid, key
            return reservation
        reservation.release()
        self._refused(refusal[0], agent_id, message, refusal[1])
        raise refusal[0]

    def attempted(
        self,
        switch: KillSwitch,
        reservation: Reservation,
        request: Request,
        prompt: int,
        error: BaseException,
        agent_id: str,
        message: Message,
    ) -> None:
        """A failed attempt charged (``KillSwitch.attempted``) before the call tries again:
        the next attempt is refused when it no longer fits, or when the correlation's limit
        fired meanwhile (another of its calls was refused), so a call retrying in flight is
        stopped too. A refusal here fires the limit if none fired before in this process."""
        cid = message.correlation_id
        try:
            KillSwitch.attempted(switch, reservation, request, prompt, error)
        except BudgetExceededError as refused:
            if cid not in self._fired:
                self._refused(refused, agent_id, message, first=True)
            raise
        if not reservation.settled:
            self._begin(cid, switch.name)

    async def settled(self, reservation: Reservation) -> None:
        """What a call held on the shared counters is settled there too, to what it used."""
        held = self._held.pop(reservation, None)
        if held is not None and self.shared is not None:
            await self.shared.settle(*held, reservation)

    def _begin(self, cid: str, provider: str) -> None:
        first = self._fired.get(cid)
        if first is not None:
            raise BudgetExceededError(
                limit=first.limit,
                key=cid,
                requested=0,
                remaining=0,
                provider=provider,
                correlation_id=cid,
                message=f"llm call refused: the {first.limit} limit of correlation {cid} fired "
                f"already ({first}); no further model call of it is sent",
            )
        if cid not in self._tracked:
            self._track(cid)  # may refuse the call: then the correlation stays untracked
            self._tracked.add(cid)

    def _refused(
        self, refused: BudgetExceededError, agent_id: str, message: Message, first: bool
    ) -> None:
        """Every later call of the correlation is refused here at once; the first refusal
        of all fires the limit (its audit record, event and metric)."""
        self._fired[message.correlation_id] = refused
        if first:
            self._on_fire(Firing(f"limit:{refused.limit}", agent_id, message, str(refused)))


class _Switch(KillSwitch):
    """The kill switch of one handler call: reserves through the runtime's budget."""

    def __init__(
        self, inner: Provider, budget: CorrelationBudget, agent_id: str, message: Message
    ) -> None:
        super().__init__(inner, budget.ledger, prices=budget.prices)
        self.budget = budget
        self.agent_id = agent_id
        self.message = message

    def reserve(self, request: Request, prompt: int) -> Reservation:
        return self.budget.reserve(self, request, prompt, self.agent_id, self.message)

    async def hold(self, request: Request, prompt: int) -> Reservation:
        if self.budget.shared is None:
            return await super().hold(request, prompt)
        try:
            return await self.budget.hold(self, request, prompt, self.agent_id, self.message)
        except LLMError:
            await checkpoint()  # as KillSwitch.hold: a refused loop still yields
            raise

    def attempted(
        self, reservation: Reservation, request: Request, prompt: int, error: BaseException
    ) -> None:
        self.budget.attempted(
            self, reservation, request, prompt, error, self.agent_id, self.message
        )

    async def settled(self, reservation: Reservation) -> None:
        await self.budget.settled(reservation)


class HandlerProvider:
    """``inner`` as one handler call sees it: requests get the context of ``message`` (when
    they carry none of their own; the correlation and the causing delivery, ``message`` to
    ``agent_id``, are always these) and, with a
    ``budget``, the runtime's kill switch keyed by the message's correlation. ``relay`` gives
    what a stream's text is told to while someone reads the correlation's model text
    (``Runtime.model_text``)."""

    def __init__(
        self,
        inner: Provider,
        message: Message,
        agent_id: str,
        budget: CorrelationBudget | None,
        relay: Callable[[str, Message], TextCall | None] | None = None,
    ) -> None:
        self.inner = inner = a_provider(inner, "ctx.llm")
        self.message = message
        self.agent_id = agent_id
        self._relay = relay
        self._through: Provider = (
            inner if budget is None else _Switch(inner, budget, agent_id, message)
        )

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def region(self) -> str:
        return self.inner.region

    def _governed(self, request: Request) -> Request:
        if not isinstance(request, Request):
            raise InvalidArgumentError(
                f"ctx.llm({self.inner.name!r}): a call takes a genie.llm Request, not "
                f"{_given(request)}: Request(messages=(ChatMessage.user(text),))"
            )
        msg, agent_id = self.message, self.agent_id
        context = request.context
        if context == _DEFAULT_CONTEXT:
            deadline = anyio.current_effective_deadline()
            context = CallContext.of(
                msg, deadline=None if deadline == math.inf else deadline, agent_id=agent_id
            )
        elif (
            context.correlation_id != msg.correlation_id
            or context.message_id != msg.id
            or context.agent_id != agent_id
        ):  # whatever else the caller set, the call is this delivery's
            context = context.model_copy(
                update={
                    "correlation_id": msg.correlation_id,
                    "message_id": msg.id,
                    "agent_id": agent_id,
                }
            )
        else:
            return request
        return request.model_copy(update={"context": context})

    async def complete(self, request: Request) -> Response:
        return await self._through.complete(self._governed(request))

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        governed = self._governed(request)
        call = None if self._relay is None else self._relay(self.agent_id, self.message)
        if call is None:
            async with self._through.stream(governed) as events:
                yield events
            return
        try:
            async with (
                self._through.stream(governed) as events,
                aclosing(_relayed(events, call)) as relayed,
            ):
                yield relayed
        except BaseException as error:  # a refusal, a failure or a cancellation ends it
            call.end(None, error)
            raise
        call.end(None)  # left before the model finished: what came is the call's text


def _given(value: object) -> str:
    return f"{type(value).__name__} ({spelt(value)})"


async def _relayed(
    events: AsyncIterator[StreamEvent], call: TextCall
) -> AsyncGenerator[StreamEvent, None]:
    """``events``, their text told to ``call`` as it passes to the handler."""
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                call.add(event.text)
            elif isinstance(event, Finish):
                call.end(event.reason)
            yield event
    except Exception as error:  # the call failed, though its handler may catch it and go on
        call.end(None, error)
        raise
