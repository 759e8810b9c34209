"""Agents are unit-tested by calling handle() with a TestContext: no runtime needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Union

import pytest

from genie import (
    Agent,
    BaseAgent,
    ConfigurationError,
    Context,
    Message,
    Payload,
    Runtime,
    TestContext,
    UnhandledMessageError,
    handler,
)

from ..conftest import Echo, Note, Ping, Pong


async def test_agent_handles_without_a_bus() -> None:
    echo = Echo("echo")
    request = Message.new(Ping(n=4), sender="user", recipient="echo")
    out = await echo.handle(request, TestContext("echo", request))
    assert len(out) == 1
    assert out[0].payload == Pong(n=4)
    assert out[0].recipient == "user"
    assert out[0].causation_id == request.id
    assert isinstance(echo, Agent)


async def test_dispatch_follows_payload_subclasses() -> None:
    class SpecialPing(Ping):
        message_type = "special_ping"

    echo = Echo("echo")
    request = Message.new(SpecialPing(n=2), sender="user")
    out = await echo.handle(request, TestContext("echo", request))
    assert out[0].payload == Pong(n=2)


async def test_unhandled_payload_is_an_error() -> None:
    echo = Echo("echo")
    request = Message.new(Note(text="hi"), sender="user")
    with pytest.raises(UnhandledMessageError, match="no handler for message type 'note'"):
        await echo.handle(request, TestContext("echo", request))


def test_consumes_is_derived_from_handlers() -> None:
    assert Echo.consumes() == (Ping,)


def test_handler_needs_a_payload_annotation() -> None:
    with pytest.raises(ConfigurationError, match="annotate 'payload'"):

        class Bad(BaseAgent):
            @handler  # type: ignore[type-var]
            async def on_x(self, payload: int, ctx: Context) -> None: ...


def test_handler_takes_payload_and_ctx_by_position() -> None:
    # The runtime calls handler(payload, ctx): a keyword-only or starred parameter passes a
    # count of three yet fails every delivery, so the class is refused where it is written.
    with pytest.raises(ConfigurationError, match=r"Bad\.on_ping must take \(self, payload, ctx\)"):

        class Bad(BaseAgent):
            @handler  # type: ignore[arg-type]
            async def on_ping(self, payload: Ping, *, ctx: Context) -> None: ...

    with pytest.raises(ConfigurationError, match=r"Starred\.on_ping must take"):

        class Starred(BaseAgent):
            @handler
            async def on_ping(self, payload: Ping, *ctx: Context) -> None: ...


@pytest.mark.parametrize("wrap", [staticmethod, classmethod])
def test_a_handler_under_staticmethod_or_classmethod_is_refused(wrap: type) -> None:
    # @handler under @staticmethod marks the function inside it, which the class does not
    # see: the handler would be skipped without a word and its payload type never routed.
    async def on_ping(owner: object, payload: Ping, ctx: Context) -> None: ...

    with pytest.raises(ConfigurationError, match=rf"Wrapped\.on_ping is a {wrap.__name__}"):
        type("Wrapped", (BaseAgent,), {"on_ping": wrap(handler(on_ping))})


def test_two_handlers_for_one_payload_type_in_a_class_are_refused() -> None:
    # Unrefused, the last one defined would take every Ping and the first never run.
    with pytest.raises(ConfigurationError) as caught:

        class Twice(BaseAgent):
            @handler
            async def on_ping(self, payload: Ping, ctx: Context) -> None: ...

            @handler
            def on_ping_too(self, payload: Ping, ctx: Context) -> None: ...

    said = str(caught.value)
    assert "Twice.on_ping_too" in said
    assert "Twice.on_ping " in said
    assert "'ping'" in said


async def test_a_subclass_handler_replaces_its_bases_for_the_same_payload_type() -> None:
    class Louder(Echo):
        @handler  # a new name for the type Echo.on_ping handles: this one wins
        async def on_loud_ping(self, payload: Ping, ctx: Context) -> Message:
            return ctx.reply(Pong(n=payload.n * 10))

    class Renamed(Echo):
        @handler  # Echo's own handler redefined: the same name, a payload type of its own
        async def on_ping(self, payload: Note, ctx: Context) -> Message:  # type: ignore[override]
            return ctx.reply(Pong(n=len(payload.text)))

    request = Message.new(Ping(n=2), sender="user")
    out = await Louder("louder").handle(request, TestContext("louder", request))
    assert [m.payload for m in out] == [Pong(n=20)]
    assert Louder.consumes() == (Ping,)
    assert Renamed.consumes() == (Note,)  # its Ping handler was redefined away


def test_a_handler_refused_names_the_line_of_its_def() -> None:
    # Raised as its class is defined, the error's traceback points at the class line.
    with pytest.raises(ConfigurationError) as caught:

        class Bad(BaseAgent):
            @handler  # type: ignore[type-var]
            async def on_unannotated(self, payload: int, ctx: Context) -> None: ...

    lines = Path(__file__).read_text().splitlines()
    [def_line] = [n for n, line in enumerate(lines, 1) if "def on_" + "unannotated(" in line]
    assert caught.value.source == f"{__file__}:{def_line}"
    assert caught.value.__notes__ == [f"the handler is defined at {__file__}:{def_line}"]


async def test_test_context_request_uses_the_responder() -> None:
    class Asker(BaseAgent):
        produces = (Note,)

        @handler
        async def on_ping(self, payload: Ping, ctx: Context) -> Message:
            answer = await ctx.request("echo", Ping(n=payload.n + 1))
            assert isinstance(answer.payload, Pong)
            return ctx.reply(Note(text=f"echo said {answer.payload.n}"))

    async def responder(req: Message) -> Message:
        assert isinstance(req.payload, Ping)
        return req.child(Pong(n=req.payload.n), sender="echo", id="r", created_at=req.created_at)

    request = Message.new(Ping(n=1), sender="user")
    ctx = TestContext("asker", request, responder=responder)
    out = await Asker("asker").handle(request, ctx)
    assert out[0].payload == Note(text="echo said 2")
    assert [r.recipient for r in ctx.requests] == ["echo"]


async def test_test_context_sleep_advances_its_clock() -> None:
    request = Message.new(Ping(), sender="user")
    ctx = TestContext("a", request)
    before = ctx.now()
    await ctx.sleep(3600)
    assert (ctx.now() - before).total_seconds() == 3600


async def test_the_runtime_dispatches_as_handle_would() -> None:
    # The runtime calls a BaseAgent's handler itself (one coroutine fewer); an agent that
    # overrides handle, or whose handle was replaced before it was added, is called through it,
    # and a payload subclass still finds its base's handler.
    from genie import Runtime

    class SpecialPing(Ping):
        message_type = "special_ping"

    class Wrapping(Echo):
        async def handle(self, msg: Message, ctx: Context) -> list[Message]:
            return [ctx.reply(Note(text=f"wrapped {msg.type}"))]

    patched = Echo("patched")

    async def replaced(msg: Message, ctx: Context) -> list[Message]:
        return [ctx.reply(Note(text="replaced"))]

    patched.handle = replaced  # type: ignore[method-assign]
    agents = [Echo("echo"), Wrapping("wrapping"), patched]
    async with Runtime(agents) as rt:
        rt.types.register(SpecialPing, Note)
        got = [
            (await rt.ask(rt.message(payload, recipient=agent))).message.payload
            for payload, agent in [
                (Ping(n=1), "echo"),
                (SpecialPing(n=2), "echo"),
                (Ping(n=3), "wrapping"),
                (Ping(n=4), "patched"),
            ]
        ]
    assert got == [Pong(n=1), Pong(n=2), Note(text="wrapped ping"), Note(text="replaced")]


class Deposit(Payload):
    message_type = "deposit"
    cents: int


class Withdrawal(Payload):
    message_type = "withdrawal"
    cents: int


class Teller(BaseAgent):
    """One handler for two payload types, by a union annotation."""

    produces = (Note,)

    @handler
    async def on_money(self, payload: Deposit | Withdrawal, ctx: Context) -> Message:
        return ctx.reply(Note(text=f"{payload.message_type} {payload.cents}"))


class OldStyleTeller(BaseAgent):
    produces = (Note,)

    @handler
    def on_money(self, payload: Union[Deposit, Withdrawal], ctx: Context) -> Message:  # noqa: UP007
        return ctx.reply(Note(text=f"{payload.message_type} {payload.cents}"))


@pytest.mark.parametrize("teller", [Teller, OldStyleTeller])
async def test_a_union_annotation_handles_each_member_type(teller: type[BaseAgent]) -> None:
    assert teller.consumes() == (Deposit, Withdrawal)
    agent = teller("teller")
    for payload in (Deposit(cents=5), Withdrawal(cents=7)):
        request = Message.new(payload, sender="user", recipient="teller")
        [out] = await agent.handle(request, TestContext("teller", request))
        assert out.payload == Note(text=f"{payload.message_type} {payload.cents}")


async def test_the_runtime_routes_each_member_of_a_union_to_its_handler() -> None:
    async with Runtime([Teller("teller")]) as rt:
        # Routed by type (no recipient), as a pipeline's routes do.
        rt.subscribe("teller", "deposit", "withdrawal")
        for payload in (Deposit(cents=1), Withdrawal(cents=2)):
            result = await rt.ask(rt.message(payload))
            assert [m.payload for m in result.replies] == [
                Note(text=f"{payload.message_type} {payload.cents}")
            ]
        assert not rt.dead_letters


def test_a_union_member_handled_twice_is_refused_naming_both_handlers() -> None:
    with pytest.raises(ConfigurationError) as caught:

        class Twice(BaseAgent):
            @handler
            async def on_money(self, payload: Deposit | Withdrawal, ctx: Context) -> None: ...

            @handler
            async def on_deposit_twice(self, payload: Deposit, ctx: Context) -> None: ...

    said = str(caught.value)
    assert "Twice.on_deposit_twice handles 'deposit' (Deposit), as " in said
    assert "Twice.on_money does: a class has one handler per payload type" in said
    lines = Path(__file__).read_text().splitlines()
    [def_line] = [n for n, line in enumerate(lines, 1) if "def on_" + "deposit_twice(" in line]
    assert caught.value.source == f"{__file__}:{def_line}"


def test_a_union_member_that_is_not_a_payload_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError) as caught:

        class Bad(BaseAgent):
            @handler  # type: ignore[type-var]
            async def on_money(self, payload: Deposit | int, ctx: Context) -> None: ...

    assert str(caught.value).endswith(
        ".Bad.on_money: 'payload' is annotated with a union whose member int is not a "
        "Payload model; annotate it with Payload models that set message_type "
        "(payload: Deposit | Withdrawal)"
    )


def test_a_generic_union_member_is_named_whole() -> None:
    # It was named by its bare class: "member list", for list[int].
    with pytest.raises(ConfigurationError) as caught:

        class Bad(BaseAgent):
            @handler  # type: ignore[type-var]
            async def on_money(self, payload: Deposit | list[int], ctx: Context) -> None: ...

    assert "annotated with a union whose member list[int] is not a Payload model" in str(
        caught.value
    )


def test_optional_is_not_a_payload() -> None:
    with pytest.raises(ConfigurationError) as caught:

        class Maybe(BaseAgent):
            @handler  # type: ignore[type-var]
            async def on_money(self, payload: Deposit | None, ctx: Context) -> None: ...

    assert str(caught.value).endswith(
        ".Maybe.on_money: 'payload' is annotated with a union whose member None is not a "
        "Payload model (a handler is called with a message's payload, never None); annotate it "
        "with Payload models that set message_type (payload: Deposit | Withdrawal)"
    )


class Money(Payload):  # a base of models: no message_type of its own
    cents: int = 0


def test_a_union_member_with_no_message_type_is_refused_naming_it() -> None:
    with pytest.raises(
        ConfigurationError, match=r"Bad\.on_money: 'payload' is annotated with Money, a base"
    ):

        class Bad(BaseAgent):
            @handler
            async def on_money(self, payload: Deposit | Money, ctx: Context) -> None: ...


async def test_a_subclass_takes_one_member_of_its_bases_union() -> None:
    class Counter(Teller):
        @handler
        async def on_deposit(self, payload: Deposit, ctx: Context) -> Message:
            return ctx.reply(Note(text="counted"))

    class DepositsOnly(Teller):
        @handler  # Teller's own handler redefined: the Withdrawal it took is no longer handled
        async def on_money(self, payload: Deposit, ctx: Context) -> Message:  # type: ignore[override]
            return ctx.reply(Note(text="only"))

    assert set(Counter.consumes()) == {Deposit, Withdrawal}
    assert DepositsOnly.consumes() == (Deposit,)
    agent = Counter("c")
    outs: list[Message] = []
    for payload in (Deposit(cents=1), Withdrawal(cents=2)):
        request = Message.new(payload, sender="user")
        outs += await agent.handle(request, TestContext("c", request))
    assert [m.payload for m in outs] == [Note(text="counted"), Note(text="withdrawal 2")]


class Knock(Payload):
    message_type = "protocol_knock"


class Opened(Payload):
    message_type = "protocol_opened"


class Door:
    """The Agent protocol without BaseAgent: it declares what it takes and sends."""

    consumes = (Knock,)
    produces = (Opened,)
    capabilities = ()

    def __init__(self, id: str) -> None:
        self.id = id
        self.name = id

    async def handle(self, msg: Message, ctx: Context) -> list[Message]:
        return [ctx.reply(Opened())]


async def test_a_protocol_agent_s_declared_consumes_are_registered() -> None:
    """A plain protocol class's ``consumes`` is registered as a BaseAgent's handlers are: a
    message of that type can be published to it (before, only ``produces`` was)."""
    async with Runtime([Door("door")]) as rt:
        result = await rt.ask(rt.message(Knock(), recipient="door"))
    assert result.message.payload == Opened()


@pytest.mark.parametrize("attribute", ["consumes", "produces"])
def test_a_declaration_that_is_not_a_tuple_of_models_is_refused_naming_it(
    attribute: str,
) -> None:
    """``produces = Answer`` (a model, not a tuple of them) is a ConfigurationError naming the
    class and the attribute, not a TypeError from deep inside."""
    lone = type("LoneDoor", (Door,), {attribute: Opened})
    with pytest.raises(ConfigurationError, match=rf"LoneDoor\.{attribute} .*\(Opened,\)"):
        Runtime([lone("door")])
    listed = type("ListedDoor", (Door,), {attribute: ("protocol_opened",)})
    with pytest.raises(ConfigurationError, match=rf"ListedDoor\.{attribute} .*'protocol_opened'"):
        Runtime([listed("door")])


class SyncDoor(Door):
    def handle(self, msg: Message, ctx: Context) -> list[Message]:  # type: ignore[override]
        return [ctx.reply(Opened())]


class NoContextDoor(Door):
    async def handle(self, msg: Message) -> list[Message]:  # type: ignore[override]
        return []


class StreamingDoor(Door):
    async def handle(  # type: ignore[override]
        self, msg: Message, ctx: Context
    ) -> AsyncIterator[Message]:
        yield ctx.reply(Opened())


@pytest.mark.parametrize(
    ("door", "said"),
    [
        (SyncDoor, r"SyncDoor\.handle is a plain def: .*async def handle\(self, msg, ctx\)"),
        (NoContextDoor, r"NoContextDoor\.handle cannot be called as handle\(msg, ctx\)"),
        (StreamingDoor, r"StreamingDoor\.handle is a generator: .*returns its messages"),
    ],
)
async def test_a_handle_the_runtime_cannot_call_is_refused_when_the_agent_is_added(
    door: type[Door], said: str
) -> None:
    """A protocol agent whose ``handle`` is no ``async def handle(msg, ctx)`` is refused as it
    is added, naming its class: accepted, every delivery to it failed later with a TypeError
    from inside the runtime (``object list can't be used in 'await' expression``)."""
    with pytest.raises(ConfigurationError, match=said):
        Runtime([door("door")])
    async with Runtime() as rt:
        with pytest.raises(ConfigurationError, match=said):
            rt.add(door("door"))
        assert rt.agents() == []
