"""Model text as it streams: what a handler's ``ctx.llm(...).stream(...)`` sends, relayed to the
readers of its correlation (the HTTP client of ``genie serve`` that asked), governed on its way out.

The text leaves the process before the handler's answer does, so it passes the runtime's
policies as the answer would: each release is judged as a ``model_text`` message from the
handling agent to the reader, holding *all* the text of that model call so far, and a denial
stops that call's text for that reader for good (the reader is told which policy and why; the
audit log records it). Text is released in steps, always keeping back the last ``hold_back``
characters the model has sent until more arrives or the call ends, so anything shorter than
``hold_back`` that a policy denies is judged whole before any part of it is released.
``hold_back=None`` releases a call's text only once the call has ended, judged whole.

Nothing is relayed, and nothing costs, while no reader listens to the correlation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Literal

from .._base.record import Record
from .._errors import InvalidArgumentError
from .._message.envelope import Message
from .._message.payload import Payload
from .observe.observer import Observer
from .observe.reading import Reading
from .policy import Decision

__all__ = ["ModelText", "ModelTextHub", "ModelTextStream", "TextCall", "TextChunk"]

Judge = Callable[["TextCall", str, str], Decision]
"""Whether a reader may see a call's text so far (the runtime's policies)."""


class ModelText(Payload):
    """What the policies judge before model text is released: the text of one streamed model
    call so far, from the agent whose handler made it to the reader."""

    message_type = "model_text"
    text: str


class TextChunk(Record):
    """One step of a model call's text, as a reader receives it.

    ``kind`` is ``text`` (``text`` is the next piece, released), ``denied`` (``policy`` refused
    the call's text to this reader for ``reason``; nothing more of the call follows) or ``end``
    (the call ended: ``finish`` is the model's finish reason, or ``error`` the type of the error
    that ended it, ``policy`` the limit when the kill switch refused it; text held back from a
    failed call is never released). ``call`` numbers the correlation's streamed calls from 1,
    so the pieces of calls made at once can be told apart; ``message_id`` is the message whose
    handler made the call.
    """

    kind: Literal["text", "denied", "end"]
    agent_id: str
    message_id: str
    call: int
    text: str = ""
    policy: str | None = None
    reason: str | None = None
    finish: str | None = None
    error: str | None = None


class TextCall:
    """One streamed model call of a handler: the text it sent so far, and how it ended."""

    __slots__ = (
        "agent_id",
        "ended",
        "error",
        "finish",
        "length",
        "limit",
        "message",
        "number",
        "parts",
        "readers",
    )

    def __init__(
        self, agent_id: str, message: Message, number: int, readers: list[ModelTextStream]
    ) -> None:
        self.agent_id = agent_id
        self.message = message
        self.number = number
        self.readers = readers
        self.parts: list[str] = []
        self.length = 0
        self.ended = False
        self.finish: str | None = None
        self.error: str | None = None
        self.limit: str | None = None

    def add(self, text: str) -> None:
        """The model sent ``text``."""
        if text and not self.ended:
            self.parts.append(text)
            self.length += len(text)
            self._tell()

    def end(self, finish: str | None, error: BaseException | None = None) -> None:
        """The call ended, with the model's ``finish`` reason or with ``error``."""
        if self.ended:
            return
        self.ended = True
        self.finish = finish
        if error is not None:
            self.error = type(error).__name__
            limit = getattr(error, "limit", None)  # the kill switch's BudgetExceededError
            self.limit = f"limit:{limit}" if isinstance(limit, str) else None
        self._tell()

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def _tell(self) -> None:
        for reader in self.readers:
            reader._changed(self)


class ModelTextStream(Reading):
    """An async iterator of ``TextChunk``: the model text of one correlation that one reader may
    see; see ``Runtime.model_text``. It ends when nothing of the correlation is in flight."""

    def __init__(
        self,
        hub: ModelTextHub,
        correlation_id: str,
        reader: str,
        hold_back: int | None,
        judge: Judge,
    ) -> None:
        if hold_back is not None and hold_back < 0:
            raise InvalidArgumentError(
                f"hold_back must be 0 or more characters, or None, not {hold_back}"
            )
        super().__init__(hub)
        self.correlation_id = correlation_id
        self.reader = reader
        self.hold_back = hold_back
        self._judge = judge
        self._released: dict[TextCall, int] = {}  # -1 once the call is over for this reader
        self._dirty: dict[TextCall, None] = {}  # calls with news, in the order they had it
        self._out: deque[TextChunk] = deque()

    def _changed(self, call: TextCall) -> None:
        self._dirty[call] = None
        self._wake()

    async def __anext__(self) -> TextChunk:
        while not self._out:
            if self._dirty:
                calls = list(self._dirty)
                self._dirty.clear()
                for call in calls:
                    self._review(call)
                continue
            if self._ended:
                raise StopAsyncIteration
            await self._wait()
        return self._out.popleft()

    def _review(self, call: TextCall) -> None:
        """What ``call``'s news releases to this reader, judged (in the reader's task)."""
        released = self._released.get(call, 0)
        if released < 0:
            return
        if call.ended and call.error is not None:
            self._released[call] = -1
            self._out.append(self._chunk("end", call, policy=call.limit, error=call.error))
            return
        if call.ended:
            upto = call.length
        elif self.hold_back is None:
            return
        else:
            upto = call.length - self.hold_back
            if upto - released < max(self.hold_back, 1):
                return  # released in steps of at least hold_back characters
        text = call.text()
        decision = self._judge(call, text, self.reader)
        if not decision.allowed:
            self._released[call] = -1
            self._out.append(
                self._chunk("denied", call, policy=decision.policy, reason=decision.reason)
            )
            return
        if upto > released:
            self._out.append(self._chunk("text", call, text=text[released:upto]))
        self._released[call] = upto
        if call.ended:
            self._released[call] = -1
            self._out.append(self._chunk("end", call, finish=call.finish))

    def _chunk(
        self,
        kind: Literal["text", "denied", "end"],
        call: TextCall,
        *,
        text: str = "",
        policy: str | None = None,
        reason: str | None = None,
        finish: str | None = None,
        error: str | None = None,
    ) -> TextChunk:
        return TextChunk(
            kind,
            call.agent_id,
            call.message.id,
            call.number,
            text,
            policy,
            reason,
            finish,
            error,
        )


class ModelTextHub(Observer):
    """One runtime's readers of model text, by correlation; an observer (to end their streams
    when a correlation settles) only while one is open."""

    never_raises = True

    def __init__(
        self,
        judge: Judge,
        attach: Callable[[Observer], None],
        detach: Callable[[Observer], None],
    ) -> None:
        self._judge = judge
        self._attach = attach
        self._detach = detach
        self._readers: dict[str, list[ModelTextStream]] = {}
        self._calls: dict[str, int] = {}  # streamed calls so far, by correlation
        self._attached = False

    def open(self, correlation_id: str, reader: str, hold_back: int | None) -> ModelTextStream:
        stream = ModelTextStream(self, correlation_id, reader, hold_back, self._judge)
        if not self._attached:
            self._attach(self)
            self._attached = True
        self._readers.setdefault(correlation_id, []).append(stream)
        return stream

    def detach(self, stream: ModelTextStream) -> None:
        readers = self._readers.get(stream.correlation_id, [])
        if stream in readers:
            readers.remove(stream)
        if not readers:
            self._readers.pop(stream.correlation_id, None)
            self._calls.pop(stream.correlation_id, None)
        if self._attached and not self._readers:
            self._detach(self)
            self._attached = False

    def call(self, agent_id: str, message: Message) -> TextCall | None:
        """A model call that ``agent_id``'s handler of ``message`` starts streaming: relayed
        to the correlation's readers, or None when nobody reads it."""
        cid = message.correlation_id
        readers = self._readers.get(cid)
        if not readers:
            return None
        number = self._calls[cid] = self._calls.get(cid, 0) + 1
        return TextCall(agent_id, message, number, list(readers))

    def settled(self, correlation_id: str) -> None:
        for stream in self._readers.pop(correlation_id, ()):
            stream._end()
        self._calls.pop(correlation_id, None)
        if self._attached and not self._readers:
            self._detach(self)
            self._attached = False

    def closed(self) -> None:
        for readers in self._readers.values():
            for stream in readers:
                stream._end()
        self._readers.clear()
        self._calls.clear()
        if self._attached:
            self._detach(self)
            self._attached = False
