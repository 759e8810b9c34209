"""The OpenAPI 3.1 document of the served API (``GET /openapi.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..pipeline import Pipeline

__all__ = ["openapi"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "type": {"type": "string"},
        "field": {"type": "string"},
    },
}
_RESULT = {
    "type": "object",
    "description": "The `genie run --json` document (docs/cli.md)",
    "required": ["status", "correlation_id", "output", "missing", "dead_letters", "denials"],
    "properties": {
        "status": {
            "enum": [
                "ok",
                "partial",
                "workflow_failed",
                "fallback",
                "denied",
                "failed",
                "timed_out",
                "no_output",
            ]
        },
        "correlation_id": {"type": "string"},
        "output": {"type": ["object", "null"]},
        "missing": {"type": "array"},
        "dead_letters": {"type": "array"},
        "denials": {"type": "array"},
        "stats": {"type": "object"},
    },
}


_STRING = {"type": "string"}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


# Either header carries the key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def _v1(operation: dict[str, Any]) -> dict[str, Any]:
    """``operation`` behind the API keys: the refusals any ``/v1`` request may get, added."""
    refusals = {
        "400": _error("two credentials in one request (send one key)"),
        "401": _error("missing or unknown API key"),
        "429": _error(
            "the principal's rate limit is exceeded, or too many failed authentications "
            "from this address (see Retry-After)"
        ),
        "431": _error("the request line and headers are over 16 KiB"),
        "503": _error("not ready, or shutting down"),
    }
    responses = {**refusals, **operation["responses"]}
    for code in refusals.keys() & operation["responses"].keys():
        # Both say when: the operation's own 400 (a bad body) was written over by the keys'.
        own, common = operation["responses"][code], refusals[code]
        responses[code] = {
            **own,
            "description": f"{own['description']}; or {common['description']}",
        }
    return {**operation, "security": _SECURITY, "responses": responses}


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _body_refusals(too_large: str) -> dict[str, Any]:
    """What a route that reads a body may answer before it runs: too large, or too slow."""
    return {
        "408": _error("the request body did not arrive within the body timeout (audited)"),
        "413": _error(too_large),
    }


def _ask(pipeline: Pipeline, stream: bool) -> dict[str, Any]:
    name = pipeline.name
    schema = pipeline.entry_model.model_json_schema()
    ok: dict[str, Any]
    if stream:
        ok = {
            "description": "server-sent events: accepted, the request's events, then result",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
        responses: dict[str, Any] = {
            "200": ok,
            "400": _error("invalid payload, metadata or timeout: names the field"),
        }
    else:
        result = {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}}
        responses = {
            "200": {
                "description": "the output arrived (ok, partial, workflow_failed)",
                "content": result,
            },
            "400": _error("invalid payload, metadata or timeout: names the field"),
            "403": {"description": "denied: the result names the policy", "content": result},
            "502": {"description": "failed, fallback or no output", "content": result},
            "504": {"description": "timed out", "content": result},
        }
    return {
        "post": _v1(
            {
                "operationId": f"{name}_ask{'_stream' if stream else ''}",
                "summary": f"{'Stream' if stream else 'Run'} one request through {name!r}",
                "parameters": [
                    {"name": "timeout", "in": "query", "schema": {"type": "number"}},
                    {"name": "traceparent", "in": "header", "schema": {"type": "string"}},
                    {"name": "Genie-Metadata", "in": "header", "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": schema}},
                },
                "responses": {
                    **responses,
                    "404": _error("no such pipeline"),
                    **_body_refusals("request body and Genie-Metadata over the size limit"),
                    "429": _error(
                        "the pipeline is busy: an entry agent's mailbox is full, and nothing "
                        "of the request ran (names the agent)"
                    ),
                },
            }
        )
    }


def openapi(pipelines: Sequence[Pipeline], *, mcp: bool = False) -> dict[str, Any]:
    """The document of the app serving ``pipelines`` (``mcp``: with ``/mcp``)."""
    paths: dict[str, Any] = {}
    for p in pipelines:
        paths[f"/v1/pipelines/{p.name}/ask"] = _ask(p, stream=False)
        paths[f"/v1/pipelines/{p.name}/ask/stream"] = _ask(p, stream=True)
    plain = {"responses": {"200": {"description": "ok"}, "503": {"description": "not ready"}}}
    stream = {"text/event-stream": {"schema": {"type": "string"}}}
    paths.update(
        {
            "/v1/pipelines": {
                "get": _v1(
                    {
                        "summary": "served pipelines with their entry JSON schema",
                        "responses": {"200": {"description": "ok"}},
                    }
                )
            },
            "/v1/pipelines/{name}/statistics": {
                "get": _v1(
                    {
                        "summary": "the runtime's counters",
                        "parameters": [_path_parameter("name")],
                        "responses": {
                            "200": {"description": "ok"},
                            "404": _error("no such pipeline"),
                        },
                    }
                )
            },
            "/v1/streams/{correlation_id}": {
                "get": _v1(
                    {
                        "summary": "resume a stream after Last-Event-ID",
                        "parameters": [
                            _path_parameter("correlation_id"),
                            {"name": "Last-Event-ID", "in": "header", "schema": _STRING},
                        ],
                        "responses": {
                            "200": {"description": "the frames after it", "content": stream},
                            "404": _error("no such stream of this key's principal (expired?)"),
                        },
                    }
                )
            },
            "/v1/approvals": {
                "get": _v1(
                    {
                        "summary": "the pending approvals this key's principal may answer",
                        "responses": {"200": {"description": "ok"}},
                    }
                )
            },
            "/v1/approvals/{approval_id}/{verb}": {
                "post": _v1(
                    {
                        "summary": "approve or reject (verb) as this key's principal and roles",
                        "parameters": [
                            _path_parameter("approval_id"),
                            {
                                "name": "verb",
                                "in": "path",
                                "required": True,
                                "schema": {"enum": ["approve", "reject"]},
                            },
                        ],
                        "requestBody": {
                            "required": False,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"reason": _STRING},
                                        "additionalProperties": False,
                                    }
                                }
                            },
                        },
                        "responses": {
                            "200": {"description": "the answer was sent"},
                            "400": _error(
                                "the body is not a JSON object holding reason (text) alone: "
                                "names the field"
                            ),
                            "403": _error("this principal may not answer it (audited)"),
                            "404": _error(
                                "no such pending approval: decided already, or unknown (audited)"
                            ),
                            **_body_refusals("request body over the size limit"),
                        },
                    }
                )
            },
            "/healthz": {"get": {"summary": "the process is up", **plain}},
            "/readyz": {"get": {"summary": "every runtime has started", **plain}},
            "/metrics": {"get": {"summary": "Prometheus text exposition", **plain}},
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/": {
                "get": {
                    "summary": "the live page (HTML)",
                    "responses": {"200": {"description": "ok"}},
                }
            },
        }
    )
    if mcp:
        answer = {"description": "the JSON-RPC answer (MCP streamable HTTP, JSON)"}
        # POST only: GET and DELETE are 405 (stateless: no event stream, no session).
        summary = "MCP: list the pipelines as tools, call one as this key's principal"
        responses = {
            "200": answer,
            "400": _error(
                "the body is not strict JSON (a key given twice, NaN, 1e999, ...), "
                "a batch, or no JSON-RPC message"
            ),
            "406": _error("the Accept header does not name application/json"),
            "415": _error("the body is not declared Content-Type: application/json"),
            **_body_refusals("request body over the size limit"),
        }
        paths["/mcp"] = {"post": _v1({"summary": summary, "responses": responses})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "genie serve", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, "Result": _RESULT},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
