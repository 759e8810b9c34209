"""The metrics' per-agent tables (issue 19) against a plain reference: many agents, several
types per agent, durations on and around the bucket bounds, two runtimes side by side.

The reference counts what the observer hook was told in plain dicts and finds buckets by
comparison (not ``bisect``); the exposition must say exactly that, in the order it always
listed it (agents as first seen, an agent's types as met)."""

from __future__ import annotations

import math
import random

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from prometheus_client.parser import text_string_to_metric_families

from genie import (
    BaseAgent,
    ConfigurationError,
    Context,
    HandlerTimeoutError,
    Message,
    Metrics,
    Payload,
    Runtime,
    handler,
)
from genie._runtime.observe.metrics import DURATION_BUCKETS, FANOUT_BUCKETS

from ..conftest import Note, Ping, Pong

Sample = tuple[str, dict[str, str], float]


def samples(text: str, name: str) -> list[Sample]:
    """The samples of family ``name``, in the order of the text."""
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        if family.name == name
        for s in family.samples
    ]


class Reference:
    """What the exposition should say, counted the plain way."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.agents: list[str] = []  # first seen by delivered, handled or failed
        self.enqueued: dict[str, dict[str, int]] = {}
        self.ok: dict[str, dict[str, int]] = {}
        self.errors: dict[tuple[str, str, str], int] = {}
        self.durations: dict[str, list[float]] = {}

    def _seen(self, agent: str) -> None:
        if agent not in self.agents:
            self.agents.append(agent)
            self.enqueued[agent], self.ok[agent], self.durations[agent] = {}, {}, []

    def delivered(self, agent: str, type_: str) -> None:
        self._seen(agent)
        self.enqueued[agent][type_] = self.enqueued[agent].get(type_, 0) + 1

    def handled(self, agent: str, type_: str, seconds: float) -> None:
        self._seen(agent)
        self.ok[agent][type_] = self.ok[agent].get(type_, 0) + 1
        self.durations[agent].append(seconds)

    def failed(self, agent: str, type_: str, seconds: float, status: str) -> None:
        self._seen(agent)
        key = (agent, type_, status)
        self.errors[key] = self.errors.get(key, 0) + 1
        self.durations[agent].append(seconds)

    def deliveries(self) -> list[Sample]:
        return [
            ("genie_deliveries_total", {"agent": agent, "type": type_}, float(n))
            for agent in self.agents
            for type_, n in self.enqueued[agent].items()
        ]

    def handled_samples(self) -> list[Sample]:
        errors = [
            ("genie_messages_handled_total", {"agent": a, "type": t, "status": s}, float(n))
            for (a, t, s), n in self.errors.items()
        ]
        return errors + [
            ("genie_messages_handled_total", {"agent": a, "type": t, "status": "ok"}, float(n))
            for a in self.agents
            for t, n in self.ok[a].items()
        ]

    def histogram(self) -> list[Sample]:
        name = "genie_handle_duration_seconds"
        out: list[Sample] = []
        for agent in self.agents:
            seen = self.durations[agent]
            for bound in self.bounds:
                below = sum(1 for d in seen if d <= bound)
                out.append((f"{name}_bucket", {"agent": agent, "le": repr(bound)}, float(below)))
            out.append((f"{name}_bucket", {"agent": agent, "le": "+Inf"}, float(len(seen))))
            out.append((f"{name}_count", {"agent": agent}, float(len(seen))))
            total = 0.0
            for d in seen:  # in the order told, as the metrics add them
                total += d
            out.append((f"{name}_sum", {"agent": agent}, total))
        return out


def near_bounds(bounds: tuple[float, ...]) -> list[float]:
    """Every bound, the floats either side of it, zero and far past the last."""
    out = [0.0, bounds[-1] * 10]
    for bound in bounds:
        out += [math.nextafter(bound, 0.0), bound, math.nextafter(bound, math.inf)]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_agents_many_types_and_every_bound_count_as_the_reference(seed: int) -> None:
    # More than 256 agents (rows past the small-int cache), a few of them meeting several
    # types, some first met by a handled or failed call, some in a publish to many;
    # durations on every bound, a float either side of it, zero and past the last bound; the
    # hooks called as the runtime does.
    rng = random.Random(seed)
    metrics = Metrics()
    reference = Reference(DURATION_BUCKETS)
    agents = [f"a{i}" for i in range(300)]
    types = ["ping", "pong", "note", "other.type"]
    made = {"ping": Ping(), "pong": Pong(), "note": Note(text="x")}
    durations = near_bounds(DURATION_BUCKETS)
    for _ in range(6000):
        agent = rng.choice(agents)
        type_ = types[0] if rng.random() < 0.8 else rng.choice(types[:3])
        msg = Message.new(made[type_], sender="t")
        seconds = rng.choice(durations) if rng.random() < 0.7 else rng.uniform(0, 2e-5)
        what = rng.random()
        if what < 0.1:
            # a publish to several agents (a repeat among them, as a list from outside may)
            many = [*rng.sample(agents, rng.randint(1, 6)), agent]
            metrics.delivered_many(msg, many)
            for each in many:
                reference.delivered(each, type_)
        elif what < 0.45:
            metrics.delivered(msg, agent)
            reference.delivered(agent, type_)
        elif what < 0.9:
            metrics.handled(msg, agent, seconds, 1)
            reference.handled(agent, type_, seconds)
        else:
            timeout = what < 0.95
            error = HandlerTimeoutError("late") if timeout else RuntimeError("broken")
            metrics.failed(msg, agent, seconds, error)
            reference.failed(agent, type_, seconds, "timeout" if timeout else "error")
    text = metrics.text()
    assert samples(text, "genie_deliveries") == reference.deliveries()
    assert samples(text, "genie_messages_handled") == reference.handled_samples()
    assert samples(text, "genie_handle_duration_seconds") == reference.histogram()


class PublishedReference:
    """``genie_messages_published`` and ``genie_fanout_width``, counted the plain way."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.types: dict[str, int] = {}  # in the order first published
        self.widths: list[int] = []

    def published(self, type_: str, recipients: int) -> None:
        self.types[type_] = self.types.get(type_, 0) + 1
        self.widths.append(recipients)

    def samples(self) -> tuple[list[Sample], list[Sample]]:
        by_type = [
            ("genie_messages_published_total", {"type": t}, float(n)) for t, n in self.types.items()
        ]
        name = "genie_fanout_width"
        widths: list[Sample] = [
            (f"{name}_bucket", {"le": repr(float(b))}, float(sum(1 for w in self.widths if w <= b)))
            for b in self.bounds
        ]
        widths.append((f"{name}_bucket", {"le": "+Inf"}, float(len(self.widths))))
        widths.append((f"{name}_count", {}, float(len(self.widths))))
        widths.append((f"{name}_sum", {}, float(sum(self.widths))))
        return by_type, widths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_published_counts_by_type_and_width_as_the_reference(seed: int) -> None:
    # Mostly widths 0 and 1 (the replies a caller gathers, a hop), the rest on, either side of
    # and past the bounds; several types, each first met at any width; scraped as it goes, so
    # a type is never shown with a count it has not reached.
    rng = random.Random(seed)
    metrics = Metrics()
    reference = PublishedReference(tuple(float(b) for b in FANOUT_BUCKETS))
    made = [Ping(), Pong(), Note(text="x"), Odd(), Even()]
    wide = [w for b in FANOUT_BUCKETS for w in (b - 1, b, b + 1) if w > 1] + [5000]
    for i in range(4000):
        msg = Message.new(rng.choice(made), sender="t")
        roll = rng.random()
        recipients = 0 if roll < 0.5 else 1 if roll < 0.75 else rng.choice(wide)
        metrics.published(msg, recipients)
        reference.published(msg.type, recipients)
        if i % 397 == 0:
            by_type, widths = reference.samples()
            text = metrics.text()
            assert samples(text, "genie_messages_published") == by_type
            assert samples(text, "genie_fanout_width") == widths
    by_type, widths = reference.samples()
    text = metrics.text()
    assert samples(text, "genie_messages_published") == by_type
    assert samples(text, "genie_fanout_width") == widths


def test_a_duration_equal_to_a_bound_is_in_that_bound_with_buckets_of_your_own() -> None:
    bounds = (0.25, 0.5, 2.0)
    metrics = Metrics(duration_buckets=bounds)
    reference = Reference(bounds)
    msg = Message.new(Ping(), sender="t")
    # Rising, then falling: each bucket is met at both its ends right after a call in it (the
    # bucket of the last call is tried first), from below and from above.
    rising = sorted(near_bounds(bounds))
    for seconds in [*rising, *reversed(rising)]:
        metrics.handled(msg, "a", seconds, 0)
        reference.handled("a", "ping", seconds)
    got = samples(metrics.text(), "genie_handle_duration_seconds")
    assert got == reference.histogram()
    assert ("genie_handle_duration_seconds_bucket", {"agent": "a", "le": "0.25"}, 6.0) in got


def test_no_duration_buckets_counts_everything_in_inf() -> None:
    metrics = Metrics(duration_buckets=())
    msg = Message.new(Ping(), sender="t")
    for seconds in (0.0, 1e-9, 5.0):
        metrics.handled(msg, "a", seconds, 0)
    metrics.failed(msg, "a", 1.0, RuntimeError("x"))
    assert samples(metrics.text(), "genie_handle_duration_seconds") == [
        ("genie_handle_duration_seconds_bucket", {"agent": "a", "le": "+Inf"}, 4.0),
        ("genie_handle_duration_seconds_count", {"agent": "a"}, 4.0),
        ("genie_handle_duration_seconds_sum", {"agent": "a"}, 6.000000001),
    ]


@pytest.mark.parametrize("bounds", [(1.0, 0.5), (0.1, 0.1), (float("nan"),)])
def test_buckets_out_of_order_are_refused(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ConfigurationError, match="duration_buckets must rise"):
        Metrics(duration_buckets=bounds)
    with pytest.raises(ConfigurationError, match="fanout_buckets must rise"):
        Metrics(fanout_buckets=bounds)


class Worker(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        pass


async def fan_out(rt: Runtime, workers: int, pings: int, notes_to: int) -> None:
    for i in range(workers):
        rt.add(Worker(f"w{i}"), subscribe=["ping"])
    for n in range(pings):
        msg = rt.message(Ping(n=n), sender="caller")
        gather = rt.gather(msg.correlation_id, count=workers)
        await rt.publish(msg)
        assert (await gather.wait()).complete
    for i in range(notes_to):
        await rt.publish(rt.message(Note(text="x"), recipient=f"w{i}"))
    await wait_all_tasks_blocked()


def counts(text: str, name: str) -> dict[tuple[str, str], float]:
    return {(s[1]["agent"], s[1]["type"]): s[2] for s in samples(text, name)}


async def test_two_runtimes_with_the_same_agents_never_share_counts() -> None:
    # The same agent ids in both, counted at once: each exposition says its own runtime's.
    async with Runtime(metrics=True) as one, Runtime(metrics=True) as two:
        async with anyio.create_task_group() as tg:
            tg.start_soon(fan_out, one, 300, 3, 2)
            tg.start_soon(fan_out, two, 280, 5, 0)
        assert one.metrics is not None
        assert two.metrics is not None
        first, second = one.metrics.text(), two.metrics.text()
    delivered = counts(first, "genie_deliveries")
    assert delivered == {
        **{(f"w{i}", "ping"): 3.0 for i in range(300)},
        ("w0", "note"): 1.0,
        ("w1", "note"): 1.0,
    }
    assert counts(first, "genie_messages_handled") == delivered
    assert counts(second, "genie_deliveries") == {(f"w{i}", "ping"): 5.0 for i in range(280)}
    assert counts(second, "genie_messages_handled") == counts(second, "genie_deliveries")
    durations = samples(second, "genie_handle_duration_seconds")
    assert {s[1]["agent"]: s[2] for s in durations if s[0].endswith("_count")} == {
        f"w{i}": 5.0 for i in range(280)
    }


class Odd(Payload):
    message_type = "odd"


class Even(Payload):
    message_type = "even"


def test_an_agent_met_only_by_a_failure_is_listed_with_its_duration() -> None:
    metrics = Metrics()
    metrics.failed(Message.new(Odd(), sender="t"), "x", 0.2, RuntimeError("no"))
    assert samples(metrics.text(), "genie_deliveries") == []
    histogram = samples(metrics.text(), "genie_handle_duration_seconds")
    assert histogram[-2:] == [
        ("genie_handle_duration_seconds_count", {"agent": "x"}, 1.0),
        ("genie_handle_duration_seconds_sum", {"agent": "x"}, 0.2),
    ]
