"""What a handler returns: a message, a list or tuple of them, or None; and the error that
refuses anything else, in one wording wherever the handler ran (on the event loop, in a worker
thread, in a child process)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from .._errors import InvalidOutputError
from .._message.envelope import Message
from .._message.payload import Payload

__all__ = ["ONLY_MESSAGES", "RETURNS", "no_message", "outputs_of"]

# What a ``BaseAgent`` handler may return, and may return among its outputs: said to a handler
# that returned something else (``no_message``), wherever it ran.
RETURNS = "a handler returns a Message, a list or tuple of them, or None"
ONLY_MESSAGES = "only Message objects can be published"


def no_message(
    agent_id: str, msg: Message, out: object, where: str, takes: str
) -> InvalidOutputError:
    """The error refusing ``out``, which the handler of ``agent_id`` returned on ``msg``
    (``where``: among its outputs) and is no message, saying what to write instead of the
    likeliest slips (``takes`` otherwise): one wording on the event loop, in a thread and in a
    handler's process."""
    what, then = "None" if out is None else type(out).__name__, "; "
    if isinstance(out, Payload):  # the payload, unwrapped
        takes = f"a payload, not a message: return ctx.reply({what}(...)) or ctx.emit"
    elif inspect.iscoroutine(out):
        # The await forgotten. Closed here: Python would warn of it only when it is
        # collected, far from the handler, while this letter names it.
        out.close()
        what, then = f"a coroutine of {out.__qualname__}", ", "
        takes = "never awaited: await it (return await ...)"
    return InvalidOutputError(
        f"agent {agent_id!r} returned {what}{where}{then}{takes}",
        message_id=msg.id,
        agent_id=agent_id,
        correlation_id=msg.correlation_id,
    )


def outputs_of(agent_id: str, msg: Message, result: object, typed: bool) -> Sequence[Message]:
    """The messages a handler of ``agent_id`` returned on ``msg``, or the ``no_message``
    error refusing what is none: the one check wherever the handler ran. ``typed``: a
    ``BaseAgent`` handler, which may also return one message or None; a raw ``handle()``
    returns a list or tuple."""
    if typed:
        if result is None:
            return ()
        if isinstance(result, Message):
            if result.id != msg.id:
                return (result,)
            result = (result,)  # the message it was handed: refused below
    if not isinstance(result, (list, tuple)):
        takes = RETURNS if typed else "handle() returns a list or tuple of Message"
        raise no_message(agent_id, msg, result, "", takes)
    for out in result:
        if type(out) is not Message and not isinstance(out, Message):
            raise no_message(agent_id, msg, out, " among its outputs", ONLY_MESSAGES)
    if len(result) == 1:
        if result[0].id != msg.id:
            return result
    elif msg.id not in (ids := {out.id for out in result}) and len(ids) == len(result):
        return result
    raise _sent_again(agent_id, msg, result)


def _sent_again(agent_id: str, msg: Message, outputs: Sequence[Message]) -> InvalidOutputError:
    """The error refusing outputs that send a message again (the one handed to the handler,
    or one of them twice): an id is one message, which its recipients would get again."""
    ids = {msg.id}
    for again in outputs:
        if again.id in ids:
            break
        ids.add(again.id)
    did = (
        f"returned a message with the id of the one it was handed ({msg.id})"
        if again.id == msg.id
        else f"returned message {again.id} ({again.type!r}) twice among its outputs"
    )
    return InvalidOutputError(
        f"agent {agent_id!r} {did}; a message is delivered once: build a new one for each "
        "send (ctx.reply, ctx.emit)",
        message_id=msg.id,
        agent_id=agent_id,
        correlation_id=msg.correlation_id,
    )
