"""An answer that reaches the approval desk on NATS after its approval was decided (a copy a
killed worker sent, redelivered after the decision) leaves its ``too late`` row, against a
real ``nats-server``: with the approval's agent and subject where the desk knows them, and
saying they are not known where it cannot (a worker started after the decision). The answer
that decided, delivered to the desk again, is that answer: no row, no refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import GatherResult, Message, Runtime
from genie._message.payload import Role
from genie._runtime.approvals import DESK, Approval, ApprovalAnswer
from genie._runtime.transport import Delivery
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from ..runtime.test_approvals import Pay, Payer
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually, jetstream, stream
from .test_nats import server as server

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]

NAMES = NatsNames("late")


@asynccontextmanager
async def desk_worker(
    url: str, acked: list[Delivery] | None = None, duplicate_window: float = 120.0
) -> AsyncIterator[tuple[Runtime, NatsTransport]]:
    """A worker hosting the payer and the approval desk (its desk new, as after a start);
    ``acked``: each delivery it acked, as it acks it."""

    def step(at: str, delivery: Delivery) -> None:
        if at == "acked" and acked is not None:
            acked.append(delivery)

    transport = NatsTransport(url, NAMES, hosted=["payer", DESK], on_step=step)
    rt = Runtime([Payer("payer")], transport=transport)
    transport.attach(rt)
    await transport.connect(duplicate_window=duplicate_window)
    try:
        async with rt:
            yield rt, transport
    finally:
        await transport.close()


async def refused_rows(url: str) -> list[dict[str, Any]]:
    async with jetstream(url) as js:
        rows = await stream(js, NAMES.audit)
    return [r for r in rows if r["action"] == "approval_refused"]


async def late(transport: NatsTransport, request: Message, by: str) -> None:
    """``by``'s rejection, sent to the desk as part of the approval's request (its delivery
    to the desk the parent), as the worker that took it from the bucket sent it."""
    answer = request.child(
        ApprovalAnswer(approval_id=request.id, approved=False),
        sender=by,
        id=f"late-{by}",
        created_at=request.created_at,
        recipient=DESK,
        role=Role.USER,
        metadata={**request.metadata, "user_id": by, "user_roles": ("treasurer",)},
    )
    await transport._publish(answer, DESK, transport.origin, f"{request.id}:{DESK}")


async def approved_by_alice(
    rt: Runtime,
    transport: NatsTransport,
    results: list[GatherResult],
    reason: str,
    answers: list[Message] | None = None,
) -> tuple[Approval, Message]:
    """A payment asked, approved by alice once it is pending, and its result in ``results``
    once the worker is done with the approval; the approval and the request that asked it
    (alice's answer message in ``answers``)."""
    async with anyio.create_task_group() as tg:

        async def asking() -> None:
            asked = rt.message(Pay(amount=5), recipient="payer")
            results.append(await rt.ask(asked, until="paid", timeout=20))

        tg.start_soon(asking)

        async def asked() -> bool:
            await wait_all_tasks_blocked()
            return bool(rt.approvals.pending())

        await eventually(asked)
        [approval] = rt.approvals.pending()
        request = rt.approvals._desk.pending[approval.id].request
        answer = rt.approvals.approve(approval.id, by="alice", roles=("treasurer",), reason=reason)
        if answers is not None:
            answers.append(answer)

    async def unlisted() -> bool:  # decided, and the worker is done with it
        return await transport.approvals.pending() == [] and not transport._asked_at

    await eventually(unlisted)
    return approval, request


async def test_an_answer_after_the_decision_is_audited_with_what_is_known(
    server: LocalNatsServer,
) -> None:
    url = server.url
    results: list[GatherResult] = []
    async with desk_worker(url) as (rt, transport):
        approval, request = await approved_by_alice(rt, transport, results, "")
        await late(transport, request, "bob")  # to the desk that decided it

        async def bobs() -> bool:
            return any(r["actor"] == "bob" for r in await refused_rows(url))

        await eventually(bobs)
    async with desk_worker(url) as (_, transport):
        await late(transport, request, "carol")  # to a desk started after the decision

        async def carols() -> bool:
            return any(r["actor"] == "carol" for r in await refused_rows(url))

        await eventually(carols)
    assert results[0].status == "complete"
    rows = [
        (r["actor"], r["details"]["answer"], r["details"]["reason"], r["details"]["agent"])
        for r in await refused_rows(url)
    ]
    unknown = "too late: it was decided already (its agent and subject are not known here)"
    assert rows == [
        ("bob", "reject", "too late: it was decided already", "payer"),
        ("carol", "reject", unknown, ""),
    ]
    bob, carol = await refused_rows(url)
    assert bob["details"]["subject"] == "pay Rs 5"
    assert carol["details"]["correlation_id"] == approval.correlation_id  # the answer's own


async def test_an_answer_left_for_an_id_not_pending_says_why_and_is_audited(
    server: LocalNatsServer,
) -> None:
    """Answers left in the bucket for an approval the desk decided, and for an id nobody
    asked: each is refused with the decision made, or as unknown, and audited."""
    url = server.url
    results: list[GatherResult] = []
    async with desk_worker(url) as (rt, transport):
        approval, _ = await approved_by_alice(rt, transport, results, "ok")
        late = await transport.approvals.answer(approval.id, False, "bob", ("treasurer",), "")
        unknown = await transport.approvals.answer("nope", True, "mallory", (), "")
        said: dict[str, str] = {}

        async def told() -> bool:
            for key in (late, unknown):
                outcome = await transport.approvals.outcome(key)
                said.update({} if outcome is None else {key: outcome})
            return len(said) == 2

        await eventually(told)
    assert results[0].status == "complete"
    decided = "decided already: approved by alice: ok"
    assert said == {
        late: f"refused: no pending approval {approval.id!r} ({decided})",
        unknown: "refused: no pending approval 'nope' (unknown: never asked here, or forgotten)",
    }
    rows = [
        (r["actor"], r["target"], r["details"]["answer"], r["details"]["reason"])
        for r in await refused_rows(url)
    ]
    assert rows == [
        ("bob", approval.id, "reject", "too late: it was decided already"),
        ("mallory", "nope", "approve", "unknown: never asked here, or forgotten"),
    ]


async def test_the_answer_that_decided_delivered_again_is_not_audited_again(
    server: LocalNatsServer,
) -> None:
    """JetStream delivers at least once: an answer whose delivery's ack came after its ack
    wait (a loaded machine) reaches the desk again after it decided on it. Sent again here
    through the broker (past its duplicate window, which would drop it), the desk takes it as
    the answer it decided on: no ``approval_refused`` row, acked. Another answer after the
    decision, the same person's same word, is refused and audited as before, once however
    often it is delivered."""
    url = server.url
    results: list[GatherResult] = []
    acked: list[Delivery] = []
    answers: list[Message] = []
    async with desk_worker(url, acked, duplicate_window=0.5) as (rt, transport):
        _, request = await approved_by_alice(rt, transport, results, "ok", answers)
        [answer] = answers
        parent = f"{request.id}:{DESK}"

        def times_acked(message: Message) -> int:
            return sum(1 for d in acked if d.recipient == DESK and d.message.id == message.id)

        async def again(message: Message) -> None:
            """``message`` delivered to the desk once more, and acked."""
            before = times_acked(message)

            async def stored() -> bool:  # not while the broker has its id (its window)
                ack = await transport._publish(message, DESK, transport.origin, parent)
                return not ack.duplicate

            async def taken() -> bool:
                return times_acked(message) > before

            await eventually(stored)
            await eventually(taken)

        await again(answer)
        assert await refused_rows(url) == []
        second = answer.model_copy(update={"id": "alices-second-click"})
        await again(second)
        await again(second)  # refused, then delivered again: audited once
    assert results[0].status == "complete"
    async with jetstream(url) as js:
        rows = await stream(js, NAMES.audit)
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("payer", "approval_requested"),
        ("alice", "approved"),
        ("alice", "approval_refused"),
    ]
    assert rows[-1]["details"]["reason"] == "too late: it was decided already"


async def test_an_approval_whose_request_is_cancelled_is_no_longer_listed(
    server: LocalNatsServer,
) -> None:
    """A request cancelled while its approval waits (its caller gave up) ends the approval:
    the worker hosting the desk lists it no more (``genie approvals list --nats`` showed it
    for ever: nothing reaches the desk to say so, and an approval without a deadline has no
    tick to)."""
    async with desk_worker(server.url) as (rt, transport):
        asked = rt.message(Pay(amount=5), recipient="payer")
        results: list[GatherResult] = []
        async with anyio.create_task_group() as tg:

            async def asking() -> None:
                results.append(await rt.ask(asked, until="paid", timeout=20))

            tg.start_soon(asking)

            async def listed() -> bool:
                await wait_all_tasks_blocked()
                return bool(await transport.approvals.pending())

            await eventually(listed)
            rt.cancel(asked.correlation_id)

        async def unlisted() -> bool:
            return await transport.approvals.pending() == []

        await eventually(unlisted, timeout=10)
    assert results[0].status != "complete"
