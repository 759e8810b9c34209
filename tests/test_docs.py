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
        for promised in re.findall(r"print\(.*\)  # (.*)", code):
            for item in promised.split():
                assert item in printed, (page.name, item, printed)
