"""Outcome records a client of the broker forged, on a real ``nats-server``: shaped as a
worker writes one, they are refused before any of it is acted on, and the genuine record
still ends the request (docs/scale-out.md, "What a client of the broker can forge")."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import GatherResult
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
    never sent (it ended the ask as partial, nothing in flight). Each is logged and passed
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
