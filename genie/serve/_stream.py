"""A request's event stream over HTTP: governed per client, recorded for reconnection.

Events carry ids and types, never payloads, but a stream leaves the process, so it is governed
like a tap: the ``StreamGate`` judges each message of a streamed request with the principal as
the recipient, and an event about a message the principal was not admitted is never sent to
it (nor an event about a message the gate never saw: fail closed).

A ``Recording`` holds the frames of one request (bounded), so a client that lost its
connection reconnects with ``Last-Event-ID`` and gets the frames after it, until the recording
expires.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._message.envelope import Message
from .._runtime.model_text import TextChunk
from .._runtime.observe.events import Event
from .._runtime.observe.observer import Observer
from .._runtime.policy import Policy
from .._runtime.runtime import Runtime

__all__ = ["Recording", "Recordings", "StreamGate", "event_json", "frame", "text_json"]


class StreamGate(Observer):
    """Which messages of the streamed requests each principal may see.

    While a stream is open, every message of its request is judged by the runtime's policies
    with the stream's principal as the recipient, as the runtime judges a tap; only the
    messages admitted are reported in its stream. Attached to the runtime only while a stream
    is open, so a request that is not streamed costs nothing here."""

    never_raises = True

    def __init__(self, runtime: Runtime, policies: Sequence[Policy]) -> None:
        self._runtime = runtime
        self._policies = tuple(policies)
        self._watched: dict[str, list[tuple[str, set[str]]]] = {}
        self._attached = False

    def watch(self, correlation_id: str, principal: str) -> set[str]:
        """The set that will hold the ids of ``correlation_id``'s messages ``principal`` may
        see (call before the request is published)."""
        admitted: set[str] = set()
        self._watched.setdefault(correlation_id, []).append((principal, admitted))
        if not self._attached:
            self._runtime.add_observer(self)
            self._attached = True
        return admitted

    def unwatch(self, correlation_id: str, admitted: set[str]) -> None:
        watchers = [w for w in self._watched.get(correlation_id, ()) if w[1] is not admitted]
        if watchers:
            self._watched[correlation_id] = watchers
        else:
            self._watched.pop(correlation_id, None)
        if self._attached and not self._watched:
            self._runtime.remove_observer(self)
            self._attached = False

    def allowed(self, msg: Message, principal: str) -> bool:
        for policy in self._policies:
            try:
                if not policy.evaluate(msg, principal).allowed:
                    return False
            except Exception:
                return False  # fail closed, as admission does
        return True

    def published(self, msg: Message, recipients: int) -> None:
        for principal, admitted in self._watched.get(msg.correlation_id, ()):
            if self.allowed(msg, principal):
                admitted.add(msg.id)


def event_json(event: Event, origin: float, tracebacks: bool = False) -> dict[str, Any]:
    """An event as the stream sends it: times in milliseconds from the request's start; a
    failed handler's traceback only with ``tracebacks`` (the principal's key allows it)."""
    data = {
        "kind": event.kind,
        "at_ms": round((event.at - origin) * 1000, 3),
        "agent": event.agent_id,
        "type": event.message_type,
        "message_id": event.message_id,
        "hops": event.hops,
        "duration_ms": None if event.duration is None else round(event.duration * 1000, 3),
        "count": event.count,
        "policy": event.policy,
        "reason": event.reason,
    }
    if tracebacks and event.traceback is not None:
        data["traceback"] = event.traceback
    return data


def text_json(chunk: TextChunk) -> tuple[str, dict[str, Any]]:
    """A piece of model text as the stream sends it: ``text`` (the next released piece),
    ``text_denied`` (a policy refused the rest of the call to this principal) or ``text_end``
    (the call ended: its finish reason, or the type of the error and the limit that ended it)."""
    data: dict[str, Any] = {
        "agent": chunk.agent_id,
        "message_id": chunk.message_id,
        "call": chunk.call,
    }
    if chunk.kind == "text":
        return "text", {**data, "text": chunk.text}
    if chunk.kind == "denied":
        return "text_denied", {**data, "policy": chunk.policy, "reason": chunk.reason}
    return "text_end", {**data, "finish": chunk.finish, "error": chunk.error, "limit": chunk.policy}


def frame(event: str, data: Mapping[str, Any], id: str | None = None) -> bytes:
    """One server-sent event (JSON data has no newline, so one ``data:`` line)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class Recording:
    """The frames of one request, in order; ``done`` once the result is in.

    Bounded twice, as every frame is kept for the stream's reconnection: at most ``limit``
    frames and ``max_bytes`` bytes of them. From the first frame past either, every frame is
    dropped (a frame of model text may be a whole call's answer, so the count alone bounds
    nothing); the result, and the ``dropped`` frame before it saying how many, are always
    kept."""

    correlation_id: str
    principal: str
    limit: int
    max_bytes: int
    frames: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes of the frames kept
    done: bool = False
    cut: int = 0  # frames not kept past ``limit`` or ``max_bytes``
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def add(self, event: str, data: Mapping[str, Any], *, last: bool = False) -> None:
        if last:
            if self.cut:
                # Said once, before the result, as an event stream says a reader fell behind.
                self._append(self._frame("dropped", {"kind": "dropped", "count": self.cut}))
            self._append(self._frame(event, data))
            self.done = True
            return
        if self.cut or len(self.frames) >= self.limit:
            self.cut += 1  # what is kept stays a prefix: no hole in a call's text
            return
        raw = self._frame(event, data)
        if self.size + len(raw) > self.max_bytes:
            self.cut += 1
            return
        self._append(raw)

    def _frame(self, event: str, data: Mapping[str, Any]) -> bytes:
        return frame(event, data, f"{self.correlation_id}:{len(self.frames)}")

    def _append(self, raw: bytes) -> None:
        self.frames.append(raw)
        self.size += len(raw)
        self._changed.set()
        self._changed = anyio.Event()

    def finish(self) -> None:
        self.done = True
        self._changed.set()

    async def follow(self, after: int = -1, heartbeat: float = 15.0) -> AsyncIterator[bytes]:
        """The frames after index ``after``, then each new one until the recording is done;
        a comment line (``: keep-alive``) after ``heartbeat`` seconds without one."""
        at = after + 1
        while True:
            while at < len(self.frames):
                yield self.frames[at]
                at += 1
            if self.done:
                return
            changed = self._changed
            with anyio.move_on_after(heartbeat):
                await changed.wait()
            if not changed.is_set():
                yield b": keep-alive\n\n"


class Recordings:
    """The recent recordings of each principal by correlation id: at most ``capacity`` a
    principal, its oldest finished one forgotten first (a live one is never forgotten), so one
    principal's burst of requests cannot push another's streams out. Each holds at most
    ``frames`` frames and ``max_bytes`` bytes of them (``Recording``), whoever reads it."""

    def __init__(self, capacity: int, frames: int, max_bytes: int) -> None:
        self.capacity = capacity
        self.frames = frames
        self.max_bytes = max_bytes
        self._of: dict[str, OrderedDict[str, Recording]] = {}

    def open(self, correlation_id: str, principal: str) -> Recording:
        rec = Recording(correlation_id, principal, self.frames, self.max_bytes)
        kept = self._of.setdefault(principal, OrderedDict())
        kept[correlation_id] = rec
        while len(kept) > self.capacity:
            oldest = next((cid for cid, r in kept.items() if r.done), None)
            if oldest is None:
                break
            del kept[oldest]
        return rec

    def forget(self, correlation_id: str, principal: str) -> None:
        """Drop ``principal``'s recording of ``correlation_id`` (a request refused before it
        ran: no stream to resume)."""
        kept = self._of.get(principal)
        if kept is not None:
            kept.pop(correlation_id, None)

    def get(self, correlation_id: str, principal: str) -> Recording | None:
        """``principal``'s recording of ``correlation_id``; another principal's is None."""
        kept = self._of.get(principal)
        return None if kept is None else kept.get(correlation_id)


def resume_point(last_event_id: str | None, correlation_id: str, sent: int) -> int:
    """The frame index a ``Last-Event-ID`` names (-1: from the start); one of another
    request, malformed, or past the ``sent`` frames recorded so far (no client received it:
    resumed after it, the stream would skip its frames up to it, the result too) replays
    everything."""
    if not last_event_id:
        return -1
    cid, _, n = last_event_id.rpartition(":")
    # ASCII digits, and few: str.isdigit takes "²" and "٣", which int() refuses, and a
    # number of thousands of digits is no frame index (int() refuses it too).
    if cid != correlation_id or not (n.isascii() and n.isdigit() and len(n) <= 9):
        return -1
    return int(n) if int(n) < sent else -1
