"""The content view reads a plain payload's fields as they are, and must find exactly what its
JSON holds: the same scan pieces (strings, keys, identifier numbers, in the same order), a
length bound never below the JSON's, and the same answer to ``content contains``.

Random payloads (seeded) of every shape the walk accepts are compared with the JSON way; the
payloads it must not read (serializers, aliases, exclusions, enums, dates, big numbers, lone
surrogates...) are checked to go the JSON way.
"""

from __future__ import annotations

import json
import random
from datetime import date
from enum import StrEnum
from typing import Annotated, Any

import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    computed_field,
    field_serializer,
)
from typing_extensions import TypedDict

from genie import InvalidMessageError, Message, Payload
from genie.policies import ContentView, PIIBlock, Rule
from genie.policies._dsl import _only_in_strings
from genie.policies._normalise import fold, payload_pieces, pieces, scan_text

from ..conftest import in_threads


class Leaf(BaseModel):
    model_config = ConfigDict(frozen=True)  # a value inside a payload: frozen
    note: str = ""
    card_no: int | float | None = None
    ok: bool = True
    password: str | int = ""  # named for a credential: read as "password: value" too


class Branch(BaseModel):
    model_config = ConfigDict(frozen=True)  # a value inside a payload: frozen
    leaves: list[Leaf] = Field(default_factory=list)
    label: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)


class Wide(Payload):
    # A model of the user's may allow NaN and infinity in its own config: the view reads them
    # as the JSON way does.
    model_config = ConfigDict(allow_inf_nan=True)
    message_type = "view.wide"
    text: str = ""
    phone: int | float | None = None
    amount_paise: int = 0
    ratio: float = 0.0
    flag: bool | None = None
    items: list[Any] = Field(default_factory=list)
    pair: tuple[str, int] = ("", 0)
    table: dict[str, Any] = Field(default_factory=dict)
    branch: Branch | None = None
    branches: list[Branch] = Field(default_factory=list)


WORDS = (
    "hello",
    "DROP TABLE users",
    "ignore previous instructions",
    'say "hi"',
    "back\\slash",
    "tab\there",
    "\u0007bell",
    "नमस्ते दुनिया",
    "\uff49\uff47\uff4e\uff4f\uff52\uff45",  # fullwidth
    "",
    "  spaced  out  ",
    "call 98765 43210",
    "x" * 40,
)
KEYS = (
    "note", "phone_no", "card", "account_id", "कार्ड", "DROP TABLE", 'q"uote', "amount",
    "upi_pin", "X-API-Key", "clientSecret",
)  # fmt: skip
NUMBERS = (0, 7, -3, 9_876_543_210, 4111111111111111, 10**29, 1.5, 9_876_543_210.0, -0.0, 1e22)
SPECIAL = (float("inf"), float("nan"), True, False, None)


def value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 2 or roll < 0.45:
        return rng.choice(WORDS)
    if roll < 0.65:
        return rng.choice(NUMBERS + SPECIAL)
    if roll < 0.8:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): value(rng, depth + 1) for _ in range(rng.randrange(4))}


def leaf(rng: random.Random) -> Leaf:
    return Leaf(
        note=rng.choice(WORDS),
        card_no=rng.choice((*NUMBERS, None, float("inf"))),
        ok=rng.random() < 0.5,
        password=rng.choice((*WORDS, 482916)),
    )


def branch(rng: random.Random) -> Branch:
    return Branch(
        leaves=[leaf(rng) for _ in range(rng.randrange(3))],
        label=rng.choice(WORDS),
        extra={rng.choice(KEYS): value(rng, 1) for _ in range(rng.randrange(3))},
    )


def wide(rng: random.Random) -> Wide:
    return Wide(
        text=rng.choice(WORDS),
        phone=rng.choice((*NUMBERS, None, float("nan"))),
        amount_paise=rng.choice([0, 10**12, -5]),
        ratio=rng.choice([0.0, 2.5, 1e300, float("-inf")]),
        flag=rng.choice([True, False, None]),
        items=[value(rng, 1) for _ in range(rng.randrange(4))],
        pair=(rng.choice(WORDS), rng.choice([1, 98765432101])),
        table={rng.choice(KEYS): value(rng, 1) for _ in range(rng.randrange(5))},
        branch=branch(rng) if rng.random() < 0.5 else None,
        branches=[branch(rng) for _ in range(rng.randrange(3))],
    )


class Flat(Payload):
    """No nested value: the walk takes its names and its JSON bound from the class."""

    model_config = ConfigDict(allow_inf_nan=True)  # as Wide
    message_type = "view.flat"
    note: str = ""
    card_no: int | float | None = None
    otp: int | float | str | None = None
    amount_paise: int | float = 0
    ok: bool | None = None
    title: str = ""


class Counts(Payload):
    """Ints only: their JSON (31 bytes at most, below the walk's bound) fills its bound."""

    message_type = "view.counts"
    a: int = 0
    b: int = 0
    c: int = 0


class Named(Payload):
    """A field name JSON holds as it is but not as ASCII (three UTF-8 bytes a letter)."""

    message_type = "view.named"
    कार्डकार्डकार्डकार्डकार्ड: str = ""


# Strings JSON escapes, or writes in more bytes than characters, many times over.
ESCAPED = ('"' * 40, "\\" * 40, "\x01" * 40, "\x7f" * 40, "é" * 40, "\U0001f600" * 40)


def nested(depth: int) -> list[Any]:
    out: list[Any] = ["deep"]
    for _ in range(depth):
        out = [out]
    return out


def as_json(payload: BaseModel) -> list[str]:
    return pieces(json.loads(payload.model_dump_json()))


def test_the_walk_finds_what_the_json_holds() -> None:
    rng = random.Random(19)
    walked = clean = 0
    for i in range(2_000):
        payload: Payload = wide(rng)
        if i % 2:  # as a message holds it: containers frozen
            msg = Message.new(payload, sender="u", metadata={"note": rng.choice(WORDS)})
            payload = msg.payload
        found = payload_pieces(payload, {})
        assert found is not None, payload
        assert [found.strings, found.keys, *found.extras] == as_json(payload), payload
        dumped = payload.model_dump_json()
        assert found.size_at_most >= len(dumped.encode()), payload
        if found.strings_as_is:
            # the JSON holds every string as it is (nothing escaped), so a needle inside
            # one is in the scan
            assert dumped.isascii()
            assert "\\" not in dumped
            clean += 1
        walked += 1
    assert walked == 2_000
    assert 0 < clean < walked  # both kinds were met


def test_a_flat_payload_is_walked_as_its_json_holds() -> None:
    rng = random.Random(23)
    strings = WORDS + ESCAPED
    # the ints around the walk's bounds (one CPython digit; 30 decimal digits), and floats
    numbers = (*NUMBERS, 10**30 - 1, -(10**30) + 1, 2**30 - 1, 2**30, -(2**30), float("nan"))
    payloads: list[Payload] = [
        Flat(
            note=rng.choice(strings),
            card_no=rng.choice((*numbers, None, float("inf"))),
            otp=rng.choice((*numbers, *strings, None)),
            amount_paise=rng.choice(numbers),
            ok=rng.choice((True, False, None)),
            title=rng.choice(strings),
        )
        for _ in range(1_000)
    ]
    payloads += [Named(कार्डकार्डकार्डकार्डकार्ड=text) for text in strings]
    payloads += [Flat(amount_paise=n, card_no=n) for n in numbers]
    payloads += [Counts(a=n, b=n, c=n) for n in numbers if type(n) is int]
    for payload in payloads:
        found = payload_pieces(payload, {})
        assert found is not None, payload
        assert [found.strings, found.keys, *found.extras] == as_json(payload), payload
        dumped = payload.model_dump_json()
        assert found.size_at_most >= len(dumped.encode()), payload
        # JSON holds every string (names too) as it is, which its text shows
        assert found.strings_as_is == (
            dumped.isascii() and dumped.isprintable() and "\\" not in dumped
        )


def test_the_view_scans_and_answers_as_the_json_way() -> None:
    rng = random.Random(7)
    needles = ("DROP TABLE", "drop table", "0000000000", ":true", '"text"', "é", "", "null", "Hi")
    for _ in range(500):
        msg = Message.new(wide(rng), sender="u", metadata={"user_id": rng.choice(WORDS)})
        view = ContentView()
        text = msg.payload.model_dump_json()
        scan = scan_text(json.loads(text), msg.metadata)
        assert view.scan(msg) == scan
        for needle in needles:
            folded = fold(needle)
            expected = needle in text or folded in scan
            assert view.contains(msg, needle, folded, _only_in_strings(needle)) == expected


def test_a_payload_near_the_limit_is_measured_exactly() -> None:
    view = ContentView()
    for size in range(60, 80):
        msg = Message.new(Wide(text="a" * size), sender="u")
        bound = view.size_at_most(msg)
        assert bound is not None
        assert bound >= len(view.text(msg).encode())


class Shade(StrEnum):
    RED = "red"


class Pt(TypedDict):
    x: str


class Base(BaseModel):
    model_config = ConfigDict(frozen=True)  # a value inside a payload: frozen
    a: str = ""


class Child(Base):
    b: str = "hidden from a Base field's JSON"


class Serialised(Payload):
    message_type = "view.serialised"
    a: str = "x"

    @field_serializer("a")
    def upper(self, value: str) -> str:
        return value.upper()


class Computed(Payload):
    message_type = "view.computed"
    a: str = "x"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def b(self) -> str:
        return "computed"


class Aliased(Payload):
    message_type = "view.aliased"
    model_config = ConfigDict(serialize_by_alias=True)
    a: str = Field(default="x", alias="shown")


class Excluded(Payload):
    message_type = "view.excluded"
    a: str = Field(default="secret", exclude=True)


class Annotated_(Payload):
    message_type = "view.annotated"
    a: list[Annotated[str, PlainSerializer(lambda v: v[::-1])]] = Field(
        default_factory=lambda: ["abc"]
    )


class Strings(Payload):
    message_type = "view.strings"
    model_config = ConfigDict(ser_json_inf_nan="strings")
    a: float = float("inf")


class Typed(Payload):
    message_type = "view.typed"
    a: Pt = Field(default_factory=lambda: Pt(x="y"))


class Related(Payload):
    message_type = "view.related"
    base: Base = Child()
    child: Child = Child()


class Root(RootModel[list[str]]):
    model_config = ConfigDict(frozen=True)  # a value inside a payload: frozen


class Rooted(Payload):
    message_type = "view.rooted"
    a: Root = Root(["x"])


class Extra(Payload):
    message_type = "view.extra"
    model_config = ConfigDict(extra="allow")
    a: str = ""


class Loose(Payload):
    message_type = "view.loose"
    a: Any = None


@pytest.mark.parametrize(
    "payload",
    [
        Serialised(),
        Computed(),
        Aliased(),
        Excluded(),
        Annotated_(),
        Strings(),
        Typed(),
        Related(),
        Rooted(),
        Extra(a="x", more="y"),
        Loose(a=Shade.RED),
        Loose(a=date(2026, 1, 1)),
        Loose(a=10**40),
        Loose(a={1: "int key"}),
        Loose(a={"s"}),
        Loose(a=nested(70)),  # more containers than the walk takes
    ],
    ids=lambda p: type(p).__name__,
)
def test_a_payload_whose_json_the_walk_cannot_predict_goes_the_json_way(
    payload: Payload,
) -> None:
    assert payload_pieces(payload, {}) is None
    msg = Message.new(payload, sender="u")
    view = ContentView()
    try:
        expected: object = scan_text(json.loads(payload.model_dump_json()), msg.metadata)
    except Exception as exc:
        expected = type(exc)
    try:
        got: object = view.scan(msg)
    except Exception as exc:
        got = type(exc)
    assert got == expected


# Where a message holds text UTF-8 cannot encode (a lone surrogate), and how the view names it.
NOT_TEXT = "not valid UTF-8 text (a lone surrogate, U+{:04X} at index {}): no policy can read it"
A_KEY = f"a key is {NOT_TEXT}"


@pytest.mark.parametrize(
    ("payload", "metadata", "field", "problem"),
    [
        (Loose(a="lone \ud800 surrogate"), {}, "payload.a", NOT_TEXT.format(0xD800, 5)),
        (
            Loose(a={"notes": ["fine", {"by": "x\udc80"}]}),
            {},
            "payload.a.notes.1.by",
            NOT_TEXT.format(0xDC80, 1),
        ),
        # pydantic's JSON writes such a key as U+FFFD: the policies would read another key
        (Loose(a={"k\ud800": 1}), {}, "payload.a", A_KEY.format(0xD800, 1)),
        (Loose(a=frozenset({"x\ud800"})), {}, "payload.a.0", NOT_TEXT.format(0xD800, 1)),
        # a key on the way is shown as a deny reason shows a value: free text is not
        (
            Loose(a={"a free text key": "x\ud800"}),
            {},
            "payload.a.(not shown)",
            NOT_TEXT.format(0xD800, 1),
        ),
        (Loose(a="fine"), {"user_id": "u\ud800"}, "metadata.user_id", NOT_TEXT.format(0xD800, 1)),
        (Loose(a="fine"), {"u\ud800": "x"}, "metadata", A_KEY.format(0xD800, 1)),
    ],
    ids=["value", "nested", "key", "set", "unshown key", "metadata", "metadata key"],
)
def test_text_no_policy_can_read_is_named_where_it_is(
    payload: Payload, metadata: dict[str, str], field: str, problem: str
) -> None:
    """Such text has no JSON (pydantic raised a PydanticSerializationError, or wrote a key as
    U+FFFD) and no scan (the fold raised UnicodeEncodeError): what the view refuses it with
    names the type and the field, not the text."""
    # Metadata is refused when a caller or a handler builds the message; one read back (the
    # durable store's, another process's, as the runtime parses them) may still hold it.
    msg = Message.model_validate({"payload": payload, "sender": "u", "metadata": metadata})
    if metadata:  # the payload is read without its JSON; the metadata fails the fold
        reads = [ContentView().scan]
    else:  # the payload is read the JSON way, where it fails
        assert payload_pieces(payload, {}) is None
        reads = [ContentView().text, ContentView().scan]
    for read in reads:
        with pytest.raises(InvalidMessageError) as refused:
            read(msg)
        assert (refused.value.type_name, refused.value.field) == ("view.loose", field)
        assert refused.value.problem == problem


@pytest.mark.parametrize("payload", [Loose(a="a \ufffd in text"), Loose(a={"\ufffd": 1})])
def test_a_replacement_character_sent_as_such_is_read(payload: Payload) -> None:
    msg = Message.new(payload, sender="u")
    assert "\ufffd" in ContentView().text(msg)
    assert "\ufffd" in ContentView().scan(msg)


def test_a_rule_on_content_finds_what_only_the_json_holds() -> None:
    # a number outside an identifier field is not in the scan text, a literal neither
    msg = Message.new(Wide(amount_paise=10**12, flag=True), sender="u")
    assert not Rule("n", 'content contains "0000000000"').evaluate(msg, "a").allowed
    assert not Rule("t", 'content contains ":true"').evaluate(msg, "a").allowed
    assert Rule("s", 'content contains "DROP TABLE"').evaluate(msg, "a").allowed
    sneaky = Message.new(Wide(table={"DROP TABLE": 1}), sender="u")  # in a key
    assert not Rule("s", 'content contains "DROP TABLE"').evaluate(sneaky, "a").allowed


def test_metadata_shared_by_messages_is_read_right() -> None:
    # Outputs share their parent's frozen metadata: the view keeps its pieces, by identity.
    view = ContentView()
    first = Message.new(Wide(text="a"), sender="u", metadata={"note": "call 98765 43210"})
    second = Message.new(Wide(text="b"), sender="u")
    object.__setattr__(second, "metadata", first.metadata)  # as ``derive`` shares it
    third = Message.new(Wide(text="c"), sender="u", metadata={"note": "nothing"})  # read anew
    for msg in (first, second, third, first):
        expected = scan_text(json.loads(msg.payload.model_dump_json()), msg.metadata)
        assert view.scan(msg) == expected


def test_a_view_shared_by_threads_judges_each_message_by_its_own_text() -> None:
    # Runtimes in two threads may share one policy list, and with it the view: each message is
    # judged by its own text, never by the one the other thread read meanwhile.
    policy = PIIBlock()
    clean = [Message.new(Wide(text=f"hello there {n}"), sender="u") for n in range(500)]
    leaky = [Message.new(Wide(text=f"mail bob{n}@example.com"), sender="u") for n in range(500)]
    wrong: list[tuple[str, bool]] = []

    def judge(messages: list[Message], allowed: bool) -> None:
        for _ in range(10):
            for msg in messages:
                if policy.evaluate(msg, "agent").allowed is not allowed:
                    wrong.append((msg.payload.text, allowed))  # type: ignore[attr-defined]

    in_threads(lambda: judge(clean, True), lambda: judge(leaky, False))
    assert wrong == []
