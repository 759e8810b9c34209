"""Testing a whole app: a pipeline or a set of agents on a real runtime, in one ``async with``
(docs/testing.md).

``TestContext`` tests one handler; ``TestRuntime`` runs them all, as ``genie run`` does, and
records what each agent received and emitted, so a test reads the conversation instead of
spin-waiting on counters::

    async with TestRuntime("pipeline.yaml", faults=["error:forecaster=1"]) as app:
        result = await app.run("a question")
        assert result.status == "partial"
        assert app.received("forecaster")[0].type == "analysis_result"

Faults are the simulation's (``KIND:AGENT=VALUE``: ``error``, ``latency``, ``capacity``,
``deny``; docs/simulation.md), drawn from ``seed``. A pipeline's models are the scripted
providers its ``llm:`` section declares (``kind: scripted``), or the ``llm`` stacks given.
Virtual time is the simulation's event loop: run the test on ``VIRTUAL_TIME`` (an anyio backend
with its options), and a handler's ``anyio.sleep(3600)`` takes no real time.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import anyio

from .._agent.agent import Agent
from .._base.clock import spelt
from .._errors import ConfigurationError, RuntimeClosedError, did_you_mean
from .._message.envelope import Message
from .._message.payload import Payload
from .._runtime.correlator import GatherResult
from .._runtime.deadletter import DeadLetter
from .._runtime.observe.observer import Observer
from .._runtime.options import AgentOptions
from .._runtime.policy import Limits
from .._runtime.runtime import Runtime
from ..simulation._virtual import VirtualTimeLoop

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ..llm._config import LLMStacks
    from ..pipeline import Pipeline, RunResult

__all__ = ["VIRTUAL_TIME", "AgentRecord", "TestRuntime"]

# ``@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])``, or the ``anyio_backend``
# fixture's value: the asyncio loop whose clock jumps to the next timer when nothing is ready.
VIRTUAL_TIME: tuple[str, dict[str, Any]] = ("asyncio", {"loop_factory": VirtualTimeLoop})


class AgentRecord:
    """What one agent received (each delivery it ran, in order) and emitted (its outputs)."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.emitted: list[Message] = []


class _Recorder(Observer):
    """Keeps each delivery an agent ran and each message an agent sent."""

    def __init__(self, agents: Iterable[str]) -> None:
        self.agents = set(agents)
        self.records: defaultdict[str, AgentRecord] = defaultdict(AgentRecord)
        self._received: set[tuple[str, str]] = set()  # (agent, message id) recorded

    def published(self, msg: Message, recipients: int) -> None:
        if msg.sender in self.agents:
            self.records[msg.sender].emitted.append(msg)

    def delivered(self, msg: Message, agent_id: str) -> None:
        self._receive(msg, agent_id)

    def delivered_many(self, msg: Message, agent_ids: Sequence[str]) -> None:
        for agent_id in agent_ids:
            self._receive(msg, agent_id)

    # A fallback runs the delivery its agent failed, handed over, not delivered anew: it is
    # told of as handled (or failed) by the fallback, which received it then.
    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        self._handed_over(msg, agent_id)

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        self._handed_over(msg, agent_id)

    def _handed_over(self, msg: Message, agent_id: str) -> None:
        if (agent_id, msg.id) not in self._received:
            self._receive(msg, agent_id)

    def _receive(self, msg: Message, agent_id: str) -> None:
        self._received.add((agent_id, msg.id))
        self.records[agent_id].received.append(msg)


class TestRuntime:
    """A running runtime for a test: the pipeline at ``app`` (a path or a loaded
    ``Pipeline``), or the agents ``app`` lists, with ``faults`` injected.

    ``idle()`` waits for the runtime to have nothing in flight, without polling, and fails with
    what is still in flight after ``timeout`` seconds (of the runtime's clock: virtual time
    under ``VIRTUAL_TIME``). Every wait here is bounded by ``timeout``.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class

    def __init__(
        self,
        app: str | os.PathLike[str] | Pipeline | Sequence[Agent],
        *,
        faults: Iterable[str] = (),
        seed: int = 0,
        limits: Limits | None = None,
        options: AgentOptions | None = None,
        llm: LLMStacks | None = None,
        timeout: float = 10.0,
    ) -> None:
        from ..pipeline import Pipeline, load_pipeline
        from ..simulation._settings import check_seed, check_timeout, fault_list

        # Refused here, naming the argument: each failed later, deep in the runtime's start
        # or in a wait's arithmetic, or ran as something else than what was meant.
        check_seed(seed)
        check_timeout(timeout)
        given = fault_list(faults)
        for name, value, kind in (("limits", limits, Limits), ("options", options, AgentOptions)):
            if value is not None and not isinstance(value, kind):
                raise ConfigurationError(
                    f"{name} must be {kind.__name__} or None, not {spelt(value)}"
                )
        self.timeout = timeout
        self.pipeline: Pipeline | None = None
        self._agents: list[Agent] = []
        agents = list(app) if isinstance(app, Iterable) and not isinstance(app, str) else None
        if isinstance(app, str | os.PathLike):
            self.pipeline = load_pipeline(app)
        elif isinstance(app, Pipeline):
            self.pipeline = app
        elif agents is not None and all(isinstance(a, Agent) for a in agents):
            self._agents = agents
        else:
            raise ConfigurationError(
                "app must be a pipeline file's path or a shipped pipeline's name, a Pipeline, "
                f"or a list of agents, not {spelt(app)}"
            )
        if self.pipeline is not None and (limits is not None or options is not None):
            # A pipeline's limits and agent options are its file's: given here, they were
            # silently not applied.
            raise ConfigurationError(
                "limits and options are for a list of agents: a pipeline's come from its file"
            )
        if self.pipeline is None and llm is not None:  # silently not given to them, too
            raise ConfigurationError(
                "llm is for a pipeline, whose agents name its stacks: agents given in a list "
                "hold their own models"
            )
        if self.pipeline is not None:
            ids = [a.id for a in self.pipeline.config.agents]
            gathers = [g.id for g in self.pipeline.config.gathers]
            workflows = [w.id for w in self.pipeline.config.workflows]
            name = self.pipeline.name
        else:
            ids, gathers, name = [a.id for a in self._agents], [], "the test runtime"
            workflows = []
        from ..simulation._faults import resolve
        from ..simulation._inject import Injector

        plan = resolve(given, ids, gathers, name, workflows)
        self._injector = Injector(plan, seed)
        self._person: TaskGroup | None = None  # runs the answer faults' person
        self._recorder = _Recorder(ids)
        self._limits = limits
        self._options = options
        self._llm = llm
        self._seed = seed
        self._runtime: Runtime | None = None
        self._started = False

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise ConfigurationError("the test runtime is not running: use 'async with' first")
        return self._runtime

    def _build(self) -> Runtime:
        policy = self._injector.policy
        policies = (policy,) if policy is not None else ()
        if self.pipeline is not None:
            return self.pipeline.runtime(
                seed=self._seed, policies=policies, adapt=self._injector.adapt, llm=self._llm
            )
        rt = Runtime(policies=policies, limits=self._limits or Limits(), seed=self._seed)
        for agent in self._agents:
            faulty, options = self._injector.adapt(agent, self._options or AgentOptions())
            rt.add(faulty, options=options)
        return rt

    async def __aenter__(self) -> Self:
        # As a Runtime, it runs once: its answer faults' person, its fault draws and its
        # record of the conversation are of one run (a second run's person failed at once,
        # its streams closed by the first; one nested in the first left the first's runtime
        # running after the block).
        if self._started:
            raise RuntimeClosedError(
                "a TestRuntime can be started once: make a new one for each 'async with'"
            )
        self._started = True
        rt = self._build()
        rt.drain_timeout = min(rt.drain_timeout, self.timeout)  # a stuck test ends in time
        rt.add_observer(self._recorder)
        person = self._injector.person
        if person is not None:
            rt.add_observer(person)
        await rt.__aenter__()
        self._runtime = rt
        if person is not None:
            self._person = anyio.create_task_group()
            await self._person.__aenter__()
            self._person.start_soon(person.run, rt)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        rt, self._runtime = self.runtime, None
        tasks, self._person = self._person, None
        try:
            if tasks is not None:
                tasks.cancel_scope.cancel()
                await tasks.__aexit__(None, None, None)
        finally:
            await rt.__aexit__(exc_type, exc, tb)

    # --- sending ------------------------------------------------------------------------------
    def message(self, payload: Payload, *, to: str | None = None, **fields: Any) -> Message:
        """A top-level message for ``to`` (or whoever subscribes to its type)."""
        return self.runtime.message(payload, recipient=to, **fields)

    async def publish(self, payload: Payload | Message, *, to: str | None = None) -> Message:
        """Send ``payload`` (or a built message); returns the message sent."""
        msg = payload if isinstance(payload, Message) else self.message(payload, to=to)
        with anyio.fail_after(self.timeout):
            await self.runtime.publish(msg)
        return msg

    async def ask(
        self, payload: Payload | Message, *, to: str | None = None, until: str | None = None
    ) -> GatherResult:
        """Send ``payload`` and wait for the message that ends its request (see
        ``Runtime.ask``), at most ``timeout`` seconds."""
        msg = payload if isinstance(payload, Message) else self.message(payload, to=to)
        return await self.runtime.ask(msg, until=until, timeout=self.timeout)

    async def run(self, input: str | Payload | None = None) -> RunResult:
        """One request through the pipeline, as ``genie run`` sends it: ``input`` text (read
        as the entry's input format), an entry payload, or the entry's default input. It
        ends at the pipeline's own ``timeout``, as a run does."""
        pipeline = self.pipeline
        if pipeline is None:
            raise ConfigurationError("run() needs a pipeline: this test runtime hosts agents")
        if isinstance(input, Payload):
            payload = input
        else:
            payload = pipeline.entry_payload(pipeline.read_input(text=input))
        return await pipeline.ask(self.runtime, payload)

    async def idle(self) -> None:
        """Wait until nothing is in flight (no delivery queued or running, no timer set)."""
        rt = self.runtime
        with anyio.move_on_after(self.timeout) as waited:
            await rt.wait_idle()
        if waited.cancelled_caught:
            stats = rt.statistics()
            raise TimeoutError(
                f"the runtime is still busy after {self.timeout:g}s: {stats.in_flight} "
                "deliveries in flight (a handler that never returns, or agents that keep "
                "sending to each other?)"
            )

    # --- reading ------------------------------------------------------------------------------
    def received(self, agent_id: str) -> list[Message]:
        """Each message delivered to ``agent_id``, in order (a retried delivery once; a
        fallback's, the delivery its agent failed)."""
        self._known(agent_id)
        return list(self._recorder.records[agent_id].received)

    def emitted(self, agent_id: str) -> list[Message]:
        """Each message ``agent_id`` sent, in order (its outputs, a gather's bundle)."""
        self._known(agent_id)
        return list(self._recorder.records[agent_id].emitted)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        return list(self.runtime.dead_letters)

    def _known(self, agent_id: str) -> None:
        if agent_id not in self._recorder.agents:
            hint = did_you_mean(agent_id, sorted(self._recorder.agents))
            raise ConfigurationError(f"no agent {agent_id!r} in this test runtime{hint}")
