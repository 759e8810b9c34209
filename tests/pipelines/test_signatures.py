"""``genie validate`` reads the agents' handler signatures and declarations, and refuses at the
agent's line what would fail every run (issue 36, item 3); a type nobody takes is a warning,
an error under ``--strict``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from genie import BaseAgent, Context, Runtime, handler
from genie._cli.main import main
from genie.pipeline import load_pipeline

from ..conftest import Ping, Pong

Capture = pytest.CaptureFixture[str]

TYPES = """
from genie import BaseAgent, Context, Message, Payload, handler


class Question(Payload):
    message_type = "question"
    n: int = 1


class Answer(Payload):
    message_type = "answer"
    value: int


class Aside(Payload):
    message_type = "aside"
"""

AGENTS = {
    "good": """
class Agent_(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.reply(Answer(value=payload.n))
""",
    "sync": """
class Agent_(BaseAgent):
    produces = (Answer,)

    @handler
    def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.reply(Answer(value=payload.n))
""",
    "payload": """
class Agent_(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Answer:
        return Answer(value=payload.n)
""",
    "text": """
class Agent_(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> list[str] | None:
        return None
""",
    "no_produces": """
class Agent_(BaseAgent):
    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.reply(Answer(value=payload.n))
""",
    "unrouted": """
class Agent_(BaseAgent):
    produces = (Answer, Aside)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> list[Message]:
        return [ctx.reply(Answer(value=payload.n)), ctx.emit(Aside())]
""",
    # Replies with a type of its own, not the output: to the caller, so the run ends on it.
    "wrong_reply": """
class Agent_(BaseAgent):
    produces = (Answer, Aside)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.reply(Aside())
""",
    # One handler for two types: the question, and the aside it sends itself, which it takes.
    "union": """
class Agent_(BaseAgent):
    produces = (Answer, Aside)

    @handler
    async def on_either(self, payload: Question | Aside, ctx: Context) -> Message:
        if isinstance(payload, Question):
            return ctx.emit(Aside())
        return ctx.emit(Answer(value=2))
""",
}


def pipeline(tmp_path: Path, kind: str) -> Path:
    module = f"sig_{kind}"
    (tmp_path / f"{module}.py").write_text(TYPES + AGENTS[kind])
    path = tmp_path / f"{kind}.yaml"
    path.write_text(
        "# a one-agent pipeline\n"
        "agents:\n"
        "  - id: a\n"
        f"    use: {module}:Agent_\n"
        "entry: {type: question, to: a}\n"
        "output: answer\n" + ("routes: {aside: [a]}\n" if kind == "union" else "")
        # A route is checked against what its recipient handles: each member of a union.
    )
    return path


@pytest.mark.parametrize("kind", ["good", "sync", "union"])
def test_a_message_returning_handler_async_or_plain_validates(
    tmp_path: Path, capsys: Capture, kind: str
) -> None:
    path = pipeline(tmp_path, kind)
    assert main(["validate", str(path), "--strict"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"OK: {path}")
    assert out.err == ""
    result = anyio.run(load_pipeline(path).run)
    assert result.ok  # and it runs


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        (
            "payload",
            "handler Agent_.on_question returns Answer, a payload, where the runtime takes a "
            "Message: return ctx.reply(Answer(...)) or ctx.emit(...) and annotate -> Message",
        ),
        (
            "text",
            "handler Agent_.on_question returns list, where the runtime takes a Message, a list "
            "or tuple of them, or None",
        ),
        (
            "no_produces",
            "agent 'a' returns messages but its class Agent_ declares no produces, so output "
            "'answer' is never reached: list the payload types it returns (produces = (...,))",
        ),
    ],
)
def test_what_fails_every_run_is_refused_at_the_agents_line(
    tmp_path: Path, capsys: Capture, kind: str, problem: str
) -> None:
    path = pipeline(tmp_path, kind)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"{path}:4: agents.0.use: {problem}\ngenie validate: 1 problem\n"


# The entry's agent: its reply goes to the caller.
UNTAKEN = (
    "agent 'a' produces 'aside', which no agent takes and which is not the output: a reply of "
    "it to the caller ends the run without the output (status fallback); emitted, each one is "
    "dead-lettered (unrouted), unless a ctx.request awaits it"
)


def test_a_problem_or_warning_reaches_the_terminal_escaped(tmp_path: Path, capsys: Capture) -> None:
    # A pipeline file is often someone else's, and genie validate what one runs on it first:
    # its keys and its path went to the terminal as they were, an escape in them setting the
    # window's title or clearing the screen.
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(
        'agents: [{id: a, use: echo}]\nentry: {type: a, to: a}\noutput: a\n"\\e]0;pwned\\a": 1\n'
    )
    assert main(["validate", str(hostile)]) == 2
    err = capsys.readouterr().err
    assert f"{hostile}:4: \\x1b]0;pwned\\x07: unknown key\n" in err
    assert "\x1b" not in err
    folder = tmp_path / "\x1b[2J"
    folder.mkdir()
    path = pipeline(folder, "unrouted")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert err == f"warning: {tmp_path}/\\x1b[2J/unrouted.yaml:4: agents.0.use: {UNTAKEN}\n"


def test_a_type_nobody_takes_is_a_warning_and_strict_refuses_it(
    tmp_path: Path, capsys: Capture
) -> None:
    path = pipeline(tmp_path, "unrouted")
    warning = f"{path}:4: agents.0.use: {UNTAKEN}"
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr()
    assert out.err == f"warning: {warning}\n"
    assert out.out.startswith("OK: ")
    assert load_pipeline(path).warnings == (warning,)
    assert main(["validate", str(path), "--strict"]) == 2
    assert capsys.readouterr().err == f"{warning}\ngenie validate: 1 problem\n"
    # What the warning says is what a run does.
    result = anyio.run(load_pipeline(path).run)
    assert [(d.kind, d.message.type) for d in result.dead_letters] == [("unrouted", "aside")]


def test_a_payload_returned_at_run_time_says_to_wrap_it(tmp_path: Path) -> None:
    """What ``genie validate`` refuses, the runtime names the same way, for a handler whose
    annotation did not say (an agent built in Python, past the validator)."""

    class Unwrapped(BaseAgent):
        produces = (Pong,)

        @handler
        async def on_ping(self, payload: Ping, ctx: Context):  # type: ignore[no-untyped-def]
            return Pong(n=payload.n)

    async def run() -> str:
        async with Runtime([Unwrapped("u")]) as rt:
            await rt.publish(rt.message(Ping(), recipient="u"))
            await rt.wait_idle()
        [letter] = rt.dead_letters
        return letter.reason

    assert anyio.run(run) == (
        "InvalidOutputError: agent 'u' returned Pong; a payload, not a message: "
        "return ctx.reply(Pong(...)) or ctx.emit"
    )


GATHER = """
from genie import BaseAgent, Context, Message, Payload, handler
from genie.pipeline import Gathered


class Question(Payload):
    message_type = "question"


class Part(Payload):
    message_type = "part"
    v: int = 1


class Answer(Payload):
    message_type = "answer"
    parts: int


class Worker(BaseAgent):
    produces = (Part,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.emit(Part())
"""
REPORTER = """
{bundle}

class Reporter(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_bundle(self, payload: {annotation}, ctx: Context) -> Message:
        return ctx.emit(Answer(parts=len(payload.parts)))
"""
GATHER_YAML = """agents:
  - {id: w, use: MODULE:Worker}
  - {id: r, use: MODULE:Reporter}
gathers:
  - id: g
    expect: {types: [part]}
    deadline: 2s
    emit: {type: bundle, to: r}
entry: {type: question, to: w}
routes: {part: [g]}
output: answer
"""


def test_a_gathers_bundle_is_received_by_a_subclass_with_its_type(
    tmp_path: Path, capsys: Capture
) -> None:
    """Issue 36, item 6: annotating with ``Gathered`` itself names the fix at the handler's
    line (it used to be a bare 'annotate with a model that sets message_type' at genie's own
    line); the documented subclass validates and runs."""
    plain = GATHER + REPORTER.format(bundle="", annotation="Gathered")
    (tmp_path / "gather_plain.py").write_text(plain)
    path = tmp_path / "plain.yaml"
    path.write_text(GATHER_YAML.replace("MODULE", "gather_plain"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    lines = plain.splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "async def on_bundle(" in text)
    assert (
        "handler Reporter.on_bundle: 'payload' is annotated with Gathered, a base of payload "
        "models with no message_type of its own; annotate it with a subclass that sets one "
        '(class Bundle(Gathered): message_type = "bundle"), the type the sender emits (for a '
        f"declared gather, its emit.type) ({tmp_path / 'gather_plain.py'}:{line})"
    ) in err

    bundle = 'class Bundle(Gathered):\n    message_type = "bundle"\n'
    (tmp_path / "gather_sub.py").write_text(
        GATHER + REPORTER.format(bundle=bundle, annotation="Bundle")
    )
    path = tmp_path / "sub.yaml"
    path.write_text(GATHER_YAML.replace("MODULE", "gather_sub"))
    assert main(["validate", str(path), "--strict"]) == 0
    result = anyio.run(load_pipeline(path).run)
    assert result.status == "ok"
    assert result.output is not None
    assert result.output.payload.model_dump() == {"parts": 1}


def test_a_reply_of_another_type_than_the_output_is_warned_of_and_named(
    tmp_path: Path, capsys: Capture
) -> None:
    """The entry's agent replying a type that is not the output ends the run with status
    fallback, though no fallback ran: validate's warning says so, and the run names the agent
    and the type it replied (before, it said only "the run ended fallback")."""
    path = pipeline(tmp_path, "wrong_reply")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err == f"warning: {path}:4: agents.0.use: {UNTAKEN}\n"
    reason = "agent 'a' replied 'aside' where the output 'answer' was expected"
    assert main(["run", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"genie run: wrong_reply: the run ended fallback\n  answer: no_reply: {reason}\n"
    )
    result = anyio.run(load_pipeline(path).run)
    assert result.status == "fallback"
    assert [(m.key, m.kind, m.agent_id, m.reason) for m in result.missing] == [
        ("answer", "no_reply", "a", reason)
    ]
    assert result.dead_letters == ()
