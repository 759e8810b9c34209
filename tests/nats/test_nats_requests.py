"""``ctx.request`` across processes on a real ``nats-server``: a handler in one worker asks
an agent another worker hosts; the answer comes back to the asking process, a timeout, a
denial and a failure reach the asker as in one process, and a worker killed while it waits
has its delivery run again, asking once."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from nats.aio.msg import Msg

from genie import Decision, Limits, MemoryAuditLog, Message, Policy, Runtime, RuntimeStatistics
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport
from genie.pipeline import load_pipeline

from ..conftest import DenyTo, PolicyFn
from ..pipelines.loopers import Serve
from .nats_agents import Answerer, Asker, Question, Verdict
from .test_nats import HELPER, Workers, eventually, jetstream, stream
from .test_nats import server as server
from .test_nats import workers as workers

ASKING = Path(__file__).parent / "nats_asking.yaml"
GATHER = Path(__file__).parents[1] / "pipelines" / "good" / "gather.yaml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


def build(
    transport: NatsTransport | None,
    *,
    seconds: float = 0.0,
    timeout: float = 10.0,
    policies: Sequence[Policy] = (),
    audit: MemoryAuditLog | None = None,
) -> Runtime:
    rt = Runtime(transport=transport, policies=policies, audit=audit, limits=Limits())
    rt.add(Asker("asker", timeout=timeout))
    rt.add(Answerer("answerer", seconds=seconds))
    if transport is not None:
        transport.attach(rt)
    return rt


@asynccontextmanager
async def processes(
    url: str, namespace: str, audit: MemoryAuditLog | None = None, **kw: Any
) -> AsyncIterator[list[Runtime]]:
    """A worker hosting the asker, one hosting the answerer (each its own runtime and
    connection: they share only the broker) and the entry: their runtimes, the entry last."""
    names = NatsNames(namespace)
    transports = [
        NatsTransport(url, names, hosted=["asker"], ack_wait=2),
        NatsTransport(url, names, hosted=["answerer"], ack_wait=2),
        NatsTransport(url, names),
    ]
    runtimes = [build(t, **kw) for t in transports[:2]]
    runtimes.append(build(transports[2], audit=audit, **kw))  # the entry's audit log
    for t in transports:
        await t.connect()
    try:
        async with runtimes[0], runtimes[1], runtimes[2]:
            yield runtimes
            await runtimes[2].wait_idle()
    finally:
        for t in transports:
            await t.close()


async def ask(rt: Runtime, n: int) -> str:
    result = await rt.ask(rt.message(Question(n=n), recipient="asker"), timeout=20)
    assert result.status == "complete", result.missing
    verdict = result.message.payload
    assert isinstance(verdict, Verdict)
    return verdict.text


def counts(s: RuntimeStatistics) -> tuple[int, ...]:
    assert s.in_flight == 0
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed
    return s.delivered, s.handled, s.collected, s.denied, s.dead_lettered


async def in_process(n: int, **kw: Any) -> tuple[str, tuple[int, ...]]:
    rt = build(None, **kw)
    async with rt:
        text = await ask(rt, n)
        await rt.wait_idle()
    return text, counts(rt.statistics())


async def test_a_handler_in_one_worker_asks_an_agent_in_another(server: LocalNatsServer) -> None:
    """The answer crosses back to the asking worker, and the entry's accounting is the one
    process's, delivery for delivery."""
    expected = await in_process(21)
    async with processes(server.url, "ask") as (*hosts, rt):
        texts = [await ask(rt, 21) for _ in range(3)]
        await rt.wait_idle()
        # A reply to the caller is no dead letter where it is sent: it goes to the caller.
        assert [(h.statistics().unrouted, len(h.dead_letters)) for h in hosts] == [(0, 0)] * 2
    assert texts == [expected[0]] * 3 == ["answer 42 from answerer"] * 3
    delivered, handled, collected, denied, dead = expected[1]
    assert counts(rt.statistics()) == (3 * delivered, 3 * handled, 3 * collected, 0, 0)
    assert (denied, dead) == (0, 0)
    async with jetstream(server.url) as js:
        replies = await stream(js, NatsNames("ask").replies)
    assert [sorted(r) for r in replies] == [["reply"]] * 3


async def test_a_request_that_times_out_is_reported_to_the_asker(
    server: LocalNatsServer,
) -> None:
    """The answerer takes 1.5 s, the asker waits 0.3 s: it hears TimeoutError; the late
    answer is counted once it comes (collected for the asker, nobody waiting), so nothing
    stays in flight. The asking worker counts it late when it comes, as one process does."""
    async with processes(server.url, "late", seconds=1.5, timeout=0.3) as (asker, _, rt):
        answer = "TimeoutError: request 'question' to 'answerer': no answer within 0.3s"
        assert await ask(rt, 1) == answer

        async def counted_late() -> bool:
            return asker.statistics().correlations.late_replies == 1

        await eventually(counted_late)
    s = rt.statistics()
    assert counts(s) == (4, 4, 2, 0, 0)  # question, request, answer, verdict; 2 collected
    assert asker.statistics().correlations.late_replies == 1  # once, however long it followed on
    one = build(None, seconds=1.5, timeout=0.3)
    async with one:  # one process counts the same answer late
        assert await ask(one, 1) == answer
        await one.wait_idle()
    assert one.statistics().correlations.late_replies == 1


async def test_a_denied_request_names_the_policy_to_the_asker(server: LocalNatsServer) -> None:
    """Denied where it is sent (the asking worker): never published, the asker hears the
    policy and its reason, and the entry's audit log has the deny."""
    audit = MemoryAuditLog()
    policies = [DenyTo("answerer", name="no-answers")]
    async with processes(server.url, "denied", policies=policies, audit=audit) as (*_hosts, rt):
        text = await ask(rt, 1)
    assert text == (
        "DeniedError: request 'question' to 'answerer' denied by no-answers: answerer is blocked"
    )
    assert [(r.actor, r.target) for r in audit.records if r.action == "denied"] == [
        ("no-answers", "answerer")
    ]
    assert counts(rt.statistics()) == (3, 2, 1, 1, 0)
    async with jetstream(server.url) as js:
        info = await js.stream_info(NatsNames("denied").work)
    assert info.state.last_seq == 1  # the question only: the request never left the worker


async def test_an_answer_denied_to_the_asker_names_the_policy(server: LocalNatsServer) -> None:
    """The answer is admitted for the asker where it is sent (the answering worker): denied
    there, the asker's request fails naming the policy, as in one process."""

    def no_answer(msg: Message, recipient: str) -> Decision:
        if msg.type == "answer" and recipient == "asker":
            return Decision.deny("no-answer", "answers are not for the asker")
        return Decision.ALLOW

    expected = await in_process(1, policies=[PolicyFn("no-answer", no_answer)])
    audit = MemoryAuditLog()
    policies = [PolicyFn("no-answer", no_answer)]
    async with processes(server.url, "refused", policies=policies, audit=audit) as (*_hosts, rt):
        text = await ask(rt, 1)
    assert text == expected[0]
    assert text.startswith("DeniedError: the reply 'answer' to request 'question' was denied")
    assert counts(rt.statistics()) == expected[1]
    assert [r.actor for r in audit.records if r.action == "denied"] == ["no-answer"]


async def test_a_failed_request_is_an_agent_error_for_the_asker(server: LocalNatsServer) -> None:
    expected = await in_process(13)
    async with processes(server.url, "failed") as (*_hosts, rt):
        text = await ask(rt, 13)
    assert text == expected[0]
    assert text.startswith("AgentError: request 'question' to 'answerer': ValueError: 13")
    assert counts(rt.statistics()) == expected[1]


async def test_bytes_on_a_reply_subject_that_are_no_answer_are_passed_over(
    server: LocalNatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Any client of the broker may publish on a request's reply subject: what is no answer
    a worker wrote (not JSON, not an object, a reply that is no message) is logged and
    passed over, and the asking worker, still running, takes the answer that follows."""
    names = NatsNames("hostile-reply")
    hosts = [NatsTransport(server.url, names, hosted=[a]) for a in ("asker", "answerer")]
    transports = [*hosts, NatsTransport(server.url, names)]
    asker, answerer, rt = [build(t) for t in transports]
    for t in transports:
        await t.connect()
    hostile = [b"\xff not json", b"[1, 2]", b'{"reply": 1}', b'{"failed": "no"}']
    said, answered, texts = anyio.Event(), anyio.Event(), []
    nc = await nats.connect(server.url)
    try:

        async def say(raw: Msg) -> None:  # the request is out: its reply subject is known
            subject = names.reply(json.loads(raw.data)["message"]["id"])
            for data in hostile:
                await nc.publish(subject, data)
            await nc.flush()  # on the asker's subscription before any answer
            said.set()

        await nc.subscribe(names.agent("answerer"), cb=say)
        async with asker, rt, anyio.create_task_group() as tg:

            async def asking() -> None:
                texts.append(await ask(rt, 21))
                answered.set()

            tg.start_soon(asking)
            await said.wait()
            async with answerer:  # started now: its answer comes after what is none
                await answered.wait()
                await rt.wait_idle()
    finally:
        await nc.close()
        for t in transports:
            await t.close()
    assert texts == ["answer 42 from answerer"]
    assert counts(rt.statistics()) == (4, 4, 2, 0, 0)
    passed_over = [r for r in caplog.records if "not an answer on its reply" in r.getMessage()]
    assert len(passed_over) == len(hostile)


async def test_a_worker_killed_while_waiting_for_an_answer_asks_once(
    server: LocalNatsServer,
    workers: Workers,
) -> None:
    """The asking worker dies right after its request is out; its delivery runs again in
    another worker, whose request (same id) the server drops: the answer the first request
    got (stored in the replies stream) is read, and the answerer ran once."""
    pipeline = load_pipeline(ASKING)
    flags = ["--nats", server.url, "--ack-wait", "1"]
    die = [sys.executable, os.fspath(HELPER), "asked", "asker", "1", os.fspath(ASKING)]
    healthy = [*die[:2], "-", "-", "0", os.fspath(ASKING), *flags, "--agents"]
    doomed = workers.start([*die, *flags, "--agents", "asker"])
    workers.start([*healthy, "answerer"])
    transport = NatsTransport(server.url, NatsNames(pipeline.name))
    rt = pipeline.runtime(transport=transport)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt, anyio.create_task_group() as tg:

            async def replace_the_dead() -> None:
                assert await anyio.to_thread.run_sync(doomed.wait, 20) == -9
                workers.start(
                    [*die[:2], "-", "-", "0", os.fspath(ASKING), *flags, "--agents", "asker"]
                )

            tg.start_soon(replace_the_dead)
            text = await ask(rt, 5)
            await rt.wait_idle()
    finally:
        await transport.close()
    assert text == "answer 10 from answerer"
    async with jetstream(server.url) as js:
        records = await stream(js, NatsNames(pipeline.name).outcomes)
    answers = [r for r in records if r["agent"] == "answerer"]
    assert [(r["outcome"], r["answered"]) for r in answers] == [("handled", 1)]  # asked once
    askers = [r for r in records if r["agent"] == "asker"]
    assert [r["spawned"] for r in askers] == [1]
    assert counts(rt.statistics()) == (4, 4, 2, 0, 0)


async def test_a_declared_gather_in_a_worker_hears_of_each_loss_once(
    server: LocalNatsServer,
) -> None:
    """A part denied on its way to a declared gather (in a worker, where it is sent) and
    another denied at the entry: the gather, hosted by another worker, gets one loss notice
    for each (from the process that started the request), and ends as in one process."""
    pipeline = load_pipeline(GATHER)

    def no_returns(msg: Message, recipient: str) -> Decision:
        if msg.type == "return" and recipient == "fan_in":
            return Decision.deny("no-returns", "returns are held back")
        return Decision.ALLOW

    policies: list[Policy] = [DenyTo("slow"), PolicyFn("no-returns", no_returns)]

    async def run(entry: Runtime, host: Runtime) -> tuple[object, ...]:
        result = await pipeline.ask(entry, Serve(n=1), timeout=20)
        await entry.wait_idle()
        text = result.output.payload.model_dump()["text"] if result.output else None
        return result.status, text, host.statistics().mailboxes["fan_in"].handled

    alone = pipeline.runtime(policies=policies)
    async with alone:
        expected = await run(alone, alone)
    names = NatsNames("gathered")
    transports = [
        NatsTransport(server.url, names, hosted=["fast", "slow", "collector"]),
        NatsTransport(server.url, names, hosted=["fan_in"]),
        NatsTransport(server.url, names),
    ]
    runtimes = [pipeline.runtime(policies=policies, transport=t) for t in transports]
    for rt, t in zip(runtimes, transports, strict=True):
        t.attach(rt)
        await t.connect()
    try:
        async with runtimes[0], runtimes[1], runtimes[2]:
            got = await run(runtimes[2], runtimes[1])
    finally:
        for t in transports:
            await t.close()
    assert expected[2] == 2  # the two loss notices, nothing else
    assert got == expected
