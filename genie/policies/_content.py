"""The text views of a message, computed once and shared by every content-scanning policy."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._message import Message
from ._normalise import scan_text, words

__all__ = ["ContentView", "quote", "roles_of"]


class ContentView:
    """``text(msg)`` is the payload as JSON; ``data(msg)`` the same parsed; ``scan(msg)`` the
    folded text of the payload and the metadata that the PII and injection policies match
    (see ``_normalise``), and ``words(msg)`` its words only.

    One entry, by identity: the policies of a composite evaluate the same message one after the
    other (and once per recipient), so each view is computed once, not once per policy. Messages
    are immutable, so a view never goes stale.
    """

    __slots__ = ("_data", "_msg", "_scan", "_text", "_words")

    def __init__(self) -> None:
        self._msg: Message | None = None
        self._text = ""
        self._data: Any = None
        self._scan: str | None = None
        self._words: str | None = None

    def text(self, msg: Message) -> str:
        if msg is not self._msg:
            self._msg = msg
            self._text = msg.payload.model_dump_json()
            self._data = self._scan = self._words = None
        return self._text

    def scan(self, msg: Message) -> str:
        data = self.data(msg)
        if self._scan is None:
            self._scan = scan_text(data, msg.metadata)
        return self._scan

    def words(self, msg: Message) -> str:
        scan = self.scan(msg)
        if self._words is None:
            self._words = words(scan)
        return self._words

    def data(self, msg: Message) -> Any:
        text = self.text(msg)
        if self._data is None:
            self._data = json.loads(text)
        return self._data


def roles_of(metadata: Mapping[str, object]) -> list[str]:
    """``user_roles`` as a list: a comma-separated string or a sequence of strings (as Go)."""
    raw = metadata.get("user_roles")
    if isinstance(raw, str):
        return [r.strip() for r in raw.split(",") if r.strip()]
    if isinstance(raw, Sequence):
        return [str(r) for r in raw]
    return []


_SHOWABLE = re.compile(r"[A-Za-z0-9._:-]{1,32}")
_DIGIT = re.compile(r"[0-9]")


def quote(value: object) -> str:
    """A value from a message as a deny reason may show it: a short code or name ("us",
    "acme", "eu-west-1") as itself, anything else as ``(not shown)``. Reasons go to the event
    stream, the logs and the audit trail, so they never carry what a message could smuggle
    into them: free text, or enough digits for a phone or card number (ten)."""
    text = str(value)
    if _SHOWABLE.fullmatch(text) and len(_DIGIT.findall(text)) < 10:
        return text
    return "(not shown)"
