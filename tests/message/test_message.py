from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from pydantic import BaseModel, ValidationError

from genie import (
    BaseAgent,
    Classification,
    ConfigurationError,
    Context,
    InvalidMessageError,
    Message,
    MessageTypes,
    Payload,
    Role,
    Runtime,
    UnknownMessageTypeError,
    handler,
)

from ..conftest import Note, Ping, Pong


def test_new_message_fills_ids_and_type() -> None:
    msg = Message.new(Ping(n=1), sender="user", recipient="echo")
    assert msg.type == "ping"
    assert msg.id
    assert msg.correlation_id
    assert msg.trace_id
    assert msg.role is Role.AGENT
    assert msg.classification is Classification.INTERNAL
    assert msg.hops == 0
    assert msg.created_at.tzinfo is not None


def test_message_is_immutable() -> None:
    msg = Message.new(Ping(n=1), sender="user")
    with pytest.raises(ValidationError, match="frozen"):
        msg.hops = 3  # type: ignore[misc]


def test_child_inherits_correlation_and_counts_hops() -> None:
    parent = Message.new(Ping(n=1), sender="user", metadata={"region": "in"})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    child = parent.child(Pong(n=2), sender="echo", id="c1", created_at=at, recipient="user")
    assert child.type == "pong"
    assert (child.sender, child.recipient, child.id) == ("echo", "user", "c1")
    assert child.correlation_id == parent.correlation_id
    assert child.trace_id == parent.trace_id
    assert child.causation_id == parent.id
    assert child.hops == parent.hops + 1
    assert child.created_at == at
    assert child.metadata == {"region": "in"}


def test_child_metadata_is_a_copy() -> None:
    parent = Message.new(Ping(), sender="user", metadata={"roles": ["a", "b"]})
    assert parent.metadata["roles"] == ("a", "b")  # lists are frozen into tuples
    at = datetime(2026, 1, 1, tzinfo=UTC)
    child = parent.child(Pong(), sender="x", id="1", created_at=at, metadata={"extra": "1"})
    assert child.metadata is not parent.metadata
    assert "extra" not in parent.metadata
    assert child.metadata == {"roles": ("a", "b"), "extra": "1"}


def test_child_rejects_a_non_payload() -> None:
    parent = Message.new(Ping(), sender="user")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidMessageError, match="'payload'"):
        parent.child("text", sender="x", id="1", created_at=at)  # type: ignore[arg-type]


def test_type_must_match_payload() -> None:
    with pytest.raises(InvalidMessageError, match="registered as 'ping', not 'pong'"):
        Message.new(Ping(), sender="user", type="pong")


def test_bad_envelope_field_names_the_field() -> None:
    with pytest.raises(InvalidMessageError, match="field 'hops'"):
        Message.new(Ping(), sender="user", hops=-1)


def test_registry_maps_one_name_to_one_model() -> None:
    types = MessageTypes([Ping, Pong])
    assert types.get("ping") is Ping
    assert types.names() == ["ping", "pong"]
    types.register(Ping)  # the same model again is fine

    class OtherPing(Payload):
        message_type = "ping"

    with pytest.raises(ConfigurationError, match="'ping' is already registered"):
        types.register(OtherPing)


def test_registry_refuses_a_model_without_a_type_name() -> None:
    class Nameless(Payload):
        x: int

    with pytest.raises(ConfigurationError, match="sets message_type"):
        MessageTypes([Nameless])


def test_unknown_type_names_the_type_and_suggests() -> None:
    types = MessageTypes([Ping])
    with pytest.raises(UnknownMessageTypeError, match=r"'pnig'.*did you mean 'ping'"):
        types.parse_payload("pnig", {})


def test_invalid_payload_names_type_and_field() -> None:
    types = MessageTypes([Ping])
    with pytest.raises(InvalidMessageError, match=r"invalid 'ping' message: field 'n'") as info:
        types.parse_payload("ping", {"n": "not a number"})
    assert info.value.type_name == "ping"
    assert info.value.field == "n"


def test_unexpected_payload_field_is_refused() -> None:
    types = MessageTypes([Note])
    with pytest.raises(InvalidMessageError, match="field 'colour'"):
        types.parse_payload("note", {"text": "hi", "colour": "red"})


def test_every_problem_of_a_payload_is_named_unknown_keys_too() -> None:
    # It said only "field 'text': Field required", not that 'txt' was no field of it.
    types = MessageTypes([Note, Ping])
    with pytest.raises(InvalidMessageError) as info:
        types.parse_payload("note", {"txt": "hello"})
    assert str(info.value) == (
        "invalid 'note' message: field 'text': Field required; unknown field 'txt' "
        "(did you mean 'text'?)"
    )
    assert info.value.field == "text"  # the first at fault, as genie serve's 400 names it
    with pytest.raises(InvalidMessageError) as info:
        types.parse_payload("ping", '{"n": "x", "sender_tga": "a", "zzz": 1}')
    assert str(info.value) == (
        "invalid 'ping' message: field 'n': Input should be a valid integer, unable to parse "
        "string as an integer; unknown field 'sender_tga' (did you mean 'sender_tag'?); "
        "unknown field 'zzz'"
    )
    with pytest.raises(InvalidMessageError) as info:
        types.parse_payload("note", {"text": "hi", "colour": "red"})
    assert str(info.value) == "invalid 'note' message: field 'colour': unknown field"
    envelope = {"type": "note", "payload": {"text": "x"}, "sender": "u", "recipent": "a"}
    with pytest.raises(InvalidMessageError) as info:
        types.parse_message(envelope)
    assert str(info.value).endswith("field 'recipent': unknown field (did you mean 'recipient'?)")


def test_json_round_trip_through_the_registry() -> None:
    types = MessageTypes([Ping])
    msg = Message.new(Ping(n=7), sender="user", recipient="echo", metadata={"k": "v"})
    back = types.parse_message(msg.model_dump_json())
    assert back == msg
    assert isinstance(back.payload, Ping)


def test_parse_message_rejects_garbage() -> None:
    types = MessageTypes([Ping])
    with pytest.raises(InvalidMessageError, match="not JSON"):
        types.parse_message("{nope")
    with pytest.raises(InvalidMessageError, match="field 'type'"):
        types.parse_message({"payload": {}})


def test_classification_ranks() -> None:
    ranks = [c.rank for c in Classification]
    assert ranks == sorted(ranks)
    assert Classification.PII.rank > Classification.INTERNAL.rank


def test_the_unvalidated_fast_paths_build_what_validation_would() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    fast = Message.top(Ping(n=1), "m1", "user", "echo", Role.USER, at)
    slow = Message.new(
        Ping(n=1), sender="user", recipient="echo", role=Role.USER, id="m1", created_at=at
    )
    assert fast == slow.model_copy(update={"correlation_id": "m1", "trace_id": "m1"})
    child = fast.child(Pong(n=2), sender="echo", id="m2", created_at=at)
    # Both stay ordinary pydantic models: copies with updates and dumps work.
    assert child.model_copy(update={"hops": 5}).hops == 5
    assert fast.model_copy(update={"sender": "other"}).sender == "other"
    assert child.model_dump()["payload"] == {"n": 2}


def test_the_fast_path_falls_back_to_validation_for_what_it_does_not_check() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidMessageError, match="sender"):
        Message.top(Ping(n=1), "m1", "", None, Role.USER, at)
    with pytest.raises(InvalidMessageError, match="'type'"):
        Message.top(Payload(), "m1", "user", None, Role.USER, at)


def test_ids_never_read_as_personal_data() -> None:
    # Ids travel in metadata (the pipelines' trace_id) that the PII policy scans; a hex prefix
    # that happened to be all digits (about 1 seed in 280) read as a 12-digit identity number.
    from genie._message.ids import IdSource
    from genie.policies import PIIBlock

    policy = PIIBlock()
    for seed in range(3000):
        ids = IdSource(seed)
        first = ids()
        assert not any(c.isdigit() for c in first.partition("-")[0]), first
        msg = Message.new(Ping(n=1), sender="user", metadata={"trace_id": first})
        assert policy.evaluate(msg, "agent").allowed, first


def test_ids_are_a_seeded_prefix_and_a_hex_counter() -> None:
    from genie._message.ids import IdSource

    ids = IdSource(7)
    got = [ids() for _ in range(17)]
    prefix = got[0].removesuffix("1")
    assert prefix.endswith("-")
    suffixes = [g.removeprefix(prefix) for g in got]
    assert suffixes == [*"123456789abcdef", "10", "11"]
    assert IdSource(7)() == got[0]  # seeded: reproducible
    assert IdSource(8)() != got[0]


# --- the envelope is a plain object; these pin what it keeps of the pydantic model (issue 19) --
def _fast_and_validated() -> tuple[Message, Message]:
    """The same message twice: built by the runtime's path (a float timestamp) and validated."""
    at = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
    parent = Message.new(Ping(n=1), sender="user", metadata={"region": "in", "roles": ["a"]})
    fast = parent.child(
        Pong(n=2), sender="echo", id="c1", created_at=at.timestamp(), recipient="user"
    )
    validated = Message.model_validate({**fast.model_dump(), "payload": fast.payload})
    assert MessageTypes([Pong]).parse_message(fast.model_dump_json()) == validated
    return fast, validated


def test_a_fast_built_message_dumps_as_a_validated_one() -> None:
    fast, validated = _fast_and_validated()
    lazy = validated.child(Pong(n=2), sender="echo", id="c2", created_at=1.5)
    assert type(lazy._created_at) is float  # converted when first read
    assert lazy.created_at == datetime.fromtimestamp(1.5, UTC)
    assert fast.model_dump() == validated.model_dump()
    assert fast.model_dump(mode="json") == validated.model_dump(mode="json")
    assert fast.model_dump_json() == validated.model_dump_json()
    # Byte for byte what the pydantic model wrote before the envelope became a plain object.
    assert fast.model_dump_json() == (
        '{"id":"c1","type":"pong","sender":"echo","recipient":"user",'
        f'"correlation_id":"{fast.correlation_id}","causation_id":"{fast.causation_id}",'
        f'"trace_id":"{fast.trace_id}","role":"agent","classification":"internal","hops":1,'
        '"created_at":"2026-03-01T12:30:15.250000Z",'
        '"metadata":{"region":"in","roles":["a"]},"payload":{"n":2}}'
    )


def test_created_at_is_a_utc_datetime_read_back_exactly() -> None:
    at = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
    fast, _ = _fast_and_validated()
    assert fast.created_at == at
    assert fast.created_at.tzinfo is UTC
    assert fast.created_at is fast.created_at  # converted once


def test_equality_compares_every_field() -> None:
    fast, validated = _fast_and_validated()
    assert fast == validated
    assert validated == fast
    assert hash(fast) == hash(validated)
    assert len({fast, validated}) == 1
    changes: dict[str, object] = {
        "id": "other",
        "type": "ping",
        "sender": "x",
        "recipient": None,
        "correlation_id": "other",
        "causation_id": None,
        "trace_id": "other",
        "role": Role.TOOL,
        "classification": Classification.SECRET,
        "hops": 9,
        "created_at": datetime(2020, 1, 1, tzinfo=UTC),
        "metadata": {},
        "payload": Pong(n=3),
    }
    assert set(changes) == set(Message.model_fields)
    for name, value in changes.items():
        # A type is its payload's: it changes with one of that type.
        update = {name: value, "payload": Ping(n=2)} if name == "type" else {name: value}
        assert fast.model_copy(update=update) != validated, name
    assert fast != "c1"


def test_a_message_pickles_and_copies_whole() -> None:
    import copy
    import pickle

    fast, validated = _fast_and_validated()
    for msg in (fast, validated):
        for back in (pickle.loads(pickle.dumps(msg)), copy.copy(msg), copy.deepcopy(msg)):
            assert back == msg
            assert type(back) is Message
            assert back.model_dump_json() == msg.model_dump_json()
    deep = fast.model_copy(deep=True)
    assert deep == fast
    assert deep.payload is not fast.payload


def test_a_message_stays_frozen() -> None:
    fast, validated = _fast_and_validated()
    for msg in (fast, validated):
        with pytest.raises(ValidationError, match="frozen"):
            msg.hops = 3  # type: ignore[misc]
        with pytest.raises(ValidationError, match="frozen"):
            del msg.sender
        with pytest.raises(ValidationError, match="frozen"):
            msg.extra = 1


def test_a_message_is_slotted_and_its_class_cannot_be_swapped() -> None:
    import weakref

    fast, validated = _fast_and_validated()
    for msg in (fast, validated):
        assert not hasattr(msg, "__dict__")  # one object per message, no field dict
        assert weakref.ref(msg)() is msg
        with pytest.raises(ValidationError, match="frozen"):
            msg.__class__ = Tagged
        assert type(msg) is Message


class Tagged(Message):
    """A user's subclass of the envelope (module level: it pickles)."""


def test_a_subclass_of_message_keeps_its_class_through_copies() -> None:
    import copy
    import pickle

    tagged = Tagged.new(Ping(n=1), sender="user", metadata={"k": "v"})
    assert type(tagged) is Tagged
    for back in (
        pickle.loads(pickle.dumps(tagged)),
        copy.copy(tagged),
        copy.deepcopy(tagged),
        tagged.model_copy(update={"hops": 2}),
        Tagged.model_validate({**tagged.model_dump(), "payload": tagged.payload}),
    ):
        assert type(back) is Tagged
        assert back.model_dump() | {"hops": 0} == tagged.model_dump()
    with pytest.raises(ValidationError, match="frozen"):
        tagged.hops = 1  # type: ignore[misc]
    # Equal fields, another class: not equal, as two pydantic models of two classes were not.
    assert tagged != Message.model_validate({**tagged.model_dump(), "payload": tagged.payload})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert type(tagged.child(Pong(n=2), sender="echo", id="c", created_at=at)) is Message


def test_model_copy_refuses_a_field_the_envelope_has_not() -> None:
    fast, _ = _fast_and_validated()
    with pytest.raises(ValueError, match="no field 'colour'"):
        fast.model_copy(update={"colour": "red"})


def test_the_constructor_and_model_validate_still_validate() -> None:
    with pytest.raises(ValidationError, match="hops"):
        Message(payload=Ping(), sender="user", hops=-1)
    with pytest.raises(ValidationError, match="sender"):
        Message.model_validate({"type": "ping", "payload": Ping()})
    with pytest.raises(ValidationError, match=r"unexpected|extra"):
        Message.model_validate({"payload": Ping(), "sender": "u", "colour": "red"})
    fast, _ = _fast_and_validated()
    assert Message.model_validate(fast) is fast
    # Without a registry a payload cannot be typed: validation says so, as it always did.
    with pytest.raises(ValidationError, match="payload"):
        Message.model_validate_json(fast.model_dump_json())
    with pytest.raises(ValidationError, match="typed payload"):
        Message.model_validate_json(fast.model_dump_json().replace('{"n":2}', "{}"))
    assert Message.model_json_schema()["title"] == "Message"
    assert fast.model_fields_set == set(Message.model_fields)


def test_a_message_is_a_field_of_a_users_pydantic_model() -> None:
    class Report(BaseModel):
        about: Message
        note: str = ""

    fast, _ = _fast_and_validated()
    report = Report(about=fast)
    assert report.about is fast  # an instance is kept, as pydantic keeps a model
    assert report.model_dump()["about"] == fast.model_dump()
    assert json.loads(report.model_dump_json())["about"] == json.loads(fast.model_dump_json())
    # From data it is validated by the envelope's rules, errors naming the nested field (the
    # payload typed, as Message.model_validate needs it: a registry parses it from JSON).
    data = {**fast.model_dump(), "payload": fast.payload}
    again = Report.model_validate({"about": data})
    assert again.about == fast
    assert type(again.about) is Message
    with pytest.raises(ValidationError, match=r"about\.hops"):
        Report.model_validate({"about": {**data, "hops": -1}})
    with pytest.raises(ValidationError, match=r"about\.sender"):
        Report.model_validate({"about": {"type": "ping", "payload": Ping()}})
    assert "about" in Report.model_json_schema()["properties"]


def test_repr_names_every_field_as_pydantic_did() -> None:
    fast, validated = _fast_and_validated()
    assert repr(fast) == repr(validated)
    assert repr(fast).startswith("Message(id='c1', type='pong', sender='echo'")
    assert "created_at=datetime.datetime(2026, 3, 1, 12, 30, 15, 250000" in repr(fast)
    assert str(fast).startswith("id='c1' type='pong'")


class _Echo(BaseAgent):
    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Pong(n=payload.n))


async def test_timestamps_are_utc_and_never_go_back() -> None:
    async with Runtime([_Echo("echo")]) as rt:
        stamps = []
        for n in range(50):
            request = rt.message(Ping(n=n), sender="user", recipient="echo")
            reply = (await rt.ask(request)).message
            stamps += [request.created_at, reply.created_at]
    assert all(at.tzinfo is UTC for at in stamps)
    assert stamps == sorted(stamps)
    assert abs((stamps[-1] - datetime.now(UTC)).total_seconds()) < 60


def test_a_loop_with_a_clock_of_its_own_stamps_messages_with_it() -> None:
    import asyncio

    from genie._base.clock import Clock

    class VirtualLoop(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 1_000.0  # a frozen virtual clock: every stamp reads it

    epoch = datetime(2026, 1, 1, tzinfo=UTC)

    async def stamps() -> tuple[float, float]:
        clock = Clock(epoch)
        clock.start()
        return clock.timestamp(), clock.monotonic()

    loop = VirtualLoop()
    try:
        first, monotonic = loop.run_until_complete(stamps())
    finally:
        loop.close()
    assert monotonic == 1_000.0  # the loop's own time, not time.monotonic
    assert first == epoch.timestamp()


async def test_on_asyncio_s_own_loop_the_clock_is_the_loop_s_time() -> None:
    import asyncio

    import sniffio

    from genie._base.clock import Clock

    clock = Clock()
    clock.start()
    if sniffio.current_async_library() == "asyncio":
        loop = asyncio.get_running_loop()
        before = loop.time()
        assert before <= clock.monotonic() <= loop.time()
    assert abs(clock.timestamp() - datetime.now(UTC).timestamp()) < 5
    assert abs(clock.now().timestamp() - clock.timestamp()) < 5


def test_a_reply_s_type_is_its_own_class_s_even_after_its_parent_s() -> None:
    # caused_by remembers each payload class's type name: a subclass must not get its
    # parent's, one that sets none inherits it, and what is not a Payload is refused each time.
    class Louder(Pong):
        message_type = "pong.louder"

    class Same(Pong):
        pass

    class NotAPayload(BaseModel):
        message_type: ClassVar[str] = "pong"

    parent = Message.new(Ping(n=1), sender="user")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(2):  # the second time from what was remembered
        assert parent.child(Pong(n=1), sender="a", id="1", created_at=at).type == "pong"
        assert parent.child(Louder(n=1), sender="a", id="2", created_at=at).type == "pong.louder"
        assert parent.child(Same(n=1), sender="a", id="3", created_at=at).type == "pong"
        with pytest.raises(InvalidMessageError, match="must be a Payload subclass"):
            parent.child(NotAPayload(), sender="a", id="4", created_at=at)  # type: ignore[arg-type]
        with pytest.raises(InvalidMessageError, match="must be a Payload subclass"):
            parent.child(Payload(), sender="a", id="5", created_at=at)


def test_ids_count_on_past_one_hex_digit_without_a_gap() -> None:
    from genie._message.ids import IdSource

    ids = IdSource(3)
    got = [ids() for _ in range(4097)]
    prefix = got[0].removesuffix("1")
    assert [int(g.removeprefix(prefix), 16) for g in got] == list(range(1, 4098))
    assert got[-1] == prefix + "1001"


# A caller's envelope field holding a lone surrogate: the field named, and what is said of it.
LONE_SURROGATES = pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        (
            {"sender": "\ud800"},
            "sender",
            "not valid UTF-8 text (a lone surrogate, U+D800 at index 0)",
        ),
        ({"recipient": "echo\udc00"}, "recipient", "U+DC00 at index 4"),
        ({"correlation_id": "c\ud800"}, "correlation_id", "U+D800 at index 1"),
        ({"causation_id": "c\ud800"}, "causation_id", "U+D800 at index 1"),
        ({"trace_id": "\udfff"}, "trace_id", "U+DFFF at index 0"),
        ({"id": "m-\ud800"}, "id", "U+D800 at index 2"),
        ({"metadata": {"k": "v\ud800"}}, "metadata.k", "not valid UTF-8"),
        ({"metadata": {"k": ("a", "\ud800")}}, "metadata.k.1", "not valid UTF-8"),
        ({"metadata": {"k\ud800": "v"}}, "metadata", "a key is not valid UTF-8 text"),
    ],
)


@LONE_SURROGATES
def test_a_lone_surrogate_in_a_field_from_outside_is_refused_naming_it(
    fields: dict[str, object], field: str, problem: str
) -> None:
    """A caller's sender, recipient, id or metadata holding a lone surrogate: no audit log,
    file or policy can read it (the audit row of its denial failed with a UnicodeEncodeError),
    so building the message refuses it, naming the field; the fast path (``rt.message`` with
    a sender and recipient only) does too."""
    rt = Runtime()
    with pytest.raises(InvalidMessageError) as caught:
        rt.message(Ping(n=1), **fields)  # type: ignore[arg-type]
    assert (caught.value.type_name, caught.value.field) == ("ping", field)
    assert problem in caught.value.problem
    assert caught.value.problem.endswith("no log, file or policy can read it")
    with pytest.raises(InvalidMessageError, match=field.replace(".", r"\.")):
        Message.new(Ping(n=1), **{"sender": "user", **fields})  # type: ignore[arg-type]


def test_text_that_is_not_ascii_but_whole_is_kept() -> None:
    rt = Runtime()
    msg = rt.message(Ping(n=1), sender="usér", recipient="écho")
    assert (msg.sender, msg.recipient) == ("usér", "écho")
    pair = "\U0001f600"  # a surrogate pair in UTF-16, one character here
    msg = rt.message(Ping(n=1), sender=pair, metadata={pair: pair}, correlation_id=pair)
    assert (msg.sender, dict(msg.metadata), msg.correlation_id) == (pair, {pair: pair}, pair)


@LONE_SURROGATES
def test_the_constructor_and_a_copy_refuse_it_too(
    fields: dict[str, object], field: str, problem: str
) -> None:
    """``Message(...)`` validated ``recipient``, ``causation_id`` and the metadata with pydantic,
    which let a lone surrogate through, and ``model_copy`` does not validate at all: a handler
    could return such a message. Both refuse it as ``new`` does, naming the field."""
    built = Message.new(Ping(n=1), sender="user")
    with pytest.raises(InvalidMessageError) as constructed:
        Message(payload=Ping(n=1), **{"sender": "user", **fields})
    with pytest.raises(InvalidMessageError) as copied:
        built.model_copy(update=fields)
    for caught in (constructed, copied):
        assert (caught.value.type_name, caught.value.field) == ("ping", field)
        assert problem in caught.value.problem
        assert caught.value.problem.endswith("no log, file or policy can read it")


def test_a_type_given_to_the_constructor_or_a_copy_is_text_too() -> None:
    """The type, which a constructor or a copy may be given apart from the payload, is read by
    the audit log and the policies as the other text fields are: refused the same way."""
    built = Message.new(Ping(n=1), sender="user")
    with pytest.raises(InvalidMessageError, match="field 'type': not valid UTF-8") as made:
        Message(payload=Ping(n=1), sender="user", type="p\ud800")
    with pytest.raises(InvalidMessageError, match=r"U\+DC00 at index 1") as copied:
        built.model_copy(update={"type": "p\udc00"})
    assert made.value.field == copied.value.field == "type"


def test_a_copy_of_whole_text_or_of_no_text_is_made() -> None:
    msg = Message.new(Ping(n=1), sender="user")
    pair = "\U0001f600"
    copied = msg.model_copy(update={"recipient": "écho", "metadata": {pair: ("café",)}})
    assert (copied.recipient, dict(copied.metadata)) == ("écho", {pair: ("café",)})
    copied = msg.model_copy(update={"hops": 3, "payload": Ping(n=2)})
    assert (copied.hops, copied.payload) == (3, Ping(n=2))
    built = Message(payload=Ping(n=1), sender="usér", recipient=pair, metadata={"k": "ü"})
    assert (built.sender, built.recipient, dict(built.metadata)) == ("usér", pair, {"k": "ü"})


def test_a_message_read_back_keeps_what_it_holds() -> None:
    """A message parsed as the runtime parses the durable store's and another process's JSON,
    where a lone surrogate is the escape ``\\ud800``: held already, it is not refused (it would
    be lost), and the policies name what they cannot read of it."""
    text = (
        '{"type": "ping", "sender": "user", "recipient": "echo\\udc00", "payload": {"n": 1}, '
        '"metadata": {"k": "v\\ud800"}}'
    )
    msg = MessageTypes([Ping]).parse_message(text)
    assert (msg.recipient, dict(msg.metadata)) == ("echo\udc00", {"k": "v\ud800"})


class Reading(Payload):
    message_type = "reading"
    value: float
    when: float | None = None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), "nan", "-Infinity"])
def test_a_payload_s_float_is_finite_or_refused_naming_the_field(bad: object) -> None:
    """A message travels as JSON (a store, NATS, serve, --json), which has no NaN or infinity:
    one is refused where the payload is made, naming its field, never carried as a number
    that turns into null (or invalid JSON) on its way."""
    with pytest.raises(ValidationError, match="finite number"):
        Reading(value=bad)
    with pytest.raises(InvalidMessageError, match=r"invalid 'reading' message: field 'when'"):
        MessageTypes([Reading]).parse_payload("reading", {"value": 1.5, "when": bad})
    assert Reading(value=1e308, when=-0.0).value == 1e308  # the largest finite ones are numbers
