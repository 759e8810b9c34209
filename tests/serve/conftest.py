"""A real ``genie serve`` app on uvicorn, on 127.0.0.1 at a free port, in the test's loop."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from opentelemetry.trace import TracerProvider

from genie import MemoryAuditLog, Runtime
from genie.pipeline import Pipeline, load_pipeline
from genie.serve import KeyRing, ServeSettings, create_app, load_keys

ROOT = Path(__file__).resolve().parents[2]
ALICE = "alice-key-0123456789"  # roles: user (RBAC lets users ask finance questions)
BOB = "bob-key-0123456789ab"  # roles: user; the governed pipeline denies bob analysis results
EVE = "eve-key-0123456789abc"  # roles: analyst: not a role the finance RBAC accepts
KEYS = f"""
keys:
  - {{principal: alice, key: {ALICE}, roles: [user]}}
  - {{principal: bob, key: {BOB}, roles: [user], rate: 2, burst: 2}}
  - {{principal: eve, key: {EVE}, roles: [analyst]}}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn runs on asyncio


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def finance(tmp_path: Path, rules: str = "") -> Pipeline:
    """The shipped finance pipeline, plus ``rules`` (YAML list items) in its governance."""
    text = (ROOT / "config/pipelines/finance.yaml").read_text()
    text = text.replace("../policies/", f"{ROOT}/config/policies/")
    text = text.replace("../data/", f"{ROOT}/config/data/")
    if rules:
        text = text.replace("governance:\n", f"governance:\n  rules:\n{rules}", 1)
    path = tmp_path / "finance.yaml"
    path.write_text(text)
    return load_pipeline(path)


def csv_body() -> dict[str, str]:
    return {"csv": (ROOT / "config/data/sample.csv").read_text()}


def keyring(tmp_path: Path) -> KeyRing:
    path = tmp_path / "keys.yaml"
    path.write_text(KEYS)
    return load_keys(path, {})


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening already: a request sent before uvicorn accepts waits in the backlog (and
    # uvicorn runs the lifespan, starting the runtimes, before it accepts).
    sock.listen(128)
    return sock


@asynccontextmanager
async def serving(
    pipelines: Sequence[Pipeline],
    keys: KeyRing,
    settings: ServeSettings | None = None,
    audit: MemoryAuditLog | None = None,
    observers: Callable[[str, Runtime], object] | None = None,
    tracing: TracerProvider | bool = False,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a real server serving ``pipelines``; the server stops on the way out."""
    app = create_app(
        pipelines, keys, settings=settings, audit=audit, observers=observers, tracing=tracing
    )
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                yield client
            server.should_exit = True
    finally:
        sock.close()


def sse(text: str) -> list[tuple[str | None, str, dict[str, object]]]:
    """Parse an SSE body into (id, event, data) frames, checking the framing as it goes."""
    frames = []
    assert text.endswith("\n\n"), "every frame ends with a blank line"
    for block in text.split("\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, sep, value = line.partition(": ")
            assert sep, f"malformed SSE line {line!r}"
            assert name not in fields, f"field {name} twice in one frame"
            fields[name] = value
        assert set(fields) <= {"id", "event", "data"}
        frames.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return frames
