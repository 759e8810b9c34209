"""A small broker's MCP server on stdio, written with the MCP SDK, for the tests of
``ctx.tool``: holdings, a sum, a contact card (personal data), a slow tool, a failing tool,
a crash of the whole server, and its process id (to see that one session serves every call)."""

from __future__ import annotations

import json
import os

import anyio
from mcp.server.mcpserver import MCPServer

HOLDINGS = [
    {"tradingsymbol": "INFY", "quantity": 10, "average_price": 1400.0, "last_price": 1500.0},
    {"tradingsymbol": "TCS", "quantity": 5, "average_price": 4000.0, "last_price": 3900.0},
]

server = MCPServer("broker-fixture")


@server.tool()
def get_holdings() -> str:
    """The user's holdings, as the broker answers them."""
    return json.dumps(HOLDINGS)


@server.tool()
def add(a: int, b: int) -> int:
    """a + b."""
    return a + b


@server.tool()
def contact(name: str) -> str:
    """A contact card: a person's e-mail address."""
    return f"{name}: write to {name.lower()}.sharma@example.com"


@server.tool()
async def wait(seconds: float) -> str:
    """Answers after ``seconds``."""
    await anyio.sleep(seconds)
    return "done"


@server.tool()
def broken() -> str:
    """Always fails."""
    raise ValueError("the broker is down")


@server.tool()
def crash() -> str:
    """Ends the server's process in the middle of the call, as a crashed server does."""
    os._exit(1)


@server.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


if __name__ == "__main__":
    server.run()
