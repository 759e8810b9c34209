"""The text views of a message, computed once and shared by every content-scanning policy."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import InvalidMessageError
from .._message.envelope import Message
from .._message.frozen import FrozenDict
from .._message.payload import unencodable
from ._decode import decoded
from ._normalise import (
    PayloadPieces,
    Shapes,
    fold,
    metadata_pieces,
    payload_pieces,
    raw_text,
    words,
)

__all__ = ["ContentView", "quote", "roles_of"]


class ContentView:
    """The views of one message that content policies read, each computed when first asked:

    - ``text(msg)``: the payload as JSON; ``data(msg)``: the same parsed;
    - ``scan(msg)``: the folded text of the payload and the metadata that the PII and injection
      policies match (see ``_normalise``), and ``words(msg)``: its words only;
    - ``size_at_most(msg)``: an upper bound of the JSON's length in UTF-8 bytes, if known;
    - ``contains(msg, needle, folded, in_strings_only)``: the DSL's ``content contains``;
    - ``raw_of(walked, metadata)``: the raw text a payload walked with the view's ``shapes``
      (``payload_pieces``) and its metadata make, read by the content screen (``_screen``).

    A message holding text UTF-8 cannot encode (a lone surrogate, which a ``str`` built in
    Python can hold) has no JSON and no scan: asking for them raises ``InvalidMessageError``
    naming the type and the field (``unreadable``), which the policy asking fails closed with.

    A payload whose fields are plain values (strings, numbers, lists, dicts, plain models) is
    read as it is, without its JSON: the scan text is the one its JSON gives (the walk and the
    JSON way are compared in tests/policies/test_content_view.py), and the JSON is made only
    for a policy that needs it (a payload near the size limit, a rule on ``content``). Any
    other payload goes through its JSON, as before.

    One entry, by identity: the policies of a composite evaluate the same message one after the
    other (and once per recipient), so each view is computed once, not once per policy. Messages
    are immutable, so a view never goes stale.

    A view may be shared by runtimes in several threads (a policy list given to each): what it
    remembers of a message is one object (``_Read``), taken once by each call and written only
    with views of that call's message, so a thread that reads another message meanwhile
    replaces the memory without mixing the two.
    """

    __slots__ = ("_meta", "_read", "shapes")

    def __init__(self) -> None:
        self._read = _Read(None, None)
        self._meta: tuple[object, list[str]] = (None, [])  # the last frozen metadata, its pieces
        self.shapes: Shapes = {}  # what the walk read of each payload class

    def _read_of(self, msg: Message) -> _Read:
        read = self._read
        if read.msg is not msg:
            read = self._read = _Read(msg, payload_pieces(msg.payload, self.shapes))
        return read

    def text(self, msg: Message) -> str:
        read = self._read_of(msg)
        if read.text is None:
            try:
                text = msg.payload.model_dump_json()
            except ValueError:  # pydantic's: a string it cannot encode, or a value with no JSON
                problem = unreadable(msg)
                if problem is None:
                    raise
                raise problem from None
            # A key it cannot encode, pydantic writes as U+FFFD instead: the policies would
            # judge another key than the one delivered. (ASCII text is not searched at all.)
            if "\ufffd" in text and (problem := unreadable(msg)) is not None:
                raise problem
            read.text = text
        return read.text

    def data(self, msg: Message) -> Any:
        read = self._read_of(msg)
        if read.data is None:
            read.data = json.loads(self.text(msg))
        return read.data

    def raw(self, msg: Message) -> str:
        """The text the scan is folded from (``pieces`` of the payload and the metadata, joined
        by `` | ``), as the message wrote it: what encodings are decoded from."""
        read = self._read_of(msg)
        if read.raw is None:
            walked = read.walked
            if walked is None:
                read.raw = raw_text(self.data(msg), msg.metadata)
            else:
                read.raw = self.raw_of(walked, msg.metadata)
        return read.raw

    def raw_of(self, walked: PayloadPieces, metadata: Mapping[str, object]) -> str:
        """The raw text of a message whose payload walked to ``walked`` (``payload_pieces``):
        its pieces and the metadata's (``pieces``), joined by `` | ``. It holds nothing of the
        message: the screen asks it for a message the view has not read."""
        kept, meta_pieces = self._meta
        if metadata is not kept:
            meta_pieces = metadata_pieces(metadata)
            # A FrozenDict cannot change, and replies and outputs share their parent's: its
            # pieces are kept for the next message; anything else is read every time.
            if type(metadata) is FrozenDict:
                self._meta = (metadata, meta_pieces)
        return " | ".join([walked.strings, walked.keys, *walked.extras, *meta_pieces])

    def scan(self, msg: Message) -> str:
        read = self._read_of(msg)
        if read.scan is None:
            raw = self.raw(msg)
            try:
                read.scan = fold(raw)
            except UnicodeEncodeError:  # a string of the metadata (the payload's fail its JSON)
                problem = unreadable(msg)
                if problem is None:
                    raise
                raise problem from None
        return read.scan

    def views(self, msg: Message) -> tuple[tuple[str, str], ...]:
        """What the detectors read, each (name, folded text): the scan as ``"text"``, then each
        encoding found in the raw text, decoded (``_decode``)."""
        read = self._read_of(msg)
        if read.views is None:
            scan = self.scan(msg)
            found = decoded(self.raw(msg))
            read.views = (("text", scan), *((name, fold(text)) for name, text in found))
        return read.views

    def words(self, msg: Message) -> str:
        read = self._read_of(msg)
        if read.words is None:
            read.words = words(self.scan(msg))
        return read.words

    def size_at_most(self, msg: Message) -> int | None:
        """At least ``len(self.text(msg).encode())``, known without the JSON, or None."""
        walked = self._read_of(msg).walked
        return None if walked is None else walked.size_at_most

    def contains(self, msg: Message, needle: str, folded: str, in_strings_only: bool) -> bool:
        """``needle in text(msg) or folded in scan(msg)``. ``in_strings_only``: the needle can
        only be found in JSON inside one string (it holds no JSON punctuation, and a character
        no number or literal has); then, for a payload whose JSON holds its strings as they are,
        the scan (which holds every string, folded) decides alone."""
        walked = self._read_of(msg).walked
        if walked is not None:  # nothing raises: the order of the two tests is free
            if folded in self.scan(msg):
                return True
            if in_strings_only and walked.strings_as_is:
                return False
        return needle in self.text(msg) or folded in self.scan(msg)


class _Read:
    """What a view has read of one message (``msg``); ``walked`` is None for a payload read
    through its JSON. Each other view is None until first asked."""

    __slots__ = ("data", "msg", "raw", "scan", "text", "views", "walked", "words")

    def __init__(self, msg: Message | None, walked: PayloadPieces | None) -> None:
        self.msg = msg
        self.walked = walked
        self.text: str | None = None
        self.data: Any = None
        self.raw: str | None = None
        self.scan: str | None = None
        self.views: tuple[tuple[str, str], ...] | None = None
        self.words: str | None = None


def unreadable(msg: Message) -> InvalidMessageError | None:
    """The error for a message no policy can read as text (``unencodable``: a lone surrogate),
    naming the type and the field; a key on the way is shown only as ``quote`` shows one, as a
    reason goes to the audit trail. None when there is none."""
    return unencodable(msg.type, msg.payload, msg.metadata, "no policy can read it", quote)


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
