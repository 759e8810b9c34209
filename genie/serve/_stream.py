"""A request's event stream over HTTP: governed per client, recorded for reconnection.

Events carry ids and types, never payloads, but a stream leaves the process, so it is governed
like a tap: each principal is a ``ClientTap`` of every runtime (the policies judge the
principal as the recipient), and an event about a message the tap was not admitted is never
sent to that principal (nor an event about a message the tap never saw: fail closed).

A ``Recording`` holds the frames of one request (bounded), so a client that lost its
connection reconnects with ``Last-Event-ID`` and gets the frames after it, until the recording
expires.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._events import Event
from .._message import Message

__all__ = ["ClientTap", "Recording", "Recordings", "event_json", "frame"]


class ClientTap:
    """The principal ``id`` as a governed tap: which messages of the watched requests the
    policies let it see."""

    def __init__(self, principal: str) -> None:
        self.principal = principal
        self._watched: dict[str, set[str]] = {}

    @property
    def id(self) -> str:
        return self.principal

    def observe(self, msg: Message) -> None:
        seen = self._watched.get(msg.correlation_id)
        if seen is not None:
            seen.add(msg.id)

    def watch(self, correlation_id: str) -> set[str]:
        """Start recording the admitted ids of ``correlation_id`` (before it is published)."""
        return self._watched.setdefault(correlation_id, set())

    def unwatch(self, correlation_id: str) -> None:
        self._watched.pop(correlation_id, None)


def event_json(event: Event, origin: float) -> dict[str, Any]:
    """An event as the stream sends it: times in milliseconds from the request's start."""
    return {
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


def frame(event: str, data: Mapping[str, Any], id: str | None = None) -> bytes:
    """One server-sent event (JSON data has no newline, so one ``data:`` line)."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class Recording:
    """The frames of one request, in order; ``done`` once the result is in."""

    correlation_id: str
    principal: str
    limit: int
    frames: list[bytes] = field(default_factory=list)
    done: bool = False
    cut: int = 0  # frames not kept past ``limit`` (the result frame is always kept)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def add(self, event: str, data: Mapping[str, Any], *, last: bool = False) -> None:
        if len(self.frames) >= self.limit and not last:
            self.cut += 1
            return
        self.frames.append(frame(event, data, f"{self.correlation_id}:{len(self.frames)}"))
        self.done = self.done or last
        self._changed.set()
        self._changed = anyio.Event()

    def finish(self) -> None:
        self.done = True
        self._changed.set()

    async def follow(self, after: int = -1) -> AsyncIterator[bytes]:
        """The frames after index ``after``, then each new one until the recording is done."""
        at = after + 1
        while True:
            while at < len(self.frames):
                yield self.frames[at]
                at += 1
            if self.done:
                return
            await self._changed.wait()


class Recordings:
    """The recent recordings by correlation id: at most ``capacity``, the oldest finished one
    forgotten first (a live one is never forgotten)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._all: OrderedDict[str, Recording] = OrderedDict()

    def open(self, correlation_id: str, principal: str, limit: int) -> Recording:
        rec = Recording(correlation_id, principal, limit)
        self._all[correlation_id] = rec
        while len(self._all) > self.capacity:
            oldest = next((cid for cid, r in self._all.items() if r.done), None)
            if oldest is None:
                break
            del self._all[oldest]
        return rec

    def get(self, correlation_id: str) -> Recording | None:
        return self._all.get(correlation_id)


def resume_point(last_event_id: str | None, correlation_id: str) -> int:
    """The frame index a ``Last-Event-ID`` names (-1: from the start); one of another
    request, or malformed, replays everything."""
    if not last_event_id:
        return -1
    cid, _, n = last_event_id.rpartition(":")
    if cid != correlation_id or not n.isdigit():
        return -1
    return int(n)
