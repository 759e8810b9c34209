"""A small built-in pipeline for ``genie demo``: a statement is parsed, fanned out to three
analysts, and their findings are gathered into one report.

It exists until the YAML finance pipeline ships; it exercises the real runtime end to end
(type routing, fan-out, fan-in by correlation, failure to a dead letter).
"""

from __future__ import annotations

import csv
import io
from collections import Counter

from ._agent import BaseAgent, handler
from ._context import Context
from ._message import Message, Payload

__all__ = ["demo_agents"]


class Statement(Payload):
    message_type = "demo.statement"
    csv: str


class Transaction(Payload):
    message_type = "demo.transaction"
    date: str
    description: str
    category: str
    amount_cents: int


class Transactions(Payload):
    message_type = "demo.transactions"
    items: tuple[Transaction, ...]


class Finding(Payload):
    message_type = "demo.finding"
    title: str
    lines: tuple[str, ...]


class Report(Payload):
    message_type = "demo.report"
    text: str


REQUIRED = ("date", "description", "category", "amount", "type")


class StatementReader(BaseAgent):
    produces = (Transactions,)

    @handler
    async def on_statement(self, payload: Statement, ctx: Context) -> Message:
        rows = list(csv.DictReader(io.StringIO(payload.csv)))
        if not rows:
            raise ValueError("statement has a header but no rows")
        missing = [c for c in REQUIRED if c not in rows[0]]
        if missing:
            raise ValueError(f"statement is missing column(s): {', '.join(missing)}")
        items = []
        for n, row in enumerate(rows, start=2):
            try:
                cents = round(float(row["amount"]) * 100)
            except ValueError:
                raise ValueError(f"line {n}: amount {row['amount']!r} is not a number") from None
            sign = 1 if row["type"].strip().lower() == "credit" else -1
            items.append(
                Transaction(
                    date=row["date"],
                    description=row["description"].strip(),
                    category=row["category"].strip(),
                    amount_cents=sign * cents,
                )
            )
        return ctx.emit(Transactions(items=tuple(items)))


def _money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


class Totals(BaseAgent):
    produces = (Finding,)

    @handler
    async def on_transactions(self, payload: Transactions, ctx: Context) -> Message:
        income = sum(t.amount_cents for t in payload.items if t.amount_cents > 0)
        spent = -sum(t.amount_cents for t in payload.items if t.amount_cents < 0)
        lines = (
            f"income  {_money(income):>12}",
            f"spent   {_money(spent):>12}",
            f"net     {_money(income - spent):>12}",
        )
        return ctx.emit(Finding(title="Totals", lines=lines), recipient="reporter")


class Categories(BaseAgent):
    produces = (Finding,)

    @handler
    async def on_transactions(self, payload: Transactions, ctx: Context) -> Message:
        spend: Counter[str] = Counter()
        for t in payload.items:
            if t.amount_cents < 0:
                spend[t.category] -= t.amount_cents
        lines = tuple(f"{cat:<14}{_money(c):>12}" for cat, c in spend.most_common())
        return ctx.emit(Finding(title="Spending by category", lines=lines), recipient="reporter")


class Largest(BaseAgent):
    produces = (Finding,)

    @handler
    async def on_transactions(self, payload: Transactions, ctx: Context) -> Message:
        debits = sorted(
            (t for t in payload.items if t.amount_cents < 0), key=lambda t: t.amount_cents
        )
        lines = tuple(
            f"{t.date}  {t.description:<18}{_money(-t.amount_cents):>12}" for t in debits[:3]
        )
        return ctx.emit(Finding(title="Largest expenses", lines=lines), recipient="reporter")


ANALYSTS = ("totals", "categories", "largest")


class Reporter(BaseAgent):
    """Fan-in: waits for one finding from each analyst of a correlation, then reports."""

    produces = (Report,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self._sessions: dict[str, dict[str, Finding]] = {}

    @handler
    async def on_finding(self, payload: Finding, ctx: Context) -> Message | None:
        msg = ctx.message
        found = self._sessions.setdefault(msg.correlation_id, {})
        found[msg.sender] = payload
        if len(found) < len(ANALYSTS):
            return None
        del self._sessions[msg.correlation_id]
        parts = ["Genie demo report", ""]
        for analyst in ANALYSTS:
            parts += [found[analyst].title, *(f"  {line}" for line in found[analyst].lines), ""]
        return ctx.emit(Report(text="\n".join(parts).rstrip() + "\n"), recipient="caller")


def demo_agents() -> list[tuple[BaseAgent, list[str]]]:
    """The agents and what each subscribes to."""
    return [
        (StatementReader("reader"), ["demo.statement"]),
        (Totals("totals"), ["demo.transactions"]),
        (Categories("categories"), ["demo.transactions"]),
        (Largest("largest"), ["demo.transactions"]),
        (Reporter("reporter"), []),
    ]
