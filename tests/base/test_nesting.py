"""Deeply nested data at the boundaries (parse_message, parse_payload, Runtime.parse, genie run
--input) is an invalid message naming its type, never a RecursionError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genie import InvalidMessageError, MessageTypes, Payload, Runtime
from genie._base.nesting import (
    MAX_DEPTH,
    json_depth_exceeds,
    loads_bounded,
    top_level_type,
    value_depth_exceeds,
)
from genie._cli.main import main

GOOD = Path(__file__).parents[1] / "pipelines" / "good"
DEEP = 100_000
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels of arrays and objects"


class Blob(Payload):
    message_type = "blob"
    data: Any = None


def deep_text(levels: int) -> str:
    return "[" * levels + "]" * levels


def deep_value(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def envelope(data: str) -> str:
    return f'{{"type": "blob", "sender": "user", "payload": {{"data": {data}}}}}'


@pytest.mark.parametrize("as_bytes", [False, True])
def test_deep_json_message_names_its_type(as_bytes: bool) -> None:
    text = envelope(deep_text(DEEP))
    with pytest.raises(InvalidMessageError, match=TOO_DEEP) as caught:
        MessageTypes([Blob]).parse_message(text.encode() if as_bytes else text)
    assert (caught.value.type_name, caught.value.field) == ("blob", "<root>")


def test_deep_mappings_and_payloads_are_refused() -> None:
    types = MessageTypes([Blob])
    deep = deep_value(DEEP)
    for parse in (
        lambda: types.parse_message({"type": "blob", "sender": "u", "payload": {"data": deep}}),
        lambda: types.parse_payload("blob", {"data": deep}),
        lambda: types.parse_payload("blob", json.dumps({"data": 1})[:-1] + deep_text(DEEP) + "}"),
        lambda: types.parse_payload("blob", ('{"data": ' + deep_text(DEEP) + "}").encode()),
        lambda: Runtime(types=MessageTypes([Blob])).parse("blob", {"data": deep}),
    ):
        with pytest.raises(InvalidMessageError, match=TOO_DEEP) as caught:
            parse()
        assert caught.value.type_name == "blob"


def test_the_limit_is_exact() -> None:
    """An envelope is level 1, its payload 2: data may nest MAX_DEPTH - 2 levels."""
    types = MessageTypes([Blob])
    fits = deep_value(MAX_DEPTH - 2)
    message = types.parse_message(envelope(json.dumps(fits)))
    assert message.payload == Blob(data=fits)
    assert types.parse_message({"type": "blob", "sender": "u", "payload": {"data": fits}})
    with pytest.raises(InvalidMessageError, match=TOO_DEEP):
        types.parse_message(envelope(json.dumps(deep_value(MAX_DEPTH - 1))))
    assert types.parse_payload("blob", {"data": deep_value(MAX_DEPTH - 1)})
    with pytest.raises(InvalidMessageError, match=TOO_DEEP):
        types.parse_payload("blob", {"data": deep_value(MAX_DEPTH)})


def test_brackets_in_strings_do_not_count() -> None:
    text = json.dumps({"data": ["[" * 1000, '{\\"' * 500, '"]' * 300]})
    assert not json_depth_exceeds(text)
    message = MessageTypes([Blob]).parse_message(envelope(text))
    assert isinstance(message.payload, Blob)
    assert not json_depth_exceeds('"\\\\"' + "[" * 10 + "]" * 10, 10)
    assert json_depth_exceeds('"\\\\"' + "[" * 11 + "]" * 11, 10)


def test_depth_helpers() -> None:
    assert value_depth_exceeds([[]], 1)
    assert not value_depth_exceeds([[]], 2)
    assert value_depth_exceeds({"a": ({"b": 1},)}, 2)
    assert not value_depth_exceeds({"a": ({"b": 1},)}, 3)
    assert not value_depth_exceeds("[[[[", 1)
    assert top_level_type('{"payload": {"type": "inner"}, "a": [1], "type": "outer"}') == "outer"
    assert top_level_type('["type", "x"]') is None
    assert top_level_type('{"type": 3}') is None
    assert top_level_type('{"type": "' + "x" * 10 + '", "p": ' + "[" * DEEP) == "x" * 10


def test_deep_input_file_is_exit_2_naming_the_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "deep.json"
    bad.write_text('{"n": ' + deep_text(DEEP) + "}")
    assert main(["run", str(GOOD / "json_entry.yaml"), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"genie run: {bad} does not fit the entry payload: invalid 'serve' message: "
        f"field '<root>': {TOO_DEEP}\n"
    )


def test_a_delivery_is_bounded_as_its_message() -> None:
    """A delivery across processes checks its text once, then its message is not walked again:
    the limit stays exactly parse_message's, and a hostile depth is refused, never a
    RecursionError from the JSON parser."""
    from genie._message.envelope import Message
    from genie._runtime.transport import Delivery

    types = MessageTypes([Blob])

    def delivery(data: Any) -> str:
        message = Message(type="blob", sender="u", payload=Blob(data=data))
        return Delivery(message, "agent").encode().decode()

    fits = deep_value(MAX_DEPTH - 2)
    assert Delivery.decode(delivery(fits), types).message.payload == Blob(data=fits)
    for text in (delivery(deep_value(MAX_DEPTH - 1)), '{"message": ' + deep_text(DEEP) + "}"):
        with pytest.raises(InvalidMessageError, match=TOO_DEEP):
            Delivery.decode(text, types)
        with pytest.raises(InvalidMessageError, match=TOO_DEEP):
            Delivery.decode(text.encode(), types)


def test_a_payload_given_as_json_text_inside_an_envelope_is_checked() -> None:
    types = MessageTypes([Blob])
    inner = '{"data": ' + deep_text(DEEP) + "}"
    for parse in (types.parse_message, types.parse_bounded_message):
        with pytest.raises(InvalidMessageError, match=TOO_DEEP):
            parse({"type": "blob", "sender": "u", "payload": inner})
    ok = types.parse_bounded_message({"type": "blob", "sender": "u", "payload": '{"data": [1]}'})
    assert ok.payload == Blob(data=[1])


def test_loads_bounded_reads_up_to_the_limit_and_refuses_deeper_naming_it() -> None:
    assert loads_bounded(deep_text(MAX_DEPTH)) == json.loads(deep_text(MAX_DEPTH))
    for text in (deep_text(MAX_DEPTH + 1), deep_text(DEEP)):
        with pytest.raises(ValueError, match=TOO_DEEP):
            loads_bounded(text)
    with pytest.raises(json.JSONDecodeError):
        loads_bounded("[1,")
