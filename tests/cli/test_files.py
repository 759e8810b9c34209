"""Every file the CLI reads (a pipeline, its policy file, a run's input, an audit key, the API
keys of ``genie serve``) is a regular file within its bound, or a one-line refusal, exit 2,
that says what the path is and which limit it crossed: never a wait on a pipe, a read of an
endless device, or minutes of parsing before a limit refuses it (issue 35, item 8)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from genie._cli.main import main
from genie.pipeline import InputError, load_pipeline

ROOT = Path(__file__).resolve().parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"
LENDING = ROOT / "config" / "pipelines" / "lending.yaml"
SAMPLE = ROOT / "config" / "data" / "sample.csv"
POLICY = ROOT / "config" / "policies" / "ai-policy.yaml"
Capture = pytest.CaptureFixture[str]
MiB = 1 << 20


def finance_copy(
    tmp_path: Path,
    *,
    policy: Path = POLICY,
    default: Path = SAMPLE,
    limit: int | None = None,
    name: str = "finance",
) -> Path:
    """The shipped finance pipeline as ``tmp_path/<name>.yaml``, with its policy file, default
    input and input limit replaced."""
    text = FINANCE.read_text()
    text = text.replace("../policies/ai-policy.yaml", str(policy))
    input_default = f"default: {default}"
    if limit is not None:
        input_default += f"\n    max_bytes: {limit}"
    text = text.replace("default: ../data/sample.csv", input_default)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def in_time(argv: list[str], fifo: Path) -> int:
    """``main(argv)`` within five seconds. Before files were checked, opening ``fifo`` (a named
    pipe nobody writes) waited for a writer for ever: the test then opens it to write,
    releasing that wait, and fails."""
    codes: list[int] = []
    worker = threading.Thread(target=lambda: codes.append(main(argv)), daemon=True)
    worker.start()
    worker.join(5)
    waited = worker.is_alive()
    if waited:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(5)
    assert not waited, f"genie {' '.join(argv)} waited on the named pipe {fifo}"
    return codes[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def null_link(tmp_path: Path) -> Path:
    link = tmp_path / "null.csv"
    link.symlink_to("/dev/null")
    return link


FIFO = "is a named pipe (FIFO), not a regular file"
NULL = "is a character device (a link to /dev/null), not a regular file"


# --- what a path is ---------------------------------------------------------------------------
def test_an_input_that_is_not_a_regular_file_is_named(
    tmp_path: Path, fifo: Path, null_link: Path, capsys: Capture
) -> None:
    for path, problem in [(tmp_path, "is a directory"), (fifo, FIFO), (null_link, NULL)]:
        assert in_time(["run", str(FINANCE), "--input", str(path)], fifo) == 2
        assert capsys.readouterr().err == f"genie run: cannot read input {path}: {problem}\n"


def test_a_pipeline_file_that_is_a_pipe_is_named(fifo: Path, capsys: Capture) -> None:
    for command in ("validate", "run", "graph"):
        assert in_time([command, str(fifo)], fifo) == 2
        assert capsys.readouterr().err.startswith(f"{fifo}: {FIFO}\n")


@pytest.mark.parametrize("command", ["validate", "run", "graph"])
def test_a_pipeline_name_too_long_for_a_file_is_named(command: str, capsys: Capture) -> None:
    # Path.exists() lets ENAMETOOLONG out: it was a traceback, and so was a link loop's
    # "does not exist" a wrong reason.
    name = "p" * 5000
    assert main([command, name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: cannot be read: File name too long\n")
    assert "Traceback" not in err


def test_a_policy_file_name_too_long_for_a_file_is_named(tmp_path: Path, capsys: Capture) -> None:
    # Path.exists(), asked whether a shipped policy file was meant, let ENAMETOOLONG out.
    policy = tmp_path / ("b" * 300)
    assert main(["validate", str(finance_copy(tmp_path, policy=policy))]) == 2
    err = capsys.readouterr().err
    assert f"governance.file: policy file {policy} cannot be read: File name too long\n" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["init", "{long}"], "genie init: cannot make the folder {long}: File name too long"),
        (
            ["run", str(FINANCE), "--audit", "{long}"],
            "genie run: cannot open audit log {long} with its key beside it ({long}.key): File "
            "name too long",
        ),
        # The log's own name fits; the key made beside it, four characters longer, does not.
        (
            ["run", str(FINANCE), "--audit", "{fits}"],
            "genie run: cannot open audit log {fits} with its key beside it ({fits}.key): File "
            "name too long",
        ),
        (
            ["audit", "verify", "{long}"],
            "genie audit verify: cannot read {long}: File name too long",
        ),
    ],
)
def test_a_name_too_long_for_a_file_is_one_line(
    tmp_path: Path, capsys: Capture, argv: list[str], says: str
) -> None:
    # Path.exists() and is_dir() let ENAMETOOLONG out where they look before writing: each
    # command died with a traceback and exit 1.
    names = {"long": str(tmp_path / ("b" * 300)), "fits": str(tmp_path / ("c" * 252))}
    assert main([arg.format(**names) for arg in argv]) == 2
    assert capsys.readouterr().err == says.format(**names) + "\n"
    assert os.listdir(tmp_path) == []


def test_a_pipeline_behind_a_loop_of_links_is_named(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert main(["validate", str(tmp_path / "a.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'a.yaml'}: cannot be read: Too many levels of symbolic")


def test_a_policy_file_or_default_input_that_is_not_a_file_is_named(
    tmp_path: Path, fifo: Path, null_link: Path, capsys: Capture
) -> None:
    cases = [
        (
            finance_copy(tmp_path, policy=tmp_path, name="a"),
            f"policy file {tmp_path} is a directory",
        ),
        (finance_copy(tmp_path, policy=fifo, name="b"), f"policy file {fifo} {FIFO}"),
        (finance_copy(tmp_path, default=fifo, name="c"), f"input file {fifo} {FIFO}"),
        (finance_copy(tmp_path, default=null_link, name="d"), f"input file {null_link} {NULL}"),
    ]
    for pipeline, problem in cases:
        assert in_time(["validate", str(pipeline)], fifo) == 2
        err = capsys.readouterr().err
        assert problem in err
        assert "does not exist" not in err


def test_an_audit_key_file_that_is_not_a_file_is_named(
    tmp_path: Path, fifo: Path, null_link: Path, capsys: Capture
) -> None:
    log = str(tmp_path / "audit.jsonl")
    for key, problem in [(fifo, FIFO), (null_link, NULL), (tmp_path, "is a directory")]:
        argv = ["run", str(FINANCE), "--audit", log, "--audit-key-file", str(key)]
        assert in_time(argv, fifo) == 2
        assert capsys.readouterr().err == f"genie run: cannot read audit key {key}: {problem}\n"
        argv = ["audit", "verify", log, "--key-file", str(key)]
        assert in_time(argv, fifo) == 2
        assert f"cannot read audit key {key}: {problem}" in capsys.readouterr().err


def test_an_audit_key_file_is_bounded(tmp_path: Path, capsys: Capture) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"k" * 5000)  # the wrong file given as the key
    argv = ["run", str(FINANCE), "--audit", str(tmp_path / "log"), "--audit-key-file", str(key)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"genie run: audit key {key} is 5,000 bytes: a key file holds one key, at most "
        "4,096 bytes\n"
    )


def test_an_api_key_file_that_is_a_pipe_is_named(fifo: Path, capsys: Capture) -> None:
    assert in_time(["serve", str(FINANCE), "--port", "0", "--keys", str(fifo)], fifo) == 2
    assert capsys.readouterr().err.startswith(f"{fifo}: {FIFO}")


# --- how big an input may be ------------------------------------------------------------------
def sparse(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)  # the test writes almost nothing
    return path


def test_a_million_row_input_is_refused_before_it_is_read(tmp_path: Path, capsys: Capture) -> None:
    """The adversary's 1,000,000-row statement (33 MB) took 20-28 s and 2.1 GB before a
    content limit refused it; its size alone refuses it now."""
    big = sparse(tmp_path / "big.csv", 33 * 1000 * 1000)
    pipeline = load_pipeline(FINANCE)
    started = time.process_time()
    with pytest.raises(InputError) as caught:
        pipeline.read_input(str(big))
    assert time.process_time() - started < 0.1
    message = (
        f"input {big} is 33,000,000 bytes: the limit for an input of pipeline 'finance' is "
        f"1,048,576 bytes (entry.input.max_bytes in {FINANCE})"
    )
    assert str(caught.value) == message
    assert main(["run", str(FINANCE), "--input", str(big)]) == 2
    assert capsys.readouterr().err == f"genie run: {message}\n"


def test_the_input_limit_is_the_pipelines_to_set(tmp_path: Path, capsys: Capture) -> None:
    rows = "date,description,amount,type\n2026-01-01,Salary,100,credit\n"
    fits = tmp_path / "fits.csv"
    fits.write_text(rows)
    pipeline = finance_copy(tmp_path, default=fits, limit=len(rows))
    assert main(["run", str(pipeline), "--input", str(fits)]) == 0
    capsys.readouterr()
    over = tmp_path / "over.csv"
    over.write_text(rows + "\n")
    assert main(["run", str(pipeline), "--input", str(over)]) == 2
    assert capsys.readouterr().err == (
        f"genie run: input {over} is {len(rows) + 1} bytes: the limit for an input of "
        f"pipeline 'finance' is {len(rows)} bytes (entry.input.max_bytes in {pipeline})\n"
    )
    # The default input is checked when the file is validated.
    wrong = finance_copy(tmp_path, default=over, limit=len(rows), name="wrong")
    assert main(["validate", str(wrong)]) == 2
    assert capsys.readouterr().err == (
        f"{wrong}:67: entry.input.default: input file {over} is {len(rows) + 1} bytes, over "
        f"entry.input.max_bytes ({len(rows)})\ngenie validate: 1 problem\n"
    )


def test_standard_input_is_bounded_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    small = tmp_path / "small.csv"
    small.write_text("date,description,amount,type\n2026-01-01,Salary,100,credit\n")
    pipeline = finance_copy(tmp_path, default=small, limit=100)
    monkeypatch.setattr("sys.stdin", io.StringIO("x" * 10_000))
    assert main(["run", str(pipeline), "--input", "-"]) == 2
    assert capsys.readouterr().err.startswith(
        "genie run: standard input is more than 100 bytes: the limit for an input of pipeline"
    )


def test_a_closed_standard_input_is_named(tmp_path: Path) -> None:
    # `genie run P --input - <&-`: Python makes sys.stdin None, and reading it was an
    # AttributeError's traceback.
    ran = subprocess.run(
        [sys.executable, "-m", "genie._cli", "run", str(FINANCE), "--input", "-"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(0),
    )
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == "genie run: cannot read standard input (--input -): it is closed\n"


def test_standard_input_is_named_as_such(monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    # An empty one was '-, line 1: ...', a file called '-'; one not UTF-8 'standard input'.
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["run", str(FINANCE), "--input", "-"]) == 2
    assert capsys.readouterr().err == (
        "genie run: standard input, line 1: empty csv content (finance_question.csv)\n"
    )


def test_at_the_real_limits_a_statement_is_read_and_stopped_at_its_row_limit(
    tmp_path: Path, capsys: Capture
) -> None:
    """1 MiB, the default input limit, of rows like the sample's: read whole (it is within the
    limit), then refused at the 10,001st transaction, the finance catalogue's row limit,
    without parsing the rest; one byte more is not read at all."""
    row = "2026-01-03,Swiggy order,Food,450,debit\n"
    head = "date,description,category,amount,type\n"
    body = row * ((MiB - len(head)) // len(row))
    statement = tmp_path / "year.csv"
    statement.write_text(head + body + "x" * (MiB - len(head) - len(body)))
    assert statement.stat().st_size == MiB
    started = time.process_time()
    assert main(["run", str(FINANCE), "--input", str(statement)]) == 2
    assert time.process_time() - started < 2.0
    assert capsys.readouterr().err == (
        f"genie run: {statement}, line 10002: more than 10,000 transactions, the limit for one "
        "statement; split it by period (finance_question.csv)\n"
    )
    with statement.open("a") as f:
        f.write("x")
    assert main(["run", str(FINANCE), "--input", str(statement)]) == 2
    assert "1,048,577 bytes: the limit for an input" in capsys.readouterr().err


# --- what an input holds ----------------------------------------------------------------------
TEXT_PROBLEMS: list[tuple[Callable[[Path], object], str]] = [
    (
        lambda p: p.write_bytes(b"date,description,amount,type\n2026-01-01,Caf\x00,1,debit\n"),
        "line 2: a NUL character (column 15): not a text file",
    ),
    (
        lambda p: p.write_text("date,description,amount,type\n", encoding="utf-16"),
        "line 1: the file is UTF-16; save it as UTF-8",
    ),
]


@pytest.mark.parametrize(("write", "problem"), TEXT_PROBLEMS, ids=["nul", "utf16"])
def test_an_input_that_is_not_text_is_named_with_its_line(
    tmp_path: Path, capsys: Capture, write: Callable[[Path], object], problem: str
) -> None:
    bad = tmp_path / "bad.csv"
    write(bad)
    assert main(["run", str(FINANCE), "--input", str(bad)]) == 2
    assert capsys.readouterr().err == f"genie run: {bad}, {problem}\n"


def test_a_json_input_may_start_with_a_byte_order_mark(tmp_path: Path, capsys: Capture) -> None:
    application = tmp_path / "application.json"
    shipped = (ROOT / "config" / "data" / "loan-application.json").read_text()
    application.write_text(shipped, encoding="utf-8-sig")  # as Windows editors save it
    assert main(["run", str(LENDING), "--input", str(application), "--json"]) == 0
    with_bom = capsys.readouterr().out
    assert main(["run", str(LENDING), "--json"]) == 0
    assert '"status": "ok"' in with_bom
    assert (
        with_bom.split('"correlation_id"')[0]
        == capsys.readouterr().out.split('"correlation_id"')[0]
    )


def test_an_audit_log_to_verify_that_is_not_a_file_is_named(
    tmp_path: Path, fifo: Path, null_link: Path, capsys: Capture
) -> None:
    """``genie audit verify`` streams a log of any size, so it has no size bound, but a named
    pipe is refused at once, as every other file the CLI reads (it used to wait for a writer)."""
    for path, problem in [(fifo, FIFO), (null_link, NULL), (tmp_path, "is a directory")]:
        assert in_time(["audit", "verify", str(path)], fifo) == 2
        assert capsys.readouterr().err == f"genie audit verify: cannot read {path}: {problem}\n"
    missing = tmp_path / "missing.jsonl"
    assert main(["audit", "verify", str(missing)]) == 2
    assert capsys.readouterr().err == f"genie audit verify: cannot read {missing}: does not exist\n"


def test_an_audit_log_in_a_missing_folder_is_refused_and_no_folder_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The folders were made, while docs/cli.md said an unwritable --audit is one line, exit 2.
    log = tmp_path / "no" / "such" / "a.jsonl"
    assert main(["run", str(FINANCE), "--audit", str(log)]) == 2
    assert capsys.readouterr().err == (
        f"genie run: cannot open audit log {log}: {log.parent} does not exist\n"
    )
    assert not (tmp_path / "no").exists()
    afile = tmp_path / "file"
    afile.write_text("")
    assert main(["run", str(FINANCE), "--audit", str(afile / "a.jsonl")]) == 2
    assert capsys.readouterr().err.endswith(f": {afile} is not a folder\n")


@pytest.mark.parametrize("keyed", [[], ["--audit-unkeyed"]])
def test_an_audit_log_that_is_not_a_regular_file_is_named(
    tmp_path: Path, fifo: Path, null_link: Path, capsys: Capture, keyed: list[str]
) -> None:
    # A directory was "an audit log that exists and has no key", a named pipe "None" (after a
    # key was written beside it), and /dev/null took every record and kept none.
    for path, problem in [(fifo, FIFO), (null_link, NULL), (tmp_path, "is a directory")]:
        assert main(["run", str(FINANCE), "--audit", str(path), *keyed]) == 2
        assert capsys.readouterr().err == f"genie run: cannot open audit log {path}: {problem}\n"
    assert sorted(tmp_path.iterdir()) == [fifo, null_link]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--metrics-out", "{pipeline}"], "--metrics-out and the pipeline file"),
        (["--metrics-out", "{input}"], "--metrics-out and --input"),
        (["--audit", "{pipeline}", "--audit-unkeyed"], "--audit and the pipeline file"),
        (
            ["--audit", "{new}", "--audit-unkeyed", "--metrics-out", "{new}"],
            "--audit and --metrics-out",
        ),
        (["--store", "{new}", "--audit", "{new}", "--audit-unkeyed"], "--store and --audit"),
        (["--store", "{store}", "--metrics-out", "{store}"], "--store and --metrics-out"),
        # The files beside a store: an audit log's lock on its lock file waited forever, and a
        # metrics file over its write-ahead log cut off the writes a killed run left there.
        (
            ["--store", "{store}", "--audit", "{store}.lock", "--audit-unkeyed"],
            "the lock of --store and --audit",
        ),
        (
            ["--store", "{store}", "--metrics-out", "{store}-wal"],
            "the write-ahead log of --store and --metrics-out",
        ),
        (
            ["--audit", "{new}", "--metrics-out", "{new}.key"],
            "the key of --audit and --metrics-out",
        ),
    ],
)
def test_one_file_named_for_two_roles_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: Capture, options: list[str], said: str
) -> None:
    # `--metrics-out` over the pipeline file, the input or the store truncated it, and
    # `--audit` over the store appended its rows to the database: the run destroyed a file it
    # was given to read or keep.
    pipeline = tmp_path / "household.yaml"
    pipeline.write_text(
        "agents:\n  - id: planner\n    use: tests.pipelines.household:Planner\n"
        "entry: {type: household_question, to: planner, input: {field: text}}\n"
        "output: household_plan\n"
    )
    given = tmp_path / "question.txt"
    given.write_text("rent")
    assert (
        main(["run", str(pipeline), "--input", str(given), "--store", str(tmp_path / "st.db")]) == 0
    )
    capsys.readouterr()
    names = {"pipeline": pipeline, "input": given, "store": tmp_path / "st.db"}
    (tmp_path / "sub").mkdir()
    names["new"] = tmp_path / "sub" / ".." / "new.log"  # two spellings of one file are one
    argv = [o.format(**names) for o in options]
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert main(["run", str(pipeline), "--input", str(given), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genie run: {said} name one file: "), err
    assert err.count("\n") == 1
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
