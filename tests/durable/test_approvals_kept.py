"""Approvals with a store (issue 37): a request paused for a person survives its process; an
answer left from another terminal (``genie approvals``) is taken by the runtime that holds the
request, now or when it is resumed; a deadline counts from the asking, across a restart."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from genie import (
    ApprovalRefusedError,
    ApprovalRequest,
    BaseAgent,
    Context,
    GatherResult,
    MemoryAuditLog,
    Message,
    Runtime,
    handler,
)
from genie._base.clock import Clock
from genie._base.shipped import shipped_pipelines
from genie._cli.main import main
from genie._runtime.approvals import GRACE
from genie._runtime.durable.store import StoreClient

from ..runtime.test_approvals import Paid, Pay, Payer, no_answers_from
from .test_store import kept


async def pause(path: Path, pay: Pay) -> str:
    """Ask ``pay`` on a runtime with the store at ``path``, stop waiting while its approval
    is pending, and close: the request stays paused in the store. Its approval's id."""
    async with Runtime([Payer("payer")], store=path, drain_timeout=0.01) as rt:
        result = await rt.ask(rt.message(pay, recipient="payer"), until="paid", timeout=0.2)
        assert result.status == "timed_out"
        [approval] = rt.approvals.pending()
    deliveries, requests = kept(path)
    assert deliveries == [f"{approval.id}:approvals"]  # the approval, kept until decided
    assert len(requests) == 1
    return approval.id


async def resume_one(rt: Runtime) -> Paid:
    [request] = rt.unfinished()
    result = await rt.resume(request, until="paid", timeout=10)
    [reply] = result.replies
    assert isinstance(reply.payload, Paid)
    return reply.payload


async def test_a_caller_cancelled_leaves_a_paused_request_paused(tmp_path: Path) -> None:
    """A caller that stops waiting by a cancellation (a client that went away from genie
    serve, a cancel scope around ``ask``) leaves the paused request as its timeout does:
    the approval is still pending, kept, and answered later the request completes."""
    path = tmp_path / "store.db"
    async with Runtime([Payer("payer")], store=path, drain_timeout=0.01) as rt:
        with anyio.move_on_after(0.2):
            await rt.ask(rt.message(Pay(amount=700), recipient="payer"), until="paid")
        [approval] = rt.approvals.pending()
    assert kept(path)[0] == [f"{approval.id}:approvals"]
    async with Runtime([Payer("payer")], store=path) as rt, anyio.create_task_group() as tg:
        paid: list[Paid] = []

        async def resumed() -> None:
            paid.append(await resume_one(rt))

        tg.start_soon(resumed)
        await anyio.wait_all_tasks_blocked()
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
    assert paid == [Paid(approved=True, by="alice")]
    assert kept(path) == ([], [])


async def test_a_paused_request_is_approved_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    approval_id = await pause(path, Pay(amount=700))
    audit = MemoryAuditLog()
    paid: list[Paid] = []

    async def resumed(rt: Runtime) -> None:
        paid.append(await resume_one(rt))

    async with (
        Runtime([Payer("payer")], store=path, audit=audit) as rt,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(resumed, rt)
        await anyio.wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        assert approval.id == approval_id  # the same approval, not a new one
        rt.approvals.approve(approval_id, by="alice", roles=("treasurer",))
    assert paid == [Paid(approved=True, by="alice")]
    assert kept(path) == ([], [])
    assert [r.action for r in audit.records] == ["approval_resumed", "approved"]


async def test_a_resumed_approval_is_audited_as_resumed_not_asked_again(
    tmp_path: Path,
) -> None:
    """One audit trail across the stop and the resume (as ``genie run --audit`` writes one
    file): the approval is asked once; the start that takes it up again records that as
    ``approval_resumed`` (actor: the desk), with the approval's id, agent and subject."""
    path = tmp_path / "store.db"
    audit = MemoryAuditLog()
    async with Runtime([Payer("payer")], store=path, audit=audit, drain_timeout=0.01) as rt:
        result = await rt.ask(rt.message(Pay(amount=700), recipient="payer"), timeout=0.2)
        assert result.status == "timed_out"
        [approval] = rt.approvals.pending()
    async with (
        Runtime([Payer("payer")], store=path, audit=audit) as rt,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(resume_one, rt)
        await anyio.wait_all_tasks_blocked()
        rt.approvals.approve(approval.id, by="alice", roles=("treasurer",))
    trail = [(r.actor, r.action, r.target) for r in audit.records if r.target == approval.id]
    assert trail == [
        ("payer", "approval_requested", approval.id),
        ("approvals", "approval_resumed", approval.id),
        ("alice", "approved", approval.id),
    ]
    [resumed] = [r.details for r in audit.records if r.action == "approval_resumed"]
    assert (resumed["agent"], resumed["subject"]) == ("payer", "pay Rs 700")
    assert resumed["correlation_id"] == approval.correlation_id
    db = sqlite3.connect(path)
    assert db.execute("SELECT * FROM asked").fetchall() == []  # forgotten with its decision
    db.close()


async def test_an_approval_kept_before_the_desk_took_it_is_asked_at_the_resume(
    tmp_path: Path,
) -> None:
    """A request kept on its way to the desk (a stop or a kill before the desk took it)
    was never asked: the start that delivers it records ``approval_requested``."""
    path = tmp_path / "store.db"
    approval_id = await pause(path, Pay(amount=700))
    db = sqlite3.connect(path)
    db.execute("DELETE FROM asked")  # as a stop before the desk took it leaves the store
    db.commit()
    db.close()
    audit = MemoryAuditLog()
    async with (
        Runtime([Payer("payer")], store=path, audit=audit) as rt,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(resume_one, rt)
        await anyio.wait_all_tasks_blocked()
        rt.approvals.approve(approval_id, by="alice", roles=("treasurer",))
    assert [r.action for r in audit.records] == ["approval_requested", "approved"]


async def test_a_stop_with_an_approval_pending_keeps_its_deadline_no_dead_letter(
    tmp_path: Path,
) -> None:
    """The approval's deadline is a timer the store keeps (the next start sets it again from
    the kept approval): a stop loses nothing, so it is no dead letter and no audit row; the
    shutdown report counts it kept, and the accounting identity holds with it in flight."""
    path = tmp_path / "store.db"
    audit = MemoryAuditLog()
    rt = Runtime([Payer("payer")], store=path, audit=audit, drain_timeout=0.01)
    async with rt:
        pay = Pay(amount=700, deadline=3600)
        result = await rt.ask(rt.message(pay, recipient="payer"), timeout=0.2)
        assert result.status == "timed_out"
    assert list(rt.dead_letters) == []
    assert [r.action for r in audit.records] == ["approval_requested"]
    report = rt.shutdown_report
    assert report is not None
    assert (report.drained, report.cancelled_timers, report.kept_timers) == (True, 0, 1)
    stats = rt.statistics()
    assert stats.delivered == (
        stats.handled + stats.denied + stats.dead_lettered + stats.shed + stats.in_flight
    )
    assert (stats.in_flight, stats.timers_pending) == (1, 1)


async def test_an_answer_left_in_the_store_is_taken_when_the_request_resumes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    approval_id = await pause(path, Pay(amount=700))
    client = StoreClient(path)
    refused = client.answer(approval_id, True, "eve", ("clerk",), "")
    taken = client.answer(approval_id, False, "alice", ("treasurer",), "over limit")
    async with Runtime([Payer("payer")], store=path) as rt:
        paid = await resume_one(rt)
    assert paid == Paid(approved=False, by="alice", reason="over limit")
    assert client.outcome(taken) == "rejected"
    why = "it needs the role 'treasurer', which eve does not hold"
    assert client.outcome(refused) == f"refused: eve may not answer approval {approval_id}: {why}"
    client.close()
    assert kept(path) == ([], [])


async def test_an_answer_written_by_hand_is_refused_and_stops_no_other(tmp_path: Path) -> None:
    """Rows of the answers table that ``genie approvals`` did not write (an ``approved`` of
    'no', text that is not UTF-8) are marked ``refused: not an answer`` and never taken; the
    answer left after them is taken as usual."""
    path = tmp_path / "store.db"
    approval_id = await pause(path, Pay(amount=700))
    db = sqlite3.connect(path)
    junk: list[int] = []
    for approved, reason in (("'no'", "''"), ("1", "X'ff'")):
        row = db.execute(
            "INSERT INTO answers (approval_id, approved, answerer, roles, reason) "
            f"VALUES (?, {approved}, 'mallory', 'treasurer', {reason})",
            (approval_id,),
        ).lastrowid
        assert row is not None
        junk.append(row)
    db.commit()
    db.close()
    client = StoreClient(path)
    taken = client.answer(approval_id, False, "alice", ("treasurer",), "over limit")
    async with Runtime([Payer("payer")], store=path) as rt:
        paid = await resume_one(rt)
    assert paid == Paid(approved=False, by="alice", reason="over limit")
    assert [client.outcome(row) for row in junk] == ["refused: not an answer"] * 2
    assert client.outcome(taken) == "rejected"
    client.close()


async def test_each_answer_left_is_told_what_became_of_it(tmp_path: Path) -> None:
    """Answers left at once: one a policy keeps out, two people deciding. Each row says what
    became of it once the desk has decided, and only the answer that decided says so."""
    path = tmp_path / "store.db"
    approval_id = await pause(path, Pay(amount=700))
    client = StoreClient(path)
    denied = client.answer(approval_id, True, "mallory", ("treasurer",), "")
    first = client.answer(approval_id, False, "alice", ("treasurer",), "over limit")
    second = client.answer(approval_id, True, "bob", ("treasurer",), "")
    policies = [no_answers_from("mallory")]
    async with Runtime([Payer("payer")], store=path, policies=policies) as rt:
        paid = await resume_one(rt)
    assert paid == Paid(approved=False, by="alice", reason="over limit")
    assert client.outcome(denied) == (
        "refused: denied by four-eyes: mallory raised the payment (the answer of mallory is "
        f"not given: approval {approval_id} is still pending)"
    )
    assert client.outcome(first) == "rejected"
    assert client.outcome(second) == "decided already: rejected by alice: over limit"
    client.close()
    assert kept(path) == ([], [])


async def test_an_answer_for_an_approval_decided_since_is_refused(tmp_path: Path) -> None:
    """An answer left for an approval decided in the meantime is refused, not left waiting,
    and audited as too late; its outcome says how it was decided. One left for an id never
    asked is refused as unknown, and audited too."""
    path = tmp_path / "store.db"
    decided = await pause(path, Pay(amount=700))
    client = StoreClient(path)
    audit = MemoryAuditLog()
    async with Runtime([Payer("payer")], store=path, audit=audit) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(resume_one, rt)
            await anyio.wait_all_tasks_blocked()
            rt.approvals.approve(decided, by="alice", roles=("treasurer",))
        # Another request waits for a person, so the runtime looks at the answers left.
        waiting = await rt.ask(
            rt.message(Pay(amount=800), recipient="payer"), until="paid", timeout=0.2
        )
        assert waiting.status == "timed_out"
        late = client.answer(decided, True, "bob", ("treasurer",), "")
        unknown = client.answer("nope", False, "mallory", (), "")
        with anyio.fail_after(5):
            while client.outcome(unknown) is None:  # noqa: ASYNC110 (another process's view)
                await anyio.sleep(0.05)
    assert client.outcome(late) == (
        f"refused: no pending approval {decided!r} (decided already: approved by alice)"
    )
    assert client.outcome(unknown) == (
        "refused: no pending approval 'nope' (unknown: never asked here, or forgotten)"
    )
    client.close()
    refused = [
        (r.actor, r.target, r.details["answer"], r.details["reason"], r.details["subject"])
        for r in audit.records
        if r.action == "approval_refused"
    ]
    assert refused == [
        ("bob", decided, "approve", "too late: it was decided already", "pay Rs 700"),
        ("mallory", "nope", "reject", "unknown: never asked here, or forgotten", ""),
    ]


async def test_a_deadline_counts_from_the_asking_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await pause(path, Pay(amount=5, deadline=1.0))
    await anyio.sleep(1.1)  # passed while no process held it
    async with Runtime([Payer("payer")], store=path) as rt:
        with anyio.fail_after(0.8):  # at once, not another second
            paid = await resume_one(rt)
    assert paid == Paid(approved=False, by="deadline", reason="nobody answered in time")


@pytest.mark.parametrize("escalate", [False, True])
async def test_an_answer_given_after_a_deadline_passed_before_the_restart_is_refused(
    tmp_path: Path, escalate: bool
) -> None:
    """The grace a restart gives an approval past its deadline is for answers left in the
    store in time: one given now is late, refused and audited so, and the deadline decides
    (it rejects, or escalates for what is left of the second deadline, whose role may then
    answer). So is one left in the store after the deadline of the round it answers, the
    first role's after the first deadline though a second follows. The approval says its
    deadline as it is, passed, not the grace's end."""
    path = tmp_path / "store.db"
    # Escalated, the second deadline ends two after the asking: room for the cfo's answer.
    deadline = 2.0 if escalate else 1.0
    approval_id = await pause(
        path, Pay(amount=5, deadline=deadline, escalate_to="cfo" if escalate else None)
    )
    await anyio.sleep(deadline + 0.1)  # the first deadline passed while no process held it
    client = StoreClient(path)
    left = client.answer(approval_id, True, "bob", ("treasurer",), "left late")
    audit = MemoryAuditLog()
    async with (
        Runtime([Payer("payer")], store=path, audit=audit) as rt,
        anyio.create_task_group() as tg,
    ):
        [request] = rt.unfinished()
        results: list[GatherResult] = []

        async def resume() -> None:
            results.append(await rt.resume(request, until="paid", timeout=10))

        tg.start_soon(resume)
        await anyio.wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        assert approval.deadline_at is not None
        assert approval.deadline_at <= rt.clock.monotonic()
        with pytest.raises(
            ApprovalRefusedError, match=f"came after approval {approval_id}'s deadline"
        ):
            rt.approvals.approve(approval_id, by="alice", roles=("treasurer",))
        if escalate:
            await anyio.sleep(GRACE + 0.1)  # the grace ends: escalated, about 1.2 s left
            [escalated] = rt.approvals.pending()
            assert escalated.escalated
            rt.approvals.approve(approval_id, by="carol", roles=("cfo",))
    [reply] = results[0].replies
    if escalate:
        assert reply.payload == Paid(approved=True, by="carol", reason="")
    else:
        assert reply.payload == Paid(
            approved=False, by="deadline", reason="nobody answered in time"
        )
    assert (
        client.outcome(left) == f"refused: the answer came after approval {approval_id}'s deadline"
    )
    client.close()
    refused = [r for r in audit.records if r.action == "approval_refused"]
    assert sorted((r.actor, r.details["reason"]) for r in refused) == [
        ("alice", "it came after the deadline"),
        ("bob", "it came after the deadline"),
    ]


async def test_an_answer_left_in_time_beats_a_deadline_passed_before_the_restart(
    tmp_path: Path,
) -> None:
    """An answer left in the store before the deadline, while no process held the request,
    decides the approval at the next start, though the deadline passed meanwhile; one left
    after the deadline is refused as late, and the deadline decides."""
    path = tmp_path / "store.db"
    async with Runtime([Payer("payer")], store=path, drain_timeout=0.01) as rt:
        for pay in (Pay(amount=5, deadline=1.0), Pay(amount=6, deadline=0.2)):
            await rt.ask(rt.message(pay, recipient="payer"), until="paid", timeout=0.05)
        in_time, late = (a.id for a in rt.approvals.pending())
    client = StoreClient(path)
    given = client.answer(in_time, True, "alice", ("treasurer",), "in time")
    await anyio.sleep(0.25)  # the second's deadline passes
    refused = client.answer(late, True, "alice", ("treasurer",), "too late")
    await anyio.sleep(0.8)  # the first's deadline passes, with no process holding either
    async with Runtime([Payer("payer")], store=path) as rt:
        requests = rt.unfinished()
        paid = [(await rt.resume(r, until="paid", timeout=10)).replies[0].payload for r in requests]
    assert paid == [
        Paid(approved=True, by="alice", reason="in time"),
        Paid(approved=False, by="deadline", reason="nobody answered in time"),
    ]
    assert client.outcome(given) == "approved"
    assert client.outcome(refused) == f"refused: the answer came after approval {late}'s deadline"
    client.close()


async def test_an_answer_the_desk_takes_in_time_counts_whatever_the_answerers_clock(
    tmp_path: Path,
) -> None:
    """The answering host's clock runs two hours ahead: its answer says it was given past the
    deadline, but the desk takes it before the deadline by its own clock, so it was given in
    time and decides the approval (the answerer's clock is read only for an answer the desk
    takes after the deadline)."""
    path = tmp_path / "store.db"
    async with Runtime([Payer("payer")], store=path) as rt:
        paid: list[Paid] = []

        async def asker() -> None:
            done = await rt.ask(
                rt.message(Pay(amount=5, deadline=3600), recipient="payer"),
                until="paid",
                timeout=10,
            )
            paid.extend(m.payload for m in done.replies if isinstance(m.payload, Paid))

        async with anyio.create_task_group() as tg:
            tg.start_soon(asker)
            with anyio.fail_after(5):
                while not rt.approvals.pending():  # noqa: ASYNC110 - the desk's list
                    await anyio.sleep(0.02)
            [approval] = rt.approvals.pending()
            db = sqlite3.connect(path)
            db.execute(
                "INSERT INTO answers (approval_id, approved, answerer, roles, reason, given_at) "
                "VALUES (?, 1, 'alice', 'treasurer', 'ahead', ?)",
                (approval.id, time.time() + 7200),
            )
            db.commit()
            db.close()
    assert paid == [Paid(approved=True, by="alice", reason="ahead")]


async def test_a_store_whose_answers_do_not_say_when_is_taken_over(tmp_path: Path) -> None:
    """A store made before answers said when they were given: opened, it gains the column,
    and an answer left in it before then is taken as given in time."""
    path = tmp_path / "store.db"
    approval_id = await pause(path, Pay(amount=700, deadline=3600))
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE answers DROP COLUMN given_at")
    db.execute(
        "INSERT INTO answers (approval_id, approved, answerer, roles, reason) "
        "VALUES (?, 1, 'alice', 'treasurer', '')",
        (approval_id,),
    )
    db.commit()
    db.close()
    async with Runtime([Payer("payer")], store=path) as rt:
        paid = await resume_one(rt)
    assert paid == Paid(approved=True, by="alice")


async def test_an_escalation_counts_from_the_asking_across_a_restart(tmp_path: Path) -> None:
    """Escalated before the stop, its second deadline (two deadlines after the asking)
    passes while no process holds it: the next start rejects it once answers left in time
    had their chance (``GRACE``), not a deadline later."""
    path = tmp_path / "store.db"
    async with Runtime([Payer("payer")], store=path, drain_timeout=0.01) as rt:
        pay = Pay(amount=5, deadline=2.0, escalate_to="cfo")
        result = await rt.ask(rt.message(pay, recipient="payer"), until="paid", timeout=2.3)
        assert result.status == "timed_out"
        [approval] = rt.approvals.pending()
        assert approval.escalated
    await anyio.sleep(1.8)  # 4.1 s after the asking: past both deadlines
    async with Runtime([Payer("payer")], store=path) as rt:
        # Another deadline would be 2 s: the margin is the start's, on a loaded machine.
        with anyio.fail_after(GRACE + 1.2):
            paid = await resume_one(rt)
    assert paid == Paid(approved=False, by="deadline", reason="nobody answered in time")


async def test_an_escalation_resumed_keeps_what_is_left_of_its_deadline(
    tmp_path: Path,
) -> None:
    """Resumed past its first deadline, the approval is offered to the escalated role at once,
    for what is left of the second: two deadlines after the asking, not one after the start."""
    path = tmp_path / "store.db"
    async with Runtime([Payer("payer")], store=path, drain_timeout=0.01) as rt:
        pay = Pay(amount=5, deadline=1.2, escalate_to="cfo")
        result = await rt.ask(rt.message(pay, recipient="payer"), until="paid", timeout=0.1)
        assert result.status == "timed_out"
    await anyio.sleep(1.4)  # past the first deadline while no process held it
    audit = MemoryAuditLog()
    async with Runtime([Payer("payer")], store=path, audit=audit) as rt:
        started = anyio.current_time()
        paid = await resume_one(rt)
        waited = anyio.current_time() - started
    assert 0.4 < waited < 1.05  # about 0.85 s left of the escalated round, not 1.2 s
    assert [r.action for r in audit.records][-2:] == ["approval_escalated", "rejected"]
    assert paid == Paid(approved=False, by="deadline", reason="nobody answered in time")


async def test_an_approval_escalated_before_a_stop_is_resumed_escalated(
    tmp_path: Path,
) -> None:
    """Escalated before the stop, the approval is taken up again escalated: offered to the
    role escalated to at once, and audited escalated once, across the stop and the resume."""
    path = tmp_path / "store.db"
    audit = MemoryAuditLog()
    async with Runtime([Payer("payer")], store=path, audit=audit, drain_timeout=0.01) as rt:
        pay = Pay(amount=5, deadline=1.0, escalate_to="cfo")
        result = await rt.ask(rt.message(pay, recipient="payer"), until="paid", timeout=1.3)
        assert result.status == "timed_out"
        [approval] = rt.approvals.pending()
        assert approval.escalated
    async with (
        Runtime([Payer("payer")], store=path, audit=audit) as rt,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(resume_one, rt)
        await anyio.wait_all_tasks_blocked()
        [resumed] = rt.approvals.pending()
        assert (resumed.role, resumed.escalated) == ("cfo", True)
        rt.approvals.approve(approval.id, by="carol", roles=("cfo",))
    assert [r.action for r in audit.records if r.target == approval.id] == [
        "approval_requested",
        "approval_escalated",
        "approval_resumed",
        "approved",
    ]


PIPELINE = """
name: pay
agents:
  - id: payer
    use: tests.runtime.test_approvals:Payer
routes:
  pay: [payer]
entry:
  type: pay
  to: payer
  payload: {amount: 25000}
output: paid
timeout: 30s
"""


def test_genie_approvals_answers_a_waiting_genie_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "pay.yaml").write_text(PIPELINE)
    store = str(tmp_path / "pay.db")
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = subprocess.Popen(
        [sys.executable, "-m", "genie._cli", "run", str(tmp_path / "pay.yaml"), "--store", store],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listed: list[str] = []
        for _ in range(100):  # the run starts, asks, and its approval is written
            if Path(store).exists():
                assert main(["approvals", "list", "--store", store]) == 0
                out = capsys.readouterr().out
                listed = re.findall(r"^(\S+)  payer: pay Rs 25000  \(role treasurer", out, re.M)
                if listed:
                    break
            subprocess.run([sys.executable, "-c", "import time; time.sleep(0.1)"], check=True)
        [approval_id] = listed
        assert main(["approvals", "approve", approval_id, "--store", store, "--as", "eve"]) == 1
        assert "refused: eve may not answer" in capsys.readouterr().out
        argv = ["approvals", "approve", approval_id, "--store", store, "--as", "alice"]
        assert main([*argv, "--role", "treasurer", "--reason", "in budget"]) == 0
        assert capsys.readouterr().out == f"{approval_id}: approved\n"
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, err
    assert '"by": "alice"' in out
    assert main(["approvals", "list", "--store", store]) == 0
    assert capsys.readouterr().out == f"no approvals pending in {store}\n"


def test_the_shipped_payments_pipeline_waits_for_a_treasurer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """payment_orchestrator's hold_hitl waits for a person: paused by a short run, approved
    from the CLI, resumed by the next run, which prints the submitted instruction."""
    store = str(tmp_path / "payments.db")
    assert main(["run", "payments", "--store", store, "--set", "TIMEOUT=0.5s"]) == 1
    err = capsys.readouterr().err
    assert "paused: approval" in err
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    [listed] = capsys.readouterr().out.splitlines()
    approval = json.loads(listed)
    assert approval["subject"] == "pay Rs 75,000.00 to Shree Ganesh Traders by IMPS"
    assert approval["role"] == "treasurer"
    argv = ["approvals", "approve", approval["id"], "--store", store, "--as", "tina"]
    assert main([*argv, "--role", "treasurer", "--reason", "invoice checked", "--wait", "0.3"]) == 0
    assert "the answer is left in" in capsys.readouterr().err
    assert main(["run", "payments", "--store", store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["output"]["payload"]["action"] == "submit"
    assert out["output"]["payload"]["reason"] == "approved by tina: invoice checked"
    assert kept(Path(store)) == ([], [])


def test_a_run_of_another_pipeline_refused_on_the_store_leaves_it_named_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``genie run finance`` on a store that keeps a paused payment: refused (it cannot read
    the request), naming the pipeline that made it, and the store still names that one, so
    that ``genie approvals`` says which run resumes the payment (it said the refused one)."""
    store = str(tmp_path / "payments.db")
    payments = str(shipped_pipelines()["payments"].resolve())
    assert main(["run", "payments", "--store", store, "--set", "TIMEOUT=0.5s"]) == 1
    capsys.readouterr()
    assert main(["run", "finance", "--store", store]) == 2
    err = capsys.readouterr().err
    assert f"run the pipeline that made it ({payments}), or genie run finance" in err
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    approval_id = json.loads(capsys.readouterr().out)["id"]
    argv = ["approvals", "approve", approval_id, "--store", store, "--as", "tina"]
    assert main([*argv, "--role", "treasurer", "--wait", "0"]) == 0
    err = capsys.readouterr().err
    assert err.endswith(f"takes it: genie run {payments} --store {store}\n"), err
    assert main(["run", "payments", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"]["payload"]["action"] == "submit"


def test_an_answer_left_while_nothing_runs_is_shown_and_its_refusal_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An answer left while no process holds the request: ``genie approvals list`` shows it
    not taken yet; the run that resumes the request says it takes it (not that the approval
    waits for a person), and, the answerer refused, says so when it pauses again and in the
    list; the next answer, from a treasurer, is taken and the request completes."""
    store = str(tmp_path / "payments.db")
    short = ["--store", store, "--set", "TIMEOUT=0.5s"]
    assert main(["run", "payments", *short]) == 1
    capsys.readouterr()

    def listed() -> dict[str, Any]:
        assert main(["approvals", "list", "--store", store, "--json"]) == 0
        found: dict[str, Any] = json.loads(capsys.readouterr().out)
        return found

    approval_id = listed()["id"]
    argv = ["approvals", "approve", approval_id, "--store", store, "--wait", "0"]
    assert main([*argv, "--as", "eve"]) == 0
    capsys.readouterr()
    assert listed()["answers"] == [{"by": "eve", "outcome": None}]
    assert main(["approvals", "list", "--store", store]) == 0
    assert "    the answer left by eve is not taken yet\n" in capsys.readouterr().out

    assert main(["run", "payments", *short]) == 1
    err = capsys.readouterr().err
    assert f"approval {approval_id} (" in err
    assert "has an answer left by eve, taken now; if it is refused, answer from" in err
    assert "waits for a person: answer from another terminal" not in err
    refused = f"refused: eve may not answer approval {approval_id}: it needs the role"
    assert f"    the answer left by eve: {refused}" in err
    [answer] = listed()["answers"]
    assert answer["by"] == "eve"
    assert answer["outcome"].startswith(refused)

    assert main([*argv, "--as", "tina", "--role", "treasurer"]) == 0
    capsys.readouterr()
    assert main(["run", "payments", "--store", store, "--json"]) == 0
    captured = capsys.readouterr()
    assert "has an answer left by tina, taken now" in captured.err
    assert json.loads(captured.out)["output"]["payload"]["action"] == "submit"


def test_an_answer_left_behind_another_says_the_first_accepted_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alice approves, then Bob rejects, while nothing runs: both were told "the answer is
    left", though the resumed run takes Alice's and Bob's is refused unseen. Bob is told his
    counts only if hers is refused; the run then goes as said."""
    store = str(tmp_path / "payments.db")
    assert main(["run", "payments", "--store", store, "--set", "TIMEOUT=0.5s"]) == 1
    capsys.readouterr()
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    approval_id = json.loads(capsys.readouterr().out)["id"]
    answer = ["approvals", "--store", store, "--wait", "0", "--role", "treasurer"]
    assert main([answer[0], "approve", approval_id, *answer[1:], "--as", "alice"]) == 0
    first = capsys.readouterr().err
    assert main([answer[0], "reject", approval_id, *answer[1:], "--as", "bob"]) == 0
    second = capsys.readouterr().err
    assert first.startswith(f"genie approvals: the answer is left in {store}: ")
    assert second.startswith(
        f"genie approvals: the answer is left in {store} behind 1 not taken yet (by alice): "
        "the first answer the desk accepts decides, so this one counts only if that one is "
        "refused: "
    )
    assert main(["run", "payments", "--store", store, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["output"]["payload"]["action"] == "submit"


def test_answers_written_into_the_store_by_hand_are_listed_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row of the store's answers genie did not write (a name with a line break in it, an
    outcome that is not UTF-8) is listed on its own line, quoted: it cannot pass for another
    answer, and reading it is no traceback."""
    path = tmp_path / "store.db"
    approval_id = anyio.run(pause, path, Pay(amount=700))
    forged = "eve: approved\n    the answer left by tina"
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO answers (approval_id, approved, answerer, roles, reason, outcome) "
        "VALUES (?, 1, ?, '', '', CAST(x'ff0a41' AS TEXT))",
        (approval_id, forged),
    )
    db.commit()
    db.close()
    assert main(["approvals", "list", "--store", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [f"    the answer left by {forged!r}: '\ufffd\\nA'"]


@pytest.mark.parametrize("option", ["--reason", "--role"])
def test_genie_approvals_refuses_text_that_is_no_text_before_leaving_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """A byte the terminal could not decode (argv holds it as a lone surrogate) in a reason or
    a role: one line, exit 2, nothing left, not the store's encoding traceback."""
    path = tmp_path / "store.db"
    approval_id = anyio.run(pause, path, Pay(amount=700))
    argv = ["approvals", "approve", approval_id, "--store", str(path), "--as", "alice"]
    assert main([*argv, option, "in\udcffbudget", "--wait", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{option}: not valid text (an undecodable byte at 2)" in err
    assert "Traceback" not in err
    assert answers_left(path) == 0


def test_the_shipped_claims_pipeline_waits_for_an_adjuster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """claim_adjudicator's hitl waits for a person; a rejection denies the claim, saying who."""
    store = str(tmp_path / "claims.db")
    assert main(["run", "claims", "--store", store, "--set", "TIMEOUT=0.5s"]) == 1
    capsys.readouterr()
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    approval = json.loads(capsys.readouterr().out)
    assert approval["subject"] == "claim CLM-2026-0117: pay 224,930.23 of 258,000.00"
    argv = ["approvals", "reject", approval["id"], "--store", store, "--as", "asha"]
    assert main([*argv, "--role", "adjuster", "--reason", "pre-existing", "--wait", "0.3"]) == 0
    capsys.readouterr()
    assert main(["run", "claims", "--store", store, "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)["output"]["payload"]
    assert (decision["action"], decision["payable"]) == ("deny", 0.0)
    assert decision["reasons"][-1] == "rejected by asha: pre-existing"


def test_genie_approvals_interrupted_while_it_waits_leaves_the_answer(tmp_path: Path) -> None:
    """Ctrl-C on ``genie approvals approve`` while it waits for the runtime: the answer is
    left, as when ``--wait`` passes, said in a line (not a traceback), and the next start
    takes it."""
    path = tmp_path / "store.db"
    approval_id = anyio.run(pause, path, Pay(amount=700))
    root = Path(__file__).resolve().parents[2]
    argv = ["approvals", "approve", approval_id, "--store", str(path), "--as", "alice"]
    answering = subprocess.Popen(
        [sys.executable, "-m", "genie._cli", *argv, "--role", "treasurer", "--wait", "60"],
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's
    )
    try:
        for _ in range(400):  # until the answer is left, and the command waits
            if answers_left(path):
                break
            time.sleep(0.05)
        answering.send_signal(signal.SIGINT)
        _, err = answering.communicate(timeout=30)
    finally:
        if answering.poll() is None:
            answering.kill()
            answering.communicate()
    assert answering.returncode == 0
    assert "Traceback" not in err
    assert f"the answer is left in {path}" in err

    async def resumed() -> Paid:
        async with Runtime([Payer("payer")], store=path) as rt:
            return await resume_one(rt)

    assert anyio.run(resumed) == Paid(approved=True, by="alice")


@pytest.mark.parametrize("name", ["", " alice", "Deadline", "GENIE", "al\nice"])
def test_genie_approvals_refuses_a_name_no_person_has_before_leaving_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """An ``--as`` that no answerer can have (blank, spaced, with a line break, the desk's
    own word) is refused by the command itself, exit 2, and nothing is left in the store.
    While no process held the request, it was left with exit 0 and refused unseen when the
    next start took it, the approval still waiting for an answer the person thought given."""
    path = tmp_path / "store.db"
    approval_id = anyio.run(pause, path, Pay(amount=700))
    argv = ["approvals", "approve", approval_id, "--store", str(path), "--as", name]
    assert main([*argv, "--role", "treasurer", "--wait", "0"]) == 2
    assert f"--as {name!r} is not a person's name" in capsys.readouterr().err
    assert answers_left(path) == 0


def answers_left(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (n,) = db.execute("SELECT COUNT(*) FROM answers").fetchone()
        return int(n)
    finally:
        db.close()


@pytest.mark.parametrize("escalate_to", [None, "cfo"])
async def test_a_clock_set_back_across_a_restart_does_not_extend_the_deadline(
    tmp_path: Path, escalate_to: str | None
) -> None:
    """The next start's clock reads an hour before the asking (set back meanwhile, or the
    asking host's clock ran ahead): what is left of the deadline is at most one deadline, not
    the hour the clock went back as well."""
    path = tmp_path / "store.db"
    async with Runtime([Payer("payer")], store=path, drain_timeout=0.01) as rt:
        pay = Pay(amount=5, deadline=1.2, escalate_to=escalate_to)
        timeout = 1.4 if escalate_to else 0.1  # escalated before the stop, or not
        result = await rt.ask(rt.message(pay, recipient="payer"), until="paid", timeout=timeout)
        assert result.status == "timed_out"
    back = Clock(epoch=datetime.now(UTC) - timedelta(hours=1))
    async with Runtime([Payer("payer")], store=path, clock=back) as rt:
        with anyio.fail_after(1.2 + 0.5):  # one deadline at most, not an hour more
            paid = await resume_one(rt)
    assert paid == Paid(approved=False, by="deadline", reason="nobody answered in time")


def test_an_approve_and_a_reject_from_two_processes_at_once_decide_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two people answer the same approval at the same moment, each with ``genie approvals``
    in a process of their own, while ``genie run`` holds the request: one answer decides
    (exit 0) and the run goes its way; the other is told it was decided already (exit 1),
    and the audit log has one decision."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "pay.yaml").write_text(PIPELINE)
    store, audit = str(tmp_path / "pay.db"), str(tmp_path / "audit.jsonl")
    env = {**os.environ, "PYTHONPATH": str(root)}
    genie = [sys.executable, "-m", "genie._cli"]
    run = subprocess.Popen(
        [*genie, "run", str(tmp_path / "pay.yaml"), "--store", store, "--json", "--audit", audit],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pending: list[Any] = []
        for _ in range(100):  # the run starts, asks, and its approval is written
            if Path(store).exists():
                assert main(["approvals", "list", "--store", store, "--json"]) == 0
                pending = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
                if pending:
                    break
            time.sleep(0.1)
        [approval] = pending
        answer = ["approvals", "--store", store, "--role", "treasurer"]
        people = [
            subprocess.Popen(
                [*genie, answer[0], verb, approval["id"], *answer[1:], "--as", who],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for verb, who in (("approve", "alice"), ("reject", "bob"))
        ]
        told = [person.communicate(timeout=30) for person in people]
        out, err = run.communicate(timeout=30)
    finally:
        for process in (run, *people):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert run.returncode == 0, err
    codes = sorted(person.returncode for person in people)
    assert codes in ([0, 1], [0, 2]), told  # 2: it started once the approval was decided
    [(decided, winner)] = [
        (t[0].strip(), who)
        for t, p, who in zip(told, people, ("alice", "bob"), strict=True)
        if p.returncode == 0
    ]
    [(late, refused)] = [t for t, p in zip(told, people, strict=True) if p.returncode != 0]
    verdict = "approved" if winner == "alice" else "rejected"
    assert decided == f"{approval['id']}: {verdict}"
    if codes[1] == 1:
        assert late.strip() == f"{approval['id']}: decided already: {verdict} by {winner}"
    else:  # refused before it left anything, told how it was decided
        assert refused == (
            f"genie approvals: approval {approval['id']!r} was decided already: "
            f"{verdict} by {winner}\n"
        )
    paid = json.loads(out)["output"]["payload"]
    assert (paid["approved"], paid["by"]) == (winner == "alice", winner)
    rows = [json.loads(line) for line in Path(audit).read_text().splitlines()]
    answers = [(r["actor"], r["action"]) for r in rows if r["target"] == approval["id"]]
    assert answers[:2] == [("payer", "approval_requested"), (winner, verdict)]
    # The other, taken with it, is refused by the desk as too late; left a moment later, it
    # is told so in the write of the decision, the desk never receiving it.
    loser = "bob" if winner == "alice" else "alice"
    assert answers[2:] in ([], [(loser, "approval_refused")])
    assert main(["approvals", "list", "--store", store]) == 0
    assert capsys.readouterr().out == f"no approvals pending in {store}\n"


def test_answering_an_approval_decided_by_an_answer_says_how_it_was_decided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Approving what another person approved already, once the run took it and went on:
    told who decided it and how (exit 2, nothing left), not that no such approval is
    pending, as for an id that never was."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "pay.yaml").write_text(PIPELINE)
    store = str(tmp_path / "pay.db")
    env = {**os.environ, "PYTHONPATH": str(root)}
    run = subprocess.Popen(
        [sys.executable, "-m", "genie._cli", "run", str(tmp_path / "pay.yaml"), "--store", store],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pending: list[Any] = []
        for _ in range(100):  # the run starts, asks, and its approval is written
            if Path(store).exists():
                assert main(["approvals", "list", "--store", store, "--json"]) == 0
                pending = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
                if pending:
                    break
            time.sleep(0.1)
        [approval] = pending
        answer = ["--store", store, "--role", "treasurer"]
        assert main(["approvals", "approve", approval["id"], *answer, "--as", "alice"]) == 0
        run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    capsys.readouterr()
    assert main(["approvals", "reject", approval["id"], *answer, "--as", "bob"]) == 2
    assert capsys.readouterr().err == (
        f"genie approvals: approval {approval['id']!r} was decided already: approved by alice\n"
    )
    assert main(["approvals", "approve", "no-such-id", *answer, "--as", "bob"]) == 2
    assert capsys.readouterr().err == (
        f"genie approvals: no approval 'no-such-id' pending in {store} (none)\n"
    )


def test_a_run_that_goes_on_past_a_refused_answer_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two answers left while nothing runs: eve's (without the role) and then tina's. The run
    that resumes the request refuses eve's, takes tina's and completes: it does not pause, and
    it still says what became of eve's answer and of each other answer that did not count,
    so the people who left them learn it."""
    store = str(tmp_path / "payments.db")
    assert main(["run", "payments", "--store", store, "--set", "TIMEOUT=0.5s"]) == 1
    capsys.readouterr()
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    approval_id = json.loads(capsys.readouterr().out)["id"]
    argv = ["approvals", "approve", approval_id, "--store", store, "--wait", "0"]
    assert main([*argv, "--as", "eve"]) == 0
    assert main([*argv, "--as", "tina", "--role", "treasurer"]) == 0
    assert main([*argv, "--as", "ravi", "--role", "treasurer"]) == 0
    capsys.readouterr()
    assert main(["run", "payments", "--store", store, "--json"]) == 0
    err = capsys.readouterr().err
    refused = f"refused: eve may not answer approval {approval_id}: it needs the role"
    assert f"  approval {approval_id}: the answer left by eve: {refused}" in err
    late = f"  approval {approval_id}: the answer left by ravi: decided already: approved by tina"
    assert late in err
    assert "the answer left by tina" not in err  # it decided: nothing to tell


class BothAsker(BaseAgent):
    """Asks for an approval that only alice, holding the role treasurer, may answer."""

    produces = (ApprovalRequest,)

    @handler
    async def on_pay(self, payload: Pay, ctx: Context) -> Message:
        ask = ApprovalRequest(subject="pay", role="treasurer", principal="alice")
        return ctx.emit(ask)


async def test_the_list_names_both_the_principal_and_the_role_an_approval_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The desk asks an answerer for both (``may_answer``): a listing that named only the
    principal led alice to answer without the role, and be refused."""
    path = tmp_path / "store.db"
    async with Runtime([BothAsker("payer")], store=path, drain_timeout=0.01) as rt:
        rt.subscribe("payer", "pay")
        result = await rt.ask(rt.message(Pay(amount=1), recipient="payer"), timeout=0.2)
        assert result.status == "timed_out"
        [approval] = rt.approvals.pending()
    assert main(["approvals", "list", "--store", str(path)]) == 0
    line = capsys.readouterr().out
    assert f"{approval.id}  payer: pay  (principal alice, role treasurer; asked " in line


async def test_an_approval_escalated_before_a_stop_is_listed_offered_to_its_escalation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Escalated while a process held it, the approval is taken up by the next start offered
    to ``escalate_to`` only: the listing (and the command it prints) says that role, not the
    first one, whose answer the desk would refuse."""
    path = tmp_path / "store.db"
    pay = Pay(amount=5, deadline=0.5, escalate_to="cfo")
    async with Runtime([Payer("payer")], store=path, drain_timeout=0.01) as rt:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.ask, rt.message(pay, recipient="payer"))
                # The first deadline passes while it is held; the caller then goes away.
                while not [a for a in rt.approvals.pending() if a.escalated]:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
        [approval] = rt.approvals.pending()
    assert main(["approvals", "list", "--store", str(path)]) == 0
    assert f"{approval.id}  payer: pay Rs 5  (role cfo; asked " in capsys.readouterr().out
    assert main(["approvals", "list", "--store", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["role"], listed["principal"], listed["escalated"]) == ("cfo", None, True)
