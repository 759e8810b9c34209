"""The executor pool: a few tasks that run mailboxes from one ready queue.

Why not a task per agent: an idle agent would then hold a parked task (several KB), and
starting a task per burst costs more than a whole hop. Here an executor that finishes a handler
takes the next ready mailbox at once, so a chain of agents runs without a task switch per hop.
It yields after ``batch`` handlers (64) without a yield, so other tasks (publishers, timers)
get their turn: a yield is a turn of the event loop, about what a delivery costs, so it comes
once a batch and not once a delivery. Waiting for work is a yield too, after which the count
starts again.

Handlers may block (sleep, request, I/O). So that blocked handlers never starve ready work, a
monitor task adds an executor whenever work is ready and no executor is free to take it (all
are inside blocked handlers). Executors beyond ``max_idle`` that find nothing to do exit, so an
idle runtime holds only a handful of tasks.

Each executor runs its handlers inside a cancel scope of its own and says which correlation it
is working for (``Worker.correlation``), so cancelling a request cancels exactly the handlers
running for it: the scope is replaced after it has been used.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import anyio

from ..._base.backend import Backend, Event
from ..._base.log import lazy_logger
from .mailbox import Mailbox

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["Executors", "Worker"]

_log = lazy_logger("genie.runtime")


class Worker:
    """One executor task: the cancel scope its handlers run in, and whom they run for."""

    __slots__ = ("cancelled", "correlation", "left", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.correlation: str | None = None
        # ``scope.cancel_called``, as a plain attribute: the executor reads it after every
        # handler, and only ``cancel`` cancels this scope.
        self.cancelled = False
        # Handlers left before the executor's next yield, counted down (``Executors.turn``).
        self.left = 0

    def cancel(self) -> None:
        self.cancelled = True
        self.scope.cancel()


class Executors:
    def __init__(
        self,
        tg: TaskGroup,
        run_one: Callable[[Mailbox, Worker], Awaitable[None]],
        backend: Backend,
        ready: deque[Mailbox] | None = None,
        *,
        batch: int = 64,
        max_idle: int = 4,
    ) -> None:
        self._tg = tg
        self._run_one = run_one
        self._new_event = backend.new_event
        self._checkpoint = backend.checkpoint
        self._stray_cancel = backend.stray_cancel
        self._batch = batch
        self._max_idle = max_idle
        # Mailboxes with a token, in the order their deliveries run.
        self.ready: deque[Mailbox] = deque() if ready is None else ready
        self._idle: deque[Event] = deque()
        self._yielding = 0
        self.count = 0
        self.workers: set[Worker] = set()
        self._signal = self._new_event()
        self._signalled = False

    def start(self) -> None:
        self._tg.start_soon(self._monitor, name="genie-executor-monitor")
        self._spawn()

    def woken(self, count: int) -> None:
        """``count`` mailboxes were just put in the ready queue: as many idle executors wake,
        and the monitor hears of the rest (it adds a hand if everyone is busy). A fan-out is
        told once, not once a mailbox."""
        idle = self._idle
        while idle:
            idle.popleft().set()
            count -= 1
            if not count:
                return
        if not self._signalled:
            self._signalled = True
            self._signal.set()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _spawn(self) -> None:
        self.count += 1
        self._tg.start_soon(self._executor, name="genie-executor")

    async def _monitor(self) -> None:
        while True:
            await self._signal.wait()
            self._signal = self._new_event()
            self._signalled = False
            # Everyone who could take the work is blocked inside a handler: add a hand.
            if self.ready and not self._idle and not self._yielding:
                self._spawn()

    def cancel(self, correlation_id: str) -> int:
        """Cancel the handlers running for ``correlation_id``; how many there were."""
        found = 0
        for worker in self.workers:
            if worker.correlation == correlation_id:
                worker.cancel()
                found += 1
        return found

    async def _executor(self) -> None:
        worker = Worker()
        self.workers.add(worker)
        try:
            while await self._work(worker):
                worker.scope = anyio.CancelScope()  # the last one cancelled a request's handler
                worker.cancelled = False
        finally:
            self.workers.discard(worker)
            self.count -= 1

    async def _work(self, worker: Worker) -> bool:
        """Run ready mailboxes until idle for good (False) or a request's handler running here
        was cancelled (True: a scope is entered once, so the caller makes a new one)."""
        ready = self.ready
        run_one = self._run_one
        batch = self._batch
        worker.left = batch
        with worker.scope:
            while True:
                while ready:
                    mailbox = ready.popleft()
                    if ready and not self._signalled and not self._idle:
                        # The handler may block while others wait: let the monitor judge.
                        self._signalled = True
                        self._signal.set()
                    # Runs ``mailbox``'s delivery and the rest of this worker's turn (``turn``).
                    await run_one(mailbox, worker)
                    if worker.cancelled:
                        return True  # even if the handler swallowed it: never reuse the scope
                    if not worker.left:
                        worker.left = batch
                        self._yielding += 1
                        try:
                            await self._between_handlers(self._checkpoint())
                        finally:
                            self._yielding -= 1
                if len(self._idle) >= self._max_idle:
                    return False
                event = self._new_event()
                self._idle.append(event)
                try:
                    await self._between_handlers(event.wait())
                finally:
                    if event in self._idle:
                        self._idle.remove(event)
                # Waiting was a yield: every other task has had its turn since, so the count
                # to the next one starts again.
                worker.left = batch
        return True  # run_one re-raised the cancellation of this scope, which ends here

    async def _between_handlers(self, wait: Awaitable[None]) -> None:
        """Await ``wait`` (a yield, or the wait for work), where no handler runs: a stray
        native cancel that lands here (asyncio's ``task.cancel()`` a handler set off and
        returned before it landed) is nobody's delivery, and stops nothing. Withdrawn and
        logged; the executor goes on, its wait ended early (a wait for work looks again)."""
        try:
            await wait
        except anyio.get_cancelled_exc_class():
            if not self._stray_cancel():
                raise
            _log.warning(
                "a cancel of an executor's task that no cancel scope made (a handler's own "
                "task.cancel() that landed after it returned) was withdrawn",
                extra={"agent_id": "-"},
            )

    def turn(self, worker: Worker, first: Mailbox) -> Iterator[Mailbox]:
        """The mailboxes ``worker`` runs one delivery of, in a row, from ``first``: the runner
        loops over them (``DeliveryRunner.run``), so consecutive deliveries need no coroutine
        each. The order and the stops are ``_work``'s own: the ready queue's next mailbox,
        until it is empty, ``worker`` is cancelled (checked after each delivery, before it
        counts) or its ``left`` handlers before a yield are done; ``_work`` then does what it
        did after each ``run_one`` (return, yield). A delivery that raises ends the turn."""
        ready = self.ready
        mailbox = first
        left = worker.left  # counted down here, told to ``_work`` when the turn ends
        try:
            while True:
                yield mailbox
                if worker.cancelled:
                    return
                left -= 1
                if not left or not ready:
                    return
                mailbox = ready.popleft()
                if ready and not self._signalled and not self._idle:
                    # As in ``_work``: the handler may block while others wait.
                    self._signalled = True
                    self._signal.set()
        finally:
            worker.left = left
