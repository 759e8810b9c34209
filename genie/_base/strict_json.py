"""JSON from outside (a request body, a run's input file), read strictly.

Where one reader keeps the last of two equal keys and another the first, or one reads ``NaN``
(or ``1e999``, infinity) as a number and another refuses it, a policy can check one value
while an agent acts on another: an infinite debt service made a loan look affordable. So a key
given twice, ``NaN``, ``Infinity`` and a number too large for a float are refused, naming it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["loads_strict"]


def loads_strict(text: str) -> Any:
    """``text`` as JSON; raises ValueError (``json.JSONDecodeError`` for the syntax) naming a
    key given twice, a constant that is not JSON or a number out of a float's range."""
    return json.loads(
        text, object_pairs_hook=_strict_object, parse_constant=_no_constant, parse_float=_finite
    )


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:  # which value counts would depend on the parser reading it
            raise ValueError(f"key {key!r} given twice")
        data[key] = value
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as infinity: no JSON number means that
        raise ValueError(f"number {text[:32]} is out of range")
    return value
