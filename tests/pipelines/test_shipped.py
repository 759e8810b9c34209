"""The shipped onboarding, lending and treasury pipelines end to end, through the CLI and
from Python, on their sample inputs and on inputs that change the decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from genie._cli.main import main
from genie.pipeline import load_pipeline

from ..conftest import requires

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "config" / "pipelines"
DATA = ROOT / "config" / "data"

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, name: str, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["run", str(PIPELINES / f"{name}.yaml"), "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def decision(result: dict[str, Any], status: str = "ok") -> dict[str, Any]:
    assert result["status"] == status, result
    payload: dict[str, Any] = result["output"]["payload"]
    return payload


def test_onboarding_sample_goes_to_review(capsys: Capture) -> None:
    code, result = run(capsys, "onboarding")
    assert code == 0
    assert decision(result) == {
        "customer_id": "cust-0042",
        "decision": "review",
        "reasons": ["fraud signals: high_risk_merchant"],  # the crypto top-up
        "missing": [],
    }
    # KYC, fraud, mule, AML and payment all answered; nothing was lost on the way.
    stats = result["stats"]
    assert stats["delivered"] == stats["handled"]
    assert (stats["denied"], stats["dead_lettered"]) == (0, 0)


def test_onboarding_sanctioned_customer_is_rejected(tmp_path: Path, capsys: Capture) -> None:
    application = json.loads((DATA / "onboarding.json").read_text())
    application["customer"]["sanctions_hit"] = True
    application["first_payment"]["amount_paise"] = 7_500_000  # Rs 75,000: waits for a human
    path = tmp_path / "app.json"
    path.write_text(json.dumps(application))
    code, result = run(capsys, "onboarding", "--input", str(path))
    assert code == 0
    out = decision(result)
    assert out["decision"] == "reject"
    assert out["reasons"] == [
        "KYC rejected (sanctions_hit)",
        "fraud signals: high_risk_merchant",
        "first payment hold_hitl: Rs 50,000 or more needs a human approval",
    ]


def test_onboarding_application_missing_a_field_is_exit_2(tmp_path: Path, capsys: Capture) -> None:
    application = json.loads((DATA / "onboarding.json").read_text())
    del application["customer"]["pan"]
    path = tmp_path / "app.json"
    path.write_text(json.dumps(application))
    assert main(["run", str(PIPELINES / "onboarding.yaml"), "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'onboarding_application'" in err
    assert "customer.pan" in err


def test_lending_sample_is_approved_with_a_prepayment_tip(capsys: Capture) -> None:
    code, result = run(capsys, "lending")
    assert code == 0
    assert decision(result) == {
        "applicant_id": "app-7781",
        "decision": "approve",
        "reasons": ["cash-flow score 870 (prime)", "EMI 21,494 with DSCR 1.97 (eligible)"],
        "score": 870,
        "emi": 21_494,  # 10 lakh at 10.5 % over 60 months
        "dscr": 1.97,  # (mean inflow 120,916.67 - mean outflow 78,666.67) / 21,494
        "prepayment_tip": "prepay 100,000.00 on car-loan: saves 31,265.37 net of penalty "
        "and 17 months",
        "missing": [],
    }


def test_lending_without_loans_decides_at_the_deadline(tmp_path: Path, capsys: Capture) -> None:
    application = json.loads((DATA / "loan-application.json").read_text())
    application |= {"existing_loans": [], "principal": 5_000_000}  # EMI 107,470: DSCR 0.39
    path = tmp_path / "app.json"
    path.write_text(json.dumps(application))
    code, result = run(
        capsys, "lending", "--input", str(path), "--set", "ASSESSMENT_DEADLINE=200ms"
    )
    assert code == 0  # the output came, built without one part: partial, and why
    out = decision(result, "partial")
    assert (out["decision"], out["prepayment_tip"], out["missing"]) == (
        "refer",
        "",
        ["prepayment_plan"],
    )
    assert result["missing"] == [
        {
            "key": "prepayment_plan",
            "kind": "timed_out",
            "reason": "did not arrive within the 0.2s deadline",
            "policy": None,
            "agent": None,
        }
    ]


def test_lending_failed_part_is_referred_without_it(tmp_path: Path, capsys: Capture) -> None:
    # A loan the application admits but the underwriter cannot score (no money in; a loan
    # the model refuses, such as months 0, never reaches the desk: exit 2, test_run.py).
    application = json.loads((DATA / "loan-application.json").read_text())
    application |= {"monthly_inflows": [0] * 6, "monthly_debt_service": 0}
    path = tmp_path / "app.json"
    path.write_text(json.dumps(application))
    code, result = run(
        capsys, "lending", "--input", str(path), "--set", "ASSESSMENT_DEADLINE=200ms"
    )
    assert code == 3  # the output came, and a handler's work was lost
    out = decision(result, "partial")
    assert out["decision"] == "refer"
    assert out["missing"] == ["underwrite_score"]
    # The desk's decision says why the part is missing, not only that it is.
    assert (
        "missing: underwrite_score (failed to cashflow_underwriter: ValueError: no inflows to "
        "underwrite)" in out["reasons"]
    )
    [letter] = result["dead_letters"]
    assert letter["reason"] == "ValueError: no inflows to underwrite"
    # The failure ended the wait for that part at once, and names the error.
    [missing] = result["missing"]
    assert (missing["key"], missing["kind"], missing["agent"], missing["reason"]) == (
        "underwrite_score",
        "failed",
        "cashflow_underwriter",
        "ValueError: no inflows to underwrite",
    )


def test_treasury_sample_is_amber_on_var(capsys: Capture) -> None:
    code, result = run(capsys, "treasury")
    assert code == 0
    assert decision(result) == {
        "status": "amber",
        "lines": [
            "VaR 99% 10d: historical 213.45, parametric 188.02, ES 213.45",
            "VaR above the limit 150.00",
            "LCR 111.18% (compliant)",
            "ALM breaches: none; NII impact -12.00",
        ],
        "missing": [],
    }
    code, result = run(capsys, "treasury", "--set", "VAR_LIMIT=250")
    assert decision(result)["status"] == "green"


def test_treasury_short_of_liquidity_is_red(tmp_path: Path, capsys: Capture) -> None:
    snapshot = yaml.safe_load((DATA / "treasury-snapshot.yaml").read_text())
    snapshot["lcr"]["hqla"] = {"level1": 500}
    snapshot["alm"]["liabilities"]["1-7d"] = 3300  # a 2,800 deficit in week one: 23 %
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump(snapshot))
    code, result = run(capsys, "treasury", "--input", str(path), "--set", "VAR_LIMIT=250")
    assert code == 0
    out = decision(result)
    assert out["status"] == "red"
    # outflows 300 + 350 + 200 + 240 + 150 + 40 = 1,280, less 260 inflows = 1,020
    assert out["lines"][1] == "LCR 49.02% (short by 520.00)"
    assert out["lines"][2].startswith("ALM breaches: 1-7d, 8-14d")


@requires("mcp", extra="mcp")  # its circulars come from the catalogue's MCP server
def test_research_sample_is_a_cited_brief_offline(capsys: Capture) -> None:
    code, result = run(capsys, "research")
    assert code == 0
    brief = decision(result)
    # the scripted model searched fiu_ind, rbi and the circulars (one step), then answered
    assert (brief["mode"], brief["steps"]) == ("react", 2)
    assert [c["title"] for c in brief["citations"]] == [
        "FIU-IND reporting",
        "RBI master directions",
        "PMLA reporting obligations: STR, CTR, CCR",
        "Master Direction - Know Your Customer (KYC) Direction, 2016",
    ]
    assert brief["question"] == "What must a regulated entity report to FIU-IND, and by when?"


@pytest.mark.parametrize(
    "name",
    [
        "onboarding",
        "lending",
        "treasury",
        pytest.param("research", marks=requires("mcp", extra="mcp")),
        pytest.param("advice", marks=requires("mcp", extra="mcp")),
    ],
)
def test_from_python(name: str) -> None:
    result = anyio.run(load_pipeline(PIPELINES / f"{name}.yaml").run)
    assert result.ok
    assert result.output is not None


def test_specialists_go_never_reached_are_reached_by_a_route(capsys: Capture) -> None:
    code = main(["run", str(Path(__file__).parent / "good" / "insights.yaml"), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    # rent 25,000 x 0.4 + power 2,200 x 3.0 + food 2,800 x 1.2 + shopping 1,899 x 0.9
    # + rides 250 x 2.5 + streaming 649 x 0.3, per 1,000: 22.489 kg
    assert decision(result)["total_kg_co2e"] == 22.489
    stats = result["stats"]
    # ingestor, normalizer, enricher, analyzer, both specialists, and the sink that takes
    # the subscriptions: every delivery handled, nothing dead-lettered; and the answer the
    # caller's ask collected.
    assert stats["delivered"] == stats["handled"] == 7
    assert stats["collected"] == 1
    assert result["dead_letters"] == []
