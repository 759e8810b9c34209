"""The ``genie mcp`` command: pipelines as the tools of an MCP server on stdin and stdout, for
a desktop client or an agent that starts it (docs/tools.md).

Imports nothing heavy until the command runs, so ``genie --help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import anyio

from .._errors import ConfigurationError
from ..pipeline._args import _variables
from .audit_key import add_audit_options, audit_log_key
from .loop import add_loop_option, run_on, stop_on_signal

__all__ = ["add_parser"]

_NAME = re.compile(r"^[A-Za-z0-9_.@:-]+$")  # as a principal in an API key file


def add_parser(commands: Any) -> None:
    mcp = commands.add_parser(
        "mcp",
        help="serve pipelines as MCP tools on stdin and stdout",
        description="Serve each PIPELINE as a tool of an MCP server on stdin and stdout until "
        "the client closes the pipe: its input is the entry payload, its result the run's "
        "result. Every call is a request from --principal, governed and audited. Needs the "
        "'mcp' extra. Exit 0 when the client closes, 2 for a bad pipeline or option "
        "(docs/tools.md).",
    )
    mcp.add_argument("pipelines", nargs="+", metavar="PIPELINE", help="pipeline YAML files")
    mcp.add_argument(
        "--principal",
        default="mcp",
        help="who calls: written as user_id into every request (default mcp)",
    )
    mcp.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="ROLE",
        help="a role of the principal, written into user_roles; repeatable",
    )
    mcp.add_argument(
        "--tracebacks",
        action="store_true",
        help="results say where a failed handler raised (for developers)",
    )
    mcp.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="set ${KEY} in the pipeline files (over the environment); repeatable",
    )
    add_audit_options(mcp)
    add_loop_option(mcp)
    mcp.set_defaults(func=_mcp)


def _mcp(args: argparse.Namespace) -> int:
    try:
        from ..mcp import AssertedCaller, serve_stdio
    except ImportError as exc:
        raise ConfigurationError(
            "genie mcp needs the 'mcp' extra: pip install 'genie-bus[mcp]'"
        ) from exc
    from .._runtime.audit import JsonlAuditLog
    from ..pipeline import load_pipeline

    for name in (args.principal, *args.role):
        if not _NAME.match(name):
            raise ConfigurationError(
                f"{name!r} is not a principal or role name: letters, digits and _ . @ : - only"
            )
    variables = _variables(args.set)
    pipelines = [load_pipeline(path, variables=variables) for path in args.pipelines]
    key, keyed_how = audit_log_key(args)
    try:
        audit = JsonlAuditLog(args.audit, key=key) if args.audit else None
    except OSError as exc:
        raise ConfigurationError(f"cannot open audit log {args.audit}: {exc.strerror}") from exc
    caller = AssertedCaller(args.principal, tuple(args.role), args.tracebacks)
    names = ", ".join(p.name for p in pipelines)
    print(f"genie mcp: {names} as tools of {caller.principal}, on stdio", file=sys.stderr)
    if keyed_how:
        print(f"genie mcp: audit log {args.audit} {keyed_how}", file=sys.stderr)

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(stop_on_signal, tg.cancel_scope)
            await serve_stdio(pipelines, caller, audit=audit)
            tg.cancel_scope.cancel()  # the client closed the pipe

    try:
        run_on(args.loop, serve)
    finally:
        if audit is not None:
            audit.close()
    return 0
