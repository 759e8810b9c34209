"""The finance-flow agents, called directly with a TestContext (no runtime): numbers checked
against hand-computed cases, edge cases and error paths of the reference §7.2."""

from __future__ import annotations

import re
import time
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
from genie_agents.finance.ingest import normalize_merchant
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
from genie_agents.finance.statement import MAX_AMOUNT, MAX_ROWS, StatementError, parse_statement
from genie_agents.support import Fallback
from pydantic import ValidationError

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
HEAD = "date,description,amount,type\n"


def test_parse_statement_is_exact_and_negates_debits() -> None:
    rows = parse_statement(
        "Date , Description,Amount,TYPE\n2026-01-01,Salary,50000,credit\n"
        "2026-01-02,Coffee,12.34,DEBIT\n2026-01-03,Refund,-5,debit\n"
        '2026-01-04,Bonus,"1,234.50",credit\n2026-01-05,Tea,0.1000,debit\n'
    )
    assert [t.amount_cents for t in rows] == [5_000_000, -1234, -500, 123_450, -10]
    assert [t.direction for t in rows] == ["credit", "debit", "debit", "credit", "debit"]
    assert [t.transaction_id for t in rows] == [f"txn-000{i}" for i in range(1, 6)]
    assert rows[0].category == ""  # category is optional
    assert rows[0].currency == ""  # left for the normalizer


def test_decimal_amounts_add_up_to_the_cent() -> None:
    """19.99 + 0.29 is 20.28: as floats truncated to cents it was 1998 + 28 = 2026."""
    rows = parse_statement(HEAD + "2026-01-01,a,19.99,debit\n2026-01-01,b,0.29,debit\n")
    assert [t.amount_cents for t in rows] == [-1999, -29]
    assert analyze(EnrichedTransactions(transactions=rows)).total_expense_cents == 2028
    # every two-decimal amount up to 1000.00 survives exactly (float truncation lost 1 in 5)
    cents = range(0, 100_001, 7)
    text = HEAD + "".join(f"2026-01-01,x,{c // 100}.{c % 100:02d},credit\n" for c in cents)
    assert [t.amount_cents for t in parse_statement(text, max_rows=len(cents))] == list(cents)


def test_a_byte_order_mark_is_skipped() -> None:
    (row,) = parse_statement("\ufeff" + HEAD + "2026-01-01,x,1,debit\n")
    assert row.date == "2026-01-01"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("  \n", 1, "empty csv content"),
        ("", 1, "empty csv content"),
        ("\ufeff", 1, "empty csv content"),
        ("date,description,amount,type", 1, "csv must have header + at least one row"),
        ("date,amount,type\n2026-01-01,1,debit", 1, 'missing column "description"'),
        (HEAD + "2026-01-01,x,1,debit,extra", 2, "5 columns, expected 4"),
        (HEAD + "2026-01-01,x,1,debit\n2026-01-02,x,1", 3, "3 columns, expected 4"),
        (HEAD + "2026-01-01,x,ten,debit", 2, "amount 'ten' is not a decimal number"),
        (HEAD + "2026-01-01,x,,debit", 2, "amount '' is not a decimal number"),
        (HEAD + "2026-01-01,x,1,dbit", 2, "type 'dbit' is neither debit nor credit"),
        (HEAD + "2026-01-01,x,1,", 2, "type '' is neither debit nor credit"),
        (HEAD + "2026-13-45,x,1,debit", 2, "date '2026-13-45' is not a real day"),
        (HEAD + "2026-02-29,x,1,debit", 2, "date '2026-02-29' is not a real day"),
        (HEAD + "20260101,x,1,debit", 2, "date '20260101' is not a real day"),
        (HEAD + "01/02/2026,x,1,debit", 2, "date '01/02/2026' is not a real day"),
        (HEAD + "2026-01-01,x,NaN,debit", 2, "amount 'NaN' is not a decimal number"),
        (HEAD + "2026-01-01,x,nan,debit", 2, "amount 'nan' is not a decimal number"),
        (HEAD + "2026-01-01,x,inf,debit", 2, "amount 'inf' is not a decimal number"),
        (HEAD + "2026-01-01,x,-Infinity,debit", 2, "amount '-Infinity' is not a decimal"),
        (HEAD + "2026-01-01,x,1e300,debit", 2, "amount '1e300' is not a decimal number"),
        (HEAD + "2026-01-01,x,1E3,debit", 2, "amount '1E3' is not a decimal number"),
        (HEAD + "2026-01-01,x,0x10,debit", 2, "amount '0x10' is not a decimal number"),
        (HEAD + "2026-01-01,x,1_000,debit", 2, "amount '1_000' is not a decimal number"),
        (HEAD + '2026-01-01,x,"12,34",debit', 2, "amount '12,34' is not a decimal number"),
        (HEAD + "2026-01-01,x,1000000000000.01,credit", 2, "larger than the limit"),
        (HEAD + "2026-01-01,x,-9" + "9" * 40 + ",debit", 2, "larger than the limit"),
        (HEAD + "2026-01-01,x,12.349,debit", 2, "amount '12.349' has more than two decimal"),
        # a sign that says the opposite of the type: Go made -450 credit a 450 expense
        (HEAD + "2026-01-01,x,-450,credit", 2, "amount '-450' is money out but the type says"),
        (HEAD + "2026-01-01,x,+450,debit", 2, "amount '+450' is money in but the type says debit"),
        (
            "date,description,amount,type,amount\n2026-01-01,x,1,debit,2\n",
            1,
            'column "amount" is given twice (columns 3 and 5)',
        ),
        (HEAD + "2026-01-01,x,1,debit,\n", 2, "5 columns, expected 4"),
        (HEAD + "2026-01-01,x,1,debit\n\n\n2026-01-01,x,1,dbit\n", 5, "type 'dbit'"),
        (
            HEAD + '2026-01-01,"two\nlines",1,debit\n2026-01-02,"three\n\nlines",1,debit\n'
            "2026-01-03,x,1,credt\n",
            7,
            "type 'credt'",
        ),
        (
            "date,description,amount,type,time\n2026-01-01,x,1,debit,25:00\n",
            2,
            "time: String should match pattern",
        ),
    ],
)
def test_bad_statements_name_the_file_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(StatementError, match=re.escape(problem)) as caught:
        parse_statement(text, source="bad.csv")
    assert (caught.value.line, caught.value.source) == (line, "bad.csv")
    assert str(caught.value) == f"bad.csv:{line}: {caught.value.problem}"
    with pytest.raises(ValueError, match=f"^line {line}: .*" + re.escape(problem)):
        parse_statement(text)  # a StatementError is a ValueError; without a name, the line


NINES = "9" * 37  # a quoted value keeps its first 37 characters, then "..."


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("2026-01-01,x,{long},debit", f"amount '{NINES}...' is larger than the limit"),
        ("2026-01-01,x,1{long}x,debit", f"amount '1{NINES[1:]}...' is not a decimal"),
        ("2026-01-01,x,1.{long},debit", f"amount '1.{NINES[2:]}...' has more than two"),
        ("2026-01-01,x,1,{long}", f"type '{NINES}...' is neither debit nor credit"),
        ("{long},x,1,debit", f"date '{NINES}...' is not a real day"),
    ],
)
def test_a_long_value_is_cut_in_the_message(row: str, problem: str) -> None:
    """The adversary's 5,000-digit amount was echoed whole; a value is quoted up to 40
    characters, so a refusal stays one readable line whatever the row holds."""
    with pytest.raises(StatementError) as caught:
        parse_statement(HEAD + row.format(long="9" * 5000) + "\n", source="bad.csv")
    assert caught.value.problem.startswith(problem)
    assert len(str(caught.value)) < 120


def test_a_statement_is_read_up_to_its_row_limit_and_no_further() -> None:
    rows = "".join(f"2026-01-0{d},x,1,debit\n" for d in range(1, 4))
    assert len(parse_statement(HEAD + rows, max_rows=3)) == 3
    # Past the limit nothing more is read: the broken row after it is never reached.
    with pytest.raises(StatementError, match=r"^bad\.csv:4: more than 2 transactions") as caught:
        parse_statement(HEAD + rows + '2026-01-04,"unclosed,1,debit\n', "bad.csv", max_rows=2)
    assert caught.value.problem == (
        "more than 2 transactions, the limit for one statement; split it by period"
    )


def test_at_the_real_row_limit_a_million_rows_cost_no_more_than_one_past_it() -> None:
    """At MAX_ROWS the statement is read; one row more is refused at its line, and a million
    rows past it cost no more than that one (they are never parsed)."""
    row = "2026-01-03,Swiggy order,450,debit\n"
    assert len(parse_statement(HEAD + row * MAX_ROWS)) == MAX_ROWS
    started = time.process_time()
    with pytest.raises(StatementError, match=f"^line {MAX_ROWS + 2}: more than 10,000 trans"):
        parse_statement(HEAD + row * 1_000_000)
    assert time.process_time() - started < 1.0


def test_the_largest_amount_is_accepted() -> None:
    (top,) = parse_statement(HEAD + f"2026-01-01,x,{MAX_AMOUNT},credit\n")
    assert top.amount_cents == 10**14
    with pytest.raises(StatementError, match="larger than the limit"):
        parse_statement(HEAD + f"2026-01-01,x,{MAX_AMOUNT + 1},credit\n")


def test_a_bad_statement_is_refused_where_the_question_enters() -> None:
    with pytest.raises(ValidationError, match="line 3: type 'dbit'"):
        FinanceQuestion(question="Q?", csv=HEAD + "2026-01-01,x,1,debit\n2026-01-01,x,1,dbit\n")


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
            Transaction(date="2026-01-05", amount_cents=-1, description="  Uber ride "),
            Transaction(
                transaction_id="keep",
                date="2026-01-05",
                amount_cents=1,
                currency="USD",
                description="x",
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


STATEMENT = HEAD + "2026-01-01,x,1,debit\n"


async def test_supervisor_fans_in_once_whatever_the_order() -> None:
    sup = FinancialSupervisor("financial_supervisor")
    (ingest,) = await call(sup, FinanceQuestion(question="Q?", csv=STATEMENT))
    assert ingest.payload == IngestCsv(csv=STATEMENT)
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
    await call(sup, FinanceQuestion(question="one", csv=STATEMENT), cid="one")
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
    assert render_report(request, "go") == (
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
    (out,) = await call(Reporter("reporter", format="go"), req)
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


@pytest.mark.parametrize("amount", ["\u0661\u0662", "1\u00a0000", "\uff11", "1.\u0665"])
def test_only_ascii_digits_are_amounts(amount: str) -> None:
    with pytest.raises(StatementError, match="is not a decimal number"):
        parse_statement(HEAD + f"2026-01-01,x,{amount},debit\n")


def test_a_huge_digit_string_is_refused_quickly() -> None:
    with pytest.raises(StatementError, match="larger than the limit"):
        parse_statement(HEAD + "2026-01-01,x," + "9" * 100_000 + ",debit\n")  # int() refuses >4300
