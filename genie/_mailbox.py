"""A bounded FIFO mailbox per agent. It holds messages, not tasks: an idle agent costs a few
hundred bytes (its queue is allocated by its first message)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import anyio

from ._agent import Agent
from ._message import Message
from ._supervisor import AgentOptions, CircuitBreaker

__all__ = ["Mailbox", "MailboxStatistics"]

# An empty deque takes 760 bytes, so a mailbox that never held a message (or never had a
# publisher waiting) shares these instead: nothing ever appends to them, the mailbox swaps in
# its own deque first. 10,000 idle agents cost ~1.5 KB less each.
_NO_MESSAGES: deque[Message] = deque()
_NO_WAITERS: deque[anyio.Event] = deque()


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
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

    ``scheduled`` counts this mailbox's tokens in the executors' ready queue, ``active`` the
    handlers running now. Invariants: ``scheduled <= len(queue)`` (every token finds a message)
    and ``scheduled + active <= max_concurrency``; tokens take messages from the front, so the
    messages of one agent start in arrival order.
    """

    __slots__ = (
        "active",
        "agent",
        "breaker",
        "capacity",
        "failed",
        "handled",
        "high_water",
        "id",
        "max_concurrency",
        "options",
        "overdrafts",
        "queue",
        "scheduled",
        "waiters",
    )

    def __init__(self, agent: Agent, options: AgentOptions) -> None:
        self.agent = agent
        self.id = agent.id
        self.options = options
        self.capacity = options.mailbox_size
        self.max_concurrency = options.max_concurrency
        self.breaker = CircuitBreaker(options.breaker) if options.breaker else None
        self.queue = _NO_MESSAGES
        self.waiters = _NO_WAITERS
        self.scheduled = 0
        self.active = 0
        self.high_water = 0
        self.overdrafts = 0
        self.handled = 0
        self.failed = 0

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.capacity

    def push(self, msg: Message) -> bool:
        """Queue ``msg``; True if the executors should get a new token for this mailbox."""
        queue = self.queue
        if queue is _NO_MESSAGES:
            queue = self.queue = deque()
        queue.append(msg)
        depth = len(queue)
        if depth > self.high_water:
            self.high_water = depth
        if self.scheduled + self.active < self.max_concurrency and self.scheduled < depth:
            self.scheduled += 1
            return True
        return False

    def pop(self) -> Message:
        self.scheduled -= 1
        self.active += 1
        msg = self.queue.popleft()
        if self.waiters and len(self.queue) < self.capacity:
            self.waiters.popleft().set()  # the longest-waiting publisher goes next
        return msg

    def done(self) -> bool:
        """A handler finished; True if the mailbox should be scheduled again."""
        self.active -= 1
        if self.scheduled < len(self.queue) and self.scheduled + self.active < self.max_concurrency:
            self.scheduled += 1
            return True
        return False

    async def wait_for_room(self) -> None:
        """Wait (FIFO among publishers) until the mailbox is below capacity."""
        if not self.waiters and not self.full:
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
            elif self.waiters and not self.full:
                self.waiters.popleft().set()  # we were woken but leave: pass the turn on
            raise

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
