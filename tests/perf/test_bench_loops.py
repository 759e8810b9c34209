"""``genie bench --loop asyncio,uvloop`` (issue 40): the floors and genie again on uvloop, in
the same interleaved rounds, each ratio to the floors on its own loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from genie_bench.variants import loop_twins

from genie._cli.main import main

from ..conftest import requires


def test_the_floors_and_each_pure_genie_variant_get_a_uvloop_twin() -> None:
    names = ["asyncio", "pool", "genie", "genie+policies", "genie+mypyc", "langgraph"]
    assert loop_twins(names) == [
        "asyncio@uvloop",
        "pool@uvloop",
        "genie@uvloop",
        "genie+policies@uvloop",
    ]


@requires("uvloop", extra="uvloop")
def test_genie_and_the_floors_are_measured_on_both_loops_in_one_run(tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = ["--workloads", "fanout,chain", "--variants", "genie", "--loop", "asyncio,uvloop"]
    assert main(["bench", "--quick", "--out", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    names = ["asyncio", "pool", "genie", "asyncio@uvloop", "pool@uvloop", "genie@uvloop"]
    assert list(results["fanout"]) == names
    assert list(results["chain"]) == names
    fanout = results["fanout"]
    # Each floor's ratio to itself is 1 on its own loop: the twins' ratios are to their loop's.
    for floor in ("asyncio@uvloop", "pool@uvloop"):
        key = "p50_x_floor" if floor.startswith("asyncio") else "p50_x_pool"
        assert fanout[floor]["10"][key] == 1.0
    twin, floor = fanout["genie@uvloop"]["10"], fanout["asyncio@uvloop"]["10"]
    assert twin["p50_x_floor"] == pytest.approx(twin["p50_us"] / floor["p50_us"])
    chain = results["chain"]
    assert chain["genie@uvloop"]["x_floor"] == pytest.approx(
        chain["genie@uvloop"]["median_us"] / chain["asyncio@uvloop"]["median_us"]
    )
    # Judged again on uvloop, apart from the verdicts on asyncio.
    judged = {t["target"] for t in results["loop_targets"]}
    assert "per hop, genie: at most 1.2x the asyncio floor (uvloop)" in judged
    md = (out / "results.md").read_text()
    assert md.index("## Against the performance targets") < md.index("## On uvloop")


def test_uvloop_not_installed_skips_the_twins_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A uvloop that is found and fails to import (a build for another interpreter, say).
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "uvloop.py").write_text("raise ImportError('built for another Python')\n")
    monkeypatch.syspath_prepend(str(shim))
    monkeypatch.delitem(sys.modules, "uvloop", raising=False)
    out = tmp_path / "results"
    args = ["--workloads", "chain", "--variants", "genie", "--loop", "asyncio,uvloop"]
    assert main(["bench", "--quick", "--out", str(out), *args]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["chain"]) == ["asyncio", "pool", "genie"]
    assert "genie-bus[uvloop]" in results["skipped"]["uvloop"]
    assert "uvloop cannot be imported" in capsys.readouterr().err
