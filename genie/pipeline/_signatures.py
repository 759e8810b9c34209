"""What an agent class's handlers promise, read from their annotations before anything runs
(``genie validate``): a handler that says it returns a payload fails every delivery it
handles, so the pipeline that uses it is refused at the agent's line, not at run time.

The rule is the runtime's (``DeliveryRunner._outputs``): a ``BaseAgent`` handler returns a
``Message``, a list or tuple of them, or None. A return annotation is checked member by member
of its union; one that cannot be resolved, ``Any`` or none at all says nothing and passes.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

from .._agent.agent import BaseAgent
from .._message.envelope import Message
from .._message.payload import Payload

__all__ = ["handler_problems", "returns_messages"]

_SEQUENCES = (list, tuple, collections.abc.Sequence)


def _members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return (annotation,)


def _problem(annotation: Any) -> str | None:
    """Why a handler annotated to return ``annotation`` cannot return what the runtime takes,
    or None."""
    for member in _members(annotation):
        if member is None or member is type(None) or member is Any:
            continue
        if isinstance(member, type) and issubclass(member, Message):
            continue
        origin = typing.get_origin(member)
        if origin in _SEQUENCES:
            items = [a for a in typing.get_args(member) if a is not Ellipsis]
            if all((isinstance(a, type) and issubclass(a, Message)) or a is Any for a in items):
                continue
        if isinstance(member, type) and issubclass(member, Payload):
            return (
                f"returns {member.__name__}, a payload, where the runtime takes a Message: "
                f"return ctx.reply({member.__name__}(...)) or ctx.emit(...) and annotate "
                "-> Message"
            )
        shown = getattr(member, "__name__", None) or repr(member)
        return (
            f"returns {shown}, where the runtime takes a Message, a list or tuple of them, or None"
        )
    return None


def _hints(cls: type, attr: str) -> dict[str, Any] | str:
    try:
        return typing.get_type_hints(getattr(cls, attr))
    except Exception as exc:  # a forward reference that names nothing, say
        return f"cannot resolve the annotations of {cls.__name__}.{attr} ({exc})"


def handler_problems(cls: object) -> list[str]:
    """What is wrong with the handlers of the agent class ``cls`` (a ``BaseAgent``), each
    naming its handler."""
    if not (isinstance(cls, type) and issubclass(cls, BaseAgent)):
        return []  # an Agent of its own: its handle() is the contract, checked at run time
    found = []
    for attr in sorted(set(cls._handlers.values())):
        hints = _hints(cls, attr)
        if isinstance(hints, str):
            found.append(hints)
            continue
        if "return" in hints:
            problem = _problem(hints["return"])
            if problem is not None:
                found.append(f"handler {cls.__name__}.{attr} {problem}")
    return found


def returns_messages(cls: object) -> bool:
    """Whether a handler of ``cls`` is annotated to return messages (not only None)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseAgent)):
        return False
    for attr in set(cls._handlers.values()):
        hints = _hints(cls, attr)
        if isinstance(hints, dict) and any(
            m is not None and m is not type(None) for m in _members(hints.get("return"))
        ):
            return True
    return False
