"""The durable store: one SQLite file holding what a crash must not lose.

``messages``: each admitted message with a delivery that has not ended, kept once however
many agents it went to: its JSON, and the agents whose delivery of it has not ended (each
mapped to the agent the delivery was for: a fallback holds its failed agent's). Deliveries end
(handled, or a dead letter) in the same transaction as the messages their handlers' outputs
made; a message goes when its last delivery ends. ``requests``: each request published from
outside that has not settled, so that a process started again knows whose output to wait for.
``asked``: the pending approvals the desk has taken (and audited as asked), and whether it
escalated them, so that a process started again takes them up as resumed, as they were, not
asked (or escalated) a second time. ``taken``: the messages a fan-in (a workflow, a declared
gather) handled of a session it keeps open, each marked in the write of the messages its
handling made, so that a process started again rebuilds the session from them without
sending those a second time (a step run again, an approval asked again). ``watched``: the
kept requests whose sender watches for their reply (``Runtime.watch_reply``), marked in the
write that keeps them, so that a process started again watches each run again from the start
and tells its sender, in the write that ends it, that it went unanswered. ``replies``: the
answer to each handler's ``ctx.request`` of a request that has not settled, by the request's
id (derived from the asking delivery), so that the asker run again after a crash is given it,
and the answering agent does not run twice; an empty body while it is asked and not answered.
``about``: what the store is of: ``pipeline``, the pipeline file (resolved) whose runs it
keeps, so that ``genie approvals`` can say the command that resumes them. A table missing from
a store made by an older genie is made when the file is opened (each is ``IF NOT EXISTS``), so
an older file reads as naming no pipeline and no message taken; a client (``genie approvals``)
that cannot write the file reads it as it is, naming none too.

The file is in WAL mode. Every write is one transaction of what one turn of the loop produced.
By default a write is committed on the loop (``synchronous=NORMAL``: in the file's log, in the
operating system's cache, so it survives the process being killed), and ``sync`` brings the
log to the disk, from a thread, about every second. With ``each=True`` every commit waits for
the disk (``synchronous=FULL``) and is made in a worker thread, so the loop never waits on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

from ..._base.files import file_problem
from ..._errors import ConfigurationError, StoreError
from ..transport import DESK  # its kept deliveries are pending approvals

__all__ = ["Batch", "DeliveryStore", "Holders", "Kept", "StoreClient", "beside"]

MAX_COUNT = 2**63 - 1  # SQLite's largest integer
_T = TypeVar("_T")
ROW = 1 << 20  # bytes of a messages row besides its JSON, at most (its ids and agents)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    recipients TEXT NOT NULL
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
CREATE TABLE IF NOT EXISTS asked (
    approval_id TEXT PRIMARY KEY,
    escalated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id TEXT NOT NULL,
    approved INTEGER NOT NULL,
    answerer TEXT NOT NULL,
    roles TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT,
    given_at REAL
);
CREATE TABLE IF NOT EXISTS taken (
    message_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (message_id, agent_id)
);
CREATE TABLE IF NOT EXISTS watched (
    message_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS replies (
    request_id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS about (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

Kept = tuple[str, str, str, dict[str, str]]
"""A message kept: its id, its correlation id, its JSON, and the agents whose delivery of it
has not ended (each mapped to the agent it was for)."""

Holders = dict[str, str]


class Batch:
    """What one write makes durable: the messages kept since the last write, the messages
    whose deliveries ended or moved to a fallback, the requests made and settled. ``seal``
    reads it into rows on the loop, before the write."""

    __slots__ = (
        "answered",
        "answers",
        "asked",
        "charged",
        "decided",
        "deleted",
        "escalated",
        "inserted",
        "kept",
        "moved",
        "requests",
        "retold",
        "settled",
        "taken",
        "unasked",
        "updated",
        "waited_for",
        "watched",
    )

    def __init__(self) -> None:
        self.kept: dict[str, tuple[str, str]] = {}  # message id -> (correlation id, JSON)
        self.moved: set[str] = set()  # message ids whose holders changed
        self.requests: list[tuple[str, str]] = []  # (correlation id, JSON)
        self.settled: list[str] = []
        self.charged: dict[str, int] = {}  # correlation -> deliveries charged to its budget
        self.answered: list[tuple[str, int]] = []  # (what became of it, answer row)
        # Answers told they decided, whose asker's withdrawal crossed that decision: (what
        # the desk says of it now, answer row, what it was told).
        self.retold: list[tuple[str, int, str]] = []
        # Approvals the desk decided: (what became of the answers to each not taken, its id).
        self.decided: list[tuple[str, str]] = []
        # Handlers' requests asked, and their answers: (request id, correlation id, the
        # reply's JSON, or "" while it is not answered), in the order they happened.
        self.answers: list[tuple[str, str, str]] = []
        self.asked: list[str] = []  # approvals the desk took since the last write
        self.escalated: list[str] = []  # approvals taken that the desk escalated since
        self.unasked: list[str] = []  # approvals taken whose request is no longer kept
        self.taken: list[tuple[str, str]] = []  # (message id, fan-in) handled, its outputs here
        self.watched: list[str] = []  # requests kept whose sender watches for their reply
        self.waited_for = False  # deliveries wait for this write before they are queued
        self.inserted: list[tuple[str, str, str, str]] = []
        self.updated: list[tuple[str, str]] = []
        self.deleted: list[str] = []

    def __bool__(self) -> bool:
        return bool(
            self.kept
            or self.moved
            or self.requests
            or self.settled
            or self.answered
            or self.retold
            or self.decided
            or self.answers
            or self.asked
            or self.escalated
            or self.taken
        )

    def seal(self, holders: dict[str, Holders], asked: dict[str, int]) -> None:
        """Read the holders of each message kept or moved as they are now into rows, and
        forget the messages whose deliveries have all ended (an approval's request among
        them is forgotten as ``asked`` too)."""
        for mid, (cid, body) in self.kept.items():
            self.inserted.append((mid, cid, body, _json(holders[mid])))
        for mid in self.moved.difference(self.kept):
            left = holders.get(mid)
            if left:
                self.updated.append((_json(left), mid))
            else:
                holders.pop(mid, None)
                self.deleted.append(mid)
                if asked.pop(mid, None) is not None:
                    self.unasked.append(mid)


def not_genies(path: Path, table: str, exc: Exception) -> ConfigurationError:
    """A store whose ``table`` has a row genie did not write (``exc``: what reading it said)."""
    return ConfigurationError(
        f"cannot use {path} as a store: a row of {table} is not genie's ({exc})"
    )


def _read(path: Path, table: str, read: Callable[[], _T]) -> _T:
    """What ``read`` makes of rows of ``table``; a value genie did not write there (text
    where a number was, JSON that is not) refuses the store in one line."""
    try:
        return read()
    except (ValueError, TypeError) as exc:
        raise not_genies(path, table, exc) from None


def _json(holders: Holders) -> str:
    return json.dumps(holders, separators=(",", ":"))


class _EmptyStore(ConfigurationError):
    """A store that must exist has no tables (yet: a runtime that has just made the file
    writes them a moment later)."""


class _CannotWrite(ConfigurationError):
    """A store that had to be written to be opened (a table or column its genie did not make
    was to be added, or its layout brought up to date) and cannot be written here: the file,
    or its disk, is read-only to this user. ``why``: SQLite's words."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _connect(path: Path, each: bool = False, *, made: bool = False) -> sqlite3.Connection:
    """A connection to the store at ``path``, made if need be (``made``: it must be one
    already). A database of something else is refused before anything in it changes."""
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        tables = {
            str(name)
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if (tables or made) and not _genies(db, tables):
            db.close()
            if not tables:
                raise _EmptyStore(f"cannot use {path} as a store: it is an empty database")
            raise ConfigurationError(
                f"cannot use {path} as a store: it is a database of something else"
            )
        if tables:
            # A damaged page past the schema would fail the first read of the kept work (or
            # a later write): the whole file is checked once, here, while the store is small.
            (verdict, *_) = db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                db.close()
                found = " ".join(str(verdict).replace("*** in database main ***", "").split())
                raise ConfigurationError(f"cannot use {path} as a store: it is damaged ({found})")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if each else 'NORMAL'}")
        db.execute("PRAGMA wal_autocheckpoint=0")  # ``sync`` checkpoints, off the loop
        db.executescript(SCHEMA)
        _upgrade(db)
        columns = {str(c[1]) for c in db.execute("PRAGMA table_info(answers)")}
        if "given_at" not in columns:  # a store made before answers said when they were given
            db.execute("ALTER TABLE answers ADD COLUMN given_at REAL")
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        if _refused_write(exc, path):
            why = str(exc) if _readonly(exc) else f"{exc}: the file or its folder is read-only"
            raise _CannotWrite(f"cannot use {path} as a store: {exc}", why) from exc
        raise ConfigurationError(f"cannot use {path} as a store: {exc}") from exc
    return db


# The columns a table of genie's holds, by which a store is told from another application's
# database with a table of the same name (a chat's ``messages``); ``deliveries``: the layout
# of stores made before messages were kept once (``_upgrade``).
GENIES = {
    "messages": {"id", "correlation_id", "body", "recipients"},
    "deliveries": {"id", "correlation_id", "body"},
}


def _genies(db: sqlite3.Connection, tables: set[str]) -> bool:
    """Whether the database of ``tables`` is a store: one of them is genie's, by its columns."""
    for table, columns in GENIES.items():
        if table in tables:
            found = {str(c[1]) for c in db.execute(f"PRAGMA table_info({table})")}
            if columns <= found:
                return True
    return False


def _refused_write(exc: sqlite3.Error, path: Path) -> bool:
    """Whether SQLite refused ``exc``'s statement as a write to a database it may only read,
    or could not open the file at ``path`` that is there: in a folder it may not write, a
    store closed cleanly cannot be opened to write (its WAL's side files cannot be made)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return _readonly(exc) or (
        isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_CANTOPEN and path.is_file()
    )


def _readonly(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused ``exc``'s statement as a write to a database it may only read."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_READONLY


def _reader(path: Path) -> sqlite3.Connection | None:
    """The store at ``path`` opened to read only, as it is, or None when it cannot be read so:
    a store of the old layout (``deliveries``) is read only once brought up to date.

    Read-only first; where even that needs a WAL side file the folder cannot hold (a store
    closed cleanly, in a read-only folder), as a file nothing writes (``immutable``), but only
    while it has no write-ahead log beside it: all of it is in the file then, and a runtime
    writing it would have made one."""
    kept = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages'"
    for how in ("mode=ro", "immutable=1"):
        if how == "immutable=1" and Path(f"{path}-wal").exists():
            break
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?{how}", uri=True, check_same_thread=False, timeout=5.0
            )
            if db.execute(kept).fetchone() is not None:
                return db
        except sqlite3.Error:
            pass  # the store's own error, from opening it to write, says what is wrong
        if db is not None:
            db.close()
    return None


def _upgrade(db: sqlite3.Connection) -> None:
    """Move what a store made by genie before messages were kept once holds (a row per
    delivery, in ``deliveries``) into ``messages``, in one transaction."""
    old = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'"
    if db.execute(old).fetchone() is None:
        return  # no write lock taken: a runtime may be writing the file meanwhile
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute(old).fetchone() is not None:  # not moved meanwhile by another
            kept: dict[str, tuple[str, str, Holders]] = {}
            for did, cid, body in db.execute(
                "SELECT id, correlation_id, body FROM deliveries ORDER BY rowid"
            ):
                try:
                    delivery = json.loads(body)
                    message, recipient = delivery["message"], str(delivery["recipient"])
                    mid = str(message["id"])
                except (ValueError, TypeError, KeyError) as exc:
                    raise sqlite3.DatabaseError(f"kept delivery {did} is not genie's") from exc
                entry = kept.setdefault(
                    mid, (str(cid), json.dumps(message, separators=(",", ":")), {})
                )
                entry[2][recipient] = str(did)[len(mid) + 1 :]
            db.executemany(
                "INSERT OR REPLACE INTO messages (id, correlation_id, body, recipients) "
                "VALUES (?, ?, ?, ?)",
                [(mid, cid, body, _json(h)) for mid, (cid, body, h) in kept.items()],
            )
            db.execute("DROP TABLE deliveries")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class DeliveryStore:
    """The deliveries and requests of one runtime in the SQLite file at ``path`` (made if
    missing). Held by one runtime at a time (a lock on ``PATH.lock``): a second runtime, in
    this process or another, is refused while the first holds it, so two runtimes never
    resume each other's work. Not on the database file itself: SQLite's own locks are on it,
    and where ``flock`` is made of the same locks (NFS) it would shut out ``genie approvals``;
    so ``PATH.lock`` removed while held lets a second runtime in (docs/durability.md).
    Other processes may still read it and leave answers to approvals in it
    (``StoreClient``). ``each``: every commit waits for the disk."""

    def __init__(self, path: str | PathLike[str], each: bool = False) -> None:
        self.path = Path(path)
        refused = _not_a_store_file(self.path, made=True)
        if refused is not None:
            raise ConfigurationError(refused)
        lock = beside(self.path)["lock"]
        made_lock = not os.path.lexists(lock)
        try:
            self._lockfile = open(lock, "a")  # noqa: SIM115 - held until close
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
            self._db = _connect(self.path, each)
            self._syncing = _connect(self.path, each)  # ``sync``'s own, used from a thread
        except ConfigurationError:
            # Not a store (another application's database, a damaged file): refused with
            # nothing left beside it, as it was found.
            if made_lock:
                with contextlib.suppress(OSError):
                    os.unlink(lock)
            self._lockfile.close()
            raise
        self._file = _identity(self.path)  # the file written, whatever the path names later
        self.each = each
        self._lock = threading.Lock()  # one write at a time: the writer and a final flush

    def room(self) -> int:
        """The largest message JSON a row holds: SQLite's limit on a row, less what the rest
        of the row may take (the ids, and the agents of a large fan-out)."""
        return self._db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) - ROW

    def pending(self) -> list[Kept]:
        """The messages with deliveries that had not ended, in the order they were kept."""
        rows = self._db.execute(
            "SELECT id, correlation_id, body, recipients FROM messages ORDER BY rowid"
        )
        return _read(
            self.path,
            "messages",
            lambda: [(str(i), str(c), str(b), dict(json.loads(r))) for i, c, b, r in rows],
        )

    def asked(self) -> dict[str, int]:
        """The pending approvals a desk took (their request's message ids), each with the
        round it reached (1: escalated)."""
        rows = self._db.execute("SELECT approval_id, escalated FROM asked")
        return _read(self.path, "asked", lambda: {str(a): int(n) for a, n in rows})

    def taken(self) -> set[tuple[str, str]]:
        """The messages kept that a fan-in took, with the messages its handling made: (message
        id, fan-in)."""
        return {
            (str(m), str(a)) for m, a in self._db.execute("SELECT message_id, agent_id FROM taken")
        }

    def watched(self) -> set[str]:
        """The requests kept whose sender watches for their reply (their message ids)."""
        return {str(m) for (m,) in self._db.execute("SELECT message_id FROM watched")}

    def requests(self) -> list[tuple[str, Any]]:
        """The requests published from outside that had not settled: (correlation id, the
        message's JSON parsed)."""
        rows = self._db.execute("SELECT correlation_id, body FROM requests ORDER BY rowid")
        return _read(self.path, "requests", lambda: [(str(c), json.loads(b)) for c, b in rows])

    def replies(self) -> dict[str, tuple[str, str]]:
        """Handlers' requests asked, and the answers kept to them: request id ->
        (correlation id, the answer's JSON, or "" when none is kept)."""
        rows = self._db.execute("SELECT request_id, correlation_id, body FROM replies")
        return {str(r): (str(c), str(b)) for r, c, b in rows}

    def charged(self) -> dict[str, int]:
        """The deliveries each unsettled request had charged to its budget."""
        rows = self._db.execute("SELECT correlation_id, charged FROM requests")
        return _read(self.path, "requests", lambda: {str(c): int(n) for c, n in rows})

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, one at a time. A write SQLite refuses (the disk is full, the
        file became read-only) is rolled back, if SQLite has not already, and raised as a
        ``StoreError`` naming the store."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:  # SQLite ends some failed transactions itself
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._cannot_write(exc) from exc
                raise

    def _cannot_write(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"cannot write the store {self.path}: {exc}", path=str(self.path))

    def write(self, batch: Batch) -> None:
        """Make ``batch`` (sealed) durable in one transaction."""
        with self._transaction() as db:
            if batch.inserted:
                db.executemany(
                    "INSERT OR REPLACE INTO messages (id, correlation_id, body, recipients) "
                    "VALUES (?, ?, ?, ?)",
                    batch.inserted,
                )
            if batch.updated:
                db.executemany("UPDATE messages SET recipients = ? WHERE id = ?", batch.updated)
            if batch.requests:
                db.executemany(
                    "INSERT OR REPLACE INTO requests (correlation_id, body) VALUES (?, ?)",
                    batch.requests,
                )
            if batch.charged:
                db.executemany(
                    "UPDATE requests SET charged = ? WHERE correlation_id = ?",
                    [(n, cid) for cid, n in batch.charged.items()],
                )
            if batch.asked:
                db.executemany(
                    "INSERT OR IGNORE INTO asked (approval_id) VALUES (?)",
                    ((a,) for a in batch.asked),
                )
            if batch.escalated:
                db.executemany(
                    "UPDATE asked SET escalated = 1 WHERE approval_id = ?",
                    ((a,) for a in batch.escalated),
                )
            if batch.taken:
                db.executemany("INSERT OR IGNORE INTO taken VALUES (?, ?)", batch.taken)
            if batch.watched:
                db.executemany(
                    "INSERT OR IGNORE INTO watched VALUES (?)", [(m,) for m in batch.watched]
                )
            if batch.answers:  # with the end of the delivery that answered
                db.executemany(
                    "INSERT OR REPLACE INTO replies (request_id, correlation_id, body) "
                    "VALUES (?, ?, ?)",
                    batch.answers,
                )
            if batch.answered:  # with the decision's end: told once it is durable
                db.executemany(
                    "UPDATE answers SET outcome = ? WHERE id = ? AND outcome IS NULL",
                    batch.answered,
                )
            if batch.retold:  # after ``answered``: the same write may tell it first
                db.executemany(
                    "UPDATE answers SET outcome = ? WHERE id = ? AND outcome = ?", batch.retold
                )
            if batch.decided:  # answers left and not taken when it was decided: too late
                db.executemany(
                    "UPDATE answers SET outcome = ? WHERE approval_id = ? AND outcome IS NULL",
                    batch.decided,
                )
            _delete(db, "messages", "id", batch.deleted)
            _delete(db, "taken", "message_id", batch.deleted)
            _delete(db, "watched", "message_id", batch.deleted)
            _delete(db, "requests", "correlation_id", batch.settled)
            _delete(db, "counters", "correlation_id", batch.settled)
            _delete(db, "replies", "correlation_id", batch.settled)
            _delete(db, "asked", "approval_id", batch.unasked)

    def discard(self, correlation_id: str) -> None:
        """Forget the request ``correlation_id`` and everything kept of it, in one
        transaction: its messages (and what was marked of them), its counts and answers."""
        of = "SELECT id FROM messages WHERE correlation_id = ?"
        with self._transaction() as db:
            db.execute(f"DELETE FROM asked WHERE approval_id IN ({of})", (correlation_id,))
            db.execute(f"DELETE FROM taken WHERE message_id IN ({of})", (correlation_id,))
            db.execute(f"DELETE FROM watched WHERE message_id IN ({of})", (correlation_id,))
            for table in ("messages", "requests", "counters", "replies"):
                db.execute(f"DELETE FROM {table} WHERE correlation_id = ?", (correlation_id,))

    def name_pipeline(self, path: str) -> None:
        """Record that the store keeps the runs of the pipeline file at ``path`` (resolved),
        replacing the one named before."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO about (key, value) VALUES ('pipeline', ?)", (path,))

    def sync(self) -> None:
        """Bring what was committed to the disk, and the log's pages into the file (called
        in a worker thread, on a connection of its own: commits go on meanwhile)."""
        self.check()
        try:
            self._syncing.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            raise self._cannot_write(exc) from exc

    def check(self) -> None:
        """Raise ``StoreError`` if the path no longer names the file written: removed (or
        replaced) while held, the file takes every write and SQLite reports none failed, but
        no later start can open what they wrote."""
        if _identity(self.path) != self._file:
            raise StoreError(
                f"cannot write the store {self.path}: the file was removed or replaced while "
                "the runtime held it, and what it writes is not kept",
                path=str(self.path),
                kept=False,  # what it wrote before went with the file, too
            )

    def charge(self, correlation_id: str, key: str, n: int, what: str) -> int:
        """Add ``n`` to the correlation's count of ``what`` (its model budgets' ``tokens``
        and ``cost``) and return the count just after; a second charge with ``key`` adds
        nothing and returns what the first did (``genie.llm``'s ``SharedCounters``: a call
        run again after a restart is charged once, and the count survives the restart)."""
        with self._transaction() as db:
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
        return total

    def answers(self) -> list[tuple[int, str, bool, str, tuple[str, ...], str, float | None]]:
        """The answers to approvals other processes left, not yet taken: (row, approval id,
        approved, answerer, roles, reason, when it was given). A row ``StoreClient.answer``
        did not write (by hand: ``approved`` not 0 or 1, text that is not UTF-8) is marked
        ``refused: not an answer`` and never taken, so it cannot stop the answers after it."""
        taken: list[tuple[int, str, bool, str, tuple[str, ...], str, float | None]] = []
        with self._lock:
            rows = self._db.execute(
                "SELECT id, approved, given_at, CAST(approval_id AS BLOB), "
                "CAST(answerer AS BLOB), CAST(roles AS BLOB), CAST(reason AS BLOB) FROM answers "
                "WHERE outcome IS NULL ORDER BY id"
            ).fetchall()
            for row, approved, given_at, *texts in rows:
                try:
                    approval_id, by, roles, reason = (bytes(t).decode() for t in texts)
                except (ValueError, TypeError):  # not UTF-8, or NULL
                    approved = None
                if not isinstance(given_at, float | int | None):
                    approved = None
                if type(approved) is not int or approved not in (0, 1):
                    self._db.execute(
                        "UPDATE answers SET outcome = 'refused: not an answer' WHERE id = ?",
                        (row,),
                    )
                    continue
                held = tuple(r for r in roles.split(",") if r)
                given = None if given_at is None else float(given_at)
                taken.append((int(row), approval_id, bool(approved), by, held, reason, given))
        return taken

    def answered(self, row: int, outcome: str) -> None:
        """Say what became of the answer in ``row`` (its answerer's CLI reads it)."""
        with self._lock:
            self._db.execute("UPDATE answers SET outcome = ? WHERE id = ?", (outcome, row))

    def close(self) -> None:
        with self._lock:
            self._syncing.close()
            self._db.close()  # the last connection: its log is brought into the file
            self._lockfile.close()


class StoreClient:
    """Another process's view of a store (``genie approvals``): the approvals it keeps
    pending, and answers left for the runtime that holds it. A store this user cannot write
    is read as it is: its approvals are listed (a store an older genie made may have no
    ``about``: it names no pipeline), and an answer is refused, saying why."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        self._unwritable: str | None = None  # why the store cannot be written, if it cannot
        refused = _not_a_store_file(self.path)
        if refused is not None:
            raise ConfigurationError(refused)
        # A runtime makes the file, then its tables: an empty database is looked at again for
        # a second before it is called one, so a client started with the runtime is not told so.
        for last in range(20, 0, -1):
            try:
                self._db = _connect(self.path, made=True)
            except _EmptyStore:
                if last == 1:
                    raise
                time.sleep(0.05)
            except _CannotWrite as exc:
                reader = _reader(self.path)
                if reader is None:
                    raise
                self._db, self._unwritable = reader, exc.why
                break
            else:
                break
        self._tables = {
            str(name)
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }

    def approvals(self) -> list[str]:
        """The JSON of each pending approval's request (kept for the desk), oldest first."""
        rows = self._db.execute(
            "SELECT body, recipients FROM messages WHERE body LIKE ? ORDER BY rowid",
            ('%"type":"genie.approval_request"%',),
        )
        return _read(
            self.path, "messages", lambda: [str(b) for b, r in rows if DESK in json.loads(r)]
        )

    def escalated(self) -> set[str]:
        """The pending approvals a desk escalated (their first deadline passed while a process
        held them): the next start takes each up offered to its ``escalate_to`` role only."""
        if "asked" not in self._tables:  # made before, and read as it is
            return set()
        rows = self._db.execute("SELECT approval_id FROM asked WHERE escalated = 1")
        return _read(self.path, "asked", lambda: {str(a) for (a,) in rows})

    def answer(
        self, approval_id: str, approved: bool, by: str, roles: tuple[str, ...], reason: str
    ) -> int:
        """Leave an answer for the runtime, saying when it was given; its row."""
        if self._unwritable is not None:
            raise self._cannot_answer(self._unwritable)
        try:
            cursor = self._db.execute(
                "INSERT INTO answers (approval_id, approved, answerer, roles, reason, given_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (approval_id, int(approved), by, ",".join(roles), reason, time.time()),
            )
        except sqlite3.Error as exc:
            if _refused_write(exc, self.path):  # SQLite opened the file to read only, as it could
                raise self._cannot_answer(str(exc)) from None
            # A runtime holding its write lock past the timeout, a damaged page.
            raise ConfigurationError(f"cannot leave an answer in {self.path}: {exc}") from None
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _cannot_answer(self, why: str) -> ConfigurationError:
        return ConfigurationError(
            f"cannot leave an answer in {self.path}: it cannot be written ({why})"
        )

    def pipeline(self) -> str | None:
        """The pipeline file whose runs the store keeps, or None: a store of a runtime that
        ran no pipeline file, or made before stores named it."""
        if "about" not in self._tables:  # made before, and read as it is
            return None
        found = self._db.execute("SELECT value FROM about WHERE key = 'pipeline'").fetchone()
        return None if found is None else _text(found[0])

    def outcome(self, row: int) -> str | None:
        found = self._db.execute("SELECT outcome FROM answers WHERE id = ?", (row,)).fetchone()
        return None if found is None or found[0] is None else str(found[0])

    def answers_left(self, approval_ids: Iterable[str]) -> dict[str, list[tuple[str, str | None]]]:
        """The answers left to each of ``approval_ids``, oldest first, as (answerer, outcome):
        the outcome None while no runtime has taken the answer, else what became of it
        (``approved``, ``refused: WHY``...), so the person who left it can be told."""
        wanted = set(approval_ids)
        found: dict[str, list[tuple[str, str | None]]] = {}
        rows = self._db.execute(
            "SELECT CAST(approval_id AS BLOB), CAST(answerer AS BLOB), CAST(outcome AS BLOB) "
            "FROM answers ORDER BY id"
        )
        for approval_id, by, outcome in rows:
            # A row written by hand may hold anything: it is shown as it can be read.
            key = _text(approval_id)
            if key in wanted:
                found.setdefault(key, []).append(
                    (_text(by), None if outcome is None else _text(outcome))
                )
        return found

    def close(self) -> None:
        self._db.close()


def beside(path: str | PathLike[str]) -> dict[str, str]:
    """The files a runtime holding the store at ``path`` writes beside it, by what each is:
    its ``lock``, SQLite's ``write-ahead log`` and ``shared memory``. Named by where the file
    really is: a store reached through a symbolic link (or ``..``) is the same store, held by
    one runtime."""
    real = os.path.realpath(path)
    return {
        "lock": f"{real}.lock",
        "write-ahead log": f"{real}-wal",
        "shared memory": f"{real}-shm",
    }


def _not_a_store_file(path: Path, made: bool = False) -> str | None:
    """Why ``path`` can hold no store (it is missing, a directory, a device, a pipe), in the
    words the error says, or None: looked at before SQLite, which says only "disk I/O error"
    or "unable to open database file" of each. ``made``: a missing store is made (also where
    a symbolic link to no file yet points), so that is no reason."""
    problem = file_problem(path)
    if problem is None or (made and problem == "does not exist"):
        return None
    if problem == "does not exist":
        return f"no store at {path}"
    return f"cannot use {path} as a store: it {problem}"


def _text(value: object) -> str:
    """A column read as bytes, as text (what is not UTF-8 shown with U+FFFD)."""
    return bytes(value).decode(errors="replace") if isinstance(value, bytes) else str(value)


def _identity(path: Path) -> tuple[int, int] | None:
    """The file ``path`` names (its device and inode), or None if it names none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _delete(db: sqlite3.Connection, table: str, key: str, ids: Sequence[str]) -> None:
    if ids:  # a statement costs its preparing and stepping even with no row to delete
        db.executemany(f"DELETE FROM {table} WHERE {key} = ?", ((i,) for i in ids))
