"""A handler's ``ctx.request`` across processes, on the asking side: the answer that came
back through the replies stream (docs/scale-out.md, "The mapping"), handed to the waiter as
one process would hand it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._message.envelope import Message
from .._runtime.correlator import Missing, _Correlation

if TYPE_CHECKING:
    from .._runtime.runtime import Runtime

__all__ = ["give_answer"]


def give_answer(
    rt: Runtime, corr: _Correlation, request: Message, recipient: str, answer: Mapping[str, Any]
) -> None:
    """Give a request's waiter its answer: the reply (admitted for the asker where it
    was sent, counted there as collected), or why there is none, as one process does."""
    if "reply" in answer or "refused" in answer:
        refused = answer.get("refused")
        body = answer["reply"] if refused is None else refused["message"]
        reply = rt.types.parse_message(body)
        for waiter in tuple(corr.waiters):
            if waiter.consumes and waiter.matches(reply):
                if refused is None:
                    rt._ledger.collect(corr)
                    waiter.offer(reply)
                else:
                    why = Missing(
                        waiter.consumer,
                        "denied",
                        refused["reason"],
                        refused["policy"],
                        reply.sender,
                        reply.id,
                    )
                    waiter.refused(reply, why)
                return
    elif "failed" in answer:
        reason = answer["failed"]["reason"]
        if answer["failed"]["kind"] == "cancelled":
            why = Missing(recipient, "cancelled", reason, None, recipient, request.id)
        else:
            why = Missing(recipient, "failed", reason, None, recipient, request.id)
        rt._correlator.failed(corr, why, request.id, recipient)
    else:  # handled without an answer
        rt._correlator.handled(corr, request.id)
