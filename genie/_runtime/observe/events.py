"""Live event streams: what happens to one request, as it happens (the Go system's event tap).

A stream is a bounded buffer fed by an observer. Pushing never waits: when the reader falls
behind, events are dropped and counted, and the reader gets one ``dropped`` event saying how
many were lost, where they were lost. A slow reader therefore never slows the runtime. The
buffer bounds what a stream holds, its ``dropped`` events included; a request's ``settled``
event, which ends its stream, always reaches the reader: the newest events held give way to it
(and to the ``dropped`` event before it), which is why a buffer holds at least two.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal

from ..._base.clock import Clock
from ..._base.record import Record
from ..._base.resilience import at_least
from ..._errors import InvalidArgumentError, described
from ..._message.envelope import Message
from ..correlator import GatherResult
from ..deadletter import DeadLetter
from .observer import Observer
from .reading import Reading

__all__ = ["Event", "EventKind", "EventStream"]

EventKind = Literal[
    "published",
    "delivered",
    "denied",
    "limit_fired",
    "handled",
    "failed",
    "dead_lettered",
    "gathered",
    "settled",
    "dropped",
]


class Event(Record):
    """One thing that happened to a request. ``at`` is the runtime clock, in seconds.

    ``agent_id`` is the sender for ``published``, else the agent concerned. ``count`` is the
    fan-out width (``published``), the outputs (``handled``), the replies (``gathered``) or the
    events lost (``dropped``). ``reason`` says why for denials, failures and dead letters, and
    how a fan-in ended for ``gathered``. ``policy`` names the policy or limit for ``denied``,
    the limit for ``limit_fired`` (a model call refused by the correlation's token or cost
    budget, while ``agent_id`` handled the message). Events carry ids and types, never
    payloads. ``traceback``: for a ``dead_lettered`` handler failure, where it raised (the
    dead letter's last traceback); a server sends it only to principals allowed to see it.
    """

    kind: EventKind
    at: float
    correlation_id: str
    agent_id: str | None = None
    message_type: str | None = None
    message_id: str | None = None
    hops: int = 0
    duration: float | None = None
    count: int | None = None
    policy: str | None = None
    reason: str | None = None
    traceback: str | None = None

    def line(self, origin: float = 0.0) -> str:
        """One line of a timeline, ``origin`` being the time of its first event."""
        detail = {
            "published": f"to {self.count or 'no'} agent{'' if self.count == 1 else 's'}",
            "delivered": "queued",
            "denied": f"by {self.policy}: {self.reason}",
            "limit_fired": f"{self.policy}: {self.reason}",
            "handled": f"{_ms(self.duration)}, {self.count} out",
            "failed": f"{_ms(self.duration)}, {self.reason}",
            "dead_lettered": self.reason,
            "gathered": f"{self.reason}, {self.count} repl{'y' if self.count == 1 else 'ies'}",
            "settled": "nothing in flight",
            "dropped": f"{self.count} events lost: the reader fell behind",
        }[self.kind]
        return (
            f"{(self.at - origin) * 1000:9.3f} ms  {self.kind:<13} {self.agent_id or '':<26} "
            f"{self.message_type or '':<26} {detail}"
        ).rstrip()


# The column titles of ``Event.line``, aligned with it.
TIMELINE_HEADER = f"{'time':>12}  {'event':<13} {'agent':<26} {'message':<26} detail"


def _ms(seconds: float | None) -> str:
    return f"{(seconds or 0.0) * 1000:.3f} ms"


class EventStream(Reading):
    """An async iterator of ``Event``; see ``Runtime.events``. ``dropped`` counts lost events."""

    def __init__(self, hub: EventHub, correlation_id: str | None, buffer: int) -> None:
        super().__init__(hub)
        self.correlation_id = correlation_id
        self.buffer = buffer
        self.dropped = 0
        self._events: deque[Event] = deque()
        self._lost = 0  # dropped since the reader last heard about it
        self._lost_at: Event | None = None

    def _push(self, event: Event) -> None:
        if self._ended:
            return
        # A gap is told before the next event taken, in a place of the buffer of its own.
        if len(self._events) + (2 if self._lost else 1) > self.buffer:
            self._lose(event)
            return
        self._take(event)

    def _finish(self, event: Event) -> None:
        """``event`` ends the stream (its request settled): it always reaches the reader, the
        newest events held giving way to it and to the gap before it (counted as lost)."""
        if self._ended:
            return
        while self._events and len(self._events) + (2 if self._lost else 1) > self.buffer:
            newest = self._events.pop()
            if newest.kind == "dropped":  # a gap given way merges into the one after it
                self._lost += newest.count or 0
                self._lost_at = newest
            else:
                self._lose(newest)
                self._lost_at = newest  # now the first of the events lost here
        self._take(event)
        self._end()

    def _lose(self, event: Event) -> None:
        self.dropped += 1
        self._lost += 1
        if self._lost_at is None:
            self._lost_at = event

    def _take(self, event: Event) -> None:
        if self._lost:
            self._events.append(self._gap())
        self._events.append(event)
        self._wake()

    def _gap(self) -> Event:
        first = self._lost_at
        assert first is not None
        gap = Event("dropped", first.at, first.correlation_id, count=self._lost)
        self._lost, self._lost_at = 0, None
        return gap

    async def __anext__(self) -> Event:
        while not self._events:
            if self._ended:
                if self._lost:
                    return self._gap()
                raise StopAsyncIteration
            await self._wait()
        return self._events.popleft()


class EventHub(Observer):
    """The runtime's one observer for all its streams; attached only while a stream is open."""

    never_raises = True

    def __init__(
        self,
        clock: Clock,
        attach: Callable[[Observer], None],
        detach: Callable[[Observer], None],
    ) -> None:
        self._clock = clock
        self._attach = attach  # the runtime's add_observer / remove_observer
        self._detach = detach
        self._by_correlation: dict[str, list[EventStream]] = {}
        self._everything: list[EventStream] = []
        self._attached = False

    def open(self, correlation_id: str | None, buffer: int) -> EventStream:
        if not (isinstance(buffer, int) and at_least(buffer, 2)):
            raise InvalidArgumentError(
                "an event stream needs a buffer of at least 2 (room for a dropped event and "
                f"the end), a whole number, got {buffer!r}"
            )
        stream = EventStream(self, correlation_id, buffer)
        if not self._attached:
            self._attach(self)
            self._attached = True
        if correlation_id is None:
            self._everything.append(stream)
        else:
            self._by_correlation.setdefault(correlation_id, []).append(stream)
        return stream

    def detach(self, stream: EventStream) -> None:
        cid = stream.correlation_id
        listeners = self._everything if cid is None else self._by_correlation.get(cid, [])
        if stream in listeners:
            listeners.remove(stream)
        if cid is not None and not listeners:
            self._by_correlation.pop(cid, None)
        self._detach_if_idle()

    def _detach_if_idle(self) -> None:
        if self._attached and not self._by_correlation and not self._everything:
            self._detach(self)  # no stream open: the hot path pays nothing
            self._attached = False

    def _listeners(self, cid: str) -> list[EventStream]:
        mine = self._by_correlation.get(cid)
        if mine is None:
            return self._everything
        return mine + self._everything if self._everything else mine

    def _send(self, listeners: list[EventStream], event: Event) -> None:
        for stream in listeners:
            stream._push(event)

    def _about(
        self,
        kind: EventKind,
        msg: Message,
        agent_id: str,
        *,
        duration: float | None = None,
        count: int | None = None,
        policy: str | None = None,
        reason: str | None = None,
        traceback: str | None = None,
    ) -> None:
        listeners = self._listeners(msg.correlation_id)
        if listeners:
            event = Event(
                kind,
                self._clock.monotonic(),
                msg.correlation_id,
                agent_id,
                msg.type,
                msg.id,
                msg.hops,
                duration,
                count,
                policy,
                reason,
                traceback,
            )
            self._send(listeners, event)

    def published(self, msg: Message, recipients: int) -> None:
        self._about("published", msg, msg.sender, count=recipients)

    def delivered(self, msg: Message, agent_id: str) -> None:
        self._about("delivered", msg, agent_id)

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        self._about("denied", msg, agent_id, policy=policy, reason=reason)

    def limit_fired(self, msg: Message, agent_id: str, limit: str, reason: str) -> None:
        self._about("limit_fired", msg, agent_id, policy=limit, reason=reason)

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        self._about("handled", msg, agent_id, duration=duration, count=outputs)

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        reason = described(error)
        self._about("failed", msg, agent_id, duration=duration, reason=reason)

    def dead_lettered(self, letter: DeadLetter) -> None:
        reason = f"{letter.kind}: {letter.reason}"
        self._about(
            "dead_lettered",
            letter.message,
            letter.agent_id or "-",
            reason=reason,
            traceback=letter.traceback,
        )

    def gathered(self, result: GatherResult) -> None:
        listeners = self._listeners(result.correlation_id)
        if listeners:
            missing = "; ".join(f"{m.key} {m.kind}" for m in result.missing)
            status = f"{result.status} (missing: {missing})" if missing else result.status
            at = self._clock.monotonic()
            event = Event(
                "gathered", at, result.correlation_id, count=len(result.replies), reason=status
            )
            self._send(listeners, event)

    def settled(self, correlation_id: str) -> None:
        listeners = self._listeners(correlation_id)
        if not listeners:
            return
        event = Event("settled", self._clock.monotonic(), correlation_id)
        for stream in self._everything:  # they go on: the event is one more of theirs
            stream._push(event)
        for stream in self._by_correlation.pop(correlation_id, ()):
            stream._finish(event)  # the request is over: its streams end, the end told
        self._detach_if_idle()

    def closed(self) -> None:
        for stream in [*self._everything, *(s for ss in self._by_correlation.values() for s in ss)]:
            stream._end()
        self._everything.clear()
        self._by_correlation.clear()
        self._detach_if_idle()
