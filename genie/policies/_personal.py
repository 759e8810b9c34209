"""Personal data in a folded text (see ``_normalise``): what ``PIIBlock`` denies.

``find_pii(scan)`` names the first kind it finds, or None. Numbers are taken with their check
digits wherever a format has them, so an amount, an order id or a reference that happens to be
long is not personal data, nor are the digits of a machine-made hex id (a UUID, a digest). A
number said in English words is read as its digits first, words said one after another one
group, a comma or a dash between them a new group ("four one one one, one one one one..." is
``4111 1111...``; "double four" is ``44``), words joined by hyphens alone one group
("four-one-one-one-..."), and the same checks decide:

- **e-mail address**: ``name@domain.tld``, with spaces around ``@`` and around a dot with
  one before it (``name @ domain . tld``); defanged, ``[at]``,
  ``(at)``, ``{at}``, ``<at>``, ``[dot]``... or the mark itself bracketed, glued to the address
  (``[@]``, ``[.]``), at any domain; a bracketed mark between spaces (``(.)``) at a domain
  ending as a spelt address's does (``.com``, ``.in``...);
  spelt ``name dot surname at domain dot com`` or ``at the rate`` (Indian English for ``@``),
  ``underscore`` between name parts; ``name at gmail.com`` for the common mail providers.
  (``%40`` and ``&#64;`` are decoded before: ``_decode``.)
- **card number**: 13-19 digits passing the Luhn check, starting as a card does (2-6 or 8),
  unseparated or in groups of three or more joined by spaces, dashes, dots, slashes,
  underscores (mixed too), newlines, or the words "then", "and", "finally", "next"; or in four
  groups of four joined by one other mark repeated ("|", ":", "*", "~", "·"); or in groups of
  one to four, some of one or two ("41 11 11 ...", "4 1 1 1 ..."), joined by one separator
  repeated or by two ("41-11 11-11 ...", with no group of four that is a year), the whole run
  of them (but an expiry after it, "... 11 12/28"), starting in a network's range at a length
  it issues.
- **phone number**: an Indian mobile (ten digits from 6-9) in any grouping (not groups joined
  by ".", "/" or "_" around a year, a reference's parts, unless a word just before says a
  phone or a ``+`` starts it, nor across an amount with its paise, "54739.85 846191.80"),
  after ``+91``, ``91``, ``0091`` or ``0``, in a ``wa.me/`` link, or in words ("nine eight
  two..."); an Indian landline with its ``0`` trunk code; any
  number after ``+`` and a country code that libphonenumber holds valid for its country (the
  ``pii`` extra; without it, any 8 to 15 digits after a ``+`` and every ``0`` and ten digits,
  which denies more, never less).
  A ``+`` starts a number: digits after a later ``+`` belong to another one.
- **Aadhaar number**: 12 digits from 2-9, valid by the Verhoeff check, unseparated or 4-4-4
  with any separator (":", "|", "*"... too), never three groups of four with a fourth beside
  them (a 16-digit account's grouping); with a comma or a spaced-out mark only after the word
  "aadhaar" or "uid" (a list of amounts is written so).
- **PAN**: five letters (the fourth the holder's kind: P, C, H, F, A, T, B, L, J or G), four
  digits, a letter; spaced out, dashed or dotted between any of its characters, split into its
  parts or in two pieces across fields too. A PAN inside a GSTIN (a business's tax id) whose
  check character is right is the business's, not a person's.
- **IBAN**: a country code, two check digits and the account, of the country's length, valid by
  ISO 13616's mod-97 check, unseparated or in groups joined by spaces, dashes, dots, slashes or
  underscores.
- **US SSN**: ``ddd-dd-dddd`` (dashes, spaces or dots) with a valid area (not 000, 666 or 900+),
  group and serial, or nine digits right after "ssn", "social security" or "social" ("my social
  is ...").

What it cannot see, stated plainly: a card in groups of four joined by commas (a row of
amounts), a bank account number (no check digit tells it from an
order id or an amount; the customer's own account is what they write about most), a foreign
phone number without its ``+`` code ("(415) 555-0132"), a number in the words of another
language than English (Hindi's "do", "teen" and "char" are everyday words of romanised Hindi
and English, which would make most messages a hint for every recogniser), names, postal
addresses and dates of birth, and personal data split across messages.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from types import ModuleType

from ._normalise import Literals

__all__ = ["find_pii", "might_hold_pii"]

# --- e-mail -----------------------------------------------------------------------------------

# An address's name and domain may be in any script (RFC 6531 and IDNA: "иван@почта.рф",
# "priya@उदाहरण.भारत"): a letter or digit of any script, and the vowel signs of Indian scripts,
# which are marks to Unicode and letters of their words.
_INDIC_MARKS = "\u0900-\u0d7f"
_EMAIL = re.compile(
    rf"[\w.%+\-{_INDIC_MARKS}]@[\w.\-{_INDIC_MARKS}]{{1,253}}\.(?:[^\W\d_]|[{_INDIC_MARKS}]){{2,}}"
)
# A defanged address: "at" or "dot", or the mark itself, in brackets ("priya[@]example[.]com").
_BRACKETED = re.compile(r" ?[\[({<] ?(at|dot|@|\.) ?[\])}>] ?")
_TLD = (
    r"(?:com|in|net|org|co|me|io|info|biz|gov|edu|ai|app|dev|uk|us|ae|sg|de|fr|au|ca|jp|nl|"
    r"es|it|ru|ch|se|no|mail|email|online|xyz|tech)"
)
# Parts bounded as an address's are (64 for the name, 63 a domain label): no text makes the
# search slower than linear.
_SPELT_EMAIL = re.compile(
    r"(?<![a-z0-9])[a-z0-9][a-z0-9._\-]{0,63}(?: (?:dot|underscore) [a-z0-9._\-]{1,63}){0,6} "
    r"(?:at the rate(?: of)?|at) [a-z0-9\-]{1,63}(?: dot [a-z0-9\-]{1,63}){0,4} dot "
    + _TLD
    + r"(?![a-z0-9])"
)
_PROVIDERS = r"(?:gmail|yahoo|hotmail|outlook|rediffmail|icloud|protonmail|live|aol|zoho|ymail)"
_AT_PROVIDER = re.compile(
    r"(?<![a-z0-9])[a-z0-9][a-z0-9._\-]{0,63} (?:at the rate(?: of)?|at) "
    + _PROVIDERS
    + r"\.[a-z]{2,}"
)
_EMAIL_HINT = r"@|[\[({<] ?(?:at|dot) ?[\])}>]| dot [a-z]| at the rate| at " + _PROVIDERS


# Otherwise, a defanged address ends, as a spelt one does, in a domain people write to: "[at]"
# and "(.)" are also how a note says "at" and ends a sentence ("meet me [at] office (.)
# tomorrow").
_DEFANGED_EMAIL = re.compile(r"[a-z0-9._%+\-]@[a-z0-9.\-]{1,253}\." + _TLD + r"(?![a-z0-9\-])")


# Defanged on purpose, at any domain: "[at]" and "[dot]" spelt out, or the mark itself in
# brackets glued to the address ("anjali[@]example[.]pl"); a "(.)" between spaces may end a
# sentence.
_BRACKETED_WORD = re.compile(r" ?[\[({<] ?(at|dot) ?[\])}>] ?")
_GLUED_MARK = re.compile(r"(?<=[a-z0-9])[\[({<](@|\.)[\])}>](?=[a-z0-9])")


def _email(scan: str) -> bool:
    if "@" in scan and _EMAIL.search(_at_joined(scan)):
        return True
    if any(c in scan for c in "])}>"):
        text = _GLUED_MARK.sub(r"\1", scan)
        text = _BRACKETED_WORD.sub(lambda m: "@" if m.group(1) == "at" else ".", text)
        if "@" in text and _EMAIL.search(_at_joined(text)):
            return True
        text = _BRACKETED.sub(lambda m: "@" if m.group(1) in ("at", "@") else ".", text)
        if "@" in text and _DEFANGED_EMAIL.search(_at_joined(text)):
            return True
    # Spelt, an address says " at " ("priya dot k at gmail dot com", " at the rate").
    return " at " in scan and bool(_SPELT_EMAIL.search(scan) or _AT_PROVIDER.search(scan))


def _at_joined(text: str) -> str:
    """``text`` with the spaces around an address's marks taken out: around an ``@``, and
    around a dot with a space before it ("priya @ gmail . com"); a sentence's full stop has
    none before it ("be @ home. In the evening")."""
    return text.replace(" @", "@").replace("@ ", "@").replace(" . ", ".").replace(" .", ".")


# --- numbers: digit groups and the gaps between them -------------------------------------------

# What may stand between two groups of one number: one or two separators (with spaces around),
# or a filler word or two ("4242 then 4242 and finally 4242").
_GAP = re.compile(r"[ .\-/_()+]{1,4}|(?: ?,? (?:then|and|finally|next|followed by))+ ")
_RUN = re.compile(r"[0-9]+")
_WORD_DIGITS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_NUMBER_WORD = re.compile(
    r"(?<![a-z])(?:(double|triple) )?(zero|oh|one|two|three|four|five|six|seven|eight|nine)"
    r"(?![a-z])"
)
# Nine digits close together (an SSN; every other number here has more), or groups with
# filler words between: what every number recogniser needs.
# Each pattern a search runs over every message begins with one class of characters, so that
# ``re`` skips ahead to where a match can begin instead of trying every position.
_NUMBER_HINT = (
    r"[0-9](?:(?:[ .\-/_()+]{0,4}[0-9]){8}"
    r"|[0-9]{2,}(?: ?,? (?:then|and|finally|next|followed by))+ [0-9])"
)


# Number words said one after another are one group of digits, as a number is read out; a
# pause (a comma, a dash) ends a group: "four one one one, one one one one" is "4111 1111",
# "one two three, four five, six seven eight nine" is "123 45 6789". The checks of each kind
# then decide as they do for digits.
_SPOKEN_DIGIT = r"(?:(?:double|triple) )?(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
_SPOKEN = re.compile(
    r"(?<![a-z])" + _SPOKEN_DIGIT + r"(?![a-z])(?:(?: ?[,\-] ?| )" + _SPOKEN_DIGIT + r"(?![a-z]))*"
)
_PAUSE = re.compile(r" ?[,\-] ?")


def _spelt_digits(scan: str) -> str | None:
    """The text with number words as digits ("nine eight, two" is "98 2"), when it has two or
    more."""
    if not _ANY_NUMBER_WORD.found_in(scan):
        return None
    first = _NUMBER_WORD.search(scan)
    if first is None or _NUMBER_WORD.search(scan, first.end()) is None:
        return None

    def digits(m: re.Match[str]) -> str:
        return _WORD_DIGITS[m.group(2)] * {"double": 2, "triple": 3}.get(m.group(1) or "", 1)

    def said(m: re.Match[str]) -> str:
        run = m.group()
        # Words joined by hyphens alone are written as one word ("four-one-one-one-..."), so
        # one group: a pause is a comma, a dash between spaces, or a dash between groups of
        # words ("one two three-four five").
        groups = [run] if " " not in run and "," not in run else _PAUSE.split(run)
        return " ".join("".join(map(digits, _NUMBER_WORD.finditer(group))) for group in groups)

    return _SPOKEN.sub(said, scan)


# An amount with its paise: three digits or more, a point and two digits ending it, in no
# dotted row of groups ("55.55 55.55 55.55 44.44" is a card's pairs).
_AMOUNT = re.compile(r"(?<![0-9]\.)[0-9]{3,}\.[0-9]{2}(?![0-9]|\.[0-9])")


def _chains(scan: str) -> Iterator[tuple[list[str], list[int]]]:
    """Each run of digit groups joined by gaps, with where each group starts. An amount with
    its paise (``_AMOUNT``) is a chain of its own: a statement's row, a date, then a debit and
    a balance ("2024-09-15 54739.85 846191.80"), is no number across them."""
    groups: list[str] = []
    starts: list[int] = []
    end = 0
    amount_end = -1  # where the last amount met ends
    for m in _RUN.finditer(scan):
        at = m.start()
        amount = _AMOUNT.match(scan, at) if scan.startswith(".", m.end()) else None
        if groups and (
            amount is not None or end == amount_end or not _GAP.fullmatch(scan, end, at)
        ):
            yield groups, starts
            groups, starts = [], []
        if amount is not None:
            amount_end = amount.end()
        groups.append(m.group())
        starts.append(at)
        end = m.end()
    if groups:
        yield groups, starts


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6], [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2], [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip


def _verhoeff(digits: str) -> bool:
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return check == 0


@functools.lru_cache(maxsize=1)
def _phonenumbers() -> ModuleType | None:
    """libphonenumber's tables (the ``pii`` extra), loaded the first time a number needs them;
    None when not installed."""
    try:
        import phonenumbers
    except ImportError:
        return None
    return phonenumbers


@functools.lru_cache(maxsize=256)
def _valid_abroad(digits: str) -> bool:
    """Whether ``+digits`` is a valid number of its country (libphonenumber); without it, any
    number of E.164's length (8 to 15 digits with the country code) after a ``+``."""
    lib = _phonenumbers()
    if lib is None:
        return 8 <= len(digits) <= 15
    try:
        number = lib.parse("+" + digits, None)
    except lib.NumberParseException:
        return False
    return bool(lib.is_valid_number(number))


@functools.lru_cache(maxsize=256)
def _valid_landline(digits: str) -> bool:
    """Whether ``digits`` (with its 0 trunk code) is a valid Indian number (libphonenumber);
    without it, any 0 and ten digits."""
    lib = _phonenumbers()
    if lib is None:
        return True
    try:
        number = lib.parse(digits, "IN")
    except lib.NumberParseException:
        return False
    return bool(lib.is_valid_number(number))


def _north_american(digits: str) -> bool:
    """A North American number of ten digits: area code and exchange begin with 2 to 9."""
    return digits[0] in "23456789" and digits[3] in "23456789"


_MOBILE_CODE = {10: "", 11: "0", 12: "91", 14: "0091"}  # by length: none, trunk, country


def _mobile(digits: str) -> bool:
    """An Indian mobile, with or without its country or trunk code."""
    code = _MOBILE_CODE.get(len(digits))
    return code is not None and digits.startswith(code) and digits[len(code)] in "6789"


# "social" alone is how an American says it ("my social is ...").
_SSN_CONTEXT = re.compile(
    r"(?:ssn|social(?: security)?(?: number| no)?)(?: is| was| number| no)?[ :#.\-]*$"
)


def _ssn(digits: str, lengths: list[int], scan: str, at: int) -> bool:
    """A US social security number at ``at`` in ``scan``: in its 3-2-4 groups, or nine digits
    after the words that name one."""
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    if lengths == [3, 2, 4]:
        return True
    return lengths == [9] and _SSN_CONTEXT.search(scan, max(0, at - 30), at) is not None


def _number_kind(
    digits: str,
    lengths: list[int],
    international: bool,
    scan: str,
    at: int,
    in_fours: bool,
    reference: bool,
) -> str | None:
    """The kind of personal number that groups of ``lengths`` digits, ``digits`` in all,
    starting at ``at`` in ``scan``, make, or None. ``in_fours``: the groups have another group
    of four digits right before or after them in their chain; ``reference``: they are joined
    as a reference's parts are (``_reference``), so they are no phone number."""
    n = len(digits)
    if not reference:
        if international and 8 <= n <= 15 and _valid_abroad(digits):
            return "phone number"
        if _mobile(digits) or (n == 11 and digits[0] == "0" and _valid_landline(digits)):
            return "phone number"
        if lengths == [3, 3, 4] and scan[at - 1 : at] == "(" and _north_american(digits):
            return "phone number"  # "(415) 839-2047": an area code in brackets
    if (len(lengths) == 1 or min(lengths) >= 3) and _card(digits, in_small_groups=False):
        return "card number"
    # Three groups of four with a fourth beside them are part of a 16-digit number (a card's
    # or an account's grouping) or of a list, not an Aadhaar number.
    if (
        n == 12
        and digits[0] not in "01"
        and (lengths == [12] or (lengths == [4, 4, 4] and not in_fours))
        and _verhoeff(digits)
    ):
        return "Aadhaar number"
    if _ssn(digits, lengths, scan, at):
        return "US SSN"
    return None


# Groups of four digits joined by a separator the chains do not join (":", "|", "*", "~",
# "·"...): the same one, one or two characters, between every two groups, no space; the whole
# run of them. Three groups are an Aadhaar number, four a card's (valid by their checks); a
# group of four more beside them makes another number, of no kind. Years so joined
# ("2024|2025|2026") are years. With a comma (a list's separator: amounts, years) or spaces
# around it, an Aadhaar number only after the word that names one.
_FOURS_APART = re.compile(r"(?<![0-9])([0-9]{4})([^\w\s,]{1,2})[0-9]{4}(?:\2[0-9]{4})+(?![0-9])")
_AADHAAR_NAMED = re.compile(
    r"(?<![a-z])(?:aadhaa?r|uidai|uid|आधार)[^0-9]{0,30}?(?<![0-9])([2-9][0-9]{3})\W{1,4}([0-9]{4})\W{1,4}"
    r"([0-9]{4})(?![0-9])"
)
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")


def _apart(scan: str) -> str | None:
    """An Aadhaar or card number in groups of four joined by what ``_chains`` does not join."""
    for m in _FOURS_APART.finditer(scan):
        groups = m.group().split(m.group(2))
        if all(_YEAR.fullmatch(g) for g in groups):
            continue
        digits = "".join(groups)
        if len(groups) == 3 and digits[0] not in "01" and _verhoeff(digits):
            return "Aadhaar number"
        if len(groups) == 4 and _card(digits, in_small_groups=False):
            return "card number"
    if "aadha" in scan or "uid" in scan or "आधार" in scan:
        for m in _AADHAAR_NAMED.finditer(scan):
            if _verhoeff("".join(m.groups())):
                return "Aadhaar number"
    return None


# The ranges of card numbers the networks issue (the first digits, inclusive) and the lengths
# each issues them at: Visa, Mastercard (and its 2-series), American Express, Discover,
# Diners Club, JCB, UnionPay, RuPay, Maestro, Mir.
_NETWORKS = (
    ("4", "4", (13, 16, 19)),
    ("51", "55", (16,)), ("2221", "2720", (16,)),
    ("34", "34", (15,)), ("37", "37", (15,)),
    ("6011", "6011", range(16, 20)), ("644", "649", range(16, 20)), ("65", "65", range(16, 20)),
    ("300", "305", range(14, 20)), ("36", "36", range(14, 20)), ("38", "39", range(14, 20)),
    ("3528", "3589", range(16, 20)),
    ("62", "62", range(16, 20)), ("81", "81", range(16, 20)),
    ("60", "60", (16,)), ("82", "82", (16,)), ("508", "508", (16,)),
    ("353", "353", (16,)), ("356", "356", (16,)),
    ("50", "50", range(12, 20)), ("56", "58", range(12, 20)), ("6304", "6304", range(12, 20)),
    ("6759", "6759", range(12, 20)), ("676", "676", range(12, 20)),
    ("2200", "2204", range(16, 20)),
)  # fmt: skip


def _card(digits: str, *, in_small_groups: bool) -> bool:
    """Whether ``digits`` are a card's: 13 to 19 of them passing the Luhn check, starting as a
    payment card does (2-6 or 8). Written with groups of one or two digits among them, as a row
    of small numbers is written too, they must also start in a network's range and have a
    length it issues there (``_NETWORKS``): a Visa number has 13, 16 or 19 digits."""
    if not (13 <= len(digits) <= 19 and digits[0] in "234568" and _luhn(digits)):
        return False
    return not in_small_groups or any(
        low <= digits[: len(low)] <= high and len(digits) in lengths
        for low, high, lengths in _NETWORKS
    )


# What joins a card's small groups: one mark, no spaces around it.
_ONE_SEPARATOR = (" ", ".", "-", "/", "_")


def _in_small_groups(digits: str, groups: list[str], lengths: list[int], gaps: list[str]) -> bool:
    """A card in groups of one to four digits, some of one or two ("41 11 11 11 ...", "4 1 1 1
    ...", "4111 11 11 1111 1111"), joined by one separator, the same between every two groups,
    or by two ("41-11 11-11 ..."): the whole chain of them (``_chains``). A longer row of small
    numbers (a table's, a list of counts) holds card-like digits by chance somewhere; a card
    written so is the whole row. Joined by two separators, a group of four that is a year
    makes the row a date and a time ("30-12-2016 02-58-15", whose digits pass Luhn in Diners
    Club's range)."""
    separators = set(gaps)
    return (
        0 < len(separators) <= 2
        and separators.issubset(_ONE_SEPARATOR)
        and max(lengths) <= 4
        and min(lengths) <= 2
        and (len(separators) == 1 or not any(_YEAR.fullmatch(group) for group in groups))
        and _card(digits, in_small_groups=True)
    )


# A card's expiry written after it, a month 01-12, a slash and a year (MM/YY or MM/YYYY), set
# apart from the card's digits by another mark: the run is then the card's and its expiry's,
# too long to be a card, so the expiry is set apart before the run is judged whole.
_EXPIRY_MONTH = re.compile(r"0[1-9]|1[0-2]")
_EXPIRY_YEAR = re.compile(r"[0-9]{2}|20[0-9]{2}")


def _before_expiry(groups: list[str], gaps: list[str]) -> int:
    """How many of ``groups`` come before a card's expiry that ends them (all when none
    does)."""
    if (
        len(groups) > 3  # a card's groups, two at least, and the expiry's two
        and gaps[-1] == "/"
        and "/" not in gaps[-2]
        and _EXPIRY_MONTH.fullmatch(groups[-2])
        and _EXPIRY_YEAR.fullmatch(groups[-1])
    ):
        return len(groups) - 2
    return len(groups)


def _reference(groups: list[str], gaps: list[str]) -> bool:
    """Whether ``groups`` joined by ``gaps`` are a reference's parts rather than a phone's: a
    year between dots, slashes or underscores ("HL/98/2024/0117", "PO_76_2024_1234",
    "INV.87.2024.0042"). A phone joined by those marks alone ("98200/12345") is still one:
    that is how a number is disguised."""
    return any(_YEAR.fullmatch(g) for g in groups) and any(
        "." in gap or "/" in gap or "_" in gap for gap in gaps
    )


# A number said to be a phone right before it ("my mobile:", "WhatsApp me at", "ping me") is
# one, whatever its groups look like.
_PHONE_SAID = re.compile(
    r"(?<![a-z])(?:mobile|phone|cell|call|ring|dial|whatsapp|sms|text|reach|contact|tel|ping|"
    r"number is)(?![a-z])"
)


def _said_a_phone(scan: str, at: int) -> bool:
    return _PHONE_SAID.search(scan, max(0, at - 30), at) is not None


def _isbn(digits: str) -> bool:
    """A book's number (ISBN-13 from 978 or 979 with its check digit), which is no one's."""
    if len(digits) != 13 or digits[:3] not in ("978", "979"):
        return False
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0


@functools.lru_cache(maxsize=512)
def _window_lengths(first: str, group: int, international: bool) -> tuple[int, ...]:
    """The lengths, in digits and shortest first, of the windows some recogniser of
    ``_number_kind`` could take when a window starts with a group of ``group`` digits whose
    first is ``first``: the rest never need reading, so a long chain of digits no recogniser
    could start costs a lookup per group."""
    lengths: set[int] = set()
    if international:
        lengths.update(range(8, 16))  # any country's number
    if first in "6789":
        lengths.add(10)  # a mobile
    if first == "9":
        lengths.add(12)  # a mobile after 91
    if first == "0":
        lengths.update((11, 14))  # a mobile or a landline after 0, a mobile after 0091
    if first in "23456789" and group == 3:
        lengths.add(10)  # a North American number, (415) 839-2047
    if first in "234568" and group >= 3:
        lengths.update(range(13, 20))  # a card
    if first in "23456789" and group in (4, 12):
        lengths.add(12)  # an Aadhaar number
    if first != "9" and group in (3, 9):
        lengths.add(9)  # a US SSN
    return tuple(sorted(lengths))


def _numbers(scan: str) -> str | None:
    for groups, starts in _chains(scan):
        joined = "".join(groups)
        if len(joined) < 9 or _isbn(joined):
            continue
        lengths = [len(g) for g in groups]
        offsets = [0, *itertools.accumulate(lengths)]
        # What joins each group to the next one
        gaps = [scan[starts[j] + lengths[j] : starts[j + 1]] for j in range(len(groups) - 1)]
        # First: a card's digits in small groups hold a phone's by chance. Their length is
        # asked first: most runs of a statement (an id and a date) are shorter than a card.
        card = _before_expiry(groups, gaps)
        if 13 <= offsets[card] <= 19 and _in_small_groups(
            joined[: offsets[card]], groups[:card], lengths[:card], gaps[: card - 1]
        ):
            return "card number"
        after = {offset: j for j, offset in enumerate(offsets)}  # a window's end: its groups
        # A "+" starts a number: a window may start at one, never span one.
        plus = ["+" in scan[max(0, at - 2) : at] for at in starts]
        limit = offsets[-1]
        limits = [0] * len(groups)
        for i in range(len(groups) - 1, -1, -1):
            limits[i] = limit
            if plus[i]:
                limit = offsets[i]
        for i, at in enumerate(starts):
            international = plus[i]
            begin = offsets[i]
            for n in _window_lengths(groups[i][0], lengths[i], international):
                if begin + n > limits[i]:
                    break
                end = after.get(begin + n)
                if end is None:
                    continue
                in_fours = (i > 0 and lengths[i - 1] == 4) or (
                    end < len(lengths) and lengths[end] == 4
                )
                reference = (
                    end - i > 1
                    and not international
                    and _reference(groups[i:end], gaps[i : end - 1])
                    and not _said_a_phone(scan, at)
                )
                kind = _number_kind(
                    joined[begin : begin + n],
                    lengths[i:end],
                    international,
                    scan,
                    at,
                    in_fours,
                    reference,
                )
                if kind is not None:
                    return kind
    return None


# --- PAN and GSTIN ------------------------------------------------------------------------------

# A PAN with a dash, dot, underscore or slash between any two of its characters
# ("abc-pe-1234-f", "a.b.c.p.e.1.2.3.4.f"), or a space between its letters, digits and last
# letter ("abcpe 1234 f"): a space between two letters would join words ("due to pay 2500 a").
_PAN = re.compile(
    r"(?<![a-z0-9])([a-z][.\-_/]?[a-z][.\-_/]?[a-z][.\-_/]?[pcfhatblgj][.\-_/]?[a-z])[ .\-_/]?"
    r"([0-9][.\-_/]?[0-9][.\-_/]?[0-9][.\-_/]?[0-9])[ .\-_/]?([a-z])(?![a-z0-9])"
)
_PAN_PLAIN = re.compile(r"[a-z]{3}[pcfhatblgj][a-z][0-9]{4}[a-z]")
# A PAN in two pieces with one space between: a PAN split across two fields, whose strings
# the scan joins with a space ("abc" and "pe1234f"), the space after any of its first nine
# characters. Each match is read where it starts, so that pieces shared by two candidates
# are tried in both.
_PAN_CLASSES = ("[a-z]",) * 3 + ("[pcfhatblgj]", "[a-z]") + ("[0-9]",) * 4 + ("[a-z]",)
# How every PAN in two pieces ends: its four digits (the space among them, perhaps) and its
# last letter; the search for the pieces is dear, this one is not.
_PAN_ENDS_APART = re.compile(r"[0-9] ?[0-9] ?[0-9] ?[0-9] ?[a-z](?![a-z0-9])")
_PAN_IN_TWO = re.compile(
    r"(?<![a-z0-9])(?=("
    + "|".join("".join(_PAN_CLASSES[:k]) + " " + "".join(_PAN_CLASSES[k:]) for k in range(1, 10))
    + r")(?![a-z0-9]))"
)
_NOT_PAN = re.compile(r"[^a-z0-9]")
_GSTIN = re.compile(
    r"(?<![a-z0-9])[0-9]{2}([a-z]{3}[pcfhatblgj][a-z][0-9]{4}[a-z])[0-9a-z]z[0-9a-z](?![a-z0-9])"
)
_SINGLES = re.compile(r"(?<![a-z0-9])(?:[a-z0-9] ){4,}[a-z0-9](?![a-z0-9])")
_GST_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _gstin_valid(gstin: str) -> bool:
    total = 0
    for i, ch in enumerate(gstin[:14]):
        product = _GST_CHARS.index(ch) * (2 if i % 2 else 1)
        total += product // 36 + product % 36
    return _GST_CHARS[(36 - total % 36) % 36] == gstin[14]


def _pan(scan: str) -> bool:
    """A PAN, written whole, spaced out or in two pieces, that is not the PAN inside one of
    the text's GSTINs (a business's number, not a person's)."""
    candidates = [_NOT_PAN.sub("", "".join(m.groups())) for m in _PAN.finditer(scan)]
    spaced = _SINGLES.sub(lambda m: m.group().replace(" ", ""), scan)
    if spaced != scan:
        candidates += (_NOT_PAN.sub("", "".join(m.groups())) for m in _PAN.finditer(spaced))
    if _PAN_ENDS_APART.search(scan):
        candidates += (m.group(1).replace(" ", "") for m in _PAN_IN_TWO.finditer(scan))
    if not candidates:
        return False
    businesses = {m.group(1) for m in _GSTIN.finditer(scan) if _gstin_valid(m.group())}
    return any(pan not in businesses for pan in candidates)


# --- IBAN ---------------------------------------------------------------------------------------

_IBAN_LENGTHS = {
    "ad": 24, "ae": 23, "al": 28, "at": 20, "az": 28, "ba": 20, "be": 16, "bg": 22, "bh": 22,
    "br": 29, "ch": 21, "cr": 22, "cy": 28, "cz": 24, "de": 22, "dk": 18, "do": 28, "ee": 20,
    "eg": 29, "es": 24, "fi": 18, "fo": 18, "fr": 27, "gb": 22, "ge": 22, "gi": 23, "gl": 18,
    "gr": 27, "gt": 28, "hr": 21, "hu": 28, "ie": 22, "il": 23, "iq": 23, "is": 26, "it": 27,
    "jo": 30, "kw": 30, "kz": 20, "lb": 28, "li": 21, "lt": 20, "lu": 20, "lv": 21, "mc": 27,
    "md": 24, "me": 22, "mk": 19, "mr": 27, "mt": 31, "mu": 30, "nl": 18, "no": 15, "pk": 24,
    "pl": 28, "ps": 29, "pt": 25, "qa": 29, "ro": 24, "rs": 22, "sa": 24, "se": 24, "si": 19,
    "sk": 24, "sm": 27, "tn": 24, "tr": 26, "ua": 29, "vg": 24, "xk": 20,
}  # fmt: skip
# Its characters in groups joined by what joins a number's groups (a space, "-", ".", "/",
# "_", with spaces around or not), as _GAP does; the mod-97 check decides.
_IBAN = re.compile(r"(?<![a-z0-9])([a-z]{2})[0-9]{2}(?:(?: ?[.\-/_] ?| )?[a-z0-9]){10,32}")
_IBAN_MARKS = re.compile(r"[ .\-/_]")


def _iban(scan: str) -> bool:
    for m in _IBAN.finditer(scan):
        length = _IBAN_LENGTHS.get(m.group(1))
        if length is None:
            continue
        compact = _IBAN_MARKS.sub("", m.group())[:length]
        if len(compact) != length:
            continue
        rotated = compact[4:] + compact[:4]
        if int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1:
            return True
    return False


# --- all of it ----------------------------------------------------------------------------------


_EMAIL_HINT_ALONE = re.compile(_EMAIL_HINT)
_ANY_NUMBER_WORD = Literals(_WORD_DIGITS)
_NUMBER_HINT_ALONE = re.compile(_NUMBER_HINT)
_PAN_NEEDS = re.compile(r"[0-9](?:[ .\-_/]?[0-9]){3}")
# What a PAN needs, ``[pcfhatblgj]S?[a-z]S?[0-9](?:S?[0-9]){3}|(?:[a-z0-9] ){9}`` (S a
# separator, a space too), as two searches that begin with one character each: at its first
# digit, and at the first space of nine characters written apart.
_S = "[ .\\-_/]"
_PAN_HINT_AT_DIGITS = re.compile(
    r"[0-9](?:"
    + "|".join(f"(?<=[pcfhatblgj]{a}[a-z]{b}[0-9])" for a in ("", _S) for b in ("", _S))
    + r")(?:[ .\-_/]?[0-9]){3}"
)
_PAN_HINT_SPACED = re.compile(r" (?<=[a-z0-9] )(?:[a-z0-9] ){8}")
# What a number in groups of four joined by other characters needs (``_apart``).
_AADHAAR_HINT = re.compile(r"[0-9]{4}[^0-9a-z]{1,4}[0-9]{4}[^0-9a-z]{1,4}[0-9]{4}")


def _digits(text: str) -> int:
    """How many ASCII digits ``text`` holds (``fold`` made every script's digits ASCII)."""
    data = text.encode()
    return len(data) - len(data.translate(None, b"0123456789"))


def _hinted(text: str) -> bool:
    """What the recognisers need, each hint tried behind what it needs: an e-mail an ``@``, a
    bracket or a spelt "at" or "dot"; a number nine digits close together (an IBAN's account
    has them too); a PAN four in a row."""
    if "@" in text:
        return True
    if (
        "[" in text
        or "(" in text
        or "{" in text
        or "<" in text
        or " dot " in text
        or " at " in text
    ) and _EMAIL_HINT_ALONE.search(text):
        return True
    digits = _digits(text)
    if digits >= 9 and _NUMBER_HINT_ALONE.search(text):  # an IBAN's digits are nine close too
        return True
    if digits >= 12 and _AADHAAR_HINT.search(text):
        return True
    return (
        digits >= 4
        and _PAN_NEEDS.search(text) is not None
        and (_PAN_HINT_AT_DIGITS.search(text) or _PAN_HINT_SPACED.search(text)) is not None
    )


def might_hold_pii(scan: str) -> bool:
    """False only when ``find_pii(scan)`` is None: none of what each recogniser needs is in the
    text (``_hinted``), nor in it with number words as digits."""
    if _hinted(scan):
        return True
    # Spelt, a number needs two number words or more, and nine digits with them ("triple"
    # counts three).
    if not _ANY_NUMBER_WORD.found_in(scan):
        return False
    spoken = sum(map(scan.count, _WORD_DIGITS))
    if spoken < 2 or spoken * 3 + _digits(scan) < 9:
        return False
    first = _NUMBER_WORD.search(scan)
    if first is None or _NUMBER_WORD.search(scan, first.end()) is None:
        return False
    spelt = _spelt_digits(scan)
    return spelt is not None and _hinted(spelt)


# A machine-made id: a UUID (8-4-4-4-12 hex digits), or 32, 40 or 64 hex digits (a UUID
# without its dashes, a SHA-1 or SHA-256 digest). It is random hex, whose digit runs read as
# a phone, card or Aadhaar number now and then; one with no letter is a number, read as one.
_HEX_ID = re.compile(
    r"(?<![0-9a-z])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32})(?![0-9a-z])"
)


def _number_kind_in(text: str) -> str | None:
    """The kind of personal number ``text`` holds (``_numbers``, then ``_apart``), read without
    its machine-made ids (``_HEX_ID``, holding a letter), each set apart as the scan sets its
    parts apart (" | ", which no number spans). The ids are looked for only in a text that
    holds a number: most do not, and the search reads every character."""
    kind = _numbers(text) or _apart(text)
    if kind is None:
        return None
    plain = _HEX_ID.sub(lambda m: " | " if m.group().strip("0123456789-") else m.group(), text)
    return kind if plain == text else _numbers(plain) or _apart(plain)


def find_pii(scan: str) -> str | None:
    """The kind of personal data the folded text holds, or None (see the module docstring)."""
    if not might_hold_pii(scan):
        return None
    if _email(scan):
        return "e-mail address"
    # Before the numbers: an IBAN's account holds digits that may read as a phone number.
    if _iban(scan):
        return "IBAN"
    for text in (scan, _spelt_digits(scan)):
        if text is not None:
            kind = _number_kind_in(text)
            if kind is not None:
                return kind
    if _pan(scan):
        return "PAN"
    return None
