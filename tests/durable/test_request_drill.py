"""The request drill: a handler's ``ctx.request`` under ``genie run --store``, the process
killed with SIGKILL at every write of its store, before the write and after it, then run
again on the same store. The request is asked under an id derived from the asking delivery
and its place in it, so the asker run again asks under the same id: the answering agent's
effect, keyed by its delivery id, is applied once, and an answer kept before the kill is
given again without the answering agent running at all."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from .test_crash_drill import HARNESS, LEDGER_HELPER, effects, run, stored

AGENTS = (
    '''
"""An asker that asks a doubler; each applies its effect once per delivery id."""
'''
    + LEDGER_HELPER
    + """

class Go(Payload):
    message_type = "go"
    n: int


class Double(Payload):
    message_type = "double"
    n: int


class Result(Payload):
    message_type = "result"
    n: int


class Asker(BaseAgent):
    produces = (Double, Result)

    @handler
    async def on_go(self, payload: Go, ctx: Context) -> Message:
        answer = await ctx.request("doubler", Double(n=payload.n), timeout=20)
        assert isinstance(answer.payload, Double)
        apply_once(ctx, "asker")
        return ctx.emit(Result(n=answer.payload.n))


class Doubler(BaseAgent):
    produces = (Double,)

    @handler
    async def on_double(self, payload: Double, ctx: Context) -> Message:
        apply_once(ctx, "PAYMENT")
        return ctx.reply(Double(n=payload.n * 2))
"""
)

PIPELINE = """
name: drill
agents:
  - id: asker
    use: drill_agents:Asker
  - id: doubler
    use: drill_agents:Doubler
routes:
  go: [asker]
entry:
  type: go
  to: asker
  payload: {n: 21}
output: result
timeout: 20s
"""


@pytest.fixture
def drill(tmp_path: Path) -> Path:
    (tmp_path / "drill_agents.py").write_text(AGENTS)
    (tmp_path / "drill.yaml").write_text(PIPELINE)
    (tmp_path / "harness.py").write_text(HARNESS)
    return tmp_path


def payments(folder: Path) -> list[str]:
    lines = (folder / "ledger.txt").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("effect ") and "PAYMENT" in line]


WRITES = 3  # an uninterrupted run writes its store this often (checked below)


def test_an_uninterrupted_request_run_leaves_an_empty_store(drill: Path) -> None:
    done = run(drill, "never", 0)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"]["payload"] == {"n": 42}
    assert len(payments(drill)) == 1
    assert stored(drill) == (0, 0)


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("at", range(1, WRITES + 1))
def test_a_request_killed_at_any_write_runs_the_answering_agent_once(
    drill: Path, mode: str, at: int
) -> None:
    killed = run(drill, mode, at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = run(drill, "never", 0)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["output"]["payload"] == {"n": 42}
    keys = effects(drill)
    assert len(keys) == len(set(keys))  # no delivery's effect twice
    if "resuming 1 unfinished request" in again.stderr or (mode, at) == ("before", 1):
        # The one request, finished: the doubler's delivery ran once, or ran again under
        # the same delivery id (its effect applied once).
        assert len(payments(drill)) == 1, (drill / "ledger.txt").read_text()
        assert len(keys) == 2
    else:  # killed after its last write: the next run is a new request
        assert (mode, at) == ("after", WRITES)
        assert len(payments(drill)) == 2
    assert stored(drill) == (0, 0)
    db = sqlite3.connect(drill / "drill.db")
    try:  # the answers kept for a re-run of their askers went with their request
        assert db.execute("SELECT count(*) FROM replies").fetchone()[0] == 0
    finally:
        db.close()


def test_the_request_drill_reaches_every_write(drill: Path) -> None:
    killed = run(drill, "after", WRITES + 1)
    assert killed.returncode == 0, killed.stderr
    killed = run(drill, "after", WRITES)
    assert killed.returncode == -signal.SIGKILL
    again = run(drill, "never", 0)
    assert "resuming" not in again.stderr
