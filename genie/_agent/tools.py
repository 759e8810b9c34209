"""What a handler's tools are: servers of named tools (an MCP server is one: ``genie.mcp``),
reached through ``ctx.tool(server)``.

A ``ToolServer`` is a declaration; ``connect()`` opens a ``ToolSession`` to it, which the
runtime keeps open while it runs and shares between handlers. ``Tools`` is what a handler
holds: ``await ctx.tool("broker").call("get_holdings", {})``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .._base.record import Record

__all__ = [
    "ToolOutput",
    "ToolServer",
    "ToolSession",
    "ToolSpec",
    "Tools",
]


class ToolSpec(Record):
    """One tool of a server: its name, what it does, the JSON schema of its arguments."""

    name: str
    description: str
    input_schema: Mapping[str, Any]


class ToolOutput(Record):
    """What a tool answered: its text, its structured result (a JSON object) when it gave
    one, and whether the tool itself reported an error."""

    text: str
    structured: Mapping[str, Any] | None = None
    is_error: bool = False


class ToolSession(Protocol):
    """An open connection to a tool server, shared by every handler that calls it."""

    async def list_tools(self) -> Sequence[ToolSpec]: ...

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        """Call ``name``; raises ``ToolArgumentsError`` (before anything is sent) when the
        arguments do not fit its schema, ``ToolCallError`` when it cannot be called."""
        ...


class ToolServer(Protocol):
    """A server of tools, declared: ``connect`` opens a session for as long as the context
    manager is open (the runtime opens it at the first call and closes it when it stops).
    ``timeout``: seconds the opening may take, and each call's answer."""

    @property
    def timeout(self) -> float: ...

    def connect(self) -> AbstractAsyncContextManager[ToolSession]: ...


class Tools(Protocol):
    """One server's tools as a handler calls them (``ctx.tool(server)``)."""

    async def list(self) -> Sequence[ToolSpec]: ...

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolOutput: ...
