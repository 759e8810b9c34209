"""Messages immutable all the way down (issue 35, item 5): whatever a payload or metadata holds
is frozen when the message is built, or the message is refused with a ``MessageError`` naming
its type and the path to the value. Each case publishes one message to two agents through a
real runtime: the first tries to change what it was given, the second (which reads only once
the first is done) must see what was published. On both anyio backends."""

from __future__ import annotations

import array
import types
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import anyio
import pytest
from pydantic import BaseModel, ConfigDict, Field

from genie import BaseAgent, Context, InvalidMessageError, Message, MessageError, Payload, Runtime
from genie import handler as on

from ..conftest import Ping


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Loose(Payload):
    message_type = "freeze.loose"
    value: Any = None


class Open(Payload):
    message_type = "freeze.open"
    model_config = ConfigDict(extra="allow")
    note: str = ""


class Grabber(BaseAgent):
    """The first recipient: tries to change its payload in place, then lets the second read."""

    def __init__(self, id: str, change: Callable[[Any, Context], object]) -> None:
        super().__init__(id)
        self.change = change
        self.done = anyio.Event()
        self.refused: list[str] = []

    async def _grab(self, payload: Any, ctx: Context) -> None:
        try:
            self.change(payload, ctx)
        except (TypeError, AttributeError, KeyError) as exc:
            self.refused.append(type(exc).__name__)
        finally:
            self.done.set()

    @on
    async def on_loose(self, payload: Loose, ctx: Context) -> None:
        await self._grab(payload.value, ctx)

    @on
    async def on_open(self, payload: Open, ctx: Context) -> None:
        await self._grab(payload, ctx)


class Witness(BaseAgent):
    """The second recipient: reads its payload once the first is done with it."""

    def __init__(self, id: str, first: Grabber, read: Callable[[Any, Context], object]) -> None:
        super().__init__(id)
        self.first = first
        self.read = read
        self.seen: list[object] = []

    @on
    async def on_loose(self, payload: Loose, ctx: Context) -> None:
        await self.first.done.wait()
        self.seen.append(self.read(payload.value, ctx))

    @on
    async def on_open(self, payload: Open, ctx: Context) -> None:
        await self.first.done.wait()
        self.seen.append(self.read(payload, ctx))


async def fan_out(
    msg: Callable[[Runtime], Message],
    change: Callable[[Any, Context], object],
    read: Callable[[Any, Context], object],
) -> tuple[Grabber, Witness]:
    grabber = Grabber("grabber", change)
    witness = Witness("witness", grabber, read)
    async with Runtime([grabber, witness]) as rt:
        built = msg(rt)
        for agent in ("grabber", "witness"):
            rt.subscribe(agent, built.type)
        with anyio.fail_after(5):
            await rt.publish(built)
            await rt.wait_idle()
    assert rt.statistics().dead_lettered == 0
    return grabber, witness


def loose(value: Any) -> Callable[[Runtime], Message]:
    return lambda rt: rt.message(Loose(value=value))


@dataclass(frozen=True, eq=False)  # hashed by identity: it can sit in a frozenset
class Tag:
    names: list[str]


@dataclass(frozen=True)
class Table:
    rows: dict[str, list[int]]


class Pair(NamedTuple):
    name: str
    items: list[int]


def _setitem(key: object, value: object) -> Callable[[Any, Context], object]:
    return lambda v, ctx: v.__setitem__(key, value)


class _Mutable(dict[Any, Any]):
    __slots__ = ()


class Frozen(NamedTuple):
    """A fan-out case: the value published, the first recipient's change, what the second
    reads and what it must find there (what was published)."""

    value: Callable[[], Any]
    change: Callable[[Any, Context], object]
    read: Callable[[Any, Context], object]
    expected: object
    refused: bool = True  # the change raises (else it is a no-op)


FROZEN = {
    "OrderedDict": Frozen(
        lambda: OrderedDict([("b", [1]), ("a", [2])]),
        lambda v, ctx: v.move_to_end("b"),
        lambda v, ctx: list(v.items()),
        [("b", [1]), ("a", [2])],
    ),
    "defaultdict": Frozen(
        lambda: defaultdict(list, {"a": [1]}),
        lambda v, ctx: v["missing"].append(9),  # a read that would store the default
        lambda v, ctx: dict(v),
        {"a": [1]},
    ),
    "Counter": Frozen(
        lambda: Counter("aab"),
        lambda v, ctx: v.update("a"),
        lambda v, ctx: dict(v),
        {"a": 2, "b": 1},
    ),
    "deque": Frozen(
        lambda: deque([1, 2]), lambda v, ctx: v.append(3), lambda v, ctx: list(v), [1, 2]
    ),
    "array": Frozen(
        lambda: array.array("i", [1, 2]), _setitem(0, 9), lambda v, ctx: list(v), [1, 2]
    ),
    "memoryview of a bytearray": Frozen(
        lambda: memoryview(bytearray(b"abc")),
        _setitem(0, ord("z")),
        lambda v, ctx: bytes(v),
        b"abc",
    ),
    "the buffer behind a memoryview": Frozen(
        lambda: memoryview(bytearray(b"abc")),
        lambda v, ctx: v.obj.__setitem__(0, ord("z")),
        lambda v, ctx: bytes(v),
        b"abc",
    ),
    "bytearray in a deque": Frozen(
        lambda: deque([bytearray(b"ab")]),
        lambda v, ctx: v[0].extend(b"!"),
        lambda v, ctx: bytes(v[0]),
        b"ab",
    ),
    "mapping proxy over a dict of lists": Frozen(
        lambda: types.MappingProxyType({"a": [1]}),
        lambda v, ctx: v["a"].append(9),
        lambda v, ctx: dict(v),
        {"a": [1]},
    ),
    "list in a frozen dataclass in a tuple in a frozenset": Frozen(
        lambda: frozenset({("t", Tag(["x"]))}),
        lambda v, ctx: next(iter(v))[1].names.append("evil"),
        lambda v, ctx: next(iter(v))[1].names,
        ["x"],
    ),
    "dict in a frozen dataclass": Frozen(
        lambda: Table({"a": [1]}),
        lambda v, ctx: v.rows["a"].append(9),
        lambda v, ctx: v.rows,
        {"a": [1]},
    ),
    "list in a named tuple": Frozen(
        lambda: Pair("p", [1]),
        lambda v, ctx: v.items.append(9),
        lambda v, ctx: v,
        ("p", [1]),
    ),
    # Genie's own frozen containers, past their refused methods
    "a frozen dict filled again by __init__": Frozen(
        lambda: {"a": 1}, lambda v, ctx: v.__init__({"evil": 1}), lambda v, ctx: v, {"a": 1}, False
    ),
    "a frozen list emptied by __init__": Frozen(
        lambda: [1, 2], lambda v, ctx: v.__init__(), lambda v, ctx: v, [1, 2], False
    ),
    "a frozen dict given a mutable class": Frozen(
        lambda: {"a": 1},
        lambda v, ctx: setattr(v, "__class__", _Mutable),
        lambda v, ctx: (type(v).__name__, v),
        ("FrozenDict", {"a": 1}),
    ),
    "the shared empty metadata filled by __init__": Frozen(
        lambda: None,
        lambda v, ctx: ctx.message.metadata.__init__(evil="x"),  # type: ignore[misc]
        lambda v, ctx: ctx.message.metadata,
        {},
        False,
    ),
}


@pytest.mark.parametrize("kind", list(FROZEN))
async def test_a_second_recipient_sees_what_was_published(kind: str) -> None:
    case = FROZEN[kind]
    grabber, witness = await fan_out(loose(case.value()), case.change, case.read)
    assert witness.seen == [case.expected]
    assert bool(grabber.refused) is case.refused  # refused loudly (``__init__`` does nothing)
    assert Message.new(Ping(), sender="u").metadata == {}  # nothing leaked into the shared


async def test_extra_fields_are_frozen_too() -> None:
    def change(payload: Any, ctx: Context) -> None:
        try:
            payload.model_extra["added"] = "x"
        finally:
            payload.blob.append(3)

    grabber, witness = await fan_out(
        lambda rt: rt.message(Open(note="n", blob=[1, 2], window=deque([1]))),
        change,
        lambda payload, ctx: (dict(payload.model_extra), list(payload.blob)),
    )
    assert witness.seen == [({"blob": [1, 2], "window": (1,)}, [1, 2])]
    assert grabber.refused == ["TypeError"]


# --- refused: a MessageError naming the type and the path ---------------------------------------
class Overriding(dict[str, Any]):
    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key.lower(), value)


class Slotted(list[int]):
    __slots__ = ("note",)


class Node:
    def __init__(self) -> None:
        self.value = 1


@dataclass
class Mutable:
    items: list[int] = field(default_factory=list)


class Inner(BaseModel):
    n: int = 0


def _cycle() -> deque[Any]:
    ring: deque[Any] = deque([1])
    ring.append(ring)
    return ring


def _numbers() -> Iterator[int]:
    yield from (1, 2)


REFUSED: dict[str, tuple[Callable[[], Any], str, str]] = {
    "a dict subclass overriding __setitem__": (
        lambda: Overriding(a=1),
        "payload.value",
        "subclass of dict",
    ),
    "a list subclass with __slots__": (
        lambda: {"rows": Slotted([1])},
        "payload.value.rows",
        "a Slotted",
    ),
    "a SimpleNamespace": (lambda: types.SimpleNamespace(a=[1]), "payload.value", "attributes"),
    "a plain object in a list": (lambda: [0, Node()], "payload.value.1", "attributes"),
    "a plain object as a key": (lambda: {"k": {Node(): 1}}, "payload.value.k.", "attributes"),
    "a plain object in a tuple in a frozenset": (
        lambda: frozenset({("t", Node())}),
        "payload.value.0.1",
        "attributes",
    ),
    "a dataclass that is not frozen": (lambda: Mutable([1]), "payload.value", "not frozen"),
    "a model that is not frozen": (
        lambda: {"inner": Inner()},
        "payload.value.inner",
        "not frozen",
    ),
    "a cycle through a deque": (_cycle, "payload.value", "cycle"),
    "a generator": (_numbers, "payload.value", "one-shot iterator"),
}


@pytest.mark.parametrize("kind", list(REFUSED))
async def test_what_cannot_be_frozen_is_refused_at_publish(kind: str) -> None:
    value, path, problem = REFUSED[kind]
    grabber = Grabber("grabber", lambda v, ctx: None)
    witness = Witness("witness", grabber, lambda v, ctx: v)
    async with Runtime([grabber, witness]) as rt:
        rt.subscribe("grabber", "freeze.loose")
        rt.subscribe("witness", "freeze.loose")
        with pytest.raises(MessageError, match=problem) as caught:
            await rt.publish(rt.message(Loose(value=value())))
        await rt.wait_idle()
        assert rt.statistics().published == 0
    assert isinstance(caught.value, InvalidMessageError)
    assert caught.value.type_name == "freeze.loose"
    field = caught.value.field
    assert field == path or (path.endswith(".") and field.startswith(path))  # a key: its repr
    assert not witness.seen


class Windowed(Payload):
    message_type = "freeze.windowed"
    window: deque[int] = Field(default_factory=deque)


class Unfrozen(Payload):
    message_type = "freeze.unfrozen"
    model_config = ConfigDict(frozen=False)
    n: int = 0


class Streamed(Payload):
    message_type = "freeze.streamed"
    numbers: Iterable[int] = ()


class Holding(Payload):
    message_type = "freeze.holding"
    inner: Inner = Inner()


class Keeper(BaseAgent):
    """Would take any of the payloads below (they are registered with it)."""

    produces = (Windowed, Unfrozen, Streamed, Holding, Open)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        return ()


@pytest.mark.parametrize(
    ("payload", "path", "problem"),
    [
        (lambda: Windowed(window=deque([1])), "payload.window", "declare it a tuple"),
        (lambda: Unfrozen(n=1), "payload", "not frozen"),
        (lambda: Streamed(numbers=[1, 2]), "payload.numbers", "one-shot iterator"),
        (lambda: Holding(inner=Inner(n=1)), "payload.inner", "not frozen"),
        (lambda: Open(note="x", thing=Node()), "payload.thing", "attributes"),
    ],
)
async def test_a_payload_that_cannot_be_frozen_is_refused_whatever_it_holds(
    payload: Callable[[], Payload], path: str, problem: str
) -> None:
    async with Runtime([Keeper("keeper")]) as rt:
        built = payload()
        rt.subscribe("keeper", built.message_type)
        with pytest.raises(InvalidMessageError, match=problem) as caught:
            await rt.publish(rt.message(built))
        assert rt.statistics().published == 0
    assert (caught.value.type_name, caught.value.field) == (built.message_type, path)


async def test_a_bytearray_in_metadata_is_refused() -> None:
    async with Runtime([Grabber("grabber", lambda v, ctx: None)]) as rt:
        rt.subscribe("grabber", "freeze.loose")
        msg = rt.message(Loose(value=1))
        with pytest.raises(InvalidMessageError, match="bytearray is not a metadata value") as c:
            await rt.publish(msg.model_copy(update={"metadata": {"k": bytearray(b"x")}}))
    assert (c.value.type_name, c.value.field) == ("freeze.loose", "metadata.k")


class Tagger(BaseAgent):
    """Replies to a Ping with the metadata it is given."""

    produces = (Loose,)

    def __init__(self, id: str, metadata: dict[str, Any]) -> None:
        super().__init__(id)
        self.metadata = metadata

    @on
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.reply(Loose(value=1), metadata=self.metadata)


ALLOWED = "a str, int, finite float, bool or None, or a list or tuple of str"


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ([1, 2], "a list holding an int"),
        (("a", 2.5), "a tuple holding a float"),
        ({"a": 1}, "a dict"),
        (object(), "an object"),
        (float("nan"), "a float that is not finite (nan)"),
        (float("-inf"), "a float that is not finite (-inf)"),
    ],
)
async def test_metadata_refused_reads_the_same_at_every_door(value: object, refused: str) -> None:
    # rt.message and Message.new (pydantic's door, once) and a handler's ctx.reply say the same.
    problem = f"{refused} is not a metadata value; a metadata value is {ALLOWED}"
    async with Runtime([Tagger("tagger", {"l": value})]) as rt:
        with pytest.raises(InvalidMessageError) as outside:
            rt.message(Loose(value=1), metadata={"l": value})
        with pytest.raises(InvalidMessageError) as built:
            Message.new(Loose(value=1), sender="me", metadata={"l": value})
        result = await rt.ask(rt.message(Ping(), recipient="tagger"))
    for caught in (outside, built):
        assert (caught.value.field, caught.value.problem) == ("metadata.l", problem)
    [missing] = result.missing
    assert missing.reason.endswith(f"field 'metadata.l': {problem}")


async def test_metadata_lists_of_str_become_tuples_at_every_door() -> None:
    tags = {"tags": ["a", "b"], "n": 1, "x": 0.5, "ok": True, "none": None}
    async with Runtime([Tagger("tagger", tags)]) as rt:
        outside = rt.message(Ping(), recipient="tagger", metadata=tags)
        answer = (await rt.ask(outside)).message
    frozen = {**tags, "tags": ("a", "b")}
    assert dict(outside.metadata) == frozen
    assert dict(answer.metadata) == frozen


class Relay(BaseAgent):
    """Passes what it is given on, with metadata no message can hold."""

    produces = (Loose,)

    @on
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Loose(value=1), metadata={"k": bytearray(b"x")})  # type: ignore[dict-item]


async def test_a_handler_whose_output_is_refused_fails_to_a_dead_letter() -> None:
    grabber = Grabber("grabber", lambda v, ctx: v)
    witness = Witness("witness", grabber, lambda v, ctx: v)
    async with Runtime([Relay("relay"), grabber, witness]) as rt:
        rt.subscribe("grabber", "freeze.loose")
        rt.subscribe("witness", "freeze.loose")
        await rt.publish(rt.message(Ping(), recipient="relay"))
        await rt.wait_idle()
    [letter] = list(rt.dead_letters)
    assert (letter.agent_id, letter.kind, letter.error_type) == (
        "relay",
        "failed",
        "InvalidMessageError",
    )
    assert "invalid 'freeze.loose' message: field 'metadata.k'" in letter.reason
    assert not witness.seen
    assert rt.statistics().handled == 0


def test_a_message_is_frozen_when_it_is_built() -> None:
    """So a handler called without a bus (a unit test) sees what it will see on one."""
    held = deque([{"a": [1]}])
    msg = Message.new(Loose(value=held), sender="u", metadata={"roles": ["a"]})
    payload = cast(Loose, msg.payload)
    assert payload.value == ({"a": [1]},)
    with pytest.raises(TypeError, match="immutable"):
        payload.value[0]["a"].append(2)
    held[0]["a"].append(2)  # the publisher's own objects stay its own
    assert payload.value == ({"a": [1]},)
    assert msg.metadata == {"roles": ("a",)}
