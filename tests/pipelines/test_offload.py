"""A pipeline's agents with plain ``def`` handlers, run in threads or (``offload: process``)
in the runtime's process pool, their classes in a module beside the pipeline file."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from genie.pipeline import load_pipeline

MODULE = """
import os
import threading

from genie import BaseAgent, Context, Message, Payload, handler


class Crunch(Payload):
    message_type = "crunch"
    n: int = 12


class Crunched(Payload):
    message_type = "crunched"
    square: int
    pid: int
    thread: int


class Cruncher(BaseAgent):
    produces = (Crunched,)

    @handler
    def on_crunch(self, payload: Crunch, ctx: Context) -> Message:
        return ctx.emit(
            Crunched(square=payload.n**2, pid=os.getpid(), thread=threading.get_ident())
        )
"""


@pytest.mark.parametrize("offload", ["thread", "process"])
def test_a_pipeline_runs_plain_def_handlers_where_its_agent_says(
    tmp_path: Path, offload: str
) -> None:
    (tmp_path / "crunch.py").write_text(MODULE)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "agents:\n"
        f"  - {{id: cruncher, use: 'crunch:Cruncher', offload: {offload}}}\n"
        "entry: {type: crunch, to: cruncher}\n"
        "output: crunched\n"
    )
    result = anyio.run(load_pipeline(pipeline).run)
    assert result.output is not None, result.status
    out = result.output.payload.model_dump()
    assert out["square"] == 144
    assert (out["pid"] != os.getpid()) is (offload == "process")
    assert out["thread"] != 0
