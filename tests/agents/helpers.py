"""Call an agent directly with a TestContext (no runtime), for logic tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from genie_agents.finance.analysis import analyze
from genie_agents.finance.models import AnalysisResult, EnrichedTransactions, Transaction

from genie import Catalogue, Message, Payload, Runtime, TestContext

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def call(agent: Any, payload: Payload, *, at: datetime = T0, **fields: Any) -> list[Any]:
    """The outputs (typed Any: each test knows which payload it expects)."""
    msg = Message.new(payload, sender="upstream", correlation_id=fields.pop("cid", "c1"), **fields)
    return list(await agent.handle(msg, TestContext(agent.id, msg, now=at)))


async def one(agent: Any, payload: Payload, **fields: Any) -> Any:
    """The single output's payload."""
    (out,) = await call(agent, payload, **fields)
    return out.payload


async def ask(name: str, payload: Payload, until: str | None = None) -> Any:
    """The answer of the catalogue agent ``name`` on the real runtime (``until``: the answer's
    type, by default the one type the agent produces besides approval requests)."""
    spec = Catalogue.installed().get(name)
    if until is None:
        (produced,) = [p for p in spec.produces if p.message_type != "genie.approval_request"]
        until = produced.message_type
    async with Runtime([spec.factory(name)]) as rt:
        result = await rt.ask(rt.message(payload, recipient=name), until=until)
    assert result.message is not None, result
    return result.message.payload


def tx(tid: str, amount_rupees: float, date: str = "2026-01-01", **fields: Any) -> Transaction:
    """A transaction in rupees (stored in paise): positive credit, negative debit."""
    return Transaction(
        transaction_id=tid, date=date, amount_cents=round(amount_rupees * 100), **fields
    )


def period(*txns: Transaction) -> AnalysisResult:
    return analyze(EnrichedTransactions(transactions=txns))
