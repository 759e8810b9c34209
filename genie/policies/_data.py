"""What data may go where: classification ceilings, residency, PII, prompt injection."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .._message import Classification, Message
from .._supervisor import Decision
from ._content import ContentView

__all__ = ["ClassificationCeiling", "DataResidency", "PIIBlock", "PromptInjection"]

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
        self.allowed_to = {k: Classification(v) for k, v in (allowed_to or {}).items()}
        self.default_ceiling = Classification(default_ceiling)

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        ceiling = self.allowed_to.get(recipient, self.default_ceiling)
        if msg.classification.rank > ceiling.rank:
            return Decision.deny(self.name, "classification exceeds recipient ceiling")
        return ALLOW


class DataResidency:
    """Data leaves ``home_region`` (``metadata.region`` names the target) only when public,
    and public data only when ``allow_cross_border_for_public``. ``on-prem`` stays home."""

    name = "data_residency"

    def __init__(self, home_region: str = "in", allow_cross_border_for_public: bool = True) -> None:
        self.home_region = home_region
        self.allow_cross_border_for_public = allow_cross_border_for_public

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        region = msg.metadata.get("region")
        if not region or region == self.home_region or region == "on-prem":
            return ALLOW
        cls = msg.classification
        if cls in (Classification.PII, Classification.SECRET):
            return Decision.deny(
                self.name,
                f'classification "{cls.value}" cannot leave region "{self.home_region}" '
                f'(target="{region}")',
            )
        if cls is Classification.INTERNAL:
            return Decision.deny(self.name, "internal data cannot leave home region")
        if not self.allow_cross_border_for_public:
            return Decision.deny(self.name, "public-data cross-border disabled")
        return ALLOW


# The Go patterns (RE2: \d is ASCII, so [0-9] here). Both digit patterns need ten digits in a
# row and the email one an "@", so those cheap checks come first: on 64 KiB of text a
# backtracking search for the email pattern costs about 4.5 ms and one for ten digits about 1 ms,
# retrying at every position, while the checks below cost about 0.1 ms.
_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")
_DIGIT_PATTERNS = (re.compile(r"[0-9]{12,}"), re.compile(r"\+?[0-9]{10,12}"))
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def _has_pii(text: str) -> bool:
    if "0000000000" in text.translate(_DIGITS_TO_ZERO) and any(
        p.search(text) for p in _DIGIT_PATTERNS
    ):
        return True
    return "@" in text and _EMAIL.search(text) is not None


class PIIBlock:
    """Deny content that looks like an account/card number, an email or a phone number, unless
    ``metadata.pii_acknowledged`` is the string ``"true"``."""

    name = "pii_block"

    def __init__(self, view: ContentView | None = None) -> None:
        self._view = view or ContentView()

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        if msg.metadata.get("pii_acknowledged") == "true":
            return ALLOW
        if _has_pii(self._view.text(msg)):
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
    """Deny content containing a known injection phrase (case-insensitive)."""

    name = "prompt_injection"

    def __init__(self, extra_phrases: Iterable[str] = (), view: ContentView | None = None) -> None:
        self.phrases = tuple(p.lower() for p in (*DEFAULT_INJECTION_PHRASES, *extra_phrases))
        self._view = view or ContentView()

    def evaluate(self, msg: Message, recipient: str) -> Decision:
        text = self._view.text(msg).lower()
        if any(p in text for p in self.phrases):
            return Decision.deny(self.name, "prompt-injection phrase detected")
        return ALLOW
