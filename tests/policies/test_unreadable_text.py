"""A message built in Python can hold text UTF-8 cannot encode (a lone surrogate, ``"\\ud800"``).
The policies cannot read it, so it is denied (fail closed), and the reason names the message
type and the field, never the text; without policies nothing reads it as text, and it is
delivered as it is."""

from __future__ import annotations

from pathlib import Path

import anyio

from genie import BaseAgent, Context, MemoryAuditLog, Message, Runtime, handler
from genie.policies import load_policy_file

from ..conftest import Note, Ping

POLICY = Path(__file__).resolve().parents[2] / "config" / "policies" / "ai-policy.yaml"
NOT_TEXT = "not valid UTF-8 text (a lone surrogate, U+{:04X} at index {}): no policy can read it"


class Sink(BaseAgent):
    """Keeps the text of every note."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.got: list[str] = []

    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        self.got.append(payload.text)


class Relay(BaseAgent):
    """Answers a ping with a note to ``sink`` holding half of an emoji's surrogate pair (as
    text cut at a UTF-16 length would)."""

    produces = (Note,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        return ctx.emit(Note(text="said \ud83d"), recipient="sink")


def denials(audit: MemoryAuditLog) -> list[tuple[str, str, str]]:
    return [(r.actor, r.target, r.details["reason"]) for r in audit.records if r.action == "denied"]


async def test_the_shipped_policies_deny_it_naming_the_type_and_the_field() -> None:
    audit = MemoryAuditLog()
    sink = Sink("sink")
    policies = load_policy_file(POLICY).policies
    async with Runtime([sink, Relay("relay")], policies=policies, audit=audit) as rt:
        # from outside: a denial is no error of publish's, as for any other
        await rt.publish(rt.message(Note(text="a\ud800"), recipient="sink"))
        # metadata is refused when a caller or a handler builds the message; one read back
        # (the durable store's, another process's, as the runtime parses them) may hold it
        held = {"user_id": "u\ud800"}
        fine = {"payload": Note(text="fine"), "sender": "user", "recipient": "sink"}
        await rt.publish(Message.model_validate({**fine, "metadata": held}))
        # a handler's output: denied as it leaves, its delivery done
        await rt.publish(rt.message(Ping(), recipient="relay"))
        await rt.publish(rt.message(Note(text="fine"), recipient="sink"))
        with anyio.fail_after(10):
            await rt.wait_idle()
        stats = rt.statistics()
    invalid = "policy raised InvalidMessageError: invalid 'note' message: field"
    assert denials(audit) == [
        ("max_content_length", "sink", f"{invalid} 'payload.text': {NOT_TEXT.format(0xD800, 1)}"),
        ("pii_block", "sink", f"{invalid} 'metadata.user_id': {NOT_TEXT.format(0xD800, 1)}"),
        ("max_content_length", "sink", f"{invalid} 'payload.text': {NOT_TEXT.format(0xD83D, 5)}"),
    ]
    assert sink.got == ["fine"]
    assert (stats.denied, stats.dead_lettered) == (3, 0)


async def test_without_policies_it_is_delivered_as_it_is() -> None:
    sink = Sink("sink")
    async with Runtime([sink, Relay("relay")]) as rt:
        await rt.publish(rt.message(Note(text="a\ud800"), recipient="sink"))
        await rt.publish(rt.message(Ping(), recipient="relay"))
        with anyio.fail_after(10):
            await rt.wait_idle()
    assert sink.got == ["a\ud800", "said \ud83d"]
