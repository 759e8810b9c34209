"""The wheel a user installs runs the shipped pipelines by name, and ``genie bench``, in any
folder (issue 36, item 5): they are package data (``genie_agents/config/``), not files of the
clone."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


@pytest.mark.xdist_group("wheel")
def test_an_installed_wheel_runs_finance_and_the_bench_outside_the_clone(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT.parent),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("genie_bus-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "genie_agents/config/pipelines/finance.yaml",
        "genie_agents/config/policies/ai-policy.yaml",
        "genie_agents/config/data/sample.csv",
    ):
        assert shipped in names

    # A fresh environment with the wheel alone; its dependencies are this one's packages,
    # seen after it (a path, not a site folder: this environment's editable genie is not).
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, str(wheel)],
        check=True,
        timeout=300,
    )
    Path(target, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    user = tmp_path / "somewhere"
    user.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def genie(*argv: str) -> subprocess.CompletedProcess[str]:
        """``genie ARGV`` in the fresh environment, from a folder outside the clone."""
        return subprocess.run(
            [str(python), "-m", "genie._cli", *argv],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    where = subprocess.run(
        [str(python), "-c", "import genie, genie_agents; print(genie.__file__)"],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(target)  # the wheel's genie, not the clone's
    ran = genie("run", "finance")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("Genie Financial Report")
    missing = genie("run", "financ")
    assert missing.returncode == 2
    assert missing.stderr.startswith("financ: does not exist (did you mean 'finance'?)")
    # The harness too: its pipeline and policies are the shipped ones.
    bench = genie("bench", "--quick", "--variants", "genie", "--workloads", "chain", "--out", "r")
    assert bench.returncode == 0, bench.stderr
    assert (user / "r" / "results.json").is_file()
