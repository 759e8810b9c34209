"""One screen for the content checks of a message: a few tests over its text that show none of
them can deny it, so the policy plan skips them for clean text (most messages).

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
  ``compact_words(scan)``. Each phrase needs one letter that the compact view keeps as it is
  and makes from no other character (``v`` for "ignore previous instructions"): a scan with
  none of those letters is clear; else one regex searches the compact bytes for every phrase.
- ``content contains``: for a walked payload whose JSON holds its strings as they are, the
  folded needle absent from the scan decides (``ContentView.contains``).

The PII and phrase tests start with one translate of the scan's bytes that marks the digits,
the e-mail characters and those letters (and nothing else): when nothing is marked, or only a
few digits, no check can deny the message and no pattern is searched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._message.envelope import Message
from .._message.frozen import FrozenDict
from ._content import ContentView
from ._normalise import _LETTER_BYTES, _PUNCTUATION_BYTES, fold

__all__ = ["Screen", "ScreenPart"]

# What the marks of a scan's bytes are (see ``Screen.clear``): a PII trigger is an ASCII digit or
# a character an e-mail is written with (UTF-8 bytes at or above 0x80 are never these).
_DIGIT, _EMAIL, _LETTER, _NOTHING = b"0@p "
_PII_TRIGGERS = {**dict.fromkeys(b"0123456789", _DIGIT), **dict.fromkeys(b"@])}>", _EMAIL)}
# The letters a phrase may be screened by, rarest in English first: the compact view keeps
# them as they are and makes them from no other character (its leet digits become the letters
# o, i, e, a, s, t and b). Digits are left out: they are marked for the PII test.
_SCREEN_LETTERS = b"zqxjkvpygfwmucldrhn"
# Every ASCII letter, rarest first: a needle is screened by its rarest.
_ALL_LETTERS = _SCREEN_LETTERS + b"beaoist"
# What the compact view keeps of ASCII: a phrase without a screening letter needs one of these.
_KEPT = bytes(c for c in range(256) if c not in _PUNCTUATION_BYTES)
# Distinct key names (joined) whose marks a screen keeps; past this it starts again.
_KEYS_KEPT = 256
# The content limit of a screen without one: above every bound a walk gives.
_NO_LIMIT = 2**63


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

    __slots__ = (
        "_digits_clear",
        "_keys",
        "_marks",
        "_max_bytes",
        "_meta",
        "_meta_marks",
        "_needles",
        "_phrases",
        "_pieces_marks",
        "_view",
    )

    def __init__(self, parts: Sequence[ScreenPart]) -> None:
        self._view = parts[0].view
        limits = [p.max_bytes for p in parts if p.max_bytes is not None]
        # Walked payloads only (see ``clear``): their bound is known, so the limit always applies.
        self._max_bytes = min(limits) if limits else _NO_LIMIT
        self._needles = tuple(dict.fromkeys(p.needle for p in parts if p.needle is not None))
        phrases = tuple(dict.fromkeys(q.encode() for p in parts for q in p.phrases))
        self._phrases = re.compile(b"|".join(map(re.escape, phrases))).search if phrases else None
        marks = bytearray(_NOTHING for _ in range(256))
        if any(p.pii for p in parts):
            for byte, mark in _PII_TRIGGERS.items():
                marks[byte] = mark
        needed = [_letters_needed(phrase) for phrase in phrases]
        for byte in b"".join(needed):
            if marks[byte] == _NOTHING:  # a digit stays a digit, counted for the PII test
                marks[byte] = _LETTER
        self._marks = bytes(marks)
        # Digits alone make no phrase with a screening letter (the leet digits read as o, i,
        # e, a, s, t and b), so a scan whose only marks are a few digits is clear. (A phrase
        # without one marks every letter, and a walked payload's scan holds its field names:
        # this guards the screen's own promise rather than a path messages take.)
        self._digits_clear = _KEPT not in needed
        # The marks of the scan's pieces (see ``clear``): the same table, read on raw ASCII
        # (which ``fold`` only lowercases and spaces), with a letter of each needle marked too,
        # so that a letter mark sends the message to the whole scan. None: a needle without an
        # ASCII letter, then every message takes the whole scan.
        self._pieces_marks: bytes | None = None
        for needle in self._needles:
            letters = [c for c in _ALL_LETTERS if c in needle.encode()]
            if not letters:
                break
            if marks[letters[0]] == _NOTHING:  # its rarest letter
                marks[letters[0]] = _LETTER
        else:
            for upper in range(0x41, 0x5B):  # A-Z as their folded a-z
                marks[upper] = marks[upper + 0x20]
            self._pieces_marks = bytes(marks)
        self._keys: dict[str, bytes] = {}  # the marks of key names met, by their joined text
        self._meta: object = None  # the last frozen metadata marked (by identity)
        self._meta_marks = b""

    def clear(self, msg: Message) -> bool:
        """True when every check of the screen allows ``msg``; False when any may deny it.

        The scan is ``fold`` of its pieces joined by `` | ``, and fold maps each character alone
        (spaces aside, which mark nothing), so the scan's marks are its pieces' marks. The key
        names and the metadata, the same for most messages of a type, are marked once; a
        message's own strings and numbers are marked as they are when ASCII (no fold). When
        those marks hold a letter (a phrase's or a needle's), the whole scan decides."""
        payload = self._view.payload_pieces(msg)
        if payload is None:  # the JSON way: the checks run one by one
            return False
        if payload.size_at_most > self._max_bytes:
            return False
        if self._needles and not payload.strings_as_is:
            return False
        table = self._pieces_marks
        if table is None:
            return self._whole(msg)
        numbers = payload.numbers
        text = " | ".join([payload.strings, *numbers]) if numbers else payload.strings
        if not text.isascii():
            text = fold(text)
        meta = msg.metadata
        if meta is not self._meta:
            self._meta_marks = _marks(fold(" | ".join(self._view.metadata_pieces(msg))), table)
            # A frozen mapping cannot change: its marks hold for the next message sharing it
            # (a fan-out's replies share their request's).
            self._meta = meta if type(meta) is FrozenDict else None
        names = payload.keys
        keys = self._keys.get(names)
        if keys is None:
            if len(self._keys) >= _KEYS_KEPT:  # bounded: nested key names come from traffic
                self._keys.clear()
            keys = self._keys[names] = _marks(fold(names), table)
        # Unmarked bytes become spaces: text that is all spaces then has nothing a check
        # looks for, and only text with marks needs them counted.
        if (
            not keys
            and not self._meta_marks
            and (not text or text.encode().translate(table).isspace())
        ):
            return True  # no digit, no e-mail character, no letter a phrase or needle needs
        marks = text.encode().translate(table).replace(b" ", b"") + keys + self._meta_marks
        if marks.isdigit():  # digits only (marked for the PII test)
            if len(marks) >= 10:
                return False
            if self._digits_clear:
                return True
        elif b"@" in marks or marks.count(_DIGIT) >= 10:
            return False  # the PII check may deny
        return self._whole(msg)

    def _whole(self, msg: Message) -> bool:
        """``clear`` read on the whole scan (bound and cleanliness already tested)."""
        scan = self._view.scan(msg)
        for needle in self._needles:
            if needle in scan:
                return False
        data = scan.encode()
        marks = data.translate(self._marks)
        if marks.isspace():  # no digit, no e-mail character, no letter a phrase needs
            return True
        marks = marks.replace(b" ", b"")
        if marks.isdigit():  # digits only (marked for the PII test)
            if len(marks) >= 10:
                return False
            if self._digits_clear:
                return True
        elif b"@" in marks or marks.count(_DIGIT) >= 10:
            return False  # the PII check may deny
        phrases = self._phrases  # a letter some phrase needs: the phrases themselves decide
        return phrases is None or phrases(data.translate(_LETTER_BYTES, _PUNCTUATION_BYTES)) is None


def _marks(folded: str, table: bytes) -> bytes:
    """The marks of ``folded`` text (its bytes through ``table``), without the spaces."""
    return folded.encode().translate(table).replace(b" ", b"")


def _letters_needed(phrase: bytes) -> bytes:
    """Bytes one of which every match of ``phrase`` in the compact view holds: its rarest
    screening letter, or (a phrase without one) every byte the compact view keeps."""
    for letter in _SCREEN_LETTERS:
        if letter in phrase:
            return bytes((letter,))
    return _KEPT
