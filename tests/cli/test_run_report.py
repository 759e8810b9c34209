"""How ``genie run`` reports a run: what was lost although the output arrived, a run paused for
a person, the agents a deadline or a handler's exit cut short, and how to answer an approval,
each in a line that works as printed (docs/cli.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genie._cli.main import main

Capture = pytest.CaptureFixture[str]

AGENTS = """
import anyio

from genie import BaseAgent, Context, Message, Payload, handler


class Order(Payload):
    message_type = "order"
    item: str = "apple"


class Priced(Payload):
    message_type = "priced"
    item: str


class Receipt(Payload):
    message_type = "receipt"
    text: str


class Answer(Payload):
    message_type = "answer"
    words: int


class Pricer(BaseAgent):
    produces = (Priced,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        return ctx.emit(Priced(item=payload.item))


class MisspeltPricer(BaseAgent):
    produces = (Priced, Receipt)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> list[Message]:
        return [
            ctx.emit(Priced(item=payload.item), recipient="ledgr"),
            ctx.emit(Receipt(text=payload.item)),
        ]


class Printer(BaseAgent):
    produces = (Receipt,)

    @handler
    async def on_priced(self, payload: Priced, ctx: Context) -> Message:
        return ctx.emit(Receipt(text=payload.item))


class Ledger(BaseAgent):
    @handler
    async def on_priced(self, payload: Priced, ctx: Context) -> None:
        raise RuntimeError("ledger write failed")


class Counter(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        return ctx.emit(Answer(words="many"))  # type: ignore[arg-type]


class Slow(BaseAgent):
    produces = (Receipt,)

    @handler
    async def on_priced(self, payload: Priced, ctx: Context) -> Message:
        await anyio.sleep(30)
        return ctx.emit(Receipt(text=payload.item))


class Interrupter(BaseAgent):
    produces = (Receipt,)

    @handler
    async def on_order(self, payload: Order, ctx: Context) -> Message:
        raise KeyboardInterrupt
"""


def _pipeline(tmp_path: Path, body: str) -> str:
    """A pipeline file beside its agents module (named for the test, so that the modules of
    in-process runs do not meet in ``sys.modules``)."""
    module = f"report_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(AGENTS)
    path = tmp_path / "p.yaml"
    path.write_text(body.replace("MOD", module))
    return str(path)


def test_a_handlers_validation_error_is_one_line(tmp_path: Path, capsys: Capture) -> None:
    # Pydantic's report took four lines, the later ones unindented.
    pipeline = _pipeline(
        tmp_path,
        "agents: [{id: counter, use: 'MOD:Counter'}]\n"
        "entry: {type: order, to: counter}\noutput: answer\n",
    )
    assert main(["run", pipeline]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[1] == (
        "  counter: failed: ValidationError: invalid 'answer' message: field 'words': Input "
        "should be a valid integer, unable to parse string as an integer"
    )
    assert main(["run", pipeline, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert "\n" not in document["dead_letters"][0]["reason"]
