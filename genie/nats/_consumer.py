"""A worker's pull consumer of one agent: its configuration, fetching what is ready, and
the in-progress beats that keep a long handler's delivery from going to another worker
(docs/scale-out.md, "The mapping")."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from .._base.log import lazy_logger
from .._runtime.local.mailbox import Mailbox
from ._names import NatsNames

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = [
    "FetchCounts",
    "InProgressBeats",
    "ack_wait_of",
    "batch_limit",
    "consumer_config",
    "fetch_ready",
]

_log = lazy_logger("genie.nats")


def ack_wait_of(mb: Mailbox, ack_wait: float | None) -> float:
    """The ack wait of ``mb``'s consumer: ``ack_wait`` if given, else from its deadline."""
    if ack_wait is not None:
        return ack_wait
    deadline = mb.options.deadline
    return max(2.0, deadline) if deadline is not None else 30.0


def consumer_config(names: NatsNames, mb: Mailbox, ack_wait: float | None) -> Any:
    from nats.js.api import AckPolicy, ConsumerConfig

    return ConsumerConfig(
        durable_name=names.consumer(mb.id),
        filter_subject=names.agent(mb.id),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait_of(mb, ack_wait),
        max_ack_pending=mb.max_concurrency,
        max_deliver=-1,  # we count deliveries ourselves, and end the N-th with term()
    )


# The most work, in seconds of the worker's loop, a worker fetches before it can start it:
# what it holds unstarted is out of every other worker's reach (docs/scale-out.md, "Fetch
# sizing"). A handler that blocks the loop 4 ms a delivery gets batches of about 12 (or 6
# with a second agent's handlers sharing the loop); one that awaits gets every free slot.
FETCH_AHEAD = 0.05


def batch_limit(pace: float, most: int) -> int:
    """The next batch of a consumer whose last batch took its loop ``pace`` s per delivery
    to start: what it would start in ``FETCH_AHEAD``, at least 1 and at most ``most``."""
    if pace <= 0:
        return most
    return max(1, min(most, int(FETCH_AHEAD / pace)))


@dataclass
class FetchCounts:
    """What a worker's consumer of one agent has pulled and started so far (monotonic, but
    ``unstarted``): the counts an A/B of the fetch sizing reads (docs/scale-out.md,
    "Fetch sizing")."""

    fetches: int = 0  # pull requests (fetch calls), empty ones included
    fetched: int = 0  # deliveries they brought
    started: int = 0  # deliveries whose handler run began
    unstarted: int = 0  # fetched and not yet started, now
    most_unstarted: int = 0  # the most ever held unstarted at once
    # Seconds each delivery waited between its fetch and its start, summed: divided by
    # ``started``, the mean time a delivery sat in this worker out of every other's reach.
    unstarted_seconds: float = 0.0


async def fetch_ready(
    psub: Any, most: int, pending: int = 0, wait: float = 1.0, late: float = 0.0
) -> list[Msg]:
    """Up to ``most`` deliveries in one round trip while the server says ``pending`` more
    wait (the ``num_pending`` of the last one fetched); else wait up to ``wait`` s for one.

    nats-py's ``fetch(n)`` that finds fewer than n waits out its timeout for the rest,
    holding what it got out of the other workers' reach meanwhile: a batch is asked for only
    when the server said it is there, and with a short timeout in case another worker took it.
    The timeout counts from the request's making, and the request is written and its answer
    read only when the event loop gets to them: ``late``, how late the loop may be (the last
    batch's seconds per delivery), is added, or a loop whose other handlers keep it busy gets
    the first of a batch only.
    """
    from nats.errors import Error as NatsError

    if pending > 0 and most > 1:
        with contextlib.suppress(NatsError, TimeoutError):
            batch: list[Msg] = await psub.fetch(min(most, pending), timeout=0.005 + late)
            return batch
    try:
        one: list[Msg] = await psub.fetch(1, timeout=wait)
    except (NatsError, TimeoutError):
        return []
    return one


class InProgressBeats:
    """Tells the server which running deliveries are alive (each a third of its ack wait
    after the last beat), so a long handler is not handed to another worker. One loop for
    all: a task per delivery cost more than most handlers."""

    def __init__(self) -> None:
        # Running deliveries to beat for: id(raw) -> (raw, beat interval, next beat due).
        self._alive: dict[int, tuple[Msg, float, float]] = {}

    @contextlib.contextmanager
    def alive(self, raw: Msg, ack_wait: float) -> Iterator[None]:
        """Beat for ``raw`` while the block runs."""
        beat = ack_wait / 3
        self._alive[id(raw)] = (raw, beat, anyio.current_time() + beat)
        try:
            yield
        finally:
            del self._alive[id(raw)]

    async def run(self, every: float) -> None:
        """Look for the beats due every ``every`` s, for ever."""
        while True:
            await anyio.sleep(every)
            now = anyio.current_time()
            for key, (raw, beat, due) in list(self._alive.items()):
                if due <= now and key in self._alive:
                    self._alive[key] = (raw, beat, now + beat)
                    try:
                        await raw.in_progress()
                    except Exception:  # a broker restart: the next beat tries again
                        _log.debug("in-progress beat failed", exc_info=True)
