"""Where a store's entries live: in this process (``InMemoryBackend``, the default), in a
SQLite file (``SqliteBackend``, its calls in a worker thread: they wait on the disk) or, for
the processes of a scale-out, in a NATS KV bucket (``genie.nats.NatsMemory``). Every row is
keyed by the memory's name, so that the memories of one file or bucket (a runtime's durable
store holds them all) never mix. Every entry keeps the classification it was written with,
and a session's summary the highest of the turns it summarises: a read gives them back."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio.to_thread

from .._agent.memory import Episode, Fact, Snapshot, highest
from .._base.clock import waiting_outside
from .._errors import ConfigurationError

__all__ = ["Backend", "InMemoryBackend", "Row", "SqliteBackend"]

T = TypeVar("T")
# key, text, meta, vector, classification
Row = tuple[str, str, Mapping[str, Any], list[float], str]


class Backend(Protocol):
    """The entries of the memories it holds (``memory`` names one in a shared file)."""

    async def aclose(self) -> None: ...

    async def kv_get(self, memory: str, namespace: str, key: str) -> tuple[str, str] | None:
        """The value's JSON and its classification."""
        ...

    async def kv_set(
        self, memory: str, namespace: str, key: str, value: str, level: str
    ) -> None: ...

    async def kv_delete(self, memory: str, namespace: str, key: str) -> bool: ...

    async def append(self, memory: str, session: str, episode: Episode, level: str) -> int:
        """Keep the turn; the number of turns the session now has past its summary."""
        ...

    async def session(self, memory: str, session: str) -> Snapshot: ...

    async def fold(self, memory: str, session: str, older: Sequence[Episode], summary: str) -> None:
        """Drop the session's oldest turns, ``older``, their ``summary`` added to its own
        (classified as the highest of its own and theirs), in one change, and only if they
        are still the oldest (``still_oldest``): another store on the same file, bucket or
        backend may have summarised them first, and then nothing changes."""
        ...

    async def add(self, memory: str, user: str, row: Row) -> None: ...

    async def rows(self, memory: str, user: str) -> list[Row]: ...

    async def record(self, memory: str, fact: Fact) -> None: ...

    async def history(self, memory: str, user: str, key: str | None) -> list[Fact]:
        """The user's facts for ``key`` (None: every key), oldest first."""
        ...


def joined(summary: str, more: str) -> str:
    """A summary with another part added, on a line of its own (as Go's episodic memory)."""
    return f"{summary}\n{more}" if summary else more


def still_oldest(turns: Sequence[Episode], older: Sequence[Episode]) -> bool:
    """Whether ``older``, the turns a summary was made of, are still the first of ``turns``, the
    session as it is now. Turns are compared by who spoke, what and its classification: equal
    turns are taken for the same, which they are to the summary (it holds what they hold)."""
    return len(turns) >= len(older) and all(a == b for a, b in zip(turns, older, strict=False))


def folded(summary: str, level: str, older: Sequence[Episode]) -> str:
    """The classification of a summary (``level`` the classification of ``summary`` before)
    once the turns ``older`` are summarised into it."""
    before = [level] if summary else []
    return highest([*before, *(e.classification for e in older)]) or level


# A session not yet written: no summary, no turns.
NO_SESSION = Snapshot("", (), "public")


class InMemoryBackend:
    """Entries in dicts of this process: gone when it ends. One per store, so two runtimes'
    memories never meet unless they are given the same store."""

    def __init__(self) -> None:
        self._kv: dict[tuple[str, str, str], tuple[str, str]] = {}
        # (memory, session) -> its summary, and its turns, with their classifications
        self._sessions: dict[tuple[str, str], Snapshot] = {}
        # (memory, user) -> key -> its text, meta as JSON, vector and classification: the meta
        # is kept as text, as a file keeps it, so neither the writer's dict nor a reader's hit
        # can change the entry after its write was judged.
        self._rows: dict[tuple[str, str], dict[str, tuple[str, str, list[float], str]]] = {}
        self._facts: dict[tuple[str, str], list[Fact]] = {}

    async def aclose(self) -> None:
        pass

    async def kv_get(self, memory: str, namespace: str, key: str) -> tuple[str, str] | None:
        return self._kv.get((memory, namespace, key))

    async def kv_set(self, memory: str, namespace: str, key: str, value: str, level: str) -> None:
        self._kv[memory, namespace, key] = (value, level)

    async def kv_delete(self, memory: str, namespace: str, key: str) -> bool:
        return self._kv.pop((memory, namespace, key), None) is not None

    async def append(self, memory: str, session: str, episode: Episode, level: str) -> int:
        kept = await self.session(memory, session)
        recent = (*kept.recent, Episode(episode.role, episode.text, level))
        self._sessions[memory, session] = Snapshot(kept.summary, recent, kept.classification)
        return len(recent)

    async def session(self, memory: str, session: str) -> Snapshot:
        return self._sessions.get((memory, session), NO_SESSION)

    async def fold(self, memory: str, session: str, older: Sequence[Episode], summary: str) -> None:
        kept = await self.session(memory, session)
        if not still_oldest(kept.recent, older):
            return  # another store given this backend summarised them first
        level = folded(kept.summary, kept.classification, older)
        rest = kept.recent[len(older) :]
        self._sessions[memory, session] = Snapshot(joined(kept.summary, summary), rest, level)

    async def add(self, memory: str, user: str, row: Row) -> None:
        key, text, meta, vector, level = row
        self._rows.setdefault((memory, user), {})[key] = (text, json.dumps(meta), vector, level)

    async def rows(self, memory: str, user: str) -> list[Row]:
        entries = self._rows.get((memory, user), {}).items()
        return [(key, text, json.loads(m), vector, c) for key, (text, m, vector, c) in entries]

    async def record(self, memory: str, fact: Fact) -> None:
        self._facts.setdefault((memory, fact.user), []).append(fact)

    async def history(self, memory: str, user: str, key: str | None) -> list[Fact]:
        facts = self._facts.get((memory, user), [])
        return [f for f in facts if key is None or f.key == key]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_kv (
    memory TEXT, namespace TEXT, key TEXT, value TEXT, classification TEXT,
    PRIMARY KEY (memory, namespace, key));
CREATE TABLE IF NOT EXISTS memory_sessions (
    memory TEXT, session TEXT, summary TEXT, classification TEXT, PRIMARY KEY (memory, session));
CREATE TABLE IF NOT EXISTS memory_episodes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, memory TEXT, session TEXT, role TEXT, text TEXT,
    classification TEXT);
CREATE INDEX IF NOT EXISTS memory_episodes_session ON memory_episodes (memory, session, seq);
CREATE TABLE IF NOT EXISTS memory_semantic (
    memory TEXT, user TEXT, key TEXT, text TEXT, meta TEXT, vector TEXT, classification TEXT,
    PRIMARY KEY (memory, user, key));
CREATE TABLE IF NOT EXISTS memory_facts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, memory TEXT, user TEXT, key TEXT, value TEXT,
    confidence REAL, source TEXT, recorded_at TEXT, classification TEXT);
CREATE INDEX IF NOT EXISTS memory_facts_user ON memory_facts (memory, user, key, seq);
"""


class SqliteBackend:
    """Entries in a SQLite file (WAL, so a runtime's durable store can share it), kept
    across restarts. One connection, opened at the first call, used by one worker thread at
    a time (a call waits on the disk, never on the event loop); each write is its own
    transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with waiting_outside():
            return await anyio.to_thread.run_sync(self._in_thread, work)

    def _in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._db is None:
                self._db = self._open()
            with self._db:  # a transaction: committed, or rolled back on an error
                return work(self._db)

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            _use_wal(db, patience=5.0)  # as long as the connection waits for a lock
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            # A file written before a summary kept its classification: its summaries are
            # read as internal, as an entry of unknown classification is. Another store may
            # be bringing the same file up to date: the column is looked for again under the
            # write lock, and added once.
            if not _has_classification(db):
                with db:
                    db.execute("BEGIN IMMEDIATE")
                    if not _has_classification(db):
                        db.execute("ALTER TABLE memory_sessions ADD COLUMN classification TEXT")
        except sqlite3.Error as exc:
            raise ConfigurationError(f"memory file {self.path}: cannot open: {exc}") from None
        return db

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def kv_get(self, memory: str, namespace: str, key: str) -> tuple[str, str] | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT value, classification FROM memory_kv "
                "WHERE memory=? AND namespace=? AND key=?",
                (memory, namespace, key),
            ).fetchone()
        )
        return None if row is None else (str(row[0]), str(row[1]))

    async def kv_set(self, memory: str, namespace: str, key: str, value: str, level: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO memory_kv VALUES (?, ?, ?, ?, ?)",
                (memory, namespace, key, value, level),
            )
        )

    async def kv_delete(self, memory: str, namespace: str, key: str) -> bool:
        cur = await self._run(
            lambda db: db.execute(
                "DELETE FROM memory_kv WHERE memory=? AND namespace=? AND key=?",
                (memory, namespace, key),
            )
        )
        return cur.rowcount > 0

    async def append(self, memory: str, session: str, episode: Episode, level: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute(
                "INSERT INTO memory_episodes (memory, session, role, text, classification) "
                "VALUES (?, ?, ?, ?, ?)",
                (memory, session, episode.role, episode.text, level),
            )
            (count,) = db.execute(
                "SELECT COUNT(*) FROM memory_episodes WHERE memory=? AND session=?",
                (memory, session),
            ).fetchone()
            return int(count)

        return await self._run(work)

    async def session(self, memory: str, session: str) -> Snapshot:
        def work(db: sqlite3.Connection) -> Snapshot:
            turns = db.execute(
                "SELECT role, text, classification FROM memory_episodes "
                "WHERE memory=? AND session=? ORDER BY seq",
                (memory, session),
            ).fetchall()
            summary, level = _summary(db, memory, session)
            return Snapshot(summary, tuple(Episode(*turn) for turn in turns), level)

        return await self._run(work)

    async def fold(self, memory: str, session: str, older: Sequence[Episode], summary: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            # Another store on this file may be folding the session too: the write lock is
            # taken before the turns are read, so none changes between the check and the drop.
            db.execute("BEGIN IMMEDIATE")
            oldest = db.execute(
                "SELECT seq, role, text, classification FROM memory_episodes "
                "WHERE memory=? AND session=? ORDER BY seq LIMIT ?",
                (memory, session, len(older)),
            ).fetchall()
            if not older or not still_oldest([Episode(*row[1:]) for row in oldest], older):
                return  # summarised first by another store: the turns are gone
            before, level = _summary(db, memory, session)
            db.execute(
                "INSERT OR REPLACE INTO memory_sessions VALUES (?, ?, ?, ?)",
                (memory, session, joined(before, summary), folded(before, level, older)),
            )
            db.execute(
                "DELETE FROM memory_episodes WHERE memory=? AND session=? AND seq <= ?",
                (memory, session, oldest[-1][0]),
            )

        await self._run(work)

    async def add(self, memory: str, user: str, row: Row) -> None:
        key, text, meta, vector, level = row
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO memory_semantic VALUES (?, ?, ?, ?, ?, ?, ?)",
                (memory, user, key, text, json.dumps(dict(meta)), json.dumps(vector), level),
            )
        )

    async def rows(self, memory: str, user: str) -> list[Row]:
        found = await self._run(
            lambda db: db.execute(
                "SELECT key, text, meta, vector, classification FROM memory_semantic "
                "WHERE memory=? AND user=?",
                (memory, user),
            ).fetchall()
        )
        return [(k, t, json.loads(m), json.loads(v), c) for k, t, m, v, c in found]

    async def record(self, memory: str, fact: Fact) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO memory_facts (memory, user, key, value, confidence, source, "
                "recorded_at, classification) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    memory,
                    fact.user,
                    fact.key,
                    fact.value,
                    fact.confidence,
                    fact.source,
                    fact.recorded_at.isoformat(),
                    fact.classification,
                ),
            )
        )

    async def history(self, memory: str, user: str, key: str | None) -> list[Fact]:
        query = (
            "SELECT user, key, value, confidence, source, recorded_at, classification "
            "FROM memory_facts WHERE memory=? AND user=?"
        )
        args: tuple[str, ...] = (memory, user)
        if key is not None:
            query, args = query + " AND key=?", (*args, key)
        found = await self._run(lambda db: db.execute(query + " ORDER BY seq", args).fetchall())
        return [
            Fact(u, k, v, c, s, datetime.fromisoformat(at), level)
            for u, k, v, c, s, at, level in found
        ]


def _has_classification(db: sqlite3.Connection) -> bool:
    """Whether the file's sessions keep their summary's classification (files made before
    they did have no such column)."""
    columns = {str(c[1]) for c in db.execute("PRAGMA table_info(memory_sessions)")}
    return "classification" in columns


def _use_wal(db: sqlite3.Connection, patience: float) -> None:
    """Put ``db``'s file in WAL mode. SQLite waits out another connection's lock (the
    connection's ``timeout``) for reads and writes, but not for this: while another store is
    making the same new file (runtimes that share a memory file, started at once), the change
    fails at once with "database is locked". So it is tried again, as a busy connection is
    waited for, for up to ``patience`` seconds; then SQLite's error is raised as it is."""
    deadline = time.monotonic() + patience
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        else:
            return
        time.sleep(pause)  # in the worker thread that opens the file, as every call runs
        pause = min(pause * 2, 0.05)


def _summary(db: sqlite3.Connection, memory: str, session: str) -> tuple[str, str]:
    """The session's summary and its classification."""
    row = db.execute(
        "SELECT summary, classification FROM memory_sessions WHERE memory=? AND session=?",
        (memory, session),
    ).fetchone()
    if row is None:
        return NO_SESSION.summary, NO_SESSION.classification
    return row[0], row[1] or "internal"
