"""A declared gather: the fan-in of a pipeline without writing an aggregating agent.

It collects, per correlation, one message of each expected type (or from each expected
sender). When all have arrived it emits the bundle to its target; at its deadline (counted from
the first part or loss) it emits what it has, marked partial, or fails (``on_timeout: fail``),
which dead-letters the request and tells the caller at once. Sessions end either way: none
leaks.

It subscribes to the runtime's loss notices (``genie.lost``): a denied, failed, shed or
cancelled delivery that leads to a part (``feeds``, from the pipeline's graph), or the part
itself lost on its way here, marks that part lost with the reason, and once every part is here
or lost the gather ends at once. With no part at all it emits nothing: the run reports the
losses.

The graph says which parts a delivery can lead to, not which other deliveries still can: two
agents of one class each lead to every part their class produces. So while other work of the
request is still in flight (``in_flight``, the runtime's count of its deliveries), a loss only
puts the part in doubt: it is taken if it comes, and is lost, with the loss's reason, once the
gather sees nothing else of the request in flight, or at the deadline.

A cancelled request delivers nothing more, its session's deadline included, and tells no loss:
the gather hears of it by the runtime's ``genie.cancelled`` notice, and ends the session without
a bundle (what the request did is the caller's, who gave it up).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .._agent.agent import Risk
from .._agent.context import Context, Timer
from .._errors import AgentError
from .._message.envelope import RUNTIME_METADATA, Message
from .._message.payload import Payload
from .._runtime.losses import Lost, notice_of_cancelling, notice_of_loss
from ._finished import EndsKept, Finished

__all__ = [
    "GatherDeadline",
    "GatherNode",
    "GatherTimeoutError",
    "Gathered",
    "MissingPart",
    "gathered_model",
    "missing_parts",
]

# The metadata key under which a partial bundle names its missing parts (each a MissingPart's
# JSON with its "part"): children inherit their parent's metadata, so whatever is built from
# the bundle says it, in any process and after a resume.
MISSING = f"{RUNTIME_METADATA}missing_parts"


P = TypeVar("P", bound=Payload)


class MissingPart(BaseModel):
    """Why a part is missing: ``denied`` (with the ``policy``), ``failed`` (the reason is the
    error), ``shed``, ``cancelled``, or ``timed_out`` (no part before the deadline); ``agent``
    is where the delivery that would have led to it was lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["denied", "failed", "shed", "cancelled", "timed_out"]
    reason: str
    policy: str | None = None
    agent: str | None = None

    def text(self) -> str:
        """``denied to forecaster by policy no-forecasts: forecasts are off today``."""
        if self.kind == "timed_out":
            return self.reason
        where = f" to {self.agent}" if self.agent else ""
        by = f" by policy {self.policy}" if self.policy else ""
        return f"{self.kind}{where}{by}: {self.reason}"


class Gathered(Payload):
    """What a gather emits: each part's payload (as JSON data) under its expected type or
    sender, what is missing (``missing`` the names, ``why`` each one's reason), and whether
    the bundle is complete. A catalogue agent that consumes a gather's output declares a
    subclass with its own ``message_type``."""

    parts: dict[str, dict[str, Any]]
    missing: tuple[str, ...] = ()
    why: dict[str, MissingPart] = Field(default_factory=dict)
    status: Literal["complete", "partial"] = "complete"

    def missing_lines(self, parts: Sequence[str] | None = None) -> list[str]:
        """``missing: forecast_result (denied to forecaster by policy p: reason)`` for each
        missing part (of ``parts``, when given), for a person reading a decision."""
        lines = []
        for name in self.missing if parts is None else parts:
            why = self.why.get(name)
            lines.append(f"missing: {name}" + (f" ({why.text()})" if why else ""))
        return lines

    def part(self, model: type[P]) -> P | None:
        """The part of ``model``'s message type, parsed; None when it did not come."""
        data = self.parts.get(model.message_type)
        return None if data is None else model.model_validate(data)


class GatherDeadline(Payload):
    """The tick a gather schedules to itself."""

    message_type = "genie.gather_deadline"


class GatherTimeoutError(AgentError):
    """A gather with ``on_timeout: fail`` ended with parts missing: at its deadline, or at
    once when every part not here was lost (the message names each with its reason)."""


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
    lost: dict[str, MissingPart] = field(default_factory=dict)
    # Parts a loss leads to that other work of the request, still in flight, may yet bring.
    doubtful: dict[str, MissingPart] = field(default_factory=dict)


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
        feeds: Mapping[tuple[str, str], Collection[str]] | None = None,
        in_flight: Callable[[str], int] | None = None,
        ends: EndsKept | None = None,
    ) -> None:
        self.id = self.name = id
        self.expect = tuple(expect)
        self.by = by
        self.deadline = deadline
        self.emit_model = emit
        self.to = to
        self.on_timeout = on_timeout
        # (agent, type) -> the parts a delivery of that type to that agent leads to.
        self.feeds = {k: frozenset(v) & set(self.expect) for k, v in (feeds or {}).items()}
        # correlation -> its deliveries in flight in the runtime (None: a loss is final).
        self.in_flight = in_flight
        self.produces: tuple[type[Payload], ...] = (emit, GatherDeadline)
        self.ignored = self.late = 0
        self._sessions: dict[str, _Session] = {}
        # Correlations already emitted or timed out: a straggler must not open a new session.
        # Kept by the runtime (``ends``) with each request still in flight there.
        self._closed = Finished(id, ends)

    @property
    def pending(self) -> int:
        return len(self._sessions)

    def keeps(self, correlation_id: str) -> bool:
        """Whether a session of ``correlation_id`` is open: a store (or the broker) keeps
        the deliveries this fan-in took of it until it is not, so that a restart delivers
        them again and the session is rebuilt (docs/durability.md)."""
        return correlation_id in self._sessions

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        key = msg.correlation_id
        payload = msg.payload
        if isinstance(payload, Lost):
            lost = notice_of_loss(msg)  # the runtime's, or a look-alike that tells nothing
            return self._lost(lost, ctx) if lost is not None else ()
        cancelled = notice_of_cancelling(msg)
        if cancelled is not None:
            return self._cancelled(cancelled)
        if isinstance(payload, GatherDeadline):
            session = self._sessions.pop(key, None)
            if session is None:
                return ()
            self._closed.add(key)
            return self._end(ctx, session)
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
        session.parts.setdefault(part, payload)
        session.lost.pop(part, None)  # it came after all (by another way)
        session.doubtful.pop(part, None)
        return self._settle(ctx, session)

    def _lost(self, lost: Lost, ctx: Context) -> Sequence[Message]:
        if lost.consumer == self.id:  # a part lost on its way here
            part = lost.type_name if self.by == "type" else lost.sender
            parts = frozenset((part,)) & set(self.expect)
        else:
            parts = self.feeds.get((lost.consumer, lost.type_name), frozenset())
        key = ctx.message.correlation_id
        session = self._sessions.get(key)
        if not parts or (session is None and key in self._closed):
            return ()
        if session is None:
            if parts >= set(self.expect) and not self._more_coming(ctx, None):
                return ()  # nothing can come: no bundle, the run reports the loss
            session = self._sessions[key] = _Session(ctx.schedule(self.deadline, GatherDeadline()))
        why = MissingPart(
            kind=lost.kind, reason=lost.reason, policy=lost.policy, agent=lost.consumer
        )
        for part in parts:
            if part not in session.parts:
                session.doubtful.setdefault(part, why)
        return self._settle(ctx, session)

    def _cancelled(self, correlation_id: str) -> Sequence[Message]:
        """The request was cancelled: nothing of it comes any more, its deadline neither."""
        session = self._sessions.pop(correlation_id, None)
        self._closed.add(correlation_id)  # a straggler from a process that missed it opens none
        if session is not None:
            session.timer.cancel()
        return ()

    def _more_coming(self, ctx: Context, session: _Session | None) -> bool:
        """Whether work of the request besides this delivery and the session's deadline is
        still in flight, so that a part a loss leads to may yet come by another way."""
        if self.in_flight is None:
            return False
        own = 1 if session is None else 2
        return self.in_flight(ctx.message.correlation_id) > own

    def _settle(self, ctx: Context, session: _Session) -> Sequence[Message]:
        """End the session once every part is here or lost: a part in doubt is lost once
        nothing else of the request is in flight."""
        if session.doubtful and not self._more_coming(ctx, session):
            for part, why in session.doubtful.items():
                session.lost.setdefault(part, why)
            session.doubtful.clear()
        if len(session.parts) + len(session.lost) < len(self.expect):
            return ()
        key = ctx.message.correlation_id
        del self._sessions[key]
        self._closed.add(key)
        session.timer.cancel()
        return self._end(ctx, session)

    def _end(self, ctx: Context, session: _Session) -> Sequence[Message]:
        why = {**session.doubtful, **session.lost}  # a loss in doubt is why it did not come
        for part in self.expect:
            if part not in session.parts and part not in why:
                reason = f"did not arrive within the {self.deadline:g}s deadline"
                why[part] = MissingPart(kind="timed_out", reason=reason)
        if not session.parts:
            return ()  # nothing to bundle: the losses are the run's to report
        if why and self.on_timeout == "fail":
            msg = ctx.message
            raise GatherTimeoutError(
                f"gather {self.id!r}: "
                + "; ".join(f"{part}: {m.text()}" for part, m in why.items()),
                message_id=msg.id,
                agent_id=self.id,
                correlation_id=msg.correlation_id,
            )
        bundle = self.emit_model(
            parts={k: p.model_dump(mode="json") for k, p in session.parts.items()},
            missing=tuple(p for p in self.expect if p in why),
            why={p: why[p] for p in self.expect if p in why},
            status="partial" if why else "complete",
        )
        said = ctx.message.metadata.get(MISSING)
        earlier = said if isinstance(said, tuple) else ()  # an earlier gather's, upstream
        told = tuple(
            json.dumps({"part": p, **why[p].model_dump(mode="json")}) for p in bundle.missing
        )
        metadata = {MISSING: (*earlier, *told)} if told else None
        return (ctx.emit(bundle, recipient=self.to, metadata=metadata),)


def missing_parts(msg: Message) -> dict[str, MissingPart]:
    """The parts that ``msg`` was built without, by each partial bundle it descends from."""
    said = msg.metadata.get(MISSING)
    out: dict[str, MissingPart] = {}
    for text in said if isinstance(said, tuple) else ():
        # Written by a gather, as a MissingPart's JSON with its part; anything else under the
        # key (set by hand from Python) says no part, rather than stopping the run.
        try:
            data = json.loads(text)
            part = data.pop("part")
            missing = MissingPart.model_validate(data)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if isinstance(part, str):
            out.setdefault(part, missing)
    return out
