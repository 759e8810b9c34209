"""Envelope text a handler gives that UTF-8 cannot encode (a lone surrogate, ``"\\ud800"``):
metadata or a recipient passed to ``ctx.reply``, ``ctx.emit`` or ``ctx.request``, or a message
the handler builds itself. It is refused where the message is made, as ``Message.new`` refuses
a caller's: the handler's delivery fails with an ``InvalidMessageError`` naming the type and the
field (a dead letter, never retried), and nothing downstream (a recipient, the policies, the
audit log) sees the text. Before, such metadata was delivered as it was, or denied by the
policies; a recipient was an unknown recipient, or, from a handler's process, pydantic's
serialization error, retried."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import pytest

from genie import (
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    InvalidMessageError,
    JsonlAuditLog,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
    TestContext,
    handler,
)
from genie.policies import load_policy_file

POLICY = Path(__file__).resolve().parents[2] / "config" / "policies" / "ai-policy.yaml"
WAIT = 10.0
NOT_TEXT = "not valid UTF-8 text (a lone surrogate, U+{:04X} at index {}): no log, file or policy"


class Say(Payload):
    message_type = "text.say"


class Said(Payload):
    message_type = "text.said"


def give(way: str, ctx: Context) -> Message:
    """The output of ``way``: each gives the envelope text a lone surrogate somewhere."""
    if way == "reply metadata":
        return ctx.reply(Said(), metadata={"user_id": "u\ud800"})
    if way == "emit metadata":
        return ctx.emit(Said(), recipient="sink", metadata={"note": "ok", "user_id": "\udc00"})
    if way == "emit metadata key":
        return ctx.emit(Said(), recipient="sink", metadata={"k\ud800": "v"})
    if way == "emit metadata tuple":
        return ctx.emit(Said(), recipient="sink", metadata={"roles": ("user", "adm\ud800")})
    if way == "emit recipient":
        return ctx.emit(Said(), recipient="sink\ud800")
    if way == "Message.new":
        return Message.new(Said(), sender="gives", recipient="sink", metadata={"k": "\ud800"})
    if way == "Message()":
        return Message(payload=Said(), sender="gives", recipient="sink\ud800")
    assert way == "model_copy"
    return ctx.reply(Said()).model_copy(update={"metadata": {"user_id": "u\ud800"}})


# way -> the field named, and where in it the surrogate is
REFUSED = {
    "reply metadata": ("metadata.user_id", NOT_TEXT.format(0xD800, 1)),
    "emit metadata": ("metadata.user_id", NOT_TEXT.format(0xDC00, 0)),
    "emit metadata key": ("metadata", "a key is " + NOT_TEXT.format(0xD800, 1)),
    "emit metadata tuple": ("metadata.roles.1", NOT_TEXT.format(0xD800, 3)),
    "emit recipient": ("recipient", NOT_TEXT.format(0xD800, 4)),
    "Message.new": ("metadata.k", NOT_TEXT.format(0xD800, 0)),
    "Message()": ("recipient", NOT_TEXT.format(0xD800, 4)),
    "model_copy": ("metadata.user_id", NOT_TEXT.format(0xD800, 1)),
    "request recipient": ("recipient", NOT_TEXT.format(0xD800, 4)),
}


class Gives(BaseAgent):
    """On Say, gives ``way``'s output (``request recipient``: asks ``sink\\ud800``)."""

    produces = (Said,)

    def __init__(self, id: str, way: str) -> None:
        super().__init__(id)
        self.way = way

    @handler
    async def on_say(self, payload: Say, ctx: Context) -> Message | None:
        if self.way == "request recipient":
            await ctx.request("sink\ud800", Said(), timeout=WAIT)
            return None
        return give(self.way, ctx)


class GivesInThread(Gives):
    """``Gives`` as a plain ``def`` handler: in a thread, or in a process."""

    @handler
    def on_say(self, payload: Say, ctx: Context) -> Message:  # type: ignore[override]
        return give(self.way, ctx)


class Sink(BaseAgent):
    """Keeps the metadata of every Said it is sent."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.got: list[dict[str, object]] = []

    @handler
    async def on_said(self, payload: Said, ctx: Context) -> None:
        self.got.append(dict(ctx.message.metadata))


RETRY = RetryPolicy(attempts=3, backoff=0)


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[JsonlAuditLog]:
    log = JsonlAuditLog(tmp_path / "audit.jsonl")
    yield log
    log.close()


def reason(field: str, problem: str) -> str:
    said = f"invalid 'text.said' message: field '{field}': {problem} can read it"
    return f"InvalidMessageError: {said}"


@pytest.mark.parametrize("way", list(REFUSED))
async def test_a_lone_surrogate_a_handler_gives_is_its_dead_letter_naming_the_field(
    way: str, audit_log: JsonlAuditLog
) -> None:
    """The shipped policies and an audit log in a file: no denial (nothing reached them), the
    sink got nothing, every audit row is UTF-8 JSON without the text, and the dead letter
    names the type and the field, after one attempt (a retry would refuse it again)."""
    sink = Sink("sink")
    async with Runtime([sink], policies=load_policy_file(POLICY).policies, audit=audit_log) as rt:
        rt.add(Gives("gives", way), options=AgentOptions(retry=RETRY))
        result = await rt.ask(rt.message(Say(), recipient="gives"), timeout=WAIT)
        stats = rt.statistics()
    assert result.replies == ()
    assert sink.got == []
    (letter,) = rt.dead_letters
    assert (letter.agent_id, letter.kind, letter.error_type, letter.attempts) == (
        "gives", "failed", "InvalidMessageError", 1
    )  # fmt: skip
    assert letter.reason == reason(*REFUSED[way])
    assert (stats.denied, stats.dead_lettered) == (0, 1)
    text = audit_log.path.read_bytes().decode()  # strict UTF-8
    rows = [json.loads(line) for line in text.splitlines()]
    assert [row["action"] for row in rows] == ["dead_letter:failed"]
    assert "\\ud8" not in text
    assert "\\udc" not in text
    assert "\ufffd" not in text


@pytest.mark.parametrize("offload", ["thread", "process"])
@pytest.mark.parametrize(
    "way", ["reply metadata", "emit metadata key", "emit recipient", "model_copy"]
)
async def test_a_plain_def_handler_in_a_thread_or_a_process_is_refused_the_same(
    offload: Literal["thread", "process"], way: str
) -> None:
    """A thread's ``ctx.reply`` is built on the loop, a process's in the child (then built
    again in the parent): both by the same ``caused_by``. Before, a thread's was delivered
    as it was (or an unknown recipient); a process's metadata was named only as its JSON
    failed, and its recipient failed with pydantic's serialization error, retried."""
    sink = Sink("sink")
    async with Runtime([sink], processes=1) as rt:
        rt.add(GivesInThread("gives", way), options=AgentOptions(offload=offload, retry=RETRY))
        result = await rt.ask(rt.message(Say(), recipient="gives"), timeout=WAIT)
    assert result.replies == ()
    assert sink.got == []
    (letter,) = rt.dead_letters
    assert (letter.error_type, letter.attempts) == ("InvalidMessageError", 1)
    assert letter.reason == reason(*REFUSED[way])


class GivesWhole(BaseAgent):
    """Replies, and emits to ``sink`` and to ``écho``, with metadata that is not ASCII but is
    whole text (a pair in UTF-16 is one character here)."""

    produces = (Said,)
    META: ClassVar[dict[str, str | int | bool | tuple[str, ...] | None]] = {
        "note": "café",
        "\U0001f600": "\U0001f389 ok",
        "roles": ("usér", "admin"),
        "attempt": 2,
        "urgent": True,
        "region": None,
    }

    @handler
    async def on_say(self, payload: Say, ctx: Context) -> list[Message]:
        return [
            ctx.reply(Said(), metadata=self.META),
            ctx.emit(Said(), recipient="sink", metadata=self.META),
            ctx.emit(Said(), recipient="écho"),
        ]


class GivesWholeInThread(GivesWhole):
    @handler
    def on_say(self, payload: Say, ctx: Context) -> list[Message]:  # type: ignore[override]
        return [
            ctx.reply(Said(), metadata=self.META),
            ctx.emit(Said(), recipient="sink", metadata=self.META),
            ctx.emit(Said(), recipient="écho"),
        ]


@pytest.mark.parametrize("agent", [GivesWhole, GivesWholeInThread])
async def test_metadata_and_recipients_that_are_whole_text_pass(
    agent: type[GivesWhole], audit_log: JsonlAuditLog
) -> None:
    sink, echo = Sink("sink"), Sink("écho")
    async with Runtime(
        [sink, echo, agent("gives")],
        policies=load_policy_file(POLICY).policies,
        audit=audit_log,
    ) as rt:
        result = await rt.ask(rt.message(Say(), recipient="gives"), timeout=WAIT)
        with anyio.fail_after(WAIT):
            await rt.wait_idle()
    assert [dict(reply.metadata) for reply in result.replies] == [GivesWhole.META]
    assert (sink.got, echo.got) == ([GivesWhole.META], [{}])
    assert list(rt.dead_letters) == []


def test_a_unit_tests_context_refuses_it_too() -> None:
    """``TestContext`` builds replies as the runtime's context does."""
    ctx = TestContext("gives", Message.new(Say(), sender="user"))
    for way in ("reply metadata", "emit metadata key", "emit recipient"):
        with pytest.raises(InvalidMessageError) as refused:
            give(way, ctx)
        field, problem = REFUSED[way]
        assert (refused.value.type_name, refused.value.field) == ("text.said", field)
        assert refused.value.problem == problem + " can read it"
    assert ctx.reply(Said(), metadata={"note": "café"}).metadata == {"note": "café"}


class _Spelt:
    """A metadata key that is no str: the message keeps its text, ``str(key)``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


class _OtherSpelling(str):
    """A str whose text, as a key is kept, differs from what it holds."""

    def __str__(self) -> str:
        return "s\ud800"


@pytest.mark.parametrize("key", [_Spelt("k\ud800"), _OtherSpelling("ok")])
def test_a_key_whose_kept_text_has_a_lone_surrogate_is_refused(key: object) -> None:
    """The check reads a metadata key as the message keeps it (its ``str``), not as given: a
    key object that spells a lone surrogate cannot get past it, whichever way it is built."""
    parent = Message.new(Say(), sender="user")
    ctx = TestContext("gives", parent)
    # Typed as a caller gives it by mistake: the annotations ask for str keys.
    metadata: Any = {key: "v"}
    builds: list[Callable[[], object]] = [
        lambda: ctx.reply(Said(), metadata=metadata),
        lambda: Message(payload=Said(), sender="u", metadata=metadata),
        lambda: parent.model_copy(update={"metadata": metadata}),
    ]
    for build in builds:
        with pytest.raises(InvalidMessageError) as refused:
            build()
        assert refused.value.field == "metadata"
    plain: Any = {_Spelt("k"): 1}
    assert ctx.reply(Said(), metadata=plain).metadata == {"k": 1}


def test_an_agent_id_with_a_lone_surrogate_is_refused_when_added() -> None:
    """An agent's id is the sender of everything it emits: refused as the agent is added,
    naming it, as a caller's sender is when its message is built."""
    with pytest.raises(ConfigurationError, match=r"agent id 'gives\\ud800' is not valid UTF-8"):
        Runtime([Gives("gives\ud800", "reply metadata")])
    Runtime([Gives("gives-café", "reply metadata")])  # whole text is an id like any other
