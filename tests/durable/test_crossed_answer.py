"""An answer left in the store (``genie approvals approve --store``) that crosses its asker's
withdrawal on the way to the desk (the desk took the answer first): the desk audits it too
late, and the person who left it, reading what became of it after the withdrawal reached the
desk, is told so in the desk's words, not ``approved``. An answer no withdrawal crossed still
reads ``approved``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from genie import MemoryAuditLog, Runtime
from genie._runtime.durable.store import StoreClient

from ..booker import Book, Booker, GiveUp

pytestmark = pytest.mark.anyio


async def test_an_answer_left_in_the_store_crossing_the_withdrawal_is_told_refused(
    tmp_path: Path,
) -> None:
    """tina answers two approvals through the store; the desk takes both answers and decides
    (each row told ``approved`` in the write of its decision) before the booker withdraws
    the first, so that withdrawal reaches the desk after the decision: the two cross. Read
    once the runtime has stopped, the first row says the desk's refusal (before, it stayed
    ``approved`` for a step its asker had withdrawn); the second still says ``approved``."""
    path = tmp_path / "store.db"
    booker = Booker("booker", decisions=2)
    audit = MemoryAuditLog()
    async with Runtime([booker], store=path, audit=audit) as rt:
        client = StoreClient(path)
        for _ in range(2):
            await rt.publish(rt.message(Book(), recipient="booker"))
        await anyio.wait_all_tasks_blocked()
        crossed, kept = (a.id for a in rt.approvals.pending())
        rows = [client.answer(a, True, "tina", ("travel_desk",), "") for a in (crossed, kept)]
        with anyio.fail_after(10):
            await booker.decided.wait()  # both decided: the rows are told approved
            await rt.publish(rt.message(GiveUp(approval_id=crossed), recipient="booker"))
            await rt.wait_idle()
    outcomes = [client.outcome(row) for row in rows]
    client.close()
    why = "too late: its agent withdrew the approval as the answer came"
    assert outcomes == [f"refused: {why} (approved by tina, not taken)", "approved"]
    desk = [(r.actor, r.action) for r in audit.records if r.target == crossed]
    assert desk == [
        ("booker", "approval_requested"),
        ("tina", "approved"),
        ("withdrawn", "withdrawn"),
        ("tina", "approval_refused"),
    ]
