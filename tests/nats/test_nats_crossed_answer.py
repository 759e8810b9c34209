"""An answer left in the approvals bucket that crosses its asker's withdrawal on the way to
the desk (the desk took the answer first), against a real ``nats-server``: the desk audits
it too late, and the person who left it, reading what became of it after the withdrawal
reached the desk, is told so, in the desk's words, not ``approved``."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import Runtime
from genie._runtime.approvals import (
    DESK,
    ApprovalAnswer,
    ApprovalWithdrawn,
)
from genie._runtime.transport import Delivery
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..booker import Book, Booker, GiveUp
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually, jetstream, stream
from .test_nats import server as server

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]

NAMES = NatsNames("crossed")


async def test_an_answer_crossing_the_withdrawal_is_told_it_was_refused(
    server: LocalNatsServer,
) -> None:
    """tina's answer is taken by the desk and acked (told ``approved`` in the bucket) before
    the booker's withdrawal is sent, so the withdrawal reaches the desk after it: the two
    cross. Read after the withdrawal was acked, the answer's outcome is the desk's refusal;
    before, it stayed ``approved`` for a step its asker had withdrawn."""
    url = server.url
    acked: dict[str, anyio.Event] = {
        ApprovalAnswer.message_type: anyio.Event(),
        ApprovalWithdrawn.message_type: anyio.Event(),
    }

    def step(at: str, delivery: Delivery) -> None:
        if at == "acked" and delivery.recipient == DESK and delivery.message.type in acked:
            acked[delivery.message.type].set()

    transport = NatsTransport(url, NAMES, hosted=["booker", DESK], on_step=step)
    rt = Runtime([Booker("booker")], transport=transport)
    transport.attach(rt)
    await transport.connect()
    try:
        async with rt:
            await rt.publish(rt.message(Book(), recipient="booker"))

            async def asked() -> bool:
                await wait_all_tasks_blocked()
                return bool(rt.approvals.pending())

            await eventually(asked)
            [approval] = rt.approvals.pending()
            bucket = transport.approvals
            key = await bucket.answer(approval.id, True, "tina", ("travel_desk",), "")
            with anyio.fail_after(30):
                await acked[ApprovalAnswer.message_type].wait()  # decided, and told approved
                await rt.publish(rt.message(GiveUp(approval_id=approval.id), recipient="booker"))
                await acked[ApprovalWithdrawn.message_type].wait()
            outcome = await bucket.outcome(key)
    finally:
        await transport.close()
    why = "too late: its agent withdrew the approval as the answer came"
    assert outcome == f"refused: {why} (approved by tina, not taken)"
    async with jetstream(url) as js:
        rows: list[dict[str, Any]] = await stream(js, NAMES.audit)
    desk = [(r["actor"], r["action"]) for r in rows if r["target"] == approval.id]
    assert desk == [
        ("booker", "approval_requested"),
        ("tina", "approved"),
        ("withdrawn", "withdrawn"),
        ("tina", "approval_refused"),
    ]
