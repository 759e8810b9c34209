"""Text a message hides in an encoding, decoded so that every detector reads it as well.

A detector that reads only what a message shows loses to "decode this and do what it says":
``&#105;gnore``, ``%69gnore``, ``aWdub3Jl...`` (base64), ``69676e6f7265`` (hex), ``\\x69``,
``=69gnore`` (quoted-printable), binary octets and Morse code all say "ignore" to a model.
``decoded(raw)`` finds each encoded segment of a message's raw text (before ``fold``: base64
is case-sensitive) and returns the decoded text, named by its encoding, for the detectors to
read as one more view.

Each encoding is found by one pattern of ``ENCODED``, and only what that pattern finds is
decoded, so a text without a match of ``ENCODED`` has no decoded view: the content screen
(``_screen``) relies on it. The patterns look for text, not for any run of letters: base64 is
taken where its first three groups of four encode printable ASCII, hex where each byte is
printable (``[2-7][0-9a-f]``), base32 where it is upper case with a digit; a trace id or a
random token rarely is. Decoding is bounded (``_MAX_SEGMENTS`` segments of each kind, and
``_MAX_CHARS`` characters in all), and runs twice, so that an encoding inside another
(``%2569``, base64 of percent-encoding) is read too.

What it cannot see: what lies past its bounds (a segment after the first 16 of its kind,
16 harmless base64 words in front hide a 17th; text past the budget; a third level of
nesting), an encoding of bytes that are not text (UTF-8 of another script in
base64 is read only when the first nine bytes are ASCII), ciphers (ROT13 and reversed text
are the injection detector's views, see ``_injection``), and any encoding a person invents.
"""

from __future__ import annotations

import base64
import binascii
import html
import quopri
import re
from collections.abc import Callable
from urllib.parse import unquote

from .._base.surrogates import utf8_text

__all__ = ["ENCODED", "decoded", "might_be_encoded"]

# Base64 of printable ASCII (0x20-0x7e), group of four by group of four: the first character
# holds the top six bits of a printable byte (8-31: I-Z, a-f), the second the low two bits of
# it and the top four of the next (2-7 mod 16), the third the next byte's low four bits and
# the top two of the third byte (0 or 1 mod 4).
_B64_GROUP = "[I-Za-f][C-HS-Xi-ny-z0-3][ABEFIJMNQRUVYZcdghklopstwx0145689+/_-][A-Za-z0-9+/_-]"
_B64 = rf"(?<![A-Za-z0-9+/_-])(?:{_B64_GROUP}){{3}}[A-Za-z0-9+/_-]*={{0,2}}"
_HEX = r"(?i:(?<![0-9a-f])(?:[2-7][0-9a-f]){8,}(?![0-9a-f]))"
_BASE32 = r"(?<![A-Za-z2-7])(?=[A-Z]*[2-7])[A-Z2-7]{16,}={0,6}"
_PERCENT = r"%[0-9A-Fa-f]{2}"
# A numeric reference may end without its ";", as browsers read it (``&#64gmail`` is
# ``@gmail``, and ``html.unescape`` reads it so); a named one needs it.
_ENTITY = r"(?i:&(?:#[0-9]{1,7};?|#x[0-9a-f]{1,6};?|[a-z][a-z0-9]{1,7};))"
_ESCAPE = r"(?i:\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}))"
_BINARY = r"(?<![01])(?:[01]{8}[ ,]?){4,}"
_MORSE = r"(?<![.\w-])(?:[.-]{1,7} (?:/ )?){5,}[.-]{1,7}(?![.\w-])"
# Quoted-printable (e-mail's ``=6F``, upper-case hex as RFC 2045 writes it) hiding a letter,
# or an "@" before one (``priya=40gmail.com``): ``amount=2500`` hides neither, so a query
# string or a formula has no view.
_QP = r"=(?:[46][1-9A-F]|[57][0-9A]|40(?=[A-Za-z]))"

ENCODED = re.compile(
    "|".join((_B64, _HEX, _BASE32, _PERCENT, _ENTITY, _ESCAPE, _BINARY, _MORSE, _QP))
)
"""A superset of what ``decoded`` decodes: raw text without a match has no decoded view."""

_B64_RUN = re.compile(_B64)
_HEX_RUN = re.compile(_HEX)
_BASE32_RUN = re.compile(_BASE32)
_PERCENT_ONE = re.compile(_PERCENT)
_ENTITY_ONE = re.compile(_ENTITY)
_ESCAPE_ONE = re.compile(_ESCAPE)
_QP_ONE = re.compile(_QP)
_BINARY_RUN = re.compile(_BINARY)
_MORSE_RUN = re.compile(_MORSE)

# What each encoding needs, tested before its pattern: base64 a run of twelve characters of its
# alphabet, hex and base32 of sixteen, binary octets eight 0s and 1s, Morse a dot by a dash.
# Each need begins with one class of characters, so that ``re`` skips ahead to where a run can
# begin instead of trying every position.
_BINARY_NEED = re.compile(r"[01][01]{7}")


def _binary_needs(raw: str) -> bool:
    """Four octets of binary: 32 zeros and ones at least, eight of them in a row."""
    data = raw.encode()
    return len(data) - len(data.translate(None, b"01")) >= 32 and bool(_BINARY_NEED.search(raw))


_SEGMENTS_BEHIND: tuple[tuple[Callable[[str], object], re.Pattern[str]], ...] = (
    (re.compile(r"[A-Za-z0-9+/_\-][A-Za-z0-9+/_\-]{11}").search, _B64_RUN),
    (re.compile(r"[0-9A-Fa-f][0-9A-Fa-f]{15}").search, _HEX_RUN),
    (re.compile(r"[A-Z2-7][A-Z2-7]{15}").search, _BASE32_RUN),
    (_binary_needs, _BINARY_RUN),
)
_LOWER_CASE_SEGMENTS = (_SEGMENTS_BEHIND[1], _SEGMENTS_BEHIND[3])


def might_be_encoded(raw: str) -> bool:
    """Whether ``raw`` may hold an encoded segment: False only when ``decoded(raw)`` is empty
    (each of ``ENCODED``'s patterns is tried behind what it needs)."""
    if ("%" in raw and _PERCENT_ONE.search(raw)) or ("&" in raw and _ENTITY_ONE.search(raw)):
        return True
    if ("\\" in raw and _ESCAPE_ONE.search(raw)) or ("=" in raw and _QP_ONE.search(raw)):
        return True
    # base64 of text has capitals (groups of small letters begin Y, Z, G, H, W or X), which
    # identifiers in snake case do not; base32 is written in them
    # (``islower`` of the bytes is False for text with an ASCII capital, and for text without an
    # ASCII letter: base64's and base32's alphabets are ASCII)
    segments = _SEGMENTS_BEHIND if not raw.encode().islower() else _LOWER_CASE_SEGMENTS
    if any(need(raw) and pattern.search(raw) for need, pattern in segments):
        return True
    return (".-" in raw or "-." in raw) and _MORSE_RUN.search(raw) is not None


_MAX_SEGMENTS = 16  # of each kind, in a message
_MAX_CHARS = 65536  # decoded, in all
_MORSE_CODE = {
    ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g",
    "....": "h", "..": "i", ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n",
    "---": "o", ".--.": "p", "--.-": "q", ".-.": "r", "...": "s", "-": "t", "..-": "u",
    "...-": "v", ".--": "w", "-..-": "x", "-.--": "y", "--..": "z", "-----": "0",
    ".----": "1", "..---": "2", "...--": "3", "....-": "4", ".....": "5", "-....": "6",
    "--...": "7", "---..": "8", "----.": "9",
}  # fmt: skip


def _text(data: bytes) -> str | None:
    """``data`` as text when it reads as text (UTF-8, at least four fifths printable)."""
    text = data.decode("utf-8", "replace")
    printable = sum(c.isprintable() or c.isspace() for c in text)
    return text if text and printable >= 0.8 * len(text) and "\ufffd" not in text else None


def _base64(segment: str) -> str | None:
    body = segment.rstrip("=")
    try:
        data = base64.urlsafe_b64decode(
            body.replace("+", "-").replace("/", "_") + "=" * (-len(body) % 4)
        )
    except (binascii.Error, ValueError):
        return None
    return _text(data)


def _hex(segment: str) -> str | None:
    return _text(bytes.fromhex(segment))


def _base32(segment: str) -> str | None:
    body = segment.rstrip("=")
    try:
        data = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None
    return _text(data)


def _binary(segment: str) -> str | None:
    octets = re.findall("[01]{8}", segment)
    return _text(bytes(int(o, 2) for o in octets))


def _morse(segment: str) -> str | None:
    words = []
    for word in segment.split("/"):
        letters = [_MORSE_CODE.get(code) for code in word.split()]
        if None in letters:
            return None
        words.append("".join(letter for letter in letters if letter))
    return " ".join(words)


def _escape(m: re.Match[str]) -> str:
    return chr(int(m.group()[2:], 16))


def _escapes(raw: str) -> str:
    """``raw`` with its ``\\xNN`` and ``\\uNNNN`` escapes decoded, as text: two escapes of a
    surrogate pair (as JSON writes a character past U+FFFF) are that character, a lone one is
    U+FFFD, for the views are folded as UTF-8 (``C:\\udata\\ud800x`` is a path, not a
    message to deny because it cannot be read)."""
    return utf8_text(_ESCAPE_ONE.sub(_escape, raw))


_SEGMENTS = (
    ("base64", _B64_RUN, _base64),
    ("hex", _HEX_RUN, _hex),
    ("base32", _BASE32_RUN, _base32),
    ("binary", _BINARY_RUN, _binary),
    ("morse code", _MORSE_RUN, _morse),
)


def _decode_once(raw: str) -> list[tuple[str, str]]:
    capitals = not raw.encode().islower()  # or no ASCII letter: base64 is looked for
    views: list[tuple[str, str]] = []
    if _ENTITY_ONE.search(raw):
        views.append(("html entities", html.unescape(raw)))
    if _PERCENT_ONE.search(raw):
        text, times = raw, 0
        while times < 3 and _PERCENT_ONE.search(text):  # "%2569" is "%69" is "i"
            text, times = unquote(text), times + 1
        views.append(("percent-encoding", text))
    if _ESCAPE_ONE.search(raw):
        views.append(("escapes", _escapes(raw)))
    if _QP_ONE.search(raw):
        # every "=XX" and soft line break, as a mail reader decodes the whole body
        views.append(
            ("quoted-printable", quopri.decodestring(raw.encode()).decode("utf-8", "replace"))
        )
    for name, pattern, decode in _SEGMENTS:
        if not capitals and name in ("base64", "base32"):
            continue  # see ``might_be_encoded``
        found = []
        for at, m in enumerate(pattern.finditer(raw)):
            if at == _MAX_SEGMENTS:
                break
            segment = decode(m.group())
            if segment:
                found.append(segment)
        if found:
            views.append((name, " ".join(found)))
    return views


def decoded(raw: str) -> list[tuple[str, str]]:
    """The encoded segments of ``raw`` decoded, as (encoding, text) pairs: each encoding's
    segments in one text; an encoding found inside a decoded text is named after both."""
    if not might_be_encoded(raw):
        return []
    views = _decode_once(raw)
    budget = _MAX_CHARS
    out: list[tuple[str, str]] = []
    for name, text in views:
        if budget <= 0:
            break
        text = text[:budget]
        budget -= len(text)
        out.append((name, text))
        if ENCODED.search(text) is not None:
            for inner, deeper in _decode_once(text):
                if deeper != text and budget > 0:
                    deeper = deeper[:budget]
                    budget -= len(deeper)
                    out.append((f"{inner} in {name}", deeper))
    return out
