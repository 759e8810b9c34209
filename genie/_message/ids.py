"""Message ids: a runtime's own prefix and a counter."""

from __future__ import annotations

import itertools
import random
import uuid

__all__ = ["IdSource"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class IdSource:
    """Message ids for one runtime: ``<prefix>-<n in hex>`` for n = 1, 2, ...

    Cheaper than a UUID per message, unique across runtimes in a process (the random prefix),
    and reproducible when seeded (simulations). The prefix is letters only: an id travels in
    metadata (``trace_id``) that the policies scan, and a hex prefix that happened to be all
    digits (1 in 280) read as a 12-digit identity number and denied the request.
    """

    __slots__ = ("_counter", "_prefix")

    def __init__(self, seed: int | None = None) -> None:
        bits = random.Random(seed).getrandbits(48) if seed is not None else uuid.uuid4().int
        bits &= 2**48 - 1
        letters = []
        for _ in range(11):  # 26**11 > 2**48: every prefix bit is kept
            bits, digit = divmod(bits, 26)
            letters.append(_LETTERS[digit])
        self._prefix = "".join(letters) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        """The next id."""
        return f"{self._prefix}{next(self._counter):x}"

    __call__ = next
