"""JSON from outside whose strings decode to a lone surrogate is refused where it is read,
naming where (a JSONPath): Python's reader made it text that no UTF-8 reader holds, and the
message made of it was denied by a policy failing closed, saying nothing of the request."""

from __future__ import annotations

import json

import pytest

from genie._base.strict_json import LoneSurrogateError, loads_strict

WHY = (
    "which is no character: a \\ud800 to \\udbff escape must be followed by a \\udc00 to "
    "\\udfff one"
)


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        # a value, nested in objects and arrays
        (
            r'{"payload": {"items": [1, "x", {"note": "ab\ud800"}]}}',
            "$.payload.items[2].note",
            "$.payload.items[2].note: 'ab\\ud800' holds a lone surrogate (U+D800 at index 2)",
        ),
        # a key: the object holding it is named
        (
            r'{"items": [{"ok": 1, "n\udc00te": 2}]}',
            "$.items[0]",
            "a key of $.items[0]: 'n\\udc00te' holds a lone surrogate (U+DC00 at index 1)",
        ),
        (r'{"\ud800": 1}', "$", "a key of $: '\\ud800' holds a lone surrogate (U+D800 at index 0)"),
        (r'"\udfff"', "$", "$: '\\udfff' holds a lone surrogate (U+DFFF at index 0)"),
        # two halves in the wrong order are two lone ones
        (r'["\udc00\ud800"]', "$[0]", "$[0]: '\\udc00\\ud800' holds a lone surrogate (U+DC00 "),
        # a high half, then a pair: the first is alone
        (r'{"a": "\uD800\ud83d\ude00"}', "$.a", "$.a: '\\ud800😀' holds a lone surrogate (U+D800"),
        # keys that are not names are quoted, and cut as an error cuts what it quotes
        (r'{"a b": {"c.d": ["\ud800"]}}', '$["a b"]["c.d"][0]', '$["a b"]["c.d"][0]: '),
        (
            '{"' + "k" * 60 + r'": "\ud800"}',
            '$["' + "k" * 37 + '..."]',
            '$["' + "k" * 37 + '..."]: ',
        ),
    ],
)
def test_a_lone_surrogate_is_refused_naming_where(text: str, path: str, problem: str) -> None:
    with pytest.raises(LoneSurrogateError) as refused:
        loads_strict(text)
    assert refused.value.path == path
    assert str(refused.value).startswith(problem)
    assert str(refused.value).endswith(WHY)
    assert isinstance(refused.value, ValueError)  # as every other refusal of loads_strict


def test_the_first_is_named_an_objects_keys_before_its_values() -> None:
    for text, path in (
        (r'{"a": {"b": "\ud800"}, "c": {"\udc00": 1}, "d": ["\ud801"]}', "$.a.b"),
        (r'{"a": "\ud800", "\udc00": 1}', "$"),  # the key of the outer object, first
    ):
        with pytest.raises(LoneSurrogateError) as refused:
            loads_strict(text)
        assert refused.value.path == path


def test_a_surrogate_in_the_text_itself_is_refused_too() -> None:
    """Text from Python (a program calling the readers) may hold the surrogate unescaped."""
    with pytest.raises(LoneSurrogateError) as refused:
        loads_strict('{"note": "ab\ud800"}')
    assert refused.value.path == "$.note"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'{"smile": "\ud83d\ude00"}', {"smile": "\U0001f600"}),  # a pair: one character
        (r'{"\uD83D\uDE00": ["\ud800\udc00"]}', {"\U0001f600": ["\U00010000"]}),
        (r'{"path": "C:\\ud800"}', {"path": "C:\\ud800"}),  # a backslash, then text
        ('{"city": "Zürich", "sign": "\u20ac"}', {"city": "Zürich", "sign": "€"}),
    ],
)
def test_pairs_and_text_that_only_looks_like_an_escape_are_read(text: str, value: object) -> None:
    assert loads_strict(text) == value
    assert json.dumps(value, ensure_ascii=False).encode()  # UTF-8 holds every string of it


def test_the_other_refusals_are_unchanged() -> None:
    for text, problem in (
        ('{"a": 1, "a": 2}', "key 'a' given twice"),
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": 1e999}', "number 1e999 is out of range"),
        ('{"a": ' + "9" * 4301 + "}", r"number 9{32}\.\.\. is too long: 4301 digits, at most 4300"),
    ):
        with pytest.raises(ValueError, match=problem) as refused:
            loads_strict(text)
        assert not isinstance(refused.value, LoneSurrogateError)
