"""``genie simulate``: the report as text, JSON and PNG, the progress line, and bad input
(exit 2 with one line naming the problem)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genie._cli.main import main
from genie.simulation import SimulationError, simulate

from ..conftest import requires

ROOT = Path(__file__).resolve().parents[2]
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"
CHAIN = Path(__file__).parent / "pipelines" / "chain.yaml"
ARGS = ["--sessions", "60", "--concurrency", "4", "--seed", "3"]
FAULTS = ["--fault", "latency:*=lognormal,mean=200ms", "--fault", "error:recommender=0.2"]


def test_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(FINANCE), *ARGS, *FAULTS]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"finance ({FINANCE}): 60 sessions, concurrency 4, seed 3, virtual clock")
    for heading in ("sessions", "latency", "agent", "dead letters", "limits fired", "messages"):
        assert any(line.startswith(heading) for line in out.splitlines()), heading
    assert "financial_supervisor" in out
    assert "fault           error:recommender=0.2 at recommender: " in out
    assert "  accounting    delivered " in out
    assert "ACCOUNTING DOES NOT BALANCE" not in out
    assert "DO NOT ADD UP" not in out
    # The progress line (a line per tenth when stderr is not a terminal) and a summary.
    assert "simulate finance: 60/60 sessions (" in err
    assert "genie simulate: 60 sessions in " in err


def test_a_person_answers_a_workflows_approvals(capsys: pytest.CaptureFixture[str]) -> None:
    # sme-loan's approval is asked by its workflow, which answer faults reach as they reach
    # agents; the rejected loans release their offers (the workflow's undo).
    loans = ROOT / "config" / "pipelines" / "sme-loan.yaml"
    fault = "answer:sme_loan_workflow=uniform,low=5s,high=40s,approve=0.5"
    assert main(["simulate", str(loans), "--sessions", "8", "-q", "--fault", fault]) == 0
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if x.startswith("fault ")]
    asked = line.split(": ", 1)[1]
    assert asked.startswith("8 approvals asked: ")
    assert asked.endswith(" rejected, 0 ended before the answer")
    assert "DO NOT ADD UP" not in out
    assert "dead letters    none" in out


def test_json_report_is_the_python_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(FINANCE), *ARGS, *FAULTS, "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    report = simulate(
        FINANCE,
        sessions=60,
        concurrency=4,
        seed=3,
        faults=["latency:*=lognormal,mean=200ms", "error:recommender=0.2"],
    )
    assert out == report.json()
    data = json.loads(out)
    assert data["settings"]["faults"] == ["latency:*=lognormal,mean=200ms", "error:recommender=0.2"]
    assert (
        sum(data["sessions"][k] for k in ("completed", "fallback", "denied", "failed"))
        + data["sessions"]["timed_out"]
        == 60
    )


def test_out_draws_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "sim.png"
    assert main(["simulate", str(CHAIN), "--sessions", "30", "--out", str(png), "-q"]) == 0
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_set_reaches_the_pipeline_file(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", str(CHAIN), "--sessions", "4", "--set", "GENERATOR=wrong_shape", "-q"]
    assert main(args) == 2
    assert "session 0's input (from tests.simulation.generators:wrong_shape)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--fault", "error:recommender"], "fault 'error:recommender' does not parse"),
        (["--fault", "latency:*=lognorm,mean=1s"], "unknown distribution 'lognorm'"),
        (
            ["--fault", "error:recomender=0.1"],
            "pipeline 'finance' has no agent 'recomender' (did you mean 'recommender'?)",
        ),
        (["--timeout", "-1"], "argument --timeout: a number of seconds above 0, not '-1'"),
        (["--timeout", "nan"], "argument --timeout: a number of seconds above 0, not 'nan'"),
        (["--out", "/no/such/dir/sim.png"], "cannot write /no/such/dir/sim.png"),
        # A .txt failed after the whole run with matplotlib's traceback; a folder's name or a
        # name without a suffix was written elsewhere, with ".png" added, and said to be here.
        (["--out", "sim.txt"], "cannot write sim.txt: --out names the PNG file to draw"),
        (["--out", "sim"], "cannot write sim: --out names the PNG file to draw, ending in .png"),
        (["--out", "."], "cannot write .: --out names the PNG file to draw, ending in .png"),
        # Path.is_dir() let ENAMETOOLONG out: a traceback, where a missing folder is one line.
        (["--out", "b" * 300 + ".png"], f"cannot write {'b' * 300}.png: File name too long"),
        # A superscript two is a digit to str.isdigit, not to int(): Python's own words came out.
        (["--fault", "capacity:*=²"], "capacity '²' is not a whole number >= 1 (form: capacity"),
        # Said "is not a whole number" of a whole number, quoting all 5,000 digits.
        (
            ["--seed", "9" * 5000],
            "argument --seed: a whole number of at most 4300 digits, not '999",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_problem(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code: object
    try:
        code = main(["simulate", str(FINANCE), "--sessions", "5", *args])
    except SystemExit as exit:  # the parser's refusal: a usage error, as for every command
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert says in err
    assert err.startswith("genie simulate: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_sessions_must_be_a_positive_number(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["simulate", str(FINANCE), "--sessions", value])
    assert caught.value.code == 2
    assert "--sessions" in capsys.readouterr().err


def without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`genie simulate` in a child where ``module`` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from genie._cli.main import main\n"
        f"sys.exit(main(['simulate', {str(CHAIN)!r}, '--sessions', '3', *{list(args)!r}]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_virtual_clock_needs_no_trio() -> None:
    # Virtual time is an asyncio loop of Genie's own: a child that cannot import trio gives the
    # same report, byte for byte, as this process.
    done = without("trio", "--json", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout == simulate(CHAIN, sessions=3).json()


def test_out_without_matplotlib_exits_2_before_running(tmp_path: Path) -> None:
    done = without("matplotlib", "--out", str(tmp_path / "sim.png"))
    assert done.returncode == 2
    assert "--out draws a PNG with matplotlib, which is not installed" in done.stderr
    assert done.stdout == ""


def test_a_run_in_which_no_virtual_time_passes_has_no_rate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Without latency the agents take no virtual time: every session ends at time 0, and a
    # rate of 0 sessions/s said the pipeline did nothing.
    assert main(["simulate", str(FINANCE), *ARGS, "-q"]) == 0
    out = capsys.readouterr().out
    assert (
        "run time        0 s (virtual), sessions/s n/a: no virtual time passed (give the agents "
        "latency: --fault 'latency:*=...')\n" in out
    )
    supervisor = next(line for line in out.splitlines() if line.startswith("financial_supervisor"))
    assert supervisor.split()[5:7] == ["n/a", "n/a"]  # per s, util
    assert main(["simulate", str(FINANCE), *ARGS, "-q", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["duration"], data["throughput"]) == (0, None)
    assert data["agents"]["financial_supervisor"]["throughput"] is None
    assert data["agents"]["financial_supervisor"]["utilisation"] is None


def test_sessions_that_wait_forever_end_at_the_session_timeout(tmp_path: Path) -> None:
    # Two handlers at once sleep forever (a timer at infinity each): the sessions must end at
    # their timeout, not hang the run. In a child, so a hang fails the test, not the suite.
    pipeline = tmp_path / "forever.yaml"
    pipeline.write_text(
        "agents:\n"
        "  - id: server\n"
        "    use: tests.pipelines.loopers:Sleeper\n"
        "    params: {seconds: .inf}\n"
        "    concurrency: 2\n"
        "entry: {type: serve, to: server, input: {format: json}}\n"
        "output: return\n"
        "timeout: 10s\n"
        "simulation: {inputs: {use: 'tests.simulation.generators:numbered'}}\n"
    )
    command = [sys.executable, "-m", "genie", "simulate", str(pipeline), "--json", "-q"]
    command += ["--sessions", "4", "--concurrency", "2"]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sessions"]["timed_out"] == report["limits"]["session_timeout"] == 4
    assert report["duration"] == 20.0


@requires("matplotlib", extra="sim")
def test_a_plot_leaves_the_callers_matplotlib_as_it_was(tmp_path: Path) -> None:
    # Report.plot chose the Agg backend for the whole process and drew through pyplot's
    # registry of figures: a notebook's own backend was switched by drawing a report.
    import matplotlib
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("pdf")
    try:
        simulate(CHAIN, sessions=3).plot(tmp_path / "sim.png")
        assert matplotlib.get_backend() == "pdf"
        assert plt.get_fignums() == []
    finally:
        matplotlib.use(before)
    assert (tmp_path / "sim.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@requires("matplotlib", extra="sim")
@pytest.mark.parametrize(
    ("path", "says"),
    [
        # matplotlib's own ValueError ("Format 'txt' is not supported"), a file written under
        # another name (with ".png" added), a bare TypeError: what genie simulate --out refuses.
        ("sim.txt", "cannot write .*sim.txt: the path names the PNG file to draw, ending in"),
        ("sim", "cannot write .*sim: the path names the PNG file to draw"),
        ("no/such/folder/sim.png", "no/such/folder is not a directory"),
        (5, "the path must be a file's path, not int"),
    ],
)
def test_a_plot_from_python_refuses_what_the_command_refuses(
    path: object, says: str, tmp_path: Path
) -> None:
    report = simulate(CHAIN, sessions=2)
    target = tmp_path / path if isinstance(path, str) else path
    with pytest.raises(SimulationError, match=says):
        report.plot(target)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
