"""The finance report a person reads: amounts as currency (Indian grouping for INR), no raw
JSON; the Go system's report stays one parameter away (``format: go``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from genie_agents.finance import Reporter
from genie_agents.finance.models import (
    Anomalies,
    Anomaly,
    FinalReportRequest,
    ForecastResult,
    Recommendation,
    Recommendations,
)
from genie_agents.finance.report import format_amount, render_report

from genie._cli.main import main

from .helpers import call

ROOT = Path(__file__).resolve().parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"

# `make run`'s output: the shipped sample statement, read as a person reads money.
SAMPLE_REPORT = """\
Genie Financial Report
Question: Where am I overspending vs last month?

  Income   ₹1,00,000.00
  Expense    ₹32,798.00
  Net        ₹67,202.00

Top categories: housing:rent, food:delivery, Utilities

Forecast of the net
  1 month     ₹67,202.00
  3 months  ₹2,01,606.00
  6 months  ₹4,03,212.00

Anomalies: none

Recommendations
  - Consider trimming "housing:rent": impact ₹2,500.00, medium confidence
    1 txns in "housing:rent" this period.
  - Consider trimming "food:delivery": impact ₹280.00, medium confidence
    3 txns in "food:delivery" this period.
  - Consider trimming "Utilities": impact ₹220.00, medium confidence
    1 txns in "Utilities" this period.
"""


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (0, "INR", "₹0.00"),
        (5, "INR", "₹0.05"),
        (99_999, "INR", "₹999.99"),
        (100_000, "INR", "₹1,000.00"),
        (10_000_000, "INR", "₹1,00,000.00"),  # one lakh
        (123_456_789_00, "INR", "₹12,34,56,789.00"),  # crores
        (-3_279_800, "INR", "-₹32,798.00"),
        (-1, "INR", "-₹0.01"),
        (123_456_789_00, "USD", "$123,456,789.00"),
        (150, "EUR", "€1.50"),
        (1_000_050, "CHF", "CHF 10,000.50"),
        (1_000_050, "", "10,000.50"),
    ],
)
def test_amounts_read_as_currency(cents: int, currency: str, text: str) -> None:
    assert format_amount(cents, currency) == text


def test_make_run_prints_the_readable_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(FINANCE)]) == 0
    out = capsys.readouterr().out
    assert out == SAMPLE_REPORT
    assert "minor units" not in out
    assert not re.search(r"[{}\[\]]", out)  # no JSON anywhere


def test_the_gather_variant_prints_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(FINANCE.with_name("finance-gather.yaml"))]) == 0
    assert capsys.readouterr().out == SAMPLE_REPORT


def test_an_unknown_format_is_refused_before_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(FINANCE), "--set", "REPORT_FORMAT=json"]) == 2
    err = capsys.readouterr().err
    assert "finance.yaml:" in err
    assert "params.format: Input should be 'text' or 'go'" in err


def request(**fields: object) -> FinalReportRequest:
    base: dict[str, object] = {
        "question": "Q",
        "currency": "USD",
        "total_income_cents": 1_234_567,
        "total_expense_cents": 7_654_321,
        "net_cents": -6_419_754,
        "top_overspend": (),
    }
    return FinalReportRequest.model_validate(base | fields)


def test_every_branch_in_words() -> None:
    anomalies = Anomalies(
        anomalies=(
            Anomaly(
                transaction_id="t9",
                category="travel",
                amount_cents=-9_900_000,
                z_score=3.2,
                reason="far above the category's mean",
            ),
        )
    )
    recs = Recommendations(
        currency="USD",
        recommendations=(
            Recommendation(
                title="Cap travel",
                impact_cents=50_000,
                confidence="high",
                action="set_budget",
                rationale="Three trips this month.",
                informational=False,
            ),
        ),
    )
    forecast = ForecastResult(
        currency="USD",
        monthly_net_cents=-10,
        horizon_1m_cents=-10,
        horizon_3m_cents=-30,
        horizon_6m_cents=-60,
    )
    text = render_report(request(forecast=forecast, anomalies=anomalies, recommendations=recs))
    assert text == (
        "Genie Financial Report\n"
        "Question: Q\n"
        "\n"
        "  Income    $12,345.67\n"
        "  Expense   $76,543.21\n"
        "  Net      -$64,197.54\n"
        "\n"
        "Forecast of the net\n"
        "  1 month   -$0.10\n"
        "  3 months  -$0.30\n"
        "  6 months  -$0.60\n"
        "\n"
        "Anomalies\n"
        "  - travel: -$99,000.00 (t9): far above the category's mean\n"
        "\n"
        "Recommendations\n"
        "  - Cap travel: impact $500.00, high confidence\n"
        "    Three trips this month.\n"
    )


def test_empty_and_missing_branches() -> None:
    text = render_report(
        request(
            anomalies=Anomalies(anomalies=None),
            recommendations=Recommendations(currency="USD", recommendations=()),
        )
    )
    assert "Anomalies: too few transactions to tell\n" in text
    assert "Recommendations: none\n" in text
    assert "Forecast" not in text  # a branch that never arrived is left out, as in Go


async def test_the_go_format_is_the_go_report() -> None:
    req = request(anomalies=Anomalies(anomalies=()))
    (out,) = await call(Reporter("reporter", format="go"), req)
    assert out.payload.text == render_report(req, "go")
    assert out.payload.text.splitlines()[3:] == [
        "Income:  1234567 (minor units)",
        "Expense: 7654321 (minor units)",
        "Net:     -6419754 (minor units)",
        "Anomalies: " + json.dumps({"anomalies": []}, separators=(",", ":")),
    ]
    (out,) = await call(Reporter("reporter"), req)
    assert out.payload.text == render_report(req)
    assert "minor units" not in out.payload.text
