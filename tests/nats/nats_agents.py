"""Agents that ask each other (``ctx.request``) for tests/nats/test_nats_requests.py: in the test
process and in ``genie worker`` processes (tests/nats/nats_asking.yaml)."""

from __future__ import annotations

from genie import AgentError, BaseAgent, Context, DeniedError, Message, Payload, handler


class Question(Payload):
    message_type = "question"
    n: int


class Answer(Payload):
    message_type = "answer"
    n: int


class Verdict(Payload):
    message_type = "verdict"
    text: str


class Asker(BaseAgent):
    """Asks ``answerer`` for each Question and tells its own caller what came back (or why
    nothing did: the request's error, by type and text)."""

    produces = (Question, Verdict)

    def __init__(self, id: str, *, timeout: float = 10.0) -> None:
        super().__init__(id)
        self.timeout = timeout

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        try:
            answer = await ctx.request("answerer", Question(n=payload.n), timeout=self.timeout)
        except (DeniedError, AgentError, TimeoutError) as exc:
            return ctx.reply(Verdict(text=f"{type(exc).__name__}: {exc}"))
        assert isinstance(answer.payload, Answer)
        return ctx.reply(Verdict(text=f"answer {answer.payload.n} from {answer.sender}"))


class Answerer(BaseAgent):
    """Answers a Question with twice its number after ``seconds``; fails on 13."""

    produces = (Answer,)

    def __init__(self, id: str, *, seconds: float = 0.0) -> None:
        super().__init__(id)
        self.seconds = seconds

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        if self.seconds:
            await ctx.sleep(self.seconds)
        if payload.n == 13:
            raise ValueError("13 is unlucky")
        return ctx.reply(Answer(n=payload.n * 2))
