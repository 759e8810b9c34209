"""The crash drill for a workflow with an approval (issue 37): ``genie run --store`` killed with
SIGKILL at every write of its store, before the write and after it, first while the workflow
runs up to its approval step, then while the approved workflow finishes; then run again on
the same store until the request completes. Each time: the workflow completes, each step's
effect is applied once (its handler keys it by the delivery id), the store ends empty, and
the audit log, written by every process, verifies."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from genie._cli.approvals import pending_approvals
from genie._cli.main import main

from .test_crash_drill import HARNESS, LEDGER_HELPER, effects, stored

AGENTS = (
    '''
"""Steps that apply their effect once per delivery id to a ledger file; ``slow`` stalls
while DRILL_SLOW is set, until its request is cancelled (the cancellation drill)."""

import anyio
'''
    + LEDGER_HELPER
    + """

class Order(Payload):
    message_type = "order"
    n: int
    a: str = ""
    b: str = ""
    c: str = ""
    d: str = ""
    slow: str = ""


class Unreserve(Payload):
    message_type = "unreserve"
    n: int


class Stepper(BaseAgent):
    produces = (Order, Unreserve)

    @handler
    async def on_order(self, order: Order, ctx: Context) -> Message:
        if ctx.agent_id == "slow" and os.environ.get("DRILL_SLOW"):
            await anyio.sleep(60)
        if os.environ.get("DRILL_STEP_DELAY"):  # unset: no checkpoint, the writes as counted
            await anyio.sleep(float(os.environ["DRILL_STEP_DELAY"]))
        apply_once(ctx, ctx.agent_id)
        return ctx.reply(order.model_copy(update={ctx.agent_id: "done"}))

    @handler
    async def on_unreserve(self, undo: Unreserve, ctx: Context) -> Message:
        apply_once(ctx, "undo")
        return ctx.reply(undo)
"""
)

PIPELINE = """
name: order
agents:
  - {id: a, use: drill_agents:Stepper}
  - {id: b, use: drill_agents:Stepper}
  - {id: c, use: drill_agents:Stepper}
  - {id: d, use: drill_agents:Stepper}
workflows:
  - id: order
    state: order
    steps:
      - {id: a}
      - {id: b}
      - {id: c, after: [a, b], compensate: unreserve}
      - {id: ok, after: [c], approval: {subject: "order {n}", role: boss}}
      - {id: d, after: [ok]}
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


def run(
    folder: Path, mode: str, at: int, timeout: str = "20s", step_delay: float = 0
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DRILL_LEDGER": str(folder / "ledger.txt"),
        "DRILL_STEP_DELAY": str(step_delay or ""),
        "PYTHONPATH": str(folder),
        "TIMEOUT": timeout,
    }
    command = [sys.executable, str(folder / "harness.py"), mode, str(at), "run"]
    command += [str(folder / "order.yaml"), "--store", str(folder / "order.db")]
    command += ["--audit", str(folder / "audit.jsonl"), "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


PAUSE = "1s"  # a run that reaches the approval stops waiting after this


def pause(folder: Path) -> str:
    """Run (resuming what the store keeps) until the approval waits: its id."""
    paused = run(folder, "never", 0, PAUSE)
    assert paused.returncode == 1, paused.stderr
    assert "paused: approval" in paused.stderr
    [approval] = pending_approvals(str(folder / "order.db"))
    return str(approval["id"])


def approve(folder: Path, approval_id: str) -> None:
    argv = ["approvals", "approve", approval_id, "--store", str(folder / "order.db")]
    assert main([*argv, "--as", "bo", "--role", "boss", "--wait", "0"]) == 0


def finish(folder: Path) -> dict[str, object]:
    done = run(folder, "never", 0)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    balanced(result["stats"])
    outcome: dict[str, object] = result["output"]["payload"]
    return outcome


def balanced(stats: dict[str, int]) -> None:
    """The accounting identity of a run resumed after a kill: every delivery it counted (the
    kept ones it ran again among them) ended here; none is a fallback's."""
    assert stats["delivered"] == stats["handled"] + stats["dead_lettered"] + stats["in_flight"]
    assert stats["in_flight"] == 0
    assert stats["fallbacks"] == 0


ORDER_DONE = {"n": 7, "a": "done", "b": "done", "c": "done", "d": "done", "slow": ""}


def check(folder: Path, outcome: dict[str, object]) -> None:
    assert outcome["status"] == "completed"
    assert outcome["state"] == ORDER_DONE
    keys = effects(folder)
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["a", "b", "c", "d"]  # each once
    assert stored(folder, "order.db") == (0, 0)
    assert main(["audit", "verify", str(folder / "audit.jsonl")]) == 0


def test_an_uninterrupted_workflow_pauses_and_completes(drill: Path) -> None:
    approve(drill, pause(drill))
    check(drill, finish(drill))


TO_APPROVAL = 7  # writes of a run from the request to its pending approval (checked below)
# Writes of the run that takes the answer and finishes (rebuilding the run sends no step
# again: their replies are kept).
AFTER_APPROVAL = 5


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("at", range(1, TO_APPROVAL + 1))
def test_killed_on_its_way_to_the_approval(drill: Path, mode: str, at: int) -> None:
    killed = run(drill, mode, at, PAUSE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    approve(drill, pause(drill))
    check(drill, finish(drill))


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("at", range(1, AFTER_APPROVAL + 1))
def test_killed_while_the_approved_workflow_finishes(drill: Path, mode: str, at: int) -> None:
    approve(drill, pause(drill))
    killed = run(drill, mode, at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if (mode, at) == ("after", AFTER_APPROVAL):
        # Killed after its last write: the request had ended, its outcome unprinted (the
        # next run would be a new request).
        check(drill, {"status": "completed", "state": ORDER_DONE})
        return
    check(drill, finish(drill))


def test_the_drill_reaches_every_write(drill: Path) -> None:
    assert run(drill, "after", TO_APPROVAL + 1, PAUSE).returncode == 1  # paused: no more writes
    approve(drill, pause(drill))
    assert run(drill, "after", AFTER_APPROVAL + 1).returncode == 0


def b_replaced(pipeline: str) -> str:
    """``pipeline`` edited: step ``b`` is now ``e``, run by a new agent ``e``."""
    edited = pipeline.replace("{id: b}", "{id: e}").replace("[a, b]", "[a, e]")
    return edited.replace(
        "  - {id: d, use", "  - {id: e, use: drill_agents:Stepper}\n  - {id: d, use"
    )


def test_killed_before_it_took_its_definition_is_refused_under_an_edited_workflow(
    drill: Path,
) -> None:
    """Killed right after the write of the request's handling: the workflow's definition is
    kept, sent with the first steps, and not yet taken. The file is edited (step ``b`` is now
    ``e``) before the next run: the definition, taken for the first time by the resume, is
    still compared, and the run is refused, not gone on with under the edited workflow."""
    killed = run(drill, "after", 2, PAUSE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with sqlite3.connect(drill / "order.db") as db:
        kept = db.execute(
            "SELECT id, recipients FROM messages WHERE body LIKE '%genie.workflow_definition%'"
        ).fetchall()
        taken = db.execute("SELECT message_id FROM taken WHERE agent_id = 'order'").fetchall()
    db.close()
    [(definition, recipients)] = kept  # kept with the first steps ...
    assert "order" in recipients
    assert (definition,) not in taken  # ... and not taken: the stop this test is about
    (drill / "order.yaml").write_text(b_replaced(PIPELINE))
    resumed = run(drill, "never", 0)
    assert resumed.returncode == 1, resumed.stderr
    outcome = json.loads(resumed.stdout)["output"]["payload"]
    assert (outcome["status"], outcome["failed_step"]) == ("failed", None)
    assert outcome["reason"] == (
        "workflow order changed while the request was kept (step 'b' removed, step 'e' added, "
        "step 'c' after [a, e], not [a, b]): the run is not resumed under it"
    )
    # a and b, whose deliveries the kill cut short, run again and end; then nothing more:
    # not e, and not c, which the run as started would do next.
    assert sorted(k.rsplit(":", 1)[1] for k in effects(drill)) == ["a", "b"]
    assert outcome["compensated"] == []
    assert stored(drill, "order.db") == (0, 0)
    assert main(["audit", "verify", str(drill / "audit.jsonl")]) == 0


# The approval ``ok`` renamed: a run paused at it is refused by the resume under this file.
RENAMED = PIPELINE.replace("{id: ok,", "{id: sign_off,").replace("[ok]", "[sign_off]")
REFUSAL = 4  # writes of the run that refuses a paused run and undoes c (checked below)


def refused(folder: Path) -> None:
    """The run paused at ``ok`` in ``folder``, refused under ``RENAMED`` (maybe by several
    runs, killed): failed naming the change, c undone once, the approval withdrawn."""
    done = run(folder, "never", 0)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    balanced(result["stats"])
    outcome = result["output"]["payload"]
    assert (outcome["status"], outcome["failed_step"]) == ("failed", None)
    assert outcome["reason"].startswith("workflow order changed while the request was kept")
    assert outcome["compensated"] == ["c"]
    assert [e["step"] for e in outcome["events"] if e["kind"] == "withdrawn"] == ["ok"]
    undone = [k for k in effects(folder) if k.endswith("~undo:c")]
    assert (len(effects(folder)), len(undone)) == (4, 1)
    assert pending_approvals(str(folder / "order.db")) == []
    assert stored(folder, "order.db") == (0, 0)
    assert main(["audit", "verify", str(folder / "audit.jsonl")]) == 0


@pytest.mark.parametrize("mode", ["before", "after"])
@pytest.mark.parametrize("at", range(1, REFUSAL + 1))
def test_killed_while_a_run_under_an_edited_workflow_is_refused(
    drill: Path, mode: str, at: int
) -> None:
    """Paused at ``ok``, the file edited (``ok`` renamed), then killed at each write of the
    run that refuses it (the refusal's tick set and not fired, fired and not written, the
    undo sent, replied): the next run ends it once, c undone once. Where the tick was kept,
    not taken, the resume takes it first, and withdraws the tick it set itself: the run
    reports nothing in flight."""
    pause(drill)
    (drill / "order.yaml").write_text(RENAMED)
    killed = run(drill, mode, at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if (mode, at) == ("after", REFUSAL):  # the request had ended, its outcome unprinted
        undone = [k for k in effects(drill) if k.endswith("~undo:c")]
        assert (len(effects(drill)), len(undone)) == (4, 1)
        assert stored(drill, "order.db") == (0, 0)
        return
    refused(drill)


def test_the_refusal_drill_reaches_every_write(drill: Path) -> None:
    pause(drill)
    (drill / "order.yaml").write_text(RENAMED)
    assert run(drill, "after", REFUSAL + 1).returncode == 1  # refused: no more writes


def test_refused_before_it_took_its_definition_and_killed_again_stays_refused(
    drill: Path,
) -> None:
    """As above, and the run that refuses it killed after its first write: the definition
    taken (the run refused at once), the first steps' replies kept and not taken. The run
    after rebuilds the definition and takes those replies for the first time: it must stay
    refused, with no step after the first ones and no approval asked. The refusal taken at
    once left nothing a rebuild takes again; the rebuild tells it at a tick, and a message
    taken for the first time before that tick is refused as the tick would."""
    killed = run(drill, "after", 2, PAUSE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (drill / "order.yaml").write_text(b_replaced(PIPELINE))
    again = run(drill, "after", 1, PAUSE)
    assert again.returncode == -signal.SIGKILL, again.stderr
    with sqlite3.connect(drill / "order.db") as db:
        [(definition,)] = db.execute(
            "SELECT id FROM messages WHERE body LIKE '%genie.workflow_definition%'"
        ).fetchall()
        taken = {m for (m,) in db.execute("SELECT message_id FROM taken WHERE agent_id = 'order'")}
        replies = db.execute(
            "SELECT id FROM messages WHERE recipients LIKE '%order%' AND body LIKE '%~order~%'"
        ).fetchall()
    db.close()
    assert definition in taken  # the refusal was taken at once ...
    assert replies  # ... and no reply after it
    assert not taken & {m for (m,) in replies}
    resumed = run(drill, "never", 0, PAUSE)
    assert "paused" not in resumed.stderr
    outcome = json.loads(resumed.stdout)["output"]["payload"]
    assert (outcome["status"], outcome["compensated"]) == ("failed", [])
    assert sorted(k.rsplit(":", 1)[1] for k in effects(drill)) == ["a", "b"]


UNDOING = PIPELINE.replace("      - {id: a}", "      - {id: a, compensate: unreserve}")
C_SENT = 4  # writes of a run under ``UNDOING`` until c is sent (kept, not run yet)


def refused_at_once_and_killed_with_a_undone(drill: Path) -> None:
    """Killed after the request's handling; the file edited; the resume refuses the run at
    once, takes both first replies, sends a's undo, and is killed."""
    (drill / "order.yaml").write_text(UNDOING)
    killed = run(drill, "after", 2, PAUSE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (drill / "order.yaml").write_text(b_replaced(UNDOING))
    again = run(drill, "after", 2, PAUSE)
    assert again.returncode == -signal.SIGKILL, again.stderr


def test_refused_at_once_then_undone_and_killed_again_ends_undone(drill: Path) -> None:
    """As above, with step a declaring an undo: the run that refuses it at once takes both
    first replies, then sends a's undo, and is killed. The next resume rebuilds those replies
    before it takes the refusal's record (``RunRefused``, kept with the run, maybe after
    them), so it first takes c for started; the record takes c back, never sent, and the
    run ends on the undo's reply, not at its deadline."""
    refused_at_once_and_killed_with_a_undone(drill)
    resumed = run(drill, "never", 0, "3s")
    assert resumed.returncode == 1, resumed.stderr
    outcome = json.loads(resumed.stdout)["output"]["payload"]
    assert (outcome["status"], outcome["compensated"]) == ("failed", ["a"])
    assert outcome["reason"].startswith("workflow order changed while the request was kept")
    assert [e["step"] for e in outcome["events"] if e["kind"] == "started"] == ["a", "b"]
    done(drill, ["a", "b", "undo:a"])


def done(folder: Path, steps: list[str]) -> None:
    """The run in ``folder`` ended: each of ``steps`` applied once (``undo:a``: a's undo),
    nothing kept, the audit log whole, each step's start audited once, by whichever process
    started it."""
    applied = []
    for key in effects(folder):  # <request id>~order~<step>[~undo]:<agent>
        sent, agent = key.split("~order~", 1)[1].split(":")
        applied.append(f"undo:{agent}" if sent.endswith("~undo") else agent)
    assert sorted(applied) == sorted(steps)
    assert stored(folder, "order.db") == (0, 0)
    assert main(["audit", "verify", str(folder / "audit.jsonl")]) == 0
    audit = [json.loads(line) for line in (folder / "audit.jsonl").read_text().splitlines()]
    started = [r["details"]["step"] for r in audit if r["action"] == "workflow_started"]
    assert sorted(started) == sorted(s for s in steps if not s.startswith("undo:"))


@pytest.mark.parametrize("at", [C_SENT, C_SENT + 1])
def test_a_run_that_went_on_before_its_file_was_edited_waits_for_its_next_step(
    drill: Path, at: int
) -> None:
    """The run under the file it started with takes both first replies and sends c (killed
    then, c not run yet; or after c replied, its reply not taken). The file is edited: the
    resume, rebuilding those replies, takes c for sent, as it was (no refusal was kept with
    the run), waits for its reply, and undoes it before a."""
    (drill / "order.yaml").write_text(UNDOING)
    killed = run(drill, "after", at, PAUSE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    caused_by = "SELECT id FROM messages WHERE json_extract(body, '$.causation_id') LIKE ?"
    with sqlite3.connect(drill / "order.db") as db:
        taken = {m for (m,) in db.execute("SELECT message_id FROM taken WHERE agent_id = 'order'")}
        first = [m for s in "ab" for (m,) in db.execute(caused_by, (f"%~order~{s}",))]
        after_c = db.execute(caused_by, ("%~order~c",)).fetchall()
        c_kept = db.execute("SELECT id FROM messages WHERE id LIKE '%~order~c'").fetchall()
    db.close()
    assert len(first) == 2
    assert set(first) <= taken  # both first replies taken: c was sent ...
    assert (len(c_kept), len(after_c)) == ((1, 0) if at == C_SENT else (0, 1))  # ... and kept
    (drill / "order.yaml").write_text(b_replaced(UNDOING))
    resumed = run(drill, "never", 0)
    assert resumed.returncode == 1, resumed.stderr
    result = json.loads(resumed.stdout)
    balanced(result["stats"])
    outcome = result["output"]["payload"]
    assert (outcome["status"], outcome["compensated"]) == ("failed", ["c", "a"])
    done(drill, ["a", "b", "c", "undo:c", "undo:a"])


def test_a_refusal_kept_and_not_taken_is_taken_as_rebuilt(drill: Path) -> None:
    """The run refused at once is killed once the refusal's record is kept, before it takes
    the record (its steps are slow: no reply comes first). The resume rebuilds the run and
    then takes the record: the refusal was audited where it was made, and is not again."""
    killed = run(drill, "after", 2, PAUSE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (drill / "order.yaml").write_text(b_replaced(PIPELINE))
    again = run(drill, "after", 1, PAUSE, step_delay=1.5)
    assert again.returncode == -signal.SIGKILL, again.stderr
    with sqlite3.connect(drill / "order.db") as db:
        [(record,)] = db.execute(
            "SELECT id FROM messages WHERE body LIKE '%genie.workflow_refused%'"
        ).fetchall()
        taken = {m for (m,) in db.execute("SELECT message_id FROM taken WHERE agent_id = 'order'")}
    db.close()
    assert record not in taken
    resumed = run(drill, "never", 0, "4s", step_delay=1.5)
    assert resumed.returncode == 1, resumed.stderr
    outcome = json.loads(resumed.stdout)["output"]["payload"]
    assert (outcome["status"], outcome["compensated"]) == ("failed", [])
    audit = [json.loads(line) for line in (drill / "audit.jsonl").read_text().splitlines()]
    assert [r["action"] for r in audit].count("workflow_failed") == 1
    done(drill, ["a", "b"])


def test_refused_at_once_stays_refused_under_the_file_it_started_with(drill: Path) -> None:
    """Refused at once under the edited file, killed once a's undo is sent; the edit is then
    taken back. The resume finds the run's definition unchanged, and goes on with it until
    it takes the refusal kept with the run: the run was refused, and ends so, a undone once,
    c never sent."""
    refused_at_once_and_killed_with_a_undone(drill)
    (drill / "order.yaml").write_text(UNDOING)
    resumed = run(drill, "never", 0, "3s")
    assert resumed.returncode == 1, resumed.stderr
    outcome = json.loads(resumed.stdout)["output"]["payload"]
    assert (outcome["status"], outcome["compensated"]) == ("failed", ["a"])
    assert outcome["reason"].startswith("workflow order changed while the request was kept")
    done(drill, ["a", "b", "undo:a"])
