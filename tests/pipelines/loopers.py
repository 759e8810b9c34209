"""User agents (``module:Class``) for pipeline tests: a ping-pong pair that loops forever."""

from __future__ import annotations

from genie import BaseAgent, Context, Message, Payload, handler


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
