"""Credentials in a folded text (see ``_normalise``: lower case, one space for any whitespace):
what ``SecretsBlock`` denies.

``find_secret(scan)`` names the first kind it finds, or None:

- **provider keys and tokens**, by the formats their providers document (as detect-secrets'
  plugins do): AWS access key ids (``AKIA``, ``ASIA``... and 16 base32 characters), GitHub
  tokens (``ghp_``, ``github_pat_``...), Slack (``xoxb-``...), Stripe (``sk_live_``...),
  Razorpay (``rzp_live_``), Google API keys (``AIza``), OpenAI and Anthropic keys
  (``sk-proj-``, ``sk-ant-``), JWTs (three base64url parts, the first two JSON), PEM private
  key blocks; a key of those whose prefix is distinctive (AWS, GitHub, Slack, Stripe's secret
  and restricted keys, Google, OpenAI, Anthropic) cut in up to three pieces (a space, a line
  break, two string fields) or spaced out, of its format's length, its pieces after the first
  random (``_key_in_pieces``); a whole key of a format that gives only a least length
  (OpenAI's, Anthropic's, Slack's, GitHub's fine-grained) only when its body is random, not
  words joined by marks with dates and versions (``_OPEN_ENDED``, ``_reads_as_words``);
- **credentials in a connection string**: ``scheme://user:password@host``, ``Pwd=...;``,
  ``AccountKey=...``; in an HTTP ``Authorization: Basic ...`` header (``user:password`` in
  base64, whole groups of four with a digit or a mark among them), in text or as a field;
- **a password given**: after "password", "passwd", "pwd", "passcode", or the word in the
  languages the injection grammar reads ("mot de passe", "contraseña", "Passwort", "Kennwort",
  "parola d'ordine", "senha", "palavra-passe", ``पासवर्ड`` and its Bengali, Gujarati, Tamil and
  Telugu spellings, ``கடவுச்சொல்``), then up to five words, long or elided ones too ("del
  administrador", "des Administratorkontos", "dell'amministratore"), then a verb or a colon
  or nothing ("is", "es", "est", "ist", "é", "è", ``है``, ``आहे``, ``છે``...), a value that
  looks like one (six characters or more, letters with digits or symbols, not a hyphenated
  word such as "e-mail" or "end-to-end", but three words of three letters or more joined by
  hyphens, a passphrase; an Indian script's vowel signs are part of a word, no symbols):
  "password: Mumbai@Monsoon2024!", ``password Tiger#1987kolkata hai``, "mein Passwort ist
  Geheim123!";
- **a PIN, OTP or CVV given**: "my UPI PIN is 482916", "the OTP I just got is 730215",
  "UPI PIN = '482916'", "my cvv 123", "my UPI PIN is 4 8 2 9 1 6"; a bare "PIN" before six
  digits from 1-9 is a postal code ("Bengaluru PIN-560034", "PIN code 560034") unless "my" or
  "your" is right before it;
- **a generic key**: after "api key", "secret", "token", "client secret", "access token", "key
  secret" or "bearer", a value of 16 characters or more with letters and digits whose Shannon
  entropy is at least 3.5 bits a character (random, not a word).

AWS's documentation keys (ending ``EXAMPLE``) are not credentials and pass. What it cannot see,
stated plainly: a password or key given with no word before it and no provider format (a
random string alone could be an id), a PIN in words, a secret split across messages, a
Razorpay key id or a Stripe publishable key cut in pieces, a key cut in four pieces or more,
an OpenAI user key ("sk-" and 48 characters) whose prefix is itself written apart, and a
provider format it does not know.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from unicodedata import category

from ._normalise import Literals, compact_words, fold

__all__ = ["HINT_WORDS", "find_secret", "might_hold_secret", "other_hints"]

_B = r"(?<![a-z0-9_])"  # a token starts here
_E = r"(?![a-z0-9_])"
_PROVIDERS = (
    # An AWS key id's 16 characters after its prefix are base32: letters and 2-7, never 0, 1,
    # 8 or 9 (a year and an amount after "Asia" are no key).
    ("AWS access key", rf"{_B}(?:akia|asia|abia|acca)(?![a-z0-9]{{9}}example)[a-z2-7]{{16}}{_E}"),
    ("GitHub token", rf"{_B}(?:gh[pousr]_[a-z0-9]{{36}}|github_pat_[a-z0-9_]{{50,}})"),
    ("Slack token", rf"{_B}(?:xox[baprs]-[a-z0-9-]{{10,}}|xapp-[0-9]-[a-z0-9-]{{10,}})"),
    ("Slack webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/[a-z0-9]{8,}/\w{8,}/"),
    ("Stripe key", rf"{_B}(?:sk|rk|pk)_(?:live|test)_[a-z0-9]{{16,}}"),
    ("Razorpay key", rf"{_B}rzp_(?:live|test)_[a-z0-9]{{10,}}"),
    ("Google API key", rf"{_B}aiza[a-z0-9_\-]{{35}}"),
    ("OpenAI or Anthropic key", rf"{_B}sk-(?:proj-|svcacct-|admin-|ant-)?[a-z0-9_\-]{{32,}}"),
    ("JWT", rf"{_B}eyj[a-z0-9_\-]{{8,}}\.eyj[a-z0-9_\-]{{8,}}\.[a-z0-9_\-]{{8,}}"),
    ("private key", r"-----begin (?:[a-z0-9]+ )*private key-----"),
    ("connection string", r"[a-z][a-z0-9+.\-]{1,20}://[^\s:/@]{1,64}:[^\s/@]{3,128}@[a-z0-9]"),
    ("connection string", rf"{_B}(?:pwd|password|accountkey|sharedaccesskey)=[^;\s]{{4,}}"),
    # RFC 7617's header: "user:password" in padded base64, which anyone can decode. Whole
    # groups of four with a digit, "+", "/" or "=" among them: "Basic authentication" is words.
    (
        "HTTP Basic credentials",
        r"authorization[: ]{1,3}basic (?=[a-z0-9+/]*[0-9+/=])(?:[a-z0-9+/]{4}){1,64}"
        r"(?:[a-z0-9+/]{2}==|[a-z0-9+/]{3}=)?(?![a-z0-9+/=])",
    ),
)
_PROVIDER = re.compile("|".join(f"({pattern})" for _, pattern in _PROVIDERS))
# What every match of ``_PROVIDER`` holds, one of these as it is written: a text without any
# is not searched (each of its forms is tried at every position of a long text).
_PROVIDER_MARKS = Literals(
    (
        "akia", "asia", "abia", "acca", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
        "xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-", "xapp-", "hooks.slack.com/", "sk_live_",
        "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_", "rzp_live_", "rzp_test_",
        "aiza", "sk-", "eyj", "-----begin ", "://", "pwd=", "password=", "accountkey=",
        "sharedaccesskey=", "authorization",
    )
)  # fmt: skip
_PROVIDER_KIND = [kind for kind, _ in _PROVIDERS]
# The prefixes of the formats that give a key no fixed length, only a least one: past them a
# document's title, a channel's or a page's name is as long ("sk-2024-q3-credit-risk-summary-
# final-approved-v2", "xoxb-rotationapproved"), so a match of theirs is a key only when its
# body is random (``_random_pieces``). The longest prefix first ("sk-proj-" before "sk-").
# Left out, where a random body reads as words too often for a real key to be let go: the
# fixed-length formats (AWS, GitHub's classic tokens, Google: 16 base32 letters often have a
# word's share of vowels), Stripe's keys (24 characters after the prefix, with no mark and no
# number as Slack's have: letters alone with a word's share of vowels about once in seven
# hundred keys) and Razorpay's key id (14 characters, about once in a hundred).
_OPEN_ENDED = re.compile(r"github_pat_|xox[baprs]-|xapp-|sk-(?:proj-|svcacct-|admin-|ant-)?")

# A key cut in pieces: a provider's key whose prefix is distinctive, split by a space or a
# line break, or across two or three string fields (the scan joins them with a space), or
# spaced out character by character ("a k i a ..."). Where its prefix begins, spaced or not,
# the pieces after it are joined and matched against the provider's format (``_PROVIDER``)
# when they make a key of the length its format gives; no more is read than that length and
# the pieces allow, so a long text costs a bounded read per prefix. By the prefix as written:
# the shortest and longest key, and whether its characters include "-" (a piece ends at any
# other mark).
_KEYS_IN_PIECES: tuple[tuple[tuple[str, ...], int, int, bool], ...] = (
    # AWS access key ids: the prefix and 16 base32 characters.
    (("akia", "asia", "abia", "acca"), 20, 20, False),
    # GitHub: a classic token's 36 characters after its prefix; a fine-grained token's 82, of
    # which its format asks for 50 or more.
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), 40, 40, False),
    (("github_pat_",), 61, 93, False),
    # Slack: numbers and a random part joined by dashes, of no fixed length (a bot token about
    # 55 characters, a user's 75, an app-level one 95, and Slack says they may grow): read up
    # to 255.
    (("xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-", "xapp-"), 32, 255, True),
    # Stripe: 24 characters after the prefix, 99 in newer keys, of no fixed length: read up
    # to 255.
    (("sk_live_", "sk_test_", "rk_live_", "rk_test_"), 32, 255, False),
    # Google: 35 characters after "AIza".
    (("aiza",), 39, 39, True),
    # OpenAI: a user key's 48 characters after "sk-"; a project's, a service account's or an
    # admin key's 48 to about 160 after theirs; Anthropic's 95 after "sk-ant-api03-" or
    # "sk-ant-admin01-".
    (("sk-",), 51, 51, True),
    (("sk-proj-", "sk-svcacct-", "sk-admin-"), 56, 200, True),
    (("sk-ant-",), 108, 110, True),
)
_TOKEN_CHARS = re.compile(r"[a-z0-9_]*")
_DASHED_TOKEN_CHARS = re.compile(r"[a-z0-9_\-]*")
_KEY_PIECES = {
    prefix: (shortest, longest, _DASHED_TOKEN_CHARS if dashed else _TOKEN_CHARS)
    for prefixes, shortest, longest, dashed in _KEYS_IN_PIECES
    for prefix in prefixes
}


def _prefixes_start(prefixes: list[str]) -> re.Pattern[str]:
    """Where a prefix begins, spaced or not: each alternative begins with the prefix's first
    letter, its look-behind (a token starts there) after it, so that ``re`` skips ahead to one
    of those letters; the longest prefix of a letter first ("sk-proj-" before "sk-")."""
    by_first: dict[str, list[str]] = {}
    for prefix in sorted(prefixes, key=len, reverse=True):
        by_first.setdefault(prefix[0], []).append(prefix)
    return re.compile(
        "|".join(
            f"{first}(?<![a-z0-9_]{first})(?:"
            + "|".join("".join(" ?" + re.escape(c) for c in prefix[1:]) for prefix in group)
            + ")"
            for first, group in by_first.items()
        )
    )


_PIECES_START = _prefixes_start(list(_KEY_PIECES))
# What a text holding a prefix holds however it is cut or spaced: the prefix without its
# spaces and marks, or, for OpenAI's "sk-" (whose letters "sk" are in "ask" and "desk"), a
# "k" before its dash. Looked for before the search of ``_PIECES_START``, which stops at every
# letter a prefix begins with.
_PIECES_HINTS = Literals(compact_words(prefix) for prefix in _KEY_PIECES if prefix != "sk-")
# Characters written apart, four or more: one piece, as the key they spell.
_SPACED_OUT = re.compile(r"(?<![a-z0-9_\-])(?:[a-z0-9_\-] ){3,}[a-z0-9_\-](?![a-z0-9_\-])")
# The parts of a piece between its marks, each of which may read as a word.
_MARKS = re.compile(r"[_\-]")
# A part of a key's body between its marks as writing has it: letters (a word, an
# abbreviation), or a number of up to eight digits after up to three letters ("2024", "q3",
# "v2", "fy2025", "20241127"). A random part of letters often ends in a digit
# ("enourchpjitxquuhokbpznq7"); a number of nine digits or more is an id a key carries
# (Slack's team and user ids before its random part), not a date or a version.
_WRITTEN_PART = re.compile(r"([a-z]+)|[a-z]{0,3}[0-9]{1,8}")
_MOST_PIECES = 3

# "Password" in English and in the languages the injection grammar reads (``_injection``),
# folded as the scan is; and the verbs that give one ("is"), in the same languages.
_PASSWORD_NAMES = tuple(
    fold(name)
    for name in (
        "password", "passwd", "pwd", "passcode", "pass code",
        "mot de passe",  # French
        "contraseña", "clave de acceso",  # Spanish
        "passwort", "kennwort",  # German
        "parola d'ordine",  # Italian (which says "password" too)
        "senha", "palavra-passe", "palavra passe",  # Portuguese
        "पासवर्ड",  # Hindi, Marathi
        "পাসওয়ার্ড",  # Bengali
        "પાસવર્ડ",  # Gujarati
        "பாஸ்வேர்ட்", "கடவுச்சொல்",  # Tamil
        "పాస్‌వర్డ్",  # Telugu
    )
)  # fmt: skip
_GIVEN = tuple(
    fold(verb)
    for verb in ("is", "was", "hai", "es", "est", "etait", "ist", "war", "lautet", "e", "era",
                 "है", "था", "आहे", "होता", "છે", "હતો")
)  # fmt: skip
# Each keyword is a word of its own: a random id that holds "pwd" or "token" ("k3pwdx9...")
# names no password, and neither does a compound ("a password-protected PDF"). Up to five
# words may come between it and the value, long or elided ones too ("contraseña del
# administrador:", "Passwort des Administratorkontos:", "parola d'ordine dell'amministratore:"):
# the value's look decides, not the words'.
_PASSWORD = re.compile(
    r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, _PASSWORD_NAMES)) + r")"
    r"(?![a-z0-9_]|-[a-z])(?:(?: [a-z]{1,24}(?:'[a-z]{1,24})?){0,5}?(?: (?:"
    + "|".join(map(re.escape, _GIVEN))
    + r"|-)| ?[:=]))? ?[:=]? ?(\S{6,64})"
)
# A value that is a word written with a hyphen or an apostrophe ("senha e e-mail", "mot de
# passe : l'ancien", "end-to-end") names no password: "é" (is) and "e" (and) are one word once
# folded. Three words or more of three letters or more ("correct-horse-battery-staple") are a
# passphrase.
_HYPHENATED_WORD = re.compile(r"[a-z]+(?:['\-][a-z]+)+")
_PASSPHRASE = re.compile(r"[a-z]{3,}(?:-[a-z]{3,}){2,}")
# A PIN, OTP or CVV given: its name, then either a few words and a verb or a colon ("my UPI
# PIN, which is", "the OTP you asked for:") or nothing but marks ("UPI PIN = '482916'", "OTP
# 730215"), then three to eight digits, which may be written apart ("4 8 2 9 1 6",
# "48-29-16") but are not followed by more. A bare "PIN" before six digits from 1-9 is an
# Indian postal code ("Bengaluru, PIN: 560034", "PIN code 560034"), unless the sender calls it
# theirs ("my PIN is 482916"): a UPI, ATM, card or login PIN is named so.
_PIN = re.compile(
    r"(?<![a-z0-9])((?:upi|atm|card|debit card|credit card|m|transaction|txn|login|secret)"
    r"[ _\-]pin|mpin|pin(?![ \-]?codes?(?![a-z0-9]))|otp|one time password|cvv2?|cvc2?)"
    r"(?![a-z0-9])(?:,?(?: [a-z]{1,8}){0,4}? ?(?:is|was|hai|are|:|=|-)(?![a-z]))?[ ,:=\-'\"]{0,4}"
    r"([0-9](?:[ .\-]?[0-9]){2,7})(?![ .\-]?[0-9])"
)
_POSTAL = re.compile(r"[1-9][0-9]{5}")
_OWN_PIN = re.compile(r"(?:my|your|mera|meri|mere|apna|apni) $")
_NOT_DIGIT = re.compile(r"[^0-9]")
_KEYWORD = re.compile(
    r"(?<![a-z0-9])(?:api[ _\-]?key|secret(?:[ _\-]?key)?|token|client[ _\-]?secret|"
    r"access[ _\-]?token|key[ _\-]?secret|auth[ _\-]?token|bearer|secret[ _\-]?access[ _\-]?key)"
    r"(?![a-z0-9])(?: (?:is|was|hai))? ?[:=]? ?['\"]?([a-z0-9_\-+/=.]{16,200})"
)
_WORDISH = re.compile(r"[a-z]+")
# What every match of ``_PASSWORD``, ``_PIN`` and ``_KEYWORD`` holds, one of these words.
_PASSWORD_WORDS = ("passw", *_PASSWORD_NAMES)
_PIN_WORDS = ("pin", "otp", "one time password", "cvv", "cvc")
_KEYWORD_WORDS = ("api", "secret", "token", "bearer")

# What every recogniser needs, in the text without its spaces and punctuation
# (``compact_words``): a provider's prefix or a word before the value; besides them, a URL's
# "://", OpenAI's "sk-", or a PIN, OTP or CVV (``other_hints``).
HINT_WORDS = (
    "akia", "asia", "abia", "acca", "ghp", "gho", "ghu", "ghs", "ghr", "githubpat", "xoxb",
    "xoxp", "xoxa", "xoxr", "xoxs", "xapp", "sklive", "sktest", "rklive", "rktest", "pklive",
    "pktest", "rzplive", "rzptest", "aiza", "skproj", "sksvcacct", "skadmin", "skant", "eyj",
    "privatekey", "passw", *map(compact_words, _PASSWORD_NAMES), "accountkey",
    "sharedaccesskey", "apikey", "secret", "token", "bearer", "authorizationbasic",
)  # fmt: skip
_HINT_WORDS = Literals(HINT_WORDS)
_HINT_SHORT = re.compile(r"(?<![a-z])(?:pin|mpin|m-pin|otp|cvv|cvc)(?![a-z])")


def other_hints(scan: str) -> bool:
    """``might_hold_secret`` besides ``HINT_WORDS``."""
    if "://" in scan or "sk-" in scan:
        return True
    return (
        "pin" in scan or "otp" in scan or "cvv" in scan or "cvc" in scan
    ) and _HINT_SHORT.search(scan) is not None


def might_hold_secret(scan: str) -> bool:
    """False only when ``find_secret(scan)`` is None."""
    return _HINT_WORDS.found_in(compact_words(scan)) or other_hints(scan)


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_like_password(value: str) -> bool:
    value = value.rstrip(".,;)'\"?")  # the end of a sentence: "the password policy?"
    if len(value) < 6:
        return False
    letters = any(c.isalpha() for c in value)
    # The vowel signs and viramas of Indian scripts are marks, not letters, to Unicode, but
    # they are part of a word ("विसरलो", forgot): only a digit or a symbol makes a password.
    others = any(c.isdigit() or not (c.isalnum() or category(c)[0] == "M") for c in value)
    if _HYPHENATED_WORD.fullmatch(value):
        return _PASSPHRASE.fullmatch(value) is not None
    return letters and others and not value.endswith(":")


def _wordlike(letters: str, shortest: int = 12) -> bool:
    """A run of letters long enough to be a word, with a word's share of vowels: random
    letters (a key's) have about one in five, English words two in five."""
    return len(letters) >= shortest and sum(map(letters.count, "aeiou")) >= 0.3 * len(letters)


def _reads_as_words(body: str) -> bool:
    """Whether a key's body past its prefix is written, not random: words joined by dashes or
    underscores, with dates, numbers and version tags ("2024-q3-credit-risk-summary-final-
    approved-v2", "rotationapproved"). Each part between its marks is written
    (``_WRITTEN_PART``), and the letters of its words (three letters or more: "q3", "v2" and
    "by" say nothing) have a word's share of vowels (``_wordlike``). A random body mixes
    digits into its letters, and its letters alone have about one vowel in five."""
    letters: list[str] = []
    for part in _MARKS.split(body):
        written = _WRITTEN_PART.fullmatch(part)
        if written is None:
            return False
        if written.group(1) is not None and len(written.group(1)) >= 3:
            letters.append(written.group(1))
    return _wordlike("".join(letters), shortest=5)


def _random_pieces(pieces: list[str], prefix: int) -> bool:
    """Whether the pieces of a key (or a key whole, one piece), past its ``prefix``
    characters, read as a key's random characters rather than words: they hold a letter,
    they do not read as words together where the format gives no fixed length
    (``_OPEN_ENDED``, ``_reads_as_words``), and no piece after the first is
    letters alone, or words joined by dashes or underscores ("rollout-review-notes"), with a
    word's share of vowels (the first begins with the prefix, as no word but "Asian" does; a
    short random piece often has a word's share of vowels)."""
    body: list[str] = []
    for piece in pieces:
        body.append(piece[prefix:])
        prefix = max(0, prefix - len(piece))
    return (
        any(c.isalpha() for c in "".join(body))
        # a space between pieces ends a word as a mark does: "...-approved-v2 for"
        and not (_OPEN_ENDED.match(pieces[0]) and _reads_as_words("-".join(body)))
        and not any(
            _wordlike(letters, shortest=5)
            for letters in (_MARKS.sub("", piece) for piece in body[1:])
            if letters.isalpha()
        )
    )


def _may_hold_pieces(scan: str) -> bool:
    """False only when ``_PIECES_START`` finds no prefix in ``scan`` (``_PIECES_HINTS``)."""
    return _PIECES_HINTS.found_in(compact_words(scan)) or "k-" in scan or "k -" in scan


def _key_in_pieces(scan: str) -> str | None:
    """The kind of provider key that pieces of ``scan`` joined make (see ``_KEYS_IN_PIECES``):
    up to three pieces, characters written apart counting as one, ending where a piece ends,
    of a length the provider's format gives, random past its prefix (``_random_pieces``:
    "asia" then "2024 distribution" is no AWS key id)."""
    if not _may_hold_pieces(scan) or _PIECES_START.search(scan) is None:
        return None
    text = _SPACED_OUT.sub(lambda m: m.group().replace(" ", ""), scan)
    for m in _PIECES_START.finditer(text):
        prefix = m.group().replace(" ", "")
        shortest, longest, chars = _KEY_PIECES[prefix]
        pieces: list[str] = []
        stretch = text[m.start() : m.start() + longest + _MOST_PIECES]
        for piece in stretch.split(" ", _MOST_PIECES):
            found_chars = chars.match(piece)
            token = found_chars.group() if found_chars is not None else ""
            if not token or len(pieces) == _MOST_PIECES:
                break
            pieces.append(token)
            joined = "".join(pieces)
            found = _PROVIDER.fullmatch(joined) if shortest <= len(joined) <= longest else None
            if found is not None and _random_pieces(pieces, len(prefix)):
                return _PROVIDER_KIND[found.lastindex - 1 if found.lastindex else 0]
            if len(joined) >= longest or len(token) < len(piece):  # its end, or punctuation
                break
    return None


def find_secret(scan: str) -> str | None:
    """The kind of credential the folded text holds, or None (see the module docstring)."""
    if not might_hold_secret(scan):
        return None
    # Each expression runs only on a text holding a word every match of it holds.
    if _PROVIDER_MARKS.found_in(scan):
        for m in _PROVIDER.finditer(scan):
            key = m.group()
            open_ended = _OPEN_ENDED.match(key)
            if open_ended is None or _random_pieces([key], open_ended.end()):
                return _PROVIDER_KIND[m.lastindex - 1 if m.lastindex else 0]
    kind = _key_in_pieces(scan)
    if kind is not None:
        return kind
    if _holds(scan, _PASSWORD_WORDS):
        for m in _PASSWORD.finditer(scan):
            if _looks_like_password(m.group(1)):
                return "password"
    if _holds(scan, _PIN_WORDS):
        for m in _PIN.finditer(scan):
            if (
                m.group(1) != "pin"
                or not _POSTAL.fullmatch(_NOT_DIGIT.sub("", m.group(2)))
                or _OWN_PIN.search(scan, max(0, m.start() - 6), m.start())
            ):
                return "PIN or OTP"
    if _holds(scan, _KEYWORD_WORDS):
        for m in _KEYWORD.finditer(scan):
            value = m.group(1)
            if (
                any(c.isdigit() for c in value)
                and any(c.isalpha() for c in value)
                and _entropy(value) >= 3.5
                and not any(_wordlike(run) for run in _WORDISH.findall(value))
            ):
                return "API key"
    return None


def _holds(scan: str, words: tuple[str, ...]) -> bool:
    return any(word in scan for word in words)
