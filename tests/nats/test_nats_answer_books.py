"""The books of a request as of its answer on NATS (docs/cli.md: ``in_flight`` is what still
ran when the answer was made): the outcome record that carries the output to the entry
settles everything the delivery that sent it ended, its withdrawn timers too, so nothing it
ended is counted in flight however late the worker's later publishes reach the broker.

The worker talks to the broker through a relay that holds back everything the worker
publishes after the outcome record carrying the output (what a loaded machine does now and
then), so the entry answers before any later record of the worker could reach it."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from genie import BaseAgent, Context, Message, Runtime, handler
from genie._agent.context import Timer
from genie._runtime.deadletter import DeadLetter
from genie._runtime.transport import Delivery
from genie.nats._run import Run, outcome_items
from genie.nats._server import LocalNatsServer
from genie.nats._transport import TIMER, NatsNames, NatsTransport

from ..conftest import Echo, Ping, Pong
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import eventually
from .test_nats import server as server
from .test_nats_self_asking import serve

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("nats")]

HOLD = 2.0  # seconds the relay holds back what the worker publishes after the output
_REPLY = re.compile(rb'"replies":\[\{')  # an outcome record carrying a reply (the output)


class Tick(Ping):
    message_type = "tick"


class Deadlined(BaseAgent):
    """Asks ``to`` with a deadline of its own (a timer), and on the answer withdraws the
    deadline and replies to the user: the delivery that sends the output ends a timer."""

    produces = (Ping, Pong, Tick)

    def __init__(self, id: str, to: str) -> None:
        super().__init__(id)
        self.to = to
        self.deadlines: dict[str, Timer] = {}

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        self.deadlines[ctx.message.correlation_id] = ctx.schedule(60, Tick(n=payload.n))
        return ctx.emit(Ping(n=payload.n), recipient=self.to)

    @handler
    async def on_pong(self, payload: Pong, ctx: Context) -> Message:
        self.deadlines.pop(ctx.message.correlation_id).cancel()
        return ctx.emit(Pong(n=payload.n), recipient="user")

    @handler
    async def on_tick(self, payload: Tick, ctx: Context) -> None:
        raise AssertionError("the deadline is withdrawn long before it fires")


class HoldingRelay:
    """A TCP relay from a NATS client to the server that, once the client has published an
    outcome record carrying a reply, holds back the client's next bytes for ``HOLD``
    seconds (the server's bytes to the client pass at once)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 4222
        self.held = 0
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HoldingRelay]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.url = f"nats://127.0.0.1:{listener.extra(SocketAttribute.local_port)}"
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self._client, tg)
            yield self
            tg.cancel_scope.cancel()

    async def _client(self, client: SocketStream) -> None:
        server = await anyio.connect_tcp(self.host, self.port)
        async with client, server, anyio.create_task_group() as tg:

            async def to_client() -> None:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    async for data in server:
                        await client.send(data)
                tg.cancel_scope.cancel()

            tg.start_soon(to_client)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await self._to_server(client, server)
            tg.cancel_scope.cancel()

    async def _to_server(self, client: SocketStream, server: SocketStream) -> None:
        buf = b""
        async for data in client:
            buf += data
            while (end := buf.find(b"\r\n")) >= 0:
                line = buf[:end]
                size = 0
                if line[:4].upper() in (b"PUB ", b"HPUB"):
                    size = int(line.split()[-1]) + 2  # the payload and its CRLF
                if len(buf) < end + 2 + size:
                    break
                frame, buf = buf[: end + 2 + size], buf[end + 2 + size :]
                await server.send(frame)
                if size and not self.held and _REPLY.search(frame):
                    self.held += 1
                    await anyio.sleep(HOLD)


async def test_the_answer_counts_no_timer_its_sender_withdrew_in_flight(
    server: LocalNatsServer,
) -> None:
    """The output's delivery withdrew its deadline: the entry's books as it answers have
    nothing in flight (the withdrawn timer was counted in flight until a record of its own,
    published after the output's, reached the entry)."""
    names = NatsNames("answerbooks")
    relay = HoldingRelay(server.url)
    async with relay.running():
        worker_t = NatsTransport(relay.url, names, hosted=["a", "b"])
        origin_t = NatsTransport(server.url, names)
        worker, origin = Runtime(transport=worker_t), Runtime(transport=origin_t)
        for rt in (worker, origin):
            rt.add(Deadlined("a", to="b"))
            rt.add(Echo("b"))
        worker_t.attach(worker)
        origin_t.attach(origin)
        for t in (worker_t, origin_t):
            await t.connect()
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(serve, worker)
                async with origin:
                    with anyio.fail_after(10):
                        await worker_t.serving()
                    result = await origin.ask(origin.message(Ping(n=1), recipient="a"), timeout=10)
                    answered = origin.statistics()

                    async def settled() -> bool:
                        return origin.statistics().in_flight <= 0

                    await eventually(settled, timeout=10)
                    ended = origin.statistics()
                tg.cancel_scope.cancel()
        finally:
            for t in (worker_t, origin_t):
                await t.close()
    assert result.status == "complete", result
    assert [m.type for m in result.replies] == ["pong"]
    assert relay.held == 1  # the worker's publishes after the output were held back
    # Ping to a, Ping to b, Pong to a, the deadline, and the Pong the caller took.
    assert (ended.delivered, ended.handled, ended.in_flight) == (5, 5, 0)
    assert (answered.delivered, answered.handled, answered.in_flight) == (5, 5, 0), answered


def test_a_record_too_large_to_carry_its_ended_timers_is_followed_by_their_own() -> None:
    """Where the broker cannot take the record with its withdrawn timers inside, they follow
    it as records of their own (the origin still applies them after it), and a timer that
    ended as a dead letter has its dead letter published either way."""
    names = NatsNames("answerbooks")
    setter = Message(sender="a", recipient="a", payload=Ping(n=1))
    run = Run(Delivery(setter, "a"), "origin", None)
    withdrawn = Run(Delivery(setter.model_copy(update={"id": "t1"}), TIMER), "origin", "p:a")
    cancelled = Run(Delivery(setter.model_copy(update={"id": "t2"}), TIMER), "origin", "p:a")
    cancelled.dead = DeadLetter(
        message=cancelled.delivery.message,
        agent_id="a",
        kind="cancelled",
        reason="timer of a cancelled request",
        error_type=None,
        attempts=0,
        at=datetime.now(UTC),
    )
    alone = outcome_items(names, run, "a", lambda headers: 1_000_000)
    [(subject, own, _)] = alone
    outcome, dead_letter = names.outcome("origin"), names.dead_letter("a")

    def sent(room: int) -> list[tuple[str, list[str]]]:
        items = outcome_items(names, run, "a", lambda headers: room, [withdrawn, cancelled])
        return [
            (s, [r["delivery"] for r in json.loads(data).get("ended", ())]) for s, data, _ in items
        ]

    assert sent(1_000_000) == [(outcome, ["t1:~timer", "t2:~timer"]), (dead_letter, [])]
    assert sent(len(own)) == [(outcome, []), (outcome, []), (outcome, []), (dead_letter, [])]
    assert subject == outcome
