"""``genie init DIR`` writes a starter project that passes its own test and runs, from a folder
outside the clone, with genie as installed (issue 36)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genie._cli.main import main

ROOT = Path(__file__).resolve().parents[2]
Capture = pytest.CaptureFixture[str]


def outside(tmp_path: Path) -> dict[str, str]:
    """The environment of a user's shell: nothing points at the clone."""
    assert ROOT not in tmp_path.parents
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GENIE_USER")}


def test_the_starter_project_passes_its_own_test_and_runs(tmp_path: Path, capsys: Capture) -> None:
    project = tmp_path / "my-app"
    assert main(["init", str(project)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == f"wrote {project / 'agents.py'}"
    env = outside(tmp_path)
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "4 passed" in tested.stdout  # two tests, each on asyncio and trio
    genie = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert genie is not None
    ran = subprocess.run(
        [genie, "run", "pipeline.yaml", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert '"words": 7' in ran.stdout


def test_init_overwrites_nothing(tmp_path: Path, capsys: Capture) -> None:
    # The refusal said "writes only into a new or empty folder", though a folder of other
    # files is taken: it says the rule it applies.
    (tmp_path / "agents.py").write_text("# mine\n")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"genie init: {tmp_path} already has agents.py: genie init writes its files into a "
        "folder that has none of them (other files may be there), and overwrites nothing\n"
    )
    assert (tmp_path / "agents.py").read_text() == "# mine\n"
    afile = tmp_path / "file"
    afile.write_text("")
    assert main(["init", str(afile)]) == 2
    assert capsys.readouterr().err == f"genie init: {afile} exists and is not a folder\n"


def test_init_writes_beside_other_files(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 0
    capsys.readouterr()
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / "pipeline.yaml").is_file()


def _console(page: str, command: str) -> list[list[str]]:
    """The lines each ``$ command`` block of ``docs/page`` shows under its command."""
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(rf"```\n\$ {re.escape(command)}\n(.*?)```", text, flags=re.S)
    return [str(block).splitlines() for block in blocks]


def test_writing_agents_shows_what_the_starter_project_prints(
    tmp_path: Path, capsys: Capture
) -> None:
    # The page said '# {"text": "7 words", "words": 7}' and 'genie run: my-app: ...'.
    project = tmp_path / "my-app"
    assert main(["init", str(project)]) == 0
    capsys.readouterr()
    exe = shutil.which("genie", path=str(Path(sys.executable).parent))
    assert exe is not None

    def genie(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, *args],
            cwd=project,
            env=outside(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    answered, failed = _console("writing-agents.md", "genie run pipeline.yaml")
    done = genie("run", "pipeline.yaml")
    assert (done.returncode, done.stdout.splitlines()) == (0, answered)
    agents = project / "agents.py"
    lines = agents.read_text().splitlines()
    assert lines[23] == "        words = len(payload.text.split())"  # line 24, as the page says
    lines[23] += " // 0"
    agents.write_text("\n".join(lines) + "\n")
    done = genie("run", "pipeline.yaml")
    assert (done.returncode, done.stderr.splitlines()) == (1, failed)
    done = genie("--debug", "run", "pipeline.yaml")
    shown = done.stderr.replace(str(tmp_path), "/home/you").splitlines()
    # After the log's records; Python's own markers under the code line vary by version.
    printed = shown[shown.index(failed[0]) :]
    [documented] = _console("writing-agents.md", "genie --debug run pipeline.yaml")
    assert [s for s in printed if s.strip("~^ ")] == [s for s in documented if s.strip("~^ ")]


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path: Path, capsys: Capture) -> None:
    # Under a regular file no folder can be made: mkdir's error was a traceback.
    afile = tmp_path / "file"
    afile.write_text("")
    assert main(["init", str(afile / "app")]) == 2
    err = capsys.readouterr().err
    assert err == f"genie init: cannot make the folder {afile / 'app'}: Not a directory\n"


def test_init_writes_through_no_link(tmp_path: Path, capsys: Capture) -> None:
    # A link that leads nowhere is not a file (exists() is False), yet writing its name
    # made the file it points to, wherever that is.
    target = tmp_path / "elsewhere.py"
    project = tmp_path / "app"
    project.mkdir()
    (project / "agents.py").symlink_to(target)
    assert main(["init", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genie init: {project} already has agents.py: ")
    assert not target.exists()
    assert sorted(p.name for p in project.iterdir()) == ["agents.py"]


def test_init_that_fails_midway_leaves_none_of_its_files(tmp_path: Path) -> None:
    # A write refused after some files were written (a full disk, a quota) left those, and
    # the next genie init into the folder was refused for them.
    import resource
    import signal

    def small_files() -> None:  # larger than agents.py, smaller than test_pipeline.py
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past it is EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))

    project = tmp_path / "app"
    ran = subprocess.run(
        [sys.executable, "-m", "genie", "init", str(project)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=small_files,
    )
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.startswith(
        f"genie init: cannot write {project / 'test_pipeline.py'}: File too large"
    ), ran.stderr
    assert "Traceback" not in ran.stderr
    assert list(project.iterdir()) == []
