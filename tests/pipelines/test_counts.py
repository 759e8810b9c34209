"""A run's counts add up to what it lists: its handler calls, dead letters and denials, the
same from Python and from ``genie run --json``, however many runs share the runtime.

``good/branches.yaml`` fans one request out to a branch that is handled, one that fails three
times (two retries, then a dead letter), one a rule denies and three deliveries to a mailbox of
one, two of which are shed; a declared gather bundles what came. The handler calls are counted
here, by wrapping every agent's ``handle``, not by the runtime that is being checked."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from genie import Agent, AgentOptions, Context, Message, Runtime
from genie._cli.main import LOST_WORK, main
from genie.pipeline import Pipeline, RunResult, load_pipeline

GOOD = Path(__file__).parent / "good"
BRANCHES = GOOD / "branches.yaml"
INPUT = '{"n": 1}'

Handle = Callable[[Message, Context], Awaitable[Sequence[Message]]]


class Calls:
    """Each handler call the agents of one runtime make, as (agent, returned or raised), by
    correlation."""

    def __init__(self) -> None:
        self.by_run: dict[str, list[tuple[str, str]]] = {}

    @property
    def made(self) -> list[tuple[str, str]]:
        return [call for calls in self.by_run.values() for call in calls]

    def wrap(self, agent: Agent) -> None:
        inner: Handle = agent.handle
        by_run = self.by_run

        async def handle(msg: Message, ctx: Context) -> Sequence[Message]:
            made = by_run.setdefault(msg.correlation_id, [])
            try:
                out = await inner(msg, ctx)
            except Exception:
                made.append((agent.id, "raised"))
                raise
            made.append((agent.id, "returned"))
            return out

        agent.handle = handle  # type: ignore[method-assign]

    def adapt(self, agent: Agent, options: AgentOptions) -> tuple[Agent, AgentOptions]:
        self.wrap(agent)
        return agent, options

    def of(self, agent_id: str) -> Counter[str]:
        return Counter(how for who, how in self.made if who == agent_id)


def counted_runtime(pipeline: Pipeline) -> tuple[Runtime, Calls]:
    calls = Calls()
    rt = pipeline.runtime(adapt=calls.adapt)
    for agent in rt.agents():  # the declared gathers, which ``adapt`` does not see
        if agent.id in pipeline.gathers:
            calls.wrap(agent)
    return rt, calls


def adds_up(s: Any, dead_letters: int, denials: int) -> None:
    """The rules docs/cli.md states for a run's ``stats`` (a ``RunStatistics``, or its JSON)."""
    d: dict[str, Any] = s if isinstance(s, dict) else s.as_dict()
    assert d["delivered"] == d["handled"] + d["dead_lettered"] + d["in_flight"]
    assert d["calls"] == d["handled"] + d["failed"]
    assert d["retries"] <= d["failed"]
    assert dead_letters == d["dead_lettered"] + d["shed"] + d["unrouted"]
    assert denials == d["denied"]


# What branches.yaml does, derived from the file: fan, fast, broken, sink, collector and the
# gather (fast's return, and four loss notices: broken failed, guarded denied, two sheds).
BRANCHES_STATS = {
    "published": 14,  # the request, fan's 6, 4 loss notices, return, bundle, summary
    "delivered": 10,
    "handled": 9,
    "dead_lettered": 1,
    "in_flight": 0,
    "calls": 12,
    "failed": 3,
    "retries": 2,
    "fallbacks": 0,
    "collected": 1,
    "denied": 1,
    "shed": 2,
    "unrouted": 0,
}


def check_branches(result: RunResult, calls: Calls) -> None:
    assert result.status == "partial"
    s = result.stats
    adds_up(s, len(result.dead_letters), len(result.denials))
    assert s.calls == len(calls.made)
    assert s.failed == sum(1 for _, how in calls.made if how == "raised")
    assert s.handled == sum(1 for _, how in calls.made if how == "returned")
    assert calls.of("broken") == {"raised": 3}
    assert calls.of("fan_in") == {"returned": 5}
    assert s.retries == calls.of("broken")["raised"] - 1
    kinds = Counter(letter.kind for letter in result.dead_letters)
    assert kinds == {"failed": 1, "shed": 2}
    assert [d.recipient for d in result.denials] == ["guarded"]
    assert s.as_dict() == BRANCHES_STATS


async def test_a_runs_counts_are_the_calls_and_letters_it_lists() -> None:
    pipeline = load_pipeline(BRANCHES)
    rt, calls = counted_runtime(pipeline)
    async with rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(INPUT))
    check_branches(result, calls)
    r = result.runtime  # the runtime's own counts: the collected answer is a handled delivery
    assert r.handled == result.stats.handled + r.collected + r.timers_handled


async def test_runs_sharing_a_runtime_count_only_their_own() -> None:
    """As ``genie serve`` runs every request of a pipeline in one runtime: one after another,
    then three at once. (From the second run on, broken's circuit breaker is open: its
    deliveries fail without a call.)"""
    pipeline = load_pipeline(BRANCHES)
    rt, calls = counted_runtime(pipeline)
    results: list[RunResult] = []
    async with rt:

        async def one() -> None:
            results.append(await pipeline.ask(rt, pipeline.entry_payload(INPUT)))

        await one()
        await one()
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
    assert [r.status for r in results] == ["partial"] * 5
    assert results[0].stats.as_dict() == BRANCHES_STATS
    for r in results:
        s = r.stats
        adds_up(s, len(r.dead_letters), len(r.denials))
        made = calls.by_run[r.correlation_id]
        assert s.calls == len(made)
        assert s.failed == sum(1 for _, how in made if how == "raised")
        assert {d.message.correlation_id for d in r.dead_letters} == {r.correlation_id}
        assert (s.delivered, s.dead_lettered, s.shed, s.denied, s.in_flight) == (10, 1, 2, 1, 0)
    assert results[-1].runtime.delivered > 5 * BRANCHES_STATS["delivered"]


def test_cli_json_counts_are_its_trace_and_its_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = tmp_path / "in.json"
    given.write_text(INPUT)
    # The output came (partial), with a failed branch and shed deliveries: lost work, exit 3.
    assert main(["run", str(BRANCHES), "--input", str(given), "--json", "--trace"]) == LOST_WORK
    out, err = capsys.readouterr()
    result = json.loads(out)
    events = Counter(line.split()[2] for line in err.splitlines()[1:] if line.startswith(" "))
    stats = result["stats"]
    adds_up(stats, len(result["dead_letters"]), len(result["denials"]))
    assert stats == BRANCHES_STATS
    for event in ("published", "delivered", "handled", "failed", "denied"):
        assert events[event] == stats[event], event
    assert events["dead_lettered"] == len(result["dead_letters"])


async def test_a_retried_delivery_that_falls_back_counts_each_call() -> None:
    """Three attempts of the broken agent (two retries), then its fallback answers: four
    calls, one delivery, handled once (by the fallback)."""
    pipeline = load_pipeline(GOOD / "fallback.yaml")
    rt, calls = counted_runtime(pipeline)
    async with rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None))
    assert result.status == "fallback"
    s = result.stats
    adds_up(s, len(result.dead_letters), len(result.denials))
    assert calls.made == [("broken", "raised")] * 3 + [("broken_fallback", "returned")]
    assert (s.delivered, s.handled, s.calls, s.failed) == (1, 1, 4, 3)
    assert (s.retries, s.fallbacks, s.dead_lettered, s.collected) == (2, 1, 0, 1)


async def test_a_denied_request_counts_its_denial_and_nothing_else() -> None:
    pipeline = load_pipeline(GOOD / "governed.yaml")
    rt, calls = counted_runtime(pipeline)
    async with rt:
        result = await pipeline.ask(rt, pipeline.entry_payload('{"n": 999}'))
    assert result.status == "denied"
    s = result.stats
    adds_up(s, len(result.dead_letters), len(result.denials))
    assert calls.made == []
    assert (s.published, s.delivered, s.calls, s.denied, s.collected) == (1, 0, 0, 1, 0)


async def test_a_timed_out_run_counts_what_its_cancellation_left_in_flight() -> None:
    """The gather's slow branch still sleeps at the timeout: the answer counts it in flight;
    the cancellation then ends it as a cancelled dead letter, after the answer."""
    pipeline = load_pipeline(GOOD / "gather.yaml")
    rt, calls = counted_runtime(pipeline)
    async with rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None), timeout=0.2)
        await rt.wait_idle()
        late = rt.dead_letters.for_correlation(result.correlation_id)
    assert result.status == "timed_out"
    s = result.stats
    adds_up(s, len(result.dead_letters), len(result.denials))
    assert calls.of("fast") == {"returned": 1}
    # Its part, then the cancellation's notice (in a correlation of its own): its session ends.
    assert calls.of("fan_in") == {"returned": 2}
    assert (s.delivered, s.handled, s.in_flight, s.collected) == (3, 2, 1, 0)
    assert [(d.agent_id, d.kind) for d in late if d.message.type == "serve"] == [
        ("slow", "cancelled")
    ]
