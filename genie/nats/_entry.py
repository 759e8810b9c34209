"""The requests an entry process with a name of its own (``NatsTransport(origin=...)``,
``genie run --nats URL --origin NAME``) sent from outside, kept in the namespace's KV bucket
until they settle, so that the same name started again resumes them (docs/durability.md,
"On NATS").

Each outside delivery is one KV entry, written before it is published and marked published
once the stream has it. The work itself needs nothing more: the deliveries wait in the work
stream, workers run them whether or not their origin lives, and the outcome records wait in the
outcome stream under the origin's subject. A restarted origin reads that backlog, keeps the
records of its unfinished requests aside (``parked``), and applies them, in order, when its
caller waits for the request again (``Runtime.resume``); the records of requests that had
settled are passed over.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .._base.log import lazy_logger
from .._base.nesting import MAX_DEPTH, loads_bounded
from .._errors import ConfigurationError
from .._message.envelope import Message
from .._runtime.observe.observer import Observer
from .._runtime.transport import Delivery
from ._wire import Bucket

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

    from .._message.types import MessageTypes

__all__ = ["KEPT_FOR", "EntryRequests", "check_origin"]

_log = lazy_logger("genie.nats")

KEPT_FOR = 24 * 3600.0  # as long as the outcome stream keeps the records a resume replays
_ORIGIN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# An outcome record as the origin loop reads it, with whether its messages are bounded and
# its sequence in the outcome stream.
Record = tuple[Mapping[str, Any], bool, int]


def check_origin(origin: str) -> str:
    """``origin`` as the one subject token and key prefix it becomes, or a clear error."""
    if not isinstance(origin, str) or not _ORIGIN.match(origin):
        raise ConfigurationError(
            f"origin {origin!r}: use 1 to 64 letters, digits, '_' or '-' (it names the subject "
            "of the entry's outcome records and the keys of its requests)"
        )
    return origin


def _kept(value: bytes) -> tuple[str, Mapping[str, Any], bool] | None:
    """A kept delivery's correlation, JSON and whether it was published, as ``keep`` writes
    it (None: anything else, which the bucket, open to any client of the broker, may hold:
    one entry that stopped the start would stop every start of the origin's name)."""
    try:
        # Its message sits two levels down in it: the bound of its messages.
        kept = loads_bounded(value.decode(), MAX_DEPTH + 2)
        delivery = kept["delivery"]
        cid, published = delivery["message"]["correlation_id"], kept["published"]
    except (ValueError, TypeError, KeyError):
        return None
    if not (isinstance(cid, str) and isinstance(delivery, dict) and isinstance(published, bool)):
        return None
    return cid, delivery, published


class EntryRequests(Observer):
    """The outside deliveries of the entry ``origin`` in the KV bucket ``bucket``: kept until
    their request settles here (or is cancelled), and found again by the next process of
    that name."""

    never_raises = True

    def __init__(self, bucket: str, origin: str) -> None:
        self.bucket = bucket
        self.origin = check_origin(origin)
        self._store = Bucket(bucket, ttl=KEPT_FOR)
        # Found at start: each unfinished request's deliveries (delivery JSON, published).
        self.found: dict[str, list[tuple[Delivery, bool]]] = {}
        self._found_text: dict[str, list[tuple[Any, bool]]] = {}
        # The outcome records of a found request, until its caller resumes it.
        self.parked: dict[str, list[Record]] = {}
        self.earlier: set[str] = set()  # the requests found at start, resumed or not
        self._keys: dict[str, list[str]] = {}  # correlation -> its entries' keys
        self._forget: list[str] = []  # keys of settled requests, to delete
        self._wake = anyio.Event()
        self._stopping = False

    # --- the bucket ---------------------------------------------------------------------------
    def _key(self, delivery_id: str) -> str:
        # A hash: a delivery id has characters a key may not (':'), and any length.
        return f"{self.origin}.{hashlib.sha256(delivery_id.encode()).hexdigest()[:40]}"

    def _bucket(self) -> KeyValue:
        return self._store.kv

    async def bind(self, js: JetStreamContext) -> None:
        """Create the bucket if need be, and read what this origin left unfinished."""
        await self._store.make(js)
        for key, value in await self._store.entries(f"{self.origin}.>"):
            found = _kept(value)
            if found is None:  # not written by an entry: reported and left, as ``decode`` does
                _log.warning(
                    "origin %s: entry %s of %s is no kept request", self.origin, key, self.bucket
                )
                continue
            cid, delivery, published = found
            self._found_text.setdefault(cid, []).append((delivery, published))
            self._keys.setdefault(cid, []).append(key)
            self.parked.setdefault(cid, [])
            self.earlier.add(cid)

    def decode(self, types: MessageTypes) -> None:
        """Parse what ``bind`` found through the runtime's message types (once it has them);
        a delivery they cannot read (a type the pipeline no longer has) is reported and left
        in the bucket."""
        for cid, kept in self._found_text.items():
            found = self.found.setdefault(cid, [])
            for delivery, published in kept:
                try:
                    found.append((Delivery.decode(json.dumps(delivery), types), published))
                except Exception as exc:
                    _log.warning(
                        "origin %s: a delivery of request %s cannot be resumed: %s",
                        self.origin,
                        cid,
                        exc,
                        extra={"agent_id": "-", "message_type": "-", "correlation_id": cid},
                    )
        self._found_text.clear()

    async def keep(self, delivery: Delivery, *, published: bool = False) -> None:
        """Write ``delivery`` (before it is published, then again once it is)."""
        key = self._key(delivery.id)
        keys = self._keys.get(delivery.message.correlation_id)
        if published:
            if keys is None or key not in keys:
                return  # its request ended before the stream's answer came: nothing to keep
        elif keys is None:
            self._keys[delivery.message.correlation_id] = [key]
        elif key not in keys:
            keys.append(key)
        body = delivery.encode().decode()
        value = f'{{"published":{"true" if published else "false"},"delivery":{body}}}'
        await self._bucket().put(key, value.encode())

    # --- what the origin tells it -------------------------------------------------------------
    def unfinished(self) -> list[Message]:
        """The requests found at start and not resumed yet, one message each."""
        seen: dict[str, Message] = {}
        for kept in self.found.values():
            for delivery, _ in kept:
                seen.setdefault(delivery.message.id, delivery.message)
        return list(seen.values())

    def keeps(self, correlation_id: str) -> bool:
        """Whether the bucket keeps ``correlation_id``'s deliveries (until it ends)."""
        return correlation_id in self._keys

    def forget(self, correlation_id: str) -> None:
        """``correlation_id`` ended (settled, or cancelled by its caller): its entries go."""
        keys = self._keys.pop(correlation_id, None)
        if keys:
            self._forget += keys
            self._wake.set()

    def stopping(self) -> None:
        self._stopping = True

    def settled(self, correlation_id: str) -> None:
        if not self._stopping:  # settled by a stop alone: the next start resumes it
            self.forget(correlation_id)

    async def run(self) -> None:
        """Until cancelled: delete the entries of the requests that ended."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        keys, self._forget = self._forget, []
        kv = self._bucket()
        for key in keys:
            await kv.purge(key)
