"""A model's tool calls answered by tool servers: ``tool_loop`` offers the tools of
``ctx.tool(server)`` to the model, calls the ones it asks for (each call governed both ways,
see ``genie._runtime.tool_calls``), gives it the answers, and repeats until it answers
without a tool call or runs out of steps."""

from __future__ import annotations

from dataclasses import dataclass

from .._agent.tools import Tools, ToolSpec
from .._errors import InvalidArgumentError, ToolArgumentsError, ToolDeniedError
from ._provider import Provider, a_provider
from ._types import ChatMessage, Request, Response, Tool, ToolCall

__all__ = ["ToolLoop", "tool_loop"]


@dataclass(frozen=True, slots=True)
class ToolLoop:
    """How a tool loop ended: ``response`` is the model's last answer (``answered``: one
    without tool calls; otherwise the steps ran out while it still asked for tools),
    ``messages`` the whole exchange, ``steps`` the model calls made."""

    response: Response
    messages: tuple[ChatMessage, ...]
    steps: int
    answered: bool


async def tool_loop(
    llm: Provider, request: Request, *servers: Tools, max_steps: int = 8
) -> ToolLoop:
    """Call ``llm`` with ``request`` and the tools of ``servers`` (``ctx.tool(name)``), answer
    its tool calls with theirs, at most ``max_steps`` model calls. ``llm`` should be the
    handler's (``ctx.llm(provider)``), so every model call counts against the request's
    budgets, as every tool call does.

    What the model is told instead of a tool's answer: a denial (``error: denied by policy
    ...``), arguments that do not fit the tool's schema, a tool it was not offered, the tool's
    own error. It may correct itself. A server that cannot be reached raises
    ``ToolCallError``: the handler fails and is retried as its options say. A server that is
    not its tools (its name, say) or a ``max_steps`` that is no count is an
    ``InvalidArgumentError``."""
    a_provider(llm, "tool_loop(llm)")
    if type(max_steps) is not int or max_steps < 1:
        raise InvalidArgumentError(
            f"tool_loop: max_steps must be a whole number of at least 1, not {max_steps!r}"
        )
    for server in servers:
        if not (
            callable(getattr(server, "list", None)) and callable(getattr(server, "call", None))
        ):
            raise InvalidArgumentError(
                "tool_loop: each server is given as its tools, ctx.tool(name), not "
                f"{type(server).__name__}"
            )
    owners: dict[str, Tools] = {}
    offered: list[Tool] = []
    for server in servers:
        for spec in await server.list():
            if spec.name in owners:
                raise ValueError(f"two tool servers offer a tool named {spec.name!r}")
            owners[spec.name] = server
            offered.append(_as_tool(spec))
    asked = request.model_copy(update={"tools": (*request.tools, *offered)})
    messages = list(request.messages)
    for step in range(1, max_steps + 1):
        response = await llm.complete(asked.model_copy(update={"messages": tuple(messages)}))
        if not response.tool_calls:
            return ToolLoop(response, tuple(messages), step, answered=True)
        messages.append(ChatMessage.assistant(response.text, response.tool_calls))
        # One after another, in the model's order: each call is governed on its own.
        messages += [
            ChatMessage.tool_result(call, await _answer(owners, call))
            for call in response.tool_calls
        ]
    return ToolLoop(response, tuple(messages), max_steps, answered=False)


def _as_tool(spec: ToolSpec) -> Tool:
    return Tool(name=spec.name, description=spec.description, parameters=dict(spec.input_schema))


async def _answer(owners: dict[str, Tools], call: ToolCall) -> str:
    """The text the model reads for ``call``."""
    server = owners.get(call.name)
    if server is None:
        return f"error: unknown tool {call.name!r} (tools: {', '.join(sorted(owners))})"
    try:
        output = await server.call(call.name, call.arguments)
    except ToolDeniedError as exc:
        return f"error: denied by policy {exc.policy}: {exc.reason}"
    except ToolArgumentsError as exc:
        return f"error: bad arguments for {call.name}: {exc.problem} ({exc.field or 'arguments'})"
    return f"error: {output.text}" if output.is_error else output.text
