"""The kill switch: hop limit and correlation budget stop storms, with an audit record."""

from __future__ import annotations

import anyio

from genie import BaseAgent, Context, Limits, MemoryAuditLog, Message, Runtime, handler

from ..conftest import Ping


class Loop(BaseAgent):
    """A → B → A → … forever, unless something stops it."""

    produces = (Ping,)

    def __init__(self, id: str, peer: str, fan: int = 1) -> None:
        super().__init__(id)
        self.peer = peer
        self.fan = fan

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> list[Message]:
        return [ctx.emit(Ping(n=payload.n + 1), recipient=self.peer) for _ in range(self.fan)]


async def drain(rt: Runtime) -> None:
    with anyio.fail_after(10):
        await rt.wait_idle()


async def test_hop_limit_stops_a_loop_with_a_record() -> None:
    audit = MemoryAuditLog()
    async with Runtime(
        [Loop("a", "b"), Loop("b", "a")], limits=Limits(max_hops=5), audit=audit
    ) as rt:
        result = await rt.ask(rt.message(Ping(), recipient="a"))
    assert result.status == "partial"
    [missing] = result.missing
    assert missing.policy == "limit:hops"
    assert missing.reason == "hop limit 5 exceeded (message has 6 hops)"
    s = rt.statistics()
    assert (s.handled, s.denied) == (6, 1)
    [record] = audit.records
    assert (record.actor, record.action) == ("limit:hops", "limit_fired")
    assert record.details["reason"] == missing.reason


async def test_budget_stops_a_fan_out_storm() -> None:
    audit = MemoryAuditLog()
    limits = Limits(max_hops=1000, correlation_budget=500)
    agents = [Loop("a", "b", fan=3), Loop("b", "a", fan=3)]
    async with Runtime(agents, limits=limits, audit=audit) as rt:
        await rt.publish(rt.message(Ping(), recipient="a"))
        await drain(rt)
    s = rt.statistics()
    assert s.delivered - s.denied == 500  # exactly the budget was admitted
    assert s.denied > 0
    assert all(r.actor == "limit:budget" for r in audit.records)
    assert audit.total == s.denied
