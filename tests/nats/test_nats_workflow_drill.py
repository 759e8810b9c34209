"""Approvals and workflows on NATS (issue 37): a workflow with an approval step run by a
``genie worker`` for ``genie run --nats URL --origin NAME``. The request pauses at the approval
(the entry keeps it), ``genie approvals ... --nats`` lists and answers it, and the next ``genie
run`` of that name finishes it. The drill kills the worker with SIGKILL at each point of the
workflow's and the desk's life (before and after it keeps a delivery, before and after the ack,
while the approval is pending, between the answer and the decision, after the decision) and
starts another: each time the workflow completes, each step's effect is applied once (its
handler keys it by the delivery id), the approval list and the held bucket end empty, the
counts hold, and the namespace's audit stream, written by every process, verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from genie._cli.approvals import pending_on_nats
from genie._cli.main import main
from genie.nats._approvals import NatsApprovals
from genie.nats._cli import on_approvals
from genie.nats._names import NatsNames
from genie.nats._server import LocalNatsServer
from genie.nats._transport import NatsTransport
from genie.nats._wire import entries
from genie.pipeline import RunResult, load_pipeline

from ..durable.test_crash_drill import effects
from ..durable.test_workflow_drill import AGENTS, ORDER_DONE, PIPELINE, balanced
from .test_nats import GENIE, HELPER, ROOT, Workers, eventually, jetstream, stream
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import server as server
from .test_nats import workers as workers

pytestmark = pytest.mark.xdist_group("nats")

PAUSE = "6"  # seconds a run waits before it leaves the request paused for a person
Die = tuple[str, str, int]  # the step, the agent, the nth delivery of it reaching the step
NEVER: Die = ("-", "-", 0)


@pytest.fixture
def drill(tmp_path: Path) -> Path:
    (tmp_path / "drill_agents.py").write_text(AGENTS)
    (tmp_path / "order.yaml").write_text(PIPELINE)
    return tmp_path


def env(folder: Path) -> dict[str, str]:
    # The genie of this checkout, as the test process's, not whichever one is installed.
    path = os.pathsep.join((str(folder), os.fspath(ROOT)))
    return {**os.environ, "DRILL_LEDGER": str(folder / "ledger.txt"), "PYTHONPATH": path}


def worker(started: Workers, folder: Path, url: str, die: Die = NEVER) -> subprocess.Popen[bytes]:
    """A worker hosting every agent and the desk, serving (its kept sessions taken again)."""
    step, agent, nth = die
    cmd = [sys.executable, os.fspath(HELPER), step, agent, str(nth), str(folder / "order.yaml")]
    cmd += ["--nats", url, "--ack-wait", "1"]
    log = folder / f"worker-{len(started)}.log"
    with log.open("wb") as out:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, env=env(folder))
    started.append(p)
    until(lambda: "genie worker: hosting" in log.read_text(), 30)
    return p


def command(folder: Path, url: str, wait: str) -> list[str]:
    """``genie run --nats --origin desk`` (resuming what the origin keeps), waiting ``wait``."""
    run = [str(GENIE), "run", str(folder / "order.yaml"), "--nats", url, "--origin", "desk"]
    return [*run, "--timeout", wait, "--json"]


def run(folder: Path, url: str, wait: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(folder, url, wait), env=env(folder), capture_output=True, text=True, timeout=90
    )


def started(workers: Workers, folder: Path, url: str, wait: str) -> subprocess.Popen[str]:
    """``genie run`` of the drill's pipeline: killed with the workers if the test fails."""
    entry = subprocess.Popen(
        command(folder, url, wait),
        env=env(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers.append(entry)
    return entry


def pending(url: str) -> list[dict[str, object]]:
    return pending_on_nats(url, "order")


def approve(url: str, approval_id: str) -> None:
    argv = ["approvals", "approve", approval_id, "--nats", url, "--namespace", "order"]
    assert main([*argv, "--as", "bo", "--role", "boss", "--wait", "10"]) == 0


def approving(folder: Path, url: str, approval_id: str) -> subprocess.Popen[str]:
    """``genie approvals approve`` in a process of its own, waiting for what became of it."""
    argv = [str(GENIE), "approvals", "approve", approval_id, "--nats", url]
    return subprocess.Popen(
        [*argv, "--namespace", "order", "--as", "bo", "--role", "boss", "--wait", "60"],
        env=env(folder),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def answers_left(url: str) -> int:
    """The answers in the approvals bucket (an answer's outcome read by its answerer is
    deleted)."""

    async def count() -> int:
        async with jetstream(url) as js:
            return len(await entries(js, NatsNames("order").approvals, "answer.>"))

    return anyio.run(count)


def until(check: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def pause(folder: Path, url: str) -> str:
    """Run until the approval waits (resuming the request if one is kept): its id."""
    paused = run(folder, url, PAUSE)
    assert paused.returncode == 1, paused.stderr
    assert "paused: approval" in paused.stderr, paused.stderr
    [approval] = pending(url)
    return str(approval["id"])


def finish(folder: Path, url: str) -> None:
    done = run(folder, url, "30")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    balanced(result["stats"])
    outcome = result["output"]["payload"]
    assert outcome["status"] == "completed"
    assert outcome["state"] == ORDER_DONE
    assert [e["kind"] for e in outcome["events"] if e["step"] == "ok"] == [
        "awaiting_approval",
        "approved",
    ]


def check(folder: Path, url: str) -> None:
    keys = effects(folder)
    assert sorted(k.rsplit(":", 1)[1] for k in keys) == ["a", "b", "c", "d"]  # each once
    assert pending(url) == []

    async def held() -> int:
        async with jetstream(url) as js:
            return int((await js.stream_info(f"KV_{NatsNames('order').held}")).state.messages)

    # Purged by the worker once the session ends, which may come after the entry printed
    # the outcome the session sent: waited for, not read at once.
    until(lambda: anyio.run(held) == 0)  # else entries are left in the held bucket
    assert main(["audit", "verify", f"{url}/order"]) == 0
    # Each row a workflow or the desk made in a delivery is written once, however often the
    # delivery ran.
    rows = Counter(audit_rows(url))
    assert [row for row, times in rows.items() if times > 1] == []


def audit_rows(url: str) -> list[tuple[str, str, str]]:
    async def read() -> list[tuple[str, str, str]]:
        async with jetstream(url) as js:
            rows = await stream(js, NatsNames("order").audit)
        return [(str(row["actor"]), str(row["action"]), str(row["target"])) for row in rows]

    return anyio.run(read)


def audit_actions(url: str) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        async with jetstream(url) as js:
            rows = await stream(js, NatsNames("order").audit)
        return [(str(row["actor"]), str(row["action"])) for row in rows]

    return anyio.run(read)


def test_a_workflow_pauses_for_a_person_and_the_next_run_finishes_it(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    url = server.url
    worker(workers, drill, url)
    approval_id = pause(drill, url)
    [listed] = pending(url)
    assert (listed["agent"], listed["role"]) == ("order", "boss")
    # Without the role: refused, and audited; the approval stays pending.
    argv = ["approvals", "approve", approval_id, "--nats", url, "--namespace", "order"]
    assert main([*argv, "--as", "mallory", "--wait", "10"]) == 1
    assert [a["id"] for a in pending(url)] == [approval_id]
    approve(url, approval_id)
    finish(drill, url)
    check(drill, url)
    actions = audit_actions(url)
    assert ("order", "approval_requested") in actions
    assert ("mallory", "approval_refused") in actions
    assert ("bo", "approved") in actions


def test_a_run_that_waits_gets_the_answer_given_meanwhile(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    url = server.url
    worker(workers, drill, url)
    waiting = started(workers, drill, url, "30")
    until(lambda: pending(url))
    [approval] = pending(url)
    approve(url, str(approval["id"]))
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert json.loads(out)["output"]["payload"]["state"] == ORDER_DONE
    check(drill, url)


def test_an_entry_killed_while_the_approval_waits_is_resumed_by_its_next_run(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    url = server.url
    worker(workers, drill, url)
    entry = started(workers, drill, url, "30")
    until(lambda: pending(url))
    entry.kill()  # SIGKILL: the entry's side of the request is in its bucket
    entry.communicate(timeout=10)
    assert entry.returncode == -9
    [approval] = pending(url)
    approve(url, str(approval["id"]))
    finish(drill, url)
    check(drill, url)


def test_answers_given_at_once_and_junk_in_the_bucket(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    """Two people answer at once (each answer has a key of its own: neither is lost), and
    entries written by hand that are not answers are refused, not taken, while the worker
    goes on."""
    url = server.url
    desk = worker(workers, drill, url)
    approval_id = pause(drill, url)
    bucket = NatsNames("order").approvals

    async def junk() -> None:
        async with jetstream(url) as js:
            kv = await js.key_value(bucket)
            await kv.put("answer.x.y", b"not json")
            forged = {"approval_id": approval_id, "approved": "false", "by": "bo"}
            await kv.put("answer.x.z", json.dumps(forged).encode())  # not under its key
            await kv.put("answer.x.w", b"[1, 2]")

    anyio.run(junk)
    argv = [str(GENIE), "approvals", "approve", approval_id, "--nats", url]
    argv += ["--namespace", "order", "--wait", "30"]
    people = [
        subprocess.Popen(
            [*argv, "--as", who, *roles],
            env=env(drill),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who, roles in (("mallory", []), ("bo", ["--role", "boss"]))
    ]
    (said, err), (bo_said, bo_err) = [p.communicate(timeout=60) for p in people]
    assert (people[1].returncode, bo_said) == (0, f"{approval_id}: approved\n"), bo_err
    # Mallory's answer is refused, or finds the approval decided if bo's came first: no
    # longer listed when her command looked (exit 2), decided as it was taken, or decided
    # before her answer was left.
    if people[0].returncode == 2:
        assert f"no approval {approval_id!r} pending" in err, err
    else:
        assert people[0].returncode == 1, err
        assert said.startswith(
            tuple(
                f"{approval_id}: {outcome}"
                for outcome in (
                    "refused: mallory may not answer",
                    "decided already",
                    f"refused: no pending approval {approval_id!r} (decided already: ",
                )
            )
        ), said
    finish(drill, url)
    check(drill, url)
    assert desk.poll() is None  # the junk did not stop the worker

    async def left() -> dict[str, str]:
        async with jetstream(url) as js:
            found = await entries(js, bucket, "answer.>")
            return {k: json.loads(v)["outcome"] for k, v in found}

    assert anyio.run(left) == dict.fromkeys(
        ["answer.x.y", "answer.x.z", "answer.x.w"], "refused: not an answer"
    )


def test_an_answer_left_just_after_the_decision_is_told_it_came_late(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    """A person lists the approval, another decides it, then the first leaves an answer (a
    slow process, or two people at once): the desk has nothing pending any more, yet the
    answer is refused as decided already, not left unanswered (its answerer waited out its
    --wait and was told the answer is left)."""
    url = server.url
    worker(workers, drill, url)
    approval_id = pause(drill, url)
    approve(url, approval_id)

    said: list[str] = []

    async def give(bucket: NatsApprovals) -> None:
        key = await bucket.answer(approval_id, True, "mallory", (), "")

        async def told() -> bool:
            outcome = await bucket.outcome(key)
            said.extend([] if outcome is None else [outcome])
            return bool(said)

        await eventually(told, timeout=30)

    anyio.run(on_approvals, url, "order", give)
    assert said == [
        f"refused: no pending approval {approval_id!r} (decided already: approved by bo)"
    ]
    finish(drill, url)
    check(drill, url)


# Where the worker hosting the workflow, the desk and the steps dies, on the way to the
# approval (before it is asked) and after it (once the answer is given).
BEFORE_APPROVAL: list[Die] = [
    ("handled", "order", 1),  # the workflow took the request; nothing sent yet
    ("kept", "order", 3),  # a step's reply kept, not acked (the 2nd: the run's definition)
    ("acked", "order", 5),  # the third reply taken: the approval is asked next
    ("handled", "approvals", 1),  # the desk took the request; its outcome not out
    ("kept", "approvals", 1),  # kept, not acked
    ("acked", "approvals", 1),  # pending (the kill while a person is awaited)
]
AFTER_APPROVAL: list[Die] = [
    ("sending", "approvals", 1),  # the answer taken from the bucket; not sent to the desk
    ("handled", "approvals", 2),  # the answer taken; the decision not out
    ("published", "approvals", 2),  # the decision out; the answer not acked
    ("acked", "approvals", 2),  # decided and acked; its session not released
    ("handled", "order", 6),  # the workflow took the decision; step d not sent
    ("handled", "d", 1),  # step d applied its effect; its reply not out
]


@pytest.mark.parametrize("die", BEFORE_APPROVAL, ids=lambda d: f"{d[0]}-{d[1]}-{d[2]}")
def test_a_worker_killed_before_the_approval(
    server: LocalNatsServer, workers: Workers, drill: Path, die: Die
) -> None:
    url = server.url
    doomed = worker(workers, drill, url, die)
    running = started(workers, drill, url, PAUSE)
    assert doomed.wait(timeout=30) == -9
    worker(workers, drill, url)
    _, err = running.communicate(timeout=60)
    assert running.returncode == 1, err
    assert "paused: approval" in err, err
    [approval] = pending(url)
    approve(url, str(approval["id"]))
    finish(drill, url)
    check(drill, url)


@pytest.mark.parametrize("die", AFTER_APPROVAL, ids=lambda d: f"{d[0]}-{d[1]}-{d[2]}")
def test_a_worker_killed_after_the_answer(
    server: LocalNatsServer, workers: Workers, drill: Path, die: Die
) -> None:
    url = server.url
    doomed = worker(workers, drill, url, die)
    approval_id = pause(drill, url)
    answering = approving(drill, url, approval_id)
    assert doomed.wait(timeout=30) == -9
    worker(workers, drill, url)
    # The next worker takes the answer again (left in the bucket until the desk decided, or
    # a delivery its predecessor sent for a person): nobody answers twice, and the person
    # who answered learns what became of it across the kill.
    out, err = answering.communicate(timeout=90)
    assert (answering.returncode, out) == (0, f"{approval_id}: approved\n"), err
    assert answers_left(url) == 0
    finish(drill, url)
    check(drill, url)
    # At least once: a desk rebuilt from kept deliveries writes their rows again.
    assert ("bo", "approved") in audit_actions(url)


def test_the_shipped_payment_waits_for_a_treasurer_across_processes(
    server: LocalNatsServer, workers: Workers, tmp_path: Path
) -> None:
    url, payments = server.url, str(ROOT / "config" / "pipelines" / "payments.yaml")
    with (tmp_path / "worker.log").open("wb") as log:
        workers.append(
            subprocess.Popen([str(GENIE), "worker", payments, "--nats", url], stderr=log)
        )
    until(lambda: "genie worker: hosting" in (tmp_path / "worker.log").read_text())
    entry = [str(GENIE), "run", payments, "--nats", url, "--origin", "pay", "--json"]
    paused = subprocess.run([*entry, "--timeout", "3"], capture_output=True, text=True, timeout=60)
    assert paused.returncode == 1
    assert "paused: approval" in paused.stderr
    [approval] = pending_on_nats(url, "payments")
    assert (approval["agent"], approval["role"]) == ("payment_orchestrator", "treasurer")
    argv = ["approvals", "approve", str(approval["id"]), "--nats", url, "--namespace", "payments"]
    assert main([*argv, "--as", "tina", "--role", "treasurer", "--reason", "invoice checked"]) == 0
    done = subprocess.run(entry, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    payment = json.loads(done.stdout)["output"]["payload"]
    assert (payment["action"], payment["reason"]) == ("submit", "approved by tina: invoice checked")


def test_an_approvals_deadline_runs_on_in_the_worker_that_rebuilds_the_desk(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    """Nobody answers: the deadline, counted from the asking, rejects the approval in the
    worker started after a kill, and the workflow undoes what it did."""
    url = server.url
    approval = '{subject: "order {n}", role: boss}'
    (drill / "order.yaml").write_text(PIPELINE.replace(approval, approval + ", deadline: 4s"))
    doomed = worker(workers, drill, url, ("acked", "approvals", 1))
    entry = started(workers, drill, url, "30")
    assert doomed.wait(timeout=30) == -9
    worker(workers, drill, url)
    out, err = entry.communicate(timeout=60)
    assert entry.returncode == 1, err
    outcome = json.loads(out)["output"]["payload"]
    assert outcome["status"] == "rejected", outcome
    assert outcome["compensated"] == ["c"]
    assert [e["kind"] for e in outcome["events"] if e["step"] == "ok"] == [
        "awaiting_approval",
        "rejected",
    ]
    keys = effects(drill)
    # Each once, keyed <request>~order~<step>[~undo]:<agent>; step c undone, d never run.
    assert sorted(k.split("~", 2)[2] for k in keys) == ["a:a", "b:b", "c:c", "c~undo:c"]
    assert pending(url) == []


def test_bad_approval_commands_on_nats_are_one_line_errors(
    server: LocalNatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.url
    assert main(["approvals", "list", "--nats", url, "--namespace", "nowhere"]) == 0
    assert capsys.readouterr().out == f"no approvals pending in namespace nowhere on {url}\n"
    answer = ["approvals", "approve", "nope", "--as", "bo"]
    cases = {
        (*answer, "--nats", url, "--namespace", "nowhere"): "no approval 'nope' pending",
        (*answer, "--nats", "nats://127.0.0.1:1", "--namespace", "x"): "cannot reach NATS",
        ("audit", "verify", "nats://127.0.0.1:1/x"): "cannot reach NATS",  # hung before
        ("approvals", "list", "--nats", url): "--nats: name the namespace",
        ("approvals", "list", "--store", "x.db", "--namespace", "x"): "--namespace names",
    }
    for argv, said in cases.items():
        started_at = time.monotonic()
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert said in err, (argv, err)
        assert "Traceback" not in err
        assert err.count("\n") == 1, err
        assert time.monotonic() - started_at < 10


async def test_an_approval_is_listed_and_answered_from_python(
    server: LocalNatsServer, workers: Workers, drill: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``transport.approvals`` of a connected entry: the same bucket as the CLI's."""
    monkeypatch.syspath_prepend(str(drill))  # the drill's agents, for this process too
    monkeypatch.setenv("DRILL_LEDGER", str(drill / "ledger.txt"))
    worker(workers, drill, server.url)
    pipeline = load_pipeline(drill / "order.yaml")
    transport = NatsTransport(server.url, NatsNames(pipeline.name))
    rt = pipeline.runtime(transport=transport)
    transport.attach(rt)
    await transport.connect()
    async with rt:
        payload = pipeline.entry_payload(pipeline.read_input(None))
        async with anyio.create_task_group() as tg:
            results: list[RunResult] = []

            async def ask() -> None:
                results.append(await pipeline.ask(rt, payload, timeout=30))

            tg.start_soon(ask)
            listed: list[dict[str, Any]] = []
            outcome: list[str | None] = [None]

            async def asked() -> bool:
                listed[:] = await transport.approvals.pending()
                return bool(listed)

            async def answered() -> bool:
                outcome[0] = await transport.approvals.outcome(key)
                return outcome[0] is not None

            await eventually(asked, 20)
            [request] = listed
            assert request["sender"] == "order"
            key = await transport.approvals.answer(request["id"], True, "bo", ("boss",), "fine")
            await eventually(answered, 10)
            assert outcome == ["approved"]
        [result] = results
        assert result.status == "ok", result
        assert result.output is not None
        assert result.output.payload.model_dump()["state"] == ORDER_DONE
    await transport.close()


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL", "kept"])
def test_a_worker_restarted_while_an_approval_waits_resumes_it_asked_once(
    server: LocalNatsServer, workers: Workers, drill: Path, stop: str
) -> None:
    """The worker hosting the desk stops (or is killed: while the person is awaited, or
    just after it kept the approval, before its ack) while a person is awaited: the worker
    started next takes the approval up again as resumed (one ``approval_requested`` row,
    one ``approval_resumed``), and the deadline's timer pending at the stop is kept, no
    dead letter in the entry that waits for the request."""
    url = server.url
    approval = '{subject: "order {n}", role: boss}'
    (drill / "order.yaml").write_text(PIPELINE.replace(approval, approval + ", deadline: 60s"))
    first = worker(workers, drill, url, ("kept", "approvals", 1) if stop == "kept" else NEVER)
    entry = started(workers, drill, url, "60")
    if stop != "kept":
        until(lambda: pending(url), 30)
        first.send_signal(getattr(signal, stop))
    assert first.wait(timeout=30) == (0 if stop == "SIGTERM" else -9)
    worker(workers, drill, url)
    until(lambda: pending(url), 30)
    [listed] = pending(url)
    approve(url, str(listed["id"]))
    out, err = entry.communicate(timeout=60)
    assert entry.returncode == 0, err
    result = json.loads(out)
    assert result["output"]["payload"]["status"] == "completed"
    assert "dead letter" not in err, err
    assert result["stats"]["dead_lettered"] == 0, result["stats"]
    balanced(result["stats"])
    actions = audit_actions(url)
    assert [a for a in actions if a[1].startswith("approval_")] == [
        ("order", "approval_requested"),
        ("approvals", "approval_resumed"),
    ], actions
    assert ("bo", "approved") in actions
    check(drill, url)


def test_an_approval_escalated_before_a_worker_stop_is_resumed_escalated(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    """Escalated before its worker stopped, the approval is taken up escalated by the next
    worker: offered to the escalated role for what is left of its second deadline, neither
    offered to the first role again nor escalated a second time."""
    url = server.url
    approval = '{subject: "order {n}", role: boss}'
    # Escalated at 15 s, rejected at 30 s: the stop, the next worker's start and the answer
    # fit in the second round on a loaded machine (8 s did not, once).
    escalated = '{subject: "order {n}", role: boss, escalate_to: chief}, deadline: 15s'
    (drill / "order.yaml").write_text(PIPELINE.replace(approval, escalated))
    first = worker(workers, drill, url)
    entry = started(workers, drill, url, "60")
    until(lambda: ("deadline", "approval_escalated") in audit_actions(url), 45)
    # Listed as the desk offers it: to the role escalated to, once escalated.
    until(lambda: [(a["role"], a.get("escalated")) for a in pending(url)] == [("chief", True)])
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    worker(workers, drill, url)
    # Answered once the next worker has taken the approval up: an answer before that is
    # refused as unknown there (audited), and --wait sends it again.
    until(lambda: ("approvals", "approval_resumed") in audit_actions(url), 30)
    [listed] = pending(url)  # the next worker's list: still offered to the escalation only
    assert (listed["role"], listed["escalated"]) == ("chief", True)
    argv = ["approvals", "approve", str(listed["id"]), "--nats", url, "--namespace", "order"]
    assert main([*argv, "--as", "cy", "--role", str(listed["role"]), "--wait", "10"]) == 0
    out, err = entry.communicate(timeout=60)
    assert entry.returncode == 0, err
    assert json.loads(out)["output"]["payload"]["status"] == "completed"
    assert [a for a in audit_actions(url) if a[1].startswith("approval_")] == [
        ("order", "approval_requested"),
        ("deadline", "approval_escalated"),
        ("approvals", "approval_resumed"),
    ]
    check(drill, url)


def test_a_worker_restarted_twice_while_an_approval_waits_audits_each_resumption(
    server: LocalNatsServer, workers: Workers, drill: Path
) -> None:
    """Each worker that takes the approval up again after a stop records it resumed: the
    second resumption, made by the same kept delivery run again, is another row, not the
    first one written twice (a broker id taken from the delivery dropped it as a duplicate
    within the broker's window, and the audit stream lost it)."""
    url = server.url

    def resumed() -> int:
        return audit_actions(url).count(("approvals", "approval_resumed"))

    first = worker(workers, drill, url)
    entry = started(workers, drill, url, "60")
    until(lambda: pending(url), 30)
    for times in (1, 2):
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        first = worker(workers, drill, url)
        until(lambda: resumed() >= times, 30)  # noqa: B023 (checked before the loop goes on)
    [listed] = pending(url)
    approve(url, str(listed["id"]))
    out, err = entry.communicate(timeout=60)
    assert entry.returncode == 0, err
    assert json.loads(out)["output"]["payload"]["status"] == "completed"
    assert [a for a in audit_actions(url) if a[1].startswith("approval_")] == [
        ("order", "approval_requested"),
        ("approvals", "approval_resumed"),
        ("approvals", "approval_resumed"),
    ]
    assert main(["audit", "verify", f"{url}/order"]) == 0
