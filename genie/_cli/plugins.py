"""Commands other packages add to ``genie``: entry points in the ``genie.commands`` group.

An entry point names a callable ``main(argv, prog) -> int`` that parses its own arguments; the
first paragraph of its docstring is its line in ``genie --help``. The benchmark harness adds
``genie bench`` this way (``genie_bench.cli:main``), so the library never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

from .._errors import described

__all__ = ["ENTRY_POINT_GROUP", "Command", "installed", "summary"]

ENTRY_POINT_GROUP = "genie.commands"
Command = Callable[[Sequence[str], str], int]


def installed() -> dict[str, EntryPoint]:
    """Every installed command by name (the metadata only: nothing is imported)."""
    return {
        ep.name: ep for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    }


def summary(entry: EntryPoint) -> str:
    """The command's line in ``genie --help``; a command that cannot load says why there."""
    try:
        command = entry.load()
    except Exception as exc:  # a broken plug-in must not break `genie --help`
        return f"(from {entry.value}: cannot be loaded: {described(exc)})"
    doc = (getattr(command, "__doc__", None) or "").strip()
    if not doc:
        return f"(from {entry.value})"
    line = " ".join(doc.split("\n\n")[0].split()).rstrip(".")
    return line[0].lower() + line[1:]  # help lines start in lower case, as argparse's do
