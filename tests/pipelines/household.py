"""A one-agent household planner: a question in, a plan out (tests that need a pipeline of
their own, its files in a temporary folder)."""

from __future__ import annotations

from genie import BaseAgent, Context, Message, Payload, handler


class Question(Payload):
    message_type = "household_question"
    text: str = ""


class Plan(Payload):
    message_type = "household_plan"
    text: str


class Planner(BaseAgent):
    produces = (Plan,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.emit(Plan(text=f"Plan for: {payload.text}"))
