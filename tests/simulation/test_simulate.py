"""``simulate`` on the real runtime: virtual time, determinism, fault counts the seed implies,
accounting, and flat memory once the bounded stores have filled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from genie_bench.soak import growth, soak

from genie import ConfigurationError
from genie.pipeline import InputError, load_pipeline
from genie.simulation import Progress, Report, SimulationError, simulate
from genie.simulation._faults import stream

from ..conftest import requires

HERE = Path(__file__).parent / "pipelines"
CHAIN = HERE / "chain.yaml"
FINANCE = Path(__file__).resolve().parents[2] / "config" / "pipelines" / "finance.yaml"


def accounted(r: Report) -> None:
    """Every session ends in exactly one state; every delivery in exactly one outcome."""
    o = r.sessions
    assert o.completed + o.partial + o.fallback + o.denied + o.failed + o.timed_out == o.total
    assert r.latency.count == o.total
    m = r.messages
    assert m["in_flight"] == 0
    assert m["delivered"] == m["handled"] + m["denied"] + m["dead_lettered"] + m["shed"]


def test_virtual_time_gives_exact_latencies_and_queueing() -> None:
    # Three sessions at once into a chain of three one-second stages, one handler each: the
    # first stage serves them at 0, 1 and 2 s, so they end at 3, 4 and 5 s of virtual time.
    r = simulate(CHAIN, sessions=3, concurrency=3, faults=["latency:*=fixed,mean=1s"])
    assert (r.latency.min, r.latency.p50, r.latency.max) == (3.0, 4.0, 5.0)
    assert r.duration == 5.0
    a = r.agents["a"]
    assert (a.queueing.min, a.queueing.mean, a.queueing.max) == (0.0, 1.0, 2.0)
    assert a.service_time == 1.0
    assert a.utilisation == pytest.approx(3 / 5)
    assert a.mailbox_high_water == 3  # all three queued before the first started
    assert r.agents["server"].queueing.max == 0.0
    accounted(r)


def test_hours_of_agent_latency_on_virtual_time() -> None:
    r = simulate(CHAIN, sessions=200, concurrency=1, faults=["latency:*=fixed,mean=20s"])
    assert r.duration == 200 * 3 * 20.0  # 3 h 20 min of simulated time
    assert r.sessions.completed == 200
    assert r.throughput == pytest.approx(1 / 60)


FAULTS = [
    "latency:*=fixed,mean=100ms",  # stages end at the same instants: the loop's tie rule decides
    "error:recommender=0.3",
    "deny:forecaster=0.1",
    "capacity:reporter=1,overflow=shed",
]


def test_same_seed_same_report_byte_for_byte() -> None:
    first = simulate(FINANCE, sessions=60, concurrency=8, seed=11, faults=FAULTS).json()
    again = simulate(FINANCE, sessions=60, concurrency=8, seed=11, faults=FAULTS).json()
    assert again == first
    # Another process, another hash seed, the command line: the same bytes.
    command = [
        sys.executable,
        "-m",
        "genie._cli",
        "simulate",
        str(FINANCE),
        "--sessions",
        "60",
    ]
    command += ["--concurrency", "8", "--seed", "11", "--json", "-q"]
    for spec in FAULTS:
        command += ["--fault", spec]
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    assert json.loads(out)["path"] == str(FINANCE)
    assert out == first
    other = simulate(FINANCE, sessions=60, concurrency=8, seed=12, faults=FAULTS).json()
    assert other != first


def test_injected_failures_and_denials_are_what_the_seed_implies() -> None:
    seed = 5
    r = simulate(
        FINANCE,
        sessions=300,
        concurrency=4,
        seed=seed,
        faults=["error:recommender=0.25", "deny:forecaster=0.1", "latency:*=exponential,mean=50ms"],
    )
    rows = {row["kind"]: row for row in r.faults if row["agent"] in ("recommender", "forecaster")}
    error, deny = rows["error"], rows["deny"]

    # The n-th handler call of the recommender fails exactly when the n-th draw of its error
    # stream is below the rate; likewise for the forecaster's deliveries.
    draws = stream(seed, "error", "recommender")
    expected = sum(draws.random() < 0.25 for _ in range(error["attempts"]))
    assert error["injected"] == expected
    draws = stream(seed, "deny", "forecaster")
    assert deny["denied"] == sum(draws.random() < 0.1 for _ in range(deny["evaluated"]))

    # ... and the runtime saw exactly those: every recommender call ran once per delivery plus
    # once per retry, and only injected failures made it fail.
    rec = r.agents["recommender"]
    assert rec.failed == error["injected"]
    assert rec.handled + rec.failed == error["attempts"]
    forecaster = r.agents["forecaster"]
    assert forecaster.denied == deny["denied"]
    assert forecaster.deliveries == deny["evaluated"] - deny["denied"]
    # Near the rates asked for (300 draws and more: binomial spread).
    assert 0.15 < error["injected"] / error["attempts"] < 0.35
    assert 0.05 < deny["denied"] / deny["evaluated"] < 0.16
    # A denied forecast strands the supervisor's fan-in: the session ends denied, unless the
    # recommender's fallback answered the caller first.
    assert deny["denied"] - r.sessions.fallback <= r.sessions.denied <= deny["denied"]
    accounted(r)


def test_mailbox_capacity_override_sheds_a_burst() -> None:
    # Ten sessions reach 'a' together; it hands all ten to 'b' at once, whose mailbox holds 2.
    r = simulate(
        CHAIN,
        sessions=10,
        concurrency=10,
        faults=["capacity:b=2,overflow=shed", "latency:b=1s"],
    )
    b = r.agents["b"]
    assert (b.mailbox_capacity, b.mailbox_high_water) == (2, 2)
    assert r.limits["shed"] == r.messages["shed"] == 10 - b.deliveries > 0
    assert r.sessions.failed == r.limits["shed"]
    assert r.sessions.completed == b.deliveries
    shed = [d for d in r.dead_letters if d["kind"] == "shed"]
    assert shed == [
        {"kind": "shed", "reason": shed[0]["reason"], "agent": "b", "count": r.limits["shed"]}
    ]
    assert "mailbox of 'b' full (2)" in shed[0]["reason"]
    accounted(r)


def test_timeouts_and_handler_deadlines_are_limits_fired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEADLINE", "30s")
    pipeline = load_pipeline(CHAIN)
    r = simulate(pipeline, sessions=20, concurrency=2, timeout=100, faults=["latency:b=40s"])
    # b overruns its 30 s deadline every time; after five in a row its circuit opens and the
    # rest fail at once (the breaker retries one after 30 s and it times out again).
    deadline, circuit = r.limits["handler_deadline"], r.limits["circuit_open"]
    assert deadline >= 5
    assert circuit > 0
    assert deadline + circuit == r.sessions.failed == 20
    reasons = {d["reason"]: d["count"] for d in r.dead_letters}
    assert reasons == {"HandlerTimeoutError": deadline, "CircuitOpenError": circuit}
    r = simulate(pipeline, sessions=5, concurrency=5, timeout=10, faults=["latency:a=20s"])
    assert r.sessions.timed_out == r.limits["session_timeout"] == 5
    assert r.latency.max == 10.0
    accounted(r)


def test_a_fallback_is_its_own_outcome() -> None:
    r = simulate(FINANCE, sessions=40, concurrency=4, seed=2, faults=["error:recommender=1"])
    assert r.sessions.fallback == 40
    assert r.messages["fallbacks"] == 40
    assert r.agents["recommender_fallback"].handled == 40
    accounted(r)


def test_real_clock_runs_the_same_flow() -> None:
    r = simulate(CHAIN, sessions=20, concurrency=4, clock="real", faults=["latency:a=2ms"])
    assert r.sessions.completed == 20
    assert r.latency.min >= 0.002
    assert r.settings.clock == "real"
    accounted(r)


@requires("mcp", extra="mcp")  # their tools are the catalogue's MCP servers
@pytest.mark.parametrize("name", ["research", "advice"])
def test_tool_calls_take_no_virtual_time(name: str) -> None:
    # A tool's server answers in real time, while a virtual clock would jump to the next
    # timer (the tool's own timeout): every session then failed with a ToolCallError.
    r = simulate(FINANCE.parent / f"{name}.yaml", sessions=3, concurrency=2)
    assert r.sessions.completed == 3, r.dead_letters
    assert r.duration == 0.0  # compute is free; no latency was injected
    accounted(r)


def test_the_approvals_desk_has_a_row_and_the_rows_add_up() -> None:
    # A large claim waits for an adjuster's approval; nobody answers in a simulation, so the
    # session times out. The desk's own deliveries (the request, its deadline) are the
    # runtime's, and the report's agent rows must still sum to what reached agents.
    r = simulate(FINANCE.parent / "claims.yaml", sessions=2)
    assert r.sessions.timed_out == 2
    desk = r.agents["approvals"]
    assert desk.deliveries == desk.handled == 2
    m = r.messages
    assert sum(a.deliveries for a in r.agents.values()) == m["to_agents"]
    assert sum(a.handled for a in r.agents.values()) == m["handled_by_agents"]
    assert "DO NOT ADD UP" not in r.text()
    accounted(r)


def test_a_simulated_person_answers_the_approvals() -> None:
    # claims asks an adjuster to approve a large claim: with an answer fault a person with
    # that role answers after a drawn delay, yes or no as drawn, and the sessions end.
    claims = FINANCE.parent / "claims.yaml"
    r = simulate(claims, sessions=6, faults=["answer:*=fixed,mean=20s,approve=0.5"], seed=3)
    [row] = [f for f in r.faults if f["kind"] == "answer"]
    assert row["asked"] == 6
    assert row["approved"] + row["rejected"] == 6
    assert 0 < row["approved"] < 6  # seed 3 draws both answers
    assert row["too_late"] == 0
    assert r.sessions.timed_out == 0
    assert r.latency.min == pytest.approx(20.0)  # the person's delay is the session's time
    assert f"6 approvals asked: {row['approved']} approved" in r.text()
    again = simulate(claims, sessions=6, faults=["answer:*=fixed,mean=20s,approve=0.5"], seed=3)
    assert again.as_json() == r.as_json()  # the same draws, the same answers
    # Slower than the session timeout: the session has ended, the answer comes too late.
    late = simulate(claims, sessions=2, faults=["answer:*=2m"])
    [row] = [f for f in late.faults if f["kind"] == "answer"]
    assert (row["asked"], row["too_late"], late.sessions.timed_out) == (2, 2, 2)
    accounted(r)
    accounted(late)


def test_an_answer_the_desk_refuses_is_counted_not_a_crash(tmp_path: Path) -> None:
    # An approval role with a trailing space makes a name ("simulated adjuster ") the desk
    # refuses as no person's: the simulated answer raised out of the run, a traceback.
    claims = (FINANCE.parent / "claims.yaml").read_text()
    root = FINANCE.parent.parent
    claims = claims.replace("approval_role: adjuster", 'approval_role: "adjuster "')
    claims = claims.replace("../policies/", f"{root}/policies/").replace(
        "../data/", f"{root}/data/"
    )
    path = tmp_path / "claims.yaml"
    path.write_text(claims)
    r = simulate(path, sessions=2, faults=["answer:*=10s"])
    [row] = [f for f in r.faults if f["kind"] == "answer"]
    assert (row["asked"], row["refused"], row["approved"]) == (2, 2, 0)
    assert "2 answers refused by the desk" in r.text()
    assert r.sessions.timed_out == 2  # nobody answered it: the session's timeout ends it


def test_progress_is_reported_and_inputs_are_seeded_per_session() -> None:
    seen: list[Progress] = []
    r = simulate(CHAIN, sessions=25, concurrency=3, progress=seen.append, every=10)
    assert [p.done for p in seen] == [10, 20, 25]
    assert seen[-1].outcomes == {"completed": 25}
    assert r.sessions.completed == 25


def test_the_finance_generator_varies_statements_by_seed_and_session() -> None:
    from genie.simulation._run import _Inputs

    pipeline = load_pipeline(FINANCE)
    a, b = _Inputs(pipeline, 1), _Inputs(pipeline, 2)
    assert a.payload(0) == _Inputs(pipeline, 1).payload(0)
    assert a.payload(0) != a.payload(1)
    assert a.payload(0) != b.payload(0)
    statement = a.payload(3).csv  # type: ignore[attr-defined]
    assert statement.startswith("date,description,category,amount,type\n")
    assert 6 + 4 <= statement.count("\n") - 1 <= 24 + 4


@pytest.mark.parametrize(
    ("generator", "says"),
    [
        (
            "fails_at",
            "session 3: the input generator tests.simulation.generators:fails_at raised "
            "ValueError: no input for this one",
        ),
        ("not_text", "returned dict, not the input text"),
        (
            "wrong_shape",
            "session 0's input (from tests.simulation.generators:wrong_shape) does not "
            "fit the entry payload",
        ),
    ],
)
def test_a_generator_that_fails_stops_the_run_with_a_clear_error(
    generator: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENERATOR", generator)
    with pytest.raises(ConfigurationError) as caught:
        simulate(CHAIN, sessions=10, concurrency=2)
    assert says in str(caught.value)
    assert isinstance(caught.value, SimulationError | InputError)


def test_workers_that_fail_at_one_instant_raise_the_first_failure_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Sessions 2 and 3 are taken at one instant, by two workers: both failed, and the run
    # raised a group of two, which genie simulate printed as a traceback.
    monkeypatch.setenv("GENERATOR", "fails_from")
    with pytest.raises(SimulationError, match="session 2: the input generator"):
        simulate(CHAIN, sessions=10, concurrency=2)
    monkeypatch.setenv("GENERATOR", "numbered")

    def stop(progress: Progress) -> None:
        raise LookupError(f"stopped at {progress.done}")

    with pytest.raises(LookupError, match="stopped at 1"):  # the caller's own, as itself
        simulate(CHAIN, sessions=10, concurrency=2, progress=stop, every=1)


def test_a_generator_whose_signature_cannot_be_read_is_called(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loader's check of its params let inspect's ValueError out: a traceback, not a run.
    monkeypatch.setenv("GENERATOR", "no_signature")
    says = "session 0: the input generator tests.simulation.generators:no_signature raised"
    with pytest.raises(SimulationError, match=says):
        simulate(CHAIN, sessions=2)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"sessions": 0}, "sessions must be a whole number >= 1, got 0"),
        ({"concurrency": -1}, "concurrency must be a whole number >= 1"),
        ({"sessions": 2.5}, "sessions must be a whole number"),
        ({"clock": "wall"}, "clock must be 'virtual' or 'real'"),
        ({"timeout": -1.0}, "timeout must be a positive number"),
        ({"faults": ["error:nobody=0.1"]}, "pipeline 'chain' has no agent 'nobody'"),
        # Each of these ran, or failed in the run with a bare TypeError or AttributeError: a
        # seed of "7" ran as 7 and was reported as "7"; a spec given for the list of faults
        # was read character by character; a callback that is none failed after the run began.
        ({"seed": "7"}, "seed must be a whole number, got '7'"),
        ({"seed": 1.5}, "seed must be a whole number, got 1.5"),
        ({"seed": None}, "seed must be a whole number, got None"),
        # Every stream is seeded by the seed written as text, which Python refuses past 4300
        # digits: the run failed with a bare ValueError once it had begun.
        ({"seed": 10**5000}, "seed must be a whole number of at most 4300 digits, got an integer"),
        ({"timeout": "5"}, "timeout must be a positive number of seconds, got '5'"),
        ({"faults": "error:a=0.1"}, "faults must be a list of fault specs or Faults, not a str"),
        ({"faults": [5]}, "faults must be a list of fault specs or Faults, not a list holding int"),
        ({"every": -1}, "every must be a whole number >= 1, got -1"),
        ({"progress": 5}, "progress must be a callable taking a Progress, got int"),
    ],
)
def test_bad_settings(settings: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        simulate(CHAIN, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("pipeline", [None, 5, [CHAIN]])
def test_a_pipeline_that_is_none_is_refused_naming_the_argument(pipeline: object) -> None:
    with pytest.raises(SimulationError, match="pipeline must be a Pipeline, a pipeline file's"):
        simulate(pipeline, sessions=1)  # type: ignore[arg-type]


def test_memory_stays_flat_once_the_bounded_stores_have_filled() -> None:
    """The soak of ``genie bench --workloads soak`` (100,000 sessions) made short: a fan-out,
    a declared gather, retried failures and denials in every session. Once the correlator's
    memory of 4,096 closed gathers has filled (4,500 sessions), the objects the collector
    tracks do not grow: one kept per finished session would add 2,500 by 7,000 sessions."""
    report, samples = soak(7_000, 500)
    accounted(report)
    assert report.faults[0]["injected"] > 100  # the failure path ran
    assert report.agents["right"].denied > 50
    assert [s.sessions for s in samples] == list(range(500, 7_001, 500))
    grew = growth(samples, 4_500)
    assert grew["objects"] < 1_000, samples
    assert grew["rss"] < 4 * 2**20, samples
    json.dumps(report.as_json())  # the report itself is plain data
