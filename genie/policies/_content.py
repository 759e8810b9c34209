"""The text view of a message, computed once and shared by every content-scanning policy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._message import Message

__all__ = ["ContentView", "roles_of"]


class ContentView:
    """``text(msg)`` is the payload as JSON; ``data(msg)`` the same parsed.

    One entry, by identity: the policies of a composite evaluate the same message one after the
    other (and once per recipient), so the payload is serialised once, not once per policy.
    """

    __slots__ = ("_data", "_msg", "_text")

    def __init__(self) -> None:
        self._msg: Message | None = None
        self._text = ""
        self._data: Any = None

    def text(self, msg: Message) -> str:
        if msg is not self._msg:
            self._msg = msg
            self._text = msg.payload.model_dump_json()
            self._data = None
        return self._text

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
