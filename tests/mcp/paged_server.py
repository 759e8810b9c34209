"""An MCP server on stdio that lists its tools a page at a time, as the spec lets a server
with many tools do (``nextCursor``): one tool a page. With the argument ``loop``, its last
page points back to its first, as a careless or hostile server may."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

NAMES = ("first", "second", "third")
LOOP = "loop" in sys.argv[1:]


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    page = int(params.cursor) if params is not None and params.cursor else 0
    following = str(page + 1) if page + 1 < len(NAMES) else ("0" if LOOP else None)
    tool = types.Tool(name=NAMES[page], input_schema={"type": "object"})
    return types.ListToolsResult(tools=[tool], next_cursor=following)


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=params.name)])


async def main() -> None:
    server = Server("paged", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
