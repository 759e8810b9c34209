"""The shipped sme-loan pipeline (issue 37): the SME loan as a workflow with a real approval
step. From Python: approved, it is sanctioned; rejected, the offer's hold on the lender's book
is released; declined by a check, nothing after it starts. From the CLI with a store: paused
by one run, approved from another terminal, finished by the next run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from genie_agents.lending.sme import SmeLoanStep

from genie import MemoryAuditLog
from genie._cli.main import main
from genie.pipeline import Pipeline, WorkflowOutcome, load_pipeline

from .test_store import kept

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
OFFER = "Rs 2,000,000 at 10.5% for 60 months"


def book(rt: Any) -> SmeLoanStep:
    [offer] = [a for a in rt.agents() if a.id == "indicative_offer"]
    assert isinstance(offer, SmeLoanStep)
    return offer


async def decide(
    approve: bool | None, request: dict[str, Any] | None = None
) -> tuple[WorkflowOutcome, dict[str, float], list[str]]:
    """Run the shipped pipeline on its sample (or ``request``), answer its approval (None:
    it must not be asked); the outcome, what the lender's book holds after, the audit."""
    pipeline: Pipeline = load_pipeline("sme-loan")
    data = json.loads((ROOT / "config" / "data" / "sme-loan.json").read_text())
    if request is not None:
        data["request"] |= request
    audit = MemoryAuditLog()
    async with pipeline.runtime(audit=audit) as rt, anyio.create_task_group() as tg:

        async def answer() -> None:
            await anyio.wait_all_tasks_blocked()
            if approve is None:
                assert rt.approvals.pending() == []
                return
            [approval] = rt.approvals.pending()
            assert approval.subject == f"Sanction {OFFER} to shree-ganesh-traders"
            assert approval.role == "credit_officer"
            with pytest.raises(Exception, match="needs the role 'credit_officer'"):
                rt.approvals.approve(approval.id, by="intern", roles=("advisor",))
            answer = rt.approvals.approve if approve else rt.approvals.reject
            answer(approval.id, by="ravi", roles=("credit_officer",), reason="checked")

        tg.start_soon(answer)
        result = await pipeline.ask(rt, pipeline.entry_payload(json.dumps(data), "loan.json"))
        held = dict(book(rt).held)
    assert result.output is not None, result
    outcome = result.output.payload
    assert isinstance(outcome, WorkflowOutcome)
    return outcome, held, [r.action for r in audit.records]


async def test_an_approved_loan_is_sanctioned() -> None:
    outcome, held, audit = await decide(True)
    assert outcome.status == "completed"
    assert outcome.state["sanction_letter"] == (
        "Sanctioned to shree-ganesh-traders: Rs 2,000,000 at 10.5% a year for 60 months, "
        "EMI Rs 42,988, CGTMSE guarantee cover."
    )
    assert list(held.values()) == [2_000_000.0]  # sanctioned: the book keeps it
    events = [(e.step, e.kind) for e in outcome.events]
    # The three checks start together, before any of them completes.
    assert {s for s, k in events[:3]} == {"gst_fetch", "cashflow_analysis", "cgtmse_eligibility"}
    assert events[-4:] == [
        ("human_approval", "awaiting_approval"),
        ("human_approval", "approved"),
        ("sanction_letter", "started"),
        ("sanction_letter", "completed"),
    ]
    assert "approval_refused" in audit  # the intern, refused and audited
    assert "approved" in audit


async def test_a_rejected_loan_releases_the_offer() -> None:
    outcome, held, audit = await decide(False)
    assert outcome.status == "rejected"
    assert outcome.failed_step == "human_approval"
    assert outcome.reason == "rejected by ravi: checked"
    assert outcome.compensated == ("indicative_offer",)
    assert held == {}  # the hold on the lender's book is released
    assert outcome.state["sanction_letter"] == ""
    assert "workflow_compensated" in audit


async def test_a_failed_check_declines_before_the_offer() -> None:
    outcome, held, _ = await decide(None, {"gst_returns_on_time": 5})
    assert outcome.status == "failed"
    assert outcome.failed_step == "gst_fetch"
    assert outcome.reason == ("failed: LoanDeclinedError: 5/12 GST returns on time (needs 9)")
    assert "indicative_offer" not in {e.step for e in outcome.events}
    assert outcome.compensated == ()  # the checks hold nothing to undo
    assert held == {}


@pytest.mark.parametrize("sync", ["1", "always"])
def test_the_cli_pauses_the_loan_and_the_next_run_sanctions_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sync: str
) -> None:
    store = str(tmp_path / "loans.db")
    paused = ["run", "sme-loan", "--store", store, "--store-sync", sync]
    assert main([*paused, "--set", "TIMEOUT=0.5s"]) == 1
    assert "paused: approval" in capsys.readouterr().err
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    approval = json.loads(capsys.readouterr().out)
    assert approval["agent"] == "sme_loan_workflow"
    argv = ["approvals", "approve", approval["id"], "--store", store, "--as", "ravi"]
    assert main([*argv, "--role", "credit_officer", "--wait", "0.3"]) == 0
    capsys.readouterr()
    assert main(["run", "sme-loan", "--store", store, "--store-sync", sync, "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)["output"]["payload"]
    assert outcome["status"] == "completed"
    assert outcome["state"]["sanction_letter"].startswith("Sanctioned to shree-ganesh-traders")
    assert kept(Path(store)) == ([], [])


@pytest.mark.parametrize("sync", ["0", "-1", "never", "nan", "inf"])
def test_a_store_sync_that_is_no_time_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sync: str
) -> None:
    store = str(tmp_path / "loans.db")
    with pytest.raises(SystemExit) as exited:
        main(["run", "sme-loan", "--store", store, "--store-sync", sync])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--store-sync: a number of seconds above 0, or 'always', not '{sync}'" in err
    assert "Traceback" not in err


def test_the_cli_says_how_a_rejected_loan_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "loans.db")
    assert main(["run", "sme-loan", "--store", store, "--set", "TIMEOUT=0.5s"]) == 1
    capsys.readouterr()
    assert main(["approvals", "list", "--store", store, "--json"]) == 0
    approval = json.loads(capsys.readouterr().out)
    argv = ["approvals", "reject", approval["id"], "--store", store, "--as", "ravi"]
    assert main([*argv, "--role", "credit_officer", "--reason", "thin margins"]) == 0
    capsys.readouterr()
    assert main(["run", "sme-loan", "--store", store]) == 1  # it did not complete
    err = capsys.readouterr().err
    assert (
        "genie run: sme-loan: workflow sme_loan_workflow rejected at human_approval: "
        "rejected by ravi: thin margins; compensated: indicative_offer"
    ) in err


def test_without_a_store_the_cli_says_how_to_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "sme-loan", "--set", "TIMEOUT=0.3s"]) == 1
    err = capsys.readouterr().err
    assert "sme-loan may wait for a person's approval: run it with --store PATH" in err
