"""The runtime's side of ``ctx.memory``: its memories, and every write and read governed.

A write is judged before it is stored, as a ``memory_write`` message of the request the
handler works for (so it carries the request's metadata and classification) from the agent
to ``memory:NAME``: the content detectors read what would be kept, a ceiling decides whether
data of that classification may rest there. A denial raises ``MemoryDeniedError`` and is
audited like any other; an allowed write is audited too (``memory_write``), and the entry
keeps the classification it was judged with. A read is shown to the policies as a
``memory_read`` message from ``memory:NAME`` to the agent, classified as the highest of the
entries it found were written with (the request's when it found none), and audited
(``memory_read``). So are the turns a summary is made of, read to be sent to the model
(kind ``summary``): the model call then carries their classification, not the request's.
Neither is a delivery: the delivery counts and budgets leave them out, as they leave out
model text.

Without ``Runtime(memory=...)`` a handler's ``ctx.memory()`` is an in-memory store of this
runtime's own, made at the first call (two runtimes never share one).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from .._agent.memory import Memory, MemoryStore, memory_of
from .._base.clock import Clock
from .._errors import MemoryDeniedError
from .._message.envelope import Message
from .._message.payload import Classification, Payload
from .admission import Admission
from .ledger import Ledger

if TYPE_CHECKING:
    from ..llm._provider import Provider

__all__ = ["MemoryCalls", "MemoryRead", "MemoryWrite"]

DEFAULT = "default"


class MemoryWrite(Payload):
    """What the policies judge before an entry is kept: ``kind`` (``kv``, ``kv_delete``,
    ``episode``, ``summary``, ``semantic``, ``fact``), its ``key`` and the ``text`` to be
    stored."""

    message_type = "memory_write"
    memory: str
    kind: str
    key: str
    text: str


class MemoryRead(Payload):
    """What the policies judge before the agent sees what a read found."""

    message_type = "memory_read"
    memory: str
    kind: str
    key: str
    text: str


def consumer_of(memory: str) -> str:
    """The recipient a write to ``memory`` is judged for (``to == "memory:notes"``)."""
    return f"memory:{memory}"


class MemoryCalls:
    """One runtime's memories and the governance of their writes and reads."""

    def __init__(
        self,
        stores: Mapping[str, MemoryStore],
        admission: Admission,
        ledger: Ledger,
        clock: Clock,
        llm: Callable[[Provider, str, Message], Provider],
        durable_path: str | None,
    ) -> None:
        self.stores = dict(stores)
        self._admission = admission
        self._ledger = ledger
        self._clock = clock
        self._llm = llm
        self._durable = durable_path
        self._numbers = itertools.count(1)
        for name, store in self.stores.items():
            store.bind(name, durable_path)

    def memory(self, name: str, agent_id: str, message: Message) -> Memory:
        if not self.stores and name == DEFAULT:
            from ..memory._store import Store  # the first handler that remembers loads it

            store = self.stores[DEFAULT] = Store()
            store.bind(DEFAULT, self._durable)
        name, found = memory_of(self.stores, name, "this runtime")
        return Memory(name, found, _RuntimeGate(self, name, agent_id, message))

    async def aclose(self) -> None:
        for store in self.stores.values():
            await store.aclose()

    def message(
        self,
        about: Message,
        payload: Payload,
        sender: str,
        recipient: str,
        classification: Classification | None = None,
    ) -> Message:
        """A child of ``about`` (its metadata, and its classification unless another is
        given)."""
        return about.child(
            payload,
            sender=sender,
            id=f"{about.id}/memory/{next(self._numbers)}",
            created_at=self._clock.timestamp(),
            recipient=recipient,
            classification=classification,
        )

    def judge(self, msg: Message, reader: str, memory: str, direction: str) -> None:
        """Raises ``MemoryDeniedError`` (audited) when a policy refuses ``msg`` to ``reader``;
        an allowed write or read is audited as such."""
        if self._admission.policies:
            decision = self._admission.judge(msg, reader)
            if not decision.allowed:
                self._ledger.refused(msg, reader, decision)
                raise MemoryDeniedError(
                    memory,
                    decision.policy,
                    decision.reason,
                    direction,
                    message_id=msg.id,
                    agent_id=msg.sender if direction == "out" else reader,
                    correlation_id=msg.correlation_id,
                )
        payload = msg.payload
        assert isinstance(payload, MemoryWrite | MemoryRead)
        actor = msg.sender if direction == "out" else reader
        what = f"{payload.kind} {payload.key}"
        self._ledger.record_own(actor, msg.type, consumer_of(memory), msg, what)


class _RuntimeGate:
    """A handler's memory gate: its writes and reads as messages of the request it works
    for, its summaries through its own ``ctx.llm``."""

    __slots__ = ("_agent_id", "_calls", "_memory", "_message")

    def __init__(self, calls: MemoryCalls, memory: str, agent_id: str, message: Message) -> None:
        self._calls = calls
        self._memory = memory
        self._agent_id = agent_id
        self._message = message

    def write(self, kind: str, key: str, text: str, classification: str | None = None) -> str:
        calls, memory = self._calls, self._memory
        consumer = consumer_of(memory)
        payload = MemoryWrite(memory=memory, kind=kind, key=key, text=text)
        level = None if classification is None else Classification(classification)
        msg = calls.message(self._message, payload, self._agent_id, consumer, level)
        calls.judge(msg, consumer, memory, "out")
        return msg.classification.value

    def read(self, kind: str, key: str, text: str, classification: str | None) -> None:
        calls, memory = self._calls, self._memory
        payload = MemoryRead(memory=memory, kind=kind, key=key, text=text)
        # What is read is classified as it was written, whatever the request reading it.
        level = None if classification is None else Classification(classification)
        msg = calls.message(self._message, payload, consumer_of(memory), self._agent_id, level)
        calls.judge(msg, self._agent_id, memory, "in")

    def now(self) -> datetime:
        return self._calls._clock.now()

    def llm(self, provider: Provider, classification: str) -> Provider:
        # The call's context is the request's, but for its classification: what is sent is
        # the data read, classified as it was written.
        level = Classification(classification)
        message = self._message.model_copy(update={"classification": level})
        return self._calls._llm(provider, self._agent_id, message)
