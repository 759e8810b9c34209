"""The harness notices an implementation that skips work: every fan-out's replies are checked
to answer their own request, in one body for every implementation, outside the time reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from genie_bench import worker, workloads
from genie_bench.variants import VARIANTS
from genie_bench.workloads import Reply, Request

from genie import Context, Message, Runtime, handler


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _gathered(seq: int, replies: list[Reply], blob: str = "") -> workloads.Gathered:
    return Request(seq=seq, blob=blob), replies


def test_replies_that_answer_the_request_pass() -> None:
    workloads.answered(_gathered(4, [Reply(seq=4, agent=i) for i in range(3)]), 3, "", "t")


@pytest.mark.parametrize(
    ("replies", "why"),
    [
        ([Reply(seq=3, agent=i) for i in range(3)], "does not answer request 4"),
        ([Reply(seq=4, agent=0), Reply(seq=4, agent=0), Reply(seq=4, agent=2)], "from 2 agents"),
        ([Reply(seq=4, agent=i) for i in range(2)], "2 replies from 2 agents, expected 3"),
        ([Reply(seq=4, agent=0, blob="x"), *(Reply(seq=4, agent=i) for i in (1, 2))], "answer"),
    ],
    ids=["kept from another request", "one agent twice", "fewer than N", "text changed"],
)
def test_replies_that_do_not_answer_the_request_fail_naming_why(
    replies: list[Reply], why: str
) -> None:
    with pytest.raises(workloads.WorkloadError, match=why):
        workloads.answered(_gathered(4, replies), 3, "", "t")


def test_a_request_without_the_workloads_text_fails() -> None:
    gathered = _gathered(4, [Reply(seq=4, agent=0)])
    with pytest.raises(workloads.WorkloadError, match="payload text"):
        workloads.answered(gathered, 1, "payload", "t")


class CachingWorker(workloads.Worker):
    """A cheat: builds its reply once and answers every later request with it."""

    kept: Reply | None = None

    @handler
    async def on_request(self, payload: Request, ctx: Context) -> Message:
        if self.kept is None:
            self.kept = Reply(seq=payload.seq, agent=self.index, blob=payload.blob)
        return ctx.reply(self.kept)


def _cheating_genie() -> workloads.Implementation:
    """Genie's fan-out as the harness drives it, with workers that keep their first reply."""
    honest = workloads.genie((), metrics=False)

    @asynccontextmanager
    async def fanout(n: int, blob: str) -> AsyncIterator[workloads.Ask]:
        workers = [CachingWorker(f"w{i}", i) for i in range(n)]
        async with Runtime(workers) as rt:
            for w in workers:
                rt.subscribe(w.id, Request.message_type)
            seq = iter(range(10**9))

            async def ask() -> workloads.Gathered:
                req = Request(seq=next(seq), blob=blob)
                msg = rt.message(req, sender="caller")
                gather = rt.gather(msg.correlation_id, count=n)
                await rt.publish(msg)
                return req, (await gather.wait()).replies

            yield ask

    return workloads.Implementation("genie", "a cheat", fanout, honest.chain)


@pytest.mark.anyio
async def test_the_harness_notices_a_worker_that_keeps_its_first_reply() -> None:
    child = worker.Worker("genie", "config/policies/ai-policy.yaml")
    child.impl = _cheating_genie()
    with pytest.raises(workloads.WorkloadError, match="does not answer request"):
        await child.start("fanout", 3, "", concurrency=2)
    await child.stop()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "name",
    [
        v
        for v in VARIANTS
        if v.startswith(("asyncio", "pool", "genie")) and "+policies" not in v and "store" not in v
    ],
)
async def test_every_request_a_child_times_is_checked_and_the_check_is_not_timed(
    name: str,
) -> None:
    child = worker.Worker(name, "config/policies/ai-policy.yaml")
    await child.start("fanout", 5, "payload", concurrency=4)
    try:
        checked = child.checker.requests
        got = await child.latency(count=20, budget_s=60.0)
        assert child.checker.requests == checked + 20
        assert got["wall_s"] >= sum(got["samples"])
        checked = child.checker.requests
        await child.throughput(requests=16, concurrency=4)
        assert child.checker.requests == checked + 16
    finally:
        await child.stop()


def _reusing_pool() -> workloads.Implementation:
    """A cheat: one request built once and asked again, its replies built once and kept."""

    @asynccontextmanager
    async def fanout(n: int, blob: str) -> AsyncIterator[workloads.Ask]:
        request = Request(seq=0, blob=blob)
        replies = [Reply(seq=0, agent=i, blob=blob) for i in range(n)]

        async def ask() -> workloads.Gathered:
            await asyncio.sleep(0)
            return request, replies

        yield ask

    return workloads.Implementation("pool", "a cheat", fanout, workloads.POOL.chain)


@pytest.mark.anyio
async def test_the_harness_notices_a_request_asked_again_with_its_replies_kept() -> None:
    child = worker.Worker("pool", "config/policies/ai-policy.yaml")
    child.impl = _reusing_pool()
    with pytest.raises(workloads.WorkloadError, match="request 0 was asked before"):
        await child.start("fanout", 3, "", concurrency=2)
    await child.stop()
