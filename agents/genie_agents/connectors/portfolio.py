"""A user's broker holdings and positions through an MCP server (as Zerodha's Kite MCP), with
the user's token kept encrypted in a ``TokenVault``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from genie import BaseAgent, Classification, Context, Message, Payload, Risk, handler

from .._common import Record, money
from .._go import go_text
from .vault import TokenVault

__all__ = [
    "McpPortfolioSource",
    "PortfolioAdvisor",
    "PortfolioError",
    "PortfolioLine",
    "PortfolioRequest",
    "PortfolioSnapshot",
    "PortfolioSource",
]

HOLDINGS_TOOL = "get_holdings"
POSITIONS_TOOL = "get_positions"


class PortfolioError(Exception):
    """The broker's server could not be reached, refused the token, or answered nonsense."""


@runtime_checkable
class PortfolioSource(Protocol):
    """Where holdings and positions come from (an MCP server, a fixture)."""

    async def fetch(self, token: str) -> tuple[object, object]:
        """The JSON values of the holdings and the positions, fetched with the user's token.

        Raises ``PortfolioError`` when they cannot be fetched.
        """
        ...


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class McpPortfolioSource:
    """Calls the ``get_holdings`` and ``get_positions`` tools of the MCP server at ``url``
    (streamable HTTP), the token as ``Authorization: Bearer``, in one session per fetch,
    through genie's MCP client: each call waits at most ``timeout`` seconds, and an answer
    is at most ``max_answer`` bytes (a tool server's default, 1 MiB, unless given).
    Needs the ``mcp`` package (``pip install 'genie-bus[portfolio]'``)."""

    def __init__(self, url: str, *, timeout: float = 30.0, max_answer: int | None = None) -> None:
        try:
            from genie.mcp import McpServer
        except ImportError:
            raise ImportError(
                "McpPortfolioSource needs the 'mcp' package: pip install 'genie-bus[portfolio]'"
            ) from None
        # The broker's server as any tool server: checked now, and bounded as one. Only the
        # headers change per fetch (each user's own token).
        server = McpServer(url=url, timeout=timeout)
        self.server = server if max_answer is None else replace(server, max_answer=max_answer)

    async def fetch(self, token: str) -> tuple[object, object]:
        server = replace(self.server, headers={"Authorization": f"Bearer {token}"})
        try:
            async with server.connect() as session:
                results = [await session.call_tool(t, {}) for t in (HOLDINGS_TOOL, POSITIONS_TOOL)]
        except Exception as exc:  # the SDK raises groups of its task groups' errors
            detail = "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(exc))
            raise PortfolioError(f"MCP server {server.where}: {detail}") from exc
        values = []
        for tool, result in zip((HOLDINGS_TOOL, POSITIONS_TOOL), results, strict=True):
            text = result.text
            if result.is_error:
                raise PortfolioError(f"MCP server {server.where}: tool {tool} failed: {text}")
            try:
                values.append(json.loads(text))
            except ValueError:
                raise PortfolioError(
                    f"MCP server {server.where}: tool {tool} did not answer JSON: {text[:200]!r}"
                ) from None
        return values[0], values[1]


class _WireLine(BaseModel):
    """A holding or position as Kite sends it; the many other fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    tradingsymbol: str
    quantity: float
    average_price: float
    last_price: float


class PortfolioRequest(Payload):
    """The user is the message's ``user_id`` metadata (as the consent policy reads it)."""

    message_type = "portfolio_request"

    _go = go_text(None)  # Go's content was free text ("show portfolio") it never read


class PortfolioLine(Record):
    symbol: str
    quantity: float
    average_price: float
    last_price: float
    value: float
    pnl: float


class PortfolioSnapshot(Payload):
    message_type = "portfolio_snapshot"
    user_id: str
    holdings: tuple[PortfolioLine, ...]
    positions: tuple[PortfolioLine, ...]
    invested: float
    current_value: float
    pnl: float
    pnl_pct: float | None
    positions_pnl: float


def _lines(value: object, what: str) -> tuple[PortfolioLine, ...]:
    # Kite answers positions as {"net": [...], "day": [...]}: the net book is the position.
    rows: Any = value.get("net") if isinstance(value, dict) else value
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        raise PortfolioError(f"{what}: expected a list, got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        try:
            w = _WireLine.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise PortfolioError(f"{what}[{i}].{where}: {first['msg']}") from None
        out.append(
            PortfolioLine(
                symbol=w.tradingsymbol,
                quantity=w.quantity,
                average_price=w.average_price,
                last_price=w.last_price,
                value=money(w.quantity * w.last_price),
                pnl=money(w.quantity * (w.last_price - w.average_price)),
            )
        )
    return tuple(out)


class PortfolioAdvisor(BaseAgent):
    """A snapshot of the user's broker account: the user's token is read from the ``vault``
    (encrypted at rest) for the message's ``user_id``, holdings and positions come from the
    ``source`` (``McpPortfolioSource(url)``: the MCP tools get_holdings and get_positions).
    Each line's value is quantity x last price and its P&L quantity x (last - average price);
    holdings are totalled (invested, current value, P&L and its percentage), positions' P&L
    apart. The snapshot is classified ``pii``. Both parameters are required to answer."""

    capabilities = ("portfolio_advice",)
    risk = Risk.HIGH
    produces = (PortfolioSnapshot,)

    def __init__(
        self,
        id: str,
        *,
        source: PortfolioSource | None = None,
        vault: TokenVault | None = None,
    ) -> None:
        super().__init__(id)
        self.source, self.vault = source, vault

    @handler
    async def on_request(self, payload: PortfolioRequest, ctx: Context) -> Message:
        if self.source is None or self.vault is None:
            missing = " and ".join(
                n for n, v in (("source", self.source), ("vault", self.vault)) if v is None
            )
            raise ValueError(f"portfolio_advisor: no {missing} configured")
        user = ctx.message.metadata.get("user_id")
        if not isinstance(user, str) or not user:
            raise ValueError("portfolio_advisor: the message has no user_id metadata")
        raw_holdings, raw_positions = await self.source.fetch(self.vault.get(user))
        holdings = _lines(raw_holdings, HOLDINGS_TOOL)
        positions = _lines(raw_positions, POSITIONS_TOOL)
        invested = money(sum(h.quantity * h.average_price for h in holdings))
        current = money(sum(h.value for h in holdings))
        pnl = money(current - invested)
        snapshot = PortfolioSnapshot(
            user_id=user,
            holdings=holdings,
            positions=positions,
            invested=invested,
            current_value=current,
            pnl=pnl,
            pnl_pct=round(100 * pnl / invested, 2) if invested else None,
            positions_pnl=money(sum(p.pnl for p in positions)),
        )
        return ctx.emit(snapshot, classification=Classification.PII)
