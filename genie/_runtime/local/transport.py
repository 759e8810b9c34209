"""The default transport: a bounded mailbox per agent and a small pool of executors in this
process."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING

from ..._base.backend import Backend
from ..._message.envelope import Message
from ..transport import NO_WORKERS, WorkerCounts
from .executor import Executors, Worker
from .mailbox import Mailbox, Queued, hold

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["LocalTransport"]


class LocalTransport:
    """Mailboxes and executors in this process: the default, and the fast path."""

    def __init__(self) -> None:
        # The runtime's agent registry once ``attach_agents``ed; empty until then.
        self.mailboxes: Mapping[str, Mailbox] = {}
        self.executors: Executors | None = None
        # The executors' ready queue: mailboxes with a token, run in this order.
        self.ready_queue: deque[Mailbox] = deque()

    def attach_agents(self, mailboxes: Mapping[str, Mailbox]) -> None:
        self.mailboxes = mailboxes

    def start(
        self,
        tg: TaskGroup,
        run: Callable[[Mailbox, Worker], Awaitable[None]],
        backend: Backend,
    ) -> None:
        self.executors = Executors(tg, run, backend, self.ready_queue)
        self.executors.start()

    def turn(self, worker: Worker, first: Mailbox) -> Iterable[Mailbox]:
        return (first,) if self.executors is None else self.executors.turn(worker, first)

    def has_room(self, recipient: str) -> bool:
        return self.mailboxes[recipient].has_room

    async def wait_for_room(self, recipient: str) -> None:
        await self.mailboxes[recipient].wait_for_room()

    def hold(self, recipients: Sequence[str], start: int) -> int:
        return start + hold(map(self.mailboxes.get, islice(recipients, start, None)))

    def release(self, recipient: str) -> None:
        self.mailboxes[recipient].release()

    def put(self, item: Queued, recipient: str) -> None:
        mb = self.mailboxes[recipient]
        if mb.push(item) and self.executors is not None:
            self.ready_queue.append(mb)
            self.executors.woken(1)

    def put_held(self, item: Queued, recipients: Sequence[str]) -> None:
        mailboxes = self.mailboxes
        executors = self.executors
        ready = self.ready_queue
        before = len(ready)
        for rid in recipients:
            mb = mailboxes[rid]
            if mb.push(item, True) and executors is not None:
                ready.append(mb)
        if executors is not None and len(ready) > before:
            executors.woken(len(ready) - before)  # of the whole fan-out at once

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

    def workers(self) -> WorkerCounts:
        ex = self.executors
        if ex is None:
            return NO_WORKERS
        return WorkerCounts(ex.count, ex.idle, len(ex.ready))
