"""portfolio_advisor against a real MCP server (streamable HTTP on 127.0.0.1, started here),
and the TokenVault that keeps the user's token encrypted at rest."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from genie_agents.connectors import McpPortfolioSource, PortfolioAdvisor, TokenVault
from genie_agents.connectors.portfolio import PortfolioError, PortfolioRequest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from genie import Classification, ConfigurationError, Runtime
from genie.policies import load_policy_file

from .helpers import call


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test's MCP server runs on uvicorn, which needs asyncio


ROOT = Path(__file__).resolve().parents[2]
TOKEN = "kite-access-token-0042"
HOLDINGS: list[dict[str, Any]] = [
    # As Kite answers, with fields the advisor does not use.
    {"tradingsymbol": "INFY", "exchange": "NSE", "isin": "INE009A01021", "quantity": 10,
     "t1_quantity": 0, "average_price": 1400.0, "last_price": 1500.0, "pnl": 1000.0},
    {"tradingsymbol": "TCS", "exchange": "NSE", "isin": "INE467B01029", "quantity": 5,
     "t1_quantity": 0, "average_price": 4000.0, "last_price": 3900.0, "pnl": -500.0},
]  # fmt: skip
POSITIONS = {
    "net": [
        {"tradingsymbol": "NIFTY26JANFUT", "product": "NRML", "quantity": 50,
         "average_price": 22000.0, "last_price": 22025.5, "pnl": 1275.0},
    ],
    "day": [],
}  # fmt: skip


def kite_fixture() -> MCPServer:
    server = MCPServer("kite-fixture")

    @server.tool()
    def get_holdings() -> str:
        return json.dumps(HOLDINGS)

    @server.tool()
    def get_positions() -> str:
        return json.dumps(POSITIONS)

    return server


def bearer_only(app: Any, token: str) -> Any:
    """Refuse every HTTP request without the token, as the broker's server does."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        authorization = dict(scope.get("headers", [])).get(b"authorization")
        if scope["type"] == "http" and authorization != f"Bearer {token}".encode():
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    return asgi


@asynccontextmanager
async def mcp_server(server: MCPServer) -> AsyncIterator[str]:
    """Serve ``server`` over streamable HTTP on a free port of 127.0.0.1; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = bearer_only(server.streamable_http_app(), TOKEN)
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(uv.serve, [sock])
        with anyio.fail_after(10):
            # uvicorn shows readiness only as this flag (no event, no task_status).
            while not uv.started:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            uv.should_exit = True
    sock.close()


@pytest.fixture
def vault(tmp_path: Path) -> TokenVault:
    v = TokenVault(tmp_path / "tokens.json", TokenVault.generate_key())
    v.put("user-1", TOKEN)
    return v


async def test_snapshot_from_the_mcp_server(vault: TokenVault) -> None:
    async with mcp_server(kite_fixture()) as url:
        agent = PortfolioAdvisor("portfolio_advisor", source=McpPortfolioSource(url), vault=vault)
        [out] = await call(agent, PortfolioRequest(), metadata={"user_id": "user-1"})
    snap = out.payload
    assert out.classification is Classification.PII
    assert [(h.symbol, h.value, h.pnl) for h in snap.holdings] == [
        ("INFY", 15_000.0, 1_000.0),  # 10 x 1,500; 10 x (1,500 - 1,400)
        ("TCS", 19_500.0, -500.0),  # 5 x 3,900; 5 x (3,900 - 4,000)
    ]
    # Invested 14,000 + 20,000; now 34,500: +500, 500 / 34,000 = 1.47 %.
    assert (snap.invested, snap.current_value, snap.pnl, snap.pnl_pct) == (
        34_000.0,
        34_500.0,
        500.0,
        1.47,
    )
    [future] = snap.positions
    assert (future.symbol, future.value, future.pnl) == ("NIFTY26JANFUT", 1_101_275.0, 1_275.0)
    assert snap.positions_pnl == 1_275.0


async def test_a_wrong_token_is_refused_by_the_server(tmp_path: Path) -> None:
    vault = TokenVault(tmp_path / "t.json", TokenVault.generate_key())
    vault.put("user-1", "stale-token")
    async with mcp_server(kite_fixture()) as url:
        agent = PortfolioAdvisor("p", source=McpPortfolioSource(url), vault=vault)
        with pytest.raises(PortfolioError, match=f"MCP server {url}: .*"):
            await call(agent, PortfolioRequest(), metadata={"user_id": "user-1"})


async def test_tool_errors_and_bad_answers_are_named(vault: TokenVault) -> None:
    broken = MCPServer("broken")

    @broken.tool()
    def get_holdings() -> str:
        return json.dumps([{"tradingsymbol": "INFY", "quantity": "ten"}])

    @broken.tool()
    def get_positions() -> str:
        raise ToolError("positions are down")

    async with mcp_server(broken) as url:
        source = McpPortfolioSource(url)
        with pytest.raises(
            PortfolioError, match=r"tool get_positions failed: .*: positions are down"
        ):
            await source.fetch(TOKEN)

    only_holdings = MCPServer("half")

    @only_holdings.tool(name="get_holdings")
    def bad_holdings() -> str:
        return json.dumps([{"tradingsymbol": "INFY", "quantity": "ten"}])

    @only_holdings.tool(name="get_positions")
    def no_positions() -> str:
        return "[]"

    async with mcp_server(only_holdings) as url:
        agent = PortfolioAdvisor("p", source=McpPortfolioSource(url), vault=vault)
        with pytest.raises(PortfolioError, match=r"get_holdings\[0\]\.quantity: "):
            await call(agent, PortfolioRequest(), metadata={"user_id": "user-1"})


async def test_an_answer_is_bounded_as_a_tool_servers(vault: TokenVault) -> None:
    """The source's own MCP client read an answer of any size into memory; it now goes
    through genie's (``McpServer``), so an answer over ``max_answer`` bytes (1 MiB unless
    given, as for any tool server) is refused by name."""
    big = MCPServer("big")
    many = [{**HOLDINGS[0], "tradingsymbol": f"S{i:06}"} for i in range(8000)]  # over 1 MiB

    @big.tool()
    def get_holdings() -> str:
        return json.dumps(many)

    @big.tool()
    def get_positions() -> str:
        return "[]"

    async with mcp_server(big) as url:
        with pytest.raises(
            PortfolioError, match=rf"MCP server {url}: .*over max_answer, 1048576 bytes"
        ):
            await McpPortfolioSource(url).fetch(TOKEN)
        holdings, positions = await McpPortfolioSource(url, max_answer=4 << 20).fetch(TOKEN)
    assert (holdings, positions) == (many, [])
    with pytest.raises(ConfigurationError, match="max_answer must be a whole number"):
        McpPortfolioSource("http://127.0.0.1/mcp", max_answer=0)


async def test_unreachable_server_and_missing_configuration(vault: TokenVault) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    sock.close()  # nothing listens there
    with pytest.raises(PortfolioError, match=f"MCP server {closed}: "):
        await McpPortfolioSource(closed, timeout=5).fetch(TOKEN)
    with pytest.raises(ValueError, match="no source and vault configured"):
        await call(PortfolioAdvisor("portfolio_advisor"), PortfolioRequest())
    agent = PortfolioAdvisor("p", source=McpPortfolioSource(closed), vault=vault)
    with pytest.raises(ValueError, match="the message has no user_id metadata"):
        await call(agent, PortfolioRequest())
    with pytest.raises(LookupError, match="no token stored for user 'user-2'"):
        await call(agent, PortfolioRequest(), metadata={"user_id": "user-2"})


async def test_the_board_policy_needs_portfolio_consent(vault: TokenVault) -> None:
    # The shipped board policy maps portfolio_request to the "portfolio" consent category.
    from genie.policies import InMemoryConsentLedger

    ledger = InMemoryConsentLedger()
    policies = load_policy_file(ROOT / "config" / "policies" / "ai-policy.yaml", ledger)
    meta = {"user_id": "user-1", "user_roles": ["advisor"]}
    async with mcp_server(kite_fixture()) as url:
        agent = PortfolioAdvisor("portfolio_advisor", source=McpPortfolioSource(url), vault=vault)
        async with Runtime([agent], policies=policies.policies) as rt:
            msg = rt.message(PortfolioRequest(), recipient="portfolio_advisor", metadata=meta)
            denied = await rt.ask(msg, until="portfolio_snapshot", timeout=10)
            assert denied.status == "partial"
            assert "missing active consent for category portfolio" in str(denied.missing)
            ledger.grant("user-1", "portfolio")
            msg = rt.message(PortfolioRequest(), recipient="portfolio_advisor", metadata=meta)
            answered = await rt.ask(msg, until="portfolio_snapshot", timeout=10)
    assert answered.complete
    assert answered.message.classification is Classification.PII


# --- TokenVault -------------------------------------------------------------------------------
def test_vault_round_trip_encrypted_and_private(vault: TokenVault) -> None:
    assert vault.get("user-1") == TOKEN
    raw = vault.path.read_text()
    assert TOKEN not in raw
    assert json.loads(raw)["version"] == 1
    assert stat.S_IMODE(vault.path.stat().st_mode) == 0o600
    vault.put("user-2", "second")
    assert (vault.get("user-1"), vault.get("user-2")) == (TOKEN, "second")
    vault.remove("user-1")
    with pytest.raises(LookupError, match="no token stored for user 'user-1'"):
        vault.get("user-1")
    assert sorted(p.name for p in vault.path.parent.iterdir()) == ["tokens.json"]  # no temp left


def test_vault_wrong_key_or_tampering_does_not_decrypt(vault: TokenVault) -> None:
    other = TokenVault(vault.path, TokenVault.generate_key())
    with pytest.raises(ValueError, match="does not decrypt: wrong key, or the file was altered"):
        other.get("user-1")
    data = json.loads(vault.path.read_text())
    sealed = data["tokens"]["user-1"]
    data["tokens"]["user-1"] = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    vault.path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not decrypt"):
        vault.get("user-1")


def test_vault_rotate_keeps_tokens_under_the_new_key(vault: TokenVault) -> None:
    new_key = TokenVault.generate_key()
    vault.rotate(new_key)
    assert TokenVault(vault.path, new_key).get("user-1") == TOKEN
    assert vault.get("user-1") == TOKEN


def test_vault_bad_key_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 url-safe base64-encoded bytes"):
        TokenVault(tmp_path / "v.json", "not-a-key")
    bad = tmp_path / "v.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"v\.json: not a token vault"):
        TokenVault(bad, TokenVault.generate_key()).get("u")
    bad.write_text(json.dumps({"version": 2, "tokens": {}}))
    with pytest.raises(ValueError, match="not a version 1 token vault"):
        TokenVault(bad, TokenVault.generate_key()).get("u")
    with pytest.raises(ValueError, match="needs a user id and a non-empty token"):
        TokenVault(tmp_path / "w.json", TokenVault.generate_key()).put("u", "")
