"""Cancelled correlations of a namespace, shared by every process through a JetStream stream.

``Runtime.cancel`` (and an ``ask`` that times out) in one process appends the correlation id
to the namespace's cancel stream; every worker follows the stream into memory, cancels the
handlers it runs for that correlation, and dead-letters the correlation's deliveries it takes
afterwards without running them (kind ``cancelled``, as one process does). A stream and not
a plain subject, so a worker that starts (or reconnects) later still knows what was cancelled.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio

from .._base.log import lazy_logger
from ._wire import MSG_ID, bound

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

__all__ = ["NatsCancellations"]

_log = lazy_logger("genie.nats")


class NatsCancellations:
    """The cancelled correlations of the stream ``stream`` (one subject, ``subject``).

    ``NatsTransport`` makes one per process (``transport.cancellations``); ``follow`` keeps in
    memory what the stream keeps (by its limits of age and count, as ``follow`` found them),
    so the check a worker makes per delivery never waits for the broker, and a delivery of
    any correlation the stream lists is dead-lettered, by a worker that follows it from long
    ago as by one that starts now.
    """

    def __init__(self, stream: str, subject: str) -> None:
        self.stream = stream
        self.subject = subject
        # Cancelled correlations, oldest cancel first, with when the stream stored it.
        self._cancelled: OrderedDict[str, datetime] = OrderedDict()
        self.loaded = anyio.Event()  # what the stream held when following began is in memory

    def __contains__(self, correlation_id: str) -> bool:
        return correlation_id in self._cancelled

    async def cancel(self, js: JetStreamContext, correlation_id: str) -> None:
        """Append ``correlation_id`` (once: a second cancel of it is dropped by the server)."""
        from nats.errors import Error as NatsError

        delay = 0.05
        while True:
            try:
                await js.publish(
                    self.subject,
                    correlation_id.encode(),
                    headers={MSG_ID: f"cancel:{correlation_id}"},
                    timeout=2.0,
                )
            except (NatsError, TimeoutError) as exc:
                _log.warning("cannot publish the cancel of %s (%s); retrying", correlation_id, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                return

    async def follow(self, js: JetStreamContext, on_cancel: Callable[[str], None]) -> None:
        """Keep the stream in memory (through broker restarts), telling ``on_cancel`` of each
        id as it comes; set ``loaded`` once what the stream held is in."""
        from nats.js.api import DeliverPolicy

        info = await bound(
            f"read the cancel stream {self.stream}", lambda: js.stream_info(self.stream)
        )
        sub = await bound(
            f"follow the cancel stream {self.stream}",
            lambda: js.subscribe(
                self.subject,
                stream=self.stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                idle_heartbeat=1.0,  # two missed beats and the client recreates the consumer
            ),
        )
        # Forgotten only as the stream forgets: bounded by what the broker keeps anyway.
        max_age = timedelta(seconds=info.config.max_age or 0)
        max_msgs = info.config.max_msgs or 0
        cancelled = self._cancelled
        if info.state.messages == 0:
            self.loaded.set()  # loaded, and followed from here on
        try:
            async for raw in sub.messages:
                correlation_id = raw.data.decode(errors="replace")
                at = raw.metadata.timestamp
                new = correlation_id not in cancelled
                cancelled[correlation_id] = at
                cancelled.move_to_end(correlation_id)  # appended again: kept from now
                if max_age:
                    while at - next(iter(cancelled.values())) > max_age:
                        cancelled.popitem(last=False)
                if max_msgs > 0:
                    while len(cancelled) > max_msgs:
                        cancelled.popitem(last=False)
                if new:
                    on_cancel(correlation_id)
                if raw.metadata.num_pending == 0:
                    self.loaded.set()
        finally:
            await sub.unsubscribe()
