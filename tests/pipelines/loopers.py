"""User agents (``module:Class``) for pipeline tests: a ping-pong pair that loops forever."""

from __future__ import annotations

from typing import ClassVar

import anyio

from genie import BaseAgent, Context, Message, Payload, handler
from genie.pipeline import Gathered


class Serve(Payload):
    message_type = "serve"
    n: int = 0


class Return(Payload):
    message_type = "return"
    n: int = 0


class Server(BaseAgent):
    produces = (Return,)

    @handler
    async def on_serve(self, payload: Serve, ctx: Context) -> Message:
        return ctx.emit(Return(n=payload.n + 1))


class Returner(BaseAgent):
    produces = (Serve,)

    @handler
    async def on_return(self, payload: Return, ctx: Context) -> Message:
        return ctx.emit(Serve(n=payload.n + 1))


class NotAnAgent:
    pass


class Sleeper(BaseAgent):
    """Answers ``serve`` after ``seconds`` on the runtime clock."""

    produces = (Return,)

    def __init__(self, id: str, *, seconds: float = 60.0) -> None:
        super().__init__(id)
        self.seconds = seconds

    @handler
    async def on_serve(self, payload: Serve, ctx: Context) -> Message:
        await ctx.sleep(self.seconds)
        return ctx.emit(Return(n=payload.n))


class Both(Gathered):
    message_type = "both"


class Summary(Payload):
    message_type = "summary"
    text: str


class Collector(BaseAgent):
    """Summarises a gather's bundle: which parts came, which are missing."""

    produces = (Summary,)

    @handler
    async def on_both(self, payload: Both, ctx: Context) -> Message:
        return ctx.emit(summary(payload))


def summary(bundle: Both) -> Summary:
    """``partial: got ['fast'], missing ['slow']``."""
    return Summary(
        text=f"{bundle.status}: got {sorted(bundle.parts)}, missing {list(bundle.missing)}"
    )


class Broken(BaseAgent):
    """Fails every message."""

    produces = (Return,)

    @handler
    async def on_serve(self, payload: Serve, ctx: Context) -> Message:
        raise RuntimeError(f"broken on serve {payload.n}")


class AskA(Payload):
    message_type = "ask_a"


class AskB(Payload):
    message_type = "ask_b"


class PartA(Payload):
    message_type = "part_a"


class PartB(Payload):
    message_type = "part_b"


class Splitter(BaseAgent):
    produces = (AskA, AskB)

    @handler
    async def on_serve(self, payload: Serve, ctx: Context) -> list[Message]:
        return [ctx.emit(AskA()), ctx.emit(AskB())]


class Twin(BaseAgent):
    """One class for two agents, so the graph has each lead to both parts: it answers
    ``ask_a`` after ``seconds`` and fails every ``ask_b`` at once."""

    produces = (PartA, PartB)

    def __init__(self, id: str, *, seconds: float = 0.5) -> None:
        super().__init__(id)
        self.seconds = seconds

    @handler
    async def on_ask_a(self, payload: AskA, ctx: Context) -> Message:
        await ctx.sleep(self.seconds)
        return ctx.emit(PartA())

    @handler
    async def on_ask_b(self, payload: AskB, ctx: Context) -> Message:
        raise RuntimeError("twin b refuses")


class SlowCollector(Collector):
    """A collector that waits on ``gate`` before it answers (None: at once)."""

    gate: ClassVar[anyio.Event | None] = None
    waiting: ClassVar[anyio.Event | None] = None  # set when it waits on the gate

    @handler
    async def on_both(self, payload: Both, ctx: Context) -> Message:
        if SlowCollector.gate is not None:
            if SlowCollector.waiting is not None:
                SlowCollector.waiting.set()
            await SlowCollector.gate.wait()
        return ctx.emit(summary(payload))
