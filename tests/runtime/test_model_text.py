"""Model text relayed as it streams (``Runtime.model_text``): whole and in order, held back,
judged by the policies for each reader, stopped by a denial, a failure, the kill switch or a
cancellation, and never released in part when a denied phrase is split across deltas."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from genie import (
    AgentOptions,
    BaseAgent,
    Context,
    Decision,
    Limits,
    MemoryAuditLog,
    Message,
    ModelTextStream,
    Payload,
    Runtime,
    RuntimeClosedError,
    TextChunk,
    handler,
)
from genie.llm import (
    BudgetExceededError,
    ChatMessage,
    Finish,
    ProviderConnectionError,
    Request,
    Response,
    ScriptedProvider,
    StreamEvent,
    TextDelta,
    UsageEvent,
)
from genie.llm import Provider as LLMProvider

from ..conftest import DenyTo, PolicyFn

ANSWER = (
    "Your spending on groceries rose 12% this quarter, mostly in the second month; "
    "rent and utilities held steady, and your savings rate stayed near 18% of income."
)


class Question(Payload):
    message_type = "question"
    text: str = "How did I do?"
    stop_after: int = 0  # stop reading the stream after this many deltas (0: read it all)


class Answer(Payload):
    message_type = "answer"
    text: str
    error: str = ""


class Streamer(BaseAgent):
    """Streams one model call and answers with the text it read."""

    produces = (Answer,)

    def __init__(self, id: str, llm: LLMProvider) -> None:
        super().__init__(id)
        self.llm = llm

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        parts: list[str] = []
        request = Request(messages=(ChatMessage.user(payload.text),), max_tokens=200)
        try:
            async with ctx.llm(self.llm).stream(request) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                        if len(parts) == payload.stop_after:
                            break
        except BudgetExceededError as refused:
            return ctx.reply(Answer(text="", error=refused.limit))
        return ctx.reply(Answer(text="".join(parts)))


class Paced:
    """A provider whose stream sends ``deltas`` one at a time, and then its finish, each when
    the test ``allow``s it (and with ``fail_after``, fails once that many are sent)."""

    name = "paced"
    region = "on-prem"
    model = "paced-model"

    def __init__(self, deltas: list[str], fail_after: int | None = None) -> None:
        self.deltas = deltas
        self.fail_after = fail_after
        self.sent = 0
        self._permits = 0
        self._moved = anyio.Event()

    def allow(self, n: int = 1) -> None:
        self._permits += n
        self._moved.set()

    async def complete(self, request: Request) -> Response:
        return Response(text="".join(self.deltas))

    @asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        async with aclosing(self._events()) as events:
            yield events

    async def _events(self) -> AsyncGenerator[StreamEvent, None]:
        for delta in self.deltas:
            if self.sent == self.fail_after:
                raise ProviderConnectionError("paced: the connection dropped", provider="paced")
            await self._permit()
            self.sent += 1
            yield TextDelta(text=delta)
        await self._permit()
        yield Finish(reason="stop", model=self.model)

    async def _permit(self) -> None:
        while not self._permits:
            self._moved = anyio.Event()
            await self._moved.wait()
        self._permits -= 1


def released(chunks: list[TextChunk]) -> str:
    return "".join(c.text for c in chunks if c.kind == "text")


async def read(stream: ModelTextStream, into: list[TextChunk]) -> None:
    async for chunk in stream:
        into.append(chunk)


async def test_the_text_reaches_the_reader_whole_in_order_and_the_stream_ends() -> None:
    async with Runtime() as rt:
        rt.add(Streamer("writer", ScriptedProvider([ANSWER], chunk=3)))
        msg = rt.message(Question(), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=16) as text:
            result = await rt.ask(msg)
            chunks = [chunk async for chunk in text]  # ends by itself: the request settled
    assert result.replies[0].payload == Answer(text=ANSWER)
    assert released(chunks) == ANSWER
    assert chunks[-1] == TextChunk("end", "writer", msg.id, 1, finish="stop")
    assert {(c.agent_id, c.message_id, c.call) for c in chunks} == {("writer", msg.id, 1)}


async def test_the_last_hold_back_characters_wait_for_more_or_for_the_end() -> None:
    deltas = [ANSWER[i : i + 10] for i in range(0, 100, 10)]
    paced = Paced(deltas)
    async with Runtime() as rt:
        rt.add(Streamer("writer", paced))
        msg = rt.message(Question(), recipient="writer")
        chunks: list[TextChunk] = []
        async with (
            rt.model_text(msg.correlation_id, reader="alice", hold_back=25) as text,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read, text, chunks)
            tg.start_soon(rt.ask, msg)
            for sent in range(1, len(deltas) + 1):
                paced.allow()
                await wait_all_tasks_blocked()
                out = released(chunks)
                assert ANSWER.startswith(out)
                assert len(out) <= sent * 10 - 25 or not out  # the tail is held
            assert len(released(chunks)) >= 100 - 2 * 25  # released while the model wrote
            assert not any(c.kind == "end" for c in chunks)
            paced.allow()  # the finish
    assert released(chunks) == ANSWER[:100]
    assert chunks[-1].kind == "end"


async def test_with_no_hold_back_limit_only_the_whole_call_is_released() -> None:
    async with Runtime() as rt:
        rt.add(Streamer("writer", ScriptedProvider([ANSWER], chunk=3)))
        msg = rt.message(Question(), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=None) as text:
            await rt.ask(msg)
            chunks = [chunk async for chunk in text]
    assert [c.kind for c in chunks] == ["text", "end"]
    assert chunks[0].text == ANSWER


def deny_phrase(phrase: str) -> PolicyFn:
    def evaluate(msg: Message, recipient: str) -> Decision:
        text = getattr(msg.payload, "text", "")
        if phrase in text.replace(" ", ""):
            return Decision.deny("no-accounts", "an account number leaves the bank")
        return Decision.ALLOW

    return PolicyFn("no-accounts", evaluate)


SECRET = "ACCOUNT12345678"  # denied wherever it appears, spaces or not


@pytest.mark.parametrize("hold_back", [20, None])
async def test_a_denied_phrase_split_across_deltas_is_never_released_in_part(
    hold_back: int | None,
) -> None:
    deltas = ["Your balance is fine. The money is in ACC", "OUNT 1234", "5678 as before."]
    audit = MemoryAuditLog()
    async with Runtime(policies=[deny_phrase(SECRET)], audit=audit) as rt:
        rt.add(Streamer("writer", ScriptedProvider(["".join(deltas)], chunk=len(deltas[0]))))
        msg = rt.message(Question(), recipient="writer")
        chunks: list[TextChunk] = []
        async with (
            rt.model_text(msg.correlation_id, reader="alice", hold_back=hold_back) as text,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read, text, chunks)
            await rt.ask(msg)
    out = released(chunks)
    assert "ACC" not in out  # not even the start of it
    assert chunks[-1].kind == "denied"
    assert (chunks[-1].policy, chunks[-1].reason) == (
        "no-accounts",
        "an account number leaves the bank",
    )
    denials = [r for r in audit.records if r.action == "denied" and r.target == "alice"]
    assert [(d.actor, d.details["message_type"]) for d in denials] == [
        ("no-accounts", "model_text")
    ]


async def test_without_a_hold_back_a_split_phrase_leaks_its_start_as_documented() -> None:
    """``hold_back=0`` judges every piece with all before it, but cannot judge what has not
    arrived: the docs say so, and this is the trade-off it shows."""
    deltas = ["Your balance is fine. The money is in ACC", "OUNT 1234", "5678 as before."]
    paced = Paced(deltas)
    async with Runtime(policies=[deny_phrase(SECRET)]) as rt:
        rt.add(Streamer("writer", paced))
        msg = rt.message(Question(), recipient="writer")
        chunks: list[TextChunk] = []
        async with (
            rt.model_text(msg.correlation_id, reader="alice", hold_back=0) as text,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read, text, chunks)
            tg.start_soon(rt.ask, msg)
            for _ in deltas:
                paced.allow()
                await wait_all_tasks_blocked()
            paced.allow()  # the finish
    assert released(chunks).endswith("ACCOUNT 1234")
    assert chunks[-1].kind == "denied"


async def test_each_reader_is_judged_as_itself() -> None:
    async with Runtime(policies=[DenyTo("mallory", name="deny-mallory")]) as rt:
        rt.add(Streamer("writer", ScriptedProvider([ANSWER], chunk=5)))
        msg = rt.message(Question(), recipient="writer")
        alice: list[TextChunk] = []
        mallory: list[TextChunk] = []
        async with (
            rt.model_text(msg.correlation_id, reader="alice", hold_back=0) as a,
            rt.model_text(msg.correlation_id, reader="mallory", hold_back=0) as m,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(read, a, alice)
            tg.start_soon(read, m, mallory)
            await rt.ask(msg)
    assert released(alice) == ANSWER
    assert [c.kind for c in mallory] == ["denied"]
    assert mallory[0].policy == "deny-mallory"


async def test_a_policy_that_raises_denies_the_text() -> None:
    def broken(msg: Message, recipient: str) -> Decision:
        if msg.type == "model_text":
            raise KeyError("tier")
        return Decision.ALLOW

    async with Runtime(policies=[PolicyFn("broken", broken)]) as rt:
        rt.add(Streamer("writer", ScriptedProvider([ANSWER], chunk=5)))
        msg = rt.message(Question(), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=0) as text:
            result = await rt.ask(msg)
            chunks = [chunk async for chunk in text]
    assert result.complete  # the answer itself is a delivery of its own
    assert [c.kind for c in chunks] == ["denied"]
    assert chunks[0].policy == "broken"
    assert "KeyError" in (chunks[0].reason or "")


async def test_a_call_the_kill_switch_refuses_ends_naming_the_limit() -> None:
    async with Runtime(limits=Limits(correlation_tokens=10)) as rt:
        rt.add(Streamer("writer", ScriptedProvider([ANSWER])))
        msg = rt.message(Question(), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice") as text:
            result = await rt.ask(msg)
            chunks = [chunk async for chunk in text]
    assert result.replies[0].payload == Answer(text="", error="correlation_tokens")
    assert chunks == [
        TextChunk(
            "end",
            "writer",
            msg.id,
            1,
            policy="limit:correlation_tokens",
            error="BudgetExceededError",
        )
    ]


async def test_text_held_back_from_a_failed_call_is_never_released() -> None:
    paced = Paced(["The balance is ", "Rs 4,20,000 ", "and rising"], fail_after=2)
    paced.allow(4)
    async with Runtime() as rt:
        rt.add(Streamer("writer", paced), options=AgentOptions())
        msg = rt.message(Question(), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=100) as text:
            await rt.ask(msg)
            chunks = [chunk async for chunk in text]
    assert chunks == [TextChunk("end", "writer", msg.id, 1, error="ProviderConnectionError")]


async def test_a_failed_call_whose_error_the_handler_catches_releases_nothing_held() -> None:
    """The handler catches the stream's error inside the stream and answers with what it
    read: the call failed all the same, so what was held back stays held."""

    class Forgiving(Streamer):
        @handler
        async def on_question(self, payload: Question, ctx: Context) -> Message:
            parts: list[str] = []
            request = Request(messages=(ChatMessage.user(payload.text),), max_tokens=200)
            async with ctx.llm(self.llm).stream(request) as events:
                try:
                    async for event in events:
                        if isinstance(event, TextDelta):
                            parts.append(event.text)
                except ProviderConnectionError:
                    pass
            return ctx.reply(Answer(text="".join(parts)))

    paced = Paced(["The balance is ", "Rs 4,20,000 ", "and rising"], fail_after=2)
    paced.allow(4)
    async with Runtime() as rt:
        rt.add(Forgiving("writer", paced))
        msg = rt.message(Question(), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=100) as text:
            result = await rt.ask(msg)
            chunks = [chunk async for chunk in text]
    assert result.replies[0].payload == Answer(text="The balance is Rs 4,20,000 ")
    assert chunks == [TextChunk("end", "writer", msg.id, 1, error="ProviderConnectionError")]


async def test_a_handler_that_stops_reading_ends_the_call_with_what_came() -> None:
    async with Runtime() as rt:
        rt.add(Streamer("writer", ScriptedProvider([ANSWER], chunk=10)))
        msg = rt.message(Question(stop_after=3), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=4) as text:
            result = await rt.ask(msg)
            chunks = [chunk async for chunk in text]
    assert result.replies[0].payload == Answer(text=ANSWER[:30])
    assert released(chunks) == ANSWER[:30]
    assert chunks[-1] == TextChunk("end", "writer", msg.id, 1)  # no finish: it was left


async def test_a_cancelled_handler_ends_its_call_and_releases_nothing_held() -> None:
    paced = Paced([ANSWER[:20], ANSWER[20:]])
    paced.allow(1)
    async with Runtime() as rt:
        rt.add(Streamer("writer", paced), options=AgentOptions(deadline=0.05))
        msg = rt.message(Question(), recipient="writer")
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=64) as text:
            await rt.ask(msg)
            chunks = [chunk async for chunk in text]
    assert len(chunks) == 1
    assert chunks[0].kind == "end"
    assert chunks[0].error in {"CancelledError", "Cancelled"}
    [letter] = list(rt.dead_letters)
    assert letter.error_type == "HandlerTimeoutError"


async def test_calls_of_one_request_are_numbered_and_other_requests_are_not_heard() -> None:
    async with Runtime() as rt:
        rt.add(Streamer("one", ScriptedProvider(["first answer"])))
        rt.add(Streamer("two", ScriptedProvider(["second answer"])))
        msg = rt.message(Question(), recipient="one")
        other = rt.message(Question(), recipient="two")
        again = msg.child(
            Question(), sender="user", id="again", created_at=msg.created_at, recipient="two"
        )
        async with rt.model_text(msg.correlation_id, reader="alice", hold_back=0) as text:
            await rt.ask(other)
            rt.publish_nowait(msg)
            rt.publish_nowait(again)  # the same request: a second call, by another agent
            chunks = [chunk async for chunk in text]
    by_call = {n: released([c for c in chunks if c.call == n]) for n in (1, 2)}
    assert by_call == {1: "first answer", 2: "second answer"}  # the calls' pieces interleave
    ends = sorted((c.call, c.agent_id) for c in chunks if c.kind == "end")
    assert ends == [(1, "one"), (2, "two")]


async def test_usage_and_tool_events_pass_to_the_handler_untouched() -> None:
    events: list[StreamEvent] = []

    class Keeper(BaseAgent):
        @handler
        async def on_question(self, payload: Question, ctx: Context) -> None:
            async with ctx.llm(ScriptedProvider([ANSWER], chunk=7)).stream(
                Request(messages=(ChatMessage.user("?"),))
            ) as stream:
                events.extend([event async for event in stream])

    async with Runtime() as rt:
        rt.add(Keeper("keeper"))
        msg = rt.message(Question(), recipient="keeper")
        async with rt.model_text(msg.correlation_id, reader="alice") as text:
            await rt.publish(msg)
            chunks = [chunk async for chunk in text]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == ANSWER
    assert isinstance(events[-2], UsageEvent)
    assert isinstance(events[-1], Finish)
    assert released(chunks) == ANSWER


async def test_bad_arguments_and_a_closed_runtime_are_refused() -> None:
    rt = Runtime()
    async with rt:
        with pytest.raises(ValueError, match="hold_back"):
            rt.model_text("c", reader="alice", hold_back=-1)
    with pytest.raises(RuntimeClosedError, match="model text"):
        rt.model_text("c", reader="alice")
