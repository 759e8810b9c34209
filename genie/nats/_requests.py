"""A handler's ``ctx.request`` across processes, on the asking side: the answer that came
back through the replies stream (docs/scale-out.md, "The mapping"), handed to the waiter as
one process would hand it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._message.envelope import Message
from .._runtime.correlator import Missing
from .._runtime.policy import Decision

if TYPE_CHECKING:
    from .._runtime.host import Correlation, TransportHost

__all__ = ["give_answer"]


def give_answer(
    host: TransportHost,
    corr: Correlation,
    request: Message,
    recipient: str,
    answer: Mapping[str, Any],
    *,
    counted: bool = False,
) -> None:
    """Give a request's waiter its answer: the reply (admitted for the asker where it
    was sent, counted there as collected), or why there is none, as one process does.
    ``counted``: the request's origin is this process, whose replay of the answering
    delivery's record counts the reply collected (once, whether the waiter took it or not)."""
    if "reply" in answer or "refused" in answer:
        refused = answer.get("refused")
        body = answer["reply"] if refused is None else refused["message"]
        refusal = None if refused is None else Decision.deny(refused["policy"], refused["reason"])
        host.answer_arrived(corr, host.types.parse_message(body), refusal, counted=counted)
    elif "failed" in answer:
        reason = answer["failed"]["reason"]
        if answer["failed"]["kind"] == "cancelled":
            why = Missing(recipient, "cancelled", reason, None, recipient, request.id)
        else:
            why = Missing(recipient, "failed", reason, None, recipient, request.id)
        host.request_ended(corr, request.id, recipient, why)
    else:  # handled without an answer
        host.request_ended(corr, request.id, recipient, None)
