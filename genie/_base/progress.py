"""A progress line on stderr for long commands (``genie simulate``, ``genie bench``)."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["ProgressLine"]


class ProgressLine:
    """One line: rewritten in place on a terminal, a line per update otherwise (logs)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.begin = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.begin

    def __call__(self, text: str) -> None:
        line = f"[{self.elapsed:6.1f}s] {text}"
        if self.tty:
            print(f"\r\033[K{line}", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def done(self) -> None:
        if self.tty:
            print("\r\033[K", end="", file=self.stream, flush=True)
