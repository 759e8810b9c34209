"""A workflow hosted by a ``genie worker`` audits its events to the namespace's audit stream,
the one ``genie run --nats`` writes: every event of its outcome's event log is a row there,
once, and the chain verifies. The delivery rows of the same run (a failed step's dead letter)
are written there once too, by the entry, from the worker's outcome records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from genie._runtime.audit import AuditRecord
from genie._runtime.transport import Delivery
from genie.nats._names import NatsNames
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsTransport
from genie.pipeline import load_pipeline

from .test_nats import GENIE, HELPER, Workers, jetstream, stream
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import server as server
from .test_nats import workers as workers

pytestmark = pytest.mark.xdist_group("nats")

AGENTS = '''
"""Steps that mark the state done, one that always fails, and an undo that does nothing."""

from genie import BaseAgent, Context, Message, Payload, handler


class Order(Payload):
    message_type = "order"
    n: int
    a: str = ""
    b: str = ""


class Unreserve(Payload):
    message_type = "unreserve"
    n: int


class Stepper(BaseAgent):
    produces = (Order, Unreserve)

    @handler
    async def on_order(self, order: Order, ctx: Context) -> Message:
        return ctx.reply(order.model_copy(update={ctx.agent_id: "done"}))

    @handler
    async def on_unreserve(self, undo: Unreserve, ctx: Context) -> Message:
        return ctx.reply(undo)


class Broken(BaseAgent):
    produces = (Order,)

    @handler
    async def on_order(self, order: Order, ctx: Context) -> Message:
        raise RuntimeError("the warehouse is closed")
'''

PIPELINE = """
name: wfaudit
agents:
  - {id: a, use: wf_agents:Stepper}
  - {id: b, use: wf_agents:Stepper}
  - {id: c, use: wf_agents:Broken}
workflows:
  - id: order
    state: order
    steps:
      - {id: a, compensate: unreserve}
      - {id: b, after: [a], compensate: unreserve}
      - {id: c, after: [b]}
    emit: {type: order_outcome}
entry: {type: order, to: order, payload: {n: 7}}
output: order_outcome
timeout: 30s
"""


def audit_rows(url: str) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        async with jetstream(url) as js:
            return await stream(js, NatsNames("wfaudit").audit)

    return anyio.run(read)


@pytest.mark.parametrize(
    ("keyed", "die"),
    [(False, "-"), (True, "-"), (False, "kept"), (False, "audited")],
    ids=["unkeyed", "keyed", "killed-after-keeping", "killed-after-auditing"],
)
def test_a_workflow_in_a_worker_audits_each_event_once_to_the_namespace_stream(
    server: LocalNatsServer, workers: Workers, tmp_path: Path, keyed: bool, die: str
) -> None:
    """Killed after the rows of the workflow's first delivery were appended but before the
    delivery was kept, a worker's successor ran it again and wrote its rows a second time.
    Killed after it was kept, the successor rebuilds the run from it and audits nothing."""
    (tmp_path / "wf_agents.py").write_text(AGENTS)
    pipeline = tmp_path / "wfaudit.yaml"
    pipeline.write_text(PIPELINE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("GENIE_AUDIT_KEY", None)
    if keyed:  # the entry and the worker chain the namespace's rows with one key
        env["GENIE_AUDIT_KEY"] = "k" * 32

    def start_worker(log: Path, dies_at: str) -> subprocess.Popen[bytes]:
        dies = (dies_at, "order", "1") if dies_at != "-" else ("-", "-", "0")
        cmd = [sys.executable, os.fspath(HELPER), *dies, os.fspath(pipeline)]
        with log.open("wb") as err:
            worker = subprocess.Popen(
                [*cmd, "--nats", server.url, "--ack-wait", "1"],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        workers.append(worker)
        until_serving(log)
        return worker

    first = start_worker(tmp_path / "worker.log", die)
    running = subprocess.Popen(
        [str(GENIE), "run", str(pipeline), "--nats", server.url, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if die != "-":
        assert first.wait(timeout=60) == -signal.SIGKILL
        start_worker(tmp_path / "successor.log", "-")
    stdout, stderr = running.communicate(timeout=90)
    done = subprocess.CompletedProcess(running.args, running.returncode, stdout, stderr)
    assert done.returncode == 1, done.stderr  # the workflow failed, by design
    outcome = json.loads(done.stdout)["output"]["payload"]
    assert outcome["status"] == "failed"
    assert outcome["compensated"] == ["b", "a"]
    events = [(e["kind"], e["step"]) for e in outcome["events"]]
    assert ("compensated", "a") in events

    rows = audit_rows(server.url)
    print("ROWS", [(r["action"], r["target"]) for r in rows])
    flow = [row for row in rows if str(row["action"]).startswith("workflow_")]
    assert Counter(
        (str(row["action"]), str(row["target"]).rsplit("~", 1)[1]) for row in flow
    ) == Counter((f"workflow_{kind}", step) for kind, step in events)
    assert {row["actor"] for row in flow} == {"order"}
    # The failed step's dead letter: written once, by the entry, from the outcome record.
    dead = [row for row in rows if str(row["action"]).startswith("dead_letter")]
    assert len(dead) == 1, dead
    verify = [sys.executable, "-m", "genie._cli", "audit", "verify", f"{server.url}/wfaudit"]
    verified = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def until_serving(log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while "genie worker: hosting" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


async def test_a_workflow_deliverys_rows_are_in_the_stream_before_it_is_kept_or_acked(
    server: LocalNatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker queued a run's rows and appended them a moment later, while the delivery
    that made them was kept and acked without waiting: a worker killed between the two
    lost the rows for good (the delivery, acked, is never run again)."""
    (tmp_path / "wf_agents.py").write_text(AGENTS)
    (tmp_path / "wfaudit.yaml").write_text(PIPELINE)
    monkeypatch.syspath_prepend(os.fspath(tmp_path))
    pipeline = load_pipeline(tmp_path / "wfaudit.yaml")
    names = NatsNames("wfaudit")
    entry_t = NatsTransport(server.url, names)
    worker_t = NatsTransport(server.url, names, hosted=["order", "a", "b", "c"])
    queued: list[tuple[str, int]] = []  # (step, rows not yet appended) of the workflow's

    def count(step: str, delivery: Delivery) -> None:
        if delivery.recipient == "order" and step in ("kept", "acked"):
            queued.append((step, worker_t.audit.queued))

    worker_t.on_step = count
    append = worker_t.audit._append

    async def slow_append(*args: Any) -> None:  # a broker slow to take rows: the window opens
        await anyio.sleep(0.3)
        await append(*args)

    monkeypatch.setattr(worker_t.audit, "_append", slow_append)
    entry_rt, worker_rt = (pipeline.runtime(transport=t) for t in (entry_t, worker_t))
    for rt, t in ((entry_rt, entry_t), (worker_rt, worker_t)):
        t.attach(rt)
        await t.connect()
    try:
        async with worker_rt, entry_rt:
            order = entry_rt.types.parse_payload("order", {"n": 7})
            request = entry_rt.message(order, sender="caller", recipient="order")
            result = await entry_rt.ask(request, until="order_outcome", timeout=30)
    finally:
        for t in (entry_t, worker_t):
            await t.close()
    assert result.status == "complete"
    assert ("kept", 0) in queued
    assert [left for _, left in queued] == [0] * len(queued)


async def test_a_drain_waits_for_the_rows_queued_before_it_not_for_those_after(
    server: LocalNatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery waits for its rows before its ack; it waited for every row queued until the
    queue was empty, the rows other deliveries made meanwhile too: its ack waited on theirs
    for as long as they kept coming."""
    transport = NatsTransport(server.url, NatsNames("drained"))
    await transport.connect()
    log = transport.audit
    append = log._append

    async def slow_append(*args: Any) -> None:  # a broker slow to take rows: the window opens
        await anyio.sleep(0.2)
        await append(*args)

    monkeypatch.setattr(log, "_append", slow_append)

    def row(n: int) -> AuditRecord:
        return AuditRecord(datetime.now(UTC), "order", "workflow_started", f"r{n}", {})

    left: list[int] = []  # rows still queued as the first drain returned

    async def first_delivery() -> None:
        await log.drain(transport.js)
        left.append(log.queued)

    try:
        log.record(row(1))
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_delivery)
            await anyio.sleep(0.05)  # its row is being appended: two more come meanwhile
            log.record(row(2))
            log.record(row(3))
        assert left == [2]
        await log.drain(transport.js)
        assert (log.queued, log.written) == (0, 3)
        async with jetstream(server.url) as js:
            rows = await stream(js, NatsNames("drained").audit)
        assert [r["target"] for r in rows] == ["r1", "r2", "r3"]
    finally:
        await transport.close()
