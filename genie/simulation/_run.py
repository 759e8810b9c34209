"""Running a simulation: many seeded sessions of one pipeline, with faults, on virtual time.

``concurrency`` workers run the sessions, each taking the next one as soon as its last one
ended (a closed loop), so that many are in flight. On virtual time the run is on asyncio with
a loop whose clock jumps to the next timer whenever nothing is ready (``_virtual``): its order
is first-come-first-served and no two timers are ever due at one instant, so the same
pipeline, seed and options replay the same run event for event.
"""

from __future__ import annotations

import functools
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from .._base.clock import Clock, spelt
from .._errors import described, unwrapped
from .._message.payload import Payload
from .._runtime.audit import MemoryAuditLog
from .._runtime.deadletter import DeadLetters
from .._runtime.runtime import Runtime
from ..pipeline import Pipeline, load_pipeline
from ..pipeline._run import run_status
from ._faults import Fault, parse_fault, resolve
from ._histogram import Histogram
from ._inject import Injector
from ._report import OUTCOMES, Outcomes, Report, build_report
from ._settings import (
    ClockKind,
    Settings,
    SimulationError,
    check_seed,
    check_timeout,
    fault_list,
    whole,
)
from ._track import Tracker
from ._virtual import VirtualTimeLoop

__all__ = ["OUTCOMES", "Progress", "simulate"]

_OUTCOME = {
    "ok": "completed",
    "partial": "partial",
    "workflow_failed": "failed",
    "fallback": "fallback",
    "denied": "denied",
    "failed": "failed",
    "no_output": "failed",
    "timed_out": "timed_out",
}
KEEP = 100  # dead letters and audit records the simulation's runtime holds
# Virtual runs start at this instant, so every timestamp they make is reproducible.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Progress:
    """Told to the ``progress`` callback every ``every`` sessions and at the end."""

    done: int
    total: int
    outcomes: Mapping[str, int]
    clock: float  # seconds since the first session started, on the run's clock


def simulate(
    pipeline: Pipeline | str | os.PathLike[str],
    *,
    sessions: int = 1000,
    concurrency: int = 16,
    seed: int = 0,
    clock: ClockKind = "virtual",
    faults: Iterable[Fault | str] = (),
    timeout: float | None = None,
    progress: Callable[[Progress], None] | None = None,
    every: int | None = None,
) -> Report:
    """Run ``sessions`` sessions of ``pipeline`` (a loaded ``Pipeline`` or a path) and report.

    ``faults`` are ``Fault`` objects or specs (``"error:recommender=0.1"``, see
    ``parse_fault``).
    Raises ``SimulationError`` / ``FaultError`` / ``ConfigurationError`` for bad settings,
    before anything runs.
    """
    if isinstance(pipeline, str | os.PathLike):
        pipeline = load_pipeline(pipeline)
    elif not isinstance(pipeline, Pipeline):  # failed in the loader with a bare TypeError
        raise SimulationError(
            "pipeline must be a Pipeline, a pipeline file's path or a shipped pipeline's name, "
            f"not {spelt(pipeline)}"
        )
    counts = (("sessions", sessions), ("concurrency", concurrency), ("every", every))
    for name, value in counts:
        if (value is not None or name != "every") and not whole(value, 1):
            raise SimulationError(f"{name} must be a whole number >= 1, got {spelt(value)}")
    check_seed(seed)
    if clock not in ("virtual", "real"):
        raise SimulationError(f"clock must be 'virtual' or 'real', got {clock!r}")
    if timeout is not None:
        check_timeout(timeout)
    if progress is not None and not callable(progress):
        raise SimulationError(
            f"progress must be a callable taking a Progress, got {type(progress).__name__}"
        )
    given = fault_list(faults)
    parsed = tuple(f if isinstance(f, Fault) else parse_fault(f) for f in given)
    agents = [a.id for a in pipeline.config.agents]
    config = pipeline.config
    gathers, workflows = [g.id for g in config.gathers], [w.id for w in config.workflows]
    plan = resolve(parsed, agents, gathers, pipeline.name, workflows)
    settings = Settings(
        sessions,
        concurrency,
        seed,
        clock,
        timeout if timeout is not None else pipeline.config.timeout,
        parsed,
    )
    inputs = _Inputs(pipeline, seed)
    inputs.payload(0)  # a generator that cannot make one input fails here, before the run
    every = every if every is not None else max(1, sessions // 100)
    run = functools.partial(_Run(pipeline, settings, plan, inputs, progress, every).main)
    # What stopped the run is raised as itself, not in the group of the task it stopped (a
    # bad generated input, the progress callback's own error).
    with unwrapped(Exception):
        if clock == "real":
            return anyio.run(run)
        return anyio.run(run, backend_options={"loop_factory": VirtualTimeLoop})


class _Inputs:
    """Each session's entry payload: from the pipeline's input generator, seeded per session
    (so session n gets the same input whatever the concurrency), or the entry's default."""

    def __init__(self, pipeline: Pipeline, seed: int) -> None:
        self.pipeline = pipeline
        self.seed = seed
        decl = pipeline.config.simulation.inputs
        self.generator = pipeline.inputs
        self.use = decl.use if decl is not None else ""
        self.params = dict(decl.params) if decl is not None else {}
        self.fixed: Payload | None = None
        if self.generator is None:
            self.fixed = pipeline.entry_payload(pipeline.read_input(), "the entry's input")

    def payload(self, session: int) -> Payload:
        if self.fixed is not None:
            return self.fixed
        assert self.generator is not None
        rng = random.Random(f"{self.seed}:input:{session}")
        try:
            text = self.generator(rng, session, **self.params)
        except Exception as exc:
            raise SimulationError(
                f"session {session}: the input generator {self.use} raised {described(exc)}"
            ) from exc
        if not isinstance(text, str):
            raise SimulationError(
                f"session {session}: the input generator {self.use} returned "
                f"{type(text).__name__}, not the input text (a str)"
            )
        where = f"session {session}'s input (from {self.use})"
        return self.pipeline.entry_payload(text, where)


class _Run:
    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        plan: Mapping[Any, Fault],
        inputs: _Inputs,
        progress: Callable[[Progress], None] | None,
        every: int,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.inputs = inputs
        self.injector = Injector(plan, settings.seed)
        self.progress = progress
        self.every = every
        self.outcomes: Counter[str] = Counter()
        self.latency = Histogram()
        self.done = 0
        self.began = 0.0
        self.tracker: Tracker | None = None

    async def main(self) -> Report:
        s = self.settings
        clock = Clock(EPOCH if s.clock == "virtual" else None)
        policy = self.injector.policy
        rt = self.pipeline.runtime(
            clock=clock,
            seed=s.seed,
            policies=(policy,) if policy is not None else (),
            adapt=self.injector.adapt,
            audit=MemoryAuditLog(KEEP),
        )
        # The report counts every dead letter and denial; the runtime need not hold more than
        # the last few (a long run would otherwise hold up to 10,000 of each).
        rt.dead_letters = DeadLetters(KEEP, rt.dead_letters.retention, rt.clock)
        async with rt:
            tracker = self.tracker = Tracker(clock.monotonic)
            rt.add_observer(tracker)
            self.began = clock.monotonic()
            person = self.injector.person
            if person is None:
                await self.drive(rt, clock)
            else:
                rt.add_observer(person)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(person.run, rt)
                    await self.drive(rt, clock)
                    tg.cancel_scope.cancel()
            duration = clock.monotonic() - self.began
        return build_report(
            self.pipeline,
            s,
            Outcomes(s.sessions, **{k: self.outcomes[k] for k in OUTCOMES}),
            self.latency,
            duration,
            rt,
            tracker,
            self.injector,
        )

    async def drive(self, rt: Runtime, clock: Clock) -> None:
        """``concurrency`` workers share one iterator of session numbers: a worker takes the
        next session as soon as its last one ends (a closed loop)."""
        sessions = iter(range(self.settings.sessions))
        failures: list[Exception] = []
        async with anyio.create_task_group() as tg:
            for _ in range(min(self.settings.concurrency, self.settings.sessions)):
                tg.start_soon(self.worker, rt, clock, sessions, failures, tg.cancel_scope)
        if failures:
            raise failures[0]

    async def worker(
        self,
        rt: Runtime,
        clock: Clock,
        sessions: Iterator[int],
        failures: list[Exception],
        stop: anyio.CancelScope,
    ) -> None:
        # Workers whose sessions end at one instant may each fail before the cancellation
        # reaches them (the generator refusing every later session, the progress callback
        # raising): the first failure stops the run and is raised alone, not in a group.
        try:
            await self.sessions(rt, clock, sessions)
        except Exception as exc:
            failures.append(exc)
            stop.cancel()

    async def sessions(self, rt: Runtime, clock: Clock, sessions: Iterator[int]) -> None:
        pipeline, s, tracker = self.pipeline, self.settings, self.tracker
        assert tracker is not None
        for session in sessions:
            msg = pipeline.entry_message(rt, self.inputs.payload(session))
            started = clock.monotonic()
            tracker.open_session(msg.correlation_id)
            # On timeout ask cancels the session's queued work (dead-lettered, never run).
            result = await rt.ask(msg, until=pipeline.ends(msg), timeout=s.timeout)
            partial = tracker.close_session(msg.correlation_id)
            reply = result.replies[0] if result.replies else None
            status = run_status(reply, result, pipeline.config.output, partial=partial)
            now = clock.monotonic()
            self.latency.add(now - started)
            self.outcomes[_OUTCOME[status]] += 1
            self.done += 1
            if self.progress is not None and (
                self.done % self.every == 0 or self.done == s.sessions
            ):
                self.progress(
                    Progress(self.done, s.sessions, dict(self.outcomes), now - self.began)
                )
