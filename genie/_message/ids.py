"""Message ids: a runtime's own prefix and a counter, and ids derived from a delivery."""

from __future__ import annotations

import hashlib
import itertools
import random
import uuid
from collections.abc import Callable

__all__ = ["IdSource", "derived_id"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class IdSource:
    """Message ids for one runtime: ``<prefix>-<n in hex>`` for n = 1, 2, ...

    Cheaper than a UUID per message, unique across runtimes in a process (the random prefix),
    and reproducible when seeded (simulations). The prefix is letters only: an id travels in
    metadata (``trace_id``) that the policies scan, and a hex prefix that happened to be all
    digits (1 in 280) read as a 12-digit identity number and denied the request.
    """

    __slots__ = ("_prefix", "next")

    def __init__(self, seed: int | None = None) -> None:
        bits = random.Random(seed).getrandbits(48) if seed is not None else uuid.uuid4().int
        bits &= 2**48 - 1
        letters = []
        for _ in range(11):  # 26**11 > 2**48: every prefix bit is kept
            bits, digit = divmod(bits, 26)
            letters.append(_LETTERS[digit])
        self._prefix = "".join(letters) + "-"
        # The next id: the prefix and the counter in hex (the prefix is letters only, so the
        # template holds no other conversion). Built from the standard library's iterators,
        # so taking an id runs no Python frame: every message takes one.
        self.next: Callable[[], str] = map(
            (self._prefix + "%x").__mod__, itertools.count(1)
        ).__next__

    def __call__(self) -> str:
        return self.next()

    def minted(self, message_id: str) -> bool:
        """Whether ``message_id`` is one of this source's (not one a handler chose)."""
        return message_id.startswith(self._prefix)


def derived_id(delivery: str, index: int) -> str:
    """The id of the ``index``-th message ``delivery`` sends: the same on every run of it, so
    what a run cut short sent is known again by the run after it (a broker drops it as a
    duplicate; a store gives back the answer it kept). Letters only, like IdSource's
    (policies scan ids that travel in metadata)."""
    digest = hashlib.sha256(f"{delivery}/{index}".encode()).digest()
    return "".join(_LETTERS[b % 26] for b in digest[:20])
