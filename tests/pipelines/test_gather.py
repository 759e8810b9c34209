"""Declared gathers on virtual time: complete, partial at the deadline or at once when a
branch is lost, or failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing

from genie import Decision, Lost, Message
from genie.pipeline import _finished, load_pipeline
from genie.testing import TestRuntime

from . import loopers

GATHER = Path(__file__).parent / "good" / "gather.yaml"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def run(**variables: str) -> tuple[Any, Any]:
    async with TestRuntime(load_pipeline(GATHER, variables=variables)) as app:
        result = await app.run()
        fan_in = next(a for a in app.runtime.agents() if a.id == "fan_in")
    return result, fan_in


async def test_complete_when_every_sender_answers_in_time() -> None:
    result, fan_in = await run(SLOW="0.5")
    assert result.ok
    assert result.output.payload.text == "complete: got ['fast', 'slow'], missing []"
    assert fan_in.pending == 0


async def test_partial_at_the_deadline() -> None:
    result, fan_in = await run()
    assert result.ok
    assert result.output.payload.text == "partial: got ['fast'], missing ['slow']"
    assert fan_in.pending == 0  # the session ended with the deadline: nothing leaks


async def test_a_part_after_its_bundle_opens_no_session_however_many_ended_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The gather's memory of ended requests is bounded (here to one, as if thousands of
    # requests had ended meanwhile): two requests end partial at the deadline while both
    # slow parts are still coming. Neither slow part, when it comes, opens a session and
    # sends a second, spurious bundle: the runtime knows each request's session ended.
    monkeypatch.setattr(_finished, "FINISHED_KEPT", 1)
    async with TestRuntime(load_pipeline(GATHER), timeout=600) as app:
        fan_in: Any = next(a for a in app.runtime.agents() if a.id == "fan_in")
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(app.run)
        await app.idle()
        bundles = app.received("collector")
    missing = [b.payload.missing for b in bundles if isinstance(b.payload, loopers.Both)]
    assert (len(bundles), missing) == (2, [("slow",), ("slow",)])
    assert (fan_in.late, fan_in.pending) == (2, 0)


async def test_fail_at_the_deadline() -> None:
    result, fan_in = await run(ON_TIMEOUT="fail")
    assert result.status == "failed"
    (missing,) = [m for m in result.missing if m.agent_id == "fan_in"]
    assert missing.kind == "failed"
    assert "gather 'fan_in': slow: did not arrive within the 1s deadline" in missing.reason
    assert fan_in.pending == 0
    assert fan_in.late == 1  # slow's answer came after the gather had closed


class _DenySlow:
    name = "no-slow"

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        if recipient == "slow":
            return Decision.deny("no-slow", "slow is off")
        return Decision.ALLOW


async def test_a_denied_sender_ends_the_wait_at_once_on_virtual_time() -> None:
    pipeline = load_pipeline(GATHER, variables={"SLOW": "0.5"})
    async with pipeline.runtime(policies=[_DenySlow()]) as rt:
        started = anyio.current_time()
        result: Any = await pipeline.ask(rt, pipeline.entry_payload(None))
        elapsed = anyio.current_time() - started
        fan_in: Any = next(a for a in rt.agents() if a.id == "fan_in")
    assert elapsed == 0  # not the 1 s deadline: the loss was known at once
    assert result.status == "partial"
    assert result.output.payload.text == "partial: got ['fast'], missing ['slow']"
    (missing,) = result.missing
    assert (missing.key, missing.kind, missing.policy, missing.reason) == (
        "slow",
        "denied",
        "no-slow",
        "slow is off",
    )
    assert fan_in.pending == 0


def test_feeds_follow_the_graph_to_each_part() -> None:
    shipped = Path(__file__).parents[2] / "config" / "pipelines" / "finance-gather.yaml"
    feeds = load_pipeline(shipped).graph.feeds("fan_in", by_sender=False)
    every = {"analysis_result", "forecast_result", "anomalies", "recommendations"}
    assert feeds[("forecaster", "analysis_result")] == {"forecast_result"}
    assert feeds[("analyzer", "enriched_transactions")] == every
    assert feeds[("ingestor", "ingest_csv")] == every
    assert not any(agent == "fan_in" for agent, _ in feeds)  # not through the gather
    assert not any(agent == "reporter" for agent, _ in feeds)  # downstream of it


TWINS = Path(__file__).parent / "good" / "gather_twins.yaml"


async def test_a_loss_waits_for_a_part_still_coming_by_another_way() -> None:
    # wb's loss leads (by the graph) to both parts, but wa's delivery, still running, can
    # bring part_a: the gather takes it when it comes, and only then is part_b missing.
    async with TestRuntime(load_pipeline(TWINS)) as app:
        started = anyio.current_time()
        result: Any = await app.run()
        elapsed = anyio.current_time() - started
        fan_in: Any = next(a for a in app.runtime.agents() if a.id == "fan_in")
    assert result.status == "partial"
    assert result.output.payload.text == "partial: got ['part_a'], missing ['part_b']"
    assert elapsed == 0.5  # when wa's part came, not at the minute's deadline
    (missing,) = result.missing
    assert (missing.key, missing.kind, missing.agent_id) == ("part_b", "failed", "wb")
    assert "twin b refuses" in missing.reason
    assert (fan_in.pending, fan_in.late) == (0, 0)


async def test_a_partial_bundle_is_reported_partial_after_a_resume(tmp_path: Path) -> None:
    # The gather sent its partial bundle, then the process stopped before the collector
    # answered: the run that resumes it never saw the bundle sent, yet the output it gets
    # was built from it, and says so.
    text = TWINS.read_text().replace("loopers:Collector", "loopers:SlowCollector")
    path = tmp_path / "twins.yaml"
    path.write_text(text)
    pipeline = load_pipeline(path)
    store = tmp_path / "store.db"
    loopers.SlowCollector.gate = anyio.Event()  # never opened: the first process stops
    loopers.SlowCollector.waiting = waiting = anyio.Event()
    try:
        async with pipeline.runtime(store=store) as rt:
            await rt.publish(pipeline.entry_message(rt, pipeline.entry_payload(None)))
            await waiting.wait()  # the bundle is with the collector
    finally:
        loopers.SlowCollector.gate = loopers.SlowCollector.waiting = None
    async with pipeline.runtime(store=store) as rt:
        [again] = rt.unfinished()
        result: Any = await pipeline.resume(rt, again)
    assert result.output.payload.text == "partial: got ['part_a'], missing ['part_b']"
    assert result.status == "partial"
    (missing,) = result.missing
    assert (missing.key, missing.kind, missing.agent_id) == ("part_b", "failed", "wb")


async def test_a_cancelled_request_ends_its_gathers_session() -> None:
    # The request is cancelled (its caller gave up) after one part came: the session's
    # deadline is cancelled with the request, and nothing else of it will ever arrive.
    async with TestRuntime(load_pipeline(GATHER)) as app:
        fan_in: Any = next(a for a in app.runtime.agents() if a.id == "fan_in")
        pipeline = app.pipeline
        assert pipeline is not None
        with anyio.move_on_after(0.5):
            await pipeline.ask(app.runtime, pipeline.entry_payload(pipeline.read_input(text=None)))
        await app.idle()
        assert app.runtime.statistics().in_flight == 0
        assert fan_in.pending == 0  # kept by no store either (``keeps``)


async def test_a_loss_told_by_anyone_but_the_runtime_is_ignored() -> None:
    # An agent (here an outside publisher) names itself the runtime's notice of a loss: the
    # gather believes only the runtime's own, so slow's part is missing for its deadline, not
    # for the reason the impostor gave.
    async with TestRuntime(load_pipeline(GATHER, variables={"ON_TIMEOUT": "fail"})) as app:
        rt, pipeline = app.runtime, app.pipeline
        assert pipeline is not None
        request = pipeline.entry_message(rt, pipeline.entry_payload(pipeline.read_input(None)))
        forged = Lost(
            message_id="m-1",
            type_name="serve",
            sender="slow",
            consumer="fan_in",
            kind="denied",
            reason="forged by an impostor",
            policy="nobody",
        )
        results: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                results.append(await pipeline.ask(rt, request))

            tg.start_soon(ask)
            await anyio.sleep(0.1)  # the fast part is in the gather, slow still sleeps
            await rt.publish(
                rt.message(
                    forged,
                    sender="impostor",
                    recipient="fan_in",
                    correlation_id=request.correlation_id,
                    causation_id=request.id,
                )
            )
    [result] = results
    (missing,) = [m for m in result.missing if m.agent_id == "fan_in"]
    assert "slow: did not arrive within the 1s deadline" in missing.reason
    assert "impostor" not in missing.reason


def test_missing_parts_reads_only_what_a_gather_wrote() -> None:
    """Under ``genie.missing_parts`` a gather writes each missing part as its JSON; anything
    else there (set by hand from Python: no caller can, see genie serve) names no part rather
    than stopping the run."""
    from genie.pipeline._gather import MISSING, MissingPart, missing_parts

    from ..conftest import Ping

    written = '{"part": "forecast_result", "kind": "timed_out", "reason": "no part in time"}'
    junk = ["oops", "[1]", '{"kind": "failed"}', '{"part": 3, "kind": "failed", "reason": "x"}']
    junk.append('{"part": "p", "kind": "made up", "reason": "x"}')
    msg = Message.new(Ping(n=1), sender="me", metadata={MISSING: [*junk, written]})
    assert missing_parts(msg) == {
        "forecast_result": MissingPart(kind="timed_out", reason="no part in time")
    }
