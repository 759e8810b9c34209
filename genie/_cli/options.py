"""The parser of every command, and the types of its options.

A mistake in the command line is one line naming the command and the option, and exit code 2,
before anything is loaded: ``genie run: argument --timeout: a number of seconds above 0, not
'nan' (see genie run --help)``. Each numeric option is parsed by one of the types here, so NaN,
an infinity, a negative or an out-of-range value is refused the same way by every command
instead of failing later with a traceback (a port of 99999 raised ``OverflowError`` when the
socket was bound) or being taken (a drain of NaN seconds). An option naming a file, a server or
a name refuses the empty text (``--audit "$LOG"`` with the variable unset), which read as the
option left out: no audit log kept, the run in this process instead of on NATS.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from .._base.clock import duration

__all__ = [
    "Parser",
    "as_seconds",
    "byte_count",
    "count",
    "given",
    "name_option",
    "number",
    "path_option",
    "port",
    "rate",
    "seconds",
    "seconds_or_zero",
    "url_option",
]

N = TypeVar("N", int, float)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (the command, the mistake and where the
    usage is), and whose subcommands report arguments they do not know themselves, with their
    own name, instead of leaving them to the top-level parser."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        found, extras = super().parse_known_args(args, namespace)
        if extras and isinstance(self, _Subparser):
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return found, extras

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", _Subparser)
        return super().add_subparsers(**kwargs)


class _Subparser(Parser):
    """A command's parser (``genie run``): unknown arguments are its own mistake."""


def number(
    convert: Callable[[str], N], what: str, low: N, high: N | None = None, *, above: bool = False
) -> Callable[[str], N]:
    """An argparse type: ``convert(text)``, finite, at least ``low`` (above it when ``above``)
    and at most ``high``; otherwise the error says what was expected (``what``)."""

    def parse(text: str) -> N:
        # Python reads other scripts' digits (an Arabic-Indic five) and underscores (``1_0``) as
        # numbers; a pipeline file and genie serve's ``?timeout=`` do not, nor does a command.
        try:
            value = convert(text) if text.isascii() and "_" not in text else None
        except (ValueError, OverflowError):
            value = None
        if (
            value is None
            or (isinstance(value, float) and not math.isfinite(value))
            or value < low
            or (above and value == low)
            or (high is not None and value > high)
        ):
            raise argparse.ArgumentTypeError(f"{what}, not {text!r}")
        return value

    parse.__name__ = what  # argparse names a type by it when it raises something else
    return parse


def given(what: str) -> Callable[[str], str]:
    """An argparse type: any text but the empty one; the error says what was expected."""

    def parse(text: str) -> str:
        if not text:
            raise argparse.ArgumentTypeError(f"{what}, not ''")
        return text

    parse.__name__ = what
    return parse


def as_seconds(text: str) -> float:
    """A duration as a pipeline file writes one (``5``, ``200ms``, ``2m``), else any float."""
    found = duration(text)
    return float(text) if found is None else found


seconds = number(as_seconds, "a number of seconds above 0", 0.0, above=True)
seconds_or_zero = number(as_seconds, "a number of seconds, 0 or more", 0.0)
rate = number(float, "a number above 0", 0.0, above=True)
count = number(int, "a whole number, 1 or more", 1)
byte_count = number(int, "a number of bytes, 1 or more", 1)
port = number(int, "a port number from 0 to 65535", 0, 65535)
path_option = given("a path")
url_option = given("a URL")
name_option = given("a name")
