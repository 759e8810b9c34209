"""An MCP server on stdio whose tools' input schemas are broken, as a careless or hostile
server may list them: a type that is not a type, a pattern that is not a regex, a ``$ref`` to
nowhere. Written with the SDK's low-level server, which sends whatever schema it is given.
Its tool ``anything`` takes any object and answers with what it read, and how many calls it
has read so far."""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

SCHEMAS: dict[str, dict[str, Any]] = {
    "bad_type": {"type": "object", "properties": {"a": {"type": 5}}},
    "bad_pattern": {"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}},
    "dangling_ref": {"type": "object", "properties": {"a": {"$ref": "#/$defs/nowhere"}}},
    "fine": {"type": "object", "properties": {"a": {"type": "string"}}},
    "anything": {"type": "object"},
}
CALLS = {"anything": 0}


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[types.Tool(name=name, input_schema=schema) for name, schema in SCHEMAS.items()]
    )


async def call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    text = "called"
    if params.name == "anything":
        CALLS["anything"] += 1
        text = json.dumps({"calls": CALLS["anything"], "arguments": params.arguments})
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def main() -> None:
    server = Server("hostile", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
