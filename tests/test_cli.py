"""The CLI as a whole: help, exit codes, and the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genie._cli import main

ROOT = Path(__file__).resolve().parent.parent
FINANCE = ROOT / "config" / "pipelines" / "finance.yaml"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("run", "validate", "graph", "agents", "policy", "audit"):
        assert command in out


@pytest.mark.parametrize(
    "command",
    [["run"], ["validate"], ["graph"], ["agents"], ["policy", "check"], ["audit", "verify"]],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    assert "usage: genie" in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run"])
    assert done.value.code == 2
    assert "the following arguments are required: pipeline" in capsys.readouterr().err


def test_console_script_runs_the_main_job() -> None:
    # The script sits beside the interpreter running the tests (the project's virtualenv).
    exe = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert exe is not None, "the genie console script is not installed"
    done = subprocess.run(
        [exe, "run", str(FINANCE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Genie Financial Report\n")
    assert done.stderr == ""


def test_agents_page_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agents", "--markdown"]) == 0
    page = (ROOT / "docs" / "agents.md").read_text()
    assert capsys.readouterr().out == page, "docs/agents.md is stale: genie agents --markdown"
