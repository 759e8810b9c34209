"""Fault specs: what parses, what does not (each with a message naming the problem), and how
faults resolve against a pipeline's agents."""

from __future__ import annotations

import math
import random
import re

import pytest

from genie.simulation import Fault, FaultError, parse_fault
from genie.simulation._faults import resolve, stream
from genie.simulation._histogram import Histogram


def test_each_kind_parses() -> None:
    assert parse_fault("error:recommender=0.1") == Fault(
        "error:recommender=0.1", "error", "recommender", rate=0.1
    )
    assert parse_fault("deny:*=0.05").rate == 0.05
    cap = parse_fault("capacity:reporter=4,overflow=shed")
    assert (cap.capacity, cap.overflow) == (4, "shed")
    assert parse_fault("capacity:reporter=4").overflow is None
    lat = parse_fault("latency:*=lognormal,mean=200ms,sigma=0.8")
    assert (lat.agent, lat.distribution, lat.mean, lat.sigma) == ("*", "lognormal", 0.2, 0.8)
    fixed = parse_fault("latency:a=50ms")
    assert (fixed.distribution, fixed.mean) == ("fixed", 0.05)
    uniform = parse_fault("latency:a=uniform,low=10ms,high=30ms")
    assert (uniform.low, uniform.high) == (0.01, 0.03)
    assert uniform.mean == pytest.approx(0.02)
    assert parse_fault("latency:a=exponential,mean=2").mean == 2.0
    answer = parse_fault("answer:claim_adjudicator=exponential,mean=2h,approve=0.8")
    assert (answer.kind, answer.distribution, answer.mean, answer.rate) == (
        "answer",
        "exponential",
        7200.0,
        0.8,
    )
    assert parse_fault("answer:*=30m").rate == 1.0  # approves, unless told otherwise


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("recommender", "does not parse: expected KIND:AGENT=VALUE"),
        ("error:recommender", "does not parse"),
        ("error:=0.1", "does not parse"),
        ("eror:recommender=0.1", "unknown kind 'eror' (did you mean 'error'?)"),
        ("error:recommender=1.5", "1.5 is not between 0 and 1"),
        ("error:recommender=often", "rate 'often' is not a number"),
        ("deny:x=nan", "is not a finite number"),
        ("error:x=0.1,burst=3", "unknown option 'burst'"),
        ("latency:x=lognorm,mean=1s", "unknown distribution 'lognorm' (did you mean 'lognormal'?)"),
        ("latency:x=lognormal", "lognormal latency needs mean"),
        ("latency:x=uniform", "uniform latency needs mean (or low and high)"),
        ("latency:x=uniform,mean=1s,low=0s,high=1s", "either mean or low and high"),
        ("latency:x=fixed,mean=soon", "'soon' is not a duration"),
        ("latency:x=lognormal,mean=1s,sigma=0", "sigma > 0"),
        ("latency:x=lognormal,mean=1s,sigma=1e200", "sigma 1e+200 is too large"),
        ("latency:x=uniform,low=2s,high=1s", "low <= high"),
        ("latency:x=fixed,mean", "'mean' is not key=value"),
        ("capacity:x=0", "capacity '0' is not a whole number >= 1"),
        ("answer:x=1h,approve=2", "approve 2 is not between 0 and 1"),
        ("answer:x=1h,approve=yes", "approve 'yes' is not a number"),
        ("answer:x=soon", "unknown distribution 'soon'"),
        ("capacity:x=4,overflow=drop", "overflow 'drop' is not shed or overdraft"),
        # Each ran, the option silently ignored.
        ("latency:x=50ms,mean=1s", "the mean is given twice, as 50ms and as mean=1s"),
        ("latency:x=fixed,mean=1s,sigma=2", "sigma is for lognormal latency, not fixed"),
        ("latency:x=exponential,mean=1s,low=2s", "low is for uniform latency, not exponential"),
        ("answer:x=lognormal,mean=1h,high=2h", "high is for uniform latency, not lognormal"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(FaultError) as caught:
        parse_fault(spec)
    assert says in str(caught.value)
    assert repr(spec) in str(caught.value)


AGENTS = ["ingestor", "analyzer", "recommender"]


def test_an_agent_of_its_own_wins_over_star() -> None:
    plan = resolve(
        ["latency:*=1s", "latency:analyzer=2s", "error:recommender=0.5"], AGENTS, [], "p"
    )
    assert {a: plan["latency", a].mean for a in AGENTS} == {
        "ingestor": 1.0,
        "analyzer": 2.0,
        "recommender": 1.0,
    }
    assert [a for k, a in plan if k == "error"] == ["recommender"]


def test_unknown_agents_gathers_and_repeats_are_errors() -> None:
    with pytest.raises(FaultError, match=r"pipeline 'p' has no agent 'recomender' .*'recommender'"):
        resolve(["error:recomender=0.1"], AGENTS, [], "p")
    with pytest.raises(FaultError, match="'fan_in' is a gather; faults apply to agents"):
        resolve(["error:fan_in=0.1"], AGENTS, ["fan_in"], "p")
    with pytest.raises(FaultError, match=re.escape("already given by 'error:analyzer=0.1'")):
        resolve(["error:analyzer=0.1", "error:analyzer=0.2"], AGENTS, [], "p")


def test_a_workflow_takes_answer_faults_only() -> None:
    # A workflow asks for approvals as an agent does; it has no handler to slow or fail.
    plan = resolve(["answer:*=1h", "error:*=0.1"], AGENTS, [], "p", ["loan_flow"])
    assert [a for k, a in plan if k == "answer"] == [*AGENTS, "loan_flow"]
    assert [a for k, a in plan if k == "error"] == AGENTS
    assert plan["answer", "loan_flow"].mean == 3600.0
    with pytest.raises(FaultError, match="'loan_flow' is a workflow; of the faults only answer"):
        resolve(["latency:loan_flow=1s"], AGENTS, [], "p", ["loan_flow"])
    with pytest.raises(FaultError, match=r"no agent 'loan_flw' \(did you mean 'loan_flow'\?\)"):
        resolve(["answer:loan_flw=1h"], AGENTS, [], "p", ["loan_flow"])


def test_streams_are_per_seed_kind_and_agent() -> None:
    def draws(seed: int, kind: str, agent: str) -> list[float]:
        rng = stream(seed, kind, agent)
        return [rng.random() for _ in range(3)]

    first = draws(1, "error", "a")
    documented = random.Random("1:error:a")  # docs/simulation.md gives this formula
    assert first == [documented.random() for _ in range(3)]
    assert first != draws(2, "error", "a")
    assert first != draws(1, "deny", "a")
    assert first != draws(1, "error", "b")


def test_histogram_quantiles_exact_then_within_one_percent() -> None:
    rng = random.Random(5)
    values = [rng.lognormvariate(0, 1) for _ in range(50_000)]
    small, large = Histogram(), Histogram()
    for v in values[:1000]:
        small.add(v)
    for v in values:
        large.add(v)
    ordered = sorted(values[:1000])
    assert small.quantile(0.5) == ordered[499]
    assert small.quantile(0.99) == ordered[989]
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = ordered[int(q * len(values)) - 1]
        assert large.quantile(q) == pytest.approx(exact, rel=0.011)
    assert (large.min, large.max, large.count) == (ordered[0], ordered[-1], 50_000)
    assert large.mean == pytest.approx(sum(values) / len(values))


def test_histogram_of_zeros_and_of_nothing() -> None:
    empty = Histogram()
    assert empty.summary()["p99"] == 0.0
    assert empty.summary()["min"] == 0.0
    zeros = Histogram()
    for _ in range(20_000):
        zeros.add(0.0)
    zeros.add(2.0)
    assert zeros.quantile(0.5) == 0.0
    assert zeros.quantile(1.0) == 2.0
    assert zeros.bins()[0] == (0.0, 1e-9, 20_000)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        # An unknown kind was ignored, a rate of 5 ran; the others failed inside the run, with
        # a bare ValueError or TypeError or the mailbox's own words.
        (Fault("f", "bogus", "a"), "fault 'f': unknown kind 'bogus'"),  # type: ignore[arg-type]
        (Fault("f", "error", "a", rate=5), "rate must be a number between 0 and 1, not 5"),
        (Fault("f", "deny", "a", rate=math.nan), "rate must be a number between 0 and 1"),
        (Fault("f", "error", ""), "agent must be an agent's id or '\\*', not ''"),
        (Fault("f", "latency", "a", mean=-1), "mean must be a finite number of seconds"),
        (Fault("f", "latency", "a", mean="1s"), "mean must be .*, not '1s'"),  # type: ignore[arg-type]
        (Fault("f", "latency", "a", distribution="bogus", mean=1), "unknown distribution"),  # type: ignore[arg-type]
        (Fault("f", "answer", "a", rate=1, sigma=0), "sigma > 0"),
        (Fault("f", "capacity", "a"), "capacity must be a whole number >= 1, not 0"),
        (Fault("f", "capacity", "a", capacity=2, overflow="drop"), "overflow must be"),  # type: ignore[arg-type]
    ],
)
def test_a_fault_built_in_code_is_checked_as_a_spec_is(fault: Fault, says: str) -> None:
    with pytest.raises(FaultError, match=says):
        resolve([fault], ["a"], [], "p")
