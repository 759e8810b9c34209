"""autogen-core's SingleThreadedAgentRuntime running the same workloads (the closest peer).

Imported only when autogen-core is installed (the ``bench`` extra). The workloads use its
pub/sub, the same shape as Genie's: a request is published to a topic every worker subscribes
to, each worker publishes its reply to a reply topic, and a closure agent gathers the replies
into the same dict of futures the floor uses. A chain hop is a publish to the next relay's
topic (one agent type, keyed by the topic's source).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from autogen_core import (
    AgentId,
    ClosureAgent,
    ClosureContext,
    MessageContext,
    RoutedAgent,
    SingleThreadedAgentRuntime,
    TopicId,
    TypeSubscription,
    message_handler,
)
from autogen_core import __version__ as version

from .workloads import Ask, Hop, Implementation, Reply, Request, _check, _FanIn

__all__ = ["PEER", "version"]

REQUESTS = "bench.request"
REPLIES = "bench.reply"
HOPS = "bench.hop"
DONE = "bench.done"


class Worker(RoutedAgent):
    def __init__(self, index: int) -> None:
        super().__init__("bench worker")
        self.index = index

    @message_handler
    async def on_request(self, message: Request, ctx: MessageContext) -> None:
        reply = Reply(seq=message.seq, agent=self.index, blob=message.blob)
        await self.publish_message(reply, TopicId(REPLIES, "default"))


class Relay(RoutedAgent):
    def __init__(self, agents: int) -> None:
        super().__init__("bench relay")
        self.agents = agents

    @message_handler
    async def on_hop(self, message: Hop, ctx: MessageContext) -> None:
        n = message.n + 1
        topic = TopicId(HOPS, str(n)) if n < self.agents else TopicId(DONE, "default")
        await self.publish_message(Hop(n=n, blob=message.blob), topic)


def _worker(index: int) -> Worker:
    return Worker(index)


@asynccontextmanager
async def _running(runtime: SingleThreadedAgentRuntime) -> AsyncIterator[None]:
    runtime.start()
    try:
        yield
    finally:
        await runtime.stop()


@asynccontextmanager
async def fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    runtime = SingleThreadedAgentRuntime()
    fan_in = _FanIn(n)
    for i in range(n):
        await Worker.register(runtime, f"w{i}", lambda i=i: _worker(i))  # type: ignore[misc]
        await runtime.add_subscription(TypeSubscription(REQUESTS, f"w{i}"))

    async def collect(_: ClosureContext, reply: Reply, ctx: MessageContext) -> None:
        fan_in.collect(reply)

    await ClosureAgent.register_closure(
        runtime,
        "collector",
        collect,
        subscriptions=lambda: [TypeSubscription(REPLIES, "collector")],
    )

    async def ask() -> None:
        seq, future = fan_in.open()
        await runtime.publish_message(Request(seq=seq, blob=blob), TopicId(REQUESTS, "default"))
        _check(len(await future), n, "autogen-core replies")

    async with _running(runtime):
        yield ask


@asynccontextmanager
async def chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    runtime = SingleThreadedAgentRuntime()
    done: asyncio.Queue[Hop] = asyncio.Queue()
    await Relay.register(runtime, "relay", lambda: Relay(agents))
    await runtime.add_subscription(TypeSubscription(HOPS, "relay"))

    async def finish(_: ClosureContext, hop: Hop, ctx: MessageContext) -> None:
        done.put_nowait(hop)

    await ClosureAgent.register_closure(
        runtime, "done", finish, subscriptions=lambda: [TypeSubscription(DONE, "done")]
    )

    async def ask() -> None:
        await runtime.publish_message(Hop(n=0, blob=blob), TopicId(HOPS, "0"))
        _check((await done.get()).n, agents, "autogen-core hops")

    async with _running(runtime):
        for i in range(agents):  # instantiate the relays outside the measured rounds
            await runtime.try_get_underlying_agent_instance(AgentId("relay", str(i)))
        yield ask


@asynccontextmanager
async def idle(count: int) -> AsyncIterator[None]:
    runtime = SingleThreadedAgentRuntime()
    index = itertools.count()
    await Worker.register(runtime, "worker", lambda: _worker(next(index)))
    await runtime.add_subscription(TypeSubscription(REQUESTS, "worker"))
    async with _running(runtime):
        for i in range(count):
            await runtime.try_get_underlying_agent_instance(AgentId("worker", str(i)))
        yield


PEER = Implementation(
    "autogen-core",
    f"autogen-core {version} SingleThreadedAgentRuntime: publish to a topic, replies gathered "
    "by a closure agent",
    fanout,
    chain,
    idle,
)
