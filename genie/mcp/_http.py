"""The tools over streamable HTTP, for ``genie serve --mcp``: stateless, so each POST is
answered on its own as the caller its request authenticates (no session outlives a request,
and none can be continued by another key)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ._tools import Caller, PipelineTools

__all__ = ["HttpTools"]


class HttpTools:
    """``handle`` answers one MCP request over HTTP while ``running`` is entered;
    ``caller_of`` names the caller of an HTTP request the server has authenticated."""

    def __init__(
        self, tools: PipelineTools, caller_of: Callable[[Request], Caller], *, max_body: int
    ) -> None:
        def caller(ctx: Any) -> Caller:
            return caller_of(ctx.request)

        self._manager = StreamableHTTPSessionManager(
            tools.server(caller),
            json_response=True,
            stateless=True,
            max_request_body_size=max_body,
        )

    def running(self) -> AbstractAsyncContextManager[None]:
        return self._manager.run()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(scope, receive, send)
