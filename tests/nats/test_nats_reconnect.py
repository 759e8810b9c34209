"""A worker whose connection to the broker drops while a handler waits for the answer to its
``ctx.request``, on a real ``nats-server`` behind a TCP relay the test cuts: the answer
published meanwhile (stored in the replies stream) still reaches the handler once the
worker reconnects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

from genie import BaseAgent, Context, GatherResult, Message, Runtime, handler
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsNames, NatsTransport

from .nats_agents import Answer, Asker, Question, Verdict
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually, jetstream, stream
from .test_nats import server as server

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.xdist_group("nats"),
    # nats-py leaves the writer of the connection the relay cut to the garbage collector.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in.*StreamWriter:pytest.PytestUnraisableExceptionWarning"
    ),
]


class Relay:
    """A TCP relay on 127.0.0.1 to ``port``: ``cut()`` drops every connection through it
    and refuses new ones until ``mend()``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open = True
        self._streams: list[SocketStream] = []
        self.url = ""

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.url = f"nats://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
        task_status.started()
        async with listener:
            await listener.serve(self._relay)

    async def _relay(self, client: SocketStream) -> None:
        if not self.open:
            await client.aclose()
            return
        upstream = await anyio.connect_tcp("127.0.0.1", self.port)
        self._streams += [client, upstream]

        async def pump(a: SocketStream, b: SocketStream) -> None:
            try:
                async for chunk in a:
                    await b.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
            finally:
                await a.aclose()
                await b.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, client, upstream)
            tg.start_soon(pump, upstream, client)

    async def cut(self) -> None:
        self.open = False
        streams, self._streams = self._streams, []
        for s in streams:
            await s.aclose()

    def mend(self) -> None:
        self.open = True


class GatedAnswerer(BaseAgent):
    """Answers a Question with twice its number once ``gate`` is set (``started`` is set as
    it begins)."""

    produces = (Answer,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.started = anyio.Event()
        self.gate = anyio.Event()

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        self.started.set()
        await self.gate.wait()
        return ctx.reply(Answer(n=payload.n * 2))


def build(transport: NatsTransport, answerer: GatedAnswerer) -> Runtime:
    rt = Runtime(transport=transport)
    rt.add(Asker("asker", timeout=20))
    rt.add(answerer)
    transport.attach(rt)
    return rt


@asynccontextmanager
async def running(
    transports: list[NatsTransport], answerer: GatedAnswerer
) -> AsyncIterator[Runtime]:
    runtimes = [build(t, answerer) for t in transports]
    for t in transports:
        await t.connect()
    try:
        async with runtimes[0], runtimes[1], runtimes[2]:
            yield runtimes[2]
    finally:
        for t in transports:
            await t.close()


async def test_an_answer_published_while_the_asker_was_cut_off_reaches_it(
    server: LocalNatsServer,
) -> None:
    """The asking worker's connection is cut while the answerer works; the answer goes to
    the replies stream meanwhile, reaching no subscription of the asker's. Once the worker
    reconnects it reads the answer there (it waited out its timeout, 20 s, for nothing)."""
    names = NatsNames("relay")
    answerer = GatedAnswerer("answerer")
    async with anyio.create_task_group() as tg:
        relay = Relay(int(server.url.rsplit(":", 1)[1]))
        await tg.start(relay.serve)
        transports = [
            NatsTransport(relay.url, names, hosted=["asker"]),  # the asker, through the relay
            NatsTransport(server.url, names, hosted=["answerer"]),
            NatsTransport(server.url, names),  # the entry
        ]
        async with running(transports, answerer) as entry:
            results: list[GatherResult] = []

            async def asking() -> None:
                msg = entry.message(Question(n=4), recipient="asker")
                results.append(await entry.ask(msg, timeout=30))

            async with anyio.create_task_group() as inner:
                inner.start_soon(asking)
                await answerer.started.wait()
                await relay.cut()
                answerer.gate.set()

                async def stored() -> bool:
                    async with jetstream(server.url) as js:
                        return len(await stream(js, names.replies)) == 1

                await eventually(stored)
                relay.mend()
            [result] = results
            assert result.status == "complete", result.missing
            verdict = result.message.payload
            assert isinstance(verdict, Verdict)
            assert verdict.text == "answer 8 from answerer"
        tg.cancel_scope.cancel()
