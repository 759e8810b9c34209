"""The guarantees floor (``pool+guarantees``): the pool floor carrying genie's guarantees,
written inline in the fewest Python calls, with no structure at all.

The pool floor is genie's executor design with nothing else; genie is that design with its
guarantees, kept by one body per concept. Between the two sit the guarantees themselves, which
no design can drop while keeping them. This floor measures that part: the pool floor's
mailboxes and one executor, plus, per message and per delivery, the cheapest form of what
genie promises:

- an envelope per message: genie's thirteen fields, an id from a prefix and a counter, the
  clock's time; a reply or an output inherits correlation, trace, classification and metadata
  from what it answers, with causation and hops + 1;
- a context per delivery, through which the handler builds its reply or output;
- routing by type or recipient from a table, and an output's type checked as registered;
- admission: the hop limit and the correlation's delivery budget, one question a fan-out;
- a correlation per request: deliveries in flight and charged to its budget, its cancelled
  flag read before each delivery, ended when nothing is in flight and nobody waits;
- the accounting identity's counters (delivered, handled, denied, dead-lettered, in flight)
  and each agent's handled count;
- room for outside publishers: a mailbox's capacity checked before a publish;
- failure isolation: a handler's exception is caught and counted as a dead letter;
- the fan-in: a reply (a message with a cause) offered to its correlation's gather, which
  ends at its count.

What it leaves out, and genie has: retries and the circuit breaker, deadlines, fallbacks,
waiting for room, concurrency above one per agent, cancelling a running handler, a hand added
when every executor is inside a handler that blocks (genie's monitor), observers, taps,
policies, the transport seam, the audit trail. So it is a lower bound of what genie's
guarantees cost: genie's ratio to it is what its structure and those features cost, and its
ratio to the pool floor is the least any implementation of the guarantees can reach.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from genie import Payload

from .workloads import Ask, Gathered, Hop, Implementation, Reply, Request, WorkloadError, _check

# The limits genie's ``Limits`` defaults to, and its default mailbox capacity.
MAX_HOPS = 32
BUDGET = 10_000
CAPACITY = 1024
BATCH = 64  # deliveries between the executor's yields, as genie's and the pool floor's
_NO_MESSAGES: deque[Any] = deque()  # an idle mailbox's, shared (as in the pool floor)


class Envelope:
    """A message: genie's ``Message`` fields, in slots."""

    __slots__ = (
        "causation_id",
        "classification",
        "correlation_id",
        "created_at",
        "hops",
        "id",
        "metadata",
        "payload",
        "recipient",
        "role",
        "sender",
        "trace_id",
        "type",
    )
    id: str
    type: str
    sender: str
    recipient: str | None
    correlation_id: str
    causation_id: str | None
    trace_id: str
    role: str
    classification: str
    hops: int
    created_at: float
    metadata: Mapping[str, Any]
    payload: Payload


class Gather:
    __slots__ = ("future", "needed", "replies")

    def __init__(self, needed: int, future: asyncio.Future[list[Envelope]]) -> None:
        self.needed = needed
        self.replies: list[Envelope] = []
        self.future = future


class Correlation:
    __slots__ = ("cancelled", "deliveries", "gather", "id", "in_flight")

    def __init__(self, cid: str, gather: Gather | None) -> None:
        self.id = cid
        self.in_flight = 0
        self.deliveries = 0  # charged to the budget
        self.cancelled = False
        self.gather = gather


Handler = Callable[[Any, "Context"], Awaitable[Envelope | None]]


class Mailbox:
    __slots__ = ("handled", "handler", "id", "messages", "scheduled")

    def __init__(self, agent_id: str, handler: Handler) -> None:
        self.id = agent_id
        self.handler = handler
        self.messages: deque[Envelope] = _NO_MESSAGES
        self.scheduled = False
        self.handled = 0


class Context:
    """A delivery's context: the reply or output it builds inherits from the message."""

    __slots__ = ("agent_id", "message", "new_id")

    def __init__(self, agent_id: str, message: Envelope, new_id: Callable[[], str]) -> None:
        self.agent_id = agent_id
        self.message = message
        self.new_id = new_id

    def reply(self, payload: Payload) -> Envelope:
        return self.emit(payload, self.message.sender)

    def emit(self, payload: Payload, recipient: str | None = None) -> Envelope:
        parent = self.message
        out = Envelope()
        out.id = self.new_id()
        out.type = payload.message_type
        out.sender = self.agent_id
        out.recipient = recipient
        out.correlation_id = parent.correlation_id
        out.causation_id = parent.id
        out.trace_id = parent.trace_id
        out.role = "agent"
        out.classification = parent.classification
        out.hops = parent.hops + 1
        out.created_at = time.time()
        out.metadata = parent.metadata
        out.payload = payload
        return out


class Bus:
    """Mailboxes, one executor, the correlations and the counts."""

    def __init__(self, registered: frozenset[type[Payload]], max_hops: int = MAX_HOPS) -> None:
        prefix = uuid.uuid4().hex[:11] + "-"
        self.new_id: Callable[[], str] = map((prefix + "%x").__mod__, itertools.count(1)).__next__
        self.registered = registered
        self.max_hops = max_hops
        self.mailboxes: dict[str, Mailbox] = {}
        self.subscribers: dict[str, tuple[Mailbox, ...]] = {}
        self.correlations: dict[str, Correlation] = {}
        self.ready: deque[Mailbox] = deque()
        self.waiter: asyncio.Future[None] | None = None  # set while the executor is idle
        self.delivered = self.handled = self.denied = self.dead_lettered = self.in_flight = 0
        self.collected = 0

    def message(self, payload: Payload, sender: str, recipient: str | None = None) -> Envelope:
        msg = Envelope()
        msg.id = msg.correlation_id = msg.trace_id = self.new_id()
        msg.type = payload.message_type
        msg.sender = sender
        msg.recipient = recipient
        msg.causation_id = None
        msg.role = "user"
        msg.classification = "internal"
        msg.hops = 0
        msg.created_at = time.time()
        msg.metadata = {}
        msg.payload = payload
        return msg

    def publish(self, msg: Envelope, gather: Gather | None) -> None:
        """From outside: the request's correlation, room checked, then queued."""
        corr = self.correlations[msg.id] = Correlation(msg.id, gather)
        boxes = (
            self.subscribers.get(msg.type, ())
            if msg.recipient is None
            else (self.mailboxes[msg.recipient],)
        )
        for box in boxes:
            if len(box.messages) >= CAPACITY:
                raise WorkloadError(f"the mailbox of {box.id} is full: the floor never waits")
        self.deliver(msg, corr, boxes)

    def deliver(self, msg: Envelope, corr: Correlation, boxes: tuple[Mailbox, ...]) -> None:
        n = len(boxes)
        self.delivered += n
        corr.deliveries += n
        if msg.hops > self.max_hops or corr.deliveries > BUDGET:  # one question a fan-out
            self.denied += n
            return
        ready = self.ready
        for box in boxes:
            messages = box.messages
            if messages is _NO_MESSAGES:
                messages = box.messages = deque()
            messages.append(msg)
            if not box.scheduled:
                box.scheduled = True
                ready.append(box)
        self.in_flight += n
        corr.in_flight += n
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.set_result(None)

    def route(self, out: Envelope, corr: Correlation) -> None:
        """A handler's output: to its correlation's gather if it answers, else to its agents."""
        if type(out.payload) not in self.registered:
            raise WorkloadError(f"{out.type} is not registered")
        gather = corr.gather
        if gather is not None and out.causation_id is not None:
            self.delivered += 1
            corr.deliveries += 1
            if out.hops > self.max_hops or corr.deliveries > BUDGET:
                self.denied += 1
                return
            self.collected += 1
            replies = gather.replies
            replies.append(out)
            if len(replies) >= gather.needed:
                corr.gather = None
                gather.future.set_result(replies)
            return
        if out.recipient is None:
            boxes = self.subscribers.get(out.type, ())
        else:
            box = self.mailboxes.get(out.recipient)
            boxes = () if box is None else (box,)
        if boxes:
            self.deliver(out, corr, boxes)

    async def execute(self) -> None:
        ready = self.ready
        correlations = self.correlations
        new_id = self.new_id
        loop = asyncio.get_running_loop()
        while True:
            done = 0
            while ready and done < BATCH:
                box = ready.popleft()
                messages = box.messages
                msg = messages.popleft()
                corr = correlations[msg.correlation_id]
                if corr.cancelled:
                    self.dead_lettered += 1
                else:
                    try:
                        out = await box.handler(msg.payload, Context(box.id, msg, new_id))
                    except Exception:
                        self.dead_lettered += 1  # never past its delivery
                    else:
                        self.handled += 1
                        box.handled += 1
                        if out is not None:
                            self.route(out, corr)
                self.in_flight -= 1
                corr.in_flight -= 1
                if not corr.in_flight and corr.gather is None:
                    del correlations[corr.id]
                done += 1
                if messages:
                    ready.append(box)  # its next message after the others' (fair)
                else:
                    box.scheduled = False
            if ready:
                await asyncio.sleep(0)
            else:
                self.waiter = loop.create_future()
                await self.waiter

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        executor = asyncio.create_task(self.execute())
        failed: list[BaseException] = []

        def ended(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and (exc := task.exception()) is not None:
                failed.append(exc)
                for corr in self.correlations.values():  # whoever waits hears why
                    if corr.gather is not None and not corr.gather.future.done():
                        corr.gather.future.set_exception(
                            WorkloadError(f"the guarantees floor failed: {exc!r}")
                        )

        executor.add_done_callback(ended)
        try:
            yield
        finally:
            executor.cancel()
            await asyncio.gather(executor, return_exceptions=True)
        if failed:
            raise WorkloadError(f"the guarantees floor failed: {failed[0]!r}")

    def identity_holds(self) -> bool:
        """``delivered == handled + denied + dead_lettered + in_flight`` (a gathered reply is
        delivered and handled at once)."""
        handled = self.handled + self.collected
        return self.delivered == handled + self.denied + self.dead_lettered + self.in_flight


@asynccontextmanager
async def guarantees_fanout(n: int, blob: str) -> AsyncIterator[Ask]:
    bus = Bus(frozenset({Request, Reply}))

    def worker(index: int) -> Handler:
        async def on_request(payload: Request, ctx: Context) -> Envelope:
            return ctx.reply(Reply(seq=payload.seq, agent=index, blob=payload.blob))

        return on_request

    boxes = tuple(Mailbox(f"w{i}", worker(i)) for i in range(n))
    bus.mailboxes.update((box.id, box) for box in boxes)
    bus.subscribers[Request.message_type] = boxes

    seq = itertools.count()

    async def ask() -> Gathered:
        req = Request(seq=next(seq), blob=blob)
        msg = bus.message(req, "caller")
        future: asyncio.Future[list[Envelope]] = asyncio.get_running_loop().create_future()
        bus.publish(msg, Gather(n, future))
        return req, await future

    async with bus.running():
        yield ask
    _check(int(bus.identity_holds()), 1, "pool+guarantees accounting identity")


@asynccontextmanager
async def guarantees_chain(agents: int, blob: str) -> AsyncIterator[Ask]:
    bus = Bus(frozenset({Hop}), max_hops=agents + 1)
    arrived: asyncio.Queue[Hop] = asyncio.Queue()

    def relay(next_id: str) -> Handler:
        async def on_hop(payload: Hop, ctx: Context) -> Envelope:
            return ctx.emit(Hop(n=payload.n + 1, blob=payload.blob), next_id)

        return on_hop

    async def sink(payload: Hop, ctx: Context) -> None:
        arrived.put_nowait(payload)

    bus.mailboxes["sink"] = Mailbox("sink", sink)
    for i in range(agents):
        next_id = f"a{i + 1}" if i < agents - 1 else "sink"
        bus.mailboxes[f"a{i}"] = Mailbox(f"a{i}", relay(next_id))

    async def ask() -> None:
        bus.publish(bus.message(Hop(n=0, blob=blob), "caller", "a0"), None)
        _check((await arrived.get()).n, agents, "pool+guarantees hops")

    async with bus.running():
        yield ask
    _check(int(bus.identity_holds()), 1, "pool+guarantees accounting identity")


@asynccontextmanager
async def guarantees_idle(count: int) -> AsyncIterator[None]:
    bus = Bus(frozenset({Request, Reply}))

    async def on_request(payload: Request, ctx: Context) -> None:
        return None

    bus.mailboxes.update((f"w{i}", Mailbox(f"w{i}", on_request)) for i in range(count))
    async with bus.running():
        await asyncio.sleep(0)  # the executor runs to its first await: idle
        yield
    _check(len(bus.mailboxes), count, "pool+guarantees idle agents")


GUARANTEES = Implementation(
    "pool+guarantees",
    "the guarantees floor: the pool floor carrying genie's guarantees inline (an envelope per "
    "message, a context per delivery, routing, the hop limit and budget, correlations, the "
    "accounting identity, room for publishers, failure isolation, the fan-in)",
    guarantees_fanout,
    guarantees_chain,
    guarantees_idle,
)
