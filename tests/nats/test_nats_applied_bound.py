"""What the origin remembers of the outcome records it applied, on a real ``nats-server``:
the deliveries of a request still open are never forgotten for room, however many others
come and settle meanwhile; the bound (``APPLIED_KEPT``) forgets settled ones, oldest settled
first (docs/scale-out.md, "The mapping")."""

from __future__ import annotations

import logging
from functools import partial

import pytest

from genie.nats import _replay
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..conftest import Ping
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually, jetstream, ping_runtime
from .test_nats import server as server
from .test_nats_forged import record

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]


async def test_a_long_open_request_keeps_its_applied_records_while_others_settle(
    server: LocalNatsServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's root is handled and sends two children; one child's record comes. More
    requests than the bound then come and settle. The open request still knows its root's
    record: the other child's record is applied and finishes it, and the first child's
    record coming again (its delivery run again past the stream's duplicate window) counts
    once. The oldest settled request is the one forgotten: a late child of it is passed over
    as of no request this process started."""
    monkeypatch.setattr(_replay, "APPLIED_KEPT", 2)
    names = NatsNames("kept")
    entry_t = NatsTransport(server.url, names)
    entry_rt = ping_runtime(entry_t, mailbox_size=16)
    await entry_t.connect()
    try:
        async with entry_rt, jetstream(server.url) as js:
            subject = names.outcome(entry_t.origin)

            async def handled(count: int) -> bool:
                return entry_rt.statistics().handled == count

            async def sent(count: int) -> bool:
                return entry_t.sent == count

            long = entry_rt.message(Ping(n=0), recipient="echo")
            cid, root = long.correlation_id, f"{long.id}:echo"
            await entry_rt.publish(long)
            await eventually(lambda: sent(1))
            await js.publish(subject, record(cid, root, spawned=2))
            await js.publish(subject, record(cid, "c1:echo", parent=root))
            await eventually(lambda: handled(2))
            others = []
            for n in range(1, 4):  # one more than the bound, each settled
                other = entry_rt.message(Ping(n=n), recipient="echo")
                others.append(other)
                await entry_rt.publish(other)
                await eventually(partial(sent, 1 + n))
                await js.publish(subject, record(other.correlation_id, f"{other.id}:echo"))
                await eventually(partial(handled, 2 + n))
            assert entry_rt.statistics().in_flight == 1  # the long request's second child
            await js.publish(subject, record(cid, "c1:echo", parent=root))  # again
            await js.publish(subject, record(cid, "c2:echo", parent=root))
            # Records are applied in the stream's order: once this one is passed over, the
            # long request's are in.
            first = others[0]
            await js.publish(
                subject, record(first.correlation_id, "late:echo", parent=f"{first.id}:echo")
            )

            async def late_passed_over() -> bool:
                return any("delivery late:echo" in r.getMessage() for r in caplog.records)

            await eventually(late_passed_over)
            s = entry_rt.statistics()
            assert (s.delivered, s.handled, s.dead_lettered, s.in_flight) == (6, 6, 0, 0)
            passed = [r for r in caplog.records if "passed over" in r.getMessage()]
            assert [r.levelno for r in passed] == [logging.ERROR]
            assert "delivery late:echo" in passed[0].getMessage()
            assert "of no request this process started" in passed[0].getMessage()
    finally:
        await entry_t.close()
