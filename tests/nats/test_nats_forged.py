"""Outcome records a client of the broker forged, on a real ``nats-server``: shaped as a
worker writes one, they are refused before any of it is acted on, and the genuine record
still ends the request (docs/scale-out.md, "What a client of the broker can forge")."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import GatherResult
from genie.nats import _replay
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Ping, Pong
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually, jetstream, ping_runtime
from .test_nats import server as server

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]


def record(cid: str, delivery: str, **fields: Any) -> bytes:
    """An outcome record as a worker writes one: ``delivery`` of ``cid`` handled."""
    shaped: dict[str, Any] = {
        "correlation_id": cid,
        "delivery": delivery,
        "agent": "echo",
        "outcome": "handled",
        "parent": None,
        "spawned": 0,
        "denied": [],
        "shed": [],
        "replies": [],
    }
    return json.dumps(shaped | fields).encode()


async def test_a_forged_record_of_the_right_shape_ends_nothing(
    server: LocalNatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ask waits on a delivery no worker has taken yet. Records shaped right but no
    worker's reach the entry's outcome subject: one carrying no message (it ended the entry's
    runtime), one denial without its fields, one closing a delivery of the request the entry
    never sent (it ended the ask as partial, nothing in flight), and the entry's own delivery
    with a count below 0 (it closed the delivery and left the request in flight below
    nothing, never to settle, the genuine record then passed over as applied already; or
    collected a negative answer). Each is logged and passed
    over; the worker that starts then answers, and the ask completes."""
    names = NatsNames("forged")
    entry_t = NatsTransport(server.url, names)
    entry_rt = ping_runtime(entry_t)
    await entry_t.connect()
    results: list[GatherResult] = []
    try:
        async with entry_rt, jetstream(server.url) as js:
            msg = entry_rt.message(Ping(n=1), recipient="echo")
            cid = msg.correlation_id
            async with anyio.create_task_group() as tg:

                async def asking() -> None:
                    results.append(await entry_rt.ask(msg, timeout=30))

                tg.start_soon(asking)

                async def sent() -> bool:  # the delivery is in the stream
                    await wait_all_tasks_blocked()
                    return entry_rt.statistics().in_flight == 1 and entry_t.sent == 1

                await eventually(sent)
                forged = [
                    record(cid, f"{msg.id}:echo", replies=[{"no": "message"}]),
                    record(cid, f"{msg.id}:echo", denied=[{"consumer": "echo"}]),
                    record(cid, "forged:echo"),
                    record("another", f"{msg.id}:echo"),  # its delivery, another request
                    record(cid, f"{msg.id}:echo", spawned=-1),  # it closed what it opened
                    record(cid, f"{msg.id}:echo", answered=-1),
                ]
                for data in forged:
                    await js.publish(names.outcome(entry_t.origin), data)

                async def passed_over() -> bool:
                    logged = [r for r in caplog.records if "passed over" in r.getMessage()]
                    return len(logged) == len(forged)

                await eventually(passed_over)
                assert results == []  # still waiting
                assert entry_rt.statistics().in_flight == 1
                worker_t = NatsTransport(server.url, names, hosted=["echo"])
                worker_rt = ping_runtime(worker_t)
                await worker_t.connect()
                try:
                    async with worker_rt:
                        await eventually(lambda: _answered(results))
                finally:
                    await worker_t.close()
            await entry_rt.wait_idle()
    finally:
        await entry_t.close()
    [result] = results
    assert result.status == "complete"
    assert isinstance(result.message.payload, Pong)
    s = entry_rt.statistics()
    assert (s.delivered, s.handled, s.dead_lettered, s.in_flight) == (2, 2, 0, 0)


async def _answered(results: list[GatherResult]) -> bool:
    return bool(results)


async def test_forged_children_are_held_within_bounds(
    server: LocalNatsServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records naming parents whose records never come are what the origin holds: a child
    of a correlation this process never started is passed over (not held); of one it
    started, at most ``HELD_KEPT`` are held, the next logged with its sequence in the
    outcome stream; and the held go once the correlation is forgotten. A genuine child whose
    record comes before its parent's is still applied when its parent's comes."""
    monkeypatch.setattr(_replay, "HELD_KEPT", 2)
    monkeypatch.setattr(_replay, "APPLIED_KEPT", 1)
    names = NatsNames("held")
    entry_t = NatsTransport(server.url, names)
    entry_rt = ping_runtime(entry_t)
    await entry_t.connect()
    try:
        async with entry_rt, jetstream(server.url) as js:
            subject = names.outcome(entry_t.origin)
            msg = entry_rt.message(Ping(n=1), recipient="echo")
            cid, root = msg.correlation_id, f"{msg.id}:echo"
            await entry_rt.publish(msg)
            await eventually(lambda: _is(entry_t.sent == 1))

            def logged(text: str) -> list[logging.LogRecord]:
                return [r for r in caplog.records if text in r.getMessage()]

            for i in range(3):  # of a request no process started
                await js.publish(subject, record(f"made-up{i}", f"c{i}:echo", parent=f"p{i}"))
            await eventually(lambda: _is(len(logged("of no request this process")) == 3))
            assert entry_t.outcomes_held == 0
            # The genuine child first, then forged ones of its correlation, one too many.
            await js.publish(subject, record(cid, "child:echo", parent=root))
            for i in range(1, 3):
                ack = await js.publish(subject, record(cid, f"f{i}:echo", parent=f"p{i}"))
            [warned] = await _when(lambda: logged("for their parents' already"))
            assert f"record {ack.seq} of delivery f2:echo" in warned.getMessage()
            assert warned.levelno == logging.WARNING
            assert entry_t.outcomes_held == 2
            await js.publish(subject, record(cid, root, spawned=1))
            await eventually(lambda: _is(entry_rt.statistics().in_flight == 0))
            assert entry_t.outcomes_held == 1  # the forged one, while its correlation is kept
            # Another request settles: the first correlation is forgotten, its forged too.
            other = entry_rt.message(Ping(n=2), recipient="echo")
            await entry_rt.publish(other)
            await eventually(lambda: _is(entry_t.sent == 2))
            await js.publish(subject, record(other.correlation_id, f"{other.id}:echo"))
            await eventually(lambda: _is(entry_rt.statistics().handled == 3))
            assert entry_t.outcomes_held == 0
            s = entry_rt.statistics()
            assert (s.delivered, s.handled, s.dead_lettered, s.in_flight) == (3, 3, 0, 0)
    finally:
        await entry_t.close()


async def _is(holds: bool) -> bool:
    return holds


async def _when(
    found: Callable[[], list[logging.LogRecord]],
) -> list[logging.LogRecord]:
    await eventually(lambda: _is(bool(found())))
    return found()
