"""The workloads, written once per implementation with the same payloads and the same work.

Each implementation offers three shapes, all async context managers so several can be alive
in one event loop and measured interleaved:

- ``fanout(n, blob)`` yields ``ask()``: one request delivered to ``n`` agents, each building a
  ``Reply``; ``ask`` returns the request and what its fan-in gathered once all ``n`` replies
  are in, and the harness checks, outside the time it reports, that every one of the ``n``
  agents answered this very request (``answered``), in every implementation alike. Several
  ``ask()`` may run at once (throughput).
- ``chain(agents, blob)`` yields ``ask()``: one ``Hop`` through ``agents`` agents in a row.
- ``idle(count)``: ``count`` agents ready for work and given none (memory).

The raw asyncio floor: an ``asyncio.Queue`` and a task per agent, a dict of futures for the
fan-in, nothing else. The pool floor: genie's design with nothing else (a deque per agent, one
executor task draining a ready deque of them, the same fan-in), the limit of that design.
``asyncio+envelope`` is the same floor carrying the envelope any bus must
carry (ids, correlation, causation, a timestamp, the type), so that what a bus must pay is told
apart from what it chose. The peers live in ``peer.py`` (autogen-core), ``maf.py`` (the Microsoft
Agent Framework) and ``langgraph_peer.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from genie import BaseAgent, Context, Limits, Message, Payload, Policy, Runtime, handler

# A fan-out's request and what its fan-in gathered: ``Reply`` payloads, or messages carrying one
# as ``payload`` (genie's, the envelope floors'); a chain's ask returns None (it checks its hops).
Gathered = tuple["Request", Sequence[Any]]
Ask = Callable[[], Awaitable[Gathered | None]]
T = TypeVar("T")
P = TypeVar("P")


class Request(Payload):
    message_type = "bench.request"
    seq: int
    blob: str = ""


class Reply(Payload):
    message_type = "bench.reply"
    seq: int
    agent: int
    blob: str = ""


class Hop(Payload):
    message_type = "bench.hop"
    n: int
    blob: str = ""


class WorkloadError(RuntimeError):
    """An implementation did not do the work (a benchmark that measures nothing is a defect)."""


@dataclass(frozen=True)
class Implementation:
    name: str
    description: str
    fanout: Callable[[int, str], AbstractAsyncContextManager[Ask]]
    chain: Callable[[int, str], AbstractAsyncContextManager[Ask]]
    idle: Callable[[int], AbstractAsyncContextManager[None]] | None = None


class _FanIn:
    """The floor's fan-in: a dict of futures keyed by request, completed at the n-th reply."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pending: dict[int, tuple[asyncio.Future[list[Reply]], list[Reply]]] = {}
        self.seq = itertools.count()

    def open(self) -> tuple[int, asyncio.Future[list[Reply]]]:
        seq = next(self.seq)
        future = asyncio.get_running_loop().create_future()
        self.pending[seq] = (future, [])
        return seq, future

    def collect(self, reply: Reply) -> None:
        future, replies = self.pending[reply.seq]
        replies.append(reply)
        if len(replies) == self.n:
            del self.pending[reply.seq]
            future.set_result(replies)

    def fail(self, exc: BaseException) -> None:
        """Every request waiting fails with ``exc`` (its implementation broke)."""
        for future, _ in self.pending.values():
            if not future.done():  # a caller that gave up cancelled its own
                future.set_exception(WorkloadError(f"the fan-in's implementation failed: {exc!r}"))
        self.pending.clear()


def _check(got: int, want: int, what: str) -> None:
    if got != want:
        raise WorkloadError(f"{what}: got {got}, expected {want}")


def answered(gathered: Gathered, n: int, blob: str, what: str) -> None:
    """Every one of the ``n`` agents answered this request once, with its text: a reply built
    for another request (one kept from before), an agent answering twice for one that did not,
    or a text left out fails the run. One body for every implementation, run by the harness
    outside the time it reports, so each pays the same nothing for it."""
    request, replies = gathered
    if not isinstance(request, Request) or request.blob != blob:
        raise WorkloadError(f"{what}: the request does not carry the workload's payload text")
    agents = set()
    for item in replies:
        # A message carries the reply as its payload (looked up only then: a pydantic model
        # raises for an attribute it lacks, which would leave garbage for the next request).
        reply = item if isinstance(item, Reply) else getattr(item, "payload", None)
        if not isinstance(reply, Reply) or reply.seq != request.seq or reply.blob != blob:
            raise WorkloadError(f"{what}: {reply!r:.100} does not answer request {request.seq}")
        agents.add(reply.agent)
    if len(replies) != n or len(agents) != n:
        raise WorkloadError(
            f"{what}: {len(replies)} replies from {len(agents)} agents, expected {n} from {n}"
        )


# --- raw asyncio: the floor ------------------------------------------------------------------
async def _cancel_all(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def asyncio_fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    fan_in = _FanIn(n)
    queues: list[asyncio.Queue[Request]] = [asyncio.Queue() for _ in range(n)]

    async def agent(index: int, inbox: asyncio.Queue[Request]) -> None:
        while True:
            req = await inbox.get()
            fan_in.collect(Reply(seq=req.seq, agent=index, blob=req.blob))

    tasks = [asyncio.create_task(agent(i, q)) for i, q in enumerate(queues)]

    async def ask() -> Gathered:
        seq, future = fan_in.open()
        req = Request(seq=seq, blob=blob)
        for q in queues:
            q.put_nowait(req)
        return req, await future

    try:
        yield ask
    finally:
        await _cancel_all(tasks)


@asynccontextmanager
async def asyncio_chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    queues: list[asyncio.Queue[Hop]] = [asyncio.Queue() for _ in range(agents + 1)]

    async def agent(inbox: asyncio.Queue[Hop], outbox: asyncio.Queue[Hop]) -> None:
        while True:
            hop = await inbox.get()
            outbox.put_nowait(Hop(n=hop.n + 1, blob=hop.blob))

    tasks = [asyncio.create_task(agent(queues[i], queues[i + 1])) for i in range(agents)]

    async def ask() -> None:
        queues[0].put_nowait(Hop(n=0, blob=blob))
        _check((await queues[agents].get()).n, agents, "asyncio hops")

    try:
        yield ask
    finally:
        await _cancel_all(tasks)


@asynccontextmanager
async def asyncio_idle(count: int) -> AsyncIterator[None]:
    async def park(inbox: asyncio.Queue[Request]) -> None:
        await inbox.get()

    tasks = [asyncio.create_task(park(asyncio.Queue())) for _ in range(count)]
    await asyncio.sleep(0)  # every task runs to its first await: parked
    try:
        yield
    finally:
        await _cancel_all(tasks)


# --- the pool floor: genie's design with nothing else -----------------------------------------
# A mailbox per agent (a deque, no task) and one executor task that drains a ready deque of
# mailboxes, awaiting each agent's handler in a loop: the design genie's runtime is built on
# (genie/_runtime/local), without admission, the ledger, backpressure, cancellation scopes,
# policies or an envelope. What genie costs above it is what those cost; what it costs above
# the asyncio floor is also what the design saves or spends.

# An empty deque takes 760 bytes; a mailbox that never held a message shares this one (nothing
# appends to it: ``_Pool.put`` swaps in the mailbox's own first), as genie's mailboxes do, so
# that an idle agent is as cheap as the design can make it.
_NO_MESSAGES: deque[Any] = deque()
# Deliveries between the executor's yields to the event loop: genie's executors yield every 64
# so that publishers and timers get their turn under sustained load; a design that never
# yielded would starve them, which is no limit a bus could run at.
POOL_BATCH = 64


class _Mailbox(Generic[T]):
    """An agent: its handler and its messages; ``scheduled`` while it is in the ready deque or
    its handler runs, so it is in the deque at most once (one handler at a time, in order)."""

    __slots__ = ("handler", "messages", "scheduled")

    def __init__(self, handler: Callable[[T], Awaitable[None]]) -> None:
        self.handler = handler
        self.messages: deque[T] = _NO_MESSAGES
        self.scheduled = False


class _Pool:
    """The ready deque and the one executor task draining it."""

    def __init__(self) -> None:
        self.ready: deque[_Mailbox[Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None  # set while the executor is idle
        self.deliveries = 0  # handlers run; read by the tests, counted once per executor turn

    def put(self, mailbox: _Mailbox[T], message: T) -> None:
        messages = mailbox.messages
        if messages is _NO_MESSAGES:
            messages = mailbox.messages = deque()
        messages.append(message)
        if not mailbox.scheduled:
            mailbox.scheduled = True
            self.ready.append(mailbox)
            waiter = self.waiter
            if waiter is not None:
                self.waiter = None
                waiter.set_result(None)

    def publish(self, mailboxes: Sequence[_Mailbox[T]], message: T) -> None:
        """``message`` to each of ``mailboxes``: a fan-out in one call, as genie's transport
        puts one."""
        ready = self.ready
        for mailbox in mailboxes:
            messages = mailbox.messages
            if messages is _NO_MESSAGES:
                messages = mailbox.messages = deque()
            messages.append(message)
            if not mailbox.scheduled:
                mailbox.scheduled = True
                ready.append(mailbox)
        waiter = self.waiter
        if waiter is not None and ready:
            self.waiter = None
            waiter.set_result(None)

    async def _execute(self) -> None:
        ready = self.ready
        loop = asyncio.get_running_loop()
        while True:
            done = 0
            while ready and done < POOL_BATCH:
                mailbox = ready.popleft()
                messages = mailbox.messages
                await mailbox.handler(messages.popleft())
                done += 1
                if messages:
                    ready.append(mailbox)  # its next message after the others' (fair)
                else:
                    mailbox.scheduled = False
            self.deliveries += done
            if ready:
                await asyncio.sleep(0)
            else:
                self.waiter = loop.create_future()
                await self.waiter

    @asynccontextmanager
    async def running(self, failed: Callable[[BaseException], None]) -> AsyncIterator[None]:
        """The executor runs inside; a handler that raises ends it and is handed to
        ``failed`` (which fails whoever waits), so a broken floor stops the run loudly."""
        executor = asyncio.create_task(self._execute())

        def ended(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and (exc := task.exception()) is not None:
                failed(exc)

        executor.add_done_callback(ended)
        try:
            yield
        finally:
            await _cancel_all([executor])


def _pool_worker(fan_in: _FanIn, index: int) -> Callable[[Request], Awaitable[None]]:
    """The handler of agent ``index``: the reply built as every implementation builds it."""

    async def on_request(req: Request) -> None:
        fan_in.collect(Reply(seq=req.seq, agent=index, blob=req.blob))

    return on_request


@asynccontextmanager
async def pool_fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    fan_in = _FanIn(n)
    pool = _Pool()
    mailboxes = [_Mailbox(_pool_worker(fan_in, i)) for i in range(n)]

    async def ask() -> Gathered:
        seq, future = fan_in.open()
        req = Request(seq=seq, blob=blob)
        pool.publish(mailboxes, req)
        return req, await future

    async with pool.running(fan_in.fail):
        yield ask


@asynccontextmanager
async def pool_chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    pool = _Pool()
    put = pool.put
    # Where the caller waits, as in the floor; or why the executor stopped.
    arrived: asyncio.Queue[Hop | BaseException] = asyncio.Queue()

    def relay(outbox: _Mailbox[Hop]) -> Callable[[Hop], Awaitable[None]]:
        async def on_hop(hop: Hop) -> None:
            put(outbox, Hop(n=hop.n + 1, blob=hop.blob))

        return on_hop

    async def last(hop: Hop) -> None:
        arrived.put_nowait(Hop(n=hop.n + 1, blob=hop.blob))

    mailboxes = [_Mailbox(last)]
    for _ in range(agents - 1):
        mailboxes.append(_Mailbox(relay(mailboxes[-1])))
    first = mailboxes[-1]

    async def ask() -> None:
        put(first, Hop(n=0, blob=blob))
        got = await arrived.get()
        if isinstance(got, BaseException):
            raise WorkloadError(f"the pool floor's executor failed: {got!r}")
        _check(got.n, agents, "pool hops")

    async with pool.running(arrived.put_nowait):
        yield ask


@asynccontextmanager
async def pool_idle(count: int) -> AsyncIterator[None]:
    fan_in = _FanIn(1)
    pool = _Pool()
    mailboxes = [_Mailbox(_pool_worker(fan_in, i)) for i in range(count)]
    async with pool.running(fan_in.fail):
        await asyncio.sleep(0)  # the executor runs to its first await: idle
        yield
    _check(len(mailboxes), count, "pool idle agents")  # held, ready for work, until here


# --- raw asyncio carrying an envelope: the floor plus what a bus must carry -----------------
@dataclass(slots=True)
class Envelope(Generic[P]):
    """The fields every bus message carries; nothing validated, nothing copied."""

    id: str
    type: str
    sender: str
    recipient: str | None
    correlation_id: str
    causation_id: str | None
    created_at: float
    payload: P


class _Ids:
    """Unique ids as a bus can make them cheaply: a random prefix and a counter."""

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex[:12] + "-"
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return self.prefix + format(next(self.counter), "x")


@asynccontextmanager
async def envelope_fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    new_id = _Ids()
    pending: dict[str, tuple[asyncio.Future[list[Envelope[Reply]]], list[Envelope[Reply]]]] = {}
    queues: list[asyncio.Queue[Envelope[Request]]] = [asyncio.Queue() for _ in range(n)]

    def collect(reply: Envelope[Reply]) -> None:
        future, replies = pending[reply.correlation_id]
        replies.append(reply)
        if len(replies) == n:
            del pending[reply.correlation_id]
            future.set_result(replies)

    async def agent(index: int, inbox: asyncio.Queue[Envelope[Request]]) -> None:
        name = f"w{index}"
        while True:
            req = await inbox.get()
            payload = Reply(seq=req.payload.seq, agent=index, blob=req.payload.blob)
            collect(
                Envelope(
                    new_id(),
                    Reply.message_type,
                    name,
                    req.sender,
                    req.correlation_id,
                    req.id,
                    time.time(),
                    payload,
                )
            )

    tasks = [asyncio.create_task(agent(i, q)) for i, q in enumerate(queues)]
    seq = itertools.count()

    async def ask() -> Gathered:
        msg_id = new_id()
        future: asyncio.Future[list[Envelope[Reply]]] = asyncio.get_running_loop().create_future()
        pending[msg_id] = (future, [])
        payload = Request(seq=next(seq), blob=blob)
        req = Envelope(
            msg_id, Request.message_type, "caller", None, msg_id, None, time.time(), payload
        )
        for q in queues:
            q.put_nowait(req)
        return payload, await future

    try:
        yield ask
    finally:
        await _cancel_all(tasks)


@asynccontextmanager
async def envelope_chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    new_id = _Ids()
    queues: list[asyncio.Queue[Envelope[Hop]]] = [asyncio.Queue() for _ in range(agents + 1)]

    async def agent(
        name: str, inbox: asyncio.Queue[Envelope[Hop]], outbox: asyncio.Queue[Envelope[Hop]]
    ) -> None:
        while True:
            hop = await inbox.get()
            payload = Hop(n=hop.payload.n + 1, blob=hop.payload.blob)
            outbox.put_nowait(
                Envelope(
                    new_id(),
                    Hop.message_type,
                    name,
                    None,
                    hop.correlation_id,
                    hop.id,
                    time.time(),
                    payload,
                )
            )

    tasks = [asyncio.create_task(agent(f"a{i}", queues[i], queues[i + 1])) for i in range(agents)]

    async def ask() -> None:
        msg_id = new_id()
        first = Hop(n=0, blob=blob)
        queues[0].put_nowait(
            Envelope(msg_id, Hop.message_type, "caller", "a0", msg_id, None, time.time(), first)
        )
        last = await queues[agents].get()
        _check(last.payload.n if last.correlation_id == msg_id else -1, agents, "envelope hops")

    try:
        yield ask
    finally:
        await _cancel_all(tasks)


# --- raw anyio: a memory object stream and a task per agent ---------------------------------
def _stream() -> tuple[MemoryObjectSendStream[Request], MemoryObjectReceiveStream[Request]]:
    return anyio.create_memory_object_stream[Request](math.inf)


def _close(
    streams: Sequence[tuple[MemoryObjectSendStream[T], MemoryObjectReceiveStream[T]]],
) -> None:
    for send, receive in streams:
        send.close()
        receive.close()


@asynccontextmanager
async def anyio_fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    fan_in = _FanIn(n)
    streams = [_stream() for _ in range(n)]

    async def agent(index: int, inbox: MemoryObjectReceiveStream[Request]) -> None:
        async for req in inbox:
            fan_in.collect(Reply(seq=req.seq, agent=index, blob=req.blob))

    async def ask() -> Gathered:
        seq, future = fan_in.open()
        req = Request(seq=seq, blob=blob)
        for send, _ in streams:
            send.send_nowait(req)
        return req, await future

    async with anyio.create_task_group() as tg:
        for i, (_, receive) in enumerate(streams):
            tg.start_soon(agent, i, receive)
        try:
            yield ask
        finally:
            tg.cancel_scope.cancel()
            _close(streams)


@asynccontextmanager
async def anyio_chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    streams = [anyio.create_memory_object_stream[Hop](math.inf) for _ in range(agents + 1)]

    async def agent(
        inbox: MemoryObjectReceiveStream[Hop], outbox: MemoryObjectSendStream[Hop]
    ) -> None:
        async for hop in inbox:
            outbox.send_nowait(Hop(n=hop.n + 1, blob=hop.blob))

    async def ask() -> None:
        streams[0][0].send_nowait(Hop(n=0, blob=blob))
        _check((await streams[agents][1].receive()).n, agents, "anyio hops")

    async with anyio.create_task_group() as tg:
        for i in range(agents):
            tg.start_soon(agent, streams[i][1], streams[i + 1][0])
        try:
            yield ask
        finally:
            tg.cancel_scope.cancel()
            _close(streams)


@asynccontextmanager
async def anyio_idle(count: int) -> AsyncIterator[None]:
    streams = [_stream() for _ in range(count)]

    async def park(inbox: MemoryObjectReceiveStream[Request]) -> None:
        await inbox.receive()

    async with anyio.create_task_group() as tg:
        for _, receive in streams:
            tg.start_soon(park, receive)
        await asyncio.sleep(0)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
            _close(streams)


# --- Genie ------------------------------------------------------------------------------------
class Worker(BaseAgent):
    produces = (Reply,)

    def __init__(self, id: str, index: int) -> None:
        super().__init__(id)
        self.index = index

    @handler
    async def on_request(self, payload: Request, ctx: Context) -> Message:
        return ctx.reply(Reply(seq=payload.seq, agent=self.index, blob=payload.blob))


class Relay(BaseAgent):
    produces = (Hop,)

    def __init__(self, id: str, next_id: str) -> None:
        super().__init__(id)
        self.next_id = next_id

    @handler
    async def on_hop(self, payload: Hop, ctx: Context) -> Message:
        return ctx.emit(Hop(n=payload.n + 1, blob=payload.blob), recipient=self.next_id)


class Sink(BaseAgent):
    """The chain's end: hands the last hop to whoever waits for it, as an application would."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.arrived: asyncio.Queue[Hop] = asyncio.Queue()

    @handler
    async def on_hop(self, payload: Hop, ctx: Context) -> None:
        self.arrived.put_nowait(payload)


def genie(
    policies: Sequence[Policy],
    metrics: bool,
    freeze_gc: bool = False,
    store: bool | Literal["always"] = False,
) -> Implementation:
    """Genie's runtime, with or without a policy set, metrics, ``freeze_gc`` and a durable
    store (a SQLite file in a temporary folder, made for each run; ``"always"``: each write
    waits for the disk): one variant each."""
    # Passed only when asked for, so the harness still drives a genie without the option.
    fixed: dict[str, Any] = {"freeze_gc": True} if freeze_gc else {}

    @contextmanager
    def with_store() -> Iterator[dict[str, Any]]:
        if not store:
            yield fixed
            return
        with tempfile.TemporaryDirectory(prefix="genie-bench-") as folder:
            sync = {"store_sync": "always"} if store == "always" else {}
            yield {**fixed, "store": Path(folder) / "store.db", **sync}

    @asynccontextmanager
    async def fanout(n: int, blob: str) -> AsyncIterator[Ask]:
        workers = [Worker(f"w{i}", i) for i in range(n)]
        with with_store() as options:
            async with Runtime(workers, policies=policies, metrics=metrics, **options) as rt:
                for worker in workers:
                    rt.subscribe(worker.id, Request.message_type)

                seq = itertools.count()

                async def ask() -> Gathered:
                    req = Request(seq=next(seq), blob=blob)
                    msg = rt.message(req, sender="caller")
                    gather = rt.gather(msg.correlation_id, count=n)
                    await rt.publish(msg)
                    result = await gather.wait()
                    _check(len(result.replies), n, f"genie replies ({result.status})")
                    return req, result.replies

                yield ask

    @asynccontextmanager
    async def chain(agents: int, blob: str) -> AsyncIterator[Ask]:
        # Each relay emits to the next and the last to a sink the caller waits on: no gather
        # watches the hops (``rt.ask`` would offer every hop to one), as the floor pays none.
        relays = [Relay(f"a{i}", f"a{i + 1}" if i < agents - 1 else "sink") for i in range(agents)]
        sink = Sink("sink")
        limits = Limits(max_hops=agents + 1)
        with with_store() as options:
            async with Runtime(
                [*relays, sink], policies=policies, limits=limits, metrics=metrics, **options
            ) as rt:

                async def ask() -> None:
                    hop = rt.message(Hop(n=0, blob=blob), sender="caller", recipient="a0")
                    await rt.publish(hop)
                    _check((await sink.arrived.get()).n, agents, "genie hops")

                yield ask

    @asynccontextmanager
    async def idle(count: int) -> AsyncIterator[None]:
        async with Runtime([Worker(f"w{i}", i) for i in range(count)], metrics=metrics):
            await asyncio.sleep(0)
            yield

    name = "genie" + ("+policies" if policies else "") + ("+metrics" if metrics else "")
    name += ("+gcfreeze" if freeze_gc else "") + ("+store" if store else "")
    name += "-always" if store == "always" else ""
    what = ["no policies" if not policies else f"the default policy set ({len(policies)})"]
    what.append("metrics on" if metrics else "metrics off")
    if freeze_gc:
        what.append("gc.freeze() after start-up (Runtime(freeze_gc=True))")
    if store:
        what.append("every delivery kept in a SQLite store until it ends (Runtime(store=...))")
    if store == "always":
        what.append("each write waiting for the disk (store_sync='always')")
    return Implementation(name, f"Genie's Runtime, {', '.join(what)}", fanout, chain, idle)


FLOOR = Implementation(
    "asyncio",
    "raw asyncio (the floor): an asyncio.Queue and a task per agent, a dict of futures for the "
    "fan-in",
    asyncio_fanout,
    asyncio_chain,
    asyncio_idle,
)
ANYIO = Implementation(
    "anyio",
    "raw anyio: a memory object stream and a task per agent, a dict of futures for the fan-in",
    anyio_fanout,
    anyio_chain,
    anyio_idle,
)
POOL = Implementation(
    "pool",
    "the pool floor (genie's design with nothing else): a deque per agent and no task, one "
    "executor task draining a ready deque of mailboxes and awaiting each handler in a loop, "
    "a dict of futures for the fan-in",
    pool_fanout,
    pool_chain,
    pool_idle,
)
ENVELOPE = Implementation(
    "asyncio+envelope",
    "the floor carrying a bus's envelope: ids (a prefix and a counter), correlation, causation, "
    "sender, recipient, type and a timestamp per message, in a slotted class",
    envelope_fanout,
    envelope_chain,
)
