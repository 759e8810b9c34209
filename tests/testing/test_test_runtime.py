"""``genie.testing.TestRuntime``: a whole app in one ``async with`` (issue 36, item 4), on
both backends, with faults, a recorded conversation, idleness awaited without polling, and
virtual time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    InvalidMessageError,
    Limits,
    Message,
    RuntimeClosedError,
    handler,
)
from genie.pipeline import WorkflowOutcome
from genie.testing import VIRTUAL_TIME, TestRuntime

from ..conftest import Echo, Ping, Pong, Recorder

ROOT = Path(__file__).resolve().parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"


async def test_agents_in_one_async_with_and_their_conversation_recorded() -> None:
    async with TestRuntime([Echo("echo"), Recorder("sink")]) as app:
        answered = await app.ask(Ping(n=7), to="echo")
        await app.publish(Ping(n=8), to="sink")
        await app.idle()
        assert answered.complete
        [reply] = answered.replies
        assert reply.payload == Pong(n=7)
        assert [m.payload for m in app.received("echo")] == [Ping(n=7)]
        assert app.emitted("echo") == [reply]
        assert [m.payload for m in app.received("sink")] == [Ping(n=8)]
        assert app.emitted("sink") == []
        with pytest.raises(ConfigurationError, match=r"no agent 'eco' .*did you mean 'echo'"):
            app.received("eco")


async def test_a_pipeline_runs_as_genie_run_runs_it() -> None:
    async with TestRuntime(FINANCE) as app:
        result = await app.run()  # the entry's default input: the sample statement
        assert result.status == "ok"
        assert [m.type for m in app.received("financial_supervisor")][:1] == ["finance_question"]
        assert app.emitted("reporter")[-1].type == "final_report"


async def test_faults_are_the_simulations_and_named_in_the_result() -> None:
    async with TestRuntime(FINANCE, faults=["error:forecaster=1"]) as app:
        result = await app.run()
    assert result.status == "failed"  # the supervisor needs every part
    [letter] = result.dead_letters
    assert letter.agent_id == "forecaster"
    assert letter.error_type == "InjectedFailure"


class Stuck(BaseAgent):
    """Never finishes a delivery."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        await anyio.sleep_forever()


async def test_idle_returns_when_work_ends_and_names_what_never_ends() -> None:
    async with TestRuntime([Echo("echo")]) as app:
        started = time.monotonic()
        await app.publish(Ping(), to="echo")
        await app.idle()  # no polling loop: the ledger's own wake-up
        assert time.monotonic() - started < 1
    async with TestRuntime([Stuck("stuck")], timeout=0.2) as app:
        await app.publish(Ping(), to="stuck")
        with pytest.raises(TimeoutError, match=r"still busy after 0.2s: 1 deliveries in flight"):
            await app.idle()


def test_outside_async_with_it_says_so() -> None:
    app = TestRuntime([Echo("echo")])
    with pytest.raises(ConfigurationError, match="use 'async with' first"):
        app.runtime  # noqa: B018


@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])
async def test_it_runs_once_as_a_runtime_does() -> None:
    # A second run's person failed at once with an ExceptionGroup: the first had closed its
    # streams. The conversation read after the block is the one run's.
    app = TestRuntime(
        ROOT / "config" / "pipelines" / "sme-loan.yaml",
        faults=["answer:sme_loan_workflow=fixed,mean=30s"],
    )
    async with app:
        assert (await app.run()).status == "ok"
    received = app.received("sanction_letter")
    with pytest.raises(RuntimeClosedError, match="a TestRuntime can be started once"):
        async with app:
            pass
    assert len(received) == 1
    assert app.received("sanction_letter") == received


class Sleeper(BaseAgent):
    """Answers after an hour."""

    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await anyio.sleep(3600)
        return ctx.reply(Pong(n=payload.n))


@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])
async def test_virtual_time_makes_an_hour_take_no_time() -> None:
    started = time.monotonic()
    async with TestRuntime([Sleeper("slow")], timeout=7200) as app:
        answered = await app.ask(Ping(n=1), to="slow")
    assert answered.complete
    assert time.monotonic() - started < 5  # an hour of the runtime's clock


class Working(BaseAgent):
    """A plain ``def`` handler that works for a while in its thread, as real code does."""

    produces = (Pong,)

    @handler
    def on_ping(self, payload: Ping, ctx: Context) -> Message:
        time.sleep(0.05)
        return ctx.reply(Pong(n=payload.n))


@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])
async def test_a_handlers_thread_takes_no_virtual_time_under_its_deadline() -> None:
    # Nothing is ready on the loop while the thread works; a virtual clock that jumped then
    # would reach the handler's deadline and fail a handler that finishes in 50 ms.
    async with TestRuntime([Working("worker")], options=AgentOptions(deadline=1.0)) as app:
        answered = await app.ask(Ping(n=3), to="worker")
        assert list(app.runtime.dead_letters) == []
        assert answered.complete
        assert [r.payload for r in answered.replies] == [Pong(n=3)]
        assert app.runtime.clock.monotonic() == 0.0


@pytest.mark.parametrize("anyio_backend", [VIRTUAL_TIME])
async def test_an_answer_fault_puts_a_person_at_the_approvals_desk() -> None:
    # sme-loan's workflow asks a credit officer to approve the offer; the simulated person
    # holding that role answers yes 30 s later (within the pipeline's timeout of 60 s), and
    # the loan is sanctioned.
    async with TestRuntime(
        ROOT / "config" / "pipelines" / "sme-loan.yaml",
        faults=["answer:sme_loan_workflow=fixed,mean=30s"],
    ) as app:
        result = await app.run()
        assert result.status == "ok", result
        assert result.output is not None
        outcome = result.output.payload
        assert isinstance(outcome, WorkflowOutcome)  # sme_loan_outcome, declared by the workflow
        [approved] = [
            e
            for e in outcome.events
            if e.step == "human_approval" and e.kind != "awaiting_approval"
        ]
        assert approved.kind == "approved"
        assert approved.detail.startswith("approved by simulated credit_officer")
        assert outcome.state["sanction_letter"].startswith("Sanctioned to shree-ganesh-traders")
        assert app.runtime.clock.monotonic() == pytest.approx(30.0)


FALLING_BACK = """
from genie import BaseAgent, Context, Message, Payload, handler


class Question(Payload):
    message_type = "question"


class Answer(Payload):
    message_type = "answer"


class Broken(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        raise RuntimeError("broken")


class Stand_in(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.reply(Answer())
"""


async def test_the_delivery_a_fallback_runs_is_received_by_it(tmp_path: Path) -> None:
    """A fallback gets the message its agent failed (the same delivery, handed over): it is
    recorded as received by both, each once (before, the fallback's list was empty while it
    had emitted the answer)."""
    (tmp_path / "falling_back.py").write_text(FALLING_BACK)
    path = tmp_path / "p.yaml"
    path.write_text(
        "agents:\n"
        "  - {id: counter, use: falling_back:Broken, retry: {attempts: 2, backoff: 1ms},"
        " fallback: fb}\n"
        "  - {id: fb, use: falling_back:Stand_in}\n"
        "entry: {type: question, to: counter}\noutput: answer\n"
    )
    async with TestRuntime(path) as app:
        result = await app.run()
        assert result.status == "ok"
        [question] = app.received("counter")  # two attempts, one delivery
        assert question.type == "question"
        assert app.received("fb") == [question]
        assert [m.type for m in app.emitted("fb")] == ["answer"]


async def test_a_payload_that_is_not_a_model_is_an_error_naming_the_argument() -> None:
    """``app.ask("hello", to=...)`` (text where a payload model goes) names the argument and
    what it takes, as a handler's ``ctx.reply("hello")`` does (before, an AttributeError of
    'message_type')."""
    refused = r"invalid 'str' message: field 'payload': must be a Payload subclass"
    async with TestRuntime([Echo("echo")]) as app:
        with pytest.raises(InvalidMessageError, match=refused):
            await app.ask("hello", to="echo")  # type: ignore[arg-type]
        with pytest.raises(InvalidMessageError, match=refused):
            await app.publish("hello", to="echo")  # type: ignore[arg-type]
        with pytest.raises(InvalidMessageError, match=r"invalid 'dict' message: field 'payload'"):
            app.runtime.message({"n": 1}, recipient="echo", metadata={})  # type: ignore[arg-type]
        assert app.received("echo") == []


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        # Each of these failed only later, with a bare error from deep inside (an
        # AttributeError at the start, a TypeError in the first wait), or ran wrongly: a spec
        # given for the list was read character by character ("fault 'e' does not parse"),
        # a seed of "7" ran as 7, a negative timeout ended every wait at once.
        ({"faults": "error:echo=1"}, "faults must be a list of fault specs or Faults, not a str"),
        ({"faults": [1]}, "faults must be a list of fault specs or Faults, not a list holding"),
        ({"seed": "7"}, "seed must be a whole number, got '7'"),
        ({"timeout": "5"}, "timeout must be a positive number of seconds, got '5'"),
        ({"timeout": -1}, "timeout must be a positive number of seconds, got -1"),
        ({"limits": 5}, "limits must be Limits or None, not 5"),
        ({"options": {"mailbox_size": 1}}, "options must be AgentOptions or None, not {'mail"),
        ({"app": 5}, "app must be a pipeline file's path .* or a list of agents, not 5"),
        ({"app": ["echo"]}, r"app must be .* or a list of agents, not \['echo'\]"),
        # Given with a pipeline, they were silently not applied.
        ({"app": FINANCE, "limits": Limits(max_hops=3)}, "limits and options are for a list"),
        ({"llm": {}}, "llm is for a pipeline, whose agents name its stacks"),
    ],
)
def test_wrong_arguments_are_refused_where_given(arguments: dict[str, Any], says: str) -> None:
    arguments = {"app": [Echo("echo")], **arguments}
    with pytest.raises(ConfigurationError, match=says):
        TestRuntime(**arguments)
