"""``genie mcp``: pipelines as the tools of an MCP server on stdin and stdout."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

from .._errors import ConfigurationError
from .._runtime.audit import AuditSink
from .._runtime.runtime import Runtime
from ..pipeline import Pipeline
from ._tools import AssertedCaller, PipelineTools

__all__ = ["serve_stdio"]


async def serve_stdio(
    pipelines: Sequence[Pipeline],
    caller: AssertedCaller,
    *,
    audit: AuditSink | None = None,
    stdin: anyio.AsyncFile[str] | None = None,
    stdout: anyio.AsyncFile[str] | None = None,
) -> None:
    """Start each pipeline in a runtime of its own and serve them as tools until the client
    closes the pipe; every call is ``caller``'s. The runtimes close (draining) on the way out."""
    # Refused here, not by the first call: a lone Pipeline is no list of them, and a caller
    # that cannot stamp its identity would fail every call as an internal error.
    if isinstance(pipelines, Pipeline) or not all(isinstance(p, Pipeline) for p in pipelines):
        raise ConfigurationError(
            f"serve_stdio: pipelines must be a list of Pipeline, not {type(pipelines).__name__}"
        )
    if not (isinstance(getattr(caller, "principal", None), str) and hasattr(caller, "stamp")):
        raise ConfigurationError(
            f"serve_stdio: caller must be an AssertedCaller (who calls), not {caller!r}"
        )
    names = [p.name for p in pipelines]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"two pipelines share a name: {sorted(names)}")
    async with AsyncExitStack() as stack:
        served: dict[str, tuple[Pipeline, Runtime]] = {}
        for pipeline in pipelines:
            llm = pipeline.llm_stacks()
            if llm is not None:
                stack.push_async_callback(llm.aclose)
            rt = pipeline.runtime(audit=audit, llm=llm)
            await stack.enter_async_context(rt)
            served[pipeline.name] = (pipeline, rt)
        server = PipelineTools(served, audit).server(lambda ctx: caller)
        streams: Any = stdio_server(stdin, stdout)
        async with streams as (read, write):
            await server.run(read, write, server.create_initialization_options())
