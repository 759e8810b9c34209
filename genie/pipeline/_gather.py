"""A declared gather: the fan-in of a pipeline without writing an aggregating agent.

It collects, per correlation, one message of each expected type (or from each expected
sender). When all have arrived it emits the bundle to its target; at its deadline (counted from
the first part) it emits what it has, marked partial, or fails (``on_timeout: fail``), which
dead-letters the request and tells the caller at once. Sessions end either way: none leaks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from .._agent import Risk
from .._context import Context, Timer
from .._errors import AgentError
from .._message import Message, Payload

__all__ = ["GatherDeadline", "GatherNode", "GatherTimeoutError", "Gathered", "gathered_model"]


CLOSED_MEMORY = 4096
P = TypeVar("P", bound=Payload)


class Gathered(Payload):
    """What a gather emits: each part's payload (as JSON data) under its expected type or
    sender, what is missing, and whether the bundle is complete. A catalogue agent that
    consumes a gather's output declares a subclass with its own ``message_type``."""

    parts: dict[str, dict[str, Any]]
    missing: tuple[str, ...] = ()
    status: Literal["complete", "partial"] = "complete"

    def part(self, model: type[P]) -> P | None:
        """The part of ``model``'s message type, parsed; None when it did not come."""
        data = self.parts.get(model.message_type)
        return None if data is None else model.model_validate(data)


class GatherDeadline(Payload):
    """The tick a gather schedules to itself."""

    message_type = "genie.gather_deadline"


class GatherTimeoutError(AgentError):
    """A gather with ``on_timeout: fail`` reached its deadline with parts missing."""


def gathered_model(type_name: str) -> type[Gathered]:
    """A ``Gathered`` subclass registered under ``type_name``."""
    return type(
        type_name.title().replace("_", "").replace(".", ""),
        (Gathered,),
        {"message_type": type_name},
    )


@dataclass
class _Session:
    timer: Timer
    parts: dict[str, Payload] = field(default_factory=dict)


class GatherNode:
    capabilities: Sequence[str] = ("gather",)
    risk = Risk.LOW
    consumes_any: ClassVar[bool] = True

    def __init__(
        self,
        id: str,
        *,
        expect: Sequence[str],
        by: Literal["type", "sender"],
        deadline: float,
        emit: type[Gathered],
        to: str,
        on_timeout: Literal["emit", "fail"] = "emit",
    ) -> None:
        self.id = self.name = id
        self.expect = tuple(expect)
        self.by = by
        self.deadline = deadline
        self.emit_model = emit
        self.to = to
        self.on_timeout = on_timeout
        self.produces: tuple[type[Payload], ...] = (emit, GatherDeadline)
        self.ignored = self.late = 0
        self._sessions: dict[str, _Session] = {}
        # Correlations already emitted or timed out: a straggler must not open a new session.
        self._closed: OrderedDict[str, None] = OrderedDict()

    @property
    def pending(self) -> int:
        return len(self._sessions)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        key = msg.correlation_id
        if isinstance(msg.payload, GatherDeadline):
            session = self._sessions.pop(key, None)
            if session is None:
                return ()
            self._close(key)
            missing = [k for k in self.expect if k not in session.parts]
            if self.on_timeout == "fail":
                raise GatherTimeoutError(
                    f"gather {self.id!r}: {', '.join(missing)} did not arrive within "
                    f"{self.deadline:g}s",
                    message_id=msg.id,
                    agent_id=self.id,
                    correlation_id=key,
                )
            return (self._bundle(ctx, session, missing),)
        part = msg.type if self.by == "type" else msg.sender
        if part not in self.expect:
            self.ignored += 1
            return ()
        session = self._sessions.get(key)
        if session is None and key in self._closed:
            self.late += 1
            return ()
        if session is None:
            session = self._sessions[key] = _Session(ctx.schedule(self.deadline, GatherDeadline()))
        session.parts.setdefault(part, msg.payload)
        if len(session.parts) < len(self.expect):
            return ()
        del self._sessions[key]
        self._close(key)
        session.timer.cancel()
        return (self._bundle(ctx, session, []),)

    def _close(self, key: str) -> None:
        self._closed[key] = None
        if len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)

    def _bundle(self, ctx: Context, session: _Session, missing: list[str]) -> Message:
        bundle = self.emit_model(
            parts={k: p.model_dump(mode="json") for k, p in session.parts.items()},
            missing=tuple(missing),
            status="partial" if missing else "complete",
        )
        return ctx.emit(bundle, recipient=self.to)
