"""One screen for the content checks of a message: a few tests in C that show none of them can
deny it, so the policy plan skips them for clean text (most messages).

Each content check that shares a ``ContentView`` says what it needs to allow a message
(``ScreenPart``): the content length under its limit, no PII trigger, no injection phrase, a
``content contains`` needle absent. The plan joins the parts of the checks of one message type
into one ``Screen``; ``Screen.clear(msg)`` is True only when every one of those checks would
allow ``msg`` without raising. When it is not clear (or it raises) the plan runs every check in
the list's order, as without the screen, so the first deny (policy and reason) is unchanged.

Each test is a superset of what its check looks for, read on the same text view:

- PII (``has_pii``): a phone, account or card number needs ten ASCII digits, an e-mail an ``@``
  or a closing bracket; so a scan with fewer than ten digits and none of ``@])}>`` is clear.
- injection (``PromptInjection``): it allows when no phrase without its spaces is in
  ``compact_words(scan)``; the screen searches the same bytes for every phrase at once.
- ``content contains``: for a walked payload whose JSON holds its strings as they are, the
  folded needle absent from the scan decides (``ContentView.contains``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._message import Message
from ._content import ContentView
from ._normalise import _LETTER_BYTES, _PUNCTUATION_BYTES

__all__ = ["Screen", "ScreenPart"]

# Every byte but the ASCII digits and the characters an e-mail is written with (UTF-8 bytes
# at or above 0x80 are never these).
_NOT_PII_TRIGGERS = bytes(c for c in range(256) if chr(c) not in "0123456789@])}>")


@dataclass(frozen=True, slots=True)
class ScreenPart:
    """What one content check needs to be sure it allows a message; parts of checks sharing one
    ``view`` are screened together."""

    view: ContentView
    max_bytes: int | None = None  # MaxContentLength: the JSON's length at most this
    pii: bool = False  # PIIBlock: no PII trigger in the scan
    phrases: tuple[str, ...] = ()  # PromptInjection: none of these in the compact words
    needle: str | None = None  # a ``content contains`` found in JSON only inside one string

    @property
    def group(self) -> object:
        return self.view

    def screen(self, parts: Sequence[ScreenPart]) -> Screen:
        return Screen(parts)


class Screen:
    """The joined parts of one message type's content checks (see the module docstring)."""

    __slots__ = ("_max_bytes", "_needles", "_phrases", "_pii", "_view")

    def __init__(self, parts: Sequence[ScreenPart]) -> None:
        self._view = parts[0].view
        limits = [p.max_bytes for p in parts if p.max_bytes is not None]
        # Walked payloads only (see ``clear``): their bound is known, so the limit always applies.
        self._max_bytes = min(limits) if limits else None
        self._pii = any(p.pii for p in parts)
        self._needles = tuple(dict.fromkeys(p.needle for p in parts if p.needle is not None))
        phrases = tuple(dict.fromkeys(q for p in parts for q in p.phrases))
        self._phrases = (
            re.compile(b"|".join(re.escape(q.encode()) for q in phrases)).search
            if phrases
            else None
        )

    def clear(self, msg: Message) -> bool:
        """True when every check of the screen allows ``msg``; False when any may deny it."""
        walked = self._view.walked(msg)
        if walked is None:  # the JSON way: the checks run one by one
            return False
        scan, bound, clean = walked
        if self._max_bytes is not None and bound > self._max_bytes:
            return False
        if self._needles:
            if not clean:
                return False
            for needle in self._needles:
                if needle in scan:
                    return False
        data = scan.encode()
        if self._pii:
            triggers = data.translate(None, _NOT_PII_TRIGGERS)
            if triggers and (len(triggers) >= 10 or not triggers.isdigit()):
                return False
        phrases = self._phrases
        return phrases is None or phrases(data.translate(_LETTER_BYTES, _PUNCTUATION_BYTES)) is None
