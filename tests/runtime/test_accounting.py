"""Nothing is lost silently: after heavy concurrent load with seeded failures and denies,
delivered == handled + denied + dead_lettered + shed, exactly."""

from __future__ import annotations

import random
from collections import Counter

import anyio

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Decision,
    Limits,
    Message,
    RetryPolicy,
    Runtime,
    handler,
)

from ..conftest import Ping, PolicyFn

AGENTS = 60
REQUESTS = 2_000


class Worker(BaseAgent):
    """Forwards each ping to two seeded-random peers until n reaches 6; fails at a seeded rate."""

    produces = (Ping,)

    def __init__(self, id: str, seed: int) -> None:
        super().__init__(id)
        self.rng = random.Random(seed)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        if self.rng.random() < 0.05:
            raise RuntimeError("seeded failure")
        if payload.n >= 6:
            return []
        peers = self.rng.sample(range(AGENTS), 2)
        return [ctx.emit(Ping(n=payload.n + 1), recipient=f"w{p}") for p in peers]


async def test_accounting_holds_under_load() -> None:
    deny_rng = random.Random(7)

    def sometimes(msg: Message, recipient: str) -> Decision:
        return Decision.deny("chaos", "seeded deny") if deny_rng.random() < 0.03 else Decision.ALLOW

    options = AgentOptions(
        mailbox_size=64,
        max_concurrency=2,
        retry=RetryPolicy(attempts=2, backoff=0),
        breaker=None,
    )
    policies = [PolicyFn("chaos", sometimes)]
    async with Runtime(policies=policies, limits=Limits(max_hops=10)) as rt:
        for i in range(AGENTS):
            rt.add(Worker(f"w{i}", seed=i), options=options)

        async def client(k: int) -> None:
            for j in range(REQUESTS // 8):
                await rt.publish(rt.message(Ping(n=0), recipient=f"w{(k * 31 + j) % AGENTS}"))

        async with anyio.create_task_group() as tg:
            for k in range(8):
                tg.start_soon(client, k)
        with anyio.fail_after(120):
            await rt.wait_idle()
        mailboxes = rt.statistics().mailboxes
    s = rt.statistics()
    assert s.delivered >= 100_000
    assert s.in_flight == 0
    assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed
    assert s.denied > 0
    assert s.dead_lettered > 0
    assert s.retries > 0
    # the per-agent view agrees with the totals
    assert sum(m.handled for m in mailboxes.values()) == s.handled
    assert sum(m.failed for m in mailboxes.values()) == s.dead_lettered
    kinds = Counter(d.kind for d in rt.dead_letters)
    assert rt.dead_letters.counts["failed"] == s.dead_lettered
    assert set(kinds) <= {"failed"}
