"""``ctx.tool(server)``: a handler calls a real MCP server's tools (tests/mcp/broker_server.py,
started on stdio by the runtime), each call and each result judged by the policies."""

from __future__ import annotations

import json
import math
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from genie import (
    AgentError,
    AgentOptions,
    BaseAgent,
    ConfigurationError,
    Context,
    Limits,
    MemoryAuditLog,
    Message,
    Payload,
    RetryPolicy,
    Runtime,
    TestContext,
    ToolArgumentsError,
    ToolCallError,
    handler,
)
from genie.mcp import McpServer
from genie.pipeline import load_pipeline
from genie.policies import PIIBlock, Rule

HERE = Path(__file__).resolve().parent
BROKER = McpServer(command=(sys.executable, str(HERE / "broker_server.py")))


class Ask(Payload):
    message_type = "ask_tool"
    tool: str
    arguments: dict[str, Any] = {}  # noqa: RUF012  (pydantic copies a field's default)


class Answer(Payload):
    message_type = "tool_answer"
    text: str
    is_error: bool
    structured: dict[str, Any] | None = None


class Caller(BaseAgent):
    """Calls the tool its request names on the server ``broker``, answers with the output."""

    produces = (Answer,)

    @handler
    async def on_ask(self, p: Ask, ctx: Context) -> Message:
        out = await ctx.tool("broker").call(p.tool, p.arguments)
        structured = None if out.structured is None else dict(out.structured)
        return ctx.reply(Answer(text=out.text, is_error=out.is_error, structured=structured))


async def ask(rt: Runtime, tool: str, **arguments: Any) -> Any:
    result = await rt.ask(
        rt.message(Ask(tool=tool, arguments=arguments), recipient="caller"), timeout=30
    )
    return result.message.payload if result.complete else result.missing[0]


async def answered(rt: Runtime, tool: str) -> Any:
    """The first answer of ``tool`` that arrives, asking again while a short deadline cuts the
    call (the session may still be opening: seconds at most, on a loaded machine)."""
    for _ in range(300):
        answer = await ask(rt, tool)
        if isinstance(answer, Answer):
            return answer
        await anyio.sleep(0.1)
    raise AssertionError(f"{tool} never answered: {answer}")


async def test_a_handler_calls_the_tools_of_one_shared_session() -> None:
    async with Runtime([Caller("caller")], tools={"broker": BROKER}) as rt:
        total = await ask(rt, "add", a=2, b=3)
        first, second = await ask(rt, "pid"), await ask(rt, "pid")
        failing = await ask(rt, "broken")
    assert (total.text, total.is_error, total.structured) == ("5", False, {"result": 5})
    assert first.text == second.text  # one server process served both calls
    assert failing.is_error  # the tool's own error is its result, for the handler to read
    assert "broken" in failing.text


async def test_bad_arguments_name_the_field_and_are_not_retried() -> None:
    retrying = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0.01))
    caller = Caller("caller")
    async with Runtime(tools={"broker": BROKER}) as rt:
        rt.add(caller, options=retrying)
        wrong = await ask(rt, "add", a="two", b=3)
        missing = await ask(rt, "add", a=2)
        unknown = await ask(rt, "nope")
        # NaN has no JSON form: sent, it reached the server as null, not what was judged.
        endless = await ask(rt, "wait", seconds=float("nan"))
        letters = list(rt.dead_letters)
    assert "ToolArgumentsError" in wrong.reason
    assert "field 'a': 'two' is not of type 'integer'" in wrong.reason
    assert "field 'b': 'b' is a required property" in missing.reason
    tools = "add, broken, contact, crash, get_holdings, pid, wait"
    assert f"no such tool (tools: {tools})" in unknown.reason
    assert "field 'seconds': nan is no JSON number" in endless.reason
    assert [d.attempts for d in letters] == [1, 1, 1, 1]  # a retry would fail the same way


class Garbled(Caller):
    """Calls ``contact`` with a name that is no text: a lone surrogate, as Python can hold."""

    @handler
    async def on_ask(self, p: Ask, ctx: Context) -> Message:
        out = await ctx.tool("broker").call("contact", {"name": "Priya\ud800"})
        return ctx.reply(Answer(text=out.text, is_error=out.is_error))


async def test_arguments_that_are_no_text_are_refused_and_the_session_lives_on() -> None:
    # Sent, the SDK's encoder failed inside the session, which closed: every call sharing it
    # failed with "Connection closed", and each retry closed the next one.
    async with Runtime(tools={"broker": BROKER}) as rt:
        rt.add(Garbled("garbled"))
        rt.add(Caller("caller"))
        before = await ask(rt, "pid")
        result = await rt.ask(rt.message(Ask(tool="contact"), recipient="garbled"), timeout=30)
        after = await ask(rt, "pid")
    [missing] = result.missing
    assert missing.reason == (
        "ToolArgumentsError: tool 'contact' of 'broker': field 'name': not valid UTF-8 text "
        "(a lone surrogate, U+D800 at index 5): it has no JSON form"
    )
    assert after.text == before.text  # the same server process, its session still open


# Arguments a permissive schema ({"type": "object"}) takes and JSON cannot carry exactly, and
# what the refusal says of each: sent, NaN reached the server as null and the complex number
# as "1j" (not what the policies judged), bytes failed as a retried ToolCallError, a
# 5000-digit integer waited the server's whole timeout, and with a content policy each was a
# denial by a policy that could not read it.
UNFIT: dict[str, tuple[Any, str]] = {
    "nan": ({"a": [1.5, float("nan")]}, "field 'a.1': nan is no JSON number"),
    "inf": ({"a": {"b": float("-inf")}}, "field 'a.b': -inf is no JSON number"),
    "complex": ({"a": 1j}, "field 'a': a value of type complex has no JSON form"),
    "bytes": ({"a": [b"\xff\xfe"]}, "field 'a.0': a value of type bytes has no JSON form"),
    "set": ({"a": frozenset({1, 2})}, "field 'a': a value of type frozenset has no JSON form"),
    "bigint": ({"a": 10**5000}, "field 'a': an integer of more than 4300 digits"),
    "int_key": ({"a": {1: "x"}}, "field 'a': a key of type int is not text"),
    "surrogate": ({"a": {"b\ud800": 1}}, "field 'a': a key is not valid UTF-8 text"),
}


class Unfit(Caller):
    """Calls ``anything`` with the arguments of ``UNFIT`` its request names."""

    @handler
    async def on_ask(self, p: Ask, ctx: Context) -> Message:
        arguments = UNFIT[p.tool][0] if p.tool in UNFIT else p.arguments
        out = await ctx.tool("broker").call("anything", arguments)
        return ctx.reply(Answer(text=out.text, is_error=out.is_error))


async def test_arguments_json_cannot_carry_are_refused_whatever_the_schema() -> None:
    """Refused before anything is judged or sent, naming where, never retried: nothing is
    audited or counted, and the server reads only the call that can be sent."""
    hostile = McpServer(command=(sys.executable, str(HERE / "hostile_server.py")), timeout=5)
    audit = MemoryAuditLog()
    retrying = AgentOptions(retry=RetryPolicy(attempts=3, backoff=0.01), breaker=None)
    async with Runtime(
        tools={"broker": hostile}, policies=[PIIBlock()], audit=audit, metrics=True
    ) as rt:
        rt.add(Unfit("caller"), options=retrying)
        with anyio.fail_after(20):
            refused = {case: await ask(rt, case) for case in UNFIT}
            sent = await ask(rt, "sendable", a=[1, {"b": None}], c="text")
        letters = list(rt.dead_letters)
    for case, (_, said) in UNFIT.items():
        reason = refused[case].reason
        assert reason.startswith("ToolArgumentsError: tool 'anything' of 'broker': "), reason
        assert said in reason, (case, reason)
    assert [d.attempts for d in letters] == [1] * len(UNFIT)
    assert json.loads(sent.text) == {"calls": 1, "arguments": {"a": [1, {"b": None}], "c": "text"}}
    audited = [r.action for r in audit.records if r.target == "tool:broker"]
    assert audited == ["tool_call", "tool_result"]  # the call sent, and its answer


async def test_an_unknown_server_is_a_tool_call_error() -> None:
    class Lost(Caller):
        @handler
        async def on_ask(self, p: Ask, ctx: Context) -> Message:
            await ctx.tool("nowhere").call(p.tool, p.arguments)
            raise AssertionError("unreachable")

    async with Runtime([Lost("caller")], tools={"broker": BROKER}) as rt:
        missing = await ask(rt, "add", a=1, b=2)
    assert "ToolCallError: no tool server 'nowhere' in this runtime (declared: broker)" in (
        missing.reason
    )


async def test_a_server_named_by_no_text_is_a_tool_call_error_naming_it() -> None:
    told: list[str] = []

    class Careless(Caller):
        @handler
        async def on_ask(self, p: Ask, ctx: Context) -> Message:
            for server in (["broker"], {"server": "broker"}):
                with pytest.raises(ToolCallError) as wrong:
                    await ctx.tool(server).list()  # type: ignore[arg-type]
                told.append(str(wrong.value))
            raise AssertionError("told")

    async with Runtime([Careless("caller")], tools={"broker": BROKER}) as rt:
        await ask(rt, "add")
    assert told == [
        "no tool server ['broker'] in this runtime (declared: broker)",
        "no tool server {'server': 'broker'} in this runtime (declared: broker)",
    ]
    with pytest.raises(ToolCallError, match=r"no tool server \['broker'\]"):
        TestContext("a", Message.new(Ask(tool="add"), sender="u", recipient="a")).tool(
            ["broker"]  # type: ignore[arg-type]
        )


async def test_a_server_that_cannot_start_fails_the_call_and_a_later_one_retries() -> None:
    dead = McpServer(command=(sys.executable, "-c", "import sys; sys.exit(3)"), timeout=5)
    async with Runtime([Caller("caller")], tools={"broker": dead}) as rt:
        first = await ask(rt, "add", a=1, b=2)
        second = await ask(rt, "add", a=1, b=2)
    for missing in (first, second):
        assert missing.kind == "failed"
        assert "ToolCallError: tool server 'broker': cannot connect" in missing.reason


async def test_a_server_that_never_answers_fails_the_call_after_its_timeout() -> None:
    silent = McpServer(command=(sys.executable, "-c", "import time; time.sleep(60)"), timeout=1)
    async with Runtime([Caller("caller")], tools={"broker": silent}) as rt:
        with anyio.fail_after(20):
            missing = await ask(rt, "add", a=1, b=2)
    assert "tool server 'broker': cannot connect: no session within 1 s" in missing.reason


async def test_what_leaves_is_judged_for_the_server() -> None:
    """The agent writes an e-mail address into the arguments: the PII policy denies the call
    before it leaves, names itself, and the audit log records it against tool:broker."""

    class Mailer(Caller):
        @handler
        async def on_ask(self, p: Ask, ctx: Context) -> Message:
            address = f"{p.arguments['name']}@example.com"
            await ctx.tool("broker").call("contact", {"name": address})
            raise AssertionError("unreachable")

    audit = MemoryAuditLog()
    policies = [PIIBlock()]
    async with Runtime(
        [Mailer("caller")], tools={"broker": BROKER}, policies=policies, audit=audit
    ) as rt:
        denied = await ask(rt, "contact", name="asha.sharma")
    assert "ToolDeniedError: tool call denied by pii_block" in denied.reason
    [record] = [r for r in audit.records if r.action == "denied"]
    assert (record.actor, record.target, record.details["message_type"]) == (
        "pii_block",
        "tool:broker",
        "tool_call",
    )


async def test_what_comes_back_is_judged_for_the_agent() -> None:
    """The tool answers with an e-mail address: the agent may not read it."""
    audit = MemoryAuditLog()
    async with Runtime(
        [Caller("caller")], tools={"broker": BROKER}, policies=[PIIBlock()], audit=audit
    ) as rt:
        denied = await ask(rt, "contact", name="Asha")
    assert "ToolDeniedError: tool result denied by pii_block" in denied.reason
    [record] = [r for r in audit.records if r.action == "denied"]
    assert (record.target, record.details["message_type"], record.details["sender"]) == (
        "caller",
        "tool_result",
        "tool:broker",
    )


async def test_a_rule_may_keep_an_agent_from_a_server() -> None:
    rule = Rule("no-broker", 'to == "tool:broker" AND from == "caller"', reason="not for you")
    async with Runtime([Caller("caller")], tools={"broker": BROKER}, policies=[rule]) as rt:
        denied = await ask(rt, "add", a=1, b=2)
    assert "tool call denied by no-broker: not for you" in denied.reason


class Lister(BaseAgent):
    """Lists the tools of the server its request names, answers with their names."""

    produces = (Answer,)

    @handler
    async def on_ask(self, p: Ask, ctx: Context) -> Message:
        specs = await ctx.tool(p.tool).list()
        return ctx.reply(Answer(text=",".join(s.name for s in specs), is_error=False))


async def test_a_rule_keeps_an_agent_from_listing_a_servers_tools() -> None:
    """A listing reaches the server as a call does (it starts the server's process): a rule
    that keeps the agent from the server denies it before the server is started (here a
    program that does not exist, whose start would fail the call another way), audited."""
    rule = Rule("no-broker", 'to == "tool:broker" AND from == "caller"', reason="not for you")
    audit = MemoryAuditLog()
    nowhere = McpServer(command=(str(HERE / "no-such-server"),), timeout=5)
    async with Runtime(
        [Lister("caller")], tools={"broker": nowhere}, policies=[rule], audit=audit
    ) as rt:
        denied = await ask(rt, "broker")
    assert "tool listing denied by no-broker: not for you" in denied.reason
    [record] = [r for r in audit.records if r.action == "denied"]
    assert (record.actor, record.target, record.details["message_type"]) == (
        "no-broker",
        "tool:broker",
        "tool_list",
    )


async def test_an_allowed_listing_is_judged_both_ways_and_audited() -> None:
    audit = MemoryAuditLog()
    async with Runtime([Lister("caller")], tools={"broker": BROKER}, audit=audit) as rt:
        answer = await ask(rt, "broker")
    assert "add" in answer.text.split(",")
    actions = [(r.action, r.actor, r.target) for r in audit.records if r.action.startswith("tool")]
    assert actions == [
        ("tool_list", "caller", "tool:broker"),
        ("tool_listing", "caller", "tool:broker"),
    ]


async def test_a_listing_counts_against_the_correlations_budget() -> None:
    async with Runtime(
        [Lister("caller")], tools={"broker": BROKER}, limits=Limits(correlation_budget=1)
    ) as rt:
        denied = await ask(rt, "broker")
    assert "tool listing denied by limit:budget" in denied.reason


async def test_calls_count_against_the_correlations_budget() -> None:
    """Three deliveries a request at most: the request itself, then two tool calls; the
    third is denied by the limit."""

    class Thrice(Caller):
        @handler
        async def on_ask(self, p: Ask, ctx: Context) -> Message:
            for _ in range(3):
                await ctx.tool("broker").call("add", {"a": 1, "b": 1})
            return ctx.reply(Answer(text="done", is_error=False))

    limits = Limits(correlation_budget=3)
    async with Runtime([Thrice("caller")], tools={"broker": BROKER}, limits=limits) as rt:
        denied = await ask(rt, "add")
    assert "tool call denied by limit:budget: correlation budget of 3 deliveries" in denied.reason


async def test_the_handlers_deadline_cuts_a_call_and_the_session_lives_on() -> None:
    caller = Caller("caller")
    async with Runtime(tools={"broker": BROKER}) as rt:
        rt.add(caller, options=AgentOptions(deadline=1.5, breaker=None))
        before = await answered(rt, "pid")
        cut = await ask(rt, "wait", seconds=30)
        after = await ask(rt, "pid")
    assert "HandlerTimeoutError" in cut.reason
    assert after.text == before.text  # the same server process, its session still open


async def test_a_server_that_dies_is_started_again_by_a_later_call() -> None:
    """The server's process ends during a call: that call fails, and the session, dead, is
    dropped, so a later call starts the server again; every call used to fail with
    "Connection closed" until the runtime stopped."""
    async with Runtime(tools={"broker": BROKER}) as rt:
        rt.add(Caller("caller"), options=AgentOptions(breaker=None))
        before = await ask(rt, "pid")
        crashed = await ask(rt, "crash")
        after = await answered(rt, "pid")
    assert "ToolCallError: tool 'crash' of " in crashed.reason
    assert "Connection closed" in crashed.reason
    assert after.text != before.text  # a new server process


async def test_a_deadline_shorter_than_the_opening_leaves_it_to_finish() -> None:
    """The first call gives up before the server has started; the opening goes on in the
    runtime, and the next call finds the session open."""
    caller = Caller("caller")
    async with Runtime(tools={"broker": BROKER}) as rt:
        rt.add(caller, options=AgentOptions(deadline=0.05, breaker=None))
        cut = await ask(rt, "pid")
        answer = await answered(rt, "pid")
    assert "HandlerTimeoutError" in cut.reason
    assert answer.text.isdigit()


async def test_a_pipeline_declares_its_tool_servers(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        f"""
name: tools
agents:
  - id: caller
    use: {__name__}:Caller
tools:
  broker:
    command: [{sys.executable}, {HERE / "broker_server.py"}]
    timeout: 10
entry: {{type: ask_tool, to: caller, payload: {{tool: add, arguments: {{a: 20, b: 22}}}}}}
output: tool_answer
"""
    )
    pipeline = load_pipeline(tmp_path / "p.yaml")
    async with pipeline.runtime() as rt:
        result = await pipeline.ask(rt, pipeline.entry_payload(None))
    assert result.output is not None
    assert isinstance(result.output.payload, Answer)
    assert result.output.payload.text == "42"


@pytest.mark.parametrize(
    ("tools", "problem"),
    [
        ("  broker: {url: http://x/mcp, command: [a]}", "give either url or command"),
        ("  broker: {}", "give either url or command"),
        ("  broker: {url: ftp://x}", "tools.broker.url"),
        ("  broker: {url: http://x/mcp, env: {A: b}}", "env and cwd are for a command"),
        ("  b r: {url: http://x/mcp}", "tools.b r"),
        ("  broker: {command: [a], max_answer: 10}", "max_answer is for a url"),
        ("  broker: {url: http://x/mcp, max_answer: 0}", "tools.broker.max_answer"),
    ],
)
def test_a_bad_tools_section_names_the_file_line_and_key(
    tmp_path: Path, tools: str, problem: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"""name: tools
agents:
  - id: caller
    use: {__name__}:Caller
tools:
{tools}
entry: {{type: ask_tool, to: caller}}
output: tool_answer
"""
    )
    with pytest.raises(ConfigurationError) as raised:
        load_pipeline(path)
    assert f"{path}:6" in str(raised.value)
    assert problem in str(raised.value)


async def test_a_test_context_calls_a_session_directly() -> None:
    class Session:
        async def list_tools(self) -> list[Any]:
            return []

        async def call_tool(self, name: str, arguments: Any) -> Any:
            from genie import ToolOutput

            return ToolOutput(text=f"{name}({arguments['a']})")

    msg = Message.new(Ask(tool="add", arguments={"a": 1}), sender="user", recipient="caller")
    ctx = TestContext("caller", msg, tools={"broker": Session()})
    [out] = await Caller("caller").handle(msg, ctx)
    assert isinstance(out.payload, Answer)
    assert out.payload.text == "add(1)"
    with pytest.raises(ToolCallError, match="TestContext has no tool server 'other'"):
        ctx.tool("other")
    # What JSON cannot carry is refused here too, before the session sees it.
    with pytest.raises(ToolArgumentsError) as refused:
        await ctx.tool("broker").call("add", {"a": float("nan")})
    assert str(refused.value) == (
        "tool 'add' of 'broker': field 'a': nan is no JSON number: NaN and infinity have no "
        "JSON form"
    )


async def test_a_tool_whose_schema_is_broken_fails_its_call_naming_it() -> None:
    """A server's schema that cannot be checked (a type that is not one, a pattern that is
    not a regex, a ``$ref`` to nowhere) fails the call as a ToolCallError naming the tool and
    sends nothing; it used to escape as jsonschema's or re's own error."""
    hostile = McpServer(command=(sys.executable, str(HERE / "hostile_server.py")))
    async with Runtime([Caller("caller")], tools={"broker": hostile}) as rt:
        fine = await ask(rt, "fine", a="x")
        broken = [
            await ask(rt, tool, a="x") for tool in ("bad_type", "bad_pattern", "dangling_ref")
        ]
    assert isinstance(fine, Answer)
    assert fine.text == "called"
    for tool, missing in zip(("bad_type", "bad_pattern", "dangling_ref"), broken, strict=True):
        assert f"ToolCallError: tool {tool!r} of " in missing.reason
        assert "its input schema cannot be checked" in missing.reason


class LateToolCaller(BaseAgent):
    """A plain def handler that takes its tools in time, waits for ``gate``, then calls one:
    after its deadline, if it is late."""

    def __init__(self, id: str, gate: threading.Event) -> None:
        super().__init__(id)
        self.gate = gate
        self.done = threading.Event()
        self.outcome = ""

    @handler
    def on_ask(self, p: Ask, ctx: Context) -> None:
        tools = ctx.tool("broker")  # taken before the deadline
        try:
            self.gate.wait(10)
            self.outcome = anyio.from_thread.run(tools.call, p.tool, p.arguments).text
        except AgentError as exc:
            self.outcome = str(exc)
        finally:
            self.done.set()


async def test_a_thread_given_up_cannot_call_the_tools_it_took_in_time() -> None:
    gate = threading.Event()
    late = LateToolCaller("late", gate)
    async with Runtime(tools={"broker": BROKER}) as rt:
        rt.add(late, options=AgentOptions(deadline=0.2))
        result = await rt.ask(
            rt.message(Ask(tool="add", arguments={"a": 1, "b": 2}), recipient="late")
        )
        assert "HandlerTimeoutError" in result.missing[0].reason
        gate.set()
        assert await anyio.to_thread.run_sync(late.done.wait, 10)
    assert late.outcome == (
        "agent 'late': ctx.tool refused, the delivery gave this thread up (its deadline "
        "passed, or its request was cancelled)"
    )


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"command": "python -m server"}, "command"),  # its 'p' was run, 'y' 't' ... its args
        ({"command": ("python", 5)}, "command"),
        ({"url": b"http://127.0.0.1/mcp"}, "url"),
        ({"url": "http://127.0.0.1/mcp", "timeout": math.nan}, "timeout"),
        ({"url": "http://127.0.0.1/mcp", "timeout": "30"}, "timeout"),  # was a TypeError
        ({"url": "http://127.0.0.1/mcp", "timeout": 0}, "timeout"),
    ],
)
def test_a_server_declared_wrong_is_refused_naming_the_argument(
    given: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"an MCP server's {named} "):
        McpServer(**given)


async def test_the_tools_a_server_lists_a_page_at_a_time_are_all_callable() -> None:
    """A server may list its tools in pages (``nextCursor``); the session read the first page
    only, so a tool on a later one was 'no such tool', and a handler listing them missed it."""
    paged = McpServer(command=(sys.executable, str(HERE / "paged_server.py")), timeout=10)
    async with Runtime(tools={"broker": paged}) as rt:
        rt.add(Caller("caller"), options=AgentOptions(breaker=None))
        third = await ask(rt, "third")
    assert (third.text, third.is_error) == ("third", False)


async def test_a_tool_listing_whose_pages_loop_fails_the_opening_naming_it() -> None:
    looping = McpServer(command=(sys.executable, str(HERE / "paged_server.py"), "loop"), timeout=10)
    async with Runtime(tools={"broker": looping}) as rt:
        rt.add(Caller("caller"), options=AgentOptions(breaker=None))
        with anyio.fail_after(20):
            missing = await ask(rt, "third")
    assert "ToolCallError" in missing.reason
    assert "its tool list's pages loop" in missing.reason, missing.reason


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:s3cretpass@mcp.example/mcp", "https://***@mcp.example/mcp"),
        ("https://mcp.example:8443/mcp?token=tok3nvalue#x", "https://mcp.example:8443/mcp?***"),
        ("https://mcp.example/mcp", "https://mcp.example/mcp"),
        ("http://[::1/mcp", "(a URL that cannot be read)"),
    ],
)
def test_a_servers_url_is_named_without_its_secrets(url: str, shown: str) -> None:
    """``where`` names the server in every error of its calls, and those reach dead letters,
    logs and a served client's answer: a password or a token in the URL was shown to them."""
    assert McpServer(url=url).where == shown
