"""What a fan-in a worker hosts (a declared gather, a workflow) took of a correlation it keeps
open, kept in the namespace's KV bucket ``GENIE_<NS>_HELD`` until it keeps it no more, so that
a worker started after a kill rebuilds the fan-in's sessions (docs/durability.md, "On NATS").

A worker runs a fan-in's delivery as any other (outcome record and outputs published), then
writes it here, then acks it: killed before the write, the delivery waits in the work stream
for the next worker; after it, the next worker finds it here (and, killed before the ack, in
the stream too: that redelivery is acked without running again). Once the fan-in no longer
keeps the correlation (it emitted, or ended the session), the correlation's entries go.

At start, before it fetches anything, the worker runs what it finds again, in the order it was
written, through the same runner, and publishes nothing of it: its outputs and outcome records
went out before it was written here, under the ids it gives them again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._base.log import lazy_logger
from .._errors import middle_cut
from .._message.envelope import Message
from .._runtime.losses import cancelled_request, notice_of_cancelling
from .._runtime.transport import Delivery, Keeps
from ._run import ID_CHARS
from ._wire import Bucket, bound

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

    from .._message.types import MessageTypes

__all__ = ["Held", "HeldDeliveries"]

_log = lazy_logger("genie.nats")


@dataclass(frozen=True)
class Held:
    """A delivery a fan-in took, as its worker ran it: to whom its outcome went (``origin``),
    the delivery that sent it (``parent``), and whether it was a ``ctx.request``."""

    delivery: Delivery
    origin: str
    parent: str | None
    request: bool


def _held_value(held: Held, parent: str | None) -> bytes:
    d = held.delivery
    return (
        f'{{"origin":{json.dumps(held.origin)},"parent":{json.dumps(parent)},'
        f'"request":{"true" if held.request else "false"},"delivery":{d.encode().decode()}}}'
    ).encode()


def _hash(text: str, size: int) -> str:
    # A key token: ids have characters a key may not (':', '~'), and any length.
    return hashlib.sha256(text.encode()).hexdigest()[:size]


class HeldDeliveries:
    """The fan-ins' deliveries in the KV bucket ``bucket``: one entry per delivery, keyed
    ``AGENT.CORRELATION.DELIVERY`` (each a hash), so a correlation's go in one purge; and
    which of a worker's fan-ins keep what (``fan_ins``, each its ``keeps``)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._store = Bucket(bucket)
        self.fan_ins: dict[str, Keeps] = {}
        self._holding: set[tuple[str, str]] = set()  # (fan-in, correlation) with entries here
        # Deliveries taken again at start: a redelivery of one is acked without running.
        self.taken_again: set[str] = set()

    def holds(self, agent_id: str, correlation_id: str) -> bool:
        """Whether the fan-in ``agent_id``'s delivery of ``correlation_id`` is to be kept: the
        fan-in keeps the correlation, or has entries of it (the delivery that ends a session
        is kept until the session's entries go, so a kill in between rebuilds it whole), or
        of the request it cancels (a workflow carries its run into the notice's)."""
        keeps = self.fan_ins.get(agent_id)
        if keeps is None:
            return False
        if keeps(correlation_id) or (agent_id, correlation_id) in self._holding:
            return True
        target = cancelled_request(correlation_id)
        return target is not None and (agent_id, target) in self._holding

    def kept_no_more(self, agent_id: str, msg: Message) -> list[str]:
        """The correlations whose entries ``agent_id`` no longer needs once it took ``msg``:
        ``msg``'s, and the request a cancellation's notice tells of."""
        keeps = self.fan_ins[agent_id]
        target = notice_of_cancelling(msg)
        cids = (msg.correlation_id, *(() if target is None else (target,)))
        return [c for c in cids if (agent_id, c) in self._holding and not keeps(c)]

    def _prefix(self, agent_id: str, correlation_id: str) -> str:
        return f"{_hash(agent_id, 16)}.{_hash(correlation_id, 32)}"

    async def bind(self, js: JetStreamContext) -> None:
        """Create the bucket if need be (no expiry: a session may stay open for days)."""
        await self._store.make(js)

    def _bucket(self) -> KeyValue:
        return self._store.kv

    async def found(self, agent_id: str, types: MessageTypes) -> list[Held]:
        """What ``agent_id`` took and keeps, in the order it was written; an entry these
        ``types`` cannot read (a type the pipeline no longer has) is reported and left."""
        texts = [value for _, value in await self._store.entries(f"{_hash(agent_id, 16)}.>")]
        found = list(self._decoded(agent_id, texts, types))
        for held in found:
            self._holding.add((agent_id, held.delivery.message.correlation_id))
            self.taken_again.add(held.delivery.id)
        return found

    def _decoded(self, agent_id: str, texts: list[bytes], types: MessageTypes) -> Iterator[Held]:
        for text in texts:
            try:
                kept = json.loads(text)
                delivery = Delivery.decode(json.dumps(kept["delivery"]), types)
                yield Held(delivery, str(kept["origin"]), kept["parent"], bool(kept["request"]))
            except Exception as exc:
                _log.warning(
                    "a delivery %s kept cannot be taken again: %s",
                    agent_id,
                    exc,
                    extra={"agent_id": agent_id, "message_type": "-", "correlation_id": "-"},
                )

    async def keep(self, held: Held, limit: int) -> bool:
        """Write ``held`` (once its outputs and outcome record are out, before its ack) as a
        value of at most ``limit`` bytes (the broker's max_payload); whether it was written.
        A hostile parent (a delivery published by hand) is kept cut to its two ends: only
        the approval desk reads it, to match an approval's id. A delivery too near the limit
        to be kept at all is logged, not kept: a kill of its worker loses it from its session
        (a value over the limit would be refused for ever, its delivery never acked)."""
        d = held.delivery
        value = _held_value(held, held.parent)
        if len(value) > limit and held.parent is not None:
            value = _held_value(held, middle_cut(held.parent, ID_CHARS))
        if len(value) > limit:
            _log.error(
                "a delivery of %s is not kept for its session: kept, it would be %s bytes, "
                "over the broker's max_payload of %s",
                d.recipient,
                f"{len(value):,}",
                f"{limit:,}",
                extra={
                    "agent_id": d.recipient,
                    "message_type": d.message.type,
                    "correlation_id": d.message.correlation_id,
                },
            )
            return False
        prefix = self._prefix(d.recipient, d.message.correlation_id)
        key, kv = f"{prefix}.{_hash(d.id, 32)}", self._bucket()
        # Retried through a broker's restart (a put of the same value is the same entry):
        # the delivery is acked only once it is kept.
        await bound(f"keep a delivery of {d.recipient}", lambda: kv.put(key, value))
        self._holding.add((d.recipient, d.message.correlation_id))
        return True

    async def release(self, agent_id: str, correlation_id: str) -> None:
        """Forget what ``agent_id`` kept of ``correlation_id``: one purge of its entries."""
        js, stream = self._store.js, f"KV_{self.bucket}"
        subject = f"$KV.{self.bucket}.{self._prefix(agent_id, correlation_id)}.>"
        await bound(
            f"release {agent_id}'s session", lambda: js.purge_stream(stream, subject=subject)
        )
        self._holding.discard((agent_id, correlation_id))
