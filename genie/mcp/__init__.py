"""MCP both ways (docs/tools.md); needs the ``mcp`` extra. A handler calls an MCP server's tools
through ``ctx.tool(name)`` when the runtime has it as ``McpServer(url=...)`` or
``McpServer(command=[...])`` (``Runtime(tools=...)``, or a pipeline's ``tools:``), and
genie's pipelines are MCP tools themselves.

Each pipeline is a tool: its input schema is the entry payload's, its result the run's result
(the output, what is missing, which policy denied what). Every call is a governed request with
its caller's identity, and the audit log records it.

    genie mcp config/pipelines/finance.yaml --principal alice   # stdio, for a desktop client
    genie serve config/pipelines/finance.yaml --keys keys.yaml  # and /mcp, per API key

From Python: ``PipelineTools({name: (pipeline, runtime)}, audit).server(caller_of)`` is the
SDK's low-level ``Server``; ``serve_stdio`` runs one on stdin and stdout.
"""

from ._client import McpServer as McpServer
from ._stdio import serve_stdio as serve_stdio
from ._tools import AssertedCaller as AssertedCaller
from ._tools import Caller as Caller
from ._tools import PipelineTools as PipelineTools

__all__ = ["AssertedCaller", "Caller", "McpServer", "PipelineTools", "serve_stdio"]
