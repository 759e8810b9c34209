"""The MCP server ``genie_bench.tool_cost`` calls on stdio: one ``quote`` tool, answered at once
(written with the MCP SDK; the ``mcp`` extra)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("bench-quotes")


@server.tool()
def quote(symbol: str, quantity: int) -> dict[str, float]:
    """The price of ``quantity`` shares of ``symbol``."""
    return {"price": 1500.0, "value": 1500.0 * quantity}


if __name__ == "__main__":
    server.run()
