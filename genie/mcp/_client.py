"""An MCP server as a handler's tool server (``ctx.tool(name)``), through the SDK's client: on
stdio (a command the runtime starts) or streamable HTTP (a URL)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import jsonschema
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .._agent.tools import MAX_TOOL_ANSWER, ToolOutput, ToolSession, ToolSpec
from .._base.resilience import at_least
from .._errors import ConfigurationError, ToolArgumentsError, ToolCallError, described

__all__ = ["McpServer"]


@dataclass(frozen=True, slots=True)
class McpServer:
    """An MCP server: ``url`` (streamable HTTP, sent ``headers``) or ``command`` (stdio: the
    program and its arguments, run in ``cwd`` with ``env`` added to the SDK's safe default
    environment). A call waits at most ``timeout`` seconds for its answer (the handler's own
    deadline may cut it first); over HTTP an answer is at most ``max_answer`` bytes (a JSON
    body, or one event of a stream)."""

    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    command: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: float = 30.0
    max_answer: int = MAX_TOOL_ANSWER

    def __post_init__(self) -> None:
        # A command given as one string is a sequence too: its first character would be run
        # as the program, the others as its arguments.
        if isinstance(self.command, str) or not all(isinstance(c, str) for c in self.command):
            raise ConfigurationError(
                f"an MCP server's command is the program and its arguments, a list of text, "
                f"not {self.command!r}"
            )
        if self.url is not None and not isinstance(self.url, str):
            raise ConfigurationError(f"an MCP server's url must be text, not {self.url!r}")
        if (self.url is None) == (not self.command):
            raise ConfigurationError("an MCP server needs exactly one of url and command")
        if not at_least(self.timeout, 0, strictly=True):  # NaN too: no call would wait for it
            raise ConfigurationError(
                f"an MCP server's timeout must be a number of seconds above 0, not {self.timeout!r}"
            )
        size = self.max_answer
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigurationError(
                f"an MCP server's max_answer must be a whole number of bytes above 0, not {size!r}"
            )

    @property
    def where(self) -> str:
        """How errors name the server: its command, or its URL without the secrets a URL may
        carry (a password, the query's tokens), as its errors reach dead letters, logs and a
        served client's answer."""
        return _shown(self.url) if self.url is not None else " ".join(self.command)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ToolSession]:
        if self.url is not None:
            # Unencoded, so the bytes counted are the answer's own, not a compressed bomb's.
            headers = httpx2.Headers(self.headers)
            headers["Accept-Encoding"] = "identity"
            http = httpx2.AsyncClient(
                headers=headers,
                timeout=self.timeout,
                event_hooks={"response": [_bounded_answers(self)]},
            )
            connection = streamable_http_client(
                self.url, http_client=http, max_sse_event_size=self.max_answer
            )
            async with (
                http,
                Client(connection) as client,
                _held(client, self) as session,
            ):
                yield session
        else:
            from mcp.client.stdio import get_default_environment

            params = StdioServerParameters(
                command=self.command[0],
                args=list(self.command[1:]),
                env={**get_default_environment(), **self.env},
                cwd=self.cwd,
            )
            async with (
                Client(stdio_client(params, errlog=_server_log())) as client,
                _held(client, self) as session,
            ):
                yield session


def _bounded_answers(server: McpServer) -> Callable[[httpx2.Response], Awaitable[None]]:
    """A response hook that stops an answer in one body (JSON) at the server's
    ``max_answer`` bytes: a stream's events are bounded one by one by the SDK's client, as
    the stream may rightly carry notices for as long as the call lasts. The overflow is a
    stream error, which the SDK's client hands to the call that waits for the answer. A
    hook, not a transport: a client given a transport ignores the proxies of the
    environment."""

    async def bound(response: httpx2.Response) -> None:
        kind = response.headers.get("content-type", "").lower()
        if kind.startswith("text/event-stream"):
            return
        assert isinstance(response.stream, httpx2.AsyncByteStream)  # an async client's
        encoding = response.headers.get("content-encoding", "identity").lower()
        response.stream = _Bounded(response.stream, encoding, server)

    return bound


class _Bounded(httpx2.AsyncByteStream):
    """A body, cut with an error past the server's ``max_answer`` bytes, or at once when it
    comes ``encoding`` (compressed) though it was asked for unencoded."""

    def __init__(self, body: httpx2.AsyncByteStream, encoding: str, server: McpServer) -> None:
        self._body = body
        self._encoding = encoding
        self._server = server

    async def __aiter__(self) -> AsyncIterator[bytes]:
        where, limit, encoding = self._server.where, self._server.max_answer, self._encoding
        if encoding != "identity":
            raise httpx2.StreamError(
                f"tool server {where}: its answer came encoded ({encoding}), though asked "
                "for unencoded: its size cannot be bounded"
            )
        read = 0
        async for chunk in self._body:
            read += len(chunk)
            if read > limit:
                raise httpx2.StreamError(
                    f"tool server {where}: its answer is over max_answer, {limit} bytes"
                )
            yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()


@asynccontextmanager
async def _held(client: Client, server: McpServer) -> AsyncIterator[ToolSession]:
    """The session of ``client`` while its connection lasts. Once a call finds the connection
    closed (the server's process ended), the holder's wait is cut and ``ToolCallError`` raised:
    the runtime drops the dead session, and the next call opens a new one."""
    session = await _McpSession.open(client, server)
    async with anyio.create_task_group() as tg:
        tg.start_soon(session.watch, tg.cancel_scope)
        yield session
        tg.cancel_scope.cancel()
    if session.lost.is_set():
        raise ToolCallError(f"tool server {server.where}: the connection closed")


def _shown(url: str) -> str:
    """``url`` with its user information and query blanked (``https://***@host/mcp?***``)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all: the connection says so; no part of it is shown
        return "(a URL that cannot be read)"
    _, at, host = parts.netloc.rpartition("@")
    netloc = f"***@{host}" if at else host
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def _server_log() -> TextIO:
    """Where a server on stdio writes its log: this process's stderr, or the process's original
    one when stderr was replaced by something without a file descriptor (a notebook, a test's
    capture), since the server is a process and needs one."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    return open(os.devnull, "w")


class _McpSession:
    """One open client session: the server's tools listed once, each call's arguments
    checked against its tool's schema before anything is sent."""

    def __init__(self, client: Client, server: McpServer, tools: Sequence[types.Tool]) -> None:
        self._client = client
        self._server = server
        self._specs = {
            t.name: ToolSpec(
                name=t.name, description=t.description or "", input_schema=dict(t.input_schema)
            )
            for t in tools
        }
        # The arguments come here checked for what JSON carries (``sendable``: no NaN, bytes
        # or lone surrogate), so the schema's own types read them as the server will.
        self._checks = {
            t.name: jsonschema.Draft202012Validator(dict(t.input_schema)) for t in tools
        }
        self.lost = anyio.Event()  # a call found the connection closed

    async def watch(self, held: anyio.CancelScope) -> None:
        """Cancels ``held``, the holder's wait, once the connection is lost."""
        await self.lost.wait()
        held.cancel()

    @classmethod
    async def open(cls, client: Client, server: McpServer) -> _McpSession:
        """The session, with every page of the server's tool list (``nextCursor``): a tool
        listed past the first page is as callable as the others."""
        listed = await client.list_tools()
        tools, seen = list(listed.tools), set[str]()
        while listed.next_cursor is not None:
            if listed.next_cursor in seen:  # else listed again until the opening's deadline
                raise ToolCallError(
                    f"tool server {server.where}: its tool list's pages loop (cursor "
                    f"{listed.next_cursor!r} given twice)"
                )
            seen.add(listed.next_cursor)
            listed = await client.list_tools(cursor=listed.next_cursor)
            tools += listed.tools
        return cls(client, server, tools)

    async def list_tools(self) -> Sequence[ToolSpec]:
        return list(self._specs.values())

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        where = self._server.where
        check = self._checks.get(name)
        if check is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise ToolArgumentsError(where, name, "", f"no such tool (tools: {known})")
        try:
            problem = next(iter(sorted(check.iter_errors(arguments), key=_depth)), None)
        except Exception as exc:  # the server's schema: a type, a pattern or a $ref that is not
            detail = described(exc)
            raise ToolCallError(
                f"tool {name!r} of {where}: its input schema cannot be checked: {detail}"
            ) from exc
        if problem is not None:
            raise ToolArgumentsError(where, name, _field(problem), problem.message)
        try:
            result = await self._client.call_tool(
                name, dict(arguments), read_timeout_seconds=self._server.timeout
            )
        except Exception as exc:  # the SDK's transport and protocol errors, as one kind
            if isinstance(exc, MCPError) and exc.code == types.CONNECTION_CLOSED:
                self.lost.set()
            detail = described(exc)
            raise ToolCallError(f"tool {name!r} of {where}: {detail}") from exc
        if not isinstance(result, types.CallToolResult):
            raise ToolCallError(
                f"tool {name!r} of {where}: it asked for input, which no handler gives"
            )
        return ToolOutput(
            text="\n".join(_text(part) for part in result.content),
            structured=result.structured_content,
            is_error=bool(result.is_error),
        )


def _depth(error: jsonschema.ValidationError) -> int:
    return len(error.absolute_path)


def _field(error: jsonschema.ValidationError) -> str:
    """The argument an error is about: its path, or the property a ``required`` misses."""
    if error.absolute_path:
        return ".".join(str(p) for p in error.absolute_path)
    instance, schema, wanted = error.instance, error.schema, error.validator_value
    if not isinstance(instance, Mapping):
        return ""
    if error.validator == "required" and isinstance(wanted, list):
        missing = [p for p in wanted if p not in instance]
        return str(missing[0]) if missing else ""
    if error.validator == "additionalProperties" and isinstance(schema, Mapping):
        allowed = schema.get("properties", {})
        extra = [p for p in instance if p not in allowed]
        return str(extra[0]) if extra else ""
    return ""


def _text(part: Any) -> str:
    """A content part as text: text as itself, anything else named by its type."""
    text = getattr(part, "text", None)
    return text if isinstance(text, str) else f"[{getattr(part, 'type', 'content')}]"
