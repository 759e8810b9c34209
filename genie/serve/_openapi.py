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
            "enum": ["ok", "partial", "fallback", "denied", "failed", "timed_out", "no_output"]
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


def _refusals() -> dict[str, Any]:
    return {
        "401": _error("missing or unknown API key"),
        "404": _error("no such pipeline"),
        "413": _error("request body over the size limit"),
        "429": _error("the principal's rate limit is exceeded (see Retry-After)"),
        "503": _error("not ready, or shutting down"),
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
        responses: dict[str, Any] = {"200": ok, "400": _error("invalid payload")}
    else:
        result = {"application/json": {"schema": {"$ref": "#/components/schemas/Result"}}}
        responses = {
            "200": {"description": "the output arrived (ok, partial)", "content": result},
            "400": _error("invalid payload, metadata or timeout: names the field"),
            "403": {"description": "denied: the result names the policy", "content": result},
            "502": {"description": "failed, fallback or no output", "content": result},
            "504": {"description": "timed out", "content": result},
        }
    return {
        "post": {
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
            "responses": {**responses, **_refusals()},
            "security": [{"bearer": []}],
        }
    }


def openapi(pipelines: Sequence[Pipeline]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for p in pipelines:
        paths[f"/v1/pipelines/{p.name}/ask"] = _ask(p, stream=False)
        paths[f"/v1/pipelines/{p.name}/ask/stream"] = _ask(p, stream=True)
    plain = {"responses": {"200": {"description": "ok"}, "503": {"description": "not ready"}}}
    paths.update(
        {
            "/v1/pipelines": {
                "get": {
                    "summary": "served pipelines with their entry JSON schema",
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "ok"}, "401": _error("no key")},
                }
            },
            "/v1/pipelines/{name}/statistics": {
                "get": {
                    "summary": "the runtime's counters",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": {"description": "ok"}, "404": _error("no pipeline")},
                }
            },
            "/v1/streams/{correlation_id}": {
                "get": {
                    "summary": "resume a stream after Last-Event-ID",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "correlation_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": {"description": "text/event-stream"}},
                }
            },
            "/healthz": {"get": {"summary": "the process is up", **plain}},
            "/readyz": {"get": {"summary": "every runtime has started", **plain}},
            "/metrics": {"get": {"summary": "Prometheus text exposition", **plain}},
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "genie serve", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, "Result": _RESULT},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
