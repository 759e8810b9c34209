"""``genie.llm.tool_loop``: a model's tool calls answered by a real MCP server through
``ctx.tool``, each governed; the model is told of denials and mistakes, and may correct."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from genie import (
    BaseAgent,
    Context,
    InvalidArgumentError,
    Message,
    Payload,
    Runtime,
    handler,
)
from genie.llm import ChatMessage, Request, Response, ScriptedProvider, ToolCall, tool_loop
from genie.mcp import McpServer
from genie.policies import PIIBlock

HERE = Path(__file__).resolve().parent
BROKER = McpServer(command=(sys.executable, str(HERE / "broker_server.py")))


class Question(Payload):
    message_type = "question"
    text: str


class Reply(Payload):
    message_type = "reply"
    text: str
    steps: int
    answered: bool


def last_tool_text(request: Request) -> str:
    return [m for m in request.messages if m.role == "tool"][-1].text


class Asker(BaseAgent):
    """Asks its model, which may call the broker's tools."""

    produces = (Reply,)

    def __init__(self, id: str, *, llm: ScriptedProvider) -> None:
        super().__init__(id)
        self.llm = llm

    @handler
    async def on_question(self, q: Question, ctx: Context) -> Message:
        done = await tool_loop(
            ctx.llm(self.llm),
            Request(messages=(ChatMessage.user(q.text),)),
            ctx.tool("broker"),
            max_steps=3,
        )
        return ctx.reply(Reply(text=done.response.text, steps=done.steps, answered=done.answered))


def calls(*calls: ToolCall) -> Response:
    return Response(tool_calls=calls, finish_reason="tool_calls")


async def answer(rt: Runtime, text: str) -> Reply:
    result = await rt.ask(rt.message(Question(text=text), recipient="asker"), timeout=30)
    assert result.complete, result.missing
    reply = result.message.payload
    assert isinstance(reply, Reply)
    return reply


async def test_the_model_calls_a_tool_and_answers_with_its_result() -> None:
    model = ScriptedProvider(
        [
            calls(ToolCall(id="c1", name="add", arguments={"a": 2, "b": 3})),
            lambda request: Response(text=f"the sum is {last_tool_text(request)}"),
        ]
    )
    async with Runtime([Asker("asker", llm=model)], tools={"broker": BROKER}) as rt:
        reply = await answer(rt, "what is 2 + 3?")
    assert (reply.text, reply.steps, reply.answered) == ("the sum is 5", 2, True)
    offered = {tool.name for tool in model.requests[0].tools}
    assert offered == {"add", "broken", "contact", "crash", "get_holdings", "pid", "wait"}


async def test_denials_and_mistakes_are_told_to_the_model() -> None:
    model = ScriptedProvider(
        [
            calls(
                ToolCall(id="c1", name="contact", arguments={"name": "Asha"}),  # an e-mail back
                ToolCall(id="c2", name="add", arguments={"a": "two", "b": 3}),
                ToolCall(id="c3", name="mul", arguments={}),
                ToolCall(id="c4", name="broken", arguments={}),
            ),
            lambda request: Response(
                text=" | ".join(m.text for m in request.messages if m.role == "tool")
            ),
        ]
    )
    policies = [PIIBlock()]
    async with Runtime(
        [Asker("asker", llm=model)], tools={"broker": BROKER}, policies=policies
    ) as rt:
        reply = await answer(rt, "find Asha")
    told = reply.text.split(" | ")
    assert (
        told[0] == "error: denied by policy pii_block: content matched PII pattern: e-mail address"
    )
    assert told[1] == "error: bad arguments for add: 'two' is not of type 'integer' (a)"
    assert told[2].startswith("error: unknown tool 'mul' (tools: add, broken, contact")
    assert told[3].startswith("error: ")
    assert "broken" in told[3]


async def test_the_steps_run_out() -> None:
    model = ScriptedProvider([calls(ToolCall(id="c", name="add", arguments={"a": 1, "b": 1}))])
    async with Runtime([Asker("asker", llm=model)], tools={"broker": BROKER}) as rt:
        reply = await answer(rt, "loop forever")
    assert (reply.steps, reply.answered) == (3, False)
    assert len(model.requests) == 3


async def test_a_model_or_server_by_name_or_steps_of_no_count_are_refused_naming_them() -> None:
    model = ScriptedProvider(["never asked"])
    question = Request(messages=(ChatMessage.user("hi"),))
    with pytest.raises(
        InvalidArgumentError, match=r"given as its tools, ctx.tool\(name\), not str"
    ):
        await tool_loop(model, question, "broker")  # type: ignore[arg-type]
    for steps in (0, 2.5, "3", True):
        with pytest.raises(InvalidArgumentError, match="max_steps must be a whole number"):
            await tool_loop(model, question, max_steps=steps)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"tool_loop\(llm\): str \('openai'\) is no"):
        await tool_loop("openai", question)  # type: ignore[arg-type]
    assert model.requests == []
