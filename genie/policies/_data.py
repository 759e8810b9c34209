"""What data may go where: classification ceilings, residency, PII, prompt injection."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from .._errors import ConfigurationError
from .._message.envelope import Message
from .._message.payload import Classification
from .._runtime.policy import Decision, DeliveryCheck, PlanStep
from ._content import ContentView, quote
from ._normalise import compact_words, fold, words
from ._screen import ScreenPart

__all__ = ["ClassificationCeiling", "DataResidency", "PIIBlock", "PromptInjection", "has_pii"]

ALLOW = Decision.ALLOW


class ClassificationCeiling:
    """Deny a message classified above the recipient's ceiling (``allowed_to[recipient]``,
    else ``default_ceiling``)."""

    name = "classification"

    def __init__(
        self,
        allowed_to: Mapping[str, Classification | str] | None = None,
        default_ceiling: Classification | str = Classification.INTERNAL,
    ) -> None:
        self.allowed_to: Mapping[str, Classification] = MappingProxyType(
            {k: Classification(v) for k, v in (allowed_to or {}).items()}
        )
        self.default_ceiling = Classification(default_ceiling)
        # A message at or below every ceiling passes whoever receives it, so the plan leaves
        # no check per recipient for a message classified as one of these.
        lowest = min(c.rank for c in (self.default_ceiling, *self.allowed_to.values()))
        self._passes_all = tuple(c for c in Classification if c.rank <= lowest)

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        ceiling = self.allowed_to.get(recipient, self.default_ceiling)
        if msg.classification.rank > ceiling.rank:
            return Decision.deny(self.name, "classification exceeds recipient ceiling")
        return ALLOW

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return ClassificationCeiling

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._for_message

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _for_message(self, msg: Message) -> Decision | DeliveryCheck:
        return ALLOW if msg.classification in self._passes_all else self.evaluate


class DataResidency:
    """Data leaves ``home_region`` (``metadata.region`` names the target) only when public,
    and public data only when ``allow_cross_border_for_public``. ``on-prem`` stays home."""

    name = "data_residency"

    def __init__(self, home_region: str = "in", allow_cross_border_for_public: bool = True) -> None:
        self.home_region = home_region
        self.allow_cross_border_for_public = allow_cross_border_for_public

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = True

    @property
    def plan_class(self) -> type[object]:
        return DataResidency

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check

    def screen_part(self, message_type: str) -> None:
        return None  # no content check to screen

    def _check(self, msg: Message) -> Decision:
        region = msg.metadata.get("region")
        if not region or region == self.home_region or region == "on-prem":
            return ALLOW
        cls = msg.classification
        if cls in (Classification.PII, Classification.SECRET):
            return Decision.deny(
                self.name,
                f'classification "{cls.value}" cannot leave region "{self.home_region}" '
                f'(target="{quote(region)}")',
            )
        if cls is Classification.INTERNAL:
            return Decision.deny(self.name, "internal data cannot leave home region")
        if not self.allow_cross_border_for_public:
            return Decision.deny(self.name, "public-data cross-border disabled")
        return ALLOW


# The Go patterns, matched on the folded scan text (lower case, one space between words). A run
# of ten or more digits is a phone (10-12) or an account or card number (12+), as in Go, unless
# a letter touches it: then it is part of a word such as a hex id (trace ids hold digit runs).
_DIGIT_RUN = re.compile(r"(?<![a-z0-9])[0-9]{10,}(?![a-z0-9])")
# Digits in groups joined by one kind of separator (space or dash), after an optional country
# code and area code: "+91 98765 43210", "(022) 2345-6789", "4111-1111-1111-1111". Dots are not
# separators: "10000000.00" is an amount. One kind per chain keeps "2026-01-01 2026-02-01"
# (two dates) apart.
_GROUPS = re.compile(
    r"(?<![a-z0-9+])(?:\+[0-9]{1,3}[ -]?)?(?:\([0-9]{1,5}\)[ -]?)?"
    r"[0-9]{1,6}([ -])[0-9]{1,6}(?:\1[0-9]{1,6})*(?![a-z0-9])"
)
_GROUP = re.compile(r"[0-9]+")
# An e-mail: a local-part character, "@", a domain with a dot and a top-level name. Go's
# pattern had an unbounded local part, which Python's backtracking engine rescans from every
# position: 1.8 s on 12 KB of "a.a.a...@b.b.b..." (RE2 has no such case). One character of it
# finds the same addresses in linear time.
_EMAIL = re.compile(r"[a-z0-9._%+\-]@[a-z0-9.\-]{1,253}\.[a-z]{2,}")
_BRACKETED = re.compile(r" ?[\[({<] ?(at|dot) ?[\])}>] ?")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _grouped_pii(groups: list[str]) -> bool:
    """A separated chain is a phone number when it has 10-12 digits in all, and holds a card
    number when groups of three or more digits, starting with one of four (as every card
    layout does: 4-4-4-4, 4-6-5, 4-4-4-4-3), make 13-19 digits that pass the Luhn check (so a
    list of amounts, which has no reason to, is rarely taken for one)."""
    if 10 <= sum(map(len, groups)) <= 12:
        return True
    for start, first in enumerate(groups):
        if len(first) != 4:
            continue
        digits = first
        for group in groups[start + 1 : start + 5]:  # four more groups reach 19 digits
            if len(group) < 3:
                break
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _luhn(digits):
                return True
    return False


def has_pii(scan: str) -> bool:
    """Whether folded scan text holds a phone, account or card number, or an e-mail address."""
    # A superset first: with separators deleted and digits as 0, a number of either kind
    # leaves ten 0s in a row, so text without such a run holds no phone, account or card
    # number and only the e-mail pattern is left to search.
    if b"0000000000" in scan.encode().translate(_DIGITS_AS_ZERO, b" -()+"):
        if _DIGIT_RUN.search(scan):
            return True
        for m in _GROUPS.finditer(scan):
            if _grouped_pii(_GROUP.findall(m.group())):
                return True
    return _has_email(scan)


def _has_email(scan: str) -> bool:
    text = scan
    if (
        "@" not in text
        and "]" not in text
        and ")" not in text
        and "}" not in text
        and (">" not in text)
    ):
        return False  # neither an "@" nor a bracket to spell one with: the common case
    if any(c in text and (f"at{c}" in text or f"at {c}" in text) for c in "])}>"):
        # "priya [at] example (dot) com"
        text = _BRACKETED.sub(lambda m: "@" if m.group(1) == "at" else ".", text)
    if "@" not in text:
        return False
    text = text.replace(" @", "@").replace("@ ", "@")  # "priya @ example.com"
    return _EMAIL.search(text) is not None


class PIIBlock:
    """Deny content that looks like an account/card number, an email or a phone number, unless
    ``metadata.pii_acknowledged`` is the string ``"true"``."""

    name = "pii_block"

    def __init__(self, view: ContentView | None = None) -> None:
        self._view = view or ContentView()

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = False

    @property
    def plan_class(self) -> type[object]:
        return PIIBlock

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check

    def screen_part(self, message_type: str) -> ScreenPart:
        return ScreenPart(self._view, pii=True)

    def _check(self, msg: Message) -> Decision:
        if msg.metadata.get("pii_acknowledged") == "true":
            return ALLOW
        if has_pii(self._view.scan(msg)):
            return Decision.deny(self.name, "content matched PII pattern")
        return ALLOW


DEFAULT_INJECTION_PHRASES = (
    "ignore previous instructions",
    "ignore prior instructions",
    "disregard the system prompt",
    "reveal your system prompt",
    "act as the admin",
    "system: you are now",
    "begin override",
)


class PromptInjection:
    """Deny content containing a known injection phrase, whatever its case, spacing,
    punctuation or disguise (see ``_normalise``), in the payload or the metadata."""

    name = "prompt_injection"

    def __init__(self, extra_phrases: Iterable[str] = (), view: ContentView | None = None) -> None:
        self.phrases = tuple(p.lower() for p in (*DEFAULT_INJECTION_PHRASES, *extra_phrases))
        self._phrases = tuple(_Phrase.of(p) for p in self.phrases)
        # Each way of matching finds the phrase without its spaces in the text without spaces.
        self._any_compact = re.compile("|".join(re.escape(p.compact) for p in self._phrases))
        self._view = view or ContentView()

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        return self._check(msg)

    # The compiled plan (``PlannedPolicy``): the same decisions as ``evaluate``.
    plan_reads_envelope: ClassVar[bool] = False

    @property
    def plan_class(self) -> type[object]:
        return PromptInjection

    def plan_step(self, message_type: str) -> PlanStep | None:
        return self._check

    def screen_part(self, message_type: str) -> ScreenPart:
        return ScreenPart(self._view, phrases=tuple(p.compact for p in self._phrases))

    def _check(self, msg: Message) -> Decision:
        if self._any_compact.search(compact_words(self._view.scan(msg))) is None:
            return ALLOW  # no phrase, not even with its words run together
        text = self._view.words(msg)
        spread = _SpreadOut(text)
        compact = spread.compact
        for phrase in self._phrases:
            # Either way of matching finds the phrase without its spaces in the text without
            # its spaces: a phrase absent from it cannot match, whatever its spacing.
            if phrase.compact not in compact:
                continue
            if (phrase.words in text or spread.holds(phrase.compact)) and (
                phrase.marks is None or phrase.marks.search(self._view.scan(msg).translate(_LEET))
            ):
                return Decision.deny(self.name, "prompt-injection phrase detected")
        return ALLOW


_LEET = str.maketrans("0134578@$", "oieastbas")  # as the words view reads digits in words
_GAP = r"[\s_.\-]*"  # what the words view reads as a space, or nothing


@dataclass(frozen=True, slots=True)
class _Phrase:
    """A phrase as matched: its words, the same without spaces, and, when the phrase has
    punctuation ("system: you are now"), a pattern that finds it with that punctuation: the
    words view drops punctuation, and "the system you are now using" is not an injection."""

    words: str
    compact: str
    marks: re.Pattern[str] | None

    @classmethod
    def of(cls, phrase: str) -> _Phrase:
        folded = fold(phrase).translate(_LEET)
        spoken = words(folded)
        if not spoken:
            raise ConfigurationError(f"injection phrase {phrase!r} has no words to match")
        marks = None
        if any(not c.isalnum() and not c.isspace() for c in folded):
            marks = re.compile(_GAP.join(re.escape(c) for c in folded if not c.isspace()))
        return cls(spoken, spoken.replace(" ", ""), marks)


class _SpreadOut:
    """Finds a phrase written with its words split or run together ("i g n o r e previous
    instructions", "ignoreprevious") in the words view: the phrase without spaces, starting and
    ending where words start and end (so "in fact as the admin" is not "act as the admin")."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.compact = text.replace(" ", "")
        self.bounds: set[int] | None = None

    def holds(self, target: str) -> bool:
        at = self.compact.find(target)
        while at >= 0:
            if self.bounds is None:
                self.bounds = {0}
                end = 0
                for word in self.text.split(" "):
                    end += len(word)
                    self.bounds.add(end)
            if at in self.bounds and at + len(target) in self.bounds:
                return True
            at = self.compact.find(target, at + 1)
        return False
