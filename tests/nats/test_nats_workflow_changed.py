"""A workflow run kept on NATS while its pipeline file is edited (docs/design/
changed-while-kept.md): paused at its approval, every process stopped, the workflow's steps
edited, and the namespace's processes started again from the edited file. The run keeps the
definition it started under as any message of it (in the held bucket, with the workflow's
session): the worker that rebuilds it refuses it, naming the change, and undoes its done
steps as declared when it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from genie._cli.main import main
from genie.nats._server import LocalNatsServer

from ..durable.test_crash_drill import effects
from ..durable.test_workflow_drill import PIPELINE
from .test_nats import GENIE, Workers
from .test_nats import anyio_backend as anyio_backend  # nats-py runs on asyncio only
from .test_nats import server as server
from .test_nats import workers as workers
from .test_nats_workflow_drill import drill as drill
from .test_nats_workflow_drill import env, pause, pending, run, until, worker

pytestmark = pytest.mark.xdist_group("nats")

OK = '{id: ok, after: [c], approval: {subject: "order {n}", role: boss}}'
SIGN_OFF = '{id: sign_off, after: [c], approval: {subject: "order {n}", role: boss}}'
# The last step run by an agent the pipeline did not have: the namespace's pipeline changes.
E_AGENT = "  - {id: e, use: drill_agents:Stepper}\nworkflows:"


def started_worker(workers: Workers, folder: Path, url: str, *extra: str) -> str:
    """``genie worker`` of ``folder/order.yaml`` with ``extra`` arguments: what it said once
    it hosts, or once it ended."""
    cmd = [os.fspath(GENIE), "worker", str(folder / "order.yaml")]
    log = folder / f"worker-{len(workers)}.log"
    with log.open("wb") as out:
        cmd += ["--nats", url, "--ack-wait", "1", *extra]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, env=env(folder))
    workers.append(p)
    until(lambda: "genie worker: hosting" in log.read_text() or p.poll() is not None, 30)
    return log.read_text()


@pytest.mark.parametrize("edit", ["steps", "agents"])
def test_a_run_paused_on_nats_under_an_edited_workflow_is_refused_and_undone(
    server: LocalNatsServer, workers: Workers, drill: Path, edit: str
) -> None:
    """Paused at ``ok`` (a, b and c done), the worker stopped; ``ok`` is renamed
    ``sign_off`` in the file (``agents``: and ``d``, after it, is now ``e``, run by an agent
    the pipeline did not have), and a worker and the entry are started again from it on the
    same namespace (``agents``: the namespace's pipeline changed, so the worker is refused
    until it takes the namespace over with ``--replace``, as every process stopped). The run
    is not resumed under the edited workflow: the entry's outcome says what changed, c is
    undone once by the unreserve declared when the run started, and the approval nobody will
    answer is withdrawn."""
    url = server.url
    first = worker(workers, drill, url)
    approval_id = pause(drill, url)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    path = drill / "order.yaml"
    edited = PIPELINE.replace(OK, SIGN_OFF).replace("[ok]", "[sign_off]")
    if edit == "agents":
        edited = edited.replace("{id: d, after", "{id: e, after").replace("workflows:", E_AGENT)
    assert edited.count("sign_off") == 2
    path.write_text(edited)
    said = started_worker(workers, drill, url)
    if edit == "agents":
        assert workers[-1].wait(timeout=30) == 2, said
        assert said.startswith("genie worker: namespace 'order' on "), said
        assert said.rstrip().endswith("take it over (--replace)"), said
        assert "Traceback" not in said
        said = started_worker(workers, drill, url, "--replace")
    assert "genie worker: hosting" in said, said
    done = run(drill, url, "30")
    assert done.returncode == 1, done.stderr
    outcome = json.loads(done.stdout)["output"]["payload"]
    assert (outcome["status"], outcome["failed_step"]) == ("failed", None)
    added = ", step 'e' added" if edit == "agents" else ""
    removed = ", step 'd' removed" if edit == "agents" else ""
    after = "" if edit == "agents" else ", step 'd' after [sign_off], not [ok]"
    assert outcome["reason"] == (
        f"workflow order changed while the request was kept (step 'ok' removed{removed}, "
        f"step 'sign_off' added{added}{after}): the run is not resumed under it"
    )
    assert (outcome["compensated"], outcome["not_compensated"]) == (["c"], [])
    assert ("withdrawn", "ok") in [(e["kind"], e["step"]) for e in outcome["events"]]
    done_once = sorted(k.rsplit(":", 1)[0].split("~", 2)[2] for k in effects(drill))
    assert done_once == ["a", "b", "c", "c~undo"]
    assert pending(url) == []
    assert "Traceback" not in done.stderr
    argv = ["approvals", "approve", approval_id, "--nats", url, "--namespace", "order"]
    assert main([*argv, "--as", "bo", "--role", "boss", "--wait", "10"]) == 2  # not pending
    assert main(["audit", "verify", f"{url}/order"]) == 0
