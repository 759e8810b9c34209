"""Every Python example in the README and docs/ runs as written and prints what it says.

Each ```python block runs on its own in a fresh interpreter (a user copies one block, not a
page), in a scratch folder that sees the repository's ``config/`` as a clone's root does, so
what an example writes (an audit log, benchmark results) lands there. Where a block has
``print(...)  # words``, every word must be in what it printed. A block that is deliberately a
fragment is preceded by ``<!-- fragment -->`` on the line before its fence; it must still
parse (top-level ``await`` allowed). There should be few.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRAGMENT = "<!-- fragment -->"
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    code: str
    fragment: bool

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def examples_in(text: str, page: str) -> list[Example]:
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
        line = text.count("\n", 0, match.start()) + 1
        out.append(Example(page, line, match.group(1), before.strip() == FRAGMENT))
    return out


EXAMPLES = [e for page in PAGES for e in examples_in(page.read_text(), page.name)]


def test_the_extraction_finds_every_example_and_only_marked_fragments() -> None:
    text = (
        "Intro.\n\n```python\nprint(1)\n```\n\n"
        "<!-- fragment -->\n```python\nawait rt.publish(msg)\n```\n\n"
        "<!-- fragment -->\n\nA paragraph between: the marker no longer applies.\n"
        "```python\nx = 1\n```\n"
        "```sh\nmake run\n```\n"
    )
    found = examples_in(text, "page.md")
    assert [(e.line, e.code, e.fragment) for e in found] == [
        (3, "print(1)\n", False),
        (8, "await rt.publish(msg)\n", True),
        (15, "x = 1\n", False),
    ]
    runnable = [e for e in EXAMPLES if not e.fragment]
    assert len(runnable) >= 15, [str(e) for e in EXAMPLES]
    assert {"README.md", "concepts.md", "governance.md"} <= {e.page for e in runnable}


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not e.fragment], ids=str)
def test_example_runs_as_written(example: Example, tmp_path: Path) -> None:
    (tmp_path / "config").symlink_to(ROOT / "config")
    script = tmp_path / "example.py"
    script.write_text(example.code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{example} fails:\n{done.stderr}"
    # Each promised comment appears in the output as it is written: the same words in the same
    # order (spacing aside), not merely each word somewhere.
    printed = " ".join(done.stdout.split())
    for promised in re.findall(r"print\(.*\)  # (.*)", example.code):
        assert " ".join(promised.split()) in printed, (str(example), promised, done.stdout)


def test_fragments_still_parse() -> None:
    for example in EXAMPLES:
        if example.fragment:
            compile(example.code, str(example), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
