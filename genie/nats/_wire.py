"""What travels on NATS besides the streams' names: the headers a delivery carries, the ids
of a handler's outputs, and publishing until the stream has it (docs/scale-out.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._base.log import lazy_logger
from .._errors import MessageError
from .._message.envelope import Message
from .._message.ids import derived_id
from .._runtime.transport import Delivery
from ._names import NatsNames

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js.api import PubAck
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

_T = TypeVar("_T")

__all__ = [
    "WIRE_VERSION",
    "CORRELATION",
    "Bucket",
    "MSG_ID",
    "ORIGIN",
    "PARENT",
    "REQUEST",
    "UNCHARGED",
    "WATCHED",
    "Item",
    "MessageTooLargeError",
    "NatsPublisher",
    "PublishRefusedError",
    "bound",
    "connected",
    "derived_id",
    "entries",
    "header_bytes",
    "message_json",
]

_log = lazy_logger("genie.nats")

# What every process of a namespace writes and reads on the broker (headers, subjects,
# outcome records, replies). Bump it with any change an older process would misread or
# ignore: processes of two versions are refused in one namespace (``ensure_streams``).
# 2: an outcome record carries the timers its delivery withdrew (``ended``); a process of
# wire 1 ignores them, and a request waiting for those timers would hang to its timeout.
# 3: a workflow refuses a run whose steps changed at a tick of its own (``WorkflowChanged``,
# which names the step lost): a process of wire 2 cannot read that tick.
# 4: a workflow that refuses a run at once sends itself a record of it (``RunRefused``), which
# a process of wire 3 cannot read.
WIRE_VERSION = 4
ORIGIN = "Genie-Origin"
PARENT = "Genie-Parent"  # the delivery whose handler sent this one
REQUEST = "Genie-Request"  # a ``ctx.request``: its answer goes to the reply subject of its id
CORRELATION = "Genie-Correlation"
# A delivery that opens its correlation, published uncharged: the worker that runs it adds it
# to the correlation's count with its first charge (``NatsTransport._admit_charged``).
UNCHARGED = "Genie-Uncharged"
# A request its sender watches for a reply (``Runtime.watch_reply``, a workflow's step): the
# worker that runs it watches it there, so the sender is told the moment it goes unanswered.
WATCHED = "Genie-Watched"
MSG_ID = "Nats-Msg-Id"
INCR = "Nats-Incr"  # adds to a counter stream's subject (nats-server 2.12 and later)

Item = tuple[str, bytes, dict[str, str]]  # a publish: subject, data, headers


def message_json(msg: Message) -> dict[str, Any]:
    return msg.model_dump(mode="json")


async def connected(
    url: str, within: float = 3.0, reconnected: Callable[[], None] | None = None
) -> Client:
    """A connection to the server at ``url`` that reconnects for ever once made, or a
    one-line ``ConfigurationError`` when none is made within ``within`` seconds (nats-py
    retries a first connection for ever too, logging a traceback per attempt).
    ``reconnected`` is called each time it is made again (its subscriptions in place)."""
    import nats
    from nats.errors import Error as NatsError

    from .._errors import ConfigurationError

    async def quiet(exc: Exception) -> None:
        _log.warning("NATS at %s: %s", url, exc or type(exc).__name__)

    async def again() -> None:
        if reconnected is not None:
            reconnected()

    try:
        with anyio.fail_after(within):
            return await nats.connect(
                url,
                connect_timeout=1,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                error_cb=quiet,
                reconnected_cb=again,
            )
    except (OSError, NatsError, TimeoutError) as exc:
        raise ConfigurationError(f"cannot reach NATS at {url} within {within:g}s") from exc


async def entries(js: JetStreamContext, bucket: str, keys: str) -> list[tuple[str, bytes]]:
    """Every entry of the KV bucket ``bucket`` whose key matches ``keys`` (``"origin.>"``),
    in the order they were written: (key, value). Read by one pull consumer (not a request per
    key) whose pending count, taken before anything is delivered, says how many there are:
    a KV watch can say it has no more before its first entry is in, on a loaded machine, and
    a session or a kept request read as missing would be lost."""
    from nats.errors import Error as NatsError
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,  # gone by itself if this process dies mid-read
    )
    sub = await js.pull_subscribe(prefix + keys, stream=stream, config=config)
    found: list[tuple[str, bytes]] = []
    name = None
    try:
        info = await sub.consumer_info()
        name, left = info.name, info.num_pending or 0
        while left > 0:
            for msg in await sub.fetch(min(left, 256), timeout=5):
                left -= 1
                if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
                    continue  # deleted
                found.append((msg.subject[len(prefix) :], msg.data))
    finally:
        if name is not None:
            with contextlib.suppress(NatsError, TimeoutError):
                await js.delete_consumer(stream, name)
        await sub.unsubscribe()
    return found


class Bucket:
    """One of a namespace's KV buckets (one value a key, kept on the broker's disk), made or
    opened once connected; its entries are read through the same JetStream context."""

    def __init__(self, name: str, *, ttl: float | None = None, what: str = "bucket") -> None:
        self.name = name
        self._ttl, self._what = ttl, what  # entries expire after ``ttl`` seconds, if given
        self._kv: KeyValue | None = None
        self._js: JetStreamContext | None = None

    async def make(self, js: JetStreamContext) -> None:
        """Create the bucket if it is not there (idempotent)."""
        from nats.js.api import KeyValueConfig, StorageType

        config = KeyValueConfig(bucket=self.name, history=1, storage=StorageType.FILE)
        if self._ttl is not None:
            config.ttl = self._ttl
        self._kv, self._js = await js.create_key_value(config), js

    async def open(self, js: JetStreamContext) -> bool:
        """Open the bucket if it is there (False: nobody has made it)."""
        from nats.js.errors import BucketNotFoundError

        try:
            self._kv = await js.key_value(self.name)
        except BucketNotFoundError:
            return False
        self._js = js
        return True

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            from .._errors import ConfigurationError

            raise ConfigurationError(f"{self._what} {self.name}: NatsTransport.connect() first")
        return self._kv

    @property
    def js(self) -> JetStreamContext:
        self.kv  # noqa: B018 - made or opened first (its error says so)
        assert self._js is not None
        return self._js

    async def entries(self, keys: str) -> list[tuple[str, bytes]]:
        """Its entries under ``keys`` (``"origin.>"``), in the order written (``entries``)."""
        return await entries(self.js, self.name, keys)


class PublishRefusedError(MessageError):
    """A publish the broker will not store, whatever the retries: a stream that answered no
    (full, its discard policy ``new``), or a message too large to send. Never retried, as a
    publish to a broker that is away is: the message it carried ends as a dead letter saying
    why, at once, not at the run's timeout."""

    def __init__(self, subject: str, why: str) -> None:
        super().__init__(why)
        self.subject = subject


class MessageTooLargeError(PublishRefusedError):
    """A message over the broker's ``max_payload``: refused before anything of its publish
    goes out."""

    def __init__(self, subject: str, size: int, limit: int) -> None:
        super().__init__(
            subject,
            f"the message for {subject} is {size:,} bytes, over the broker's max_payload of "
            f"{limit:,} bytes (nats-server's max_payload setting): it cannot cross the broker",
        )
        self.size = size
        self.limit = limit


# JetStream's errors that say "not now" to a publish, not "no": the server is starting or its
# cluster has no leader yet (JetStream not enabled yet, for the account, or temporarily
# unavailable). Retried, as a broker that is away is; every other error of JetStream's API
# is the stream's answer to this message, and the same publish would get it again.
NOT_NOW = frozenset({10008, 10039, 10076})


def refusal(exc: Exception) -> str | None:
    """Why the server refused a publish for good (``exc``, what publishing raised), in its
    words with its error code; None when a retry may store it (no responders while the
    broker is away, a timeout, a connection lost, JetStream not ready)."""
    from nats.js.errors import APIError

    if not isinstance(exc, APIError) or exc.err_code is None or exc.err_code in NOT_NOW:
        return None
    return f"{exc.description or type(exc).__name__} (JetStream error {exc.err_code})"


def header_bytes(headers: Mapping[str, str]) -> int:
    """The header block nats-py writes for ``headers``: its version line, a line a header
    and the blank line that ends it."""
    lines = b"NATS/1.0\r\n\r\n"
    return len(lines) + sum(len(f"{k}: {v}\r\n".encode()) for k, v in headers.items())


class NatsPublisher:
    """Publishes to a namespace's streams, each publish retried until the stream has it
    (through a broker restart: the ids deduplicate a publish that did arrive); a message over
    the broker's ``max_payload`` is refused at once (``MessageTooLargeError``)."""

    def __init__(
        self,
        names: NatsNames,
        js: Callable[[], JetStreamContext],
        max_payload: Callable[[], int],
    ) -> None:
        self.names = names
        self._js = js  # the connection's, read at each publish (``connect`` makes it)
        self._max_payload = max_payload  # the server's, as the connection last heard it

    def check(self, items: list[Item]) -> None:
        """Raise ``MessageTooLargeError`` for the first of ``items`` over the broker's limit
        (nats-py refuses it before sending, so a retry could never store it)."""
        limit = self._max_payload()
        for subject, data, headers in items:
            if len(data) > self.room(headers):
                raise MessageTooLargeError(subject, len(data) + header_bytes(headers), limit)

    def room(self, headers: Mapping[str, str]) -> int:
        """The most data a message with ``headers`` may carry: the broker counts its header
        block in its max_payload too, and drops the connection of a client that sends more
        (nats-py checks the data alone)."""
        return self._max_payload() - header_bytes(headers)

    def item(
        self,
        msg: Message,
        recipient: str,
        origin: str,
        parent: str | None = None,
        *,
        request: bool = False,
        uncharged: bool = False,
        watched: bool = False,
    ) -> Item:
        """What publishing the delivery of ``msg`` to ``recipient`` sends."""
        delivery = Delivery(msg, recipient)
        headers = {MSG_ID: delivery.id, ORIGIN: origin, CORRELATION: msg.correlation_id}
        if parent is not None:
            headers[PARENT] = parent
        if request:
            headers[REQUEST] = "1"
        if uncharged:
            headers[UNCHARGED] = "1"
        if watched:
            headers[WATCHED] = "1"
        return self.names.agent(recipient), delivery.encode(), headers

    async def publish_all(
        self, items: list[Item], recorded: Callable[[], None] | None = None
    ) -> list[tuple[int, PublishRefusedError]]:
        """Publish ``items`` in one round trip, in their order: all are written, then their
        acks awaited; one not acknowledged within 2 s is published again until it is (the ids
        deduplicate). ``recorded`` is called once the first (an outcome record) is in. Those
        a stream refuses for good are passed over, the rest published all the same: the
        refused ones, by their index in ``items``, with why."""
        from nats.errors import Error as NatsError

        self.check(items)  # before any of them goes out: all or none
        js = self._js()
        futures: list[asyncio.Future[PubAck] | None] = []
        for subject, data, headers in items:
            try:
                futures.append(await js.publish_async(subject, data, headers=headers))
            except NatsError:
                futures.append(None)  # retried below
        # One 2 s window for all the acks (they went out together): a cancel scope per ack
        # cost more than the rest of the wait.
        stored = 0
        with anyio.move_on_after(2.0):
            for future in futures:
                if future is None:
                    break
                try:
                    await future
                except (NatsError, TimeoutError):
                    break
                stored += 1
                if stored == 1 and recorded is not None:
                    recorded()
        refused: list[tuple[int, PublishRefusedError]] = []
        for i in range(stored, len(items)):
            future = futures[i]
            if future is not None and not future.done():
                # nats-py never answers a refused one's future: it is published again, and
                # the refusal read from that answer.
                future.cancel()  # gives its slot back to nats-py
            if future is None or future.cancelled() or future.exception() is not None:
                try:
                    await self.retry(*items[i])
                except PublishRefusedError as exc:
                    refused.append((i, exc))
                    continue
            if i == 0 and recorded is not None:
                recorded()
        return refused

    async def retry(self, subject: str, data: bytes, headers: dict[str, str]) -> PubAck:
        """Publish one message until the stream acknowledges it; ``PublishRefusedError`` at
        once when the stream refuses it for good (``refusal``)."""
        from nats.errors import Error as NatsError

        self.check([(subject, data, headers)])
        delay = 0.05
        while True:
            try:
                return await self._js().publish(subject, data, headers=headers, timeout=2.0)
            except (NatsError, TimeoutError) as exc:
                why = refusal(exc)
                if why is not None:
                    stream = await self._stream_of(subject)
                    raise PublishRefusedError(
                        subject,
                        f"the NATS stream {stream} refused the message for {subject}: {why}",
                    ) from None
                _log.warning("publish to %s failed (%s); retrying", subject, exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _stream_of(self, subject: str) -> str:
        """The name of the stream that holds ``subject``, as the server says (``?`` if it
        cannot say now): only for a refusal's words."""
        from nats.errors import Error as NatsError

        try:
            return await self._js().find_stream_name_by_subject(subject)
        except (NatsError, TimeoutError):
            return "?"

    def charge_item(self, correlation_id: str, key: str, n: int, what: str = "") -> Item:
        """What adding ``n`` to a correlation's count sends (see ``charge``)."""
        return self.names.charged(correlation_id, what), b"", {MSG_ID: key, INCR: str(n)}

    async def charge(self, correlation_id: str, key: str, n: int, what: str = "") -> int:
        """Add ``n`` (negative to take away) to the correlation's count of its deliveries (or
        of ``what``: its model budgets' ``tokens`` and ``cost``), shared by every process (one
        round trip, atomic on the server); the count just after. ``key`` (the delivery
        sent, or the one whose handler sends them) deduplicates: a re-run after a crash is
        charged once, and gets the count its first run got, so it admits the same outputs."""
        ack = await self.retry(*self.charge_item(correlation_id, key, n, what))
        if ack.val is None:  # a duplicate: the count as the first run left it
            first = await self._js().get_msg(self.names.budget, ack.seq)
            return int(json.loads(first.data or b"{}")["val"])
        return int(ack.val)


async def bound(what: str, request: Callable[[], Awaitable[_T]]) -> _T:
    """``request`` (a JetStream API request a process makes to start: a consumer, a stream's
    state) made again until the server answers, as a worker always bound its consumers: a
    request that fails or times out (a slow or restarting broker, this process stopped and
    resumed mid-request) is logged and retried, not the end of the process."""
    from nats.errors import Error as NatsError

    delay = 0.05
    while True:
        try:
            return await request()
        except (NatsError, TimeoutError) as exc:
            _log.warning("cannot %s (%s); retrying", what, exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
