"""How deeply untrusted data may nest: JSON text and the Python values parsed from it.

Parsers and validators recurse once per level, so a document 100,000 levels deep (a few hundred
kilobytes of brackets) would end in a RecursionError anywhere downstream. Boundaries check the
depth first and refuse what is deeper than MAX_DEPTH.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "json_depth_exceeds",
    "loads_bounded",
    "top_level_type",
    "value_depth_exceeds",
]

# Levels of JSON arrays and objects, the outermost counting 1 (a message envelope is 1, its
# payload 2). A catalogue message nests fewer than 10 (a gather's bundle is the deepest);
# Python's recursion limit is 1000, and
# every level can cost a parser, a validator and a serialiser a few frames each.
MAX_DEPTH = 64

# Patterns, compiled by `re` (and kept in its cache) when a document first has enough brackets
# to be scanned, not at `import genie` (most programs never parse untrusted JSON).
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN = _STRING + r"|[\[\]{}:,]"
_BRACKETS = r"[\[\]{}]"


def json_depth_exceeds(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether ``text`` (JSON, valid or not) nests arrays and objects deeper than ``limit``;
    brackets inside strings do not count."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case: too few brackets to be too deep, no scan
    depth = 0
    for bracket in re.findall(_BRACKETS, re.sub(_STRING, "", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads_bounded(text: str, limit: int = MAX_DEPTH) -> Any:
    """``text`` as JSON; ValueError (``json.JSONDecodeError`` for the syntax) for what is not
    JSON or nests deeper than ``limit``, which the parser, or whatever reads the value after
    it, would end in a RecursionError on."""
    if json_depth_exceeds(text, limit):
        raise ValueError(f"nested deeper than {limit} levels of arrays and objects")
    import json  # only the model adapters parse with it: not loaded by `import genie`

    return json.loads(text)


def value_depth_exceeds(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests mappings, lists and tuples deeper than ``limit``; walks one level
    at a time (no recursion) and stops below the limit."""
    level = [value]
    for depth in range(1, limit + 2):
        children: list[object] = []
        for item in level:
            if isinstance(item, list | tuple):
                children.extend(item)
            elif isinstance(item, Mapping):
                children.extend(item.values())
            else:
                continue
            if depth > limit:
                return True
        level = children
    return False


def top_level_type(text: str) -> str | None:
    """The string value of the outermost object's ``"type"`` key, read without parsing the rest
    (so a document too deep to parse can still be named), or None."""
    depth = 0
    key: str | None = None
    expect_value = False
    for match in re.finditer(_TOKEN, text):
        token = match.group()
        if token in "[{":
            depth += 1
            expect_value = False
        elif token in "]}":
            depth -= 1
        elif depth != 1 or token == ",":
            key, expect_value = None, False
        elif token == ":":
            expect_value = key == '"type"'
        elif expect_value:
            value = token[1:-1]
            return value if "\\" not in value else None
        else:
            key = token
    return None
