"""The transport seam: where an admitted delivery leaves routing and admission for a mailbox.

Routing and admission decide *who* receives a message and *whether* they may; a transport only
moves the admitted delivery to the recipient's worker and runs it there. ``LocalTransport`` (the
default) is a bounded mailbox per agent and a small pool of executors in this process. A NATS
JetStream transport implements the same calls: ``put`` publishes ``Delivery.encode()`` to
the recipient's subject with ``Delivery.id`` as the message id (JetStream's server-side
deduplication key), ``has_room``/``wait_for_room`` read the stream's limits, and its consumer
decodes each delivery through the message-type registry and hands it to the same supervisor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from .._base.nesting import MAX_DEPTH, json_depth_exceeds
from .._base.record import Record
from .._errors import InvalidMessageError
from .._message.envelope import Message
from .._message.types import MessageTypes
from .local.mailbox import Queued

if TYPE_CHECKING:
    pass

__all__ = ["Delivery", "Transport", "delivery_id"]


def delivery_id(msg: Message, recipient: str) -> str:
    """Stable across retries and redeliveries: a message reaches a recipient at most once."""
    return f"{msg.id}:{recipient}"


class Delivery(Record):
    """One admitted message for one recipient, as it would cross a process boundary."""

    message: Message
    recipient: str

    @property
    def id(self) -> str:
        return delivery_id(self.message, self.recipient)

    def encode(self) -> bytes:
        import json  # only a transport between processes encodes: not loaded by `import genie`

        body = {"recipient": self.recipient, "message": self.message.model_dump(mode="json")}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes | str, types: MessageTypes) -> Delivery:
        """Validate the envelope and its payload through ``types`` (what the receiver hosts).

        The whole text's nesting is checked once, before it is parsed: the message sits one
        level down, so ``MAX_DEPTH + 1`` bounds it as ``parse_message`` would."""
        import json

        text = data.decode() if isinstance(data, bytes) else data
        if json_depth_exceeds(text, MAX_DEPTH + 1):
            raise InvalidMessageError(
                "<unknown>",
                "message",
                f"nested deeper than {MAX_DEPTH} levels of arrays and objects",
            )
        body = json.loads(text)
        return cls(types.parse_bounded_message(body["message"]), str(body["recipient"]))


class Transport(Protocol):
    """Moves admitted deliveries to the recipient's worker (see the module docstring)."""

    def has_room(self, recipient: str) -> bool:
        """An outside publisher could put a delivery for ``recipient`` now without waiting."""
        ...

    async def wait_for_room(self, recipient: str) -> None:
        """Wait, first come first served, for a slot for ``recipient``, and hold it."""
        ...

    def hold(self, recipients: Sequence[str], start: int) -> int:
        """From ``recipients[start]`` on, hold a slot for each agent of this runtime while
        one is free now with nobody waiting ahead; the index of the first it could not hold
        (``len(recipients)``: all held). Ids that are no agent here are passed over."""
        ...

    def release(self, recipient: str) -> None:
        """Give back a slot ``wait_for_room`` or ``hold`` held, unused."""
        ...

    def put(self, item: Queued, recipient: str) -> None:
        """Queue an admitted delivery (no slot was held for it)."""
        ...

    def put_held(self, item: Queued, recipients: Sequence[str]) -> None:
        """Queue an admitted delivery for each of ``recipients``, in order, each in the slot
        ``hold`` or ``wait_for_room`` held for it."""
        ...

    def cancel(self, correlation_id: str) -> int:
        """Cancel the handlers running for ``correlation_id``; how many there were."""
        ...

    def forward(self, msg: Message) -> bool:
        """Take ``msg``, which nobody in this process receives, to the process whose waiters
        may (True); False: it is unrouted here."""
        ...
