"""Text UTF-8 cannot encode: a lone surrogate (a code point of U+D800 to U+DFFF without its
pair). A Python ``str`` holds one (a JSON escape ``"\\ud800"``, bytes of the command line or
the environment decoded with ``surrogateescape``), but no file, SQLite row, NATS bucket or
other process's JSON reader holds it as text: where text comes in, it is refused naming where
it is, rather than failing later in whatever first writes it (a policy reading the message
as JSON fails closed on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["Surrogate", "Where", "lone_surrogate", "lone_surrogate_in", "spelt", "utf8_text"]


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a code point UTF-8 cannot encode (a lone surrogate), or None."""
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def utf8_text(text: str) -> str:
    """``text`` as UTF-8 can hold it: a surrogate pair written as two code points is the one
    character they make, and a lone surrogate is U+FFFD, as Go's encoders write invalid text.
    For text that is written whatever it holds (an audit row, a view of decoded escapes)."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Surrogate(NamedTuple):
    """The first string of a value holding a lone surrogate: ``text``, the index ``at`` of the
    surrogate in it, and ``path``, the keys and indexes from the value to the string (to the
    mapping whose key it is, when ``key``)."""

    path: tuple[object, ...]
    text: str
    at: int
    key: bool


# Where an item is in a value a walk goes through: None for the value itself, else (where its
# container is, the key or index). Linked, so that a step costs one tuple, and spelt out
# (``spelt``) only for the item a walk finds.
Where = tuple["Where", object] | None


def spelt(path: Where) -> tuple[object, ...]:
    """The keys and indexes from the value to the item ``path`` leads to, in order."""
    steps: list[object] = []
    while path is not None:
        path, step = path
        steps.append(step)
    return tuple(reversed(steps))


def lone_surrogate_in(value: object) -> Surrogate | None:
    """The first string, or mapping key, of a JSON-like value (mappings, lists, tuples and
    sets, a set by its position as JSON lists it; no cycle) that holds a lone surrogate, in
    document order, a mapping's keys before what they hold; None if there is none. Walked one
    item at a time: no recursion, however deep."""
    stack: list[tuple[object, Where]] = [(value, None)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if (at := lone_surrogate(item)) is not None:
                return Surrogate(spelt(path), item, at, key=False)
        elif isinstance(item, Mapping):
            for key in item:
                # A key is kept as its text (metadata's keys are made ``str(key)``), which a
                # key that is not exactly a str may spell otherwise than it holds.
                text = key if type(key) is str else str(key)
                if (at := lone_surrogate(text)) is not None:
                    return Surrogate(spelt(path), text, at, key=True)
            stack.extend((each, (path, key)) for key, each in reversed(list(item.items())))
        elif isinstance(item, list | tuple):
            stack.extend((item[i], (path, i)) for i in range(len(item) - 1, -1, -1))
        elif isinstance(item, set | frozenset):  # a payload's set field, dumped as a list
            stack.extend((each, (path, i)) for i, each in reversed(list(enumerate(item))))
    return None
