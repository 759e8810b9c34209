"""Every Python example in the README and docs/ runs as written and prints what it says.

Each ```python block runs on its own in a fresh interpreter (a user copies one block, not a
page), in a scratch folder that sees the repository's ``config/`` as a clone's root does, so
what an example writes (an audit log, benchmark results) lands there. Where a block has
``print(...)  # words``, the words are what that print printed (every call of it, spacing
aside); ``...`` in them stands for text left out, so ``# ... does not match ...`` is an
excerpt. A block that is deliberately a
fragment is preceded by ``<!-- fragment -->`` on the line before its fence; it must still
parse (top-level ``await`` allowed). There should be few.
"""

from __future__ import annotations

import ast
import json
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


# ``print(...)  # words`` as a whole statement: what it prints is promised to be ``words``.
PROMISE = re.compile(r"^(\s*)print\((.*)\)  # (.*)$")
# Defined in each example that promises output: prints as ``print`` does and keeps what each
# promising line printed, written to ``printed.json`` at exit (by the example's own process,
# not one a process pool spawned from it).
RECORDER = """
def __printed__(line, *args, **kwargs):
    import atexit, io, json, multiprocessing, sys
    said = __printed__.__dict__.setdefault("said", {})
    if not said and multiprocessing.parent_process() is None:
        def dump():
            with open("printed.json", "w") as out:
                json.dump(said, out)
        atexit.register(dump)
    buffer = io.StringIO()
    print(*args, **{**kwargs, "file": buffer})
    (kwargs.get("file") or sys.stdout).write(buffer.getvalue())
    said[line] = said.get(line, "") + buffer.getvalue()
"""


def recording(code: str) -> tuple[str, dict[str, str]]:
    """``code`` with each promising print recorded, and the promises by line number."""
    lines = code.splitlines(keepends=True)
    promises: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        match = PROMISE.match(line.rstrip("\n"))
        if match:
            indent, arguments, promised = match.groups()
            promises[str(number)] = promised
            lines[number - 1] = f"{indent}__printed__({str(number)!r}, {arguments})\n"
    if promises:
        futures = [i for i, line in enumerate(lines) if line.startswith("from __future__")]
        lines.insert(futures[-1] + 1 if futures else 0, RECORDER)
    return "".join(lines), promises


def kept(promised: str, printed: str) -> bool:
    """Whether ``printed`` is ``promised``, spacing aside, ``...`` standing for any text."""
    pieces = [re.escape(" ".join(piece.split())) for piece in promised.split("...")]
    return re.fullmatch(r"\s*(.*?)\s*".join(pieces), " ".join(printed.split())) is not None


def test_a_promise_is_the_whole_output_unless_it_says_what_it_leaves_out() -> None:
    assert kept("partial missing active consent", "partial missing active consent\n")
    assert not kept("partial missing active consent", "partial missing active consent for x\n")
    assert kept("partial missing ...", "partial missing active consent for x\n")
    assert kept("... HMAC does not match ...", "audit: seq 1 HMAC does not match (forged)\n")
    assert not kept("... HMAC does not match", "audit: seq 1 HMAC does not match (forged)\n")
    assert kept("gold 1.5 card 0.6", "gold  1.5\ncard 0.6\n")  # a loop's lines, joined
    code, promises = recording("from __future__ import annotations\nprint(1)  # 1\nprint(2)\n")
    assert promises == {"2": "1"}
    assert code.splitlines()[0] == "from __future__ import annotations"
    assert "__printed__('2', 1)" in code.splitlines()


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not e.fragment], ids=str)
def test_example_runs_as_written(example: Example, tmp_path: Path) -> None:
    (tmp_path / "config").symlink_to(ROOT / "config")
    script = tmp_path / "example.py"
    code, promises = recording(example.code)
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{example} fails:\n{done.stderr}"
    if not promises:
        return
    # Each promised comment is what its print printed, as it is written: an excerpt says so.
    printed = json.loads((tmp_path / "printed.json").read_text())
    broken = {
        f"line {n}": (promised, printed.get(n))
        for n, promised in promises.items()
        if n not in printed or not kept(promised, printed[n])
    }
    assert not broken, f"{example}: promised, printed: {broken}"


def test_fragments_still_parse() -> None:
    for example in EXAMPLES:
        if example.fragment:
            compile(example.code, str(example), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
