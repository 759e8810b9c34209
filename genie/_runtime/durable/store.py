"""The durable store: one SQLite file holding what a crash must not lose.

Two tables. ``deliveries``: each admitted delivery that has not ended, by its delivery id, as
the JSON a transport between processes sends (``Delivery.encode``); a delivery's row goes when
it ends (handled, or a dead letter), in the same transaction as the rows of the deliveries its
handler's outputs made. ``requests``: each request published from outside that has not settled,
so that a process started again knows whose output to wait for.

The file is opened in WAL mode with ``synchronous=FULL``: a committed batch survives the
process being killed and the machine losing power. Every write is one transaction, made in a
worker thread so the event loop never waits on the disk; the transport batches what one turn
of the loop produced into one write.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

from ..._errors import ConfigurationError

__all__ = ["Batch", "DeliveryStore", "Stored"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    correlation_id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
PRAGMA user_version = 1;
"""

Stored = tuple[str, str, str]
"""A row: the delivery id (or, for a request, its correlation id), the correlation id, the JSON."""


class Batch:
    """What one write makes durable: rows to add and the ids of rows to remove, in order."""

    __slots__ = ("ended", "puts", "requests", "settled")

    def __init__(self) -> None:
        self.puts: list[Stored] = []
        self.ended: list[str] = []
        self.requests: list[Stored] = []
        self.settled: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.puts or self.ended or self.requests or self.settled)


class DeliveryStore:
    """The deliveries and requests of one runtime in the SQLite file at ``path`` (made if
    missing). Opened once: a second runtime, in this process or another, on the same file is
    refused while the first holds it, so two runtimes never resume each other's work."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.1
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # Held until closed: another process opening the file cannot take it.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("BEGIN EXCLUSIVE")
            self._db.executescript(SCHEMA)  # commits, and keeps the exclusive lock
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot use {self.path} as a store: {exc}") from exc
        self._lock = threading.Lock()  # one write at a time: the writer and a final flush

    def pending(self) -> list[Stored]:
        """The deliveries that had not ended, in the order they were written."""
        rows = self._db.execute("SELECT id, correlation_id, body FROM deliveries ORDER BY rowid")
        return [(str(i), str(c), str(b)) for i, c, b in rows]

    def requests(self) -> list[Stored]:
        """The requests published from outside that had not settled."""
        rows = self._db.execute("SELECT correlation_id, body FROM requests ORDER BY rowid")
        return [(str(c), str(c), str(b)) for c, b in rows]

    def write(self, batch: Batch) -> None:
        """Make ``batch`` durable in one transaction (called in a worker thread)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if batch.puts:
                    db.executemany(
                        "INSERT OR REPLACE INTO deliveries (id, correlation_id, body) "
                        "VALUES (?, ?, ?)",
                        batch.puts,
                    )
                if batch.requests:
                    db.executemany(
                        "INSERT OR REPLACE INTO requests (correlation_id, body) VALUES (?, ?)",
                        [(cid, body) for _, cid, body in batch.requests],
                    )
                _delete(db, "deliveries", "id", batch.ended)
                _delete(db, "requests", "correlation_id", batch.settled)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _delete(db: sqlite3.Connection, table: str, key: str, ids: Iterable[str]) -> None:
    db.executemany(f"DELETE FROM {table} WHERE {key} = ?", ((i,) for i in ids))
