"""genie run --trace / --metrics-port / --metrics-out / --log-format, and logging from Python."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import resource
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from genie import BaseAgent, Context, Message, Payload, Runtime, configure_logging, handler
from genie._cli.main import LOST_WORK, main

from ..conftest import Ping, requires
from ..runtime.test_metrics import parse, total
from .test_cli import _genie

ROOT = Path(__file__).resolve().parents[2]
FINANCE = str(ROOT / "config" / "pipelines" / "finance.yaml")
LENDING = str(ROOT / "config" / "pipelines" / "lending.yaml")
RESEARCH = str(ROOT / "config" / "pipelines" / "research.yaml")
FINANCE_AGENTS = (
    "financial_supervisor",
    "ingestor",
    "normalizer",
    "enricher",
    "analyzer",
    "forecaster",
    "anomaly_detector",
    "recommender",
    "reporter",
)

Capture = pytest.CaptureFixture[str]


def test_trace_prints_the_timeline_of_the_run(capsys: Capture) -> None:
    assert main(["run", FINANCE, "--json", "--trace"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # the timeline goes to stderr: stdout stays the output
    lines = captured.err.splitlines()
    assert lines[0].split() == ["time", "event", "agent", "message", "detail"]
    events = [line.split()[2] for line in lines[1:]]
    stats = result["stats"]
    # The run's counts are its events': the answer its ask collected is no event.
    assert stats["collected"] == 1
    assert events.count("handled") == stats["handled"] == stats["calls"]
    assert events.count("published") == stats["published"]
    assert events.count("delivered") == stats["delivered"]
    assert events[-2:] == ["gathered", "settled"]
    for agent in FINANCE_AGENTS:
        assert any(f" handled       {agent} " in line for line in lines), agent
    times = [float(line.split()[0]) for line in lines[1:]]
    assert times == sorted(times)
    assert times[0] == 0.0


def test_metrics_out_holds_the_runs_accounting(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "run.prom"
    assert main(["run", FINANCE, "--json", "--metrics-out", str(out)]) == 0
    stats: dict[str, Any] = json.loads(capsys.readouterr().out)["stats"]
    samples = parse(out.read_text())
    assert total(samples, "genie_messages_published_total") == stats["published"]
    agents = stats["delivered"]  # deliveries to agents, as the metrics count them
    assert total(samples, "genie_deliveries_total") == agents
    assert total(samples, "genie_messages_handled_total", status="ok") == agents
    assert total(samples, "genie_deliveries_denied_total") == stats["denied"] == 0
    for agent in FINANCE_AGENTS:
        assert total(samples, "genie_handle_duration_seconds_count", agent=agent) >= 1, agent
    assert total(samples, "genie_gathers_total", status="complete") == 1


@requires("mcp", extra="mcp")  # the research pipeline names the catalogue's MCP server
def test_metrics_out_counts_the_runs_model_calls(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "run.prom"
    assert main(["run", RESEARCH, "--metrics-out", str(out)]) == 0
    samples = parse(out.read_text())
    # The scripted researcher: a step that calls a tool, then the step that answers.
    assert total(samples, "genie_llm_calls_total", provider="scripted", outcome="ok") == 2


def test_metrics_port_serves_while_the_run_lasts(capsys: Capture) -> None:
    assert main(["run", FINANCE, "--metrics-port", "0"]) == 0
    err = capsys.readouterr().err
    assert "genie run: serving metrics on http://127.0.0.1:" in err


def test_an_unwritable_metrics_file_stops_the_run_before_it_starts(
    tmp_path: Path, capsys: Capture
) -> None:
    audit = tmp_path / "audit.jsonl"
    bad = tmp_path / "missing-dir" / "run.prom"
    code = main(["run", FINANCE, "--metrics-out", str(bad), "--audit", str(audit)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""  # nothing ran
    assert f"genie run: cannot write metrics to {bad}: No such file or directory" in captured.err
    # The run never started: the new log (and its key) made for it is taken back.
    assert list(tmp_path.iterdir()) == []


def test_a_busy_metrics_port_stops_the_run_before_it_starts(capsys: Capture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["run", FINANCE, "--metrics-port", str(port)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in captured.err


def test_json_logs_carry_agent_type_and_correlation(tmp_path: Path, capsys: Capture) -> None:
    application = json.loads((ROOT / "config" / "data" / "loan-application.json").read_text())
    # No money in: the underwriter fails, a dead letter logged as a warning (a loan the model
    # refuses, such as months 0, never reaches an agent).
    application |= {"monthly_inflows": [0] * 6, "monthly_debt_service": 0}
    path = tmp_path / "app.json"
    path.write_text(json.dumps(application))
    args = ["run", LENDING, "--json", "--input", str(path), "--set", "ASSESSMENT_DEADLINE=200ms"]
    # The output came (partial) and the simulation's failure is lost work: exit 3.
    assert main([*args, "--log-format", "json", "--log-level", "warning"]) == LOST_WORK
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    # The log records are JSON lines; the run's own summary (the output is partial: the loan
    # simulation failed) is the CLI's plain text, as for any run that is not ok.
    lines = captured.err.splitlines()
    summary = [line for line in lines if not line.startswith("{")]
    assert summary[0] == "genie run: lending: the run ended partial"
    records = [json.loads(line) for line in lines if line.startswith("{")]
    [dead] = [r for r in records if "dead letter" in r["message"]]
    assert dead["level"] == "WARNING"
    assert dead["logger"] == "genie.runtime"
    assert dead["agent_id"] == result["dead_letters"][0]["agent"]
    assert dead["message_type"] == result["dead_letters"][0]["type"]
    assert dead["correlation_id"] == result["correlation_id"]
    assert dead["time"].endswith("+00:00")


class Chatty(BaseAgent):
    @handler
    async def on_ping(self, payload: Ping, ctx: Context) -> None:
        ctx.logger.info("pinged with %d", payload.n, extra={"attempt": 1})


async def test_agent_logs_carry_the_message_fields() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler_ = configure_logging("json", logging.INFO, stream)
    try:
        async with Runtime() as rt:
            rt.add(Chatty("chatty"))
            msg = rt.message(Ping(n=7), recipient="chatty")
            await rt.publish(msg)
    finally:
        root.removeHandler(handler_)
        root.setLevel(level)
    [record] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert record["message"] == "pinged with 7"
    assert record["logger"] == "genie.agent"
    assert (record["agent_id"], record["message_type"], record["correlation_id"]) == (
        "chatty",
        "ping",
        msg.correlation_id,
    )
    assert record["attempt"] == 1  # other extras are kept


def test_json_logs_fill_in_records_about_no_message() -> None:
    """The three fields are in every JSON line, ``-`` for a record about no message (as the
    text format writes them), not null: a query on them need not ask for both."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler_ = configure_logging("json", logging.INFO, stream)
    try:
        logging.getLogger("genie.nats").warning("not about a message")
    finally:
        root.removeHandler(handler_)
        root.setLevel(level)
    record = json.loads(stream.getvalue())
    assert (record["agent_id"], record["message_type"], record["correlation_id"]) == ("-",) * 3


def test_json_logs_keep_the_stack_a_call_asked_for() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler_ = configure_logging("json", logging.INFO, stream)
    try:
        logging.getLogger("genie.agent").warning("where am I", stack_info=True)
    finally:
        root.removeHandler(handler_)
        root.setLevel(level)
    record = json.loads(stream.getvalue())
    assert record["stack"].startswith("Stack (most recent call last):")
    assert "test_json_logs_keep_the_stack_a_call_asked_for" in record["stack"]


def test_text_logs_fill_in_records_about_no_message() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler_ = configure_logging("text", logging.INFO, stream)
    try:
        logging.getLogger("elsewhere").warning("not about a message")
    finally:
        root.removeHandler(handler_)
        root.setLevel(level)
    line = stream.getvalue()
    assert "WARNING elsewhere [agent=- type=- correlation=-] not about a message" in line


@pytest.mark.parametrize(
    ("given", "refused"),
    [
        (("yaml", "INFO"), "format must be 'text' or 'json', not 'yaml'"),
        (("json", "LOUD"), "Unknown level: 'LOUD'"),
    ],
)
def test_logging_configured_wrongly_is_refused_and_changes_nothing(
    given: tuple[Any, Any], refused: str
) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with pytest.raises(ValueError, match=re.escape(refused)):
        configure_logging(*given)
    assert (root.handlers, root.level) == (handlers, level)


def exported_metrics(capsys: Capture, tmp_path: Path) -> set[str]:
    """The sample names a real run exports, families without samples included."""
    out = tmp_path / "run.prom"
    assert main(["run", LENDING, "--metrics-out", str(out), "--json"]) == 0
    capsys.readouterr()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(out.read_text())
        for suffix in suffixes[family.type]
    }


def test_every_exported_metric_is_documented(tmp_path: Path, capsys: Capture) -> None:
    page = (ROOT / "docs" / "observability.md").read_text()
    documented = set(re.findall(r"^\| `(genie_\w+)`", page, flags=re.M))
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported_metrics(capsys, tmp_path)}
    assert families == documented


def test_the_grafana_dashboard_queries_only_exported_metrics(
    tmp_path: Path, capsys: Capture
) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"genie_\w+", target["expr"])
    }
    exported = exported_metrics(capsys, tmp_path)
    assert queried
    assert queried <= exported, queried - exported
    families = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in exported}
    shown = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in queried}
    assert families <= shown, f"not on the dashboard: {families - shown}"


async def test_a_pipeline_run_from_python_fills_the_metrics_you_pass() -> None:
    from genie import Metrics
    from genie.pipeline import load_pipeline

    metrics = Metrics()
    result = await load_pipeline(FINANCE).run(metrics=metrics)
    samples = parse(metrics.text())
    assert result.ok
    assert total(samples, "genie_messages_published_total") == result.stats.published
    stats = result.stats
    assert total(samples, "genie_deliveries_total") == stats.delivered


@pytest.mark.parametrize("kind", ["a named pipe (FIFO)", "a directory", "a character device"])
def test_a_metrics_out_that_is_no_regular_file_is_refused_before_the_run(
    kind: str, tmp_path: Path
) -> None:
    # A named pipe would hold the command until something reads it (for ever, from a script);
    # a directory or a device keeps nothing.
    where = {"a directory": tmp_path, "a character device": Path("/dev/null")}
    target = where.get(kind, tmp_path / "metrics.fifo")
    if kind == "a named pipe (FIFO)":
        os.mkfifo(target)
    done = subprocess.run(
        [_genie(), "run", FINANCE, "--metrics-out", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    what = "is a directory" if kind == "a directory" else f"is {kind}, not a regular file"
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"genie run: cannot write metrics to {target}: {what}\n"


def test_a_metrics_file_the_disk_refuses_at_the_end_is_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    # The file passes the check before the run; its write at the end is refused (a full disk,
    # here a limit on file sizes): the run's output still comes, the loss is said, exit 1.
    out = tmp_path / "run.prom"

    def no_file_may_grow() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run(
        [_genie(), "run", FINANCE, "--json", "--metrics-out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=no_file_may_grow,
    )
    assert json.loads(done.stdout)["status"] == "ok"
    assert done.stderr == f"genie run: cannot write metrics to {out}: File too large\n"
    assert done.returncode == 1


def test_metrics_out_may_be_the_commands_own_standard_output() -> None:
    # /dev/stdout is already open, a pipe here: writing it waits for no reader.
    done = subprocess.run(
        [_genie(), "run", FINANCE, "--json", "--metrics-out", "/dev/stdout"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert total(parse(done.stdout.split("\n{")[0]), "genie_gathers_total", status="complete") == 1


def test_metrics_out_to_standard_output_redirected_to_a_file_keeps_both_whole(
    tmp_path: Path,
) -> None:
    # `genie run P --json --metrics-out /dev/stdout > out.txt`: opened a second time, the file
    # would be written from its start twice, the report over the metrics.
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        done = subprocess.run(
            [_genie(), "run", FINANCE, "--json", "--metrics-out", "/dev/stdout"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    metrics, report = out.read_text().split("\n{", 1)
    assert total(parse(metrics), "genie_gathers_total", status="complete") == 1
    assert json.loads("{" + report)["status"] == "ok"


# What a request's text may carry into a log: a line that would read as a record of its own,
# an escape that clears the terminal, and a lone surrogate (JSON's "\ud800"), which no UTF-8
# file can hold.
FORGED = "2026-01-01 00:00:00,000 ERROR genie.runtime [agent=admin type=- correlation=-] ok"
HOSTILE = f"x\ud800y\n{FORGED}\x1b[2J"


class Note(Payload):
    message_type = "note"
    text: str


class Picky(BaseAgent):
    @handler
    async def on_note(self, payload: Note, ctx: Context) -> None:
        raise ValueError(f"cannot read {payload.text}")


class PickyTap:
    id = "picky-tap"

    def observe(self, msg: Message) -> None:
        if isinstance(msg.payload, Note):
            raise ValueError(f"cannot read {msg.payload.text}")


@pytest.mark.parametrize("form", ["text", "json"])
async def test_a_logged_text_forges_no_record_and_loses_none(form: str, tmp_path: Path) -> None:
    """A handler's failure (a dead letter's warning) and a tap's (logged with its traceback)
    quote what a request said. Logged to a UTF-8 file, as an application does, each record is
    kept (a lone surrogate written as its escape, not a "--- Logging error ---" in its place),
    and none of its lines reads as a record of its own."""
    path = tmp_path / "genie.log"
    root, genie_logs = logging.getLogger(), logging.getLogger("genie")
    level = root.level
    with path.open("w", encoding="utf-8") as stream:
        handler_ = configure_logging(form, logging.WARNING, stream)  # type: ignore[arg-type]
        # The records stop at genie's logger, with the handler made for the root: pytest's own
        # capture (which sends a test's log to the parent process as UTF-8) never holds them.
        root.removeHandler(handler_)
        genie_logs.addHandler(handler_)
        genie_logs.propagate = False
        try:
            async with Runtime() as rt:
                rt.add(Picky("picky"))
                rt.add_tap(PickyTap())
                await rt.publish(rt.message(Note(text=HOSTILE), recipient="picky"))
        finally:
            genie_logs.propagate = True
            genie_logs.removeHandler(handler_)
            root.setLevel(level)
    written = path.read_text(encoding="utf-8")
    if form == "json":
        records = [json.loads(line)["message"] for line in written.splitlines()]
    else:
        assert "\x1b" not in written
        lines = written.splitlines()
        assert not [line for line in lines if line.startswith(FORGED[:10])], written
        records = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:", line)]
    assert len(records) == 2, written  # the tap's failure, the dead letter
    assert any("tap 'picky-tap' failed" in r for r in records)
    assert any("dead letter (failed)" in r for r in records)
