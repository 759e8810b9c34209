"""An audit sink that refuses a record stops the runtime, saying why (docs/governance.md): no
governed outcome goes on unrecorded, and the books stay whole while it stops."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from genie import AuditRecord, AuditWriteError, BaseAgent, Context, Message, Runtime, handler

from ..conftest import Ping, Pong

ROOT = Path(__file__).resolve().parents[2]


class Failing(BaseAgent):
    """Fails every ping after a moment (a dead letter, so an audit record)."""

    produces = (Pong,)

    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> Message:
        await anyio.sleep(0.01)
        if os.environ.get("DRILL_FULL"):
            # No file of the process may grow from now on, as on a full disk (Python ignores
            # SIGXFSZ, so a write past it fails with EFBIG).
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
        raise ValueError(f"ping {payload.n} failed")


class Refusing:
    """A sink that takes ``room`` records, then raises on every one."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[AuditRecord] = []
        self.refused = 0

    def record(self, record: AuditRecord) -> None:
        if len(self.records) >= self.room:
            self.refused += 1
            raise OSError(28, "No space left on device")
        self.records.append(record)


async def test_a_refused_record_stops_the_runtime_which_raises_why() -> None:
    """The sink refuses the first dead letter's record: the runtime stops at once, with the
    publisher's block cut short, closes whole (its report, every outcome a dead letter) and
    raises ``AuditWriteError`` naming the record and the sink's error; the records after the
    refused one are not offered to the sink."""
    sink = Refusing(room=0)
    rt = Runtime([Failing("failing")], audit=sink, drain_timeout=5)
    reached_the_end = False

    async def run() -> None:
        nonlocal reached_the_end
        async with rt:
            for n in range(3):
                await rt.publish(rt.message(Ping(n=n), recipient="failing"))
            await anyio.sleep(5)  # cut short by the stop
            reached_the_end = True

    with pytest.raises(AuditWriteError) as raised:
        await run()
    assert not reached_the_end
    assert str(raised.value) == (
        "the audit sink refused a dead_letter:failed record: OSError: [Errno 28] No space left "
        "on device; the runtime stopped, as nothing governed goes on unrecorded"
    )
    assert isinstance(raised.value.__cause__, OSError)
    assert rt.failure is raised.value
    assert rt.shutdown_report is not None
    assert sink.refused == 1  # nothing offered after the refusal
    reasons = sorted(letter.reason for letter in rt.dead_letters)
    assert len(reasons) == 3  # each ping is a dead letter still: kept, if not audited
    assert "ValueError: ping 0 failed" in reasons


async def test_a_sink_that_records_lets_the_runtime_run() -> None:
    sink = Refusing(room=100)
    async with Runtime([Failing("failing")], audit=sink) as rt:
        await rt.publish(rt.message(Ping(n=0), recipient="failing"))
        await anyio.sleep(0.1)
    assert rt.failure is None
    assert [r.action for r in sink.records] == ["dead_letter:failed"]


PIPELINE = """\
agents:
  - id: failing
    use: tests.runtime.test_audit_failure:Failing
entry:
  type: ping
  to: failing
  payload: {n: 1}
output: pong
timeout: 30s
"""


def test_genie_run_whose_audit_log_cannot_grow_says_so_in_a_line(tmp_path: Path) -> None:
    """``genie run --audit LOG`` on a disk that fills up as the handler fails: one line naming
    the log and the cause, no traceback, exit 1 (the run failed, not its command line); the
    rows written before verify."""
    pipeline = tmp_path / "failing.yaml"
    pipeline.write_text(PIPELINE)
    log = tmp_path / "audit.jsonl"
    command = [sys.executable, "-m", "genie._cli", "run", str(pipeline), "--audit", str(log)]
    command += ["--audit-unkeyed"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DRILL_FULL": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    said = done.stderr.splitlines()
    assert said[-1] == (
        f"genie run: cannot write the audit log {log}: File too large; the runtime stopped, as "
        "nothing governed goes on unrecorded"
    )
    assert len(said) == 2  # after the line saying the log is unkeyed
    verified = subprocess.run(
        [sys.executable, "-m", "genie._cli", "audit", "verify", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
