"""The Microsoft Agent Framework's workflows running the same workloads (``agent-framework``).

Imported only when ``agent-framework-core`` is installed (the ``bench`` extra). As its
documentation builds a fan-out and fan-in: an executor per agent, a dispatcher whose message a
fan-out edge group delivers to the N workers, and a fan-in edge group that hands the N replies,
as one list, to a collector which yields them as the workflow's output; ``workflow.run`` returns
when the workflow is idle. A workflow runs one request at a time ("concurrent runs are not
allowed on the same instance"), so requests in flight take workflows from a pool, built as
needed (the warm-up builds what the throughput batch needs). The chain is ``add_chain`` over
one executor per agent, the last yielding the hop as the output.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Never

from agent_framework import Executor, Workflow, WorkflowBuilder, WorkflowContext, handler
from agent_framework import __version__ as version

from .workloads import Ask, Gathered, Hop, Implementation, Reply, Request, _check

__all__ = ["PEER", "version"]


class Dispatcher(Executor):
    @handler
    async def dispatch(self, request: Request, ctx: WorkflowContext[Request]) -> None:
        await ctx.send_message(request)


class Worker(Executor):
    def __init__(self, index: int) -> None:
        super().__init__(id=f"w{index}")
        self.index = index

    @handler
    async def on_request(self, request: Request, ctx: WorkflowContext[Reply]) -> None:
        await ctx.send_message(Reply(seq=request.seq, agent=self.index, blob=request.blob))


class Collector(Executor):
    @handler
    async def collect(self, replies: list[Reply], ctx: WorkflowContext[Never, list[Reply]]) -> None:
        await ctx.yield_output(replies)

    @handler
    async def collect_one(self, reply: Reply, ctx: WorkflowContext[Never, list[Reply]]) -> None:
        await ctx.yield_output([reply])  # N = 1: an edge group needs two, a plain edge then


class Relay(Executor):
    def __init__(self, index: int, last: bool) -> None:
        super().__init__(id=f"a{index}")
        self.last = last

    @handler
    async def on_hop(self, hop: Hop, ctx: WorkflowContext[Hop, Hop]) -> None:
        out = Hop(n=hop.n + 1, blob=hop.blob)
        if self.last:
            await ctx.yield_output(out)
        else:
            await ctx.send_message(out)


def _fanout_workflow(n: int) -> Workflow:
    dispatcher, collector = Dispatcher(id="dispatcher"), Collector(id="collector")
    workers = [Worker(i) for i in range(n)]
    builder = WorkflowBuilder(start_executor=dispatcher)
    if n == 1:
        return builder.add_chain([dispatcher, workers[0], collector]).build()
    return (
        builder.add_fan_out_edges(dispatcher, workers).add_fan_in_edges(workers, collector).build()
    )


@asynccontextmanager
async def fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    idle = [_fanout_workflow(n)]
    seq = itertools.count()

    async def ask() -> Gathered:
        workflow = idle.pop() if idle else _fanout_workflow(n)
        try:
            request = Request(seq=next(seq), blob=blob)
            outputs = (await workflow.run(request)).get_outputs()
        finally:
            idle.append(workflow)
        [replies] = outputs or [[]]
        return request, replies

    yield ask


@asynccontextmanager
async def chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    relays = [Relay(i, last=i == agents - 1) for i in range(agents)]
    builder = WorkflowBuilder(max_iterations=agents + 1, start_executor=relays[0])
    workflow = builder.add_chain(relays).build() if agents > 1 else builder.build()

    async def ask() -> None:
        outputs = (await workflow.run(Hop(n=0, blob=blob))).get_outputs()
        last = outputs[-1] if outputs else None
        _check(last.n if isinstance(last, Hop) else -1, agents, "agent-framework hops")

    yield ask


PEER = Implementation(
    "agent-framework",
    f"Microsoft Agent Framework {version} workflows: an executor per agent, a fan-out edge group "
    "to the N workers and a fan-in edge group to a collector",
    fanout,
    chain,
)
