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

import fcntl
import sqlite3
import threading
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

from ..._errors import ConfigurationError

__all__ = ["Batch", "DeliveryStore", "StoreClient", "Stored"]

MAX_COUNT = 2**63 - 1  # SQLite's largest integer
DESK = "approvals"  # the approval desk's agent id: its kept deliveries are pending approvals

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    correlation_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    charged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT NOT NULL,
    what TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    total INTEGER NOT NULL,
    PRIMARY KEY (key, what)
);
CREATE INDEX IF NOT EXISTS counters_by_correlation ON counters (correlation_id, what);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id TEXT NOT NULL,
    approved INTEGER NOT NULL,
    answerer TEXT NOT NULL,
    roles TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT
);
"""

Stored = tuple[str, str, str]
"""A row: the delivery id (or, for a request, its correlation id), the correlation id, the JSON."""


class Batch:
    """What one write makes durable: rows to add and the ids of rows to remove, in order."""

    __slots__ = ("charged", "ended", "puts", "requests", "settled")

    def __init__(self) -> None:
        self.puts: list[Stored] = []
        self.ended: list[str] = []
        self.requests: list[Stored] = []
        self.settled: list[str] = []
        self.charged: dict[str, int] = {}  # correlation -> deliveries charged to its budget

    def __bool__(self) -> bool:
        return bool(self.puts or self.ended or self.requests or self.settled)

    @property
    def waited_for(self) -> bool:
        """Whether deliveries wait for this write before they are queued."""
        return bool(self.puts or self.requests)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"cannot use {path} as a store: {exc}") from exc
    return db


class DeliveryStore:
    """The deliveries and requests of one runtime in the SQLite file at ``path`` (made if
    missing). Held by one runtime at a time (a lock on ``PATH.lock``): a second runtime, in
    this process or another, is refused while the first holds it, so two runtimes never
    resume each other's work. Other processes may still read it and leave answers to
    approvals in it (``StoreClient``)."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._lockfile = open(f"{self.path}.lock", "a")  # noqa: SIM115 - held until close
        except OSError as exc:
            raise ConfigurationError(f"cannot use {self.path} as a store: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise ConfigurationError(
                f"cannot use {self.path} as a store: another runtime holds it"
            ) from None
        try:
            self._db = _connect(self.path)
        except ConfigurationError:
            self._lockfile.close()
            raise
        self._lock = threading.Lock()  # one write at a time: the writer and a final flush
        # An answer a stopped process took before its desk's decision was written (the
        # approval still kept): this process takes it again.
        self._db.execute(
            "UPDATE answers SET outcome = NULL WHERE outcome IN ('approved', 'rejected') "
            "AND approval_id || ? IN (SELECT id FROM deliveries)",
            (f":{DESK}",),
        )

    def pending(self) -> list[Stored]:
        """The deliveries that had not ended, in the order they were written."""
        rows = self._db.execute("SELECT id, correlation_id, body FROM deliveries ORDER BY rowid")
        return [(str(i), str(c), str(b)) for i, c, b in rows]

    def requests(self) -> list[Stored]:
        """The requests published from outside that had not settled."""
        rows = self._db.execute("SELECT correlation_id, body FROM requests ORDER BY rowid")
        return [(str(c), str(c), str(b)) for c, b in rows]

    def charged(self) -> dict[str, int]:
        """The deliveries each unsettled request had charged to its budget."""
        rows = self._db.execute("SELECT correlation_id, charged FROM requests")
        return {str(c): int(n) for c, n in rows}

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
                if batch.charged:
                    db.executemany(
                        "UPDATE requests SET charged = ? WHERE correlation_id = ?",
                        [(n, cid) for cid, n in batch.charged.items()],
                    )
                _delete(db, "deliveries", "id", batch.ended)
                _delete(db, "requests", "correlation_id", batch.settled)
                _delete(db, "counters", "correlation_id", batch.settled)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def charge(self, correlation_id: str, key: str, n: int, what: str) -> int:
        """Add ``n`` to the correlation's count of ``what`` (its model budgets' ``tokens``
        and ``cost``) and return the count just after; a second charge with ``key`` adds
        nothing and returns what the first did (``genie.llm``'s ``SharedCounters``: a call
        run again after a restart is charged once, and the count survives the restart)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                first = db.execute(
                    "SELECT total FROM counters WHERE key = ? AND what = ?", (key, what)
                ).fetchone()
                if first is not None:
                    total = int(first[0])
                else:
                    (before,) = db.execute(
                        "SELECT COALESCE(SUM(n), 0) FROM counters "
                        "WHERE correlation_id = ? AND what = ?",
                        (correlation_id, what),
                    ).fetchone()
                    total = int(before) + n
                    # A count past SQLite's largest integer (a budget tripped once before a
                    # restart, and tripped again by the fresh process) is past any budget
                    # already: answered, not kept, so that the stored sum stays in range.
                    if total <= MAX_COUNT:
                        db.execute(
                            "INSERT INTO counters (key, what, correlation_id, n, total) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (key, what, correlation_id, n, total),
                        )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return total

    def answers(self) -> list[tuple[int, str, bool, str, tuple[str, ...], str]]:
        """The answers to approvals other processes left, not yet taken: (row, approval id,
        approved, answerer, roles, reason)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, approval_id, approved, answerer, roles, reason FROM answers "
                "WHERE outcome IS NULL ORDER BY id"
            ).fetchall()
        return [
            (
                int(i),
                str(a),
                bool(ok),
                str(by),
                tuple(r for r in str(roles).split(",") if r),
                str(w),
            )
            for i, a, ok, by, roles, w in rows
        ]

    def answered(self, row: int, outcome: str) -> None:
        """Say what became of the answer in ``row`` (its answerer's CLI reads it)."""
        with self._lock:
            self._db.execute("UPDATE answers SET outcome = ? WHERE id = ?", (outcome, row))

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lockfile.close()


class StoreClient:
    """Another process's view of a store (``genie approvals``): the approvals it keeps
    pending, and answers left for the runtime that holds it."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigurationError(f"no store at {self.path}")
        self._db = _connect(self.path)

    def approvals(self) -> list[str]:
        """The JSON of each pending approval's request delivery (to the desk), oldest first."""
        rows = self._db.execute(
            "SELECT body FROM deliveries WHERE id LIKE ? ORDER BY rowid", (f"%:{DESK}",)
        )
        return [str(b) for (b,) in rows if '"type":"genie.approval_request"' in str(b)]

    def answer(
        self, approval_id: str, approved: bool, by: str, roles: tuple[str, ...], reason: str
    ) -> int:
        """Leave an answer for the runtime; its row."""
        cursor = self._db.execute(
            "INSERT INTO answers (approval_id, approved, answerer, roles, reason) "
            "VALUES (?, ?, ?, ?, ?)",
            (approval_id, int(approved), by, ",".join(roles), reason),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def outcome(self, row: int) -> str | None:
        found = self._db.execute("SELECT outcome FROM answers WHERE id = ?", (row,)).fetchone()
        return None if found is None or found[0] is None else str(found[0])

    def close(self) -> None:
        self._db.close()


def _delete(db: sqlite3.Connection, table: str, key: str, ids: Iterable[str]) -> None:
    db.executemany(f"DELETE FROM {table} WHERE {key} = ?", ((i,) for i in ids))
