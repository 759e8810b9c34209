"""``genie bench --compiled DIR``: genie's variants again from a mypyc-compiled tree (issue 19).

What is checked here without a compiler: a tree that is not compiled is refused before anything
runs, and a worker that would import genie from source under a ``+mypyc`` name stops the run
instead of reporting pure Python as compiled. ``make test-compiled`` sets ``GENIE_COMPILED`` to
the tree it built, and the last test then runs the harness with it.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from genie_bench import measure, workloads
from genie_bench.variants import build, compiled_twins

import genie._runtime.dispatch
from genie import ConfigurationError
from genie._cli.main import main

ROOT = Path(__file__).resolve().parents[2]
POLICIES = str(ROOT / "config/policies/ai-policy.yaml")


def test_a_tree_without_compiled_genie_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(ROOT / "genie", tmp_path / "genie")  # sources only, no extension
    code = main(["bench", "--quick", "--workloads", "chain", "--compiled", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--compiled: {tmp_path} holds no mypyc-compiled genie" in err
    assert "make compiled" in err
    assert "Traceback" not in err


def test_each_genie_variant_gets_a_compiled_twin_and_no_other() -> None:
    names = ["asyncio", "asyncio+envelope", "genie", "genie+policies+metrics", "langgraph"]
    assert compiled_twins(names) == ["genie+mypyc", "genie+policies+metrics+mypyc"]


def test_a_compiled_variant_runs_only_on_a_compiled_genie() -> None:
    # Under `make test-compiled` this process has the compiled genie; otherwise its sources,
    # and the +mypyc variant must not run on them.
    origin = genie._runtime.dispatch.__file__ or ""
    if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        assert [impl.name for impl in build(["genie+mypyc"], [])[0]] == [
            "asyncio",
            "pool",
            "genie",
        ]
    else:
        with pytest.raises(ConfigurationError, match=r"genie\+mypyc: genie was imported from"):
            build(["genie+mypyc"], [])


def test_a_compiled_worker_imports_from_the_tree_and_stops_when_it_is_not_compiled(
    tmp_path: Path,
) -> None:
    # A tree that passes no check: its genie is plain source. The worker must import genie
    # from it (the path in the error proves the tree came first) and refuse to measure.
    shutil.copytree(ROOT / "genie", tmp_path / "genie")
    with tempfile.TemporaryFile() as stderr:
        child = measure.Child("genie+mypyc", POLICIES, stderr, str(tmp_path))
        try:
            with pytest.raises(workloads.WorkloadError) as caught:
                child.call("start", shape="chain", size=3, blob="", concurrency=1)
        finally:
            child.close()
    why = str(caught.value)
    assert "genie was imported from source" in why
    assert str(tmp_path / "genie" / "_runtime" / "dispatch.py") in why


def test_a_compiled_variant_without_a_tree_is_an_error() -> None:
    with (
        tempfile.TemporaryFile() as stderr,
        pytest.raises(workloads.WorkloadError, match="no compiled tree given"),
    ):
        measure.Child("genie+mypyc", POLICIES, stderr)


@pytest.mark.skipif(
    "GENIE_COMPILED" not in os.environ, reason="needs a compiled tree (make test-compiled)"
)
def test_a_compiled_tree_is_measured_beside_pure_genie_in_one_run(tmp_path: Path) -> None:
    tree = os.environ["GENIE_COMPILED"]
    args = ["--workloads", "fanout,chain", "--variants", "genie,genie+policies+metrics"]
    out = tmp_path / "results"
    assert main(["bench", "--quick", "--out", str(out), *args, "--compiled", tree]) == 0
    results = json.loads((out / "results.json").read_text())
    names = ["asyncio", "pool", "genie", "genie+policies+metrics"]
    names += ["genie+mypyc", "genie+policies+metrics+mypyc"]
    assert list(results["chain"]) == names
    assert list(results["fanout"]) == names
    assert results["settings"]["compiled"] == tree
    md = (out / "results.md").read_text()
    assert "genie+mypyc" in md
    # The twins are judged too, apart from the pure variants.
    judged = {t["target"] for t in results["compiled_targets"]}
    assert "per hop, genie+mypyc: at most 1.2x the asyncio floor" in judged
    assert "per hop, genie+policies+metrics+mypyc: at most 2.0x the asyncio floor" in judged
    assert md.index("## Against the performance targets") < md.index(
        "## What compiling the hot modules buys"
    )
