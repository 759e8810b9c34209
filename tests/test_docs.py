"""The Python examples in the README and the catalogue guide run and print what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    ROOT / "docs" / "catalogue.md",
    ROOT / "docs" / "observability.md",
    ROOT / "docs" / "simulation.md",
    ROOT / "docs" / "architecture.md",
    ROOT / "docs" / "semantics.md",
]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_examples_print_their_comments(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(page)
    assert blocks
    for code in blocks:
        exec(compile(code, str(page), "exec"), {"__name__": "__main__"})
        printed = capsys.readouterr().out
        # Each promised comment appears in the output as it is written: the same words in the
        # same order (spacing aside), not merely each word somewhere.
        words = " ".join(printed.split())
        for promised in re.findall(r"print\(.*\)  # (.*)", code):
            assert " ".join(promised.split()) in words, (page.name, promised, printed)
