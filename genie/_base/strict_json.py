"""JSON from outside (a request body, a run's input file), read strictly.

Where one reader keeps the last of two equal keys and another the first, or one reads ``NaN``
(or ``1e999``, infinity) as a number and another refuses it, a policy can check one value
while an agent acts on another: an infinite debt service made a loan look affordable. So a key
given twice, ``NaN``, ``Infinity``, a number too large for a float and an integer longer
than Python converts (4300 digits by default) are refused, naming it.

So is a string, or a key, that decodes to a lone surrogate (``"\\ud800"``, an escape without
its pair): Python's reader makes it text that no UTF-8 reader, file or bucket holds, and the
message made of it failed every policy that reads it as JSON (``"\\ud83d\\ude00"``, a pair,
is one character and is read as it).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any

from .._errors import shown
from .surrogates import lone_surrogate, lone_surrogate_in

__all__ = ["LoneSurrogateError", "loads_strict"]

# An escape of a surrogate (\uD800 to \uDFFF), the one way JSON text in UTF-8 makes one: text
# without it is read without looking at its strings again.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class LoneSurrogateError(ValueError):
    """A string or key of the JSON decodes to a lone surrogate; ``path`` is where
    (``$.items[2].note``; for a key, the object holding it)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def loads_strict(text: str) -> Any:
    """``text`` as JSON; raises ValueError (``json.JSONDecodeError`` for the syntax) naming a
    key given twice, a constant that is not JSON, a number out of a float's range, an integer
    of more digits than Python converts (``sys.get_int_max_str_digits()``) or (as
    ``LoneSurrogateError``) where a string or key decodes to a lone surrogate."""
    try:
        data = _decode(text, int)
    except (_Refused, json.JSONDecodeError):
        raise
    except ValueError:
        # The interpreter's refusal of an integer longer than it converts: read again, each
        # integer through a check that names it (only now: a call per integer costs time).
        data = _decode(text, _bounded_int)
    if _SURROGATE_ESCAPE.search(text) or lone_surrogate(text) is not None:
        found = lone_surrogate_in(data)
        if found is not None:
            path = _json_path(found.path)
            where = f"a key of {path}" if found.key else path
            raise LoneSurrogateError(
                path,
                f"{where}: {shown(found.text)} holds a lone surrogate "
                f"(U+{ord(found.text[found.at]):04X} at index {found.at}), which is no "
                "character: a \\ud800 to \\udbff escape must be followed by a \\udc00 to "
                "\\udfff one",
            )
    return data


class _Refused(ValueError):
    """What the reader refuses (a key twice, a constant, a number out of range)."""


def _decode(text: str, parse_int: Callable[[str], int]) -> Any:
    return json.loads(
        text,
        object_pairs_hook=_strict_object,
        parse_constant=_no_constant,
        parse_float=_finite,
        parse_int=parse_int,
    )


def _json_path(steps: tuple[object, ...]) -> str:
    """The JSONPath of the keys and indexes ``steps`` (``$.items[2].note``, ``$["a b"]``); a
    key is cut to 40 characters, as an error quotes a value."""
    spelt = ["$"]
    for step in steps:
        if isinstance(step, int):
            spelt.append(f"[{step}]")
            continue
        key = str(step)
        key = key if len(key) <= 40 else key[:37] + "..."
        spelt.append(
            f".{key}" if _NAME.fullmatch(key) else f"[{json.dumps(key, ensure_ascii=False)}]"
        )
    return "".join(spelt)


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:  # which value counts would depend on the parser reading it
            raise _Refused(f"key {key!r} given twice")
        data[key] = value
    return data


def _no_constant(name: str) -> None:
    raise _Refused(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    # Python converts at most sys.get_int_max_str_digits() digits (converting more takes time
    # that grows faster than the text): past that, the number is refused as too long, named.
    limit = sys.get_int_max_str_digits()
    digits = len(text) - text.startswith("-")
    if limit and digits > limit:
        raise _Refused(f"number {text[:32]}... is too long: {digits} digits, at most {limit}")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as infinity: no JSON number means that
        raise _Refused(f"number {text[:32]} is out of range")
    return value
