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

from .._base.json_form import unfit_for_json
from .._base.record import Record
from .._errors import ToolArgumentsError

__all__ = [
    "MAX_TOOL_ANSWER",
    "ToolOutput",
    "sendable",
    "ToolServer",
    "ToolSession",
    "ToolSpec",
    "Tools",
]

# Bytes of a tool server's answer over HTTP (``max_answer``) unless its declaration says: a
# document or a table is an answer, a server streaming without end is not.
MAX_TOOL_ANSWER = 1024 * 1024


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


def sendable(server: str, tool: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """A call's ``arguments`` as the dict to judge and send; raises ``ToolArgumentsError``
    naming where they hold what JSON cannot carry exactly (NaN, bytes, a set, a key that is
    not text, ...), whatever the tool's schema: an encoder would send something else than
    was judged (NaN as null), or fail late inside the session, and a policy reading the call
    as JSON would fail on it. Asked before the call is judged, so nothing is sent, judged,
    audited or counted. A ``tool`` that is not text is refused here too: it names no tool."""
    if not isinstance(tool, str):
        problem = f"the tool's name is no text: got {type(tool).__name__}"
        raise ToolArgumentsError(server, "", "", problem)
    if arguments is None:
        return {}
    if not isinstance(arguments, Mapping):
        raise ToolArgumentsError(
            server, tool, "", f"not a mapping of names to values: got {type(arguments).__name__}"
        )
    given = dict(arguments)
    found = unfit_for_json(given)
    if found is not None:
        field = ".".join(str(step) for step in found.path)
        raise ToolArgumentsError(server, tool, field, found.problem)
    return given
