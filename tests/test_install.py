"""Installing: the distribution's name and extras as every message and page spells them, and the
Makefile's two installs (the main job without the dev tools, the tests with them)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import genie

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DISTRIBUTION = PROJECT["name"]


def test_the_distribution_is_not_pyats() -> None:
    # PyPI's `genie` is Cisco's pyATS library, which also installs a top-level `genie` package.
    assert DISTRIBUTION == "genie-bus"
    # The import name and the command stay `genie`.
    assert Path(genie.__file__).parent == ROOT / "genie"
    scripts = importlib.metadata.distribution(DISTRIBUTION).entry_points.select(
        group="console_scripts"
    )
    assert [(ep.name, ep.value) for ep in scripts] == [("genie", "_genie_cli:cli")]


def _shipped_texts() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("genie", "agents", "benchmarks", "tests"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def test_every_install_hint_names_this_distribution_and_a_real_extra() -> None:
    hints = []
    for path in _shipped_texts():
        for match in re.finditer(r"pip install '?([\w.-]+)\[(\w+)\]", path.read_text()):
            hints.append((path.relative_to(ROOT), match.group(1), match.group(2)))
    assert len(hints) >= 5  # the simulation's, the harness's, the docs'
    extras = set(PROJECT["optional-dependencies"])
    wrong = [h for h in hints if h[1] != DISTRIBUTION or h[2] not in extras]
    assert wrong == []


MAKE = shutil.which("make")


def _plan(tmp_path: Path, target: str) -> list[str]:
    """The commands ``make TARGET`` would run (``make -n``) in a checkout at ``tmp_path``."""
    # Under `make test` the outer make's variables would reach this one (and make it print
    # "Entering directory" lines): the plan is asked for as from a shell.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    done = subprocess.run(
        [MAKE or "make", "-n", "--no-print-directory", target, "PYTHON=python3", "VENV=.venv"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _installs(plan: list[str]) -> list[str]:
    return [line.split("pip install", 1)[1].split()[-1] for line in plan if "pip install" in line]


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_make_run_from_a_fresh_clone_installs_only_what_it_needs(checkout: Path) -> None:
    plan = _plan(checkout, "run")
    assert plan[0] == "python3 -m venv .venv"
    assert _installs(plan) == ["'.[pii]'"]  # the package and libphonenumber for its policies
    assert plan[-1] == ".venv/bin/genie run config/pipelines/finance.yaml"
    assert _installs(_plan(checkout, "test")) == ["'.[dev]'"]


def _installed(checkout: Path, *stamps: str) -> None:
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "python").touch()
    for stamp in stamps:
        (checkout / ".venv" / stamp).touch()


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_make_test_after_make_run_adds_the_dev_tools(checkout: Path) -> None:
    _installed(checkout, ".installed-run")
    assert _installs(_plan(checkout, "run")) == []
    assert _installs(_plan(checkout, "test")) == ["'.[dev]'"]


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_make_run_after_make_test_installs_nothing(checkout: Path) -> None:
    _installed(checkout, ".installed-dev", ".installed-run")  # what the dev install touches
    assert _installs(_plan(checkout, "run")) == []
    assert _installs(_plan(checkout, "test")) == []
    dev_recipe = (ROOT / "Makefile").read_text().split("$(DEV_STAMP): ")[1].split("\n\n")[0]
    assert "touch $(DEV_STAMP) $(RUN_STAMP)" in dev_recipe


@pytest.mark.skipif(MAKE is None, reason="make is not installed")
def test_an_edited_pyproject_reinstalls(checkout: Path) -> None:
    _installed(checkout, ".installed-dev", ".installed-run")
    later = (checkout / ".venv" / ".installed-dev").stat().st_mtime + 10
    os.utime(checkout / "pyproject.toml", (later, later))
    assert _installs(_plan(checkout, "run")) == ["'.[pii]'"]
    assert _installs(_plan(checkout, "test")) == ["'.[dev]'"]
