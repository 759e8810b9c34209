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
from collections.abc import Iterable
from typing import Literal, NamedTuple

from .surrogates import Where, lone_surrogate, spelt

__all__ = ["Kind", "Unfit", "unfit_for_json"]

# The ways a value is unfit: a string with a lone surrogate, a key that is not text (or holds
# one), NaN or infinity, an integer too long to convert, a type with no JSON form, a container
# that holds itself, nesting past the depth asked for.
Kind = Literal["text", "key", "number", "integer", "type", "itself", "deep"]

# An integer of fewer bits has fewer digits than any limit Python allows on converting one to
# text (``sys.set_int_max_str_digits``: 0, no limit, or at least 640 digits), at 3 bits a digit.
_ANY_LIMIT_BITS = 3 * 640


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
            if not _ascii_keys(item):
                bad = _bad_key(item)
                if bad is not None:
                    return Unfit(spelt(path), bad[1], "key", bad[0])
            pairs: Iterable[tuple[object, object]] = item.items()
        else:
            pairs = enumerate(item)
        # What JSON carries as it is needs no walk: ASCII text, None, a bool, a finite float,
        # an integer short enough for any limit. Everything else is walked, and ``_problem``
        # says what, if anything, is wrong with it.
        rest: list[tuple[object, Where, bool]] = []
        for key, each in pairs:
            if (
                (type(each) is str and each.isascii())
                or each is None
                or type(each) is bool
                or (type(each) is int and each.bit_length() < _ANY_LIMIT_BITS)
                or (type(each) is float and math.isfinite(each))
            ):
                continue
            rest.append((each, (path, key), False))
        if rest:  # else nothing in it is left to walk, and nothing in it can hold it
            inside.add(id(item))
            stack.append((item, path, True))
            rest.reverse()
            stack.extend(rest)
    return None


def _ascii_keys(item: dict[object, object]) -> bool:
    """Whether every key of ``item`` is ASCII text (so ``_bad_key`` has nothing to say)."""
    try:
        return all(map(str.isascii, item))  # type: ignore[arg-type]
    except TypeError:  # a key that is not text
        return False


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
