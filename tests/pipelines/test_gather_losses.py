"""A declared gather whose branch is lost (denied, failed) stops waiting for it at once, and the
run names each missing part with why: from the CLI and from Python, on both anyio backends.

The shipped finance-gather pipeline runs with a board policy that adds one DSL rule, and a
gather deadline of a minute: a run that waited for the deadline could not end in time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from genie._cli.main import main
from genie.pipeline import load_pipeline

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "pipelines" / "finance-gather.yaml"
DEADLINE = 60.0  # the gather's; every run below must end well before it

Capture = pytest.CaptureFixture[str]


def pipeline_file(tmp_path: Path, rule: str, on_timeout: str = "emit") -> Path:
    """finance-gather.yaml with ``rule`` (a DSL condition) denying, as policy ``no-branch``."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (ROOT / "config" / "policies" / "ai-policy.yaml").read_text()
        + f"  - id: no-branch\n    when: '{rule}'\n    reason: \"this branch is off today\"\n"
    )
    text = (
        SHIPPED.read_text()
        .replace("file: ../policies/ai-policy.yaml", f"file: {policy}")
        .replace("default: ../data/sample.csv", f"default: {ROOT / 'config/data/sample.csv'}")
        .replace("deadline: 2s ", f"deadline: {DEADLINE:g}s ")
        .replace("on_timeout: emit", f"on_timeout: {on_timeout}")
        .replace("timeout: 10s", "timeout: 5m")
    )
    assert f"deadline: {DEADLINE:g}s" in text
    assert "policy.yaml" in text
    path = tmp_path / "finance-gather.yaml"
    path.write_text(text)
    return path


NO_FORECASTS = 'type == "analysis_result" AND to == "forecaster"'
DENIED_FORECAST = {
    "key": "forecast_result",
    "kind": "denied",
    "reason": "this branch is off today",
    "policy": "no-branch",
    "agent": "forecaster",
}


def test_cli_a_denied_branch_ends_its_wait_and_is_named(tmp_path: Path, capsys: Capture) -> None:
    path = pipeline_file(tmp_path, NO_FORECASTS)
    started = time.monotonic()
    code = main(["run", str(path), "--json"])
    assert time.monotonic() - started < DEADLINE / 2
    result = json.loads(capsys.readouterr().out)
    assert code == 0  # the report came, built without the forecast
    assert result["status"] == "partial"
    assert result["missing"] == [DENIED_FORECAST]
    assert result["output"]["type"] == "final_report"
    assert result["denials"] == [
        {
            "type": "analysis_result",
            "recipient": "forecaster",
            "policy": "no-branch",
            "reason": "this branch is off today",
        }
    ]


def test_cli_text_names_the_missing_part_and_why(tmp_path: Path, capsys: Capture) -> None:
    assert main(["run", str(pipeline_file(tmp_path, NO_FORECASTS))]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Genie Financial Report\n")
    assert err.splitlines() == [
        "genie run: finance-gather: the run ended partial",
        "  denied: analysis_result to forecaster by policy no-branch: this branch is off today",
        "  forecast_result: denied to forecaster (policy no-branch): this branch is off today",
    ]


def test_cli_a_part_denied_on_its_way_to_the_gather(tmp_path: Path, capsys: Capture) -> None:
    path = pipeline_file(tmp_path, 'type == "anomalies" AND to == "fan_in"')
    started = time.monotonic()
    assert main(["run", str(path), "--json"]) == 0
    assert time.monotonic() - started < DEADLINE / 2
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "partial"
    assert result["missing"] == [
        {
            "key": "anomalies",
            "kind": "denied",
            "reason": "this branch is off today",
            "policy": "no-branch",
            "agent": "fan_in",
        }
    ]


def test_cli_on_timeout_fail_fails_at_once_naming_why(tmp_path: Path, capsys: Capture) -> None:
    path = pipeline_file(tmp_path, NO_FORECASTS, on_timeout="fail")
    started = time.monotonic()
    assert main(["run", str(path), "--json"]) == 1
    assert time.monotonic() - started < DEADLINE / 2
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "denied"  # what ended it: the denial, then the gather's failure
    assert result["output"] is None
    reasons = [m["reason"] for m in result["missing"] if m["agent"] == "fan_in"]
    assert reasons == [
        "GatherTimeoutError: gather 'fan_in': forecast_result: denied to forecaster by policy "
        "no-branch: this branch is off today"
    ]


def test_cli_everything_lost_emits_no_bundle(tmp_path: Path, capsys: Capture) -> None:
    # The analyzer feeds every part: the gather has nothing to bundle, so the reporter never
    # runs on an empty bundle and the run ends denied, without waiting for the deadline.
    path = pipeline_file(tmp_path, 'type == "enriched_transactions"')
    started = time.monotonic()
    assert main(["run", str(path), "--json"]) == 1
    assert time.monotonic() - started < DEADLINE / 2
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "denied"
    assert result["output"] is None
    assert [d["recipient"] for d in result["denials"]] == ["analyzer"]


async def test_python_a_denied_branch_ends_at_once(tmp_path: Path) -> None:
    pipeline = load_pipeline(pipeline_file(tmp_path, NO_FORECASTS))
    async with pipeline.runtime() as rt:
        started = anyio.current_time()
        with anyio.fail_after(DEADLINE / 2):
            result = await pipeline.ask(rt, pipeline.entry_payload(pipeline.read_input()))
        assert anyio.current_time() - started < DEADLINE / 2
        (fan_in,) = [a for a in rt.agents() if a.id == "fan_in"]
        assert fan_in.pending == 0  # type: ignore[attr-defined]
    assert (result.status, result.ok) == ("partial", True)
    (missing,) = result.missing
    assert (missing.key, missing.kind, missing.policy, missing.agent_id) == (
        "forecast_result",
        "denied",
        "no-branch",
        "forecaster",
    )
    r = result.runtime
    assert r.delivered == r.handled + r.denied + r.dead_lettered + r.shed + r.in_flight
    s = result.stats  # the run's own: its deliveries to agents, and the one it was denied
    assert s.delivered == s.handled + s.dead_lettered + s.in_flight
    assert s.denied == len(result.denials) == 1


async def test_python_a_failed_branch_names_the_error(tmp_path: Path) -> None:
    pipeline = load_pipeline(pipeline_file(tmp_path, 'type == "never"'))

    def broken(agent, options):  # type: ignore[no-untyped-def]
        if agent.id == "recommender":

            async def fail(msg, ctx):  # type: ignore[no-untyped-def]
                raise RuntimeError("the model is down")

            agent.handle = fail
        return agent, options

    async with pipeline.runtime(adapt=broken) as rt:
        with anyio.fail_after(DEADLINE / 2):
            result = await pipeline.ask(rt, pipeline.entry_payload(pipeline.read_input()))
    assert result.status == "partial"
    (missing,) = result.missing
    assert (missing.key, missing.kind, missing.agent_id) == (
        "recommendations",
        "failed",
        "recommender",
    )
    assert "RuntimeError: the model is down" in missing.reason
