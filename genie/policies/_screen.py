"""One screen for the content checks of a message: a few cheap tests that show none of them can
deny it, so the policy plan skips them for clean text (most messages).

Each content check that shares a ``ContentView`` says what it needs to allow a message
(``ScreenPart``): the content length under its limit, no trigger of its detectors in the scan,
no encoded segment in the raw text (for checks that read decoded views), a ``content
contains`` needle absent. The plan joins the parts of the checks of one message type into one
``Screen``; ``Screen.clear(msg)`` is True only when every one of those checks would allow
``msg`` without raising. When it is not clear (or it raises) the plan runs every check in the
list's order, as without the screen, so the first deny (policy and reason) is unchanged.

Each test is a superset of what its check looks for, read on the same text view:

- a detector's hint (``might_hold_pii``, ``might_hold_secret``, ``might_hold_sql``,
  ``might_inject``): each detector returns at once when its hint is false, so a scan without
  it is one the detector finds nothing in. A hint is words looked for in the scan without its
  spaces and punctuation, and other tests; the screen looks for every part's words in one
  search (``Literals``) and runs the other tests;
- decoded views (``_decode``): only what ``ENCODED`` finds in the raw text is decoded, so raw
  text without a match (``might_be_encoded``) has no view but the scan;
- ``content contains``: for a walked payload whose JSON holds its strings as they are, the
  folded needle absent from the scan decides (``ContentView.contains``).

A payload read through its JSON (``payload_pieces`` is None) is never clear: its checks run.

Whether the text tests clear is a function of the raw text alone, so the screen remembers the
raw texts it cleared (``CLEARED_TEXTS`` of at most ``CLEARED_TEXT_LENGTH`` characters, forgotten
all at once when full): agents repeat themselves (a status, a template, the same field names), and
a text seen before costs one lookup. A text not seen is tested in full.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._message.envelope import Message
from ._content import ContentView
from ._decode import might_be_encoded
from ._normalise import Literals, compact_words, fold, payload_pieces

__all__ = ["CLEARED_TEXTS", "CLEARED_TEXT_LENGTH", "Screen", "ScreenPart"]

CLEARED_TEXTS = 4096
CLEARED_TEXT_LENGTH = 2048  # the memory the memo can hold: 8 M characters at most

# The content limit of a screen without one: above every bound a walk gives.
_NO_LIMIT = 2**63


@functools.lru_cache(maxsize=64)
def _words_found_in(words: frozenset[str]) -> Callable[[str], bool]:
    """The search for ``words``, made once for all the screens that look for the same words:
    the message types of one policy set share their detectors' words, and a search is pure (it
    holds no message and no runtime's state)."""
    return Literals(words).found_in


@dataclass(frozen=True, slots=True)
class ScreenPart:
    """What one content check needs to be sure it allows a message; parts of checks sharing one
    ``view`` are screened together."""

    view: ContentView
    max_bytes: int | None = None  # MaxContentLength: the JSON's length at most this
    # A detector's hint: words looked for in the scan without its spaces and punctuation
    # (``compact_words``; the words of all parts in one search), and tests of the scan.
    words: tuple[str, ...] = ()
    tests: tuple[Callable[[str], object], ...] = ()
    decodes: bool = False  # the check reads decoded views too: no encoded segment in the raw text
    needle: str | None = None  # a ``content contains`` found in JSON only inside one string

    @property
    def group(self) -> object:
        return self.view

    def screen(self, parts: Sequence[ScreenPart]) -> Screen:
        return Screen(parts)


class Screen:
    """The joined parts of one message type's content checks (see the module docstring)."""

    __slots__ = ("_cleared", "_decodes", "_max_bytes", "_needles", "_tests", "_view", "_words")

    def __init__(self, parts: Sequence[ScreenPart]) -> None:
        self._view = parts[0].view
        limits = [p.max_bytes for p in parts if p.max_bytes is not None]
        # Walked payloads only (see ``clear``): their bound is known, so the limit always applies.
        self._max_bytes = min(limits) if limits else _NO_LIMIT
        self._needles = tuple(dict.fromkeys(p.needle for p in parts if p.needle is not None))
        self._decodes = any(p.decodes for p in parts)
        self._tests = tuple(dict.fromkeys(t for p in parts for t in p.tests))
        words = frozenset(w for p in parts for w in p.words)
        self._words = _words_found_in(words) if words else None
        self._cleared: set[str] = set()  # raw texts that passed every text test

    def clear(self, msg: Message) -> bool:
        """True when every check of the screen allows ``msg``; False when any may deny it."""
        # Read without the view's own memory of a message: most messages clear, and those
        # that do are never read again (a reply, once gathered). One that does not is read
        # by the view when its checks run.
        view = self._view
        payload = payload_pieces(msg.payload, view.shapes)
        if payload is None:  # the JSON way: the checks run one by one
            return False
        if payload.size_at_most > self._max_bytes:
            return False
        if self._needles and not payload.strings_as_is:
            return False
        raw = view.raw_of(payload, msg.metadata)
        if raw in self._cleared:
            return True
        # Its own folding, not the view's: what is remembered as cleared is decided by that
        # text alone, whatever the view last read of this message.
        if not self._text_clear(raw, fold(raw)):
            return False
        if len(raw) <= CLEARED_TEXT_LENGTH:
            if len(self._cleared) >= CLEARED_TEXTS:
                self._cleared.clear()
            self._cleared.add(raw)
        return True

    def _text_clear(self, raw: str, scan: str) -> bool:
        """The tests that read the text: no needle, no encoded segment, no detector's hint."""
        for needle in self._needles:
            if needle in scan:
                return False
        if self._decodes and might_be_encoded(raw):
            return False
        words = self._words
        if words is not None and words(compact_words(scan)):
            return False
        return not any(test(scan) for test in self._tests)
