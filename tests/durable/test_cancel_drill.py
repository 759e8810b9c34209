"""The crash drill for a cancelled workflow (issue 37): ``genie run --store`` times out while a
step stalls, so its request is cancelled and the workflow undoes the steps that completed, in
the cancellation's correlation. The process is killed with SIGKILL at every write of its
store, before the write and after it, then the same command runs again on the store, with the
step no longer stalling.

Killed before the workflow took the cancellation, the request resumes as it was and completes
(the new request is not sent). Killed after, the compensations resume at start, with nobody
waiting for them, and the new request runs beside them. Either way each effect is applied
once (its handler keys it by the delivery id), a cancelled request's stalled step never
applies its effect, the store ends empty, and the audit log written by both processes
verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from genie._cli.main import main

from .test_crash_drill import HARNESS, effects, stored
from .test_workflow_drill import AGENTS

PIPELINE = """
name: order
agents:
  - {id: a, use: drill_agents:Stepper}
  - {id: b, use: drill_agents:Stepper}
  - {id: slow, use: drill_agents:Stepper}
workflows:
  - id: order
    state: order
    steps:
      - {id: a, compensate: unreserve}
      - {id: b, after: [a], compensate: unreserve}
      - {id: slow, after: [b]}
    emit: {type: order_outcome}
entry: {type: order, to: order, payload: {n: 7}}
output: order_outcome
timeout: ${TIMEOUT:-20s}
"""


@pytest.fixture
def drill(tmp_path: Path) -> Path:
    (tmp_path / "drill_agents.py").write_text(AGENTS)
    (tmp_path / "order.yaml").write_text(PIPELINE)
    (tmp_path / "harness.py").write_text(HARNESS)
    return tmp_path


def run(folder: Path, mode: str, at: int, slow: bool) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DRILL_LEDGER": str(folder / "ledger.txt"),
        "PYTHONPATH": str(folder),
        "TIMEOUT": "500ms" if slow else "20s",
    }
    env.pop("DRILL_SLOW", None)
    if slow:
        env["DRILL_SLOW"] = "1"
    command = [sys.executable, str(folder / "harness.py"), mode, str(at), "run"]
    command += [str(folder / "order.yaml"), "--store", str(folder / "order.db")]
    command += ["--audit", str(folder / "audit.jsonl"), "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def by_request(folder: Path) -> dict[str, list[str]]:
    """The effects applied, by the request they were for: each its step (``a~undo`` for an
    undo), in the order they were applied."""
    found: dict[str, list[str]] = {}
    for key in effects(folder):
        message_id = key.rsplit(":", 1)[0]
        start, _, step = message_id.partition("~order~")
        found.setdefault(start, []).append(step)
    return found


def check(folder: Path, second: subprocess.CompletedProcess[str]) -> str:
    """What became of the cancelled request: ``resumed`` or ``compensated``."""
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["output"]["payload"]["status"] == "completed"
    stats = result["stats"]
    assert stats["delivered"] == stats["handled"] + stats["dead_lettered"] + stats["in_flight"]
    runs = by_request(folder)
    assert stored(folder, "order.db") == (0, 0)
    assert main(["audit", "verify", str(folder / "audit.jsonl")]) == 0
    if "resuming 1 unfinished request" in second.stderr:
        # Killed before the cancellation was taken: the request as it was, completed.
        (steps,) = runs.values()
        assert sorted(steps) == ["a", "b", "slow"]
        return "resumed"
    assert len(runs) == 2
    cancelled, new = sorted(runs.values(), key=lambda steps: "slow" in steps)
    assert sorted(new) == ["a", "b", "slow"]
    # The stalled step never applied its effect; each completed step undone once, b first.
    assert cancelled == ["a", "b", "b~undo", "a~undo"]
    return "compensated"


# The first run's writes (checked below): 1-6 the request and the steps up to the stalled one
# (as in the workflow drill), 7 the cancellation's notice, 8 the workflow's taking of it (the
# first undo and the run carried, the cancelled request's messages gone), 9-12 the undos.
NOTICE, TAKEN, WRITES = 7, 8, 12


def test_an_uninterrupted_cancelled_run_is_compensated(drill: Path) -> None:
    first = run(drill, "never", 0, slow=True)
    assert first.returncode == 1, first.stderr
    assert "the run ended timed_out" in first.stderr
    assert check(drill, run(drill, "never", 0, slow=False)) == "compensated"


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("at", range(NOTICE - 1, WRITES + 1))
def test_killed_while_a_cancelled_workflow_compensates(drill: Path, mode: str, at: int) -> None:
    killed = run(drill, mode, at, slow=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    taken = at > TAKEN or (at == TAKEN and mode == "after")
    assert check(drill, run(drill, "never", 0, slow=False)) == (
        "compensated" if taken else "resumed"
    )


def test_the_drill_reaches_every_write(drill: Path) -> None:
    assert run(drill, "after", WRITES + 1, slow=True).returncode == 1  # no more writes
