"""``ctx.tool`` against servers that misbehave (tests/mcp/rogue_server.py, which answers what
no SDK server would), calls that cross on one session, and handlers retried or denied: each
test tries to break a promise of docs/tools.md."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    MemoryAuditLog,
    Message,
    RetryPolicy,
    Runtime,
    handler,
)
from genie.mcp import McpServer
from genie.policies import PIIBlock, PromptInjection, Rule

from .test_tool_calls import BROKER, Answer, Ask, Caller, Lister, ask

HERE = Path(__file__).resolve().parent


def rogue(timeout: float = 10) -> McpServer:
    return McpServer(command=(sys.executable, str(HERE / "rogue_server.py")), timeout=timeout)


async def test_a_call_never_answered_fails_after_the_timeout_and_the_session_lives_on() -> None:
    """``timeout`` bounds each call's wait for its answer, not only the opening; the call that
    waited is a ToolCallError, and the next call is answered by the same process."""
    async with Runtime(tools={"broker": rogue(timeout=1)}) as rt:
        rt.add(Caller("caller"), options=AgentOptions(breaker=None))
        before = await ask(rt, "pid")
        with anyio.fail_after(20):
            silent = await ask(rt, "silent")
            noise = await ask(rt, "noise_only")  # a line that is no JSON, then nothing
        after = await ask(rt, "pid")
    for missing in (silent, noise):
        assert missing.reason.startswith("ToolCallError: tool "), missing.reason
        assert "timed out" in missing.reason
    assert after.text == before.text


async def test_a_line_that_is_no_json_is_skipped_and_the_answer_read() -> None:
    async with Runtime([Caller("caller")], tools={"broker": rogue()}) as rt:
        answered = await ask(rt, "noise_then_answer")
    assert answered.text == "answered"


async def test_an_answer_of_the_wrong_shape_fails_the_call_and_the_session_lives_on() -> None:
    async with Runtime(tools={"broker": rogue()}) as rt:
        rt.add(Caller("caller"), options=AgentOptions(breaker=None))
        before = await ask(rt, "pid")
        listed = await ask(rt, "list_structured")
        empty = await ask(rt, "no_content")
        after = await ask(rt, "pid")
    assert "ToolCallError: tool 'list_structured' of " in listed.reason
    assert "field 'structuredContent'" in listed.reason
    assert "ToolCallError: tool 'no_content' of " in empty.reason
    assert "field 'content'" in empty.reason
    assert after.text == before.text


async def test_an_answer_json_cannot_carry_is_refused_before_it_is_judged() -> None:
    """Python's json writes NaN, and the SDK reads it: the policies judged ``null`` (their
    JSON of it) while the handler read NaN. The answer is refused, naming the tool and where,
    and nothing of it is judged, audited or read."""
    audit = MemoryAuditLog()
    async with Runtime(
        [Caller("caller")], tools={"broker": rogue()}, policies=[PIIBlock()], audit=audit
    ) as rt:
        refused = await ask(rt, "nan_structured")
    assert refused.reason.startswith("ToolCallError: tool 'nan_structured' of 'broker': "), (
        refused.reason
    )
    assert "field 'x': nan is no JSON number" in refused.reason
    audited = [r.action for r in audit.records if r.target == "tool:broker"]
    assert audited == ["tool_call"]  # the call left; its answer was never admitted


async def test_a_secret_in_the_structured_answer_alone_is_judged() -> None:
    """The text is harmless; the e-mail address is only in ``structuredContent``: denied. One
    in an embedded resource never reaches the handler (its text names the part's type)."""
    async with Runtime([Caller("caller")], tools={"broker": rogue()}, policies=[PIIBlock()]) as rt:
        denied = await ask(rt, "secret_in_structured")
        resource = await ask(rt, "secret_in_resource")
    assert "ToolDeniedError: tool result denied by pii_block" in denied.reason
    assert (resource.text, resource.structured) == ("[resource]", None)


async def test_a_tool_description_that_steers_the_model_is_judged_before_the_agent_reads_it() -> (
    None
):
    """The descriptions are the server's words, which ``tool_loop`` hands to the model: the
    listing is judged for the agent as a tool's answer is, and the lure never reaches it."""
    audit = MemoryAuditLog()
    async with Runtime(
        [Lister("caller")], tools={"rogue": rogue()}, policies=[PromptInjection()], audit=audit
    ) as rt:
        denied = await ask(rt, "rogue")
    assert "ToolDeniedError: tool listing denied by prompt_injection" in denied.reason
    [record] = [r for r in audit.records if r.action == "denied"]
    assert (record.target, record.details["message_type"], record.details["sender"]) == (
        "caller",
        "tool_listing",
        "tool:rogue",
    )


async def test_a_tool_named_with_odd_characters_is_called_judged_and_audited_by_its_name() -> None:
    name = "odd name/with:chars\n"
    audit = MemoryAuditLog()
    rule = Rule("no-odd", 'to == "tool:broker" AND from == "other"', reason="not for you")
    async with Runtime(
        [Caller("caller")], tools={"broker": rogue()}, policies=[rule], audit=audit
    ) as rt:
        answered = await ask(rt, name)
    assert answered.text == f"called {name!r}"
    reasons = [(r.action, r.details["reason"]) for r in audit.records if r.target == "tool:broker"]
    assert reasons == [("tool_call", name), ("tool_result", name)]


class Named(BaseAgent):
    """Calls the tool whose name is ``arguments["name"]``, whatever it is."""

    produces = (Answer,)

    @handler
    async def on_ask(self, p: Ask, ctx: Context) -> Message:
        out = await ctx.tool("broker").call(p.arguments["name"], {})
        return ctx.reply(Answer(text=out.text, is_error=out.is_error))


async def test_a_tool_name_that_is_not_text_is_refused_naming_it_and_not_retried() -> None:
    """It used to fail as pydantic's error about an internal ``tool_call`` message the handler
    never wrote."""
    retrying = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0.01), breaker=None)
    async with Runtime(tools={"broker": BROKER}) as rt:
        rt.add(Named("caller"), options=retrying)
        refused = [await ask(rt, "x", name=name) for name in (5, None, 1.5)]
        letters = list(rt.dead_letters)
    for missing, kind in zip(refused, ("int", "NoneType", "float"), strict=True):
        assert missing.reason.startswith("ToolArgumentsError: "), missing.reason
        assert f"the tool's name is no text: got {kind}" in missing.reason
    assert [d.attempts for d in letters] == [1, 1, 1]


async def test_calls_crossing_on_one_session_get_their_own_answers() -> None:
    """Many first calls at once: one opening, one process; slow and quick calls interleaved on
    it, each answer the one its own call asked for."""
    async with Runtime([Caller("caller")], tools={"broker": BROKER}) as rt:
        answers: dict[int, Any] = {}

        async def one(i: int) -> None:
            if i % 2:
                answers[i] = await ask(rt, "wait", seconds=0.05 * (10 - i))
            else:
                answers[i] = await ask(rt, "add", a=i, b=1000)

        async def pid(i: int) -> None:
            answers[100 + i] = await ask(rt, "pid")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(pid, i)
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(one, i)
    assert len({answers[100 + i].text for i in range(6)}) == 1  # one server process
    for i in range(10):
        assert answers[i].text == ("done" if i % 2 else str(i + 1000)), (i, answers[i])


class CrashesOnce(BaseAgent):
    """Calls ``crash`` on its first attempt and ``pid`` on the next: a retried handler whose
    tool call failed."""

    produces = (Answer,)

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.attempts = 0

    @handler
    async def on_ask(self, p: Ask, ctx: Context) -> Message:
        self.attempts += 1
        out = await ctx.tool("broker").call("crash" if self.attempts == 1 else "pid", {})
        return ctx.reply(Answer(text=out.text, is_error=out.is_error))


async def test_a_handler_whose_call_failed_is_retried_and_calls_a_new_session() -> None:
    """The server dies in the first attempt's call (ToolCallError): the retry's call opens a
    new session and is answered. Each attempt's call is judged, audited and counted."""
    audit = MemoryAuditLog()
    retrying = AgentOptions(retry=RetryPolicy(attempts=2, backoff=0.01), breaker=None)
    agent = CrashesOnce("caller")
    async with Runtime(tools={"broker": BROKER}, audit=audit) as rt:
        rt.add(agent, options=retrying)
        with anyio.fail_after(30):
            answered = await ask(rt, "either")
    assert agent.attempts == 2
    assert answered.text.isdigit()
    calls = [r.details["reason"] for r in audit.records if r.action == "tool_call"]
    assert calls == ["crash", "pid"]


async def test_a_denied_call_is_never_retried() -> None:
    retrying = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0.01), breaker=None)
    rule = Rule("no-broker", 'to == "tool:broker"', reason="closed")
    async with Runtime(tools={"broker": BROKER}, policies=[rule]) as rt:
        rt.add(Caller("caller"), options=retrying)
        denied = await ask(rt, "add", a=1, b=2)
        letters = list(rt.dead_letters)
    assert "ToolDeniedError: tool call denied by no-broker: closed" in denied.reason
    assert [d.attempts for d in letters] == [1]


async def test_a_server_whose_program_does_not_exist_fails_the_call_naming_it() -> None:
    missing_program = McpServer(command=(str(HERE / "no-such-server"),), timeout=5)
    async with Runtime([Caller("caller")], tools={"broker": missing_program}) as rt:
        with anyio.fail_after(20):
            failed = await ask(rt, "add", a=1, b=2)
    assert failed.reason.startswith("ToolCallError: tool server 'broker': cannot connect: ")
    assert "No such file or directory" in failed.reason
