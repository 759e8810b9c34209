"""The simulation helpers: seeded, on the runtime clock, accepting any message type."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing
from genie_agents.support import Delay, Echo, FanOut, Flaky, FlakyError, Sink

from genie import AgentOptions, Message, MessageTypes, Runtime, TestContext
from genie.pipeline import load_pipeline
from genie.simulation import Latency

from ..conftest import Ping, Pong

SIM = Path(__file__).resolve().parents[1] / "pipelines" / "good" / "sim.yaml"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.mark.parametrize("distribution", ["fixed", "uniform", "exponential", "lognormal"])
def test_latency_mean(distribution: Any) -> None:
    latency = Latency(distribution, 0.2, random.Random(1), sigma=0.5)
    draws = [latency.draw() for _ in range(20_000)]
    assert min(draws) >= 0
    assert statistics.fmean(draws) == pytest.approx(0.2, rel=0.03)


def test_latency_bounds_and_errors() -> None:
    uniform = Latency("uniform", 1.0, random.Random(1), low=0.5, high=0.6)
    assert all(0.5 <= uniform.draw() <= 0.6 for _ in range(1000))
    with pytest.raises(ValueError, match="unknown distribution"):
        Latency("pareto", 1.0, random.Random(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mean must be >= 0"):
        Latency("fixed", -1.0, random.Random(1))
    with pytest.raises(ValueError, match="low <= high"):
        Latency("uniform", 1.0, random.Random(1), low=2, high=1)


def test_seeded_per_agent() -> None:
    def draws(agent_id: str, seed: int) -> list[float]:
        d = Delay(agent_id, distribution="exponential", mean=1.0, seed=seed)
        return [d.latency.draw() for _ in range(5)]

    assert draws("a", 1) == draws("a", 1)
    assert draws("a", 1) != draws("b", 1)
    assert draws("a", 1) != draws("a", 2)


async def test_echo_and_sink_in_a_test_context() -> None:
    msg = Message.new(Ping(n=3), sender="user")
    (out,) = await Echo("echo").handle(msg, TestContext("echo", msg))
    assert (out.recipient, out.payload) == ("user", Ping(n=3))
    sink = Sink("sink", keep=2)
    for n in range(3):
        m = Message.new(Pong(n=n), sender="x")
        assert await sink.handle(m, TestContext("sink", m)) == ()
    assert [m.payload for m in sink.received] == [Pong(n=1), Pong(n=2)]
    assert sink.handled == 3


async def test_delay_waits_on_the_runtime_clock() -> None:
    delay = Delay("delay", distribution="fixed", mean=90)
    async with Runtime([delay], types=MessageTypes([Ping])) as rt:
        start = anyio.current_time()
        result = await rt.ask(rt.message(Ping(n=1), recipient="delay"))
        assert result.message.payload == Ping(n=1)
        assert anyio.current_time() - start == pytest.approx(90)


async def test_flaky_fails_exactly_the_seeded_fraction() -> None:
    flaky = Flaky("flaky", rate=0.3, seed=5)
    replay = random.Random("5:flaky")
    expected = sum(replay.random() < 0.3 for _ in range(1000))
    rt = Runtime(types=MessageTypes([Ping]))
    rt.add(flaky, options=AgentOptions(breaker=None))  # every message reaches the agent
    async with rt:
        for n in range(1000):
            await rt.publish(rt.message(Ping(n=n), recipient="flaky"))
    assert flaky.failures == expected
    assert flaky.handled == 1000 - expected
    letters = [d for d in rt.dead_letters if d.kind == "failed"]
    assert len(letters) == expected
    assert all(d.error_type == FlakyError.__name__ for d in letters)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate must be between 0 and 1"):
        Flaky("f", rate=1.5)
    with pytest.raises(ValueError, match="targets must name at least one agent"):
        FanOut("f", targets=[])
    with pytest.raises(ValueError, match="keep must be >= 0"):
        Sink("s", keep=-1)


async def test_a_pipeline_of_helpers_is_checked_and_runs() -> None:
    pipeline = load_pipeline(SIM)
    edges = {(e.source, e.type, e.target) for e in pipeline.graph.edges()}
    assert ("fanout", "serve", "sink") in edges
    assert ("flaky", "return", "user") in edges
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload('{"n": 1}'))
    assert result.ok
    assert result.output is not None
    assert result.output.sender == "server"  # the first message of the output type ends it
