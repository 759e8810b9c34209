"""The crash drill (issue 37): ``genie run --store`` killed with SIGKILL at every write of its
store, before the write and after it, then run again on the same store. Each time the
request is resumed and completes, its output is the one an uninterrupted run prints, no
handler's effect is applied twice for a delivery id, the store ends empty, and the audit
log, written by both processes, verifies. Killed after its last write, a request has ended
(its output unprinted): the next run sends a new one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genie._cli.main import main

# The drills' agents apply each effect once per delivery id (their idempotency key) to a
# ledger file, and count every attempt.
LEDGER_HELPER = """
import os
from pathlib import Path

from genie import BaseAgent, Context, Message, Payload, handler

LEDGER = Path(os.environ["DRILL_LEDGER"])


def apply_once(ctx: Context, amount: object) -> None:
    key = f"{ctx.message.id}:{ctx.agent_id}"
    with LEDGER.open("a+") as ledger:
        ledger.seek(0)
        seen = {line.split()[1] for line in ledger if line.startswith("effect ")}
        ledger.write(f"attempt {key}\\n")
        if key not in seen:
            ledger.write(f"effect {key} {amount}\\n")
"""

AGENTS = (
    '''
"""A chain of four steps; each applies its effect once per delivery id (its idempotency
key) to a ledger file, and counts every attempt."""
'''
    + LEDGER_HELPER
    + """

class Step(Payload):
    message_type = "step"
    n: int
    total: int = 0


class Total(Payload):
    message_type = "total"
    total: int


class Stepper(BaseAgent):
    produces = (Step, Total)

    @handler
    async def on_step(self, payload: Step, ctx: Context) -> Message:
        apply_once(ctx, payload.n)
        total = payload.total + payload.n
        if payload.n == 4:
            return ctx.emit(Total(total=total))
        return ctx.emit(Step(n=payload.n + 1, total=total))
"""
)

PIPELINE = """
name: drill
agents:
  - id: stepper
    use: drill_agents:Stepper
routes:
  step: [stepper]
entry:
  type: step
  to: stepper
  payload: {n: 1}
output: total
timeout: 20s
"""

HARNESS = """
import os, signal, sys
from genie._runtime.durable.store import DeliveryStore
from genie._cli.main import main

mode, at = sys.argv[1], int(sys.argv[2])
write = DeliveryStore.write
count = 0

def killing(self, batch):
    global count
    count += 1
    if mode == "before" and count == at:
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, batch)
    if mode == "after" and count == at:
        os.kill(os.getpid(), signal.SIGKILL)

DeliveryStore.write = killing
sys.exit(main(sys.argv[3:]))
"""


def run(tmp_path: Path, mode: str, at: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DRILL_LEDGER": str(tmp_path / "ledger.txt"),
        "PYTHONPATH": str(tmp_path),
    }
    command = [
        sys.executable,
        str(tmp_path / "harness.py"),
        mode,
        str(at),
        "run",
        str(tmp_path / "drill.yaml"),
        "--store",
        str(tmp_path / "drill.db"),
        "--audit",
        str(tmp_path / "audit.jsonl"),
        "--json",
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def drill(tmp_path: Path) -> Path:
    (tmp_path / "drill_agents.py").write_text(AGENTS)
    (tmp_path / "drill.yaml").write_text(PIPELINE)
    (tmp_path / "harness.py").write_text(HARNESS)
    return tmp_path


def effects(folder: Path) -> list[str]:
    lines = (folder / "ledger.txt").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("effect ")]


def stored(folder: Path, name: str = "drill.db") -> tuple[int, int]:
    """The deliveries and requests the store ``folder/name`` still keeps."""
    db = sqlite3.connect(folder / name)
    try:
        counts = [
            db.execute(query).fetchone()[0]
            for query in (
                "SELECT count(*) FROM messages m, json_each(m.recipients)",
                "SELECT count(*) FROM requests",
            )
        ]
    finally:
        db.close()
    return counts[0], counts[1]


def test_an_uninterrupted_run_leaves_an_empty_store(drill: Path) -> None:
    done = run(drill, "never", 0)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"]["payload"] == {"total": 10}
    assert len(effects(drill)) == 4
    assert stored(drill) == (0, 0)


WRITES = 5  # an uninterrupted run writes its store this often (checked below)


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("at", range(1, WRITES + 1))
def test_a_run_killed_at_any_write_is_resumed_and_applies_each_effect_once(
    drill: Path, mode: str, at: int
) -> None:
    killed = run(drill, mode, at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = run(drill, "never", 0)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["output"]["payload"] == {"total": 10}
    stats = result["stats"]  # the accounting identity, across the restart
    assert stats["delivered"] == stats["handled"] + stats["dead_lettered"]
    assert (stats["in_flight"], stats["fallbacks"]) == (0, 0)
    keys = effects(drill)
    assert len(keys) == len(set(keys))  # no delivery's effect twice
    if "resuming 1 unfinished request" in again.stderr:
        assert len(keys) == 4  # the one request, finished
    elif mode == "before" and at == 1:
        assert len(keys) == 4  # killed before its request was kept: the next run is the first
    else:
        # Killed after its last write: the request had ended (its output unprinted), and the
        # next run is a new request with deliveries of its own.
        assert (mode, at) == ("after", WRITES)
        assert len(keys) == 8
    assert stored(drill) == (0, 0)
    assert main(["audit", "verify", str(drill / "audit.jsonl")]) == 0


def test_the_drill_reaches_every_write(drill: Path) -> None:
    """``WRITES`` is every write an uninterrupted run makes: killed after the last one, the
    next run finds nothing to resume."""
    killed = run(drill, "after", WRITES + 1)
    assert killed.returncode == 0, killed.stderr
    killed = run(drill, "after", WRITES)
    assert killed.returncode == -signal.SIGKILL
    again = run(drill, "never", 0)
    assert "resuming" not in again.stderr


GATHER_WRITES = 8  # an uninterrupted run of finance-gather writes its store this often


def run_shipped(folder: Path, mode: str, at: int) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(folder / "harness.py"), mode, str(at), "run"]
    command += ["finance-gather", "--store", str(folder / "finance.db")]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def report() -> str:
    """What an uninterrupted run of the shipped finance-gather pipeline prints."""
    done = subprocess.run(
        [sys.executable, "-m", "genie._cli", "run", "finance-gather"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("at", range(1, GATHER_WRITES + 1))
def test_the_shipped_fan_in_killed_at_any_write_resumes_to_the_same_report(
    drill: Path, report: str, mode: str, at: int
) -> None:
    """finance-gather's declared gather keeps the parts it collected in the store until it
    bundles them, so a kill at any write loses none of them: the resumed run prints the
    report an uninterrupted run prints."""
    killed = run_shipped(drill, mode, at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = run_shipped(drill, "never", 0)
    assert again.returncode == 0, again.stderr
    assert again.stdout == report
    assert stored(drill, "finance.db") == (0, 0)


def test_the_fan_in_drill_reaches_every_write(drill: Path) -> None:
    assert run_shipped(drill, "after", GATHER_WRITES + 1).returncode == 0
    assert run_shipped(drill, "after", GATHER_WRITES).returncode == -signal.SIGKILL


FLAKY = (
    '''
"""A step that always fails, counting each attempt in the ledger."""
'''
    + LEDGER_HELPER
    + """

class Go(Payload):
    message_type = "go"


class Gone(Payload):
    message_type = "gone"


class Flaky(BaseAgent):
    produces = (Gone,)

    @handler
    async def on_go(self, payload: Go, ctx: Context) -> Message:
        with LEDGER.open("a") as ledger:
            ledger.write(f"attempt {os.getpid()} {ctx.message.id}:{ctx.agent_id}\\n")
        raise RuntimeError("the bank is down")
"""
)

FLAKY_PIPELINE = """
name: flaky
agents:
  - id: flaky
    use: flaky_agents:Flaky
    retry: {attempts: 2, backoff: 1s}
routes:
  go: [flaky]
entry:
  type: go
  to: flaky
output: gone
timeout: 20s
"""


def test_a_run_killed_in_a_retrys_backoff_runs_the_delivery_again_from_its_first_attempt(
    tmp_path: Path,
) -> None:
    """SIGKILL while a failed attempt waits its backoff: the failure was never written (only
    a delivery's end is), so the next start runs the delivery again from its first attempt,
    as after any crash. Its dead letter counts the attempts of that start, once, with one
    audit row in the log both processes wrote; the attempt the kill cut off is not lost."""
    (tmp_path / "flaky_agents.py").write_text(FLAKY)
    (tmp_path / "flaky.yaml").write_text(FLAKY_PIPELINE)
    ledger = tmp_path / "ledger.txt"
    env = {**os.environ, "DRILL_LEDGER": str(ledger), "PYTHONPATH": str(tmp_path)}
    command = [
        sys.executable,
        "-m",
        "genie._cli",
        "run",
        str(tmp_path / "flaky.yaml"),
        "--store",
        str(tmp_path / "flaky.db"),
        "--audit",
        str(tmp_path / "audit.jsonl"),
        "--audit-unkeyed",
        "--json",
    ]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(200):  # its first attempt failed: it waits its backoff (1s)
            if ledger.exists() and ledger.read_text():
                break
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
    finally:
        first.communicate(timeout=30)
    [killed] = ledger.read_text().splitlines()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1, again.stderr
    assert "resuming 1 unfinished request" in again.stderr
    result = json.loads(again.stdout)
    [letter] = result["dead_letters"]
    assert (letter["agent"], letter["reason"]) == ("flaky", "RuntimeError: the bank is down")
    assert (result["stats"]["calls"], result["stats"]["retries"]) == (2, 1)
    attempts = ledger.read_text().splitlines()
    assert attempts[0] == killed
    assert len(attempts) == 1 + 2  # the one killed, then both of the policy's again
    assert len({line.split()[2] for line in attempts}) == 1  # one delivery, one id
    rows = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["action"] for r in rows] == ["dead_letter:failed"]
    assert main(["audit", "verify", str(tmp_path / "audit.jsonl")]) == 0
    assert stored(tmp_path, "flaky.db") == (0, 0)
