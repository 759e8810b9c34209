"""A bounded FIFO mailbox per agent. It holds messages, not tasks: an idle agent costs a few
hundred bytes (its queue is allocated by its first message)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import anyio

from ..._agent.agent import Agent, BoundHandler, SyncBinder, handler_table
from ..._base.record import Record
from ..._base.resilience import CircuitBreaker
from ..._message.envelope import Message
from ..._message.payload import Payload
from ..options import AgentOptions

__all__ = ["NO_MESSAGES", "Handoff", "Mailbox", "MailboxStatistics", "hold"]


class Handoff:
    """A delivery its agent failed, handed to that agent's fallback: queued in the fallback's
    mailbox like a message, so the fallback's concurrency, order and statistics hold. It is
    the same delivery (still in flight), not a new one."""

    __slots__ = ("attempts", "earlier", "error", "failed_agent", "message", "reason")

    def __init__(
        self,
        message: Message,
        failed_agent: str,
        reason: str,
        error: BaseException,
        attempts: int,
        earlier: tuple[str, ...],
    ) -> None:
        self.message = message
        self.failed_agent = failed_agent
        self.reason = reason
        self.error = error
        self.attempts = attempts
        # The tracebacks of its attempts before the one that ended in ``error``
        # (``remember_attempt``): its dead letter keeps them if the fallback fails too.
        self.earlier = earlier


Queued = Message | Handoff

# A mailbox that never held a message (or never had a publisher waiting) shares these empty
# queues, so an idle agent costs no queue of its own: nothing ever appends to them, ``push`` and
# ``wait_for_room`` swap in the mailbox's own deque first.
NO_MESSAGES: deque[Queued] = deque()
_NO_WAITERS: deque[anyio.Event] = deque()


class MailboxStatistics(Record):
    agent_id: str
    depth: int
    capacity: int
    max_concurrency: int
    active: int
    waiting_publishers: int
    high_water: int
    overdrafts: int
    handled: int
    failed: int
    circuit: str


class Mailbox:
    """One agent's queue and the bookkeeping the executors need.

    ``busy`` counts this mailbox's tokens: those waiting in the executors' ready queue
    (``scheduled``) and those of the handlers running now (``active``, the difference).
    Invariants: ``scheduled <= len(queue)`` (every token finds a message) and ``busy <=
    max_concurrency``; tokens take messages from the front, so the messages of one agent start
    in arrival order. ``push`` (the only way in) hands out tokens; the delivery runner
    (``DeliveryRunner.run``, the only way out) turns a token into a running delivery (it
    leaves ``scheduled``, still ``busy``) and, when its handler has finished, passes that
    token to the next message waiting, or gives it back.

    Outside publishers never take the queue past ``capacity``: a publisher woken from
    ``wait_for_room`` holds a ``reserved`` slot until it pushes, so a newcomer cannot take it,
    and ``len(queue) + reserved <= capacity`` for them. Sends from handlers (overdraft) may go
    past it; they never wait.
    """

    __slots__ = (
        "agent",
        "breaker",
        "busy",
        "capacity",
        "failed",
        "failing",
        "handled",
        "handlers",
        "high_water",
        "id",
        "max_concurrency",
        "options",
        "overdrafts",
        "queue",
        "reserved",
        "scheduled",
        "waiters",
    )

    def __init__(self, agent: Agent, options: AgentOptions, bind_sync: SyncBinder) -> None:
        self.agent = agent
        # Read once, when the agent is added: a BaseAgent's handlers, bound (see handler_table);
        # its plain ``def`` handlers by ``bind_sync``, to run off the event loop.
        self.handlers: dict[type[Payload], BoundHandler] = handler_table(agent, bind_sync)
        self.id = agent.id
        self.options = options
        self.capacity = options.mailbox_size
        self.max_concurrency = options.max_concurrency
        self.breaker = CircuitBreaker(options.breaker) if options.breaker else None
        # The breaker while it counts failures, else None: the delivery runner asks it before
        # a first attempt (it may be tripped) and closes it after a success; a breaker without
        # failures needs neither, so a healthy agent's delivery reads one None.
        self.failing: CircuitBreaker | None = None
        self.queue = NO_MESSAGES
        self.waiters = _NO_WAITERS
        self.scheduled = 0
        self.reserved = 0
        self.busy = 0
        self.high_water = 0
        self.overdrafts = 0
        self.handled = 0
        self.failed = 0

    @property
    def active(self) -> int:
        """Handlers of this agent running now."""
        return self.busy - self.scheduled

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.capacity

    @property
    def has_room(self) -> bool:
        """Room for an outside publisher now, with nobody waiting ahead of it."""
        return not self.waiters and len(self.queue) + self.reserved < self.capacity

    def push(self, msg: Queued, held: bool = False) -> bool:
        """Queue ``msg`` (in the slot the publisher held, if ``held``); True if the executors
        should get a new token for this mailbox. Every delivery enters a mailbox here."""
        if held:
            self.reserved -= 1
        queue = self.queue
        if queue is NO_MESSAGES:
            queue = self.queue = deque()
        queue.append(msg)
        depth = len(queue)
        if depth > self.high_water:
            self.high_water = depth
        if self.busy < self.max_concurrency and self.scheduled < depth:
            self.scheduled += 1
            self.busy += 1
            return True
        return False

    def run_now(self) -> None:
        """Give the message just pushed a token that ``push`` did not (the agent already runs
        ``max_concurrency`` handlers), for a transport that runs each delivery as it queues
        it and bounds the concurrency itself (NATS: the consumers' ``max_ack_pending``): it
        may take ``busy`` past ``max_concurrency`` for that delivery."""
        self.scheduled += 1
        self.busy += 1

    def wake_publishers(self) -> None:
        """A slot freed: the publishers waiting for room go next, as many as fit."""
        # The longest-waiting publishers go next, each with a slot reserved for it.
        while self.waiters and len(self.queue) + self.reserved < self.capacity:
            self.reserved += 1
            self.waiters.popleft().set()

    async def wait_for_room(self) -> None:
        """Wait (FIFO among publishers) for a slot; on return one is reserved for the caller,
        who must push (then drop the reservation) or ``release`` it before its next checkpoint."""
        if hold((self,)):
            return
        event = anyio.Event()
        if self.waiters is _NO_WAITERS:
            self.waiters = deque()
        self.waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event in self.waiters:
                self.waiters.remove(event)
            else:
                self.release()  # we were woken but leave: pass the turn on
            raise

    def release(self) -> None:
        """Give back a reserved slot without using it."""
        self.reserved -= 1
        self.wake_publishers()

    def wake_all(self) -> None:
        """The runtime closed: every waiting publisher wakes (to ``RuntimeClosedError``)."""
        while self.waiters:
            self.reserved += 1
            self.waiters.popleft().set()

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            agent_id=self.id,
            depth=len(self.queue),
            capacity=self.capacity,
            max_concurrency=self.max_concurrency,
            active=self.active,
            waiting_publishers=len(self.waiters),
            high_water=self.high_water,
            overdrafts=self.overdrafts,
            handled=self.handled,
            failed=self.failed,
            circuit=self.breaker.state if self.breaker else "none",
        )


def hold(boxes: Iterable[Mailbox | None]) -> int:
    """Hold a slot for an outside publisher in each of ``boxes`` in turn (None: no agent of
    this runtime, passed over) while one is free now with nobody waiting ahead (``has_room``):
    one mailbox's or a whole publish's fan-out in one call. Returns how many of ``boxes`` it
    passed: all of them when every slot was held, else the index of the first without room
    (the publisher waits for that one, ``wait_for_room``)."""
    passed = -1
    for passed, mb in enumerate(boxes):
        if mb is not None:
            if mb.waiters or len(mb.queue) + mb.reserved >= mb.capacity:
                return passed
            mb.reserved += 1
    return passed + 1
