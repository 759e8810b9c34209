"""Values JSON carries exactly: what a Python value must be to be sent as JSON and read on the
other side as the value it was here.

An encoder is lenient where a policy cannot follow: NaN and infinity leave as ``null``, a
complex number or a date as a string, a set as a list in no given order, a key ``1`` as
``"1"``; bytes that are not UTF-8, an integer longer than Python converts to text
(``sys.get_int_max_str_digits()``) and a lone surrogate fail inside whatever encodes them,
late and far from the mistake. So a value to be sent is walked first, and the first thing in
it that JSON cannot carry exactly is named with where it is.
"""

from __future__ import annotations

import math
import sys
from typing import Literal, NamedTuple

from .surrogates import Where, lone_surrogate, spelt

__all__ = ["Kind", "Unfit", "unfit_for_json"]

# The ways a value is unfit: a string with a lone surrogate, a key that is not text (or holds
# one), NaN or infinity, an integer too long to convert, a type with no JSON form, a container
# that holds itself, nesting past the depth asked for.
Kind = Literal["text", "key", "number", "integer", "type", "itself", "deep"]


class Unfit(NamedTuple):
    """What JSON cannot carry in a value: ``path``, the keys and indexes from the value to it
    (to the dict whose key it is, for a key); ``problem``, what it is; ``kind``, which of the
    ways it is unfit (``Kind``), and ``item``, the item at ``path`` (for a key, the key), so
    that a caller can word it in its own terms."""

    path: tuple[object, ...]
    problem: str
    kind: Kind
    item: object


def unfit_for_json(value: object, depth: int | None = None) -> Unfit | None:
    """The first item of ``value`` (in document order, a dict's keys before what they hold)
    that JSON cannot carry exactly, or None. JSON carries a dict with text keys, a list or a
    tuple (written as a list, and so read back), text UTF-8 encodes, a finite number, a bool
    and None (a subclass of str, int or float, an enum's member, as its value). With a
    ``depth``, a list or dict nested deeper (the outermost counting 1) is named too, where a
    reader that recurses would fail. Walked one item at a time: no recursion, however deep; a
    container that holds itself is named, not followed."""
    # Each entry: an item, where it is, and whether the walk leaves it (a container whose
    # items were all walked) rather than enters it.
    stack: list[tuple[object, Where, bool]] = [(value, None, False)]
    # The containers the walk is in, around the item it is at: meeting one again is a cycle,
    # and how many there are is the item's level less one.
    inside: set[int] = set()
    while stack:
        item, path, leaving = stack.pop()
        if leaving:
            inside.discard(id(item))
            continue
        if not isinstance(item, dict | list | tuple):
            found = _problem(item)
            if found is not None:
                return Unfit(spelt(path), found[1], found[0], item)
            continue
        if id(item) in inside:
            problem = "holds itself: JSON has no form for a value that contains itself"
            return Unfit(spelt(path), problem, "itself", item)
        if depth is not None and len(inside) >= depth:
            problem = f"nested deeper than {depth} levels of lists and dicts"
            return Unfit(spelt(path), problem, "deep", item)
        if isinstance(item, dict):
            bad = _bad_key(item)
            if bad is not None:
                return Unfit(spelt(path), bad[1], "key", bad[0])
        inside.add(id(item))
        stack.append((item, path, True))
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        stack.extend((each, (path, key), False) for key, each in reversed(list(pairs)))
    return None


def _problem(item: object) -> tuple[Kind, str] | None:
    """What is wrong with ``item``, no container, or None."""
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, str):
        at = lone_surrogate(item)
        if at is None:
            return None
        return "text", (
            f"not valid UTF-8 text (a lone surrogate, U+{ord(item[at]):04X} at index {at}): "
            "it has no JSON form"
        )
    if isinstance(item, int):
        limit = sys.get_int_max_str_digits()
        # Below 3 bits a digit an integer has fewer digits than the limit: exact only past it.
        if limit and item.bit_length() >= 3 * limit and abs(item) >= 10**limit:
            return "integer", (
                f"an integer of more than {limit} digits, more than Python converts to text "
                "(sys.get_int_max_str_digits()): it cannot be encoded"
            )
        return None
    if isinstance(item, float):
        if math.isfinite(item):
            return None
        return "number", f"{item!r} is no JSON number: NaN and infinity have no JSON form"
    return "type", (
        f"a value of type {type(item).__name__} has no JSON form (JSON carries a dict with "
        "text keys, a list, text, a finite number, a bool and None)"
    )


def _bad_key(item: dict[object, object]) -> tuple[object, str] | None:
    """The first key of ``item`` JSON cannot carry as it is, and what is wrong with it."""
    for key in item:
        if not isinstance(key, str):
            return key, (
                f"a key of type {type(key).__name__} is not text: JSON's keys are strings, and "
                "it would arrive as another key"
            )
        at = lone_surrogate(key)
        if at is not None:
            return key, (
                f"a key is not valid UTF-8 text (a lone surrogate, U+{ord(key[at]):04X} at "
                f"index {at}): it has no JSON form"
            )
    return None
