"""autogen-core's SingleThreadedAgentRuntime running the same workloads, two ways.

Imported only when autogen-core is installed (the ``bench`` extra).

``autogen-core`` uses its pub/sub, the same shape as Genie's: a request is published to a topic
every worker subscribes to, each worker publishes its reply to a reply topic, and a closure
agent gathers the replies into the same dict of futures the floor uses. A chain hop is a
publish to the next relay's topic (one agent type, keyed by the topic's source).

``autogen-core+send`` uses its direct messaging (``send_message``, a request and its response):
the caller sends the request to each of the N workers and gathers the N responses with
``asyncio.gather``; a chain hop is a relay sending to the next and returning what it answers.
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

from .workloads import Ask, Gathered, Hop, Implementation, Reply, Request, _check, _FanIn

__all__ = ["PEER", "SEND", "version"]

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

    async def ask() -> Gathered:
        seq, future = fan_in.open()
        request = Request(seq=seq, blob=blob)
        await runtime.publish_message(request, TopicId(REQUESTS, "default"))
        return request, await future

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


class Responder(RoutedAgent):
    def __init__(self, index: int) -> None:
        super().__init__("bench worker, answers")
        self.index = index

    @message_handler
    async def on_request(self, message: Request, ctx: MessageContext) -> Reply:
        return Reply(seq=message.seq, agent=self.index, blob=message.blob)


class Forwarder(RoutedAgent):
    def __init__(self, agents: int) -> None:
        super().__init__("bench relay, sends on")
        self.agents = agents

    @message_handler
    async def on_hop(self, message: Hop, ctx: MessageContext) -> Hop:
        hop = Hop(n=message.n + 1, blob=message.blob)
        if hop.n == self.agents:
            return hop
        answer = await self.send_message(hop, AgentId("relay", str(hop.n)))
        assert isinstance(answer, Hop)
        return answer


@asynccontextmanager
async def send_fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    runtime = SingleThreadedAgentRuntime()
    workers = [AgentId(f"w{i}", "default") for i in range(n)]
    for i in range(n):
        await Responder.register(runtime, f"w{i}", lambda i=i: Responder(i))  # type: ignore[misc]
    seq = itertools.count()

    async def ask() -> Gathered:
        request = Request(seq=next(seq), blob=blob)
        return request, await asyncio.gather(*(runtime.send_message(request, w) for w in workers))

    async with _running(runtime):
        yield ask


@asynccontextmanager
async def send_chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    runtime = SingleThreadedAgentRuntime()
    await Forwarder.register(runtime, "relay", lambda: Forwarder(agents))

    async def ask() -> None:
        last = await runtime.send_message(Hop(n=0, blob=blob), AgentId("relay", "0"))
        _check(last.n if isinstance(last, Hop) else -1, agents, "autogen-core send_message hops")

    async with _running(runtime):
        for i in range(agents):  # instantiate the relays outside the measured rounds
            await runtime.try_get_underlying_agent_instance(AgentId("relay", str(i)))
        yield ask


PEER = Implementation(
    "autogen-core",
    f"autogen-core {version} SingleThreadedAgentRuntime: publish to a topic, replies gathered "
    "by a closure agent",
    fanout,
    chain,
    idle,
)
SEND = Implementation(
    "autogen-core+send",
    f"autogen-core {version} SingleThreadedAgentRuntime: send_message to each agent, the "
    "responses gathered with asyncio.gather",
    send_fanout,
    send_chain,
)
