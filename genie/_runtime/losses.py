"""Loss and cancellation notices.

The runtime tells the subscribers of ``genie.lost`` that a delivery was lost.

A delivery is lost when admission denies it, it ends as a ``failed`` or ``cancelled`` dead
letter, or an overflow policy sheds it. When some agent subscribes to ``genie.lost``, the
runtime sends, at once and through the one routing path, a ``Lost`` message caused by the lost
one, in its correlation: so an agent waiting for the work of that correlation (a pipeline's
declared gather) stops waiting for what cannot come. Nothing is sent when nobody subscribes, for
the loss of a loss notice itself, for a cancelled request, or once the runtime is closing.

An agent that sends a request from its handler's outputs and goes on, rather than awaiting
``ctx.request`` (a workflow's step), asks the runtime to watch it (``Runtime.watch_reply``): when
the recipient, or its fallback, handles it and no reply reached the sender (none returned, or
each denied or shed on its way), the sender is sent an ``Unanswered`` notice, caused by the
request and in its correlation, as the handler returns. A reply goes out before the handling
that returned it ends, so it reaches the sender first: a notice that follows it finds the
sender waiting for nothing.

When a request is cancelled (``Runtime.cancel``: its caller gave up, or timed out), nothing more
of its correlation is delivered. The subscribers of ``genie.cancelled`` are then sent a
``Cancelled`` notice in a correlation of its own, ``<id>.cancel``: the undo of what the request
did (a workflow's compensations) runs there, governed and counted like any other work.
"""

from __future__ import annotations

from typing import Literal

from .._message.envelope import Message
from .._message.payload import Payload

__all__ = [
    "Cancelled",
    "Lost",
    "Unanswered",
    "cancellation",
    "cancelled_request",
    "notice_of_cancelling",
    "notice_of_loss",
]

SUFFIX = ".cancel"


class Lost(Payload):
    """A delivery of this correlation was lost: the message (its id, type and sender), the
    consumer it was going to, how it was lost and why (a denial names its policy; the reason
    of a failure is the error's text)."""

    message_type = "genie.lost"

    message_id: str
    type_name: str
    sender: str
    consumer: str
    kind: Literal["denied", "failed", "shed", "cancelled"]
    reason: str
    policy: str | None = None


class Unanswered(Payload):
    """The request ``message_id`` (of type ``type_name``), watched for its sender, was handled
    by ``consumer`` (its recipient, or the recipient's fallback) and no reply reached the
    sender; ``reason`` says how, to follow the consumer's name: ``handled the ping without
    replying``, or ``handled the ping, but its reply 'pong' was denied by POLICY: WHY`` (or
    ``was shed: WHY``)."""

    message_type = "genie.unanswered"

    message_id: str
    type_name: str
    consumer: str
    reason: str


class Cancelled(Payload):
    """The request of ``correlation_id`` was cancelled, for ``reason``. Sent in the correlation
    ``<correlation_id>.cancel``, so that what it causes is delivered."""

    message_type = "genie.cancelled"

    correlation_id: str
    reason: str


def cancellation(correlation_id: str) -> str:
    """The correlation in which the cancellation of ``correlation_id`` is told and undone."""
    return correlation_id + SUFFIX


def cancelled_request(correlation_id: str) -> str | None:
    """The request whose cancellation ``correlation_id`` is (None: it is not one)."""
    return correlation_id.removesuffix(SUFFIX) if correlation_id.endswith(SUFFIX) else None


def notice_of_loss(msg: Message) -> Lost | None:
    """The loss ``msg`` tells, if it is the runtime's notice of one (a ``Lost`` from the
    runtime; the same payload from an agent or an outside publisher tells nothing)."""
    payload = msg.payload
    if isinstance(payload, Lost) and msg.sender == "genie":
        return payload
    return None


def notice_of_cancelling(msg: Message) -> str | None:
    """The request whose cancellation ``msg`` tells, if it is the runtime's notice of one (a
    ``Cancelled`` from the runtime; the same payload from an agent tells nothing)."""
    payload = msg.payload
    if isinstance(payload, Cancelled) and msg.sender == "genie":
        return payload.correlation_id
    return None
