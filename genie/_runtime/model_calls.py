"""The runtime's side of ``ctx.llm``: each handler's governed provider, and the records of the
model budgets (``Limits.correlation_tokens`` / ``correlation_cost``) when they fire.

A firing is recorded like the hop limit's and the delivery budget's: an audit record (actor
``limit:correlation_tokens`` or ``limit:correlation_cost``, action ``limit_fired``), a log
line, and the observers (a ``limit_fired`` event, the ``genie_limits_fired`` metric). The
refused handler then fails with the refusal (not retried), a dead letter naming the limit,
unless it catches it. ``genie.llm`` is imported with the first model call, never before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._base.clock import Clock
from .._base.log import lazy_logger
from .._errors import ConfigurationError
from .._message.envelope import Message
from .admission import Admission
from .correlator import Correlator
from .ledger import Ledger, fields
from .observe.observer import Observer
from .policy import Decision, Limits

if TYPE_CHECKING:
    from ..llm._cost import PriceTable
    from ..llm._governed import CorrelationBudget, Firing
    from ..llm._provider import Provider
    from ..llm._shared import SharedCounters
    from .model_text import ModelTextHub, ModelTextStream, TextCall

__all__ = ["ModelCalls"]

_log = lazy_logger("genie.runtime")


class ModelCalls:
    """One runtime's model calls: ``provider`` is what ``ctx.llm`` returns; ``read_text``
    relays what they stream to a reader, governed (genie/_runtime/model_text.py)."""

    def __init__(
        self,
        limits: Limits,
        prices: PriceTable | None,
        ledger: Ledger,
        correlator: Correlator,
        admission: Admission,
        clock: Clock,
    ) -> None:
        cost = sys.modules.get("genie.llm._cost")  # loaded if prices is a PriceTable
        if prices is not None and (cost is None or not isinstance(prices, cost.PriceTable)):
            raise ConfigurationError(
                f"Runtime(prices=...) takes a genie.llm.PriceTable, not {type(prices).__name__}"
                ' (PriceTable.of({"model": {"input": 3.0, "output": 15.0}}) makes one)'
            )
        if limits.correlation_cost is not None and prices is None:
            raise ConfigurationError(
                "limits: correlation_cost needs a price table to bound a call's cost before it "
                "is sent: Runtime(prices=...) or the pipeline's llm.prices"
            )
        self._limits = limits
        self._prices = prices
        self._ledger = ledger
        self._correlator = correlator
        self._admission = admission
        self._clock = clock
        self._budget: CorrelationBudget | None = None
        self._shared: SharedCounters | None = None
        self._text: ModelTextHub | None = None  # made when the first reader opens

    def share(self, counters: SharedCounters) -> None:
        """Count the model budgets on ``counters`` too, shared with every process of the
        deployment (a transport between processes gives them: genie.nats)."""
        self._shared = counters
        if self._budget is not None:
            self._budget.share(counters)

    @property
    def budget(self) -> CorrelationBudget | None:
        """The per-correlation budgets (None until the first model call, or without limits)."""
        return self._budget

    def provider(self, provider: Provider, agent_id: str, message: Message) -> Provider:
        from ..llm._governed import HandlerProvider

        budget = self._budget
        if budget is None and self._limits.model_budget:
            budget = self._budget = self._new_budget()
        return HandlerProvider(provider, message, agent_id, budget, self.text_call)

    def text_call(self, agent_id: str, message: Message) -> TextCall | None:
        """The relay of a model call ``agent_id``'s handler of ``message`` streams, when
        someone reads its correlation's model text."""
        text = self._text
        return None if text is None else text.call(agent_id, message)

    def read_text(
        self,
        correlation_id: str,
        reader: str,
        hold_back: int | None,
        attach: Callable[[Observer], None],
        detach: Callable[[Observer], None],
    ) -> ModelTextStream:
        if self._text is None:
            from .model_text import ModelTextHub  # loaded by the first reader, not by a runtime

            self._text = ModelTextHub(self._judge, attach, detach)
        return self._text.open(correlation_id, reader, hold_back)

    def _judge(self, call: TextCall, text: str, reader: str) -> Decision:
        """Whether ``reader`` may see ``text``, all of ``call``'s text so far: the policies'
        decision on it as a message from the agent to the reader (a denial is audited)."""
        from .model_text import ModelText

        if not self._admission.policies:
            return Decision.ALLOW
        msg = call.message.child(
            ModelText(text=text),
            sender=call.agent_id,
            id=f"{call.message.id}/text/{call.number}",
            created_at=self._clock.timestamp(),
            recipient=reader,
        )
        decision = self._admission.judge(msg, reader, counted=False)
        if not decision.allowed:
            self._ledger.record_own(decision.policy, "denied", reader, msg, decision.reason)
            _log.info(
                "model text of %s call %d denied to %s by %s: %s",
                call.agent_id,
                call.number,
                reader,
                decision.policy,
                decision.reason,
                extra=fields(reader, msg),
            )
        return decision

    def _new_budget(self) -> CorrelationBudget:
        from ..llm._cost import PriceTable
        from ..llm._governed import CorrelationBudget

        budget = CorrelationBudget(
            max_tokens=self._limits.correlation_tokens,
            max_cost=self._limits.correlation_cost,
            prices=self._prices or PriceTable(),
            on_fire=self._fire,
            track=self._track,
        )
        if self._shared is not None:
            budget.share(self._shared)
        return budget

    def _track(self, correlation_id: str) -> None:
        corr = self._correlator.lookup(correlation_id)
        budget = self._budget
        assert budget is not None
        if corr is None:
            # No delivery of it runs here: a context kept past its handler, its request ended
            # and its account let go. A new account would give the correlation its budget
            # again, whole.
            from ..llm._errors import BudgetExceededError

            limit = "correlation_tokens" if self._limits.correlation_tokens else "correlation_cost"
            raise BudgetExceededError(
                limit=limit,
                key=correlation_id,
                requested=0,
                remaining=0,
                correlation_id=correlation_id,
                message=f"llm call refused: correlation {correlation_id} has ended here (no "
                "delivery of it is in flight): a context kept past its handler calls no model, "
                "or the correlation's budget would start again",
            )
        corr.on_release = budget.forget

    def _fire(self, firing: Firing) -> None:
        msg, agent_id = firing.message, firing.agent_id
        self._ledger.limit_fired(firing.limit, agent_id, msg, firing.reason)
        _log.warning(
            "%s fired in %s handling %s %s: %s",
            firing.limit,
            agent_id,
            msg.type,
            msg.id,
            firing.reason,
            extra=fields(agent_id, msg),
        )
