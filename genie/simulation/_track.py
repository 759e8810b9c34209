"""What the simulation measures per agent, through the runtime's observer hook: deliveries,
handler calls, busy time, queueing delay (mailbox to handler start) and dead letters; and
which sessions in flight a declared gather answered without some of its parts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .._errors import HandlerTimeoutError
from .._message.envelope import Message
from .._runtime.deadletter import DeadLetter
from .._runtime.observe.observer import Observer
from ..pipeline._gather import Gathered
from ._histogram import Histogram

__all__ = ["AgentTrack", "Tracker"]


@dataclass
class AgentTrack:
    deliveries: int = 0
    handled: int = 0  # handler calls that returned
    failed: int = 0  # handler calls that raised (retries and timeouts included)
    denied: int = 0
    busy: float = 0.0  # clock seconds inside handler calls
    queueing: Histogram = field(default_factory=Histogram)


class Tracker(Observer):
    """Per-agent figures. It holds one timestamp per queued delivery and nothing per finished
    session, so memory follows what is in flight, not how many sessions ran."""

    never_raises = True

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.agents: dict[str, AgentTrack] = {}
        self._queued: dict[tuple[str, str], float] = {}
        self.dead_letters: Counter[tuple[str, str, str]] = Counter()  # (kind, reason, agent)
        self.handler_deadlines = 0
        self.limits_fired: Counter[str] = Counter()  # model budgets refusing a call, by limit
        # Sessions in flight (by correlation): True once a gather bundled without a part.
        self._sessions: dict[str, bool] = {}

    def open_session(self, correlation_id: str) -> None:
        self._sessions[correlation_id] = False

    def close_session(self, correlation_id: str) -> bool:
        """Forget the session; True when a declared gather of it bundled without a part."""
        return self._sessions.pop(correlation_id, False)

    def published(self, msg: Message, recipients: int) -> None:
        bundle = msg.payload
        if isinstance(bundle, Gathered) and bundle.why and msg.correlation_id in self._sessions:
            self._sessions[msg.correlation_id] = True

    def agent(self, agent_id: str) -> AgentTrack:
        track = self.agents.get(agent_id)
        if track is None:
            track = self.agents[agent_id] = AgentTrack()
        return track

    def delivered(self, msg: Message, agent_id: str) -> None:
        self.agent(agent_id).deliveries += 1
        self._queued[msg.id, agent_id] = self._now()

    def _ran(self, msg: Message, agent_id: str, duration: float) -> AgentTrack:
        track = self.agent(agent_id)
        track.busy += duration
        queued = self._queued.pop((msg.id, agent_id), None)
        if queued is not None:  # the first attempt: later ones (retries) did not queue
            track.queueing.add(max(0.0, self._now() - duration - queued))
        return track

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        self._ran(msg, agent_id, duration).handled += 1

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        self._ran(msg, agent_id, duration).failed += 1
        if isinstance(error, HandlerTimeoutError):
            self.handler_deadlines += 1

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        self.agent(agent_id).denied += 1

    def limit_fired(self, msg: Message, agent_id: str, limit: str, reason: str) -> None:
        self.limits_fired[limit] += 1

    def dead_lettered(self, letter: DeadLetter) -> None:
        agent = letter.agent_id or "-"
        self._queued.pop((letter.message.id, agent), None)  # cancelled before it ran
        # Failures group by exception type; the other kinds' reasons are a fixed few texts.
        reason = letter.error_type or letter.reason
        if letter.kind == "failed" and "; fallback" in letter.reason:
            reason += " (fallback failed too)"
        self.dead_letters[letter.kind, reason, agent] += 1
