"""A workflow's step run by a worker other than the workflow's, on a real ``nats-server``: a
step handled without a reply fails at once there too, as in one process, not at its
deadline."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from genie.nats._names import NatsNames
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsTransport
from genie.pipeline import load_pipeline

from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually
from .test_nats import server as server

pytestmark = pytest.mark.xdist_group("nats")

AGENTS = '''
"""A step that replies with the state, and one that returns nothing."""

from genie import BaseAgent, Context, Message, Payload, handler


class Order(Payload):
    message_type = "order"
    n: int
    a: str = ""


class Unreserve(Payload):
    message_type = "unreserve"
    n: int


class Stepper(BaseAgent):
    produces = (Order, Unreserve)

    @handler
    async def on_order(self, order: Order, ctx: Context) -> Message:
        return ctx.reply(order.model_copy(update={ctx.agent_id: "done"}))

    @handler
    async def on_unreserve(self, undo: Unreserve, ctx: Context) -> Message:
        return ctx.reply(undo)


class Silent(BaseAgent):
    produces = (Order,)

    @handler
    async def on_order(self, order: Order, ctx: Context) -> None:
        return None
'''

PIPELINE = """
name: wfsteps
agents:
  - {id: a, use: wfsteps_agents:Stepper}
  - {id: quiet, use: wfsteps_agents:Silent}
workflows:
  - id: order
    state: order
    steps:
      - {id: a, compensate: unreserve}
      - {id: quiet, after: [a], deadline: 30s}
    emit: {type: order_outcome}
entry: {type: order, to: order, payload: {n: 7}}
output: order_outcome
timeout: 60s
"""


async def test_a_step_run_in_another_worker_without_a_reply_fails_at_once(
    server: LocalNatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow in one worker, its steps' agents in another: the silent step's handling
    was told only to the request's origin, so the workflow noticed it at the step's 30s
    deadline; it fails as the handler returns, and the done step is undone."""
    (tmp_path / "wfsteps_agents.py").write_text(AGENTS)
    (tmp_path / "wfsteps.yaml").write_text(PIPELINE)
    monkeypatch.syspath_prepend(os.fspath(tmp_path))
    pipeline = load_pipeline(tmp_path / "wfsteps.yaml")
    names = NatsNames("wfsteps")
    transports = [
        NatsTransport(server.url, names),  # the entry
        NatsTransport(server.url, names, hosted=["order"]),
        NatsTransport(server.url, names, hosted=["a", "quiet"]),
    ]
    runtimes = [pipeline.runtime(transport=t) for t in transports]
    for rt, t in zip(runtimes, transports, strict=True):
        t.attach(rt)
        await t.connect()
    entry = runtimes[0]
    try:
        async with runtimes[1], runtimes[2], entry:
            for t in transports[1:]:
                await t.serving()
            order = entry.types.parse_payload("order", {"n": 7})
            request = entry.message(order, sender="caller", recipient="order")
            started = time.monotonic()
            with anyio.fail_after(20):
                result = await entry.ask(request, until="order_outcome", timeout=25)
            took = time.monotonic() - started

            async def settled() -> bool:  # the undo's and the notice's records come in too
                return all(rt.statistics().in_flight <= 0 for rt in runtimes)

            await eventually(settled, timeout=10)
            stats = [rt.statistics() for rt in runtimes]
    finally:
        for t in transports:
            await t.close()
    assert result.status == "complete", result
    outcome = result.replies[0].payload
    assert outcome.status == "failed"  # type: ignore[attr-defined]
    assert outcome.failed_step == "quiet"  # type: ignore[attr-defined]
    assert outcome.reason == "quiet handled the order without replying"  # type: ignore[attr-defined]
    assert outcome.compensated == ("a",)  # type: ignore[attr-defined]
    assert took < 10, took
    for s in stats:  # each process's books balance, the notice counted as any output
        assert s.delivered == s.handled + s.denied + s.dead_lettered + s.shed + s.in_flight, s
    assert stats[0].dead_lettered == 0, stats[0]
