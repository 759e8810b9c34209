"""Every link between the README and the docs' pages leads somewhere: the file is there and,
where the link names a section (``page.md#section``), the page has that heading.

Anchors are the ones GitHub makes from a heading: lower case, punctuation other than ``-`` and
``_`` dropped, spaces made ``-``, a repeated heading numbered ``-1``, ``-2`` in order.
Links out of the repository (``http:``, ``https:``, ``mailto:``) are not followed.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "design").glob("*.md")),
]
# ``[text](target)``, not an image's source inside a code span; fenced blocks are cut first.
LINK = re.compile(r"(?<!`)\[[^\]\n]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^(```|~~~).*?^\1", flags=re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", flags=re.M)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading (before numbering repeats)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCED.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(page: Path) -> list[tuple[int, str]]:
    text = FENCED.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text())
    text = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in LINK.finditer(text)]


def broken(page: Path, root: Path = ROOT) -> list[str]:
    out = []
    for line, target in links(page):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / unquote(path)).resolve() if path else page
        where = f"{page.relative_to(root)}:{line}: {target}"
        if not dest.exists():
            out.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            out.append(f"{where}: no heading with that anchor")
    return out


def test_slugs_are_githubs() -> None:
    assert slug("Compiled: a platform wheel with the hot modules in C") == (
        "compiled-a-platform-wheel-with-the-hot-modules-in-c"
    )
    assert slug("Event loops (asyncio, trio, uvloop)") == "event-loops-asyncio-trio-uvloop"
    assert slug("`genie run --store`: a run that resumes") == "genie-run---store-a-run-that-resumes"


def test_a_missing_page_and_a_missing_heading_are_found(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# Title\n\n## Same\n\n## Same\n\n```\n# not a heading\n```\n")
    page.write_text(
        "[ok](b.md#same-1) [ok](b.md#title) [gone](c.md) [bad](b.md#same-2) "
        "[code](b.md#not-a-heading) `[span](c.md)` [out](https://example.com/x.md)\n"
    )
    found = [target for _, target in links(page)]
    assert found[:5] == ["b.md#same-1", "b.md#title", "c.md", "b.md#same-2", "b.md#not-a-heading"]
    assert found[5:] == ["https://example.com/x.md"]
    assert [b.split(": ")[1] for b in broken(page, tmp_path)] == [
        "c.md",
        "b.md#same-2",
        "b.md#not-a-heading",
    ]


def test_every_link_between_the_pages_leads_somewhere() -> None:
    assert len(PAGES) > 40
    problems = [problem for page in PAGES for problem in broken(page)]
    assert not problems, "\n".join(problems)
