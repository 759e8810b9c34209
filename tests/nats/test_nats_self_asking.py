"""A runtime on NATS that hosts an agent and asks it itself (the worker and the origin of a
request in one process) counts each delivery once, as one process does: the same
statistics, the accounting identity, one dead letter and one ``missing`` per loss. Each
scenario runs in one process without a transport, then over a real ``nats-server``, and the
two are compared."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from genie import BaseAgent, Context, GatherResult, Lost, Message, Payload, Runtime, handler
from genie._runtime.policy import Policy
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import DenyTo, Echo, Failing, Note, Ping, Pong
from .nats_agents import Answerer, Asker, Question
from .test_nats import Workers, eventually, jetstream, worker
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import server as server
from .test_nats import workers as workers
from .test_nats_timers import Alarm

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]


class Forward(BaseAgent):
    """Passes every Ping on to ``to``; takes the Pong that comes back and replies with it."""

    produces = (Ping, Pong)

    def __init__(self, id: str, to: str) -> None:
        super().__init__(id)
        self.to = to

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Ping(n=payload.n), recipient=self.to)

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> Message:
        return ctx.emit(Pong(n=payload.n), recipient="user")


class Watcher(BaseAgent):
    """Tells the user of every loss it hears of (``genie.lost``)."""

    produces = (Pong,)

    @handler
    async def on_lost(self, payload: Lost, ctx: Context) -> Message:
        return ctx.emit(Pong(n=0), recipient="user")


Agents = Callable[[], Sequence[tuple[BaseAgent, Sequence[str]]]]  # each with its subscriptions
Request = Callable[[Runtime], Awaitable[GatherResult]]


@dataclass
class Scenario:
    agents: Agents
    request: Request
    here: Sequence[str]  # hosted by the runtime that asks
    elsewhere: Sequence[str] = ()  # hosted by a worker of its own
    policies: Sequence[Policy] = ()


async def ask(rt: Runtime, recipient: str, payload: Payload | None = None) -> GatherResult:
    msg = rt.message(Ping(n=7) if payload is None else payload, recipient=recipient)
    return await rt.ask(msg, timeout=10)


async def gather(rt: Runtime, senders: Sequence[str]) -> GatherResult:
    """A Ping to every subscriber of its type, and a gather of their answers."""
    msg = rt.message(Ping(n=7))
    waiting = rt.gather(msg.correlation_id, senders=senders, timeout=10)
    await rt.publish(msg)
    return await waiting.wait()


def books(rt: Runtime, result: GatherResult) -> dict[str, Any]:
    """What a user reads of a request: its result, the dead letters and the counts."""
    s = rt.statistics()
    return {
        "status": result.status,
        "replies": sorted((m.sender, m.type) for m in result.replies),
        "missing": sorted((m.key, m.kind, m.agent_id or "", m.reason) for m in result.missing),
        "dead_letters": sorted((d.agent_id or "", d.kind, d.reason) for d in rt.dead_letters),
        "counts": {
            "delivered": s.delivered,
            "handled": s.handled,
            "collected": s.collected,
            "denied": s.denied,
            "dead_lettered": s.dead_lettered,
            "shed": s.shed,
            "in_flight": s.in_flight,
        },
    }


def build(scenario: Scenario, transport: NatsTransport | None = None) -> Runtime:
    rt = Runtime(transport=transport, policies=scenario.policies)
    rt.types.register(Note)
    for agent, subscribe in scenario.agents():
        rt.add(agent, subscribe=subscribe)
    if transport is not None:
        transport.attach(rt)
    return rt


async def in_one_process(scenario: Scenario) -> dict[str, Any]:
    rt = build(scenario)
    async with rt:
        result = await scenario.request(rt)
        with anyio.fail_after(10):
            await rt.wait_idle()
        return books(rt, result)


async def over_nats(url: str, namespace: str, scenario: Scenario) -> dict[str, Any]:
    names = NatsNames(namespace)
    asking_t = NatsTransport(url, names, hosted=scenario.here)
    transports = [asking_t]
    if scenario.elsewhere:
        transports.append(NatsTransport(url, names, hosted=scenario.elsewhere))
    runtimes = [build(scenario, t) for t in transports]
    for t in transports:
        await t.connect()
    rt = runtimes[0]
    try:
        async with anyio.create_task_group() as tg:
            for other in runtimes[1:]:
                await tg.start(serve, other)
            async with rt:
                for t in transports:
                    with anyio.fail_after(10):
                        await t.serving()
                result = await scenario.request(rt)

                async def settled() -> bool:
                    return rt.statistics().in_flight <= 0

                await eventually(settled, timeout=10)
                await anyio.sleep(0.3)  # a record counted twice would come by now
                found = books(rt, result)
            tg.cancel_scope.cancel()
    finally:
        for t in transports:
            await t.close()
    return found


async def serve(rt: Runtime, *, task_status: Any) -> None:
    async with rt:
        task_status.started()
        await anyio.sleep_forever()


def echo_a() -> Sequence[tuple[BaseAgent, Sequence[str]]]:
    return [(Echo("a"), ())]


def failing_a() -> Sequence[tuple[BaseAgent, Sequence[str]]]:
    return [(Failing("a"), ())]


def forward_a_to_b() -> Sequence[tuple[BaseAgent, Sequence[str]]]:
    return [(Forward("a", to="b"), ()), (Echo("b"), ())]


def failing_a_echo_b_on_ping() -> Sequence[tuple[BaseAgent, Sequence[str]]]:
    return [(Failing("a"), ("ping",)), (Echo("b"), ("ping",))]


def failing_a_watched() -> Sequence[tuple[BaseAgent, Sequence[str]]]:
    return [(Failing("a"), ()), (Watcher("watcher"), ("genie.lost",))]


def alarm() -> Sequence[tuple[BaseAgent, Sequence[str]]]:
    return [(Alarm("alarm"), ())]


def asker_and_answerer() -> Sequence[tuple[BaseAgent, Sequence[str]]]:
    return [(Asker("asker"), ()), (Answerer("answerer"), ())]


def question(n: int) -> Request:
    return lambda rt: ask(rt, "asker", Question(n=n))


SCENARIOS = {
    "handled": Scenario(echo_a, lambda rt: ask(rt, "a"), here=["a"]),
    "failed": Scenario(failing_a, lambda rt: ask(rt, "a"), here=["a"]),
    "output denied": Scenario(
        forward_a_to_b, lambda rt: ask(rt, "a"), here=["a", "b"], policies=[DenyTo("b")]
    ),
    "chain here": Scenario(forward_a_to_b, lambda rt: ask(rt, "a"), here=["a", "b"]),
    "chain on to a worker": Scenario(
        forward_a_to_b, lambda rt: ask(rt, "a"), here=["a"], elsewhere=["b"]
    ),
    "chain back from a worker": Scenario(
        forward_a_to_b, lambda rt: ask(rt, "a"), here=["b"], elsewhere=["a"]
    ),
    "fan-out here and to a worker": Scenario(
        failing_a_echo_b_on_ping, lambda rt: gather(rt, ["a", "b"]), here=["a"], elsewhere=["b"]
    ),
    "loss told here": Scenario(failing_a_watched, lambda rt: ask(rt, "a"), here=["a", "watcher"]),
    "loss told to a worker": Scenario(
        failing_a_watched, lambda rt: ask(rt, "a"), here=["a"], elsewhere=["watcher"]
    ),
    "timer fired": Scenario(alarm, lambda rt: ask(rt, "alarm", Ping(n=2)), here=["alarm"]),
    "timer withdrawn": Scenario(alarm, lambda rt: ask(rt, "alarm", Ping(n=0)), here=["alarm"]),
    "request answered here": Scenario(asker_and_answerer, question(21), here=["asker", "answerer"]),
    "request failed here": Scenario(asker_and_answerer, question(13), here=["asker", "answerer"]),
    "request answered by a worker": Scenario(
        asker_and_answerer, question(21), here=["asker"], elsewhere=["answerer"]
    ),
    "request asked by a worker": Scenario(
        asker_and_answerer, question(21), here=["answerer"], elsewhere=["asker"]
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_a_runtime_asking_an_agent_it_hosts_counts_as_one_process(
    server: LocalNatsServer, name: str
) -> None:
    """Its worker's part counted each delivery as it ran it, and its origin's part counted
    the same delivery again from the outcome record it got from itself: a failure was two
    dead letters and two ``missing``, a handled request stayed in flight, and the identity
    broke."""
    scenario = SCENARIOS[name]
    expected = await in_one_process(scenario)
    namespace = "self" + "".join(c for c in name if c.isalpha())
    found = await over_nats(server.url, namespace, scenario)
    assert found == expected
    counts = found["counts"]
    ended = sum(counts[k] for k in ("handled", "denied", "dead_lettered", "shed", "in_flight"))
    assert counts["delivered"] == ended
    assert counts["in_flight"] == 0


class Inflate(BaseAgent):
    """Passes every Ping on to ``to`` as a Note over the broker's max_payload (1 MiB)."""

    produces = (Note,)

    def __init__(self, id: str, to: str) -> None:
        super().__init__(id)
        self.to = to

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Note(text="x" * 1_100_000), recipient=self.to)


async def test_an_output_over_max_payload_of_a_delivery_it_asked_itself_is_one_dead_letter(
    server: LocalNatsServer,
) -> None:
    """The handler ran (handled), and the output it sent could not cross the broker: the
    output is the loss, a dead letter saying why, once; the identity holds."""
    names = NatsNames("selfbig")
    transport = NatsTransport(server.url, names, hosted=["a"])
    rt = Runtime(transport=transport)
    rt.add(Inflate("a", to="b"))
    rt.add(Echo("b"))
    rt.types.register(Note)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt:
            await transport.serving()
            result = await ask(rt, "a")

            async def settled() -> bool:
                return rt.statistics().in_flight <= 0

            await eventually(settled, timeout=10)
            await anyio.sleep(0.3)
            s = rt.statistics()
    finally:
        await transport.close()
    [missing] = result.missing
    assert (missing.kind, missing.agent_id) == ("failed", "b")
    assert "over the broker's max_payload" in missing.reason
    [dead] = rt.dead_letters
    assert (dead.agent_id, dead.error_type, dead.message.type) == (
        "b",
        "MessageTooLargeError",
        "note",
    )
    assert (s.delivered, s.handled, s.dead_lettered, s.in_flight) == (2, 1, 1, 0)


async def test_an_undecodable_delivery_naming_its_own_worker_as_origin_is_kept_once(
    server: LocalNatsServer,
) -> None:
    """A delivery its worker cannot read, whose origin is that worker's own process: the
    worker kept it as a dead letter, and so did the same process again as its origin, from
    the record."""
    names = NatsNames("selfjunk")
    transport = NatsTransport(server.url, names, hosted=["a"])
    rt = build(Scenario(echo_a, lambda rt: ask(rt, "a"), here=["a"]), transport)
    await transport.connect()
    try:
        async with rt:
            await transport.serving()
            msg = rt.message(Ping(n=1), recipient="a")
            subject, _, headers = transport._out.item(msg, "a", transport.origin)
            async with jetstream(server.url) as js:
                await js.publish(subject, b"not a delivery", headers=headers)

            async def kept() -> bool:
                return bool(rt.dead_letters)

            await eventually(kept, timeout=10)
            await anyio.sleep(0.3)  # a second letter would come by now
    finally:
        await transport.close()
    [dead] = rt.dead_letters
    assert (dead.agent_id, dead.kind) == ("a", "failed")
    assert dead.reason.startswith("undecodable delivery")


ECHO = """\
agents:
  - id: echo
    use: tests.conftest:Echo
entry: {type: ping, to: echo}
output: pong
"""


async def test_a_delivery_a_killed_worker_recorded_runs_again_here_and_counts_once(
    server: LocalNatsServer, workers: Workers, tmp_path: Path
) -> None:
    """Another worker ran a delivery this runtime asked, published its outcome record and
    was killed before its ack: the stream delivers it again, here. Its outcome was counted
    from that record; the run here counted it a second time (one ``handled`` too many)."""
    (tmp_path / "echo.yaml").write_text(ECHO)
    doomed = worker(
        workers, server.url, "echo", die=("outcome", "echo", 1), pipeline=tmp_path / "echo.yaml"
    )
    log = tmp_path / "worker-0.log"
    while "genie worker: hosting" not in log.read_text():
        assert doomed.poll() is None, log.read_text()
        await anyio.sleep(0.05)
    transport = NatsTransport(server.url, NatsNames("echo"), hosted=["echo"], ack_wait=1)
    rt = Runtime(transport=transport)
    rt.add(Echo("echo"))
    transport.attach(rt)
    await transport.connect()
    asked = 0
    try:
        async with rt:
            # Asked until the worker has taken one (each goes to whichever worker pulls it).
            while doomed.poll() is None:
                assert asked < 40, "the worker never took a delivery"
                result = await rt.ask(rt.message(Ping(n=asked), recipient="echo"), timeout=20)
                assert [r.payload for r in result.replies] == [Pong(n=asked)], result
                asked += 1
            assert doomed.wait(timeout=10) == -9  # killed after its outcome record, unacked

            async def taken_again() -> bool:  # redelivered here, and ended
                return transport.redelivered == 1 and rt.statistics().in_flight == 0

            await eventually(taken_again, 20)
            await anyio.sleep(0.2)  # a count after it would show
            s = rt.statistics()
    finally:
        await transport.close()
    # Each request as in one process: its delivery handled, and its reply collected.
    late = s.correlations.late_replies
    found = (s.delivered, s.handled, s.collected, s.dead_lettered, s.in_flight, late)
    assert found == (2 * asked, 2 * asked, asked, 0, 0, 0), s
    assert list(rt.dead_letters) == []
