"""The CLI, in-process and as the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genie._cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "config" / "data" / "sample.csv"


def test_demo_prints_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "net        67,202.00" in out
    assert "Housing          25,000.00" in out
    assert "2026-01-14  Rent payment         25,000.00" in out
    assert out.rstrip().endswith("delivered=7 handled=7 denied=0 dead_lettered=0 shed=0")


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", str(SAMPLE), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "ok"
    assert data["missing"] == []
    assert data["stats"]["delivered"] == data["stats"]["handled"] == 7
    assert "Spending by category" in data["output"]["text"]


def test_demo_bad_csv_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,description,category,amount,type\n2026-01-01,x,Food,lots,debit\n")
    assert main(["demo", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "reader: failed: ValueError: line 2: amount 'lots' is not a number" in err


def test_demo_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "no/such.csv"]) == 2
    assert "cannot read no/such.csv: No such file or directory" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_console_script_runs() -> None:
    # The script sits beside the interpreter running the tests (the project's virtualenv).
    exe = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert exe is not None, "the genie console script is not installed"
    done = subprocess.run(
        [exe, "demo", str(SAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Genie demo report")
