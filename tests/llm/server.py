"""A small HTTP server on 127.0.0.1 that speaks each provider's format, with scripted faults.

It runs ``http.server`` in a thread (a real socket, nothing to install). Each request takes the
next :class:`Reply` scripted for its path, or the provider's canned answer from the fixtures:
JSON for a plain call, the recorded stream when the body asks for one. Every request is kept
(path, headers, body) so a test can assert what reached the wire, or that nothing did.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from genie.llm import OpenAIProvider

from .helpers import API_KEY, fixture


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``chunks`` are sent one by one (chunked encoding) after
    ``first_byte_delay`` seconds; ``body_delay`` waits between the headers and the first chunk
    (a model slow to write its first token); ``disconnect_after`` closes the socket after that
    many chunks, mid-body, without the closing chunk."""

    status: int = 200
    chunks: tuple[bytes, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    first_byte_delay: float = 0.0
    body_delay: float = 0.0
    disconnect_after: int | None = None


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _canned(path: str, body: dict[str, Any]) -> Reply:
    if path.startswith("/v1/chat/completions"):
        name, stream_type = "openai", "text/event-stream"
    elif path.startswith("/v1/messages"):
        name, stream_type = "anthropic", "text/event-stream"
    elif path.startswith("/api/chat"):
        name, stream_type = "ollama", "application/x-ndjson"
    else:
        name, stream_type = "gemini", "text/event-stream"
    streamed = body.get("stream") is True or "alt=sse" in path
    if not streamed:
        return Reply(chunks=(fixture(f"{name}_response.json"),))
    raw = fixture(
        {
            "openai": "openai_stream.txt",
            "anthropic": "anthropic_stream.txt",
            "gemini": "gemini_stream.txt",
            "ollama": "ollama_stream.ndjson",
        }[name]
    )
    # One chunk per line: the client sees the stream arrive in pieces, as from a provider.
    return Reply(chunks=tuple(raw.splitlines(keepends=True)), headers={"content-type": stream_type})


class ProviderServer:
    """``with ProviderServer() as server: server.url``; ``script(path, *replies)`` queues
    faults; ``received`` lists what arrived."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests assert on `received`, not on stderr

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                reply = outer._next(self.path, dict(self.headers.items()), body)
                outer._send(self, reply)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # a handler still sleeping (slow first byte) is dropped
        # A short poll so that shutdown (each test's teardown) takes milliseconds, not 0.5 s.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def script(self, path: str, *replies: Reply) -> None:
        """Queue ``replies`` for requests whose path starts with ``path``."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(replies)

    def _next(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self._lock:
            self.received.append(Received(path, {k.lower(): v for k, v in headers.items()}, body))
            for prefix, queue in self._scripts.items():
                if path.startswith(prefix) and queue:
                    return queue.pop(0)
        return _canned(path, body)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.first_byte_delay:
            time.sleep(reply.first_byte_delay)
        try:
            handler.send_response(reply.status)
            headers = {"content-type": "application/json", **reply.headers}
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            if reply.body_delay:
                handler.wfile.flush()
                time.sleep(reply.body_delay)
            for sent, chunk in enumerate(reply.chunks):
                if reply.disconnect_after is not None and sent >= reply.disconnect_after:
                    handler.close_connection = True
                    handler.wfile.flush()
                    handler.connection.close()
                    return
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up (a deadline): nothing to do


def sse(*events: dict[str, Any] | str) -> tuple[bytes, ...]:
    """OpenAI-style SSE chunks: each dict as ``data: {json}``, a string as is (``[DONE]``)."""
    return tuple(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


@pytest.fixture
def provider() -> Iterator[ProviderServer]:
    """The provider test server, on 127.0.0.1 (imported by the modules that use it)."""
    with ProviderServer() as running:
        yield running


@pytest.fixture
async def model(provider: ProviderServer) -> AsyncIterator[OpenAIProvider]:
    """An OpenAI provider talking to it (model gpt-4.1-mini)."""
    llm = OpenAIProvider(base_url=provider.url, api_key=API_KEY, model="gpt-4.1-mini")
    try:
        yield llm
    finally:
        await llm.aclose()
