"""The benchmark harness: a smoke run end to end (what CI executes), its outputs, bad input.

No timing is asserted here (the machines are shared and noisy); what is checked is that every
implementation did the work, the figures are consistent and the files are written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from genie_bench import measure, workloads
from genie_bench.cli import requests_at
from genie_bench.variants import VARIANTS

from genie._cli import main

from .conftest import DenyTo


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the harness measures against the raw asyncio floor


ROOT = Path(__file__).resolve().parent.parent


def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "results"
    assert main(["bench", "--quick", "--out", str(out), *args]) == 0
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench")
    return tmp / "results", bench(tmp)


def test_quick_run_measures_every_implementation_on_every_workload(
    quick: tuple[Path, dict[str, Any]],
) -> None:
    _, results = quick
    assert results["skipped"] == {}
    assert list(results["fanout"]) == list(VARIANTS)
    for by_n in results["fanout"].values():
        assert list(by_n) == ["1", "10"]
        for n, row in by_n.items():
            assert 0 < row["p50_us"] <= row["p99_us"] <= row["p999_us"]
            assert row["samples"] == 20
            assert row["deliveries_per_s"] == pytest.approx(row["requests_per_s"] * int(n))
    assert results["fanout"]["asyncio"]["10"]["p50_x_floor"] == 1.0
    assert list(results["chain"]) == list(VARIANTS)
    assert all(row["median_us"] > 0 for row in results["chain"].values())
    assert set(results["memory"]) == {"asyncio", "anyio", "genie", "autogen-core"}
    assert all(row["bytes_per_agent"] > 0 for row in results["memory"].values())
    startup = results["startup"]
    assert set(startup["import"]) == {"asyncio", "genie", "autogen_core"}
    assert startup["finance_run"]["median_ms"] > startup["interpreter"]["median_ms"]
    assert results["environment"]["packages"]["autogen-core"]
    assert results["command"].startswith("genie bench --quick")


def test_quick_run_writes_json_markdown_and_plot(quick: tuple[Path, dict[str, Any]]) -> None:
    out, results = quick
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    for title in ("## Fan-out and fan-in: latency", "throughput", "## Per hop", "## Memory"):
        assert title in md
    assert "## Against design.md §7" in md
    assert "![latency versus N](latency.png)" in md
    targets = {t["target"]: t for t in results["targets"]}
    assert "per hop, genie: at most 1.5x the floor" in targets
    assert "import genie: under 150 ms" in targets
    for t in targets.values():
        at_most = t["measured"] <= t["limit"]
        assert t["met"] == (at_most if t["at_most"] else t["measured"] >= t["limit"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "argument --n: 0 is not a positive integer"),
        (["--n", "10,-5"], "argument --n: -5 is not a positive integer"),
        (["--n", "ten"], "argument --n: 'ten' is not a comma-separated list of integers"),
        (["--concurrency", "0"], "argument --concurrency: 0 is not a positive integer"),
        (["--concurrency", "-4"], "argument --concurrency: -4 is not a positive integer"),
        (["--requests", "1,2"], "argument --requests: '1,2' is not one positive integer"),
        (["--variants", "genie,fast"], "unknown variant 'fast' (known: asyncio, anyio, genie"),
        (["--workloads", "speed"], "unknown workload 'speed' (known: fanout, chain"),
        (["--payload-bytes", "-1"], "--payload-bytes: -1 is negative"),
    ],
)
def test_bad_input_is_refused_with_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["bench", *args])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_policy_file_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--quick", "--policies", str(tmp_path / "nope.yaml")])
    assert code == 2
    assert f"policy file {tmp_path / 'nope.yaml'} not found" in capsys.readouterr().err
    # Without a +policies variant the file is not needed.
    args = ["--variants", "genie", "--workloads", "chain", "--policies", "nope.yaml"]
    assert bench(tmp_path, *args)["chain"].keys() == {"asyncio", "genie"}


def test_out_must_be_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        main(["bench", "--out", str(tmp_path / "file")])
    assert "is not a directory" in capsys.readouterr().err


def run_without(module: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`genie bench --quick` in a child where ``module`` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from genie._cli import main\n"
        f"sys.exit(main(['bench', '--quick', '--out', {str(tmp_path)!r}, *{list(args)!r}]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_without_autogen_core_the_peer_is_skipped_and_the_rest_runs(tmp_path: Path) -> None:
    done = run_without("autogen_core", tmp_path, "--workloads", "fanout,memory")
    assert done.returncode == 0, done.stderr
    why = "autogen-core is not installed (pip install 'genie[bench]'): its column is skipped"
    assert why in done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["skipped"] == {"autogen-core": why}
    assert "autogen-core" not in results["fanout"]
    assert "genie+policies+metrics" in results["fanout"]
    assert "autogen-core" not in results["memory"]
    assert f"Skipped **autogen-core**: {why}" in (tmp_path / "results.md").read_text()


def test_without_matplotlib_the_plot_is_skipped_and_the_rest_written(tmp_path: Path) -> None:
    done = run_without("matplotlib", tmp_path, "--workloads", "fanout", "--variants", "genie")
    assert done.returncode == 0, done.stderr
    assert "matplotlib is not installed (pip install 'genie[bench]'): no plot" in done.stderr
    assert not (tmp_path / "latency.png").exists()
    assert json.loads((tmp_path / "results.json").read_text())["fanout"]["genie"]


async def test_a_workload_that_does_not_do_the_work_fails_loudly() -> None:
    """A request whose replies do not all arrive raises instead of being timed as done."""
    impl = workloads.genie([DenyTo("w1")], metrics=False)
    async with impl.fanout(3, "") as ask:
        with pytest.raises(workloads.WorkloadError, match=r"\(partial\): got 2, expected 3"):
            await ask()


@pytest.mark.parametrize("n", [1, 7, 50])
async def test_every_implementation_gathers_n_replies_with_requests_in_flight(n: int) -> None:
    impls = [workloads.FLOOR, workloads.ANYIO, workloads.genie((), metrics=True)]
    for impl in impls:
        async with impl.fanout(n, "payload") as ask:
            # Each ask() checks that its n replies arrived; 16 requests, 8 in flight at once.
            assert await measure.throughput(ask, requests=16, concurrency=8) > 0
        async with impl.chain(5, "payload") as hop:
            await hop()


def test_percentile_is_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 201)]
    assert measure.percentile(samples, 50) == 100
    assert measure.percentile(samples, 99) == 198
    assert measure.percentile(samples, 99.9) == 200  # fewer than 1000 samples: the maximum
    assert measure.percentile([5.0], 99.9) == 5


def test_large_fan_outs_take_fewer_sequential_requests() -> None:
    assert requests_at(50, 1000) == 1000
    assert requests_at(1000, 1000) == 100
    assert requests_at(100, 20) == 20


def test_from_python_a_sweep_is_settings_run_and_write(tmp_path: Path) -> None:
    from genie_bench import Settings, run, write

    rows = {}
    for concurrency in (1, 8):
        settings = Settings(
            n=[5], requests=10, rounds=1, concurrency=concurrency, variants=["genie"]
        )
        settings.workloads = ["fanout"]
        results = run(settings)
        rows[concurrency] = results["fanout"]["genie"]["5"]
    assert rows[1]["samples"] == rows[8]["samples"] == 10
    assert all(
        r["deliveries_per_s"] == pytest.approx(r["requests_per_s"] * 5) for r in rows.values()
    )
    paths = write(results, tmp_path)
    assert [p.name for p in paths] == ["results.json", "results.md", "latency.png"]
