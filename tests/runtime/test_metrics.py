"""Prometheus metrics: scraped over HTTP from a real run and checked against its accounting."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import trio.testing
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from genie import (
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    Decision,
    GatherResult,
    InvalidArgumentError,
    Limits,
    MemoryDeniedError,
    Message,
    Metrics,
    Observer,
    Payload,
    RetryPolicy,
    Runtime,
    RuntimeStatistics,
    ToolDeniedError,
    ToolOutput,
    ToolSpec,
    handler,
)
from genie._runtime.observe.observer import Observers, deliveries_listener, gather_listener

from ..conftest import DenyTo, Echo, Failing, Note, Ping, PolicyFn, Pong, Recorder

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def check_accounting(samples: Samples, stats: RuntimeStatistics) -> None:
    """The exposition says exactly what the runtime's own accounting says."""
    assert total(samples, "genie_messages_published_total") == stats.published
    assert total(samples, "genie_deliveries_total") == stats.delivered
    assert total(samples, "genie_messages_handled_total", status="ok") == stats.handled
    assert total(samples, "genie_deliveries_denied_total") == stats.denied
    assert (
        total(samples, "genie_dead_letters_total", reason="failed")
        + total(samples, "genie_dead_letters_total", reason="cancelled")
        == stats.dead_lettered
    )
    assert total(samples, "genie_dead_letters_total", reason="shed") == stats.shed
    assert total(samples, "genie_dead_letters_total", reason="unrouted") == stats.unrouted
    assert total(samples, "genie_in_flight") == stats.in_flight
    assert total(samples, "genie_retries_total") == stats.retries
    assert total(samples, "genie_fallbacks_total") == stats.fallbacks
    assert total(samples, "genie_fanout_width_count") == stats.published
    calls = total(samples, "genie_messages_handled_total")
    assert total(samples, "genie_handle_duration_seconds_count") == calls


class Fan(BaseAgent):
    """Sends every Ping on to the workers (by type), one per worker."""

    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> tuple[Message, ...]:
        return tuple(ctx.emit(Pong(n=payload.n), recipient=w) for w in ("w1", "w2", "blocked"))


class Sink(BaseAgent):
    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        await checkpoint()


def busy_runtime(gate: anyio.Event, registry: CollectorRegistry | None = None) -> Runtime:
    """Every outcome at once: handled, denied, retried, fell back, failed, parked on a gate."""
    rt = Runtime(
        policies=[DenyTo("blocked", name="no-blocked")],
        metrics=Metrics(registry) if registry is not None else True,
    )
    rt.add(Fan("fan"), subscribe=["ping"])
    rt.add(Sink("w1"))
    rt.add(Sink("w2"))
    rt.add(Sink("blocked"))
    rt.add(Recorder("gated", gate), subscribe=["ping"])
    rt.add(Echo("echo"))
    retry = RetryPolicy(attempts=2, backoff=0.0)
    rt.add(Failing("flaky", failures=1), options=AgentOptions(retry=retry))
    rt.add(Failing("broken"), options=AgentOptions(retry=RetryPolicy(attempts=1)))
    rt.add(Failing("rescued"), options=AgentOptions(fallback="echo"))
    return rt


async def test_scraped_over_http_during_a_run_matches_the_accounting() -> None:
    gate = anyio.Event()
    rt = busy_runtime(gate)
    assert rt.metrics is not None
    async with rt, httpx.AsyncClient() as client:
        with rt.metrics.serve(port=0) as server:
            for n in range(5):
                await rt.publish(rt.message(Ping(n=n)))
            for target in ("flaky", "broken", "rescued"):
                await rt.publish(rt.message(Ping(n=9), recipient=target))
            await wait_all_tasks_blocked()

            during = parse((await client.get(server.url)).text)
            stats = rt.statistics()
            assert stats.in_flight == 8  # every ping reaches the gate: one running, seven queued
            check_accounting(during, stats)
            assert total(during, "genie_mailbox_depth", agent="gated") == 7
            assert total(during, "genie_handlers_active", agent="gated") == 1
            assert total(during, "genie_mailbox_capacity", agent="gated") == 1024

            gate.set()
            await wait_all_tasks_blocked()
            after = parse((await client.get(server.url)).text)
        check_accounting(after, rt.statistics())

    # What each part of the run did, by label.
    assert total(after, "genie_messages_published_total", type="ping") == 8
    assert total(after, "genie_deliveries_total", agent="blocked", type="pong") == 8
    assert total(after, "genie_deliveries_denied_total", agent="blocked", policy="no-blocked") == 8
    assert total(after, "genie_messages_handled_total", agent="flaky", status="error") == 1
    assert total(after, "genie_messages_handled_total", agent="flaky", status="ok") == 1
    assert total(after, "genie_messages_handled_total", agent="broken", status="error") == 1
    assert total(after, "genie_handler_exceptions_total", exception="RuntimeError") == 3
    assert total(after, "genie_dead_letters_total", agent="broken", reason="failed") == 1
    assert total(after, "genie_fallbacks_total") == 1
    assert total(after, "genie_messages_handled_total", agent="echo", status="ok") == 1
    # Fan-out: the 5 broadcast pings reach fan and gated, the 3 addressed ones their target
    # too; fan's 24 pongs go to one agent each; the 2 replies to 'user' reach no agent.
    assert total(after, "genie_fanout_width_bucket", le="0.0") == 2
    assert total(after, "genie_fanout_width_bucket", le="1.0") == 2 + 24
    assert total(after, "genie_fanout_width_bucket", le="2.0") == 2 + 24 + 5
    assert total(after, "genie_fanout_width_bucket", le="5.0") == 2 + 24 + 5 + 3
    assert total(after, "genie_fanout_width_sum") == 24 + 5 * 2 + 3 * 3
    # The policy allowed everything but the eight deliveries to 'blocked'.
    assert total(after, "genie_policy_decisions_total", decision="deny") == 8
    allowed = total(after, "genie_policy_decisions_total", decision="allow")
    assert allowed == rt.statistics().delivered - 8 + 1  # + the fallback's admission


async def test_policy_decisions_follow_the_order_of_the_policies() -> None:
    first = DenyTo("a", name="first")
    second = DenyTo("a", "b", name="second")
    third = DenyTo("c", name="third")
    async with Runtime(policies=[first, second, third], metrics=True) as rt:
        for agent in ("a", "b", "c", "d"):
            rt.add(Recorder(agent), subscribe=["ping"])
        for _ in range(3):
            await rt.publish(rt.message(Ping()))
        decisions = rt.statistics().policies.decisions()
    # a: denied by first; b: passed first, denied by second; c: passed two, denied by third;
    # d: allowed by all three. Three pings each.
    assert decisions == {
        ("first", "allow"): 9,
        ("first", "deny"): 3,
        ("second", "allow"): 6,
        ("second", "deny"): 3,
        ("third", "allow"): 3,
        ("third", "deny"): 3,
    }


class _Session:
    """A tool server's session in this process: every call answers "ok"."""

    async def list_tools(self) -> list[ToolSpec]:
        return [ToolSpec(name="t", description="", input_schema={"type": "object"})]

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        return ToolOutput(text="ok")


class _Server:
    timeout = 5.0

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[_Session]:
        yield _Session()


class Keeper(BaseAgent):
    """Calls a tool twice, writes two entries (the policy denies the one keyed ``secret``)
    and reads one back."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        for _ in range(2):
            await ctx.tool("s").call("t", {})
        kv = ctx.memory().kv
        await kv.set("n", "a", "v")
        with pytest.raises(MemoryDeniedError):
            await kv.set("n", "secret", "v")
        assert await kv.get("n", "a") == "v"


def _no_secret(msg: Message, recipient: str) -> Decision:
    if msg.type == "memory_write" and getattr(msg.payload, "key", "") == "n/secret":
        return Decision.deny("no-secret", "not kept")
    return Decision.ALLOW


async def test_policy_decisions_count_what_the_policies_judge_once() -> None:
    """A delivery, each tool call and its result, each memory write and read: decided once
    each, each counted (model text, judged again at each release as it grows, is not)."""
    policy = PolicyFn("no-secret", _no_secret)
    async with Runtime([Keeper("k")], tools={"s": _Server()}, policies=[policy]) as rt:
        await rt.publish(rt.message(Ping(), recipient="k"))
        await rt.wait_idle()
        decisions = rt.statistics().policies.decisions()
    assert not list(rt.dead_letters)  # the handler saw each allowed and denied as it says
    # 1 delivery, 2 tool calls, 2 results, 1 write and 1 read allowed; 1 write denied.
    assert decisions == {("no-secret", "allow"): 7, ("no-secret", "deny"): 1}


class Loop(BaseAgent):
    produces = (Ping,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Ping(n=payload.n + 1), recipient=self.id)


async def test_limits_fired_are_counted_by_limit() -> None:
    async with Runtime(limits=Limits(max_hops=5), metrics=True) as rt:
        rt.add(Loop("loop"))
        await rt.publish(rt.message(Ping(), recipient="loop"))
        await wait_all_tasks_blocked()
        assert rt.metrics is not None
        samples = parse(rt.metrics.text())
    assert total(samples, "genie_limits_fired_total", limit="hops") == 1
    assert total(samples, "genie_limits_fired_total", limit="budget") == 0
    assert total(samples, "genie_deliveries_denied_total", policy="limit:hops") == 1


class Caller(BaseAgent):
    """Calls a tool three times, each refusal noted, then replies."""

    produces = (Pong,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.refused: list[str] = []

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        for _ in range(3):
            try:
                await ctx.tool("s").call("t", {})
            except ToolDeniedError as exc:
                self.refused.append(exc.policy)
        return ctx.reply(Pong())


async def test_a_tool_call_the_budget_refuses_is_a_limit_fired_not_a_delivery_denied() -> None:
    """The kill switch at work on a tool call: counted in genie_limits_fired, as a refused
    delivery is, but no delivery, so not in genie_deliveries_denied_total."""
    caller = Caller("c")
    limits = Limits(correlation_budget=2)  # the request, one call; then nothing more
    async with Runtime([caller], tools={"s": _Server()}, limits=limits, metrics=True) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="c"), timeout=10)
        assert rt.metrics is not None
        text = rt.metrics.text()
        stats = rt.statistics()
    samples = parse(text)
    assert caller.refused == ["limit:budget", "limit:budget"]
    assert [m.policy for m in result.missing] == ["limit:budget"]  # the reply, a delivery
    assert total(samples, "genie_deliveries_denied_total") == stats.denied == 1
    assert total(samples, "genie_limits_fired_total", limit="budget") == 2 + 1
    [helped] = [line for line in text.splitlines() if line.startswith("# HELP genie_limits")]
    assert "Deliveries and tool calls stopped by the hop limit or the correlation" in helped


class Slow(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await anyio.sleep(payload.n)
        return ctx.reply(Pong(n=payload.n))


@pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]
)
async def test_durations_use_the_runtime_clock_and_timeouts_have_their_status() -> None:
    async with Runtime(metrics=True) as rt:
        rt.add(Slow("slow"), options=AgentOptions(deadline=5.0))
        fast = await rt.ask(rt.message(Ping(n=2), recipient="slow"))
        slow = await rt.ask(rt.message(Ping(n=7), recipient="slow"))
        assert rt.metrics is not None
        samples = parse(rt.metrics.text())
    assert fast.complete
    assert slow.missing[0].kind == "failed"
    assert total(samples, "genie_messages_handled_total", agent="slow", status="ok") == 1
    assert total(samples, "genie_messages_handled_total", agent="slow", status="timeout") == 1
    assert total(samples, "genie_handler_exceptions_total", exception="HandlerTimeoutError") == 1
    # Two and five seconds of virtual time: the histogram reads the runtime clock.
    assert total(samples, "genie_handle_duration_seconds_bucket", le="1.0") == 0
    assert total(samples, "genie_handle_duration_seconds_bucket", le="10.0") == 2
    assert total(samples, "genie_handle_duration_seconds_sum") == pytest.approx(7.0, abs=0.01)


class SlowThenFails(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await anyio.sleep(payload.n)
        if payload.n == 3:
            raise RuntimeError("three seconds, then a failure")
        return ctx.reply(Pong(n=payload.n))


@pytest.mark.parametrize(
    "anyio_backend", [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]
)
async def test_durations_without_a_deadline_are_timed_once_per_call() -> None:
    # No deadline: the runtime's direct path times the handler (issue 19), as _attempt does.
    async with Runtime(metrics=True) as rt:
        rt.add(SlowThenFails("slow"), options=AgentOptions(retry=RetryPolicy(attempts=1)))
        ok = await rt.ask(rt.message(Ping(n=2), recipient="slow"))
        failed = await rt.ask(rt.message(Ping(n=3), recipient="slow"))
        assert rt.metrics is not None
        samples = parse(rt.metrics.text())
    assert ok.complete
    assert failed.missing[0].kind == "failed"
    assert total(samples, "genie_messages_handled_total", agent="slow", status="ok") == 1
    assert total(samples, "genie_messages_handled_total", agent="slow", status="error") == 1
    assert total(samples, "genie_handler_exceptions_total", exception="RuntimeError") == 1
    assert total(samples, "genie_handle_duration_seconds_count") == 2
    assert total(samples, "genie_handle_duration_seconds_bucket", le="1.0") == 0
    assert total(samples, "genie_handle_duration_seconds_bucket", le="5.0") == 2
    assert total(samples, "genie_handle_duration_seconds_sum") == pytest.approx(5.0, abs=0.01)


async def test_gathers_and_correlations_are_counted() -> None:
    async with Runtime(metrics=True) as rt:
        rt.add(Echo("echo"))
        rt.add(Recorder("silent"))
        ok = await rt.ask(rt.message(Ping(), recipient="echo"))
        late = await rt.ask(rt.message(Ping(), recipient="silent"))
        assert rt.metrics is not None
        samples = parse(rt.metrics.text())
    assert ok.status == "complete"
    assert late.status == "partial"
    assert total(samples, "genie_gathers_total", status="complete") == 1
    assert total(samples, "genie_messages_published_total", type="pong") == 1
    assert total(samples, "genie_fanout_width_bucket", le="0.0") == 1  # the reply: to no agent
    assert total(samples, "genie_gathers_total", status="partial") == 1
    assert total(samples, "genie_gathers_pending") == 0
    assert total(samples, "genie_correlations_active") == 0


async def test_two_runtimes_never_see_each_other() -> None:
    async with Runtime(metrics=True) as one, Runtime(metrics=True) as two:
        one.add(Echo("echo"))
        await one.ask(one.message(Ping(), recipient="echo"))
        assert one.metrics is not None
        assert two.metrics is not None
        assert one.metrics.registry is not two.metrics.registry
        assert total(parse(one.metrics.text()), "genie_messages_published_total") == 2
        assert total(parse(two.metrics.text()), "genie_messages_published_total") == 0


async def test_a_registry_you_pass_gets_the_metrics() -> None:
    registry = CollectorRegistry()
    rt = Runtime(metrics=Metrics(registry))
    async with rt:
        rt.add(Echo("echo"))
        await rt.ask(rt.message(Ping(), recipient="echo"))
        published = registry.get_sample_value("genie_messages_published_total", {"type": "ping"})
    assert published == 1
    # Closed, the runtime's metrics stay in the registry until other metrics take it.
    assert registry.get_sample_value("genie_messages_published_total", {"type": "ping"}) == 1


def test_metrics_belong_to_one_runtime() -> None:
    metrics = Metrics()
    Runtime(metrics=metrics)
    with pytest.raises(ConfigurationError, match="already belong to another runtime"):
        Runtime(metrics=metrics)


async def test_metrics_given_to_a_runtime_refused_go_to_the_one_made_after_it() -> None:
    """A runtime refused before it ran (two agents of one id, a fallback nobody hosts) counted
    nothing: the metrics it was given are the next runtime's, as its store is."""
    metrics = Metrics()
    with pytest.raises(ConfigurationError):
        Runtime([Echo("echo"), Echo("echo")], metrics=metrics)
    refused = Runtime(metrics=metrics)
    refused.add(Echo("echo"), options=AgentOptions(fallback="nobody"))
    with pytest.raises(ConfigurationError, match="fallback 'nobody'"):
        await refused.__aenter__()
    async with Runtime([Echo("echo")], metrics=metrics) as rt:
        await rt.ask(rt.message(Ping(), recipient="echo"))
    assert total(parse(metrics.text()), "genie_messages_handled_total", agent="echo") == 1
    with pytest.raises(ConfigurationError, match="already belong to another runtime"):
        Runtime(metrics=metrics)  # a runtime refused for that lets go of nothing


def test_metrics_are_off_unless_asked_and_cost_no_import() -> None:
    assert Runtime().metrics is None
    code = "import genie, sys; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigurationError, match=rf"cannot serve metrics on 127.0.0.1:{port}"):
            Metrics().serve(port)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"port": 70_000}, "port must be a whole number, 0 to 65535, not 70000"),
        ({"port": -1}, "port must be a whole number, 0 to 65535, not -1"),
        ({"port": "9464"}, "port must be a whole number, 0 to 65535, not '9464'"),
        ({"host": 5}, "host must be a str"),
    ],
)
def test_a_port_or_host_that_is_none_is_refused_naming_it(
    given: dict[str, object], named: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        Metrics().serve(**given)  # type: ignore[arg-type]


async def test_serve_from_python_in_one_call() -> None:
    rt = Runtime(metrics=True)
    assert rt.metrics is not None
    with rt.metrics.serve() as server:
        async with httpx.AsyncClient() as client:
            response = await client.get(server.url)
    assert response.status_code == 200
    assert "genie_in_flight 0.0" in response.text


class Both(BaseAgent):
    """Takes pings and pongs, and notes; emits nothing."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        pass

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        pass

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        pass


async def test_an_agent_of_several_types_counts_each_in_the_order_met() -> None:
    # The first type an agent meets is counted apart from the others (the hot path's slots):
    # each type's count must still be exact, and the samples listed in the order met, also
    # when an agent's first handled type is not its first enqueued one (a fallback's).
    rt = Runtime(metrics=True)
    rt.add(Both("both"))
    rt.add(Failing("rescued"), options=AgentOptions(fallback="both"))
    sent = ["note", "ping", "pong", "ping", "note", "ping"]
    made: dict[str, Payload] = {"note": Note(text="x"), "ping": Ping(n=1), "pong": Pong(n=1)}
    async with rt:
        # ``both`` handles a ping first, by fallback, before anything is enqueued for it.
        await rt.publish(rt.message(Ping(n=0), sender="t", recipient="rescued"))
        await rt.wait_idle()
        for kind in sent:
            await rt.publish(rt.message(made[kind], sender="t", recipient="both"))
        await rt.wait_idle()
        assert rt.metrics is not None
        text = rt.metrics.text()
    samples = parse(text)
    assert total(samples, "genie_deliveries_total", agent="both", type="note") == 2
    assert total(samples, "genie_deliveries_total", agent="both", type="ping") == 3
    assert total(samples, "genie_deliveries_total", agent="both", type="pong") == 1
    ok = {"status": "ok", "agent": "both"}
    assert total(samples, "genie_messages_handled_total", type="ping", **ok) == 4
    assert total(samples, "genie_messages_handled_total", type="note", **ok) == 2
    assert total(samples, "genie_messages_handled_total", type="pong", **ok) == 1
    assert total(samples, "genie_handle_duration_seconds_count", agent="both") == 7
    check_accounting(samples, rt.statistics())

    def order(prefix: str) -> list[str]:
        lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
        return [ln.split('type="')[1].split('"')[0] for ln in lines]

    assert order('genie_deliveries_total{agent="both"') == ["note", "ping", "pong"]
    assert order('genie_messages_handled_total{agent="both"') == ["ping", "note", "pong"]


class Heard(Observer):
    """Writes down, in order, the replies published and the gathers finished."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def published(self, msg: Message, recipients: int) -> None:
        self.events.append(f"published {msg.type}")

    def gathered(self, result: GatherResult) -> None:
        self.events.append(f"gathered {result.status}")


class HeardMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.gathers: list[str] = []

    def gathered(self, result: GatherResult) -> None:
        self.gathers.append(result.status)


def test_the_runtime_listens_for_gathers_only_when_an_observer_does() -> None:
    # Metrics count no gathers: the runtime must not hold gathers back for them (issue 19),
    # and must for anyone who listens, alone, beside metrics, or set on the instance.
    assert gather_listener(None) is None
    assert gather_listener(Metrics()) is None
    assert gather_listener(Observers([Metrics(), Observer()])) is None
    assert gather_listener(Heard()) is not None
    assert gather_listener(HeardMetrics()) is not None
    assert gather_listener(Observers([Metrics(), Heard()])) is not None
    patched = Observer()
    patched.gathered = lambda result: None  # type: ignore[method-assign]
    assert gather_listener(patched) is not None
    # The runtime wires it so (a private attribute: what decides the gathered reply's path).
    assert Runtime(metrics=True)._correlator.on_gathered is None
    assert Runtime(metrics=HeardMetrics())._correlator.on_gathered is not None


async def test_gathers_are_heard_beside_metrics_after_the_reply_that_ends_them() -> None:
    heard = Heard()
    alone = HeardMetrics()
    async with Runtime(metrics=True) as rt, Runtime(metrics=alone) as other:
        rt.add_observer(heard)
        for runtime in (rt, other):
            runtime.add(Echo("echo"))
            result = await runtime.ask(runtime.message(Ping(), recipient="echo"))
            assert result.complete
        assert rt.metrics is not None
        samples = parse(rt.metrics.text())
    assert heard.events == ["published ping", "published pong", "gathered complete"]
    assert alone.gathers == ["complete"]
    assert total(samples, "genie_gathers_total", status="complete") == 1
    assert total(samples, "genie_messages_published_total", type="pong") == 1
    assert total(samples, "genie_fanout_width_bucket", le="0.0") == 1  # the reply: to no agent


class Told(Observer):
    """Writes down, in order, the deliveries and denials it is told of, one call a line."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def delivered(self, msg: Message, agent_id: str) -> None:
        self.events.append(f"delivered {agent_id}")

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        self.events.append(f"denied {agent_id}")


class ToldAtOnce(Told):
    def delivered_many(self, msg: Message, agent_ids: Sequence[str]) -> None:
        self.events.append(f"delivered {' '.join(agent_ids)}")


class Breaks(ToldAtOnce):
    def delivered_many(self, msg: Message, agent_ids: Sequence[str]) -> None:
        raise RuntimeError("broken observer")


def test_a_publish_is_told_at_once_only_when_every_observer_takes_it() -> None:
    assert deliveries_listener(None) is None
    assert deliveries_listener(Metrics()) is not None
    assert deliveries_listener(ToldAtOnce()) is not None
    assert deliveries_listener(Observers([Metrics(), ToldAtOnce()])) is not None
    assert deliveries_listener(Told()) is None
    assert deliveries_listener(Observers([Metrics(), Told()])) is None
    # An observer that hears no deliveries (a durable store's) holds nobody to the slow path.
    assert deliveries_listener(Observers([Metrics(), Observer()])) is not None
    assert deliveries_listener(Observer()) is not None
    patched = Told()
    patched.delivered_many = lambda msg, agent_ids: None  # type: ignore[method-assign]
    assert deliveries_listener(patched) is not None
    # The runtime wires it so, and unwires it when an observer that does not take it joins.
    rt = Runtime(metrics=True)
    assert rt._dispatcher.delivered_many is not None
    told = Told()
    rt.add_observer(told)
    assert rt._dispatcher.delivered_many is None
    rt.remove_observer(told)
    assert rt._dispatcher.delivered_many is not None


async def fan_out_with_denials(*observers: Observer) -> Runtime:
    """Five subscribers of ``ping``, two denied; a ping published from outside, handled."""
    rt = Runtime(policies=[DenyTo("a1", "a3")], metrics=True)
    async with rt:
        for observer in observers:
            rt.add_observer(observer)
        for i in range(5):
            rt.add(Recorder(f"a{i}"), subscribe=["ping"])
        await rt.publish(rt.message(Ping(), sender="caller"))
        await wait_all_tasks_blocked()
    return rt


async def test_a_publish_told_at_once_names_exactly_the_agents_admitted() -> None:
    # Beside the metrics (which take it at once too): one call, after the denials, with the
    # admitted agents in order; the counts say what the runtime's accounting says.
    at_once = ToldAtOnce()
    rt = await fan_out_with_denials(at_once)
    assert at_once.events == ["denied a1", "denied a3", "delivered a0 a2 a4"]
    assert rt.metrics is not None
    samples = parse(rt.metrics.text())
    check_accounting(samples, rt.statistics())
    assert {a: total(samples, "genie_deliveries_total", agent=a) for a in ("a0", "a1", "a2")} == {
        "a0": 1,
        "a1": 1,  # a denied delivery is a delivery (``genie_deliveries_denied`` says why)
        "a2": 1,
    }
    assert total(samples, "genie_messages_handled_total", status="ok") == 3


async def test_an_observer_that_does_not_take_it_hears_each_delivery_in_its_place() -> None:
    told = Told()
    rt = await fan_out_with_denials(told)
    assert told.events == ["delivered a0", "denied a1", "delivered a2", "denied a3", "delivered a4"]
    assert rt.metrics is not None  # counted per call beside it, the same
    check_accounting(parse(rt.metrics.text()), rt.statistics())


async def test_an_observer_that_breaks_on_a_publish_told_at_once_harms_nothing() -> None:
    at_once = ToldAtOnce()
    rt = await fan_out_with_denials(Breaks(), at_once)
    assert at_once.events == ["denied a1", "denied a3", "delivered a0 a2 a4"]
    assert rt.statistics().observer_errors == 1
    assert rt.metrics is not None
    check_accounting(parse(rt.metrics.text()), rt.statistics())


class BrokenMetrics(Metrics):
    """Metrics of a user's own, built on genie's: they count what genie counts, then break."""

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        super().handled(msg, agent_id, duration, outputs)
        raise RuntimeError("exporter bug")


async def test_metrics_of_your_own_that_raise_are_counted_and_change_nothing() -> None:
    """Genie's metrics cannot raise, so a runtime calls them alone without the guard; a
    subclass that overrides a hook made no such promise, and is guarded like any observer."""
    async with Runtime(metrics=BrokenMetrics()) as rt:
        rt.add(Echo("echo"))
        result = await rt.ask(rt.message(Ping(n=3), recipient="echo"))
        stats = rt.statistics()
    assert result.message.payload == Pong(n=3)
    assert stats.observer_errors == 1  # echo's call
    assert (stats.handled, stats.collected) == (2, 1)
    assert rt.metrics is not None  # what they counted before they broke is kept
    handled = parse(rt.metrics.text())
    assert total(handled, "genie_messages_handled_total", agent="echo", status="ok") == 1
    # Genie's own, alone, still pass no guard (a private attribute: the hot path's observer).
    plain = Runtime(metrics=True)
    assert plain._ledger.observer is plain.metrics


@pytest.mark.parametrize("auto_describe", [False, True], ids=["own", "like-the-process-one"])
def test_a_registry_holds_the_metrics_of_one_runtime(auto_describe: bool) -> None:
    """Two runtimes' metrics in one registry would expose every family twice, and Prometheus
    refuses such a scrape whole ("second HELP line"): the second is refused when it is made,
    naming why, not with prometheus-client's ``ValueError`` (``prometheus_client.REGISTRY``
    describes itself, a registry of your own does not)."""
    registry = CollectorRegistry(auto_describe=auto_describe)
    first = Metrics(registry)
    with pytest.raises(ConfigurationError, match="already holds the metrics of a runtime"):
        Metrics(registry)
    Runtime(metrics=first)  # the first is untouched and still one runtime's
    assert "genie_messages_published" in first.text()


@pytest.mark.parametrize("auto_describe", [False, True], ids=["own", "like-the-process-one"])
async def test_a_registry_given_takes_the_next_runtimes_metrics_once_one_closes(
    auto_describe: bool,
) -> None:
    """A runtime's metrics stayed in a registry given them after it closed: the next
    runtime's ``Metrics`` on it (the process-wide one, in a process that runs one runtime
    after another) was refused. Once closed they give way; while running they still refuse."""
    registry = CollectorRegistry(auto_describe=auto_describe)
    async with Runtime([Echo("echo")], metrics=Metrics(registry)) as first:
        await first.publish(first.message(Ping(n=1), recipient="echo"))
        await first.wait_idle()
        with pytest.raises(ConfigurationError, match="already holds the metrics of a runtime"):
            Metrics(registry)
    second = Metrics(registry)
    async with Runtime([Echo("echo")], metrics=second) as rt:
        for n in range(2):
            await rt.publish(rt.message(Ping(n=n), recipient="echo"))
        await rt.wait_idle()
        samples = parse(generate_latest(registry).decode())
    # The second runtime's counts alone: none of the first's is in them.
    assert total(samples, "genie_messages_handled_total", agent="echo", status="ok") == 2
    # The first's, let go, are still its metrics' to render.
    assert first.metrics is not None
    assert total(parse(first.metrics.text()), "genie_messages_handled_total", agent="echo") == 1


async def test_a_callers_name_is_never_a_label() -> None:
    """A caller writes the name it sends under, and the replies go to that name: one that no
    one takes (an unrouted dead letter) and one a policy refuses the caller's waiter must not
    add a series for each name, or any caller grows the metrics without bound. Neither name is
    an agent of the runtime: both are counted under agent ``-``."""
    no_askers = DenyTo(*(f"asker-{n}" for n in range(5)), name="no-askers")
    async with Runtime(metrics=True, policies=[no_askers]) as rt:
        rt.add(Echo("echo"))
        for n in range(5):
            await rt.publish(rt.message(Ping(n=n), sender=f"caller-{n}", recipient="echo"))
            answer = await rt.ask(rt.message(Ping(n=n), sender=f"asker-{n}", recipient="echo"))
            assert answer.status == "partial"  # the reply was refused to the asker
        await wait_all_tasks_blocked()
        stats = rt.statistics()
        assert rt.metrics is not None
        samples = parse(rt.metrics.text())
    named = {v for (_n, labels), _v in samples.items() for k, v in labels if k == "agent"}
    assert named == {"echo", "-"}
    assert total(samples, "genie_dead_letters_total", agent="-", reason="unrouted") == 5
    assert total(samples, "genie_dead_letters_total", reason="unrouted") == stats.unrouted
    assert total(samples, "genie_deliveries_denied_total", agent="-", policy="no-askers") == 5
    assert total(samples, "genie_deliveries_denied_total") == stats.denied


@pytest.mark.parametrize(
    ("make", "given", "named"),
    [
        (Runtime, {"metrics": "yes"}, "metrics must be True, False or a genie.Metrics, not str"),
        (Runtime, {"metrics": 1}, "metrics must be True, False or a genie.Metrics, not int"),
        (Metrics, {"registry": "r"}, "registry must be a prometheus_client.CollectorRegistry"),
        (Metrics, {"duration_buckets": 5}, "duration_buckets must be a sequence of numbers"),
        (Metrics, {"fanout_buckets": ("1", "2")}, "fanout_buckets must be a sequence of numbers"),
        (Metrics, {"duration_buckets": "0.1"}, "duration_buckets must be a sequence of numbers"),
    ],
    ids=["a str", "an int", "no registry", "no sequence", "words", "one word"],
)
def test_a_wrong_metrics_argument_is_refused_naming_it(
    make: Any, given: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        make(**given)


async def test_a_bound_of_infinity_given_is_the_one_inf_bucket() -> None:
    """prometheus-client's histograms take bounds that end in +Inf; so do these, and the
    +Inf bucket is still one series (a second, ``le="inf"``, would count the calls twice)."""
    inf = float("inf")
    metrics = Metrics(duration_buckets=(0.1, inf), fanout_buckets=(1, inf))
    async with Runtime(metrics=metrics) as rt:
        rt.add(Echo("echo"))
        await rt.ask(rt.message(Ping(), recipient="echo"))
    for family in text_string_to_metric_families(metrics.text()):
        if family.type == "histogram":
            bounds = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
            assert bounds == ["0.1", "+Inf"] or bounds == ["1.0", "+Inf"], family.name
