"""The ``genie`` console script (``[project.scripts]`` in pyproject.toml), and how the command
says a Ctrl-C that ends it before a command runs.

A module beside the ``genie`` package, not in it: importing any module of genie first runs
the library's own imports (a second or more on a loaded machine), and a Ctrl-C meanwhile
printed Python's KeyboardInterrupt traceback, as nothing of genie was there yet to catch it.
Here only the standard library is imported first, so the command ends as it does for a
Ctrl-C at any later point before a command runs: one line, exit 130 (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["INTERRUPTED", "cli", "command_at", "interrupted", "interrupted_early", "said_as"]

# What a shell reports for a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130


def cli() -> int:
    """The ``genie`` command: ``genie._cli.main.cli``, once genie is imported."""
    try:
        from genie._cli.main import cli as command
    except KeyboardInterrupt as exc:
        return interrupted_early(exc)
    return command()


def interrupted_early(exc: KeyboardInterrupt) -> int:
    """A Ctrl-C before a command runs (genie imported, the parser built, the entry points
    read; a command says its own), in one line; its exit status. Raised as it is under
    ``--debug``."""
    if "--debug" in sys.argv[1:]:
        raise exc
    return interrupted(said_as())


def interrupted(said: str) -> int:
    """Ctrl-C during the command line names ``said`` (``genie run``), in one line; its exit
    status."""
    print(f"{said}: interrupted", file=sys.stderr)
    return INTERRUPTED


def said_as() -> str:
    """How the command line names this command in a message: ``genie run``, or ``genie``."""
    at = command_at(sys.argv[1:])
    return f"genie {sys.argv[1 + at]}" if at < len(sys.argv) - 1 else "genie"


def command_at(argv: Sequence[str]) -> int:
    """Where the command's name is in ``argv`` (after the options of ``genie`` itself)."""
    return next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
