"""The finance-flow agents, called directly with a TestContext (no runtime): numbers checked
against hand-computed cases, edge cases and error paths of the reference §7.2."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from genie_agents.finance import (
    Analyzer,
    AnomalyDetector,
    Enricher,
    FinancialSupervisor,
    Forecaster,
    Normalizer,
    Recommender,
    Reporter,
)
from genie_agents.finance.analysis import analyze
from genie_agents.finance.ingest import normalize_merchant, parse_statement
from genie_agents.finance.models import (
    AnalysisResult,
    Anomalies,
    CategoryTotal,
    EnrichedTransactions,
    FinalReportRequest,
    FinanceQuestion,
    ForecastResult,
    IngestCsv,
    NormalizedTransactions,
    RawTransactions,
    Recommendation,
    Recommendations,
    Transaction,
)
from genie_agents.finance.report import go_json, render_report
from genie_agents.support import Fallback

from genie import (
    InvalidMessageError,
    Message,
    MessageTypes,
    TestContext,
    UnhandledMessageError,
)

from .helpers import T0, call


def txn(amount: int, category: str = "", merchant: str = "", tid: str = "") -> Transaction:
    return Transaction(
        transaction_id=tid,
        date="2026-01-01",
        amount_cents=amount,
        currency="INR",
        category=category,
        merchant=merchant,
    )


# --- ingestor -------------------------------------------------------------------------------
def test_parse_statement_truncates_and_negates_debits() -> None:
    rows = parse_statement(
        "Date , Description,Amount,TYPE\n2026-01-01,Salary,50000,credit\n"
        "2026-01-02,Coffee,12.349,debit\n2026-01-03,Refund,-5,debit\n"
    )
    assert [t.amount_cents for t in rows] == [5_000_000, -1234, -500]
    assert [t.transaction_id for t in rows] == ["txn-0001", "txn-0002", "txn-0003"]
    assert rows[0].category == ""  # category is optional
    assert rows[0].currency == ""  # left for the normalizer


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("  \n", "empty csv content"),
        ("date,description,amount,type", "csv must have header + at least one row"),
        ("date,amount,type\n2026-01-01,1,debit", 'missing column "description"'),
        (
            "date,description,amount,type\n2026-01-01,x,1,debit,extra",
            "row 1 has 5 cols, expected 4",
        ),
        (
            "date,description,amount,type\n2026-01-01,x,ten,debit",
            "row 1 amount: 'ten' is not a number",
        ),
    ],
)
def test_parse_statement_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_statement(text)


async def test_ingestor_emits_raw_transactions() -> None:
    from genie_agents.finance import Ingestor

    (out,) = await call(
        Ingestor("ingestor"), IngestCsv(csv="date,description,amount,type\n2026-01-01,x,1,debit\n")
    )
    assert isinstance(out.payload, RawTransactions)
    assert out.payload.transactions[0].amount_cents == -100


# --- normalizer and enricher ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("description", "merchant"),
    [
        ("Swiggy order", "swiggy"),
        ("  UBER-ride ", "uber"),
        ("AMAZON/IN", "amazon"),
        ("netflix*monthly", "netflix"),
        ("rent#jan", "rent"),
        ("Electricity bill", "electricity"),
        ("ola_cabs", "ola"),
        ("Salary", "salary"),
    ],
)
def test_normalize_merchant(description: str, merchant: str) -> None:
    assert normalize_merchant(description) == merchant


async def test_normalizer_fills_currency_account_and_ids() -> None:
    raw = RawTransactions(
        transactions=(
            Transaction(date="d", amount_cents=-1, description="  Uber ride "),
            Transaction(
                transaction_id="keep", date="d", amount_cents=1, currency="USD", description="x"
            ),
        )
    )
    (out,) = await call(Normalizer("normalizer"), raw, metadata={"account_id": "acct-9"})
    first, second = out.payload.transactions
    assert (first.currency, first.account_id, first.description, first.merchant) == (
        "INR",
        "acct-9",
        "Uber ride",
        "uber",
    )
    assert first.transaction_id == "txn-acct-9-0001"
    assert (second.transaction_id, second.currency) == ("keep", "USD")
    (eur,) = await call(Normalizer("normalizer"), raw, metadata={"currency": "EUR"})
    assert eur.payload.transactions[0].currency == "EUR"


async def test_enricher_known_merchant_overrides_unknown_keeps() -> None:
    batch = NormalizedTransactions(
        transactions=(
            txn(-1, "Food", "swiggy"),
            txn(-1, "Utilities", "electricity"),  # 'electricity' is not the key 'electric'
            txn(-1, "", "corner-shop"),
            txn(-1, "", "electric"),
        )
    )
    (out,) = await call(Enricher("enricher"), batch)
    assert [t.category for t in out.payload.transactions] == [
        "food:delivery",
        "Utilities",
        "uncategorized",
        "utilities:power",
    ]


# --- analyzer and its branches --------------------------------------------------------------
def test_analyze_totals_and_categories() -> None:
    result = analyze(
        EnrichedTransactions(
            transactions=(
                txn(10_000, "income"),
                txn(-300, "a"),
                txn(-500, "b"),
                txn(-200, "a"),
                txn(-50, "c"),
                txn(-10, "d"),
            )
        )
    )
    assert (result.total_income_cents, result.total_expense_cents, result.net_cents) == (
        10_000,
        1060,
        8940,
    )
    assert result.by_category == (
        CategoryTotal(category="a", amount_cents=500, count=2),
        CategoryTotal(category="b", amount_cents=500, count=1),
        CategoryTotal(category="c", amount_cents=50, count=1),
        CategoryTotal(category="d", amount_cents=10, count=1),
    )
    assert result.top_overspend == ("a", "b", "c")
    assert result.currency == "INR"


async def test_analyzer_on_nothing() -> None:
    (out,) = await call(Analyzer("analyzer"), EnrichedTransactions(transactions=()))
    assert out.payload.currency == ""
    assert out.payload.top_overspend == ()


def analysis(*txns: Transaction) -> AnalysisResult:
    return analyze(EnrichedTransactions(transactions=txns))


async def test_forecaster_projects_the_net() -> None:
    (out,) = await call(Forecaster("forecaster"), analysis(txn(1000), txn(-1250)))
    assert out.payload == ForecastResult(
        currency="INR",
        monthly_net_cents=-250,
        horizon_1m_cents=-250,
        horizon_3m_cents=-750,
        horizon_6m_cents=-1500,
    )


async def test_anomaly_at_exactly_two_sigma() -> None:
    # mean 280, population sigma 360: the 1000 debit has z = 720 / 360 = 2.0 exactly.
    debits = [txn(-a, "x", tid=f"t{i}") for i, a in enumerate((100, 100, 100, 100, 1000))]
    (out,) = await call(AnomalyDetector("anomaly_detector"), analysis(*debits))
    (found,) = out.payload.anomalies
    assert (found.transaction_id, found.amount_cents, found.z_score) == ("t4", 1000, 2.0)
    assert found.reason == "amount > mean + threshold*stddev for category"
    stricter = AnomalyDetector("a", threshold=2.5)
    (none,) = await call(stricter, analysis(*debits))
    assert none.payload.anomalies == ()


async def test_anomaly_edge_cases() -> None:
    detector = AnomalyDetector("anomaly_detector")
    (few,) = await call(detector, analysis(txn(-5, "x")))
    assert few.payload.anomalies is None  # fewer than two transactions: null, as in Go
    assert go_json(few.payload) == '{"anomalies":null}'
    (flat,) = await call(detector, analysis(txn(-5, "x"), txn(-5, "x"), txn(-9, "y")))
    assert flat.payload.anomalies == ()  # sigma 0 and a single debit are skipped
    assert go_json(flat.payload) == '{"anomalies":[]}'
    with pytest.raises(ValueError, match="threshold must be positive"):
        AnomalyDetector("a", threshold=0)


async def test_recommender_warns_first_when_net_is_negative() -> None:
    (out,) = await call(
        Recommender("recommender"), analysis(txn(100), txn(-599, "rent"), txn(-7, "tea"))
    )
    first, rent, tea = out.payload.recommendations
    assert first == Recommendation(
        title="Spending exceeds income this period",
        impact_cents=506,
        confidence="high",
        action="review_largest_categories",
        rationale="Net cashflow is -506 INR (negative).",
        informational=True,
    )
    assert "category" not in go_json(out.payload).split("},")[0]  # omitted when empty, as Go
    assert (rent.category, rent.impact_cents, rent.rationale) == (
        "rent",
        59,
        '1 txns in "rent" this period.',
    )
    assert tea.impact_cents == 0


# --- supervisor, reporter, fallback ---------------------------------------------------------
def parts() -> tuple[AnalysisResult, ForecastResult, Anomalies, Recommendations]:
    a = analysis(txn(100), txn(-40, "x"))
    return (
        a,
        ForecastResult(
            currency="INR",
            monthly_net_cents=60,
            horizon_1m_cents=60,
            horizon_3m_cents=180,
            horizon_6m_cents=360,
        ),
        Anomalies(anomalies=()),
        Recommendations(currency="INR", recommendations=()),
    )


async def test_supervisor_fans_in_once_whatever_the_order() -> None:
    sup = FinancialSupervisor("financial_supervisor")
    (ingest,) = await call(sup, FinanceQuestion(question="Q?", csv="data"))
    assert ingest.payload == IngestCsv(csv="data")
    a, f, an, r = parts()
    for payload in (r, an, a):
        assert await call(sup, payload) == []
    (done,) = await call(sup, f)
    assert isinstance(done.payload, FinalReportRequest)
    assert (done.payload.question, done.payload.net_cents, done.payload.forecast) == ("Q?", 60, f)
    assert sup.pending == 0
    assert await call(sup, f) == []  # a straggler starts a new session, never a second report


async def test_supervisor_keeps_requests_apart_and_expires_sessions() -> None:
    sup = FinancialSupervisor("s", session_ttl=60, max_sessions=2)
    a, f, an, _r = parts()
    await call(sup, FinanceQuestion(question="one", csv=""), cid="one")
    await call(sup, a, cid="two")
    assert sup.pending == 2
    await call(sup, f, cid="three", at=T0 + timedelta(seconds=30))  # over max_sessions: 'one' goes
    assert sup.pending == 2
    assert sup.expired == 1
    await call(sup, an, cid="three", at=T0 + timedelta(seconds=61))  # 'two' is older than 60 s
    assert (sup.pending, sup.expired) == (1, 2)
    with pytest.raises(ValueError, match="session_ttl"):
        FinancialSupervisor("s", session_ttl=0)


def test_report_lines() -> None:
    _a, _f, an, _r = parts()
    request = FinalReportRequest(
        question="Q",
        currency="INR",
        total_income_cents=1,
        total_expense_cents=2,
        net_cents=-1,
        top_overspend=(),
        forecast=None,
        anomalies=an,
        recommendations=None,
    )
    assert render_report(request) == (
        "Genie Financial Report\nQuestion: Q\nCurrency: INR\nIncome:  1 (minor units)\n"
        'Expense: 2 (minor units)\nNet:     -1 (minor units)\nAnomalies: {"anomalies":[]}\n'
    )


def test_go_json_escapes_html() -> None:
    assert go_json(IngestCsv(csv="<a&b>")) == '{"csv":"\\u003ca\\u0026b\\u003e"}'


async def test_reporter_renders() -> None:
    _a, f, an, r = parts()
    req = FinalReportRequest(
        question="Q",
        currency="INR",
        total_income_cents=100,
        total_expense_cents=40,
        net_cents=60,
        top_overspend=("x",),
        forecast=f,
        anomalies=an,
        recommendations=r,
    )
    (out,) = await call(Reporter("reporter"), req)
    assert out.payload.text.splitlines()[6] == "Top categories: x"


async def test_fallback_notice() -> None:
    fb = Fallback("recommender_fallback")
    msg = Message.new(IngestCsv(csv=""), sender="user", id="m-1")
    out: Any
    (out,) = await fb.handle(msg, TestContext(fb.id, msg))
    assert out.recipient == "user"
    assert out.payload.text == (
        "The recommender agent could not complete your request. "
        "A human reviewer will follow up. Reference id: m-1"
    )
    assert fb.name == "Fallback for recommender"


# --- bad payloads ---------------------------------------------------------------------------
async def test_wrong_payload_is_unhandled() -> None:
    with pytest.raises(UnhandledMessageError, match="agent 'forecaster' has no handler"):
        await call(Forecaster("forecaster"), IngestCsv(csv=""))


def test_invalid_payload_names_type_and_field() -> None:
    types = MessageTypes([ForecastResult])
    with pytest.raises(
        InvalidMessageError, match="invalid 'forecast_result' message: field 'monthly_net_cents'"
    ):
        types.parse_payload("forecast_result", {"currency": "INR", "monthly_net_cents": "lots"})
