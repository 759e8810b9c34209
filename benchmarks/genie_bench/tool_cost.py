"""What a governed tool call costs a handler (``ctx.tool(server).call``), against the same call
made on the session directly.

    python -m genie_bench.tool_cost                 # in-process session and a real MCP server
    python -m genie_bench.tool_cost --calls 2000 --rounds 7

Each figure is the median over ``--rounds`` rounds of the CPU time (``time.process_time``, so
machine load does not count) of ``--calls`` calls made one after another by one handler,
divided by the calls:

- ``direct``: the session's ``call_tool``, no runtime (the floor);
- ``governed``: ``ctx.tool("mem").call(...)`` on a runtime without policies (the two messages,
  the budget, the session lookup);
- ``governed+policies``: the same with the shipped board policy file
  (config/policies/ai-policy.yaml), which judges the call and its result;
- ``mcp stdio``: ``ctx.tool`` to a real MCP server on stdio (``tool_server.py``, written with
  the SDK): wall time, since most of it is the server process and the pipe.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from genie import BaseAgent, Context, Message, Payload, Runtime, ToolOutput, ToolSpec, handler
from genie._base.shipped import shipped_file
from genie.policies import load_policy_file

POLICIES = str(shipped_file("policies/ai-policy.yaml"))
SERVER = Path(__file__).with_name("tool_server.py")
ARGUMENTS = {"symbol": "INFY", "quantity": 10}


class Calls(Payload):
    message_type = "bench.tool_calls"
    count: int


class Done(Payload):
    message_type = "bench.tool_calls_done"
    seconds: float


class Session:
    """A tool session in this process: answers at once, as a cache or a local function would."""

    async def list_tools(self) -> Sequence[ToolSpec]:
        return [ToolSpec(name="quote", description="a price", input_schema={"type": "object"})]

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolOutput:
        return ToolOutput(text="1500.00", structured={"symbol": "INFY", "price": 1500.0})


class LocalServer:
    timeout = 10.0

    @asynccontextmanager
    async def connect(self) -> Any:
        yield Session()


class Caller(BaseAgent):
    """Makes ``count`` calls of the ``quote`` tool one after another; answers with the time."""

    produces = (Done,)

    def __init__(self, id: str, server: str, clock: Callable[[], float]) -> None:
        super().__init__(id)
        self.server, self.clock = server, clock

    @handler
    async def on_calls(self, p: Calls, ctx: Context) -> Message:
        tools = ctx.tool(self.server)
        await tools.call("quote", ARGUMENTS)  # the session opens outside the measurement
        started = self.clock()
        for _ in range(p.count):
            await tools.call("quote", ARGUMENTS)
        return ctx.reply(Done(seconds=self.clock() - started))


async def _governed(calls: int, policies: bool, server: str, clock: Callable[[], float]) -> float:
    tools: dict[str, Any] = {"mem": LocalServer()}
    if server == "mcp":
        from genie.mcp import McpServer

        tools["mcp"] = McpServer(command=(sys.executable, str(SERVER)))
    chosen = load_policy_file(POLICIES).policies if policies else ()
    async with Runtime([Caller("caller", server, clock)], tools=tools, policies=chosen) as rt:
        result = await rt.ask(rt.message(Calls(count=calls), recipient="caller"), timeout=600)
    done = result.message.payload
    assert isinstance(done, Done)
    return done.seconds / calls


async def _direct(calls: int) -> float:
    session = Session()
    started = time.process_time()
    for _ in range(calls):
        await session.call_tool("quote", ARGUMENTS)
    return (time.process_time() - started) / calls


def _median(rounds: int, run: Callable[[], Awaitable[float]]) -> float:
    return statistics.median(anyio.run(run) for _ in range(rounds))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genie_bench.tool_cost", description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="calls per round (1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is kept (5)")
    parser.add_argument("--mcp-calls", type=int, default=200, help="calls to the MCP server (200)")
    args = parser.parse_args(argv)
    cpu = time.process_time
    rows = [
        ("direct", _median(args.rounds, lambda: _direct(args.calls)), "CPU"),
        (
            "governed",
            _median(args.rounds, lambda: _governed(args.calls, False, "mem", cpu)),
            "CPU",
        ),
        (
            "governed+policies",
            _median(args.rounds, lambda: _governed(args.calls, True, "mem", cpu)),
            "CPU",
        ),
        (
            "mcp stdio",
            _median(
                args.rounds, lambda: _governed(args.mcp_calls, False, "mcp", time.perf_counter)
            ),
            "wall",
        ),
    ]
    print(f"{'path':<20} {'µs per call':>12}  clock")
    for name, seconds, clock in rows:
        print(f"{name:<20} {seconds * 1e6:>12.1f}  {clock}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
