"""Declared workflows (sagas): steps in dependency order, independent ones at once, and on a
failure, a rejection, a timeout or a cancellation, the completed steps undone in reverse order;
a failed undo dead-lettered and reported. On both event loops, through the real runtime."""

from __future__ import annotations

import contextvars
import json
import sqlite3
import textwrap
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import (
    Approval,
    ApprovalRefusedError,
    AuditRecord,
    AuditWriteError,
    Context,
    InvalidArgumentError,
    MemoryAuditLog,
    Message,
    Observer,
    Runtime,
)
from genie._base.clock import Clock
from genie._base.yamlconf import ConfigFileError
from genie._cli.main import main
from genie.pipeline import Pipeline, WorkflowOutcome, _finished, load_pipeline
from genie.testing import VIRTUAL_TIME, TestRuntime

from . import saga_agents
from .saga_agents import Trip

pytestmark = pytest.mark.anyio

AGENT = "tests.pipelines.saga_agents:Booker"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_journal() -> Iterator[None]:
    saga_agents.JOURNAL.clear()
    saga_agents.MET.clear()
    yield
    saga_agents.JOURNAL.clear()
    saga_agents.MET.clear()


def trip_pipeline(
    tmp_path: Path,
    *,
    flight: str = "",
    hotel: str = "",
    car: str = "",
    steps: str | None = None,
    workflow: str = "",
    timeout: str = "20s",
    top: str = "",
    options: dict[str, str] | None = None,
    agents: str = "",
) -> Pipeline:
    """flight and hotel at once, then the car; each undone by a trip_cancel. ``flight`` etc.
    are extra params of that booker (as YAML flow items, e.g. ``fail: true``); ``options``
    extra keys of an agent (``{"car": "fallback: spare"}``), ``agents`` more agents (YAML
    flow mappings, one a line)."""
    extra = {a: f", {o}" for a, o in (options or {}).items()}
    steps = (
        steps
        or """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, compensate: trip_cancel}
      - {id: car, after: [flight, hotel], compensate: trip_cancel}
    """
    )
    text = f"""
name: trip
agents:
  - {{id: flight, use: {AGENT}, params: {{field: flight, {flight}}}{extra.get("flight", "")}}}
  - {{id: hotel, use: {AGENT}, params: {{field: hotel, {hotel}}}{extra.get("hotel", "")}}}
  - {{id: car, use: {AGENT}, params: {{field: car, {car}}}{extra.get("car", "")}}}
{textwrap.indent(textwrap.dedent(agents), "  ")}
workflows:
  - id: booking
    state: trip
    steps:{textwrap.indent(textwrap.dedent(steps), "      ")}
    emit: {{type: trip_outcome}}
{workflow}
entry: {{type: trip, to: booking, payload: {{city: Goa}}}}
output: trip_outcome
timeout: {timeout}
{top}
"""
    path = tmp_path / "trip.yaml"
    path.write_text(text)
    return load_pipeline(path)


async def run(pipeline: Pipeline) -> tuple[WorkflowOutcome, Any]:
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        assert result.output is not None, result
        outcome = result.output.payload
        assert isinstance(outcome, WorkflowOutcome)
        return outcome, result


def kinds(outcome: WorkflowOutcome) -> list[str]:
    return [f"{e.kind} {e.step}" for e in outcome.events]


async def test_steps_run_in_order_and_independent_ones_at_once(tmp_path: Path) -> None:
    # flight and hotel each wait until both have started: done one after the other, they
    # could not finish (their deadline would fail the workflow).
    steps = """
      - {id: flight, deadline: 2s}
      - {id: hotel, deadline: 2s}
      - {id: car, after: [flight, hotel]}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, flight="meet: 2", hotel="meet: 2")
    outcome, result = await run(pipeline)
    assert outcome.status == "completed", outcome
    assert outcome.state_as(Trip) == Trip(
        city="Goa", flight="flight-ok", hotel="hotel-ok", car="car-ok"
    )
    assert saga_agents.JOURNAL[:2] == ["start flight", "start hotel"]
    assert saga_agents.JOURNAL[-2:] == ["start car", "do car"]
    assert kinds(outcome)[-2:] == ["started car", "completed car"]
    assert result.dead_letters == ()


@pytest.mark.parametrize("model", ["trip", Trip(city="Goa")])
def test_an_outcomes_state_as_what_is_no_model_is_refused_naming_it(model: object) -> None:
    outcome = WorkflowOutcome(workflow="booking", status="completed", state={"city": "Goa"})
    given = type(model).__qualname__
    with pytest.raises(InvalidArgumentError, match=f"takes the state's model .*, not {given}"):
        outcome.state_as(model)  # type: ignore[arg-type]


async def test_a_failed_step_undoes_the_completed_ones_in_reverse(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel], compensate: trip_cancel}
    """
    outcome, result = await run(trip_pipeline(tmp_path, steps=steps, car="fail: true"))
    assert outcome.status == "failed"
    assert outcome.failed_step == "car"
    assert outcome.reason == "failed: RuntimeError: car: no seats left"
    assert outcome.compensated == ("hotel", "flight")  # reverse order of completion
    assert saga_agents.JOURNAL[-2:] == ["undo hotel hotel-ok", "undo flight flight-ok"]
    assert kinds(outcome)[-3:] == ["failed car", "compensated hotel", "compensated flight"]
    # The failed step itself is a dead letter to inspect, with where it raised.
    (letter,) = result.dead_letters
    assert letter.agent_id == "car"
    assert "no seats left" in letter.reason


async def test_a_step_still_running_when_another_fails_is_undone_once_it_completes(
    tmp_path: Path,
) -> None:
    outcome, _ = await run(trip_pipeline(tmp_path, flight="fail: true"))
    assert outcome.status == "failed"
    assert outcome.failed_step == "flight"
    assert outcome.compensated == ("hotel",)
    assert "start car" not in saga_agents.JOURNAL  # nothing starts after a failure


async def test_the_hops_the_loader_asks_for_are_enough(tmp_path: Path) -> None:
    # 2 x 3 (the longest chain) + 2 x 3 (compensations) + 2: the loader refuses 13.
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel], compensate: trip_cancel}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, car="fail: true", top="limits: {max_hops: 14}")
    outcome, result = await run(pipeline)
    assert outcome.compensated == ("hotel", "flight")
    assert result.denials == ()


async def test_a_failed_compensation_is_dead_lettered_and_the_rest_still_undone(
    tmp_path: Path,
) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel], compensate: trip_cancel}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="undo_fails: true", car="fail: true")
    outcome, result = await run(pipeline)
    assert outcome.status == "failed"
    assert outcome.compensated == ("flight",)
    assert outcome.not_compensated == ("hotel",)
    assert "compensation_failed hotel" in kinds(outcome)
    assert sorted(d.agent_id or "" for d in result.dead_letters) == ["car", "hotel"]
    undo = next(d for d in result.dead_letters if d.agent_id == "hotel")
    assert undo.message.type == "trip_cancel"
    assert "refund desk is closed" in undo.reason


async def test_a_step_that_does_not_reply_in_time_fails_the_workflow(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], deadline: 200ms}
    """
    outcome, _ = await run(trip_pipeline(tmp_path, steps=steps, hotel="stall: 1"))
    assert outcome.status == "failed"
    assert outcome.failed_step == "hotel"
    assert outcome.reason == "no reply within 0.2s"
    assert outcome.compensated == ("flight",)


UNANSWERED_STEPS = """
  - {id: flight, compensate: trip_cancel}
  - {id: hotel, compensate: trip_cancel}
  - {id: car, after: [flight, hotel], deadline: 30s}
"""


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("none", "car handled the trip without replying"),
        ("emit", "car handled the trip without replying"),
        ("other", "replied with 'trip_cancel', not the state 'trip'"),
    ],
)
async def test_a_step_handled_without_the_state_fails_at_once(
    tmp_path: Path, answer: str, reason: str
) -> None:
    # The car's handler returns no reply (nothing, or only a message to nobody in
    # particular), or a reply that is not the state: the workflow fails it as the handler
    # returns, not at its 30s deadline, and undoes what was done.
    pipeline = trip_pipeline(tmp_path, steps=UNANSWERED_STEPS, car=f"answer: {answer}")
    with anyio.fail_after(5):
        outcome, _ = await run(pipeline)
    assert outcome.status == "failed"
    assert outcome.failed_step == "car"
    assert outcome.reason == reason
    assert sorted(outcome.compensated) == ["flight", "hotel"]
    assert kinds(outcome)[-3:-2] == ["failed car"]
    assert ("car", "failed", reason) in [(e.step, e.kind, e.detail) for e in outcome.events]
    assert "do car" in saga_agents.JOURNAL


@pytest.mark.parametrize(
    ("answer", "status", "reason"),
    [
        ("state", "completed", ""),
        ("none", "failed", "spare handled the trip without replying"),
    ],
)
async def test_a_step_its_agents_fallback_handles_is_answered_by_the_fallback(
    tmp_path: Path, answer: str, status: str, reason: str
) -> None:
    # The car fails; its fallback handles the trip: with the state (the step completes, as
    # the fallback's), or without a reply (the step fails at once, naming the fallback).
    pipeline = trip_pipeline(
        tmp_path,
        steps=UNANSWERED_STEPS,
        car="fail: true",
        options={"car": "fallback: spare"},
        agents=f"- {{id: spare, use: {AGENT}, params: {{field: car, answer: {answer}}}}}",
    )
    with anyio.fail_after(5):
        outcome, _ = await run(pipeline)
    assert (outcome.status, outcome.reason) == (status, reason)


async def test_a_step_whose_reply_is_denied_fails_at_once_with_the_denial(
    tmp_path: Path,
) -> None:
    # The car replies, but a rule keeps its reply from the workflow: no reply reached it, and
    # the step fails as the car's handler returns (not at its 30s deadline), saying why.
    rule = """governance:
  rules:
    - {id: no-car-news, when: 'type == "trip" AND from == "car"', reason: "cars are quiet"}
"""
    pipeline = trip_pipeline(tmp_path, steps=UNANSWERED_STEPS, top=rule)
    with anyio.fail_after(5):
        outcome, result = await run(pipeline)
    assert outcome.status == "failed"
    assert outcome.failed_step == "car"
    assert outcome.reason == (
        "car handled the trip, but its reply 'trip' was denied by no-car-news: cars are quiet"
    )
    assert sorted(outcome.compensated) == ["flight", "hotel"]
    assert [(d.type, d.recipient) for d in result.denials] == [("trip", "booking")]


async def test_two_steps_one_agent_answers_at_once_each_complete(tmp_path: Path) -> None:
    # One agent runs two steps at once (each can only finish once both have started): each
    # reply answers its own step, and neither is told unanswered.
    steps = """
      - {id: out, agent: flight}
      - {id: back, agent: flight}
      - {id: car, after: [out, back], deadline: 30s}
    """
    pipeline = trip_pipeline(
        tmp_path, steps=steps, flight="meet: 2", options={"flight": "concurrency: 2"}
    )
    with anyio.fail_after(5):
        outcome, _ = await run(pipeline)
    assert outcome.status == "completed", outcome
    done = [k for k in kinds(outcome) if k.startswith("completed")]
    assert sorted(done[:2]) == ["completed back", "completed out"]
    assert done[2:] == ["completed car"]


async def stopped_while_the_car_runs(tmp_path: Path) -> tuple[Pipeline, Path]:
    """A trip whose car answers nothing, run with a store and stopped while the car's
    handler runs (the flight and hotel booked): the pipeline and its store."""
    pipeline = trip_pipeline(
        tmp_path, steps=UNANSWERED_STEPS, car="answer: none, stall: 1", timeout="60s"
    )
    store = tmp_path / "trip.db"
    first = pipeline.runtime(store=store)
    first.drain_timeout = 0.01
    async with first:
        await first.publish(pipeline.entry_message(first, pipeline.entry_payload(None, "-")))
        await wait_all_tasks_blocked()
        assert saga_agents.JOURNAL[-1] == "start car"
    return pipeline, store


@pytest.mark.parametrize(
    "stall", [1.0, 0.3, 0.0], ids=["after-the-rebuild", "during-it", "before-it"]
)
async def test_a_step_handled_without_replying_fails_at_once_when_resumed(
    tmp_path: Path, stall: float
) -> None:
    """Stopped while the car's handler runs; resumed from the store, the car runs again and
    returns no reply, after, while or before the workflow rebuilds the run up to the car from
    the messages it kept: the rebuilt workflow, watching it again, fails it at once. (Ended
    before, it failed at its deadline only: the workflow watched a step whose handling had
    ended.)"""
    pipeline, store = await stopped_while_the_car_runs(tmp_path)
    rt = pipeline.runtime(store=store)
    [car] = [agent for agent in rt.agents() if agent.id == "car"]
    assert isinstance(car, saga_agents.Booker)
    car.stall = stall  # this time the car ends after, during or before the rebuild
    async with rt:
        [request] = rt.unfinished()
        with anyio.fail_after(5):
            result = await pipeline.resume(rt, request)
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", "car")
    assert outcome.reason == "car handled the trip without replying"
    assert sorted(outcome.compensated) == ["flight", "hotel"]


async def test_a_step_rerun_without_replying_then_a_stop_before_the_rebuild_fails_at_once(
    tmp_path: Path,
) -> None:
    """Stopped while the car runs; resumed, the car runs again and returns no reply, and
    the runtime stops again before the workflow has rebuilt the run up to the car (its
    handler held at a gate): the car's delivery ended, and the third runtime does not run it
    again. The notice was written with that end, and the third's workflow takes it, failing
    the car at once. (How it ended was kept in memory until the workflow watched the car
    again: lost with the stop, the car failed at its 30s deadline only.)"""
    pipeline, store = await stopped_while_the_car_runs(tmp_path)
    second = pipeline.runtime(store=store)
    second.drain_timeout = 0.01
    [car] = [agent for agent in second.agents() if agent.id == "car"]
    assert isinstance(car, saga_agents.Booker)
    car.stall = 0.0  # it ends at once this time
    [workflow] = [agent for agent in second.agents() if agent.id == "booking"]
    rebuild = workflow.handle
    gate = anyio.Event()  # never opened: the workflow rebuilds nothing before the stop

    async def held(msg: Message, ctx: Context) -> Sequence[Message]:
        await gate.wait()
        return await rebuild(msg, ctx)

    workflow.handle = held  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg, second:
        [request] = second.unfinished()
        tg.start_soon(second.resume, request)
        await wait_all_tasks_blocked()  # the workflow at its gate, the car's delivery ended
        assert saga_agents.JOURNAL[-1] == "do car"  # without a reply
    third = pipeline.runtime(store=store)
    async with third:
        [request] = third.unfinished()
        with anyio.fail_after(3):  # well within the car's 30s deadline
            result = await pipeline.resume(third, request)
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", "car")
    assert outcome.reason == "car handled the trip without replying"


async def test_a_step_that_replies_late_within_its_deadline_completes(tmp_path: Path) -> None:
    steps = """
      - {id: flight, deadline: 30s}
      - {id: hotel, after: [flight], deadline: 30s}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, flight="stall: 0.3", hotel="stall: 0.2")
    outcome, _ = await run(pipeline)
    assert outcome.status == "completed", outcome
    assert outcome.state_as(Trip).hotel == "hotel-ok"


async def test_a_step_done_within_its_deadline_is_not_undone(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel, deadline: 30s}
      - {id: hotel, after: [flight], compensate: trip_cancel, deadline: 30s}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 0.2")
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        await rt.wait_idle()
        actions = [r.action for r in rt.audit.records]  # type: ignore[attr-defined]
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.compensated) == ("completed", ())
    assert not [line for line in saga_agents.JOURNAL if line.startswith("undo")]
    assert "workflow_completed_late" not in actions
    assert "workflow_compensated" not in actions


async def test_a_step_done_after_its_deadline_is_undone_once_after_the_run(
    tmp_path: Path,
) -> None:
    """The hotel's deadline fails the run, the flight is undone and the outcome goes out;
    then the hotel's handler, which the workflow stopped waiting for, books it after all.
    That booking is undone (once), by what the hotel replied, and the audit says so, as the
    run's: the outcome sent before is not changed."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel, deadline: 200ms}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 0.5")
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        assert [line for line in saga_agents.JOURNAL if line.startswith("undo")] == [
            "undo flight flight-ok"
        ]
        await rt.wait_idle()  # the hotel's late reply, and its undo
        records = [r for r in rt.audit.records if r.actor == "booking"]  # type: ignore[attr-defined]
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", "hotel")
    assert outcome.compensated == ("flight",)
    undos = [line for line in saga_agents.JOURNAL if line.startswith("undo")]
    assert undos == ["undo flight flight-ok", "undo hotel hotel-ok"]
    late = [(r.action, r.details["step"], r.details["detail"]) for r in records][-2:]
    assert late == [
        ("workflow_completed_late", "hotel", "after its run gave up on it: undone"),
        ("workflow_compensated", "hotel", ""),
    ]
    assert all(r.details["correlation_id"] == result.correlation_id for r in records)


async def test_a_step_done_after_the_workflows_deadline_is_undone_after_the_run(
    tmp_path: Path,
) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel, deadline: 1m}
    """
    deadline = "    deadline: 300ms"
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 0.6", workflow=deadline)
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        await rt.wait_idle()  # the hotel's late reply, and its undo
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.compensated) == ("timed_out", ("flight",))
    undos = [line for line in saga_agents.JOURNAL if line.startswith("undo")]
    assert undos == ["undo flight flight-ok", "undo hotel hotel-ok"]


async def test_a_step_done_late_while_the_run_undoes_is_undone_with_it(tmp_path: Path) -> None:
    """The hotel replies after its deadline while the flight's undo still runs: its undo
    comes next, and the outcome names it among the steps undone."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel, deadline: 200ms}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, flight="undo_stall: 1", hotel="stall: 0.5")
    outcome, _ = await run(pipeline)
    assert (outcome.status, outcome.failed_step) == ("failed", "hotel")
    assert outcome.compensated == ("flight", "hotel")
    assert kinds(outcome)[-4:] == [
        "failed hotel",
        "completed_late hotel",
        "compensated flight",
        "compensated hotel",
    ]
    undos = [line for line in saga_agents.JOURNAL if line.startswith("undo ")]
    assert undos == ["undo flight flight-ok", "undo hotel hotel-ok"]


async def resumed_after_the_outcome(
    tmp_path: Path, steps: str, stalled: str, *, flight: str = "", hotel: str = ""
) -> tuple[list[str], list[AuditRecord]]:
    """A trip of ``steps`` (the ``flight`` and ``hotel`` params as ``trip_pipeline``'s) run
    with a store until its outcome went out, the agent ``stalled`` still running, and
    stopped; then resumed from the store in a second runtime, where it runs again without
    stalling. What was done and undone there, and what the workflow audited there."""
    store = tmp_path / "trip.db"
    pipeline = trip_pipeline(tmp_path, steps=steps, flight=flight, hotel=hotel)
    first = pipeline.runtime(store=store)
    first.drain_timeout = 0.01
    async with first:
        result = await pipeline.ask(first, pipeline.entry_payload(None, "-"))
    assert result.output is not None  # the outcome went out before the stop
    saga_agents.JOURNAL.clear()
    audit = MemoryAuditLog()
    rt = pipeline.runtime(store=store, audit=audit)
    [agent] = [a for a in rt.agents() if a.id == stalled]
    assert isinstance(agent, saga_agents.Booker)
    agent.stall = agent.undo_stall = 0.0
    async with rt:
        [request] = rt.unfinished()  # its outcome went out, but not all of it ended
        with anyio.fail_after(10):
            again = await rt.resume(request)
        assert again.replies == ()  # no second outcome
        await rt.wait_idle()
    with sqlite3.connect(store) as db:  # the memory of it goes once it has served
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
    return saga_agents.JOURNAL, [r for r in audit.records if r.actor == "booking"]


async def test_a_step_given_up_on_before_a_restart_is_undone_after_it(tmp_path: Path) -> None:
    """The hotel's deadline fails the run, the flight is undone and the outcome goes out
    while the hotel's handler still runs; the process stops. Resumed from the store, the
    hotel's delivery runs again and books: the workflow, rebuilt from the messages the store
    kept, knows it gave up on the hotel, and undoes it. (Before, the store dropped the run
    with its outcome, and the second booking stood.)"""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel, deadline: 200ms}
    """
    journal, records = await resumed_after_the_outcome(tmp_path, steps, "hotel", hotel="stall: 30")
    assert journal == ["start hotel", "do hotel", "undo hotel hotel-ok"]
    assert [(r.action, r.details["step"]) for r in records] == [
        ("workflow_completed_late", "hotel"),
        ("workflow_compensated", "hotel"),
    ]


async def test_an_undo_given_up_on_before_a_restart_is_undone_late_after_it(
    tmp_path: Path,
) -> None:
    """The hotel fails, the flight's undo outlives its deadline and the outcome names it
    not undone; the process stops while the undo runs. Resumed, the undo runs again and
    replies: recorded undone late, as the run's."""
    steps = """
      - {id: flight, compensate: trip_cancel, deadline: 200ms}
      - {id: hotel, after: [flight]}
    """
    journal, records = await resumed_after_the_outcome(
        tmp_path, steps, "flight", flight="undo_stall: 30", hotel="fail: true"
    )
    assert journal == ["undo flight flight-ok"]
    assert [(r.action, r.details["step"]) for r in records] == [
        ("workflow_compensated_late", "flight")
    ]


class Outcomes(Observer):
    """The workflow outcomes published, by correlation: each run sends one."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def published(self, msg: Message, recipients: int) -> None:
        if msg.type == "trip_outcome":
            self.sent.append(msg.correlation_id)


@pytest.mark.parametrize("answer", ["reply", "twice"])
async def test_an_undo_done_after_its_deadline_is_recorded_undone_late_once(
    tmp_path: Path, answer: str
) -> None:
    """The hotel fails; the flight's undo does not reply within the flight's deadline, so
    the outcome names it not undone. Then the undo replies (once, or twice): the flight was
    undone after all, and the audit says so, once, as the run's; no second outcome goes
    out. (Before, its reply was ignored and the flight stayed ``compensation_failed``.)"""
    steps = """
      - {id: flight, compensate: trip_cancel, deadline: 200ms}
      - {id: hotel, after: [flight]}
    """
    flight = f"undo_stall: 0.5, undo_answer: {answer}"
    pipeline = trip_pipeline(tmp_path, steps=steps, flight=flight, hotel="fail: true")
    outcomes = Outcomes()
    async with pipeline.runtime() as rt:
        rt.add_observer(outcomes)
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        await rt.wait_idle()  # the undo's late reply
        records = [r for r in rt.audit.records if r.actor == "booking"]  # type: ignore[attr-defined]
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", "hotel")
    assert (outcome.compensated, outcome.not_compensated) == ((), ("flight",))
    assert outcomes.sent == [result.correlation_id]
    late = [(r.action, r.details["step"], r.details["detail"]) for r in records][-2:]
    assert late == [
        ("workflow_compensation_failed", "flight", "no reply within 0.2s"),
        (
            "workflow_compensated_late",
            "flight",
            "its undo replied after the workflow gave up on it",
        ),
    ]
    assert all(r.details["correlation_id"] == result.correlation_id for r in records)


@pytest.mark.parametrize("answer", ["undo_answer: none", "undo_fails: true"])
async def test_an_undo_that_never_replies_stays_failed(tmp_path: Path, answer: str) -> None:
    """The flight's undo runs past its deadline, then returns without replying, or raises:
    nothing says the flight was undone, and it stays ``compensation_failed``."""
    steps = """
      - {id: flight, compensate: trip_cancel, deadline: 200ms}
      - {id: hotel, after: [flight]}
    """
    flight = f"undo_stall: 0.5, {answer}"
    pipeline = trip_pipeline(tmp_path, steps=steps, flight=flight, hotel="fail: true")
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        await rt.wait_idle()  # the undo's handling, ended without a reply
        actions = [r.action for r in rt.audit.records if r.actor == "booking"]  # type: ignore[attr-defined]
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.not_compensated == ("flight",)
    assert actions[-1] == "workflow_compensation_failed"
    assert "workflow_compensated_late" not in actions


async def test_an_undo_done_late_while_the_run_undoes_others_is_named_undone(
    tmp_path: Path,
) -> None:
    """The car fails; the hotel's undo replies after the hotel's deadline, while the
    flight's undo still runs: the outcome names the hotel undone, not among those whose undo
    failed, and its log says it was undone late."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel, deadline: 200ms}
      - {id: car, after: [hotel]}
    """
    pipeline = trip_pipeline(
        tmp_path, steps=steps, flight="undo_stall: 1", hotel="undo_stall: 0.5", car="fail: true"
    )
    outcome, _ = await run(pipeline)
    assert (outcome.status, outcome.failed_step) == ("failed", "car")
    assert (outcome.compensated, outcome.not_compensated) == (("hotel", "flight"), ())
    assert kinds(outcome)[-3:] == [
        "compensation_failed hotel",
        "compensated_late hotel",
        "compensated flight",
    ]


async def test_the_workflow_deadline_undoes_what_was_done(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], deadline: 1m}
    """
    deadline = "    deadline: 300ms"
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 1", workflow=deadline)
    outcome, _ = await run(pipeline)
    assert outcome.status == "timed_out"
    assert outcome.failed_step is None
    assert outcome.reason == "the workflow's 0.3s deadline passed"
    assert outcome.compensated == ("flight",)
    assert kinds(outcome)[-3:] == ["timed_out booking", "failed hotel", "compensated flight"]


async def test_a_cancelled_request_is_compensated_in_a_correlation_of_its_own(
    tmp_path: Path,
) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 1")
    async with pipeline.runtime() as rt:
        msg = pipeline.entry_message(rt, pipeline.entry_payload(None, "-"))
        undo = rt.gather(f"{msg.correlation_id}.cancel", types=["trip_outcome"], timeout=10)
        with anyio.move_on_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.ask, msg)
                await wait_all_tasks_blocked()  # the flight booked, the hotel under way
                assert saga_agents.JOURNAL[-1] == "start hotel"
                tg.cancel_scope.cancel()  # the caller gives up: the request is cancelled
        outcomes = (await undo.wait()).replies
        audit = [r.action for r in rt.audit.records]  # type: ignore[attr-defined]
    assert saga_agents.JOURNAL[-1] == "undo flight flight-ok"
    (out,) = outcomes
    assert out.correlation_id == f"{msg.correlation_id}.cancel"
    assert isinstance(out.payload, WorkflowOutcome)
    assert out.payload.status == "cancelled"
    assert out.payload.compensated == ("flight",)
    assert "workflow_cancelled" in audit
    assert "workflow_compensated" in audit


async def test_parallel_steps_that_set_one_field_differently_conflict(tmp_path: Path) -> None:
    text = f"""
agents:
  - {{id: a, use: {AGENT}, params: {{field: note, value: window, meet: 2}}}}
  - {{id: b, use: {AGENT}, params: {{field: note, value: aisle, meet: 2}}}}
workflows:
  - id: w
    state: trip
    steps: [{{id: a, compensate: trip_cancel}}, {{id: b, compensate: trip_cancel}}]
    emit: {{type: trip_outcome}}
entry: {{type: trip, to: w, payload: {{city: Goa}}}}
output: trip_outcome
"""
    path = tmp_path / "conflict.yaml"
    path.write_text(text)
    outcome, _ = await run(load_pipeline(path))
    assert outcome.status == "failed"
    assert outcome.failed_step in ("a", "b")
    other = "a" if outcome.failed_step == "b" else "b"
    assert outcome.reason == f"set 'note', which step {other!r} set too"
    # Both did their work: both are undone, the later first.
    assert outcome.compensated == (outcome.failed_step, other)


async def test_a_rejected_approval_undoes_the_steps_before_it(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}: {flight}", role: travel_desk}
      - {id: car, after: [ok]}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps)
    async with pipeline.runtime() as rt:

        async def answer() -> None:
            await wait_all_tasks_blocked()
            (approval,) = rt.approvals.pending()
            assert approval.subject == "Trip to Goa: flight-ok"
            assert approval.agent_id == "booking"
            rt.approvals.reject(approval.id, by="meera", roles=("travel_desk",), reason="too dear")

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "rejected"
    assert outcome.failed_step == "ok"
    assert outcome.reason == "rejected by meera: too dear"
    assert outcome.compensated == ("flight",)
    assert "start car" not in saga_agents.JOURNAL


async def test_an_approval_subject_fills_what_it_can_and_shows_the_rest_as_written(
    tmp_path: Path,
) -> None:
    # The whole subject was shown raw ("Trip to {city} ...") when one placeholder could not
    # be filled: an empty note has no first letter, which no check before the run can know.
    steps = """
      - {id: flight}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}: {flight} ({note[0]})", role: travel_desk}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps)
    async with pipeline.runtime() as rt:

        async def answer() -> None:
            await wait_all_tasks_blocked()
            (approval,) = rt.approvals.pending()
            assert approval.subject == "Trip to Goa: flight-ok ({note[0]})"
            rt.approvals.reject(approval.id, by="meera", roles=("travel_desk",))

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            await pipeline.ask(rt, pipeline.entry_payload(None, "-"))


SHIPPED = Path(__file__).resolve().parents[2] / "config"


def sme_loan_with(tmp_path: Path, subject: str) -> Path:
    """The shipped sme-loan pipeline, its approval's subject ``subject``, beside the shipped
    policies and data it names."""
    for folder in ("policies", "data"):
        (tmp_path / folder).symlink_to(SHIPPED / folder)
    text = (SHIPPED / "pipelines" / "sme-loan.yaml").read_text()
    shipped = 'subject: "Sanction {offer} to {request[business_id]}"'
    assert shipped in text
    (tmp_path / "pipelines").mkdir()
    path = tmp_path / "pipelines" / "sme-loan.yaml"
    path.write_text(text.replace(shipped, f"subject: {subject!r}"))
    return path


@pytest.mark.parametrize(
    ("subject", "problem"),
    [
        (
            "Sanction {offer} to {request[busines_id]}",
            "{request[busines_id]}: request is a SmeLoanRequest, which has no field "
            "'busines_id' (did you mean 'business_id'?)",
        ),
        (
            "{request[monthly_inflows][first]}",
            "{request[monthly_inflows][first]}: request[monthly_inflows] is a list: index it "
            "by number",
        ),
        (
            "{request[0]}",
            "{request[0]}: request is a SmeLoanRequest: name one of its fields, not a number",
        ),
    ],
)
def test_an_approval_template_key_the_state_does_not_have_is_refused(
    tmp_path: Path, subject: str, problem: str
) -> None:
    path = sme_loan_with(tmp_path, subject)
    with pytest.raises(ConfigFileError) as caught:
        load_pipeline(path)
    (found,) = caught.value.problems
    assert found.endswith(f": workflows.0.steps.4.approval: {problem}"), found


def test_the_keys_the_state_has_are_taken(tmp_path: Path) -> None:
    subject = "{request[business_id]} {request[monthly_inflows][0]} {request[sector]!r:>10}"
    assert load_pipeline(sme_loan_with(tmp_path, subject)).workflows


def test_a_negative_approval_deadline_is_refused_naming_file_line_and_key(
    tmp_path: Path,
) -> None:
    # As ApprovalRequest refuses one from Python: a sign slip, not "passed at once".
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, approval: {subject: "Trip to {city}", role: travel_desk}, deadline: -5}
    """
    with pytest.raises(ConfigFileError) as caught:
        trip_pipeline(tmp_path, steps=steps)
    (found,) = caught.value.problems
    assert found == (
        f"{tmp_path / 'trip.yaml'}:13: workflows.0.steps.1.deadline: Input should be greater than 0"
    )


async def test_an_approval_waiting_when_another_step_fails_is_withdrawn(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, approval: {subject: "Trip to {city}", role: travel_desk}}
      - {id: hotel, after: [flight], deadline: 300ms}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 1")
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        assert rt.approvals.pending() == []
        actions = [r.action for r in rt.audit.records]  # type: ignore[attr-defined]
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "failed"
    assert outcome.failed_step == "hotel"
    assert "withdrawn" in actions


async def test_an_answer_to_a_withdrawn_approval_is_told_it_was_withdrawn(
    tmp_path: Path,
) -> None:
    """Withdrawn, the approval was decided by no person: an answer after it is told so, in
    the desk's word for it (its audit action ``withdrawn``), not that someone called
    ``withdrawn`` rejected it."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, approval: {subject: "Trip to {city}", role: travel_desk}}
      - {id: hotel, after: [flight], deadline: 300ms}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 1")
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        [asked] = [r for r in rt.audit.records if r.action == "approval_requested"]  # type: ignore[attr-defined]
        with pytest.raises(ApprovalRefusedError) as late:
            rt.approvals.approve(asked.target, by="tina", roles=("travel_desk",))
    assert result.output is not None
    why = "no reply within 0.3s"
    assert (
        str(late.value)
        == f"no pending approval {asked.target!r} (decided already: withdrawn: {why})"
    )


class _AnswersAsItIsWithdrawn(MemoryAuditLog):
    """A person who approves the pending approval at the moment the workflow withdraws it:
    as the workflow records its ``withdrawn`` event, before its withdrawal is sent, so the
    answer reaches the desk first and the two cross. The sink is called inside the
    workflow's handling: the answer is given outside it (a fresh context), as a person's is."""

    def __init__(self) -> None:
        super().__init__()
        self.rt: Runtime | None = None

    def record(self, record: AuditRecord) -> None:
        super().record(record)
        if record.action == "workflow_withdrawn":
            assert self.rt is not None
            [asked] = self.rt.approvals.pending()
            approve = self.rt.approvals.approve
            contextvars.Context().run(approve, asked.id, by="tina", roles=("travel_desk",))


async def test_an_answer_crossing_the_withdrawal_is_audited_too_late(tmp_path: Path) -> None:
    """The desk decides on the answer (``approved``) before the withdrawal reaches it, and
    the workflow, which withdrew the step, never takes that decision: the audit goes on to
    say the approval was withdrawn, and the answer refused as too late, as when the
    withdrawal comes first. Before, it said ``approved`` and nothing more."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, approval: {subject: "Trip to {city}", role: travel_desk}}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, flight="fail: true")
    audit = _AnswersAsItIsWithdrawn()
    async with pipeline.runtime(audit=audit) as rt:
        audit.rt = rt
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        await rt.wait_idle()  # the withdrawal reaches the desk, after the answer
        [asked] = [r for r in audit.records if r.action == "approval_requested"]
        with pytest.raises(ApprovalRefusedError) as again:
            rt.approvals.approve(asked.target, by="ravi", roles=("travel_desk",))
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", "flight")
    assert ("ok", "withdrawn") in [(e.step, e.kind) for e in outcome.events]
    why = outcome.reason
    desk = [
        (r.actor, r.action, r.details["reason"], r.details.get("answer"))
        for r in audit.records
        if r.details.get("approval_id") == asked.target
    ]
    assert desk == [
        ("booking", "approval_requested", "Trip to Goa", None),
        ("tina", "approved", "", None),
        ("withdrawn", "withdrawn", why, None),
        (
            "tina",
            "approval_refused",
            "too late: its agent withdrew the approval as the answer came (approved by "
            "tina, not taken)",
            "approve",
        ),
        ("ravi", "approval_refused", "too late: it was decided already", "approve"),
    ]
    assert str(again.value) == (
        f"no pending approval {asked.target!r} (decided already: withdrawn: {why})"
    )


async def test_every_event_is_an_audit_record(tmp_path: Path) -> None:
    pipeline = trip_pipeline(tmp_path)
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        records = [r for r in rt.audit.records if r.actor == "booking"]  # type: ignore[attr-defined]
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert [(r.action, r.details["step"]) for r in records] == [
        (f"workflow_{e.kind}", e.step) for e in outcome.events
    ]
    assert all(r.details["correlation_id"] == result.correlation_id for r in records)


class _FullDisk:
    """An audit sink that refuses every record, as a full disk does."""

    def record(self, record: AuditRecord) -> None:
        raise OSError(28, "No space left on device")


async def test_a_workflow_event_the_audit_sink_refuses_stops_the_runtime(tmp_path: Path) -> None:
    # As for a delivery's record: the runtime stops and says why, rather than the workflow's
    # handler failing on its own record (a dead letter, and the saga left half done).
    pipeline = trip_pipeline(tmp_path)

    async def run() -> None:
        async with pipeline.runtime(audit=_FullDisk()) as rt:
            await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
            await anyio.sleep(5)  # cut short by the stop

    with pytest.raises(AuditWriteError) as raised:
        await run()
    assert str(raised.value).startswith("the audit sink refused a workflow_started record")


async def test_two_runtimes_run_the_same_workflow_apart(tmp_path: Path) -> None:
    pipeline = trip_pipeline(tmp_path)
    async with pipeline.runtime() as one, pipeline.runtime() as two:
        first = await pipeline.ask(one, pipeline.entry_payload(None, "-"))
        second = await pipeline.ask(two, pipeline.entry_payload(None, "-"))
    assert first.status == second.status == "ok"
    assert isinstance(one, Runtime)
    assert one.statistics().handled == two.statistics().handled


async def test_the_workflow_deadline_counts_across_a_restart(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], deadline: 1m}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 30", workflow="    deadline: 2s")
    store = tmp_path / "trip.db"
    first = pipeline.runtime(store=store)
    first.drain_timeout = 0.01
    async with first:
        await first.publish(pipeline.entry_message(first, pipeline.entry_payload(None, "-")))
        await wait_all_tasks_blocked()  # the flight booked, the hotel under way: stopped
    await anyio.sleep(2.1)  # the deadline passes while no process holds the request
    rt = pipeline.runtime(store=store)
    rt.drain_timeout = 0.01  # the hotel, run again, still stalls: not waited for
    async with rt:
        [request] = rt.unfinished()
        # At once, not after the deadline again (a loaded machine may take a while to resume).
        with anyio.fail_after(1.6):
            result = await pipeline.resume(rt, request)
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "timed_out"
    assert outcome.compensated == ("flight",)


@pytest.mark.parametrize("back", [timedelta(0), timedelta(hours=1)])
async def test_a_clock_set_back_across_a_restart_does_not_extend_the_workflow_deadline(
    tmp_path: Path, back: timedelta
) -> None:
    """The next start's clock reads an hour before the request was made (set back meanwhile,
    or the asking host's ran ahead): the workflow times out within one deadline of the
    resume, not that deadline and the hour the clock went back as well."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], deadline: 1m}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 30", workflow="    deadline: 1s")
    store = tmp_path / "trip.db"
    first = pipeline.runtime(store=store)
    first.drain_timeout = 0.01
    async with first:
        await first.publish(pipeline.entry_message(first, pipeline.entry_payload(None, "-")))
        await wait_all_tasks_blocked()  # the flight booked, the hotel under way: stopped
    rt = pipeline.runtime(store=store, clock=Clock(epoch=datetime.now(UTC) - back))
    rt.drain_timeout = 0.01  # the hotel, run again, still stalls: not waited for
    async with rt:
        [request] = rt.unfinished()
        with anyio.fail_after(1 + 1.5):  # one deadline at most (and a loaded machine's slack)
            result = await pipeline.resume(rt, request)
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.compensated) == ("timed_out", ("flight",))


async def test_a_cancelled_runs_compensations_resume_after_a_stop(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel]}
    """
    store = tmp_path / "trip.db"
    pipeline = trip_pipeline(tmp_path, steps=steps, car="stall: 30", flight="undo_stall: 30")
    first = pipeline.runtime(store=store)
    first.drain_timeout = 0.01
    async with first:
        msg = pipeline.entry_message(first, pipeline.entry_payload(None, "-"))
        await first.publish(msg)
        await wait_all_tasks_blocked()  # the car under way
        first.cancel(msg.correlation_id)
        await wait_all_tasks_blocked()  # the hotel undone, the flight's undo under way: stopped
        assert saga_agents.JOURNAL[-2:] == ["undo hotel hotel-ok", "undoing flight"]
    assert first.unfinished() == []
    saga_agents.JOURNAL.clear()
    pipeline = trip_pipeline(tmp_path, steps=steps)
    rt = pipeline.runtime(store=store)
    async with rt:
        assert rt.unfinished() == []  # a cancelled request is no request to resume
        undo = rt.gather(f"{msg.correlation_id}.cancel", types=["trip_outcome"], timeout=10)
        (out,) = (await undo.wait()).replies  # resumed at start, with nobody waiting for it
    outcome = out.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "cancelled"
    assert outcome.compensated == ("hotel", "flight")
    assert "undo flight flight-ok" in saga_agents.JOURNAL
    assert not any(j.startswith(("start", "undo hotel")) for j in saga_agents.JOURNAL)
    assert rt.statistics().in_flight == 0
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone() == (0,)


async def test_a_failed_runs_compensations_resume_after_a_stop_each_sent_once(
    tmp_path: Path,
) -> None:
    # The car fails; the hotel is undone, and the flight's undo is under way when the
    # process stops. Resumed on the same store, the flight's undo (cut short) runs again
    # under its id, and the hotel's, done before the stop, is not sent again.
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel]}
    """
    store = tmp_path / "trip.db"
    pipeline = trip_pipeline(tmp_path, steps=steps, car="fail: true", flight="undo_stall: 30")
    first = pipeline.runtime(store=store)
    first.drain_timeout = 0.01
    async with first:
        await first.publish(pipeline.entry_message(first, pipeline.entry_payload(None, "-")))
        await wait_all_tasks_blocked()  # the hotel undone, the flight's undo under way
        assert saga_agents.JOURNAL[-2:] == ["undo hotel hotel-ok", "undoing flight"]
    saga_agents.JOURNAL.clear()
    pipeline = trip_pipeline(tmp_path, steps=steps, car="fail: true")
    audit = MemoryAuditLog()
    async with pipeline.runtime(store=store, audit=audit) as rt:
        [request] = rt.unfinished()
        with anyio.fail_after(5):
            result = await pipeline.resume(rt, request)
        await rt.wait_idle()
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "failed"
    assert outcome.failed_step == "car"
    assert outcome.compensated == ("hotel", "flight")
    assert saga_agents.JOURNAL == ["undo flight flight-ok"]  # nothing else ran again
    undone = [r.details["step"] for r in audit.records if r.action == "workflow_compensated"]
    assert undone == ["flight"]  # the hotel's was audited before the stop
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


async def test_a_decision_not_from_the_desk_is_ignored(tmp_path: Path) -> None:
    steps = """
      - {id: flight}
      - {id: ok, approval: {subject: "Trip to {city}", role: travel_desk}}
      - {id: car, after: [ok, flight]}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, flight="forge: ok")
    async with pipeline.runtime() as rt, anyio.create_task_group() as tg:

        async def answer() -> None:
            await wait_all_tasks_blocked()
            assert "start car" not in saga_agents.JOURNAL  # the forged approval did nothing
            (approval,) = rt.approvals.pending()
            rt.approvals.approve(approval.id, by="meera", roles=("travel_desk",))

        tg.start_soon(answer)
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "completed"
    assert ("ok", "approved", "approved by meera") in [
        (e.step, e.kind, e.detail) for e in outcome.events
    ]


async def test_an_unanswered_approval_is_rejected_at_its_deadline(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, after: [flight], approval: {subject: "Trip to {city}"}, deadline: 200ms}
    """
    outcome, _ = await run(trip_pipeline(tmp_path, steps=steps))
    assert outcome.status == "rejected"
    assert outcome.reason == "rejected by deadline: nobody answered in time"
    assert outcome.compensated == ("flight",)


def test_an_escalation_without_a_deadline_is_refused(tmp_path: Path) -> None:
    """``escalate_to`` is offered once the step's deadline passes: without one it would never
    be, so the file is refused naming the step."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, after: [flight], approval: {subject: "Trip to {city}", escalate_to: head}}
    """
    with pytest.raises(ConfigFileError) as raised:
        trip_pipeline(tmp_path, steps=steps)
    [problem] = raised.value.problems
    assert problem.endswith(
        "escalate_to offers the approval to its role once the step's deadline passes: give the "
        "step a deadline"
    )
    assert "workflows.0.steps.1" in problem


async def test_a_compensation_cut_by_a_cancellation_runs_again_after_it(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight]}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, flight="undo_stall: 0.2", hotel="fail: true")
    async with pipeline.runtime() as rt:
        msg = pipeline.entry_message(rt, pipeline.entry_payload(None, "-"))
        undo = rt.gather(f"{msg.correlation_id}.cancel", types=["trip_outcome"], timeout=10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, msg)
            await wait_all_tasks_blocked()  # the flight's undo is under way
            assert saga_agents.JOURNAL[-1] == "undoing flight"
            tg.cancel_scope.cancel()
        (out,) = (await undo.wait()).replies
    outcome = out.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "failed"  # it had failed first: the first failure is its status
    assert outcome.compensated == ("flight",)
    assert saga_agents.JOURNAL[-1] == "undo flight flight-ok"


async def test_the_hops_of_an_approval_are_counted(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, after: [flight], approval: {subject: "Trip to {city}"}}
      - {id: hotel, after: [ok], compensate: trip_cancel}
      - {id: car, after: [hotel]}
    """
    # 2 + 4 + 2 + 2 (the chain) + 2 x 2 (compensations) + 2: exactly enough.
    pipeline = trip_pipeline(tmp_path, steps=steps, car="fail: true", top="limits: {max_hops: 16}")
    async with pipeline.runtime() as rt, anyio.create_task_group() as tg:

        async def answer() -> None:
            await wait_all_tasks_blocked()
            (approval,) = rt.approvals.pending()
            rt.approvals.approve(approval.id, by="meera")

        tg.start_soon(answer)
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
    assert result.denials == ()
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.compensated == ("hotel", "flight")


async def test_a_denied_compensation_is_reported_and_the_rest_undone(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel], compensate: trip_cancel}
    """
    rule = """governance:
  rules:
    - {id: no-hotel-refunds, when: 'type == "trip_cancel" AND to == "hotel"', reason: "no refunds"}
"""
    pipeline = trip_pipeline(tmp_path, steps=steps, car="fail: true", top=rule)
    outcome, result = await run(pipeline)
    assert outcome.compensated == ("flight",)
    assert outcome.not_compensated == ("hotel",)
    failed = [e for e in outcome.events if e.kind == "compensation_failed"]
    assert [(e.step, e.detail) for e in failed] == [("hotel", "denied: no refunds")]
    assert [(d.type, d.recipient, d.policy) for d in result.denials] == [
        ("trip_cancel", "hotel", "no-hotel-refunds")
    ]


async def test_a_cancellation_while_an_approval_waits_withdraws_it(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: ok, after: [flight], approval: {subject: "Trip to {city}"}}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps)
    async with pipeline.runtime() as rt:
        msg = pipeline.entry_message(rt, pipeline.entry_payload(None, "-"))
        undo = rt.gather(f"{msg.correlation_id}.cancel", types=["trip_outcome"], timeout=10)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, msg)
            await wait_all_tasks_blocked()
            assert len(rt.approvals.pending()) == 1
            tg.cancel_scope.cancel()
        (out,) = (await undo.wait()).replies
        assert rt.approvals.pending() == []
    outcome = out.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "cancelled"
    assert outcome.compensated == ("flight",)
    assert ("ok", "withdrawn") in [(e.step, e.kind) for e in outcome.events]


async def test_a_late_or_second_reply_changes_nothing(tmp_path: Path) -> None:
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], deadline: 200ms}
    """
    pipeline = trip_pipeline(tmp_path, steps=steps, hotel="stall: 0.5")
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None, "-"))
        await rt.wait_idle()  # the hotel's late reply arrives, to a finished workflow
        started = [
            r.details["step"]
            for r in rt.audit.records  # type: ignore[attr-defined]
            if r.action == "workflow_started"
        ]
    assert result.output is not None
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "failed"
    assert outcome.compensated == ("flight",)
    assert started == ["flight", "hotel"]  # the late reply started no second run
    assert "undo hotel" not in " ".join(saga_agents.JOURNAL)


@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])
async def test_a_state_after_its_run_ended_starts_none_however_many_ended_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workflow's memory of ended runs is bounded (here to one, as if thousands of
    # requests had ended meanwhile): two requests run while a slow agent of each sends its
    # trip to the workflow once more, after both runs ended. Neither starts a second run:
    # the runtime knows each request's run ended.
    monkeypatch.setattr(_finished, "FINISHED_KEPT", 1)
    resender = (
        "- {id: resender, use: tests.pipelines.saga_agents:Resender,"
        " params: {to: booking, after: 60}}"
    )
    steps = """
      - {id: flight}
    """
    top = "routes: {trip: [resender]}"
    pipeline = trip_pipeline(tmp_path, steps=steps, agents=resender, top=top)
    async with pipeline.runtime() as rt:
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(pipeline.ask, rt, pipeline.entry_payload(None, "-"))
        await rt.wait_idle()  # both resent trips came, after both runs ended
        started = [
            r.details["step"]
            for r in rt.audit.records  # type: ignore[attr-defined]
            if r.action == "workflow_started"
        ]
        booking: Any = next(a for a in rt.agents() if a.id == "booking")
    assert started == ["flight", "flight"]
    assert (booking.ignored, booking.pending) == (2, 0)


@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])
async def test_a_cancelled_requests_undo_runs_as_the_requests_principal() -> None:
    # sme-loan's risk gate admits the high-risk lending steps for the roles its request
    # carries. Nobody answers the approval, the pipeline's timeout cancels the request, and
    # the offer reserved must be released: the release is the request's own undo, so it
    # carries the request's principal, not the runtime's bare cancellation notice.
    async with TestRuntime(ROOT / "config" / "pipelines" / "sme-loan.yaml") as app:
        result = await app.run()
        assert result.status == "timed_out"
        await app.idle()
        received = [m.type for m in app.received("indicative_offer")]
        audit = [r.action for r in app.runtime.audit.records]  # type: ignore[attr-defined]
    assert received == ["sme_loan_file", "sme_offer_release"]
    assert "denied" not in audit
    assert "workflow_compensation_failed" not in audit
    assert "workflow_compensated" in audit


async def test_each_undo_carries_the_requests_metadata_exactly(tmp_path: Path) -> None:
    # The hotel's undo replies claiming roles; the flight's undo, which that reply sets off,
    # carried the request's user_id merged with the claimed roles: a principal neither had.
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel]}
    """
    pipeline = trip_pipeline(
        tmp_path, steps=steps, flight="principal: seen", hotel="principal: claim", car="fail: true"
    )
    async with pipeline.runtime() as rt:
        msg = pipeline.entry_message(rt, pipeline.entry_payload(None, "-"))
        msg = msg.model_copy(update={"metadata": {"user_id": "u1"}})
        result = await rt.ask(msg, until="trip_outcome", timeout=10)
    assert result.complete
    undone = [line for line in saga_agents.JOURNAL if " as " in line]
    assert undone == ["undo hotel as u1 None", "undo flight as u1 None"]


async def test_a_resumed_run_does_not_run_or_audit_its_completed_steps_again(
    tmp_path: Path,
) -> None:
    """Paused at its approval, stopped and resumed twice (as ``genie run --store`` run three
    times): each step ran once, each event is audited once, the approval asked once and
    taken up as resumed; answered in the third life, the run ends with every event once."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, compensate: trip_cancel}
      - id: ok
        after: [flight, hotel]
        approval: {subject: "Trip to {city}", role: travel_desk}
      - {id: car, after: [ok]}
    """
    audit = MemoryAuditLog()
    pipeline, store, approval = await paused_trip(tmp_path, steps, audit)
    async with pipeline.runtime(store=store, audit=audit) as rt:
        rt.drain_timeout = 0.01
        (request,) = rt.unfinished()
        again = await pipeline.resume(rt, request, timeout=0.5)
        assert again.output is None
        assert [a.id for a in rt.approvals.pending()] == [approval.id]
    outcome = await resumed_approved(pipeline, store, approval, audit)
    assert outcome.status == "completed"
    assert [j for j in saga_agents.JOURNAL if j.startswith("start")] == [
        "start flight",
        "start hotel",
        "start car",
    ]
    flow = [(r.action, r.details["step"]) for r in audit.records if r.action[:9] == "workflow_"]
    assert flow == [(f"workflow_{e.kind}", e.step) for e in outcome.events]
    assert sorted(flow) == sorted(set(flow))  # each event once
    asked = [r.action for r in audit.records if r.target == approval.id]
    assert asked == [
        "workflow_awaiting_approval",
        "approval_requested",
        "approval_resumed",
        "approval_resumed",
        "approved",
        "workflow_approved",
    ]
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM taken").fetchone() == (0,)  # gone with them


async def test_a_workflow_that_did_not_complete_is_no_ok_run(tmp_path: Path) -> None:
    """Its outcome arrived, but says the saga failed: the run's status says so too."""
    outcome, result = await run(trip_pipeline(tmp_path, hotel="fail: true"))
    assert outcome.status == "failed"
    assert result.status == "workflow_failed"
    assert not result.ok


def test_genie_run_reports_a_failed_workflow_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trip_pipeline(tmp_path, hotel="fail: true")
    assert main(["run", str(tmp_path / "trip.yaml"), "--json"]) == 1
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["status"] == "workflow_failed"
    assert document["output"]["payload"]["status"] == "failed"
    lines = err.splitlines()
    assert lines[0] == (
        "genie run: trip: workflow booking failed at hotel: failed: RuntimeError: hotel: no seats "
        "left; compensated: flight"
    )
    assert lines[1] == "genie run: trip: the run ended workflow_failed"
    assert lines[2] == "  dead letter: trip to hotel: failed: RuntimeError: hotel: no seats left"
    assert "ended ok" not in err


async def paused_trip(
    tmp_path: Path, steps: str, audit: MemoryAuditLog | None = None
) -> tuple[Pipeline, Path, Approval]:
    """A trip of ``steps`` run with a store until it waits for its one approval, then
    stopped: the pipeline, its store and the approval left pending in it."""
    pipeline = trip_pipeline(tmp_path, steps=steps)
    store = tmp_path / "trip.db"
    async with pipeline.runtime(store=store, audit=audit) as rt:
        rt.drain_timeout = 0.01
        paused = await pipeline.ask(rt, pipeline.entry_payload(None, "-"), timeout=0.5)
        assert paused.output is None
        (approval,) = rt.approvals.pending()
    return pipeline, store, approval


async def resumed_approved(
    pipeline: Pipeline, store: Path, approval: Approval, audit: MemoryAuditLog | None = None
) -> WorkflowOutcome:
    """The outcome of the trip kept in ``store``, resumed and its ``approval`` approved by the
    travel desk once the resume waits for it."""
    async with pipeline.runtime(store=store, audit=audit) as rt:
        (request,) = rt.unfinished()

        async def answer() -> None:
            await wait_all_tasks_blocked()
            rt.approvals.approve(approval.id, by="meera", roles=("travel_desk",))

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            result = await pipeline.resume(rt, request, timeout=10)
    assert result.output is not None, result
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    return outcome


def forget_definitions(store: Path) -> None:
    """Make ``store`` as a genie before workflows kept their definition left it: no
    ``RunDefinition`` kept with the run."""
    with sqlite3.connect(store) as db:
        ids = [
            i
            for (i,) in db.execute(
                "SELECT id FROM messages WHERE body LIKE '%genie.workflow_definition%'"
            )
        ]
        assert ids
        for i in ids:
            db.execute("DELETE FROM messages WHERE id = ?", (i,))
            db.execute("DELETE FROM taken WHERE message_id = ?", (i,))


async def test_a_run_paused_under_a_changed_workflow_is_refused_at_once(tmp_path: Path) -> None:
    """Paused at its approval ``ok``; the pipeline file is edited (the step renamed) before
    the resume. The run is refused as the resume rebuilds it, without waiting for the
    approval: the approval is withdrawn, the flight undone, and the reason names the change."""
    before = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
      - {id: car, after: [ok]}
    """
    pipeline, store, _ = await paused_trip(tmp_path, before)
    pipeline = trip_pipeline(
        tmp_path, steps=before.replace("id: ok", "id: sign_off").replace("[ok]", "[sign_off]")
    )
    async with pipeline.runtime(store=store) as rt:
        (request,) = rt.unfinished()
        result = await pipeline.resume(rt, request, timeout=5)
        assert rt.approvals.pending() == []
    assert result.output is not None, result
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", None)
    assert outcome.reason == (
        "workflow booking changed while the request was kept (step 'ok' removed, step "
        "'sign_off' added, step 'car' after [sign_off], not [ok]): the run is not resumed "
        "under it"
    )
    assert outcome.compensated == ("flight",)
    assert "start car" not in saga_agents.JOURNAL


# A trip whose hotel is booked after the flight, and the same trip with the hotel removed
# from the file (the edit made while a run of the first was kept).
WITH_HOTEL = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - id: ok
        after: [hotel]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """
HOTEL_REMOVED = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """


def test_genie_run_refuses_to_resume_under_an_edited_workflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``genie run --store`` paused at the approval, the file edited, then run again: the
    kept request is not resumed under the edited workflow; the run says what changed and
    what was undone, and exits 1; the store keeps nothing of it."""
    before = WITH_HOTEL
    trip_pipeline(tmp_path, steps=before, timeout="0.5s")
    path, store = str(tmp_path / "trip.yaml"), str(tmp_path / "trip.db")
    assert main(["run", path, "--store", store]) == 1
    assert "the run paused" in capsys.readouterr().err
    inn = f"- {{id: inn, use: {AGENT}, params: {{field: hotel}}}}"
    after = before.replace("id: hotel", "id: inn").replace("[hotel]", "[inn]")
    trip_pipeline(tmp_path, steps=after, agents=inn, timeout="5s")
    assert main(["run", path, "--store", store]) == 1
    err = capsys.readouterr().err
    assert (
        "genie run: trip: workflow booking failed: workflow booking changed while the request "
        "was kept (step 'hotel' removed, step 'inn' added, step 'ok' after [inn], not "
        "[hotel]): the run is not resumed under it; compensated: hotel, flight\n"
    ) in err
    assert "Traceback" not in err
    assert saga_agents.JOURNAL[-2:] == ["undo hotel hotel-ok", "undo flight flight-ok"]
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone() == (0,)


def test_genie_run_refuses_while_its_store_keeps_a_request_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trip model changed since a run was kept (its ``city`` is now a ``town``): the kept
    request no longer validates. ``genie run`` sends no new request as if nothing were kept:
    it names the store, the request and what validation said, and how to go on; with
    ``--discard-unreadable`` it drops the request, says so, and runs the new one."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """
    trip_pipeline(tmp_path, steps=steps, timeout="0.5s")
    path, store = str(tmp_path / "trip.yaml"), str(tmp_path / "trip.db")
    assert main(["run", path, "--store", store]) == 1
    capsys.readouterr()
    with sqlite3.connect(store) as db:
        (cid,) = db.execute("SELECT correlation_id FROM requests").fetchone()
        db.execute("""UPDATE requests SET body = replace(body, '"city"', '"town"')""")
    assert main(["run", path, "--store", store]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"genie run: the store {store} keeps a request this pipeline cannot read: request {cid}: "
    )
    assert "invalid 'trip' message: field 'city': Field required; unknown field 'town'" in err
    assert (
        "it was not resumed, and no new request was sent: run the pipeline that made it "
        f"({Path(path).resolve()}), or "
        f"genie run {path} --store {store} --discard-unreadable drops it (what it kept is "
        "lost)"
    ) in err
    assert saga_agents.JOURNAL.count("start flight") == 1
    assert main(["run", path, "--store", store, "--discard-unreadable"]) == 1
    err = capsys.readouterr().err
    assert f"genie run: discarded request {cid} from the store {store}" in err
    assert "the run paused" in err
    assert saga_agents.JOURNAL.count("start flight") == 2
    with sqlite3.connect(store) as db:
        ((left,),) = db.execute("SELECT correlation_id FROM requests").fetchall()
    assert left != cid


async def test_a_run_kept_without_its_definition_resumes_as_before(tmp_path: Path) -> None:
    """A run kept by a genie before workflows kept their definition: resumed under the same
    workflow, it completes."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
      - {id: car, after: [ok]}
    """
    pipeline, store, approval = await paused_trip(tmp_path, steps)
    forget_definitions(store)
    outcome = await resumed_approved(pipeline, store, approval)
    assert outcome.status == "completed"
    assert saga_agents.JOURNAL.count("do flight") == 1


async def test_a_run_kept_without_its_definition_fails_naming_the_step_it_lost(
    tmp_path: Path,
) -> None:
    """Kept by a genie before workflows kept their definition (none to compare): paused at
    its approval ``ok``, renamed before the resume, the kept decision names a step the
    workflow no longer has: the run fails at once saying so, and the steps it knows are
    undone, instead of waiting for an approval nobody was asked."""
    before = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
      - {id: car, after: [ok]}
    """
    pipeline, store, approval = await paused_trip(tmp_path, before)
    forget_definitions(store)
    pipeline = trip_pipeline(
        tmp_path, steps=before.replace("id: ok", "id: sign_off").replace("[ok]", "[sign_off]")
    )
    outcome = await resumed_approved(pipeline, store, approval)
    assert outcome.status == "failed"
    assert outcome.failed_step == "ok"
    assert outcome.reason == (
        "the approval of step 'ok', which workflow booking no longer has: its pipeline "
        "changed while the request was kept"
    )
    assert outcome.compensated == ("flight",)
    assert "start car" not in saga_agents.JOURNAL


async def test_a_run_resumed_under_a_changed_workflow_is_refused_and_undone_as_declared(
    tmp_path: Path,
) -> None:
    """The step ``hotel`` had replied before the stop, and is ``inn`` at the resume. The run
    was started under another definition of the workflow (its fingerprint, kept with the
    run, differs): it is not resumed, the reason names what changed, and every step it had
    done is undone with the compensation the workflow declared when the run started (the
    hotel too, which the edited workflow no longer has), the waiting approval withdrawn."""
    before = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel, deadline: 0.5s}
      - id: ok
        after: [hotel]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """
    pipeline, store, _ = await paused_trip(tmp_path, before)
    after = before.replace("id: hotel", "id: inn").replace("[hotel]", "[inn]")
    inn = f"- {{id: inn, use: {AGENT}, params: {{field: hotel}}}}"
    pipeline = trip_pipeline(tmp_path, steps=after, agents=inn)
    async with pipeline.runtime(store=store) as rt:
        (request,) = rt.unfinished()
        result = await pipeline.resume(rt, request, timeout=5)
        assert rt.approvals.pending() == []
    assert result.output is not None, result
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", None)
    assert outcome.reason == (
        "workflow booking changed while the request was kept (step 'hotel' removed, step "
        "'inn' added, step 'ok' after [inn], not [hotel]): the run is not resumed under it"
    )
    assert outcome.compensated == ("hotel", "flight")
    assert outcome.not_compensated == ()
    assert "start inn" not in saga_agents.JOURNAL
    assert saga_agents.JOURNAL.count("do hotel") == 1
    assert saga_agents.JOURNAL[-2:] == ["undo hotel hotel-ok", "undo flight flight-ok"]
    assert ("withdrawn", "ok") in [(e.kind, e.step) for e in outcome.events]
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)


async def test_a_changed_workflow_names_the_done_steps_it_could_not_undo(
    tmp_path: Path,
) -> None:
    """The agent that would undo the hotel is gone from the edited pipeline: the flight is
    still undone as declared, and the outcome names the hotel as not undone, saying why."""
    before = WITH_HOTEL
    pipeline, store, _ = await paused_trip(tmp_path, before)
    text = (tmp_path / "trip.yaml").read_text()
    after = HOTEL_REMOVED
    edited = text.replace(textwrap.indent(textwrap.dedent(before), "      "), "")
    edited = edited.replace(
        "    steps:", "    steps:" + textwrap.indent(textwrap.dedent(after), "      ")
    )
    edited = "\n".join(line for line in edited.splitlines() if "id: hotel," not in line)
    (tmp_path / "trip.yaml").write_text(edited)
    pipeline = load_pipeline(tmp_path / "trip.yaml")
    async with pipeline.runtime(store=store) as rt:
        (request,) = rt.unfinished()
        result = await pipeline.resume(rt, request, timeout=5)
    assert result.output is not None, result
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.reason.startswith("workflow booking changed while the request was kept")
    assert outcome.compensated == ("flight",)
    assert outcome.not_compensated == ("hotel",)
    (why,) = [e.detail for e in outcome.events if e.kind == "compensation_failed"]
    assert "hotel" in why
    assert saga_agents.JOURNAL[-1] == "undo flight flight-ok"


async def test_a_resumed_run_keeps_when_its_events_happened(tmp_path: Path) -> None:
    """Paused at its approval and resumed later: the outcome's event log gives the events
    before the stop the times they happened then (as the audit log has them), not the time
    the resume rebuilt the run."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """
    audit = MemoryAuditLog()
    pipeline, store, approval = await paused_trip(tmp_path, steps, audit)
    await anyio.sleep(0.3)
    resumed_at = datetime.now(UTC)
    outcome = await resumed_approved(pipeline, store, approval, audit)
    before = [e for e in outcome.events if e.kind != "approved"]
    assert kinds(outcome)[:-1] == [
        "started flight",
        "completed flight",
        "awaiting_approval ok",
    ]
    audited = {
        (r.details["step"], r.action): r.at for r in audit.records if r.action[:9] == "workflow_"
    }
    for event in before:
        assert event.at < resumed_at, event
        then = audited[(event.step, f"workflow_{event.kind}")]
        assert abs((then - event.at).total_seconds()) < 0.25, (event, then)
    assert outcome.events[-1].at > resumed_at


async def cancel_while_undoing(
    tmp_path: Path, steps: str, *, flight: str = "", hotel: str = ""
) -> tuple[Path, str]:
    """A run of ``steps`` cancelled while its ``car`` stalls, stopped while an undo stalls (as
    ``flight`` or ``hotel`` says): the store keeps the compensations left, carried into the
    cancellation's correlation. Returns the store and that correlation."""
    store = tmp_path / "trip.db"
    pipeline = trip_pipeline(tmp_path, steps=steps, car="stall: 30", flight=flight, hotel=hotel)
    first = pipeline.runtime(store=store)
    first.drain_timeout = 0.01
    async with first:
        msg = pipeline.entry_message(first, pipeline.entry_payload(None, "-"))
        await first.publish(msg)
        await wait_all_tasks_blocked()  # the car under way
        first.cancel(msg.correlation_id)
        await wait_all_tasks_blocked()  # an undo under way: stopped
    saga_agents.JOURNAL.clear()
    return store, f"{msg.correlation_id}.cancel"


async def resumed_carried(pipeline: Pipeline, store: Path, key: str) -> WorkflowOutcome:
    async with pipeline.runtime(store=store) as rt:
        undo = rt.gather(key, types=["trip_outcome"], timeout=5)
        (out,) = (await undo.wait()).replies  # resumed at start
        await rt.wait_idle()
        assert [d.reason for d in rt.dead_letters] == []  # no handler raised
    outcome = out.payload
    assert isinstance(outcome, WorkflowOutcome)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
    return outcome


async def test_a_cancelled_runs_undo_resumes_as_declared_though_its_step_was_removed(
    tmp_path: Path,
) -> None:
    """Cancelled, the hotel undone, the flight's undo under way at the stop; the flight step
    is removed from the file before the restart. The compensations resumed at start go by the
    steps the run was started under: the flight's undo runs again, as declared then."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel]}
    """
    store, key = await cancel_while_undoing(tmp_path, steps, flight="undo_stall: 30")
    after = FLIGHT_REMOVED
    outcome = await resumed_carried(trip_pipeline(tmp_path, steps=after), store, key)
    assert outcome.status == "cancelled"
    assert (outcome.compensated, outcome.not_compensated) == (("hotel", "flight"), ())
    assert saga_agents.JOURNAL == ["undo flight flight-ok"]


async def test_a_cancelled_runs_undo_whose_agent_is_gone_is_named_not_undone(
    tmp_path: Path,
) -> None:
    """Cancelled, the hotel's undo under way at the stop, the flight's still to come; the
    flight step and its agent are removed from the file before the restart. The hotel's undo
    runs again; the flight's cannot be sent: it is named, with why, not skipped in silence."""
    steps = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel]}
    """
    store, key = await cancel_while_undoing(tmp_path, steps, hotel="undo_stall: 30")
    after = FLIGHT_REMOVED
    trip_pipeline(tmp_path, steps=after)
    text = (tmp_path / "trip.yaml").read_text()
    edited = "\n".join(line for line in text.splitlines() if "id: flight," not in line)
    (tmp_path / "trip.yaml").write_text(edited)
    outcome = await resumed_carried(load_pipeline(tmp_path / "trip.yaml"), store, key)
    assert outcome.status == "cancelled"
    assert (outcome.compensated, outcome.not_compensated) == (("hotel",), ("flight",))
    (why,) = [e.detail for e in outcome.events if e.kind == "compensation_failed"]
    assert why == "its agent 'flight', declared when the run started, is gone"
    assert saga_agents.JOURNAL == ["undo hotel hotel-ok"]


async def test_a_run_kept_without_its_definition_names_a_done_step_it_lost_not_undone(
    tmp_path: Path,
) -> None:
    """Kept by a genie before workflows kept their definition; the hotel had replied before
    the stop, and is removed from the file before the resume. Its kept reply names a step the
    workflow no longer has: the run fails saying so, the flight is undone, and the hotel,
    whose undo nothing here declares now, is named not undone, with why, not left in silence."""
    before = WITH_HOTEL
    _, store, _ = await paused_trip(tmp_path, before)
    forget_definitions(store)
    after = HOTEL_REMOVED
    outcome = await resumed_refused(trip_pipeline(tmp_path, steps=after), store)
    assert (outcome.status, outcome.failed_step) == ("failed", "hotel")
    assert outcome.reason == (
        "the reply of step 'hotel', which workflow booking no longer has: its pipeline "
        "changed while the request was kept"
    )
    assert (outcome.compensated, outcome.not_compensated) == (("flight",), ("hotel",))
    (why,) = [e.detail for e in outcome.events if e.kind == "compensation_failed"]
    assert why == (
        "step 'hotel' is no longer in workflow booking, and no definition kept with the run "
        "tells its undo: undo it by hand if it declared one"
    )
    assert saga_agents.JOURNAL.count("do hotel") == 1
    assert saga_agents.JOURNAL[-1] == "undo flight flight-ok"


async def test_a_run_kept_without_its_definition_whose_done_step_was_renamed_fails(
    tmp_path: Path,
) -> None:
    """As above, the hotel renamed ``inn`` (its own agent). Rebuilt under the edited file,
    the run started the inn, which no process sent, and nothing kept tells so: the run waits
    for it until the inn's deadline (here half a second), then ends failed at the hotel, the
    hotel named not undone; the inn is never run."""
    before = WITH_HOTEL
    _, store, _ = await paused_trip(tmp_path, before)
    forget_definitions(store)
    after = before.replace("id: hotel", "id: inn").replace("[hotel]", "[inn]")
    after = after.replace("id: inn,", "id: inn, deadline: 0.5s,")
    inn = f"- {{id: inn, use: {AGENT}, params: {{field: hotel}}}}"
    outcome = await resumed_refused(trip_pipeline(tmp_path, steps=after, agents=inn), store)
    assert (outcome.status, outcome.failed_step) == ("failed", "hotel")
    assert (outcome.compensated, outcome.not_compensated) == (("flight",), ("hotel",))
    assert "start inn" not in saga_agents.JOURNAL
    assert saga_agents.JOURNAL[-1] == "undo flight flight-ok"


async def resumed_refused(
    pipeline: Pipeline, store: Path, audit: MemoryAuditLog | None = None
) -> WorkflowOutcome:
    """The outcome of the one run kept in ``store``, resumed under ``pipeline``: it ends
    without an answer from anyone, and leaves nothing kept."""
    async with pipeline.runtime(store=store, audit=audit) as rt:
        (request,) = rt.unfinished()
        result = await pipeline.resume(rt, request, timeout=5)
        assert rt.approvals.pending() == []
        assert [d.reason for d in rt.dead_letters if "KeyError" in d.reason] == []
    assert result.output is not None, result
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
    return outcome


def forget_carried_definitions(store: Path) -> None:
    """Make the cancelled run carried in ``store`` as a genie before runs kept their
    definition carried it: no ``definition`` in its ``CarriedRun``."""
    with sqlite3.connect(store) as db:
        rows = list(
            db.execute("SELECT id, body FROM messages WHERE body LIKE '%workflow_carried_run%'")
        )
        assert rows
        for i, body in rows:
            data = json.loads(body)
            assert data["payload"].pop("definition") is not None
            db.execute("UPDATE messages SET body = ? WHERE id = ?", (json.dumps(data), i))


CANCELLED_STEPS = """
  - {id: flight, compensate: trip_cancel}
  - {id: hotel, after: [flight], compensate: trip_cancel}
  - {id: car, after: [hotel]}
"""
# ``CANCELLED_STEPS`` with the flight removed from the file.
FLIGHT_REMOVED = """
      - {id: hotel, compensate: trip_cancel}
      - {id: car, after: [hotel]}
    """


async def resumed_old_carried(
    tmp_path: Path, after: str, *, flight: str = "", hotel: str = ""
) -> WorkflowOutcome:
    """A run of ``CANCELLED_STEPS`` cancelled while undoing (``cancel_while_undoing``), its
    compensations carried as a genie before runs kept their definition carried them, then
    resumed under the steps ``after``: its outcome."""
    store, key = await cancel_while_undoing(tmp_path, CANCELLED_STEPS, flight=flight, hotel=hotel)
    forget_carried_definitions(store)
    return await resumed_carried(trip_pipeline(tmp_path, steps=after), store, key)


async def test_a_cancelled_run_carried_without_its_definition_names_a_lost_step(
    tmp_path: Path,
) -> None:
    """Carried by a genie before runs kept their definition: cancelled, the hotel's undo under
    way at the stop, the flight's still to come; the flight step is removed from the file.
    The hotel's undo runs again; the flight's cannot be told: it is named not undone, with
    why, and the cancelled run ends."""
    after = FLIGHT_REMOVED
    outcome = await resumed_old_carried(tmp_path, after, hotel="undo_stall: 30")
    assert outcome.status == "cancelled"
    assert (outcome.compensated, outcome.not_compensated) == (("hotel",), ("flight",))
    (why,) = [e.detail for e in outcome.events if e.kind == "compensation_failed"]
    assert why == (
        "step 'flight' is no longer in workflow booking, and no definition kept with the run "
        "tells its undo: undo it by hand if it declared one"
    )
    assert saga_agents.JOURNAL == ["undo hotel hotel-ok"]


async def test_a_cancelled_run_carried_without_its_definition_resumes_an_undo_under_way(
    tmp_path: Path,
) -> None:
    """As above, the flight's undo under way at the stop and the flight step removed: its
    undo, kept in the store as sent, runs again and is counted undone."""
    after = FLIGHT_REMOVED
    outcome = await resumed_old_carried(tmp_path, after, flight="undo_stall: 30")
    assert outcome.status == "cancelled"
    assert (outcome.compensated, outcome.not_compensated) == (("hotel", "flight"), ())
    assert saga_agents.JOURNAL == ["undo flight flight-ok"]


async def test_a_cancelled_run_carried_without_its_definition_names_an_undo_dropped(
    tmp_path: Path,
) -> None:
    """As above, the flight's undo still to come, and the file no longer declares one for
    it: the flight is named not undone, with why."""
    after = CANCELLED_STEPS.replace("{id: flight, compensate: trip_cancel}", "{id: flight}")
    outcome = await resumed_old_carried(tmp_path, after, hotel="undo_stall: 30")
    assert outcome.status == "cancelled"
    assert (outcome.compensated, outcome.not_compensated) == (("hotel",), ("flight",))
    (why,) = [e.detail for e in outcome.events if e.kind == "compensation_failed"]
    assert why == (
        "step 'flight' declares no undo in workflow booking now, and no definition kept "
        "with the run tells the one it had: undo it by hand"
    )
    assert saga_agents.JOURNAL == ["undo hotel hotel-ok"]


async def test_a_cancelled_runs_undo_under_way_whose_agent_is_gone_is_named_not_undone(
    tmp_path: Path,
) -> None:
    """Cancelled, the hotel undone, the flight's undo under way at the stop; the flight step
    and its agent are removed from the file before the restart. The flight's undo, kept, is
    for an agent this pipeline does not host: it is not run again, and the run does not wait
    for it for ever; it ends naming the flight not undone, with why."""
    store, key = await cancel_while_undoing(tmp_path, CANCELLED_STEPS, flight="undo_stall: 30")
    after = FLIGHT_REMOVED
    trip_pipeline(tmp_path, steps=after)
    text = (tmp_path / "trip.yaml").read_text()
    edited = "\n".join(line for line in text.splitlines() if "id: flight," not in line)
    (tmp_path / "trip.yaml").write_text(edited)
    pipeline = load_pipeline(tmp_path / "trip.yaml")
    async with pipeline.runtime(store=store) as rt:
        undo = rt.gather(key, types=["trip_outcome"], timeout=5)
        (out,) = (await undo.wait()).replies
    outcome = out.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert outcome.status == "cancelled"
    assert (outcome.compensated, outcome.not_compensated) == (("hotel",), ("flight",))
    (why,) = [e.detail for e in outcome.events if e.kind == "compensation_failed"]
    assert why == "its agent 'flight', declared when the run started, is gone"
    assert saga_agents.JOURNAL == []


def spoil_definitions(store: Path, spoil: Any) -> None:
    """Edit the ``RunDefinition`` kept in ``store`` with ``spoil`` (its payload as data): as
    another genie, or a hand in the file, may have left it."""
    with sqlite3.connect(store) as db:
        rows = list(
            db.execute(
                "SELECT id, body FROM messages WHERE body LIKE '%genie.workflow_definition%'"
            )
        )
        assert rows
        for i, body in rows:
            data = json.loads(body)
            spoil(data["payload"])
            db.execute("UPDATE messages SET body = ? WHERE id = ?", (json.dumps(data), i))


def _set(path: Sequence[str | int], value: object) -> Any:
    def spoil(payload: Any) -> None:
        *into, last = path
        for key in into:
            payload = payload[key]
        payload[last] = value

    return spoil


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_set(("steps", 1, "after"), ["nowhere"]), "step 'ok' comes after 'nowhere', not a step"),
        (_set(("steps", 0, "id"), 7), "a step's id is no text: 7"),
        (
            _set(("steps", 1, "approval"), {"subject": "Trip", "colour": "red"}),
            "step 'ok' has an approval that is none: ",
        ),
        (_set(("steps", 0, "deadline"), "soon"), "step 'flight' has a deadline of 'soon'"),
        (_set(("steps", 2, "agent"), None), "step 'car' has no agent and no approval, or both"),
    ],
)
async def test_a_run_whose_kept_definition_cannot_be_read_is_refused_and_undone(
    tmp_path: Path, spoil: Any, why: str
) -> None:
    """The definition kept with the run was left by another genie, or edited in the file: it
    cannot be read. The workflow changed since (its fingerprint differs), so the run is not
    resumed; it is refused, naming what cannot be read, and undone as the workflow declares
    now, instead of failing the workflow's handling with a traceback and hanging."""
    before = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
      - {id: car, after: [ok]}
    """
    pipeline, store, _ = await paused_trip(tmp_path, before)
    spoil_definitions(store, spoil)
    pipeline = trip_pipeline(
        tmp_path, steps=before.replace("{id: car, after: [ok]}", "{id: car, after: [ok, flight]}")
    )
    async with pipeline.runtime(store=store) as rt:
        (request,) = rt.unfinished()
        result = await pipeline.resume(rt, request, timeout=5)
        assert rt.approvals.pending() == []
    assert result.output is not None, result
    assert result.dead_letters == ()
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", None)
    assert outcome.reason is not None
    assert outcome.reason.startswith(
        "workflow booking changed while the request was kept (the definition kept with it "
        f"cannot be read: {why}"
    ), outcome.reason
    assert outcome.compensated == ("flight",)
    assert "start car" not in saga_agents.JOURNAL


def without_agent(tmp_path: Path, steps: str, agent: str, flight: str = "") -> Pipeline:
    """The trip of ``steps`` (the flight's booker params ``flight``) with ``agent``'s line
    cut from the file: its agent gone from the pipeline."""
    trip_pipeline(tmp_path, steps=steps, flight=flight)
    text = (tmp_path / "trip.yaml").read_text()
    edited = "\n".join(line for line in text.splitlines() if f"id: {agent}, use:" not in line)
    (tmp_path / "trip.yaml").write_text(edited)
    return load_pipeline(tmp_path / "trip.yaml")


async def test_a_refused_run_resumed_twice_undoes_each_step_once(tmp_path: Path) -> None:
    """Paused at its approval; the car step and its agent are removed before the resume. The
    resume refuses the run: the car, whose undo agent is gone, is named not undone, the hotel
    undone; the process stops while the flight's undo runs. The second resume goes on from
    there: the hotel is not undone again, the car named once, the flight undone."""
    before = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - {id: car, after: [hotel], compensate: trip_cancel}
      - id: ok
        after: [car]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """
    _, store, _ = await paused_trip(tmp_path, before)
    after = """
      - {id: flight, compensate: trip_cancel}
      - {id: hotel, after: [flight], compensate: trip_cancel}
      - id: ok
        after: [hotel]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """
    audit = MemoryAuditLog()
    first = without_agent(tmp_path, after, "car", flight="undo_stall: 30").runtime(
        store=store, audit=audit
    )
    first.drain_timeout = 0.01
    async with first:
        (request,) = first.unfinished()
        with anyio.move_on_after(0.5):
            await first.resume(request)
    assert saga_agents.JOURNAL[-2:] == ["undo hotel hotel-ok", "undoing flight"]
    outcome = await resumed_refused(without_agent(tmp_path, after, "car"), store, audit)
    assert outcome.status == "failed"
    assert (outcome.compensated, outcome.not_compensated) == (("hotel", "flight"), ("car",))
    assert [e.step for e in outcome.events if e.kind == "compensation_failed"] == ["car"]
    assert saga_agents.JOURNAL.count("undo hotel hotel-ok") == 1
    assert saga_agents.JOURNAL.count("undo flight flight-ok") == 1
    audited = [(r.details["step"], r.action) for r in audit.records if r.action[:9] == "workflow_"]
    assert audited.count(("car", "workflow_compensation_failed")) == 1
    assert audited.count(("hotel", "workflow_compensated")) == 1
    assert audited.count(("ok", "workflow_withdrawn")) == 1


async def test_a_run_paused_at_an_approval_the_file_no_longer_asks_for_is_refused(
    tmp_path: Path,
) -> None:
    """Paused at its approval ``ok``; the file is edited to ask no approval at all before the
    resume. The run is refused as any changed run: the approval it had asked is withdrawn
    (the workflow may withdraw one though its file declares none now), the flight undone."""
    before = """
      - {id: flight, compensate: trip_cancel}
      - id: ok
        after: [flight]
        approval: {subject: "Trip to {city}", role: travel_desk}
    """
    _, store, _ = await paused_trip(tmp_path, before)
    after = """
      - {id: flight, compensate: trip_cancel}
    """
    pipeline = trip_pipeline(tmp_path, steps=after)
    async with pipeline.runtime(store=store) as rt:
        (request,) = rt.unfinished()
        result = await pipeline.resume(rt, request, timeout=5)
        assert [d.reason for d in rt.dead_letters] == []
    assert result.output is not None, result
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    assert (outcome.status, outcome.failed_step) == ("failed", None)
    assert outcome.reason.startswith("workflow booking changed while the request was kept")
    assert outcome.compensated == ("flight",)
    assert [e.step for e in outcome.events if e.kind == "withdrawn"] == ["ok"]
    assert saga_agents.JOURNAL[-1] == "undo flight flight-ok"


async def test_a_run_kept_without_its_definition_refused_and_resumed_twice_fails_once(
    tmp_path: Path,
) -> None:
    """As above (the hotel replied, then removed from the file), the resume stopped while the
    flight's undo runs. The second resume takes the first one's refusal again and its own
    finding (the hotel's kept reply) once more: the hotel fails once, in the events and in
    the audit, and each step is undone or named once."""
    before = WITH_HOTEL
    _, store, _ = await paused_trip(tmp_path, before)
    forget_definitions(store)
    after = HOTEL_REMOVED
    audit = MemoryAuditLog()
    first = trip_pipeline(tmp_path, steps=after, flight="undo_stall: 30").runtime(
        store=store, audit=audit
    )
    first.drain_timeout = 0.01
    async with first:
        (request,) = first.unfinished()
        with anyio.move_on_after(0.5):
            await first.resume(request)
    assert saga_agents.JOURNAL[-1] == "undoing flight"
    # The flight's undo, run again, ends after the second resume's own finding is told.
    second = trip_pipeline(tmp_path, steps=after, flight="undo_stall: 0.3")
    outcome = await resumed_refused(second, store, audit)
    assert (outcome.status, outcome.failed_step) == ("failed", "hotel")
    assert [e.step for e in outcome.events if e.kind == "failed"] == ["hotel"]
    assert (outcome.compensated, outcome.not_compensated) == (("flight",), ("hotel",))
    audited = [(r.details["step"], r.action) for r in audit.records if r.action[:9] == "workflow_"]
    assert audited.count(("hotel", "workflow_failed")) == 1
    assert audited.count(("hotel", "workflow_compensation_failed")) == 1
    assert audited.count(("ok", "workflow_withdrawn")) == 1
    assert saga_agents.JOURNAL.count("undo flight flight-ok") == 1
