"""What JSON carries exactly, walked: the first thing a value holds that an encoder would send
changed (NaN as null, a set as a list, a key 1 as "1") or fail on late (bytes, a lone
surrogate, an integer too long to convert), named with where it is."""

from __future__ import annotations

import enum
import math
import sys
from typing import Any

import pytest

from genie._base.json_form import Unfit, unfit_for_json


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


class Real(float):
    pass


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"a": [1, 2.5, "x", True, None, (3, 4)], "b": {"c": -0.0}},
        {"colour": Colour.RED, "level": Level.HIGH},  # an enum member as its value
        {"big": 10**4000, "small": -(10**4000)},  # long, but within what Python converts
        {"shared": [[1]] * 3},  # the same list three times is no cycle
    ],
)
def test_what_json_carries_passes(value: Any) -> None:
    assert unfit_for_json(value) is None


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        ({"a": [1, float("nan")]}, ("a", 1), "nan is no JSON number"),
        ({"a": float("inf")}, ("a",), "inf is no JSON number"),
        ({"a": b"x"}, ("a",), "a value of type bytes has no JSON form"),
        ({"a": {1, 2}}, ("a",), "a value of type set has no JSON form"),
        ({"a": object()}, ("a",), "a value of type object has no JSON form"),
        ({"a": {"b": {None: 1}}}, ("a", "b"), "a key of type NoneType is not text"),
        ({"a": ["ok", "x\udfff"]}, ("a", 1), "not valid UTF-8 text (a lone surrogate, U+DFFF"),
        ({"\ud800": 1}, (), "a key is not valid UTF-8 text (a lone surrogate, U+D800"),
        ({"a": 10**4300}, ("a",), "an integer of more than 4300 digits"),
        ({"a": -(10**4300)}, ("a",), "an integer of more than 4300 digits"),
        # in document order: a dict's keys before what they hold, then the next item
        ({"a": [float("nan")], "b": b"x"}, ("a", 0), "nan is no JSON number"),
        # what JSON carries as it is is passed over at once; the rest is still judged
        ({"é": ["ü", 7, Text("x\udfff")]}, ("é", 2), "not valid UTF-8 text"),
        ({"é": 1, "b": {"ok": 2, 3: 4}}, ("b",), "a key of type int is not text"),
        ({"a": [True, None, 1.5, Real("nan")]}, ("a", 3), "nan is no JSON number"),
    ],
)
def test_the_first_thing_json_cannot_carry_is_named(
    value: Any, path: tuple[object, ...], problem: str
) -> None:
    assert sys.get_int_max_str_digits() == 4300  # the interpreter's default
    found = unfit_for_json(value)
    assert found is not None
    assert found.path == path
    assert found.problem.startswith(problem), found.problem


def test_the_longest_integer_python_converts_passes() -> None:
    assert unfit_for_json(10**4300 - 1) is None  # 4300 nines


def test_an_integer_is_judged_by_the_limit_set_when_it_is_walked() -> None:
    """Only an integer short enough for any limit Python allows (640 digits at the least) is
    passed over unjudged: under the least limit, one digit more is named."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert unfit_for_json({"a": [2**1919, 10**639]}) is None  # 578 and 640 digits
        found = unfit_for_json({"a": [2**1919, 10**640]})
        assert found is not None
        assert found.path == ("a", 1)
        assert found.problem.startswith("an integer of more than 640 digits"), found.problem
    finally:
        sys.set_int_max_str_digits(before)


def test_a_value_that_holds_itself_is_named_not_followed() -> None:
    looped: dict[str, Any] = {"a": [1]}
    looped["a"].append(looped)
    holds_itself = "holds itself: JSON has no form for a value that contains itself"
    assert unfit_for_json(looped) == Unfit(("a", 1), holds_itself, "itself", looped)


def test_a_deep_value_is_walked_without_recursion() -> None:
    deep: Any = float("nan")
    for _ in range(100_000):
        deep = [deep]
    found = unfit_for_json({"a": deep})
    assert found is not None
    assert len(found.path) == 100_001


def levels(n: int) -> Any:
    """A list ``n`` levels deep (the outermost counting 1)."""
    value: Any = []
    for _ in range(n - 1):
        value = [value]
    return value


def test_a_value_nested_past_a_depth_is_named_at_the_first_level_too_deep() -> None:
    assert unfit_for_json({"a": levels(63)}, depth=64) is None  # 64 with the dict
    assert unfit_for_json({"a": levels(64)}, depth=None) is None  # no limit unless given
    value = {"ok": [[1]], "a": levels(100_000)}
    found = unfit_for_json(value, depth=64)
    assert found is not None
    path = ("a",) + (0,) * 63
    assert found[:3] == (path, "nested deeper than 64 levels of lists and dicts", "deep")
    item: Any = value
    for step in path:
        item = item[step]
    assert found.item is item  # the list at level 65


@pytest.mark.parametrize(
    ("value", "kind", "item"),
    [
        ({"a": "x\udfff"}, "text", "x\udfff"),
        ({"a": {"\ud800": 1}}, "key", "\ud800"),
        ({"a": {1: 1}}, "key", 1),
        ({"a": -math.inf}, "number", -math.inf),
        ({"a": 10**4300}, "integer", 10**4300),
        ({"a": {1, 2}}, "type", {1, 2}),
    ],
    ids=["text", "surrogate-key", "int-key", "number", "integer", "type"],
)
def test_what_is_named_says_its_kind_and_the_item_or_key_itself(
    value: Any, kind: str, item: object
) -> None:
    """A caller words its own message from these (memory quotes the text)."""
    found = unfit_for_json(value)
    assert found is not None
    assert (found.kind, found.item) == (kind, item)
