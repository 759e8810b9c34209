"""A handler's ``ctx.request`` across processes, on the asking side: the answer that came
back through the replies stream (docs/scale-out.md, "The mapping"), handed to the waiter as
one process would hand it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._base.log import lazy_logger
from .._base.nesting import MAX_DEPTH, loads_bounded
from .._errors import MessageError, described, middle_cut
from .._message.envelope import Message
from .._runtime.correlator import Missing
from .._runtime.policy import Decision

if TYPE_CHECKING:
    from .._runtime.host import Correlation, TransportHost

__all__ = ["give_answer"]

_log = lazy_logger("genie.nats")


def give_answer(
    host: TransportHost,
    corr: Correlation,
    request: Message,
    recipient: str,
    data: bytes,
    *,
    counted: bool = False,
) -> bool:
    """Give a request's waiter its answer (``data``, as the answering worker published it):
    the reply (admitted for the asker where it was sent, counted there as collected), or why
    there is none, as one process does. ``counted``: the request's origin is this process,
    whose replay of the answering delivery's record counts the reply collected (once, whether
    the waiter took it or not).

    False, giving nothing, where ``data`` is no answer a worker wrote (anything else
    published on the request's reply subject, which any client of the broker may write): it
    is logged and passed over, and the waiter waits on for the answer, rather than the
    asking worker failing on bytes it did not send for."""
    try:
        reply, refusal, why = _read(host, request, recipient, data)
    except (ValueError, TypeError, KeyError, MessageError) as exc:
        shown = middle_cut(request.id, 80)
        error = described(exc)
        _log.error("request %s: not an answer on its reply subject, passed over: %s", shown, error)
        return False
    if reply is not None:
        host.answer_arrived(corr, reply, refusal, counted=counted)
    else:  # why there is none (None: handled without an answer)
        host.request_ended(corr, request.id, recipient, why)
    return True


def _read(
    host: TransportHost, request: Message, recipient: str, data: bytes
) -> tuple[Message | None, Decision | None, Missing | None]:
    """An answer's reply and its refusal, or why there is none (all None: handled without
    an answer); ValueError, TypeError, KeyError or MessageError for what is no answer."""
    # An answer's message sits one level down in it: the bound of its messages.
    answer = loads_bounded(data.decode(), MAX_DEPTH + 1)
    if not isinstance(answer, dict):
        raise TypeError(f"an answer is a JSON object, not {type(answer).__name__}")
    if "reply" in answer or "refused" in answer:
        refused = answer.get("refused")
        body = answer["reply"] if refused is None else refused["message"]
        refusal = None
        if refused is not None:
            refusal = Decision.deny(str(refused["policy"]), str(refused["reason"]))
        return host.types.parse_message(body), refusal, None
    if "failed" in answer:
        failed = answer["failed"]
        reason = str(failed["reason"])
        if failed["kind"] == "cancelled":
            return None, None, Missing(recipient, "cancelled", reason, None, recipient, request.id)
        return None, None, Missing(recipient, "failed", reason, None, recipient, request.id)
    return None, None, None
