"""Putting faults into a pipeline's runtime: a wrapper around each faulty agent, mailbox
options, and one policy that denies the configured fraction of deliveries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._agent.agent import Agent, declared_payloads
from .._agent.context import Context
from .._message.envelope import Message
from .._runtime.options import AgentOptions
from .._runtime.policy import Decision
from ._faults import Fault, FaultKind, InjectedFailure, Latency, by_agent, stream
from ._person import Person

__all__ = ["DenyFraction", "Injector"]


class _Draws:
    """One agent's error stream and what it decided."""

    def __init__(self, fault: Fault, seed: int, agent: str) -> None:
        self.fault = fault
        self.rate = fault.rate
        self._random = stream(seed, "error", agent).random
        self.attempts = 0
        self.injected = 0

    def fails(self) -> bool:
        self.attempts += 1
        if self._random() < self.rate:
            self.injected += 1
            return True
        return False


class _Faulty:
    """Stands in for an agent: waits a drawn latency, maybe fails, else calls the agent.

    The latency is awaited inside the handler call, so it holds the agent's worker (queueing
    behind it is what a slow agent causes) and counts against the handler's deadline.
    """

    def __init__(self, inner: Agent, latency: Latency | None, draws: _Draws | None) -> None:
        self.inner = inner
        self.id = inner.id
        self.name = inner.name
        self.capabilities = inner.capabilities
        # Declared as the agent declares them, so the runtime registers the same types.
        self.consumes, self.produces = declared_payloads(inner)
        self.latency = latency
        self.draws = draws

    def __getattr__(self, name: str) -> Any:  # risk, tier, on_start...: the agent's own
        return getattr(self.inner, name)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        if self.latency is not None:
            await ctx.sleep(self.latency.draw())
        if self.draws is not None and self.draws.fails():
            raise InjectedFailure(
                f"{self.id}: injected failure ({self.draws.fault.spec}) on {msg.type!r}"
            )
        return await self.inner.handle(msg, ctx)


class DenyFraction:
    """The policy of ``deny`` faults: denies each delivery to a faulty agent with the agent's
    probability, drawn from its own stream. It runs after the pipeline's own policies, so
    it sees only what they allowed."""

    name = "simulation:deny"

    def __init__(self, faults: Mapping[str, Fault], seed: int) -> None:
        self._streams = {agent: stream(seed, "deny", agent).random for agent in faults}
        self._faults = dict(faults)
        self.evaluated = dict.fromkeys(faults, 0)
        self.denied = dict.fromkeys(faults, 0)

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        draw = self._streams.get(recipient)
        if draw is None:
            return Decision.ALLOW
        self.evaluated[recipient] += 1
        fault = self._faults[recipient]
        if draw() < fault.rate:
            self.denied[recipient] += 1
            return Decision.deny(
                self.name, f"simulated denial of {fault.rate:g} of deliveries ({fault.spec})"
            )
        return Decision.ALLOW


class Injector:
    """Applies a resolved fault plan to the agents of one runtime, and counts what it did."""

    def __init__(self, plan: Mapping[tuple[FaultKind, str], Fault], seed: int) -> None:
        self.plan = dict(plan)
        self.seed = seed
        self._latency = by_agent(plan, "latency")
        self._error = by_agent(plan, "error")
        self._capacity = by_agent(plan, "capacity")
        deny = by_agent(plan, "deny")
        self.policy = DenyFraction(deny, seed) if deny else None
        answer = by_agent(plan, "answer")
        self.person = Person(answer, seed) if answer else None
        self.agents: dict[str, _Faulty] = {}

    def adapt(self, agent: Agent, options: AgentOptions) -> tuple[Agent, AgentOptions]:
        """For ``Pipeline.runtime(adapt=...)``."""
        aid = agent.id
        capacity = self._capacity.get(aid)
        if capacity is not None:
            options = options.replace(
                mailbox_size=capacity.capacity,
                overflow=capacity.overflow or options.overflow,
            )
        latency = self._latency.get(aid)
        error = self._error.get(aid)
        if latency is None and error is None:
            return agent, options
        faulty = _Faulty(
            agent,
            latency.latency(stream(self.seed, "latency", aid)) if latency else None,
            _Draws(error, self.seed, aid) if error else None,
        )
        self.agents[aid] = faulty
        return faulty, options

    def counts(self) -> list[dict[str, Any]]:
        """What each fault did, per agent, in plan order (for the report)."""
        out: list[dict[str, Any]] = []
        for (kind, aid), fault in self.plan.items():
            row: dict[str, Any] = {"fault": fault.spec, "kind": kind, "agent": aid}
            faulty = self.agents.get(aid)
            if kind == "error" and faulty is not None and faulty.draws is not None:
                row |= {"attempts": faulty.draws.attempts, "injected": faulty.draws.injected}
            elif kind == "deny" and self.policy is not None:
                row |= {
                    "evaluated": self.policy.evaluated[aid],
                    "denied": self.policy.denied[aid],
                }
            elif kind == "capacity":
                row |= {"capacity": fault.capacity, "overflow": fault.overflow or "pipeline"}
            elif kind == "latency":
                row |= {"distribution": fault.distribution, "mean": fault.mean}
            elif kind == "answer" and self.person is not None:
                row |= self.person.counts(aid)
            out.append(row)
        return out
