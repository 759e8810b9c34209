"""The pool floor (``genie bench``'s ``pool`` variant): genie's design with nothing else.

Targets will be set against it, so it must do all the work the asyncio floor and genie do: every
request delivered to each of the N agents, each reply built as a validated pydantic model and
gathered by the request's correlation; every hop of a chain handled. A floor that skipped any of
it would be fast for nothing: these tests fail if it does. No timing is asserted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from genie_bench import workloads
from genie_bench.variants import VARIANTS, build
from genie_bench.worker import throughput
from pydantic import model_validator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the floors are raw asyncio


class Pools(list[Any]):
    """Every ``_Pool`` made while installed, to read how many handlers each ran."""

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Pools:
        made = self

        class Counted(workloads._Pool):
            def __init__(self) -> None:
                super().__init__()
                made.append(self)

        monkeypatch.setattr(workloads, "_Pool", Counted)
        return self


def test_the_pool_floor_runs_in_every_run_beside_the_asyncio_floor() -> None:
    assert VARIANTS[:2] == ("asyncio", "pool")
    impls, _ = build(["genie"], [])
    assert [impl.name for impl in impls] == ["asyncio", "pool", "genie"]
    assert impls[1].idle is not None  # memory per idle agent too


@pytest.mark.parametrize("n", [1, 7, 50])
async def test_each_request_reaches_every_agent_and_gathers_its_n_validated_replies(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[int] = []

    class CountedReply(workloads.Reply):
        message_type = "bench.reply.counted"

        @model_validator(mode="after")
        def counted(self) -> CountedReply:
            validated.append(self.seq)
            return self

    gathered: dict[int, list[workloads.Reply]] = {}
    collect = workloads._FanIn.collect

    def spy(self: workloads._FanIn, reply: workloads.Reply) -> None:
        gathered.setdefault(reply.seq, []).append(reply)
        collect(self, reply)

    monkeypatch.setattr(workloads, "Reply", CountedReply)
    monkeypatch.setattr(workloads._FanIn, "collect", spy)
    pools = Pools().install(monkeypatch)
    async with workloads.POOL.fanout(n, "payload") as ask:
        # 40 requests, 8 in flight: replies of several requests interleave in the fan-in.
        assert await throughput(ask, requests=40, concurrency=8) > 0
    (pool,) = pools
    assert pool.deliveries == 40 * n  # one handler run per agent per request
    assert sorted(gathered) == list(range(40))
    for seq, replies in gathered.items():
        # Gathered by correlation: the n replies to this request, one from each agent.
        assert sorted(r.agent for r in replies) == list(range(n))
        assert all(type(r) is CountedReply and r.seq == seq for r in replies)
        assert all(r.blob == "payload" for r in replies)
    assert Counter(validated) == dict.fromkeys(range(40), n)  # each built through pydantic


async def test_a_request_does_not_return_before_its_last_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent that never answers keeps its request waiting: no request is timed as done
    with fewer than N replies gathered."""
    worker = workloads._pool_worker

    def mute_agent_2(fan_in: workloads._FanIn, index: int) -> Callable[[Any], Awaitable[None]]:
        if index != 2:
            return worker(fan_in, index)

        async def mute(req: workloads.Request) -> None:
            pass

        return mute

    monkeypatch.setattr(workloads, "_pool_worker", mute_agent_2)
    async with workloads.POOL.fanout(5, "") as ask:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await ask()


async def test_a_fan_in_completed_with_too_few_replies_fails_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the request gathered is checked as every implementation's is (the harness's
    ``answered``)."""
    init = workloads._FanIn.__init__

    def one_short(fan_in: workloads._FanIn, n: int) -> None:
        init(fan_in, n - 1)

    monkeypatch.setattr(workloads._FanIn, "__init__", one_short)
    async with workloads.POOL.fanout(4, "") as ask:
        gathered = await ask()
        assert gathered is not None  # a fan-out's ask returns what it gathered
        with pytest.raises(workloads.WorkloadError, match=r"3 replies from 3 agents, expected 4"):
            workloads.answered(gathered, 4, "", "pool replies")


async def test_a_handler_that_raises_fails_the_request_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(fan_in: workloads._FanIn, index: int) -> Callable[[Any], Awaitable[None]]:
        async def on_request(req: workloads.Request) -> None:
            raise ValueError("broken agent")

        return on_request

    monkeypatch.setattr(workloads, "_pool_worker", broken)
    async with workloads.POOL.fanout(3, "") as ask:
        with pytest.raises(workloads.WorkloadError, match="broken agent"):
            async with asyncio.timeout(5):
                await ask()


@pytest.mark.parametrize("agents", [1, 2, 100])
async def test_a_chain_runs_every_hop_through_a_handler(
    agents: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools = Pools().install(monkeypatch)
    async with workloads.POOL.chain(agents, "payload") as hop:
        for _ in range(3):
            await hop()  # checks that the last hop arrived numbered ``agents``
    (pool,) = pools
    assert pool.deliveries == 3 * agents


async def test_more_deliveries_than_a_batch_yield_to_the_loop_and_all_complete() -> None:
    """A fan-out wider than the executor's batch (64) takes several turns of the event loop;
    another task runs between them, and every reply still arrives."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with workloads.POOL.fanout(10 * workloads.POOL_BATCH, "") as ask:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        await ask()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert ticks - before >= 9  # ten batches: the ticker ran between them


async def test_idle_agents_are_mailboxes_without_tasks() -> None:
    idle = workloads.POOL.idle
    assert idle is not None
    before = len(asyncio.all_tasks())
    async with idle(1000):
        assert len(asyncio.all_tasks()) == before + 1  # the one executor
    assert len(asyncio.all_tasks()) == before
