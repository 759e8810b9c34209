"""The memories of a namespace in a JetStream KV bucket, shared by every process of a
scale-out (``NatsTransport.memory``; docs/memory.md, "Across processes").

Each entry is a KV value of JSON: a key-value entry, a session (its summary and its turns),
a semantic entry, a user's facts for one key (their history, oldest first). Keys are the
area and each name base64url-encoded, so any text names one entry. A change to
a session or a fact history is a compare-and-set on the entry's revision, made again when
another process changed it first, so two processes appending at once lose no turn. A
session's older turns are dropped by a fold only if they are still its oldest: two processes
summarising one session at once fold it once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .._agent.memory import Episode, Fact, Snapshot
from ..memory._backends import NO_SESSION, Row, folded, joined
from ._wire import Bucket

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ["NatsMemory"]

T = TypeVar("T")


def _token(part: str) -> str:
    """A KV key token for any text (keys allow few characters, and no empty token)."""
    return "_" + base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")


def _key(area: str, *parts: str) -> str:
    return ".".join((area, *map(_token, parts)))


class NatsMemory:
    """A memory backend (``genie.memory.Store(transport.memory)``) in the KV bucket
    ``bucket``, made by ``NatsTransport`` and bound when it connects."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._store = Bucket(bucket, what="memory bucket")

    async def bind(self, js: JetStreamContext) -> None:
        """Create the bucket if it is not there (idempotent); kept on disk by the broker."""
        await self._store.make(js)

    def _bucket(self) -> KeyValue:
        return self._store.kv

    async def aclose(self) -> None:
        pass  # the transport's connection is the transport's to close

    async def _get(self, key: str) -> tuple[Any, int | None]:
        """The entry's value and revision; (None, None) when there is none."""
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await self._bucket().get(key)
        except KeyNotFoundError:
            return None, None
        return (None, None) if entry.value is None else (json.loads(entry.value), entry.revision)

    async def _change(self, key: str, change: Callable[[Any], T]) -> T:
        """Write ``change(current)`` if nobody wrote the entry since it was read; else again."""
        from nats.js.errors import KeyWrongLastSequenceError

        while True:
            current, revision = await self._get(key)
            new = change(current)
            data = json.dumps(new).encode()
            try:
                if revision is None:
                    await self._bucket().create(key, data)
                else:
                    await self._bucket().update(key, data, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another process changed it first: read it again
            return new

    async def _under(self, prefix: str) -> list[Any]:
        """The values of every entry whose key begins with ``prefix``, read by one consumer
        (not a request per key)."""
        return [json.loads(v) for _, v in await self._store.entries(f"{prefix}.>")]

    # --- key-value -----------------------------------------------------------------------
    async def kv_get(self, memory: str, namespace: str, key: str) -> tuple[str, str] | None:
        found, _ = await self._get(_key("kv", memory, namespace, key))
        return None if found is None else (str(found[0]), str(found[1]))

    async def kv_set(self, memory: str, namespace: str, key: str, value: str, level: str) -> None:
        await self._bucket().put(
            _key("kv", memory, namespace, key), json.dumps([value, level]).encode()
        )

    async def kv_delete(self, memory: str, namespace: str, key: str) -> bool:
        from nats.js.errors import KeyWrongLastSequenceError

        entry = _key("kv", memory, namespace, key)
        while True:
            found, revision = await self._get(entry)
            if found is None:
                return False
            try:
                await self._bucket().delete(entry, last=revision)
            except KeyWrongLastSequenceError:
                continue  # written again since it was read
            return True

    # --- episodic ------------------------------------------------------------------------
    async def append(self, memory: str, session: str, episode: Episode, level: str) -> int:
        def add(current: Any) -> dict[str, Any]:
            kept = current or {"summary": "", "turns": []}
            kept["turns"].append([episode.role, episode.text, level])
            return kept

        kept = await self._change(_key("session", memory, session), add)
        return len(kept["turns"])

    async def session(self, memory: str, session: str) -> Snapshot:
        kept, _ = await self._get(_key("session", memory, session))
        if kept is None:
            return NO_SESSION
        turns = tuple(Episode(*turn) for turn in kept["turns"])
        # A summary kept before its classification was: read as internal.
        return Snapshot(kept["summary"], turns, kept.get("classification", "internal"))

    async def fold(self, memory: str, session: str, older: Sequence[Episode], summary: str) -> None:
        wanted = [[e.role, e.text] for e in older]

        def drop(current: Any) -> Any:
            if current is None or [t[:2] for t in current["turns"][: len(wanted)]] != wanted:
                return current  # another process summarised these turns first
            before = current["summary"]
            return {
                "summary": joined(before, summary),
                "classification": folded(before, current.get("classification", "internal"), older),
                "turns": current["turns"][len(wanted) :],
            }

        await self._change(_key("session", memory, session), drop)

    # --- semantic ------------------------------------------------------------------------
    async def add(self, memory: str, user: str, row: Row) -> None:
        key, text, meta, vector, level = row
        value = json.dumps([key, text, dict(meta), vector, level])
        await self._bucket().put(_key("semantic", memory, user, key), value.encode())

    async def rows(self, memory: str, user: str) -> list[Row]:
        found = await self._under(_key("semantic", memory, user))
        return [(key, text, meta, vector, level) for key, text, meta, vector, level in found]

    # --- long-term facts -----------------------------------------------------------------
    async def record(self, memory: str, fact: Fact) -> None:
        kept = [
            fact.value,
            fact.confidence,
            fact.source,
            fact.recorded_at.isoformat(),
            fact.classification,
        ]

        def add(current: Any) -> dict[str, Any]:
            return {"key": fact.key, "facts": [*(current or {"facts": []})["facts"], kept]}

        await self._change(_key("fact", memory, fact.user, fact.key), add)

    async def history(self, memory: str, user: str, key: str | None) -> list[Fact]:
        if key is not None:
            found, _ = await self._get(_key("fact", memory, user, key))
            histories = [] if found is None else [found]
        else:
            histories = await self._under(_key("fact", memory, user))
        facts = [
            Fact(user, kept["key"], v, c, s, datetime.fromisoformat(at), level)
            for kept in histories
            for v, c, s, at, level in kept["facts"]
        ]
        facts.sort(key=lambda f: f.recorded_at)  # stable: a key's own order is kept
        return facts
