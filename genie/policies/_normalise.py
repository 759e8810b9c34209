"""What content-scanning policies match against: a message's text, folded so disguises drop away.

``scan_text`` gathers the text a message carries (payload keys and strings, identifier
numbers, metadata keys and values) and ``fold`` removes what changes how text looks but not
what it says to a reader or a language model:

- Unicode NFKD (fullwidth letters, ligatures, circled and mathematical letters, NBSP) and
  the accents it splits off Latin, Greek and Cyrillic letters removed (``ígnóre``);
- format characters removed, every one of Unicode's category Cf (zero-width space and
  joiners, soft hyphen, bidi controls, BOM, interlinear annotation marks...); Unicode "tag"
  characters, which some models read as ASCII, become that ASCII;
- common look-alikes (Cyrillic, Greek, Cherokee letters, small capitals, Latin letters with
  a stroke or hook such as ``ø``) become the Latin letter,
  dashes become ``-``, every script's digits (and enclosed ones NFKD keeps) become 0-9;
- case folded, whitespace runs (newlines, tabs) collapsed to one space.

The result is computed once per message and shared by every policy (``ContentView.scan``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel

from .._base.tracecontext import TraceParent
from .._message.frozen import FrozenDict, FrozenList

__all__ = [
    "Literals",
    "compact_words",
    "fold",
    "PayloadPieces",
    "Shapes",
    "payload_pieces",
    "pieces",
    "raw_text",
    "scan_text",
    "squeeze",
    "words",
]


# Unicode assigns format characters (category Cf) in planes 0, 1 and 14 only: planes 2 and 3
# hold ideographs, 15 and 16 private use (tests/policies/test_evasion.py reads every plane).
_FORMAT_PLANES = (range(0x20000), range(0xE0000, 0xE1000))


def _table() -> dict[int, int | str | None]:
    table: dict[int, int | str | None] = {}
    # Format characters (Cf: zero-width spaces and joiners, bidi controls, the soft hyphen,
    # interlinear annotation marks, musical beams...): invisible, so they only ever hide text
    # from a matcher. Every one, as this Python's Unicode database has them; and invisible
    # fillers and selectors of other categories (Hangul fillers, variation selectors).
    category, decimal, digit = unicodedata.category, unicodedata.decimal, unicodedata.digit
    for plane in _FORMAT_PLANES:
        for cp in plane:
            char = chr(cp)
            kind = category(char)
            if kind == "Cf":
                table[cp] = None
            elif (kind == "Nd" or kind == "No") and cp >= 0x80:
                # A digit of any script (Khmer, Tibetan, Sinhala, Adlam...) or one NFKD leaves
                # enclosed (dingbats' ❶ and ➀, the double-circled ⓵) reads as that digit to a
                # person: a phone or card number written in them is the number.
                value = decimal(char, None) if kind == "Nd" else digit(char, None)
                if value is not None and unicodedata.normalize("NFKD", char) == char:
                    table[cp] = str(value)
    for cp in (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164):
        table[cp] = None
    for first, last in ((0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0xFE00, 0xFE0F)):
        for cp in range(first, last + 1):
            table[cp] = None
    for cp in range(0xE0020, 0xE007F):  # tag characters: an invisible copy of ASCII
        table[cp] = cp - 0xE0000
    for cp in (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE63, 0xFF0D):
        table[cp] = "-"
    # Spaces NFKC keeps, and the Braille blank, drawn as a space though Unicode has it a symbol.
    for cp in (0x0085, 0x1680, 0x2028, 0x2029, 0x2800):
        table[cp] = " "
    for cp in (0x1F10B, 0x1F10C):  # circled sans-serif zeros: no digit value in Unicode
        table[cp] = "0"
    # The ideographic full stop (and its vertical form) is a dot of a domain name to IDNA, as
    # browsers and mail clients read "gmail。com": NFKD makes the halfwidth one this one.
    table[0x3002] = table[0xFE12] = "."
    # Letters in shapes NFKD leaves enclosed (negative circled 🅐, negative squared 🅰,
    # regional indicators 🇦, which are letters wherever they do not pair into a flag).
    for first in (0x1F150, 0x1F170, 0x1F1E6):
        for offset in range(26):
            table[first + offset] = chr(ord("a") + offset)
    table.update({0x2018: "'", 0x2019: "'", 0x201C: '"', 0x201D: '"', 0x0964: ".", 0x0965: "."})
    # Look-alikes (a subset of Unicode's confusables: the letters that pass for Latin ones,
    # and small capitals), mapped before case folding so each case maps to its own look-alike.
    lookalikes = {
        "a": "аαɑᴀ", "b": "Ьβʙ", "c": "сϲᴄ", "d": "ԁᴅ", "e": "еεҽᴇ", "g": "ɡɢց", "h": "һʜհ",  # noqa: RUF001
        "i": "іιıɩɪ", "j": "јϳᴊ", "k": "κᴋ", "l": "ʟ", "m": "ᴍ", "n": "ηɴո", "o": "оοσօᴏ",  # noqa: RUF001
        "p": "рρᴘ", "q": "ԛզ", "r": "ʀ", "s": "ѕꜱ", "t": "τᴛ", "u": "υսᴜ", "v": "νᴠ",  # noqa: RUF001
        "w": "ԝωᴡ", "x": "хχ", "y": "уγʏ", "z": "ᴢ",  # noqa: RUF001
        "A": "АΑ", "B": "ВΒ", "C": "С", "E": "ЕΕ", "H": "НΗ", "I": "ІΙӀ", "J": "Ј",  # noqa: RUF001
        "K": "КΚ", "M": "МΜ", "N": "Ν", "O": "ОΟՕ", "P": "РΡ", "S": "Ѕ", "T": "ТΤ",  # noqa: RUF001
        "X": "ХΧ", "Y": "ҮΥ", "Z": "Ζ", "U": "Ս",  # noqa: RUF001
    }  # fmt: skip
    # Lisu's letters are Latin capitals in shape (its script has no cases), A to Z without Q.
    lisu = "ꓮꓐꓚꓓꓰꓝꓖꓧꓲꓙꓗꓡꓟꓠꓳꓑꓣꓢꓔꓴꓦꓪꓫꓬꓜ"  # noqa: RUF001
    for latin, letter in zip("ABCDEFGHIJKLMNOPRSTUVWXYZ", lisu, strict=True):
        lookalikes[latin] = lookalikes.get(latin, "") + letter
    # Cherokee capitals drawn as Latin ones; case folding makes Cherokee's small letters its
    # capitals, so each small letter is mapped too.
    cherokee = "ᎪᏴᏟᎠᎬᏀᎻᎥᎫᏦᏞᎷᏢᎡᏒᏚᎢᏙᏔᎩᏃ"  # noqa: RUF001
    for latin, letter in zip("ABCDEGHiJKLMPRRSTVWYZ", cherokee, strict=True):
        lookalikes[latin] = lookalikes.get(latin, "") + letter + letter.lower()
    # Cyrillic's iota and palochka, Coptic's o, r, s and x.
    for latin, letter in zip("iIloOpPcCxX", "ꙇꙆӏⲟⲞⲣⲢⲥⲤⲭⲬ", strict=True):
        lookalikes[latin] = lookalikes.get(latin, "") + letter
    for latin, others in lookalikes.items():
        for other in others:
            table[ord(other)] = latin
    # Latin letters drawn with a stroke, bar, hook or tail (ø, đ, ł, ɨ, ɵ, ʂ, ɳ, ꞡ...): NFKD
    # leaves them whole, as the mark is part of the letter, but a reader sees the letter under
    # it, so "ignøre" is "ignore" as "ígnóre" is. Turned and reversed letters are other shapes.
    for first, last in _LATIN_BLOCKS:
        for cp in range(first, last + 1):
            char = chr(cp)
            marked = _MARKED_LATIN.fullmatch(unicodedata.name(char, ""))
            if marked and cp not in table and unicodedata.normalize("NFKD", char) == char:
                letter = marked["barred"] or marked["letter"]
                table[cp] = letter.lower() if marked["case"] == "SMALL" else letter
    return table


# Unicode's Latin blocks past ASCII (Latin-1 Supplement to Latin Extended-E), and the name of a
# letter drawn with a mark of its own: "LATIN SMALL LETTER O WITH STROKE", "... BARRED O".
_LATIN_BLOCKS = ((0x00C0, 0x02AF), (0x1D00, 0x1EFF), (0x2C60, 0x2C7F), (0xA720, 0xA7FF),
                 (0xAB30, 0xAB6F))  # fmt: skip
_MARKED_LATIN = re.compile(
    r"LATIN (?P<case>SMALL|CAPITAL) LETTER (?:(?:BARRED|DOTLESS) (?P<barred>[A-Z])(?: WITH .+)?"
    r"|(?P<letter>[A-Z]) WITH .+)"
)


def _ranges(points: list[int]) -> str:
    """Sorted code points as the inside of a character class, each run written as a range:
    Python's ``re`` tries a class's characters past U+FFFF one by one, and the digits and
    letters of the table come in runs."""
    out: list[str] = []
    at = 0
    while at < len(points):
        end = at
        while end + 1 < len(points) and points[end + 1] == points[end] + 1:
            end += 1
        first, last = re.escape(chr(points[at])), re.escape(chr(points[end]))
        out.append(first if end == at else f"{first}-{last}")
        at = end + 1
    return "".join(out)


# Accents and other combining marks over Latin, Greek and Cyrillic letters (after NFKD, "é" is
# "e" and a mark), dropped: "ígnóre" reads as "ignore" to a person and to a model. The marks
# of Indian scripts are letters of their words and stay.
_COMBINING_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_FOLD = {
    chr(k): v if isinstance(v, str) else "" if v is None else chr(v) for k, v in _table().items()
}
# The characters to fold (the table's and the combining marks), found one by one: every other
# character (most of a text in another script) is left as it is.
_TO_FOLD = re.compile("[" + _ranges(sorted(map(ord, _FOLD))) + _COMBINING_MARKS + "]")


def _fold_char(m: re.Match[str]) -> str:
    return _FOLD.get(m.group(), "")


# Every other Unicode space is a " " after NFKC and the table above. On ASCII, case folding is
# A-Z to a-z, so one translate does both.
_SPACE_BYTES = bytes.maketrans(b"\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f", b" " * 9)
_ASCII_FOLD_BYTES = bytes.maketrans(
    b"\t\n\r\x0b\x0c\x1c\x1d\x1e\x1fABCDEFGHIJKLMNOPQRSTUVWXYZ",
    b" " * 9 + b"abcdefghijklmnopqrstuvwxyz",
)


class Literals:
    """Whether text holds any of a set of words (``found_in``). With pyahocorasick (the ``fast``
    extra) one Aho-Corasick automaton reads the text once, whatever the number of words;
    without it, a regular expression of the words (``pattern``) does, written as a tree of their
    shared prefixes: Python's ``re`` tries the branches of an alternation one by one at each
    position, so a few hundred words in a flat list cost a few hundred tries a character, and
    as a tree one try for each letter that can begin one. Both find the same
    (tests/policies/test_literals.py); ``engine`` says which one reads."""

    __slots__ = ("engine", "found_in")

    def __init__(self, literals: Iterable[str], automaton: bool = True) -> None:
        words = sorted(set(literals))
        if not words or not all(words):
            raise ValueError("an empty literal matches everywhere")
        found_in: Callable[[str], bool] | None = _automaton(words) if automaton else None
        self.engine = "automaton" if found_in is not None else "expression"
        if found_in is None:
            # Only the expression's reader builds the tree: it is the dearer of the two to
            # make, and a ``genie run`` makes one for each message type's screen.
            search = re.compile(_prefix_tree(words)).search

            def found_in(text: str) -> bool:
                return search(text) is not None

        self.found_in: Callable[[str], bool] = found_in


def _prefix_tree(words: list[str]) -> str:
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node.clear()  # the word ends here: whatever longer word began with it is implied
        node[""] = {}

    def branch(node: dict[str, Any]) -> str:
        if "" in node:
            return ""
        alternatives = [re.escape(char) + branch(rest) for char, rest in sorted(node.items())]
        return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"

    return branch(tree)


def _automaton(words: list[str]) -> Callable[[str], bool] | None:
    """``found_in`` by an Aho-Corasick automaton of ``words``; None without pyahocorasick."""
    try:
        import ahocorasick
    except ImportError:
        return None
    automaton = ahocorasick.Automaton()
    for word in words:
        automaton.add_word(word, None)
    automaton.make_automaton()
    matches = automaton.iter

    def found_in(text: str) -> bool:
        return next(matches(text), None) is not None

    return found_in


def squeeze(text: str) -> str:
    """Runs of spaces as one space, without the ends. Only the ASCII space is a space here:
    ``fold`` has made every other whitespace one."""
    while "  " in text:
        text = text.replace("  ", " ")  # each pass at least halves every run
    return text.strip(" ")


def fold(text: str) -> str:
    """``text`` as a matcher should see it (see the module docstring). Idempotent."""
    if text.isascii():  # nothing for NFKD or the table: case and spaces in one translate
        text = text.encode().translate(_ASCII_FOLD_BYTES).decode()
        while "  " in text:  # runs of spaces as one, as ``squeeze``
            text = text.replace("  ", " ")
        return text.strip(" ")
    text = _TO_FOLD.sub(_fold_char, unicodedata.normalize("NFKD", text))
    # As UTF-8 bytes, so that only ASCII whitespace changes (see _WORD_BYTES).
    return squeeze(text.casefold().encode().translate(_SPACE_BYTES).decode())


def blank(text: str) -> bool:
    """Whether ``text`` says nothing once folded: whitespace of any kind, format characters
    (a zero-width space, a bidi mark) and the Braille blank alone, or nothing."""
    return not fold(text)


# Letters and digits written for one another in the phrase view only ("1gn0re"): phrases are
# words, so a digit inside one is a disguise. ASCII punctuation becomes a space. Text is
# translated as UTF-8 bytes, where a byte below 0x80 is an ASCII character and nothing else, so
# other scripts pass through untouched.
_LEET = "0134578@$"
_PUNCTUATION = "".join(c for c in map(chr, range(128)) if not c.isalnum() and c not in _LEET)
_WORD_BYTES = bytes.maketrans(
    (_LEET + _PUNCTUATION).encode(), b"oieastbas" + b" " * len(_PUNCTUATION)
)


def words(folded: str) -> str:
    """The phrase view of folded text: words only, separated by one space. Letters of every
    script are kept; ASCII punctuation becomes a space (look-alike punctuation was folded to
    ASCII)."""
    return squeeze(folded.encode().translate(_WORD_BYTES).decode())


_LETTER_BYTES = bytes.maketrans(_LEET.encode(), b"oieastbas")
_PUNCTUATION_BYTES = _PUNCTUATION.encode()


def compact_words(folded: str) -> str:
    """``words(folded)`` without its spaces, in one translate: what a phrase written with its
    words run together or split apart is looked for in."""
    return folded.encode().translate(_LETTER_BYTES, _PUNCTUATION_BYTES).decode()


# A number in a field with one of these names is an identifier (a phone, card or account
# number), so the PII patterns apply to it; any other number is a quantity (an amount in paise,
# a count) and is not matched: 10 lakh in paise has ten digits, as a phone number does.
# The name is read as words (``_field``: "phoneNumber", "Mobile-No" and "PAN.number" are
# "phone number", "mobile no" and "pan number", as "mobile_no" is).
_IDENTIFIER_FIELD = re.compile(
    r"(?:^| )(?:phone|mobile|msisdn|tel|telephone|contact|card|pan|aadhaar|aadhar|uid|account|"
    r"acct|iban|ssn|number|num|no|id)(?: |$)"
)


# A number of a card's 13 to 19 digits is read whatever its field is called: an amount that long
# (10^12 paise is Rs 1,000 crore) is rare, and the card detector asks its Luhn check besides.
_CARD_SIZED_LOW, _CARD_SIZED_HIGH = 10**12, 10**19


def _card_sized(number: int) -> bool:
    return _CARD_SIZED_LOW <= number < _CARD_SIZED_HIGH


def _is_identifier(field: str) -> bool:
    return _field(field)[0]


# A field whose name names a credential ("password", "client_secret", "X-API-Key", "upiPin",
# "otp", "cvv", an HTTP "Authorization" header) is read a second time as ``name: value``, its
# name in words: the scan joins a payload's strings apart from its keys, so without it no
# detector would see a value next to the word that says what it is, as in "password: ...".
# Only these names are paired (most fields are not, so most payloads read as before), and a
# number in one is read too.
_SECRET_FIELD = re.compile(
    r"(?<![a-z0-9])(?:password|passwd|pwd|passcode|passphrase|secret|token|api ?key|bearer|"
    r"access ?key|private ?key|account ?key|pin|mpin|otp|cvv2?|cvc2?|kennwort|passwort|"
    r"contrasena|senha|credentials?|authorization)(?![a-z0-9])"
)
# Where a name written in camelCase starts a word: "upiPin", "PANNumber", "accountID2".
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _secret_label(field: str) -> str | None:
    """``name: `` for a field named for a credential (its name in words, lower case: "upiPin"
    is "upi pin: "), else None."""
    return _field(field)[1]


@functools.lru_cache(maxsize=1024)
def _field(field: str) -> tuple[bool, str | None]:
    """Whether a number in ``field`` is an identifier, and its ``_secret_label``: one lookup
    for both, of the name in words. The answer depends on the name alone, and names repeat
    from message to message (the memory is bounded: names also come from traffic)."""
    named = _CAMEL.sub(" ", field).lower().replace("_", " ").replace("-", " ").replace(".", " ")
    label = f"{named}: " if _SECRET_FIELD.search(named) is not None else None
    return _IDENTIFIER_FIELD.search(named) is not None, label


def _collect(value: Any, strings: list[str], keys: list[str], extras: list[str]) -> None:
    # Depth-first in document order. A mapping's own strings and numbers are read in this
    # loop (most payloads are flat); a nested value goes to ``_nested``. Parsed JSON holds
    # built-in values of exact types only (dicts, lists, strings, numbers), so testing the
    # exact type misses nothing.
    if type(value) is not dict and type(value) is not FrozenDict:  # a message's metadata
        _nested("", value, strings, keys, extras)
        return
    keys.extend(value)
    for field, item in value.items():
        kind = type(item)
        if kind is str:
            strings.append(item)
            if (label := _field(field)[1]) is not None:
                extras.append(label + item)
        elif kind is int or kind is float:
            if kind is int or item.is_integer():
                _number(field, int(item), extras)
        else:
            _nested(field, item, strings, keys, extras)


def _number(field: str, number: int, extras: list[str]) -> None:
    """An integer of the field ``field``: an identifier's or a card's number, and a
    credential's as ``name: value``."""
    identifier, label = _field(field)
    if identifier or _card_sized(number):
        extras.append(str(number))
    if label is not None:
        extras.append(label + str(number))


def _nested(field: str, value: Any, strings: list[str], keys: list[str], extras: list[str]) -> None:
    # With a stack: a payload nested deeper than Python's recursion limit is still scanned,
    # not turned into a RecursionError.
    stack: list[tuple[str, Any]] = [(field, value)]
    pop, push = stack.pop, stack.extend
    while stack:
        field, value = pop()
        kind = type(value)
        if kind is str:
            strings.append(value)
            if (label := _field(field)[1]) is not None:
                extras.append(label + value)
        elif kind is dict:
            keys.extend(value)
            push(reversed(value.items()))
        elif kind is list or kind is tuple:
            push((field, item) for item in reversed(value))
        elif kind is int or (kind is float and value.is_integer()):
            _number(field, int(value), extras)


def pieces(data: Any) -> list[str]:
    """What ``data`` (parsed JSON, or a mapping) adds to the scan text: its strings joined with a
    space (so text split across fields reads as one), its keys, then, in document order, its
    identifier numbers and each value of a field named for a credential as ``name: value``
    (``_secret_label``)."""
    strings: list[str] = []
    keys: list[str] = []
    extras: list[str] = []
    if type(data) is not dict and type(data) is not FrozenDict and isinstance(data, Mapping):
        data = dict(data)
    _collect(data, strings, keys, extras)
    return [" ".join(strings), " ".join(keys), *extras]


# A trace's ids as W3C Trace Context writes them (``traceparent``, and its 32-digit trace id):
# random hex, machine-made, whose digit runs often read as phone or card numbers. A value of
# this shape holds nothing else, so it is left out of the scan; any other value under these
# keys is read as any metadata is.
_TRACE_ID = re.compile(r"[0-9a-f]{32}", re.ASCII)


def _trace_context(key: str, value: object) -> bool:
    if type(value) is not str:
        return False
    if key == "traceparent":
        return TraceParent.parse(value) is not None
    return key == "trace_id" and _TRACE_ID.fullmatch(value) is not None


def metadata_pieces(metadata: Mapping[str, object]) -> list[str]:
    """``pieces`` of a message's metadata, without its trace context (``_trace_context``)."""
    if ("traceparent" in metadata or "trace_id" in metadata) and any(
        _trace_context(key, value) for key, value in metadata.items()
    ):
        metadata = {k: v for k, v in metadata.items() if not _trace_context(k, v)}
    return pieces(metadata)


def raw_text(data: Any, metadata: Mapping[str, object]) -> str:
    """The text of a payload (``data``, parsed JSON) and its message's metadata, unfolded."""
    # Keys, numbers, pairs and the two parts are set apart by " | ", which no number pattern
    # spans.
    return " | ".join(pieces(data) + metadata_pieces(metadata))


def scan_text(data: Any, metadata: Mapping[str, object]) -> str:
    """The folded text of a payload (``data``, parsed JSON) and its message's metadata."""
    return fold(raw_text(data, metadata))


# --- the same pieces read from the payload model itself, without its JSON --------------------

# Past 30 digits (card numbers have up to 19) an int's JSON is longer than the 32 bytes the bound
# allows a value, and past 4,300 Python cannot parse it back: the JSON way decides for it.
_BIG = 10**30
_NEGATIVE_BIG = -_BIG
# A payload with more containers than this goes the JSON way: it bounds the walk (a cycle made
# with ``model_construct`` fails to dump, as it should) and keeps nesting too deep for
# ``json.loads`` (which raises) on the path that raises.
_MAX_CONTAINERS = 64
# The schema types whose JSON is the Python value as it is (given the exact runtime types the
# walk accepts); anything else (a typed dict, a dataclass, a root model...) goes the JSON way.
_PLAIN_SCHEMAS = frozenset(
    {
        "model", "model-fields", "model-field", "str", "int", "float", "bool", "none",
        "nullable", "list", "tuple", "dict", "any", "default", "union", "tagged-union",
        "literal", "definitions", "definition-ref", "function-after", "function-before",
        "function-plain", "function-wrap", "no-info", "with-info", "chain", "lax-or-strict",
        "json-or-python", "enum",
    }
)  # fmt: skip
# Keys of a core schema that change what the JSON holds.
_SERIALISATION_KEYS = frozenset(
    {"serialization", "serialization_alias", "serialization_exclude", "serialization_exclude_if"}
)
# Keys whose values are not schemas (values, metadata), so not searched.
_NOT_SCHEMAS = frozenset({"default", "expected", "metadata", "cls", "config", "ref"})


def _plain_models(cls: type[BaseModel]) -> dict[type[BaseModel], frozenset[str]] | None:
    """The model classes (with their fields) a payload of class ``cls`` may hold when its JSON
    is its fields as they are (each model's ``__dict__`` in order, strings, numbers, lists and
    dicts unchanged), or None when a serializer, an alias, an exclusion, a computed field, a
    root model, a setting or a schema type could make it differ. Models related by
    inheritance are refused: a field declared as the base dumps a subclass instance as the
    base."""
    models: set[type[BaseModel]] = set()
    stack: list[Any] = [cls.__pydantic_core_schema__]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack += node
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind is not None and (not isinstance(kind, str) or kind not in _PLAIN_SCHEMAS):
            return None
        if not _SERIALISATION_KEYS.isdisjoint(node) or node.get("computed_fields"):
            return None
        if kind == "model":
            config = node.get("config") or {}
            if node.get("root_model") or config.get("serialize_by_alias"):
                return None
            if config.get("ser_json_inf_nan", "null") != "null":
                return None
            models.add(node["cls"])
        stack += (v for k, v in node.items() if k not in _NOT_SCHEMAS)
    if any(a is not b and issubclass(a, b) for a in models for b in models):
        return None
    # A key of ``__dict__`` that is not a field is not in the JSON: the walk asks by these.
    return {model: frozenset(model.model_fields) for model in models}


class _Shape:
    """One payload class as the walk reads it: its plain models (None: the JSON way), its
    fields in order (what a validated payload's ``__dict__`` holds), which of them are
    identifiers, their names joined with what ``_clean`` says of them, and the JSON bound of
    a flat payload of it without its strings."""

    __slots__ = (
        "bound",
        "extra",
        "field_set",
        "fields",
        "identifiers",
        "models",
        "names",
        "names_clean",
        "numbered",
        "secrets",
    )

    def __init__(self, cls: type[BaseModel]) -> None:
        self.models = _plain_models(cls)
        self.fields = tuple(cls.model_fields)
        self.field_set = frozenset(self.fields)
        self.identifiers = frozenset(name for name in self.fields if _is_identifier(name))
        # The fields named for a credential, with their ``name: `` (``_secret_label``).
        self.secrets = {
            name: label for name in self.fields if (label := _secret_label(name)) is not None
        }
        # The fields where a small int is read (most payloads have none).
        self.numbered = self.identifiers | frozenset(self.secrets)
        self.names = " ".join(self.fields)
        # (pydantic refuses a field name UTF-8 cannot encode, so never None)
        self.names_clean = _clean(self.names) is True
        # A flat payload's JSON without its strings' text: braces, and each field's name,
        # quotes, colon and comma with a value of at most 32 bytes (a string's quotes, any
        # other value but a nested one): see ``payload_pieces``.
        names_bytes = len(self.names) if self.names_clean else 6 * len(self.names)
        self.bound = 2 + names_bytes + 36 * len(self.fields)
        # Only a class that allows extra fields dumps its ``__pydantic_extra__``.
        self.extra = cls.model_config.get("extra") == "allow"


Shapes = dict[type[BaseModel], _Shape]
"""What the walk has read of each payload class, by class object (``payload_pieces``)."""

# Classes kept in a ``Shapes``: bounded by the program's classes, not by traffic; past this
# (classes made at run time) it starts again.
_SHAPES_KEPT = 256
# An int's JSON is at most 32 bytes below ``_BIG``; most counts and amounts are also within
# these, tested first.
_SMALL = 2**30 - 1
_NEGATIVE_SMALL = -_SMALL


def _clean(text: str) -> bool | None:
    """Whether JSON holds ``text`` as it is (printable ASCII, nothing escaped); None when it
    cannot encode it (a lone surrogate: the JSON way then fails, as it always did)."""
    if text.isascii():
        return text.isprintable() and '"' not in text and "\\" not in text
    try:
        text.encode()
    except UnicodeEncodeError:
        return None
    return False


class PayloadPieces(NamedTuple):
    """What the scan reads of a payload, read from the model without its JSON
    (``payload_pieces``): the pieces that JSON gives (``pieces``), and what is known of the
    JSON without making it."""

    strings: str  # its strings joined with a space, so text split across fields reads as one
    keys: str  # its field names, then its nested keys, joined with a space
    # its identifier numbers (phone, card, account) and its credential fields as
    # ``name: value``, in document order
    extras: tuple[str, ...]
    size_at_most: int  # at least the length of its JSON in UTF-8 bytes
    strings_as_is: bool  # its JSON holds each string (names too) as it is: ASCII, none escaped


# One ``PayloadPieces`` is made for every message the policies screen, from values the walk
# has already put in field order: it is filled as the tuple it is, since the constructor the
# class is given would add a call to every message and check nothing.
_pieces_of = tuple.__new__


def payload_pieces(payload: BaseModel, shapes: Shapes) -> PayloadPieces | None:
    """The payload's pieces, read from the model (no dump, no parse); None when the JSON way
    must decide (see ``_plain_models``, and an unexpected value: an enum, a date, a big
    number, a string that cannot be encoded).

    What depends on the payload's class alone is read once into ``shapes``."""
    cls = type(payload)
    shape = shapes.get(cls)
    if shape is None:
        if len(shapes) >= _SHAPES_KEPT:
            shapes.clear()
        shape = shapes[cls] = _Shape(cls)
    models = shape.models
    if models is None or (shape.extra and payload.__pydantic_extra__):
        return None
    values = payload.__dict__
    identifiers = shape.identifiers
    secrets = shape.secrets
    numbered = shape.numbered
    # The class's names and bound hold while ``__dict__`` holds its fields in order (a payload
    # made with ``model_construct`` may miss one); a key that is not a field (``model_copy``
    # adds one) is not in the JSON, which the JSON way then shows. One comparison of the keys
    # decides it for the whole payload.
    same = tuple(values) == shape.fields
    if not same and not shape.field_set.issuperset(values):
        return None
    strings: list[str] = []
    keys: list[str] = []  # nested keys, after the top-level ones
    extras: list[str] = []  # the identifier numbers and the credentials
    nested = 0  # the values nested values hold, and those: at most 32 bytes each
    # Depth-first in document order, as ``_collect``: a flat payload never leaves this loop.
    for field, item in values.items():
        kind = type(item)
        if kind is str:
            strings.append(item)
            if secrets and field in secrets:
                extras.append(secrets[field] + item)
        elif kind is int:
            # A small int is no card number (those have 12 digits or more): only an
            # identifier's field makes it one of the numbers.
            if _NEGATIVE_SMALL <= item <= _SMALL:
                if numbered and field in numbered:
                    if field in identifiers:
                        extras.append(str(item))
                    if field in secrets:
                        extras.append(secrets[field] + str(item))
                continue
            if not _NEGATIVE_BIG < item < _BIG:
                return None
            if field in identifiers or _card_sized(item):
                extras.append(str(item))
            if secrets and field in secrets:
                extras.append(secrets[field] + str(item))
        elif kind is float:
            if item.is_integer():
                if field in identifiers or _card_sized(int(item)):
                    extras.append(str(int(item)))
                if secrets and field in secrets:
                    extras.append(secrets[field] + str(int(item)))
        elif kind is not bool and item is not None:
            counted = _walk_nested(field, item, models, strings, keys, extras)
            if counted < 0:
                return None
            nested += counted
    text = " ".join(strings)
    clean: bool | None
    if same and not nested:  # flat: the class's names and bound hold
        if text.isascii():
            clean = text.isprintable() and '"' not in text and "\\" not in text
        else:
            clean = _clean(text)
            if clean is None:
                return None
        names = shape.names
        bound = shape.bound + (len(text) if clean else 6 * len(text))
        as_is = clean and shape.names_clean
    else:
        names = " ".join([*values, *keys])
        clean = _clean(text + names)
        if clean is None:
            return None
        chars = len(text) + len(names)
        bound = 4 * (len(strings) + len(values) + len(keys)) + 32 * (len(values) + nested) + 2
        bound += chars if clean else 6 * chars
        as_is = clean
    return _pieces_of(PayloadPieces, (text, names, tuple(extras) if extras else (), bound, as_is))


def _walk_nested(
    field: str,
    value: Any,
    models: dict[type[BaseModel], frozenset[str]],
    strings: list[str],
    keys: list[str],
    extras: list[str],
) -> int:
    """``_nested`` over model values: how many values other than strings it met, or -1 for a
    value whose JSON this does not predict."""
    stack: list[tuple[str, Any]] = [(field, value)]
    pop, push = stack.pop, stack.extend
    others = containers = 0
    while stack:
        field, value = pop()
        kind = type(value)
        if kind is str:
            strings.append(value)
            if (label := _field(field)[1]) is not None:
                extras.append(label + value)
            continue
        others += 1
        if kind is int:
            if not -_BIG < value < _BIG:
                return -1
            identifier, label = _field(field)
            if identifier or _card_sized(value):
                extras.append(str(value))
            if label is not None:
                extras.append(label + str(value))
        elif kind is float:
            if value.is_integer():
                _number(field, int(value), extras)
        elif kind is bool or value is None:
            pass
        else:
            containers += 1
            if containers > _MAX_CONTAINERS:
                return -1
            if kind is dict or kind is FrozenDict:
                if any(type(k) is not str for k in value):
                    return -1
                keys.extend(value)
                push(reversed(value.items()))
            elif kind is list or kind is tuple or kind is FrozenList:
                push((field, item) for item in reversed(value))
            elif (
                kind in models
                and not value.__pydantic_extra__
                and models[kind].issuperset(items := value.__dict__)
            ):
                keys.extend(items)
                push(reversed(items.items()))
            else:
                return -1
    return others
