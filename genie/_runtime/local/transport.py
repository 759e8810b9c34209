"""The default transport: a bounded mailbox per agent and a small pool of executors in this
process."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import anyio

from ..._message.envelope import Message
from .executor import Executors, Worker
from .mailbox import NO_MESSAGES, Mailbox, Queued

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["LocalTransport"]


class LocalTransport:
    """Mailboxes and executors in this process: the default, and the fast path."""

    def __init__(self) -> None:
        self.mailboxes: dict[str, Mailbox] = {}
        self.executors: Executors | None = None

    def start(
        self,
        tg: TaskGroup,
        run: Callable[[Mailbox, Worker], Awaitable[None]],
        new_event: Callable[[], anyio.Event],
    ) -> None:
        self.executors = Executors(tg, run, new_event)
        self.executors.start()

    def has_room(self, recipient: str) -> bool:
        return self.mailboxes[recipient].has_room

    async def wait_for_room(self, recipient: str) -> None:
        await self.mailboxes[recipient].wait_for_room()

    def hold(self, recipients: Sequence[str], start: int) -> int:
        # One call a publish, not one a recipient: this runs for each of a fan-out's agents.
        mailboxes = self.mailboxes
        for i in range(start, len(recipients)):
            mb = mailboxes.get(recipients[i])
            if mb is None:
                continue
            if mb.waiters or len(mb.queue) + mb.reserved >= mb.capacity:  # ``has_room``, inlined
                return i
            mb.reserved += 1
        return len(recipients)

    def release(self, recipient: str) -> None:
        self.mailboxes[recipient].release()

    def put(self, item: Queued, recipient: str) -> None:
        mb = self.mailboxes[recipient]
        # ``Mailbox.push``, inlined: once a delivery (the same steps, in the same order).
        queue = mb.queue
        if queue is NO_MESSAGES:
            queue = mb.queue = deque()
        queue.append(item)
        depth = len(queue)
        if depth > mb.high_water:
            mb.high_water = depth
        if mb.scheduled + mb.active < mb.max_concurrency and mb.scheduled < depth:
            mb.scheduled += 1
            if self.executors is not None:
                self.executors.schedule(mb)

    def put_held(self, item: Queued, recipients: Sequence[str]) -> None:
        # ``put`` for each, its slot given back first: one call a publish, not one a recipient.
        mailboxes = self.mailboxes
        executors = self.executors
        for rid in recipients:
            mb = mailboxes[rid]
            mb.reserved -= 1
            queue = mb.queue
            if queue is NO_MESSAGES:
                queue = mb.queue = deque()
            queue.append(item)
            depth = len(queue)
            if depth > mb.high_water:
                mb.high_water = depth
            if mb.scheduled + mb.active < mb.max_concurrency and mb.scheduled < depth:
                mb.scheduled += 1
                if executors is not None:
                    executors.schedule(mb)

    def cancel(self, correlation_id: str) -> int:
        return self.executors.cancel(correlation_id) if self.executors is not None else 0

    def forward(self, msg: Message) -> bool:
        return False  # one process: nobody else could receive it

    def drain_queues(self) -> Iterator[tuple[Mailbox, Queued]]:
        """At close: take every queued delivery out, and wake every waiting publisher."""
        for mb in self.mailboxes.values():
            while mb.queue:
                yield mb, mb.queue.popleft()
            mb.wake_all()
