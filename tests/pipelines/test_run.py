"""Running pipelines from the CLI and from Python: the finance report byte for byte, JSON
output, variables, inputs, denies, failures, fallbacks, timeouts and the audit log."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import anyio
import pytest

from genie import verify_audit_log
from genie._cli.main import main
from genie._runtime.audit import read_audit_key
from genie.pipeline import InputError, load_pipeline

ROOT = Path(__file__).resolve().parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"
GOOD = Path(__file__).parent / "good"

# The Go system's report (`--set REPORT_FORMAT=go`), derived by hand from the Go reporter's
# logic for the shipped sample statement.
GO = ["--set", "REPORT_FORMAT=go"]
FINANCE_REPORT = (
    "Genie Financial Report\n"
    "Question: Where am I overspending vs last month?\n"
    "Currency: INR\n"
    "Income:  10000000 (minor units)\n"
    "Expense: 3279800 (minor units)\n"
    "Net:     6720200 (minor units)\n"
    "Top categories: housing:rent, food:delivery, Utilities\n"
    'Forecast: {"currency":"INR","monthly_net_cents":6720200,"horizon_1m_cents":6720200,'
    '"horizon_3m_cents":20160600,"horizon_6m_cents":40321200}\n'
    'Anomalies: {"anomalies":[]}\n'
    'Recommendations: {"currency":"INR","recommendations":['
    '{"title":"Consider trimming \\"housing:rent\\"","category":"housing:rent",'
    '"impact_cents":250000,"confidence":"medium","action":"set_budget",'
    '"rationale":"1 txns in \\"housing:rent\\" this period.","informational":true},'
    '{"title":"Consider trimming \\"food:delivery\\"","category":"food:delivery",'
    '"impact_cents":28000,"confidence":"medium","action":"set_budget",'
    '"rationale":"3 txns in \\"food:delivery\\" this period.","informational":true},'
    '{"title":"Consider trimming \\"Utilities\\"","category":"Utilities",'
    '"impact_cents":22000,"confidence":"medium","action":"set_budget",'
    '"rationale":"1 txns in \\"Utilities\\" this period.","informational":true}]}\n'
)

Capture = pytest.CaptureFixture[str]


def test_finance_prints_the_go_report(capsys: Capture) -> None:
    assert main(["run", str(FINANCE), *GO]) == 0
    assert capsys.readouterr().out == FINANCE_REPORT


def test_finance_gather_variant_prints_the_same_report(capsys: Capture) -> None:
    assert main(["run", str(FINANCE.with_name("finance-gather.yaml")), *GO]) == 0
    assert capsys.readouterr().out == FINANCE_REPORT


def test_json_output(capsys: Capture) -> None:
    assert main(["run", str(FINANCE), "--json", *GO]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "ok"
    assert data["output"]["type"] == "final_report"
    assert data["output"]["sender"] == "reporter"
    assert data["output"]["payload"]["text"] == FINANCE_REPORT
    assert data["missing"] == data["dead_letters"] == []
    assert data["correlation_id"]
    stats = data["stats"]
    # 9 hops plus the analysis fanned out to 4 recipients: 13 deliveries to agents, 13
    # handler calls that returned; and the answer the caller's ask collected.
    assert stats["delivered"] == stats["handled"] == stats["calls"] == 13
    assert stats["collected"] == 1
    assert stats["denied"] == stats["dead_lettered"] == stats["shed"] == stats["in_flight"] == 0


def test_set_overrides_a_variable(capsys: Capture) -> None:
    assert main(["run", str(FINANCE), "--set", "QUESTION=Can I afford a bike?"]) == 0
    assert "Question: Can I afford a bike?\n" in capsys.readouterr().out


def test_bad_set_is_a_usage_error(capsys: Capture) -> None:
    assert main(["run", str(FINANCE), "--set", "QUESTION"]) == 2
    assert "--set 'QUESTION': expected KEY=VALUE" in capsys.readouterr().err


def test_a_variable_set_twice_to_two_values_is_a_usage_error(capsys: Capture) -> None:
    # The last --set won without a word, as a key given twice in a YAML mapping would.
    args = ["--set", "QUESTION=Bike?", "--set", "QUESTION=Car?"]
    assert main(["run", str(FINANCE), *args]) == 2
    err = capsys.readouterr().err
    assert "--set 'QUESTION=Car?': QUESTION is set twice, first to 'Bike?': give it once" in err
    assert main(["run", str(FINANCE), "--set", "QUESTION=Bike?", "--set", "QUESTION=Bike?"]) == 0


def test_input_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    csv = "date,description,amount,type\n2026-02-01,Salary,100,credit\n2026-02-02,Uber,250,debit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(csv))
    assert main(["run", str(FINANCE), "--input", "-"]) == 0
    out = capsys.readouterr().out
    assert [line.split() for line in out.splitlines() if line.startswith("  Net")] == [
        ["Net", "-₹150.00"]
    ]
    assert "Spending exceeds income this period" in out


def test_missing_input_file(capsys: Capture) -> None:
    assert main(["run", str(FINANCE), "--input", "no/such.csv"]) == 2
    err = capsys.readouterr().err
    assert err == "genie run: cannot read input no/such.csv: does not exist\n"


@pytest.mark.parametrize(
    ("csv", "line", "reason"),
    [
        ("", 1, "empty csv content"),
        ("\ufeff\n", 1, "empty csv content"),
        ("date,description,amount,type\n", 1, "csv must have header + at least one row"),
        ("date,description,type\n2026-01-01,x,debit\n", 1, 'missing column "amount"'),
        ("date,description,amount,type\n2026-01-01,x,1\n", 2, "3 columns, expected 4"),
        ("date,description,amount,type\n2026-01-01,x,lots,debit\n", 2, "amount 'lots'"),
        ("date,description,amount,type\n\n2026-01-01,x,1,dbit\n", 3, "type 'dbit'"),
        ("date,description,amount,type\n2026-13-45,x,1,debit\n", 2, "date '2026-13-45'"),
        ("date,description,amount,type\n2026-01-01,x,NaN,debit\n", 2, "amount 'NaN'"),
        ("date,description,amount,type\n2026-01-01,x,inf,credit\n", 2, "amount 'inf'"),
        ("date,description,amount,type\n2026-01-01,x,1e300,credit\n", 2, "amount '1e300'"),
        # A latitude off the Earth was read as a place (the fraud rules measure travel).
        (
            "date,description,amount,type,latitude\n2026-01-01,x,1,debit,1000\n",
            2,
            "latitude: Input should be less than or equal to 90",
        ),
        # A currency column was not read: dollars were added to rupees as rupees.
        (
            "date,description,amount,type,currency\n2026-01-01,Pay,500,credit,INR\n"
            "2026-01-02,Hotel,900,debit,usd\n",
            3,
            "currency 'USD' is not the statement's 'INR' (line 2): one statement, one currency",
        ),
        (
            "date,description,amount,type,currency\n2026-01-01,Pay,500,credit,rupees\n",
            2,
            "currency 'rupees' is not a three-letter ISO 4217 code",
        ),
        (
            "date,description,amount,type\n2026-01-01,Refund,-450,credit\n",
            2,
            "amount '-450' is money out but the type says credit",
        ),
        (
            'date,description,amount,type\n2026-01-01,"a\nb",1,debit\n2026-01-01,x,1e9999,debit\n',
            4,
            "amount '1e9999'",
        ),
    ],
)
def test_bad_csv_is_bad_input_naming_file_and_line(
    tmp_path: Path, capsys: Capture, csv: str, line: int, reason: str
) -> None:
    """Exit 2 (bad input, nothing ran) with one line naming the file and the file line."""
    bad = tmp_path / "bad.csv"
    bad.write_text(csv, encoding="utf-8")
    assert main(["run", str(FINANCE), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genie run: {bad}, line {line}: {reason}")
    assert err.endswith("(finance_question.csv)\n")
    assert err.count("\n") == 1
    pipeline = load_pipeline(FINANCE)
    with pytest.raises(InputError, match=re.escape(f"{bad}, line {line}: {reason}")) as caught:
        anyio.run(lambda: pipeline.run(input_path=str(bad)))
    assert caught.value.line == line


def test_a_statement_in_one_currency_is_reported_in_it(tmp_path: Path, capsys: Capture) -> None:
    # A blank cell is the statement's currency, not the default INR.
    usd = tmp_path / "usd.csv"
    usd.write_text(
        "date,description,amount,type,currency\n2026-01-01,Pay,500,credit,USD\n"
        "2026-01-02,Hotel,120.50,debit,\n"
    )
    assert main(["run", str(FINANCE), "--input", str(usd)]) == 0
    out = capsys.readouterr().out
    assert "Income   $500.00" in out
    assert "Expense  $120.50" in out
    assert "₹" not in out


def test_input_that_is_not_utf8_or_has_a_bom(tmp_path: Path, capsys: Capture) -> None:
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"date,description,amount,type\n2026-01-01,Caf\xe9,1,debit\n")
    assert main(["run", str(FINANCE), "--input", str(latin)]) == 2
    assert capsys.readouterr().err == (
        f"genie run: {latin}, line 2: not UTF-8: byte 0xe9 at offset 43 (column 15); "
        "save the file as UTF-8\n"
    )
    bom = tmp_path / "excel.csv"
    sample = (ROOT / "config" / "data" / "sample.csv").read_text()
    bom.write_text(sample, encoding="utf-8-sig")  # a spreadsheet's export
    assert main(["run", str(FINANCE), "--input", str(bom)]) == 0
    with_bom = capsys.readouterr().out
    assert main(["run", str(FINANCE)]) == 0
    assert with_bom == capsys.readouterr().out


def test_denied_run_names_the_policy_and_is_audited(tmp_path: Path, capsys: Capture) -> None:
    log = tmp_path / "audit.jsonl"
    code = main(["run", str(FINANCE), "--set", "GENIE_USER= ", "--audit", str(log)])
    assert code == 1
    err = capsys.readouterr().err
    assert "the run ended denied" in err
    assert (
        "denied: finance_question to financial_supervisor by policy "
        'required_metadata[finance_question]: empty metadata key "user_id"'
    ) in err
    # Keyed by default, as a served log: the key is made beside a new log, and said where.
    key = log.with_name("audit.jsonl.key")
    assert (
        f"genie run: audit log {log} is keyed (HMAC-SHA-256) with a new key written to {key}" in err
    )
    assert not verify_audit_log(log).ok  # a keyed chain does not pass as a plain one
    verdict = verify_audit_log(log, key=read_audit_key(key))
    assert (verdict.ok, verdict.keyed) == (True, True)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["action"] for r in rows] == ["denied"]
    assert main(["audit", "verify", str(log)]) == 0  # finds the key beside the log
    # The next run continues the chain with the same key, and says nothing more about it.
    assert main(["run", str(FINANCE), "--set", "GENIE_USER= ", "--audit", str(log)]) == 1
    assert "audit log" not in capsys.readouterr().err
    assert verify_audit_log(log, key=read_audit_key(key)).rows == 2


def test_an_unkeyed_run_log_is_asked_for_and_said(tmp_path: Path, capsys: Capture) -> None:
    log = tmp_path / "audit.jsonl"
    argv = ["run", str(FINANCE), "--set", "GENIE_USER= ", "--audit", str(log), "--audit-unkeyed"]
    assert main(argv) == 1
    assert "is unkeyed (--audit-unkeyed)" in capsys.readouterr().err
    assert verify_audit_log(log).ok
    assert not log.with_name("audit.jsonl.key").exists()
    # A plain log exists: a keyed run over it is refused, naming the way out.
    assert main(argv[:-1]) == 2
    assert "exists and has no key beside it" in capsys.readouterr().err


def test_unwritable_audit_log(tmp_path: Path, capsys: Capture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(FINANCE), "--audit", str(blocker / "audit.jsonl")]) == 2
    assert "cannot open audit log" in capsys.readouterr().err


def test_timeout_ends_the_run(capsys: Capture) -> None:
    assert main(["run", str(GOOD / "slow.yaml")]) == 1
    err = capsys.readouterr().err
    assert "the run ended timed_out" in err


def test_fallback_answers_the_caller(capsys: Capture) -> None:
    assert main(["run", str(GOOD / "fallback.yaml"), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "fallback"
    assert data["output"]["type"] == "fallback_notice"
    assert data["output"]["payload"]["text"].startswith(
        "The broken agent could not complete your request."
    )
    assert data["stats"]["retries"] == 2
    assert data["stats"]["fallbacks"] == 1


def test_json_input_maps_onto_the_payload(tmp_path: Path, capsys: Capture) -> None:
    good = tmp_path / "in.json"
    good.write_text('{"n": 41}')
    assert main(["run", str(GOOD / "json_entry.yaml"), "--input", str(good)]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 42}


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
JSON_ENTRY = GOOD / "json_entry.yaml"
YAML_ENTRY = FINANCE.with_name("treasury.yaml")
LENDING = FINANCE.with_name("lending.yaml")
# An infinite monthly debt service was read as a number, and the loan approved.
LOAN = (ROOT / "config" / "data" / "loan-application.json").read_text()
SME = FINANCE.with_name("sme-loan.yaml")
SME_LOAN = (ROOT / "config" / "data" / "sme-loan.json").read_text()
TREASURY = (ROOT / "config" / "data" / "treasury-snapshot.yaml").read_text()


@pytest.mark.parametrize(
    ("pipeline", "name", "text", "problem"),
    [
        (JSON_ENTRY, "in.json", '{"n": "many"}', "invalid 'serve' message: field 'n'"),
        (JSON_ENTRY, "in.json", '{"m": 1}', "field 'm': unknown field"),
        (JSON_ENTRY, "in.json", "{not json", "is not valid JSON"),
        (JSON_ENTRY, "in.json", "[1, 2]", "must hold a JSON object of payload fields"),
        # strict, as genie serve reads a body: one reading for every reader of the input
        (JSON_ENTRY, "in.json", '{"n": 1, "n": 2}', "is not valid JSON: key 'n' given twice"),
        (JSON_ENTRY, "in.json", '{"n": NaN}', "is not valid JSON: NaN is not JSON"),
        (LENDING, "in.json", LOAN.replace("13000", "1e309"), "number 1e309 is out of range"),
        # A debt service no outflow pays, a negative outflow, a negative loan or months that
        # do not match were read as numbers: the loan approved, or referred as a failed part.
        (LENDING, "in.json", LOAN.replace("13000", "1e300"), "field 'monthly_debt_service'"),
        (LENDING, "in.json", LOAN.replace("78000", "-780000"), "field 'monthly_outflows.0'"),
        (LENDING, "in.json", LOAN.replace("1000000", "-1000000"), "field 'principal'"),
        (LENDING, "in.json", LOAN.replace(", 77500]", "]"), "cover different months"),
        # A term of 10^400 months failed the advisor converting it to a float.
        (LENDING, "in.json", LOAN.replace('"months": 60', '"months": 1201'), "field 'months'"),
        # A negative outflow raised the SME's monthly surplus, and so the amount offered.
        (SME, "in.json", SME_LOAN.replace("[800000", "[-800000"), "'request.monthly_outflows.0'"),
        # YAML reads .nan and .inf as floats: no amount, return or rate is either.
        (YAML_ENTRY, "in.yaml", TREASURY.replace("[0.004,", "[.nan,"), "field 'var.returns.0'"),
        (YAML_ENTRY, "in.yaml", TREASURY.replace("level1: 900", "level1: .inf"), "'lcr.hqla."),
        # A negative balance in a bucket moved every cumulative gap after it; a bucket not
        # on the ladder failed the ALM part, and the desk reported amber, not the typo.
        (YAML_ENTRY, "in.yaml", TREASURY.replace('"8-14d": 400', '"8-14d": -400'), "alm.assets"),
        (YAML_ENTRY, "in.yaml", TREASURY.replace('"8-14d": 700', '"8-15d": 700'), "'8-15d'"),
        # YAML inputs are read within the configuration files' bounds (a billion laughs is
        # refused at the alias that crosses them), duplicate keys refused.
        (YAML_ENTRY, "in.yaml", LAUGHS, "in.yaml:5: more than 20,000 values"),
        (YAML_ENTRY, "in.yaml", "cash: 1\ncash: 2\n", "in.yaml:2: cash: duplicate key"),
        (YAML_ENTRY, "in.yaml", "{cash: [1,\n", "in.yaml:2: YAML syntax error"),
    ],
)
def test_input_that_does_not_fit_is_exit_2(
    tmp_path: Path, capsys: Capture, pipeline: Path, name: str, text: str, problem: str
) -> None:
    bad = tmp_path / name
    bad.write_text(text)
    assert main(["run", str(pipeline), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            '"personal-loan"',
            r'"personal\ud800"',
            "$.existing_loans[1].loan_id: 'personal\\ud800' holds a lone surrogate "
            "(U+D800 at index 8), which is no character",
        ),
        (
            '"foreclosure_penalty_pct"',
            r'"foreclosure\udc00"',
            "a key of $.existing_loans[1]: 'foreclosure\\udc00' holds a lone surrogate",
        ),
    ],
)
def test_a_json_input_holding_a_lone_surrogate_is_exit_2_naming_where(
    tmp_path: Path, capsys: Capture, old: str, new: str, problem: str
) -> None:
    """Read as `genie serve` reads a body: the run was denied by a policy that could not read
    the message ("policy raised PydanticSerializationError"), not refused as its input."""
    bad = tmp_path / "loan.json"
    bad.write_text(LOAN.replace(old, new))
    assert main(["run", str(LENDING), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genie run: {bad} is not valid JSON: {problem}")
    assert err.count("\n") == 1  # one line
    assert "Traceback" not in err


def test_a_json_input_with_a_surrogate_pair_runs(tmp_path: Path, capsys: Capture) -> None:
    good = tmp_path / "loan.json"
    good.write_text(LOAN.replace('"app-7781"', r'"app-\ud83d\ude00"'))
    assert main(["run", str(LENDING), "--input", str(good), "--json"]) == 0
    output = json.loads(capsys.readouterr().out)["output"]
    assert output["payload"]["applicant_id"] == "app-\U0001f600"  # one character, as sent


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "in.json"
    bad.write_text("{not json")
    with pytest.raises(Exception, match="is not valid JSON"):
        main(["--debug", "run", str(GOOD / "json_entry.yaml"), "--input", str(bad)])


def test_from_python_in_three_lines() -> None:
    pipeline = load_pipeline(FINANCE)
    first = anyio.run(pipeline.run)
    second = anyio.run(pipeline.run)  # fresh agents each run: no state carried over
    assert first.ok
    assert second.ok
    assert first.output is not None
    assert second.output is not None
    assert first.output.payload == second.output.payload
    assert first.correlation_id != second.correlation_id


def test_graph_text_and_mermaid(capsys: Capture) -> None:
    assert main(["graph", str(FINANCE)]) == 0
    text = capsys.readouterr().out
    assert "analyzer             --analysis_result--> forecaster\n" in text
    assert "reporter             --final_report--> (output)\n" in text
    assert "recommender          --(on failure)--> recommender_fallback\n" in text
    assert main(["graph", str(FINANCE), "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR\n")
    assert '-->|"analysis_result"|' in mermaid


def test_validate_ok(capsys: Capture) -> None:
    assert main(["validate", str(FINANCE)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {FINANCE}: pipeline 'finance', 10 agents")


def test_agents_json_lists_consumes_and_produces(capsys: Capture) -> None:
    assert main(["agents", "--json"]) == 0
    agents = {a["name"]: a for a in json.loads(capsys.readouterr().out)}
    assert agents["forecaster"]["consumes"] == ["analysis_result"]
    assert agents["forecaster"]["produces"] == ["forecast_result"]
    assert agents["fallback"]["consumes"] == ["*"]
    assert agents["delay"]["produces"] == ["*"]  # passes on what it receives
    assert all(a["produces"] for name, a in agents.items() if name != "sink")


@pytest.mark.parametrize(
    ("variables", "n", "status", "policy", "reason"),
    [
        ([], 1, "ok", None, None),
        (
            ["RISK=high"],
            1,
            "denied",
            "risk_gate",
            "high-risk agent 'server' requires one of the roles: admin",
        ),
        (["MAX_LEN=5"], 1, "denied", "max_content_length", "content too long"),
        ([], 999, "denied", "no-999", "no 999s"),
    ],
)
def test_inline_governance_and_risk_override(
    tmp_path: Path,
    capsys: Capture,
    variables: list[str],
    n: int,
    status: str,
    policy: str | None,
    reason: str | None,
) -> None:
    data = tmp_path / "in.json"
    data.write_text(json.dumps({"n": n}))
    sets = [arg for v in variables for arg in ("--set", v)]
    code = main(["run", str(GOOD / "governed.yaml"), "--input", str(data), "--json", *sets])
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == status
    assert code == (0 if status == "ok" else 1)
    if policy is not None:
        (missing,) = result["missing"]
        assert (missing["kind"], missing["policy"], missing["reason"]) == ("denied", policy, reason)


def test_a_yaml_input_has_its_pipelines_size_limit(tmp_path: Path, capsys: Capture) -> None:
    """A YAML input is bounded by ``entry.input.max_bytes`` (1 MiB by default), not by the
    configuration files' 256 KiB: a 300 KB snapshot runs; past the limit, it names the limit."""
    snapshot = (ROOT / "config" / "data" / "treasury-snapshot.yaml").read_text()
    padding = "".join(f"# desk note {i:06d}: {'x' * 80}\n" for i in range(3300))
    big = tmp_path / "snapshot.yaml"
    big.write_text(padding + snapshot)
    assert 256 * 1024 < big.stat().st_size < 1 << 20
    assert main(["run", str(YAML_ENTRY), "--input", str(big)]) == 0, capsys.readouterr().err
    text = big.read_text()
    payload = load_pipeline(YAML_ENTRY).entry_payload(text)  # from Python, the same bound
    assert payload.model_dump()["var"]["horizon_days"] == 10


FAILING = """
from genie import BaseAgent, Context, Message, Payload, handler


class Question(Payload):
    message_type = "question"
    n: int = 0


class Answer(Payload):
    message_type = "answer"
    value: int


class Divider(BaseAgent):
    produces = (Answer,)

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message:
        return ctx.reply(Answer(value=ratio(payload.n)))


def ratio(n: int) -> int:
    return 100 // n
"""


def failing_pipeline(tmp_path: Path) -> Path:
    (tmp_path / "tb_divider.py").write_text(FAILING)
    path = tmp_path / "divide.yaml"
    path.write_text(
        "agents:\n  - id: a\n    use: tb_divider:Divider\n"
        "entry: {type: question, to: a}\noutput: answer\n"
    )
    return path


def test_a_failed_handler_shows_where_it_raised(tmp_path: Path, capsys: Capture) -> None:
    """Issue 36, item 1: the line of the user's module, from the CLI and in --json; without
    --debug, one line says how to see it."""
    path = failing_pipeline(tmp_path)
    module = tmp_path / "tb_divider.py"
    lines = FAILING.splitlines()
    raising, calling = (
        lines.index("    return 100 // n") + 1,
        lines.index("        return ctx.reply(Answer(value=ratio(payload.n)))") + 1,
    )
    raised = f"{module}:{raising} in ratio: ZeroDivisionError: integer division or modulo by zero"
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert "  a: failed: ZeroDivisionError: integer division or modulo by zero\n" in err
    assert f"  (a handler failed: genie --debug run {path} ... shows where it raised)" in err
    assert str(module) not in err

    assert main(["--debug", "run", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"    {raised}\n" in err
    assert f'      File "{module}", line {calling}, in on_question\n' in err
    assert "genie/_runtime" not in err

    assert main(["run", str(path), "--json"]) == 1
    [letter] = json.loads(capsys.readouterr().out)["dead_letters"]
    [traceback] = letter["tracebacks"]
    assert traceback.startswith(raised)


PROTOCOL = """
from genie import Message, Payload


class Question(Payload):
    message_type = "question"
    text: str = ""


class Answer(Payload):
    message_type = "answer"
    words: int


class Counter:
    \"\"\"The Agent protocol, not a BaseAgent: it says what it consumes and produces.\"\"\"

    consumes = (Question,)
    produces = (Answer,)
    capabilities = ()

    def __init__(self, id: str) -> None:
        self.id = id
        self.name = id

    async def handle(self, msg, ctx):
        return [ctx.reply(Answer(words=len(msg.payload.text.split())))]
"""


def test_a_protocol_agent_that_validates_runs(tmp_path: Path, capsys: Capture) -> None:
    """Validate and run agree on a plain Agent-protocol class: the runtime registers the types
    it declares it consumes, as the loader read them (before, the run said 'unknown message
    type' of the entry validate had passed)."""
    (tmp_path / "proto_counter.py").write_text(PROTOCOL)
    path = tmp_path / "count.yaml"
    path.write_text(
        "agents:\n  - id: counter\n    use: proto_counter:Counter\n"
        "entry: {type: question, to: counter, payload: {text: one two three}}\noutput: answer\n"
    )
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["run", str(path), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["output"]["payload"] == {"words": 3}


def test_every_field_of_a_json_dead_letter_is_in_cli_md(tmp_path: Path, capsys: Capture) -> None:
    """docs/cli.md's ``--json`` table names each key a dead letter has (it left out
    ``tracebacks``), and each key of the document."""
    page = (ROOT / "docs" / "cli.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.*) \|$", page, re.M)}
    assert main(["run", str(failing_pipeline(tmp_path)), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert set(document) <= set(rows)
    [letter] = document["dead_letters"]
    assert set(letter) <= set(re.findall(r"`(\w+)`", rows["dead_letters"])), letter
