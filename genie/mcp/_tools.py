"""Pipelines as MCP tools: each pipeline is a tool whose input is its entry payload and whose
result is the run's result, and each call is one governed request carrying its caller's
identity, recorded in the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from .._base.resilience import at_least
from .._base.tracecontext import TraceParent
from .._errors import (
    ConfigurationError,
    InvalidMessageError,
    RuntimeClosedError,
    WouldBlockError,
    did_you_mean,
)
from .._runtime.audit import AuditRecord, AuditSink
from .._runtime.runtime import Runtime
from ..pipeline import Pipeline, RunResult

__all__ = ["AssertedCaller", "Caller", "PipelineTools"]

ACTOR = "genie-mcp"  # who writes a tool call's audit record


class Caller(Protocol):
    """Who calls a tool: the identity its request carries (``genie.serve.ApiKey`` is one)."""

    @property
    def principal(self) -> str: ...

    @property
    def tracebacks(self) -> bool: ...

    def stamp(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The request's metadata with the caller's identity written over it."""
        ...


@dataclass(frozen=True, slots=True)
class AssertedCaller:
    """The caller of a server on stdio: its identity is whatever started the server says
    (``genie mcp --principal NAME --role ROLE``), as nothing on a pipe can prove one."""

    principal: str = "mcp"
    roles: tuple[str, ...] = ()
    tracebacks: bool = False

    def stamp(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The principal as ``user_id``; the roles as ``user_roles`` when any are asserted
        (else the pipeline's entry says which roles its callers have)."""
        stamped = {**metadata, "user_id": self.principal}
        if self.roles:
            stamped["user_roles"] = ",".join(self.roles)
        return stamped


def entry_defaults(pipeline: Pipeline) -> dict[str, Any]:
    """What a call need not give: the entry's own payload values, and its default input
    mapped onto the payload as ``genie run`` does without ``--input``."""
    spec = pipeline.config.entry.input
    if spec is None or spec.default is None:
        return dict(pipeline.config.entry.payload)
    payload = pipeline.entry_payload(pipeline.read_input())
    return payload.model_dump(mode="json", exclude_unset=True)


def input_schema(pipeline: Pipeline, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The entry payload's JSON schema; a field with a default is not required of the caller
    (the entry's own short values are shown as the default, a default input file is named)."""
    schema = pipeline.entry_model.model_json_schema()
    properties = schema.get("properties", {})
    spec = pipeline.config.entry.input
    for name, value in defaults.items():
        if name not in properties:
            continue
        if spec is not None and spec.default is not None and name == spec.field:
            note = f"Default: the text of {spec.default} (the pipeline's default input)."
            described = properties[name].get("description")
            properties[name] = {
                **properties[name],
                "description": f"{described or ''} {note}".strip(),
            }
        else:
            properties[name] = {**properties[name], "default": value}
    required = [r for r in schema.get("required", ()) if r not in defaults]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


def summary(name: str, result: RunResult) -> str:
    """One paragraph a model or a person reads first: what came out, what is missing and
    who denied what, never hidden behind a status."""
    lines = [f"pipeline {name!r}: {result.status} (correlation {result.correlation_id})"]
    if result.output is not None:
        payload = result.output.payload.model_dump(mode="json")
        lines.append(
            f"output {result.output.type} from {result.output.sender}: {json.dumps(payload)}"
        )
    lines += [f"denied by {d.policy} to {d.recipient}: {d.reason}" for d in result.denials]
    lines += [f"missing {m.key} ({m.kind}): {m.reason}" for m in result.missing]
    lines += [f"dead letter at {d.agent_id} ({d.kind}): {d.reason}" for d in result.dead_letters]
    return "\n".join(lines)


class PipelineTools:
    """The tools of running pipelines, ``{name: (pipeline, runtime)}``: ``server`` is the MCP
    server (the SDK's low-level ``Server``) that lists and calls them. ``audit`` records each
    call: who, which pipeline, the correlation, the outcome. ``max_timeout`` bounds a call's
    wait whatever the pipeline's timeout says (a server's ceiling). ``asked`` is told each
    call's caller and correlation id as its request is sent (``genie serve`` names it to a
    caller whose call the server stopped under)."""

    def __init__(
        self,
        served: Mapping[str, tuple[Pipeline, Runtime]],
        audit: AuditSink | None = None,
        *,
        max_timeout: float | None = None,
        asked: Callable[[Caller, str], object] | None = None,
    ) -> None:
        for name, given in served.items():
            if not (
                isinstance(given, tuple)
                and len(given) == 2
                and isinstance(given[0], Pipeline)
                and isinstance(given[1], Runtime)
            ):
                raise ConfigurationError(
                    f"PipelineTools: served[{name!r}] must be (pipeline, runtime), a Pipeline "
                    f"and the Runtime it runs in, not {type(given).__name__}"
                )
        # Checked here, not by each call: 0 would time every call out, text fail each one.
        if max_timeout is not None and not at_least(max_timeout, 0, strictly=True):
            raise ConfigurationError(
                f"PipelineTools: max_timeout must be seconds above 0, or None, not {max_timeout!r}"
            )
        self.served = dict(served)
        # Read once, before the first call: a missing default input is said at start.
        self.defaults = {name: entry_defaults(p) for name, (p, _) in self.served.items()}
        self.audit = audit
        self.max_timeout = max_timeout
        self.asked = asked

    def tools(self) -> list[types.Tool]:
        return [
            types.Tool(
                name=name,
                description=pipeline.config.description or f"the {name} pipeline",
                input_schema=input_schema(pipeline, self.defaults[name]),
            )
            for name, (pipeline, _) in self.served.items()
        ]

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None, caller: Caller
    ) -> types.CallToolResult:
        """Run ``name`` once for ``caller``: the arguments over the entry's own values make the
        entry payload; a mistake in them is an error result naming the field."""
        found = self.served.get(name)
        if found is None:
            # Recorded as every call is: a principal trying names leaves a trail.
            self._record(caller, name, "", "unknown_tool", {})
            known = ", ".join(sorted(self.served)) or "none"
            return _error(
                f"no pipeline {name!r} is served{did_you_mean(name, self.served)} (served: {known})"
            )
        pipeline, rt = found
        try:
            payload = pipeline.request_payload(rt, {**self.defaults[name], **(arguments or {})})
        except InvalidMessageError as exc:
            self._record(caller, name, "", "invalid_input", {"field": exc.field or ""})
            return _error(f"invalid input for pipeline {name!r}: {exc}")
        metadata = caller.stamp({"channel": "mcp"})
        # A caller's trace (``genie serve``'s, from the HTTP request) is the request's too.
        trace = TraceParent.parse(metadata.get("traceparent"))
        msg = pipeline.entry_message(
            rt, payload, metadata=metadata, trace_id=trace.trace_id if trace else None
        )
        timeout = pipeline.config.timeout
        if self.max_timeout is not None:
            timeout = min(timeout, self.max_timeout) if timeout else self.max_timeout
        if self.asked is not None:
            self.asked(caller, msg.correlation_id)
        try:
            result = await pipeline.ask(rt, msg, timeout=timeout, wait=False)
        except WouldBlockError as full:
            # No room in the entry's mailbox: nothing was sent, and the caller comes back, as
            # a served request's 429 says (MCP has no way to hold a call back).
            agent = {"agent": full.agent_id or "?"}
            self._record(caller, name, msg.correlation_id, "busy", agent)
            return _error(pipeline.busy(rt, full))
        except RuntimeClosedError as exc:
            self._record(caller, name, msg.correlation_id, "closed", {})
            return _error(str(exc))
        except anyio.get_cancelled_exc_class():
            # Cut short (the client gone, the server stopping under it): the call was made,
            # and the audit trail says so.
            self._record(caller, name, msg.correlation_id, "cut_short", {})
            raise
        except Exception as exc:  # the runtime's own failure: said as one, then raised
            self._record(caller, name, msg.correlation_id, "error", {"error": type(exc).__name__})
            raise
        denied = {"denied_by": result.denials[0].policy} if result.denials else {}
        self._record(caller, name, msg.correlation_id, result.status, denied)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=summary(name, result))],
            structured_content=result.as_json(caller.tracebacks),
            is_error=not result.ok,
        )

    def server(self, caller_of: Callable[[ServerRequestContext[Any, Any]], Caller]) -> Server[Any]:
        """The MCP server of these tools; ``caller_of`` names the caller of each request (from
        its HTTP request's API key, or the identity the stdio server was started with)."""

        async def list_tools(
            ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            return types.ListToolsResult(tools=self.tools())

        async def call_tool(
            ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            return await self.call(params.name, params.arguments, caller_of(ctx))

        return Server(
            "genie",
            instructions="Each tool runs one Genie pipeline once; its result says what came "
            "out, what is missing and which policy denied what.",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
        )

    def _record(
        self, caller: Caller, name: str, correlation: str, outcome: str, extra: dict[str, str]
    ) -> None:
        if self.audit is None:
            return
        details = {"principal": caller.principal, "correlation_id": correlation, **extra}
        self.audit.record(
            AuditRecord(datetime.now(UTC), ACTOR, f"tool_call:{outcome}", name, details)
        )


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
