"""The audit trail: every deny, every dead letter and every limit that fires is recorded."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from .._base.files import FileRefusedError, open_regular, read_bounded
from .._base.nesting import json_depth_exceeds
from .._base.record import Record
from .._base.surrogates import utf8_text
from .._errors import AuditWriteError, ConfigurationError, described

__all__ = [
    "AuditLogError",
    "AuditRecord",
    "AuditSink",
    "AuditVerdict",
    "AuditsItself",
    "JsonlAuditLog",
    "MemoryAuditLog",
    "audit_key",
    "create_audit_key",
    "key_beside",
    "read_audit_key",
    "verify_audit_log",
]


class AuditRecord(Record):
    """``actor`` decided ``action`` about ``target`` (e.g. policy ``rbac`` denied a delivery)."""

    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, str]


class AuditSink(Protocol):
    """Where audit records go. ``record`` is synchronous; a durable sink writes through."""

    def record(self, record: AuditRecord) -> None: ...


@runtime_checkable
class AuditsItself(Protocol):
    """An agent that writes audit records of its own, which no delivery's outcome carries:
    the approval desk's decisions (an answer is taken outside any handler), a workflow's
    events. The records a worker's runtime makes of a delivery reach the process that started
    the request in its outcome records, and are written there; these do not. So a transport
    that hosts such an agent for a deployment of many processes (a NATS worker) gives it the
    deployment's audit log with ``audit_to``, where its records join the others' chain."""

    def audit_to(self, sink: AuditSink) -> None: ...


class AuditGate:
    """The runtime's way to its audit sink. The first record the sink refuses (it raises) is
    kept as the runtime's ``failure`` and stops the runtime (``stop``), which raises it once
    closed; the records after it are not offered. The record is not raised where it was
    made: a dead letter, a denial or a count half written would leave the books wrong while
    the runtime stops."""

    __slots__ = ("failure", "sink", "stop")

    def __init__(self, sink: AuditSink, stop: Callable[[], None]) -> None:
        self.sink = sink
        self.stop = stop
        self.failure: AuditWriteError | None = None

    def record(self, record: AuditRecord) -> None:
        if self.failure is not None:
            return
        try:
            self.sink.record(record)
        except Exception as exc:
            said = (
                str(exc)
                if isinstance(exc, AuditWriteError)
                else f"the audit sink refused a {record.action} record: {described(exc)}"
            )
            self.failure = AuditWriteError(
                f"{said}; the runtime stopped, as nothing governed goes on unrecorded"
            )
            self.failure.__cause__ = exc
            self.stop()


class MemoryAuditLog:
    """The default sink: the most recent ``capacity`` records, and a count of all of them."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.records: deque[AuditRecord] = deque(maxlen=capacity)
        self.total = 0

    def record(self, record: AuditRecord) -> None:
        self.records.append(record)
        self.total += 1


def _go_time(at: datetime) -> str:
    """RFC 3339 with nanosecond precision as Go prints it: UTC, trailing zeros trimmed."""
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    if at.microsecond:
        text += f".{at.microsecond:06d}".rstrip("0")
    return text + "Z"


def _go_json(value: object) -> str:
    """JSON as Go's encoding/json writes it: compact, map keys sorted, <>& and U+2028/9
    escaped, other non-ASCII as UTF-8, a lone surrogate as U+FFFD (Go's for text that is not
    UTF-8). Hashes then match a log written by the Go system, and every row can be written:
    a reason or detail that came from outside (a command line's bytes) is recorded, not lost."""
    import json  # only a file-backed log writes JSON: not loaded by `import genie`

    text = utf8_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


GENESIS = "genesis"
KEYED = "hmac-sha256:"  # the prefix of every hash in a keyed chain
MIN_KEY_BYTES = 16
# A key file holds one key (`openssl rand -hex 32` writes 65 bytes); a larger file is a mistake
# (the wrong path), refused before it is read.
MAX_KEY_FILE_BYTES = 4096
FIELDS = frozenset(
    ("seq", "occurred_at", "actor", "action", "target", "details", "prev_hash", "row_hash")
)
RECOVERED = "recovered_torn_line"  # the action of the row that accounts for a torn line


class AuditLogError(ConfigurationError):
    """An audit log cannot be continued (its last row is unreadable, or it is keyed and no
    key, or the wrong key, was given), or an audit key is unusable."""


KEY_VARIABLE = "GENIE_AUDIT_KEY"


def audit_key(file: str | Path | None, environ: Mapping[str, str]) -> bytes | None:
    """The audit key: from ``file`` when given, else the variable GENIE_AUDIT_KEY of
    ``environ`` (its UTF-8 text, stripped) when set, else None (an unkeyed chain)."""
    if file is not None:
        return read_audit_key(file)
    text = environ.get(KEY_VARIABLE)
    if text is None:
        return None
    return check_audit_key(text.strip().encode(), KEY_VARIABLE)


def read_audit_key(path: str | Path) -> bytes:
    """The key in ``path``: its bytes, surrounding whitespace stripped (so the text of
    ``openssl rand -hex 32 > key`` is the key), at least MIN_KEY_BYTES long; a regular file of
    at most MAX_KEY_FILE_BYTES."""
    try:
        key = read_bounded(path, MAX_KEY_FILE_BYTES).strip()
    except FileRefusedError as exc:
        if exc.size is not None:
            raise AuditLogError(
                f"audit key {path} {exc.problem}: a key file holds one key, at most "
                f"{MAX_KEY_FILE_BYTES:,} bytes"
            ) from None
        raise AuditLogError(f"cannot read audit key {path}: {exc.problem}") from None
    return check_audit_key(key, str(path))


def key_beside(log: str | Path) -> Path:
    """Where a log's own key lives when none is given: ``<log>.key``. ``genie serve`` makes
    it for a new log, and ``genie audit verify`` uses it when it is there."""
    return Path(f"{log}.key")


def create_audit_key(path: str | Path) -> bytes:
    """A new random key (64 hex characters) written to ``path``, which must not exist,
    readable and writable by its owner only."""
    key = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise AuditLogError(f"cannot create audit key {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as file:
        file.write(key + b"\n")
    return key


def check_audit_key(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise AuditLogError(
            f"audit key {where} is too short ({len(key)} bytes; at least {MIN_KEY_BYTES}, "
            "e.g. the output of `openssl rand -hex 32`)"
        )
    return key


def _row_hash(prev: str, row: Mapping[str, object], key: bytes | None = None) -> str:
    """SHA-256 of ``{"prev": prev, "row": row with row_hash ""}`` (the Go scheme), or with a
    key, ``hmac-sha256:`` and the HMAC-SHA-256 of the same bytes."""
    body = _go_json({"prev": prev, "row": {**row, "row_hash": ""}}).encode()
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return KEYED + hmac.new(key, body, hashlib.sha256).hexdigest()


def chained_row(
    record: AuditRecord, seq: int, prev: str, key: bytes | None = None
) -> dict[str, Any]:
    """``record`` as row ``seq`` of a chain whose last row's hash is ``prev``."""
    row: dict[str, Any] = {
        "seq": seq,
        "occurred_at": _go_time(record.at),
        "actor": record.actor,
        "action": record.action,
        "target": record.target,
        "details": dict(sorted(record.details.items())),
        "prev_hash": prev,
    }
    row["row_hash"] = _row_hash(prev, row, key)
    return row


def row_line(row: Mapping[str, object]) -> bytes:
    """A row as its JSONL line (Go's JSON, so hashes match a log the Go system wrote)."""
    return (_go_json(row) + "\n").encode()


class _BadRow(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:  # json.loads would keep the last one silently
            raise _BadRow(f"duplicated key {key!r}")
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> None:
    raise _BadRow(f"{name} is not JSON")


def _parse_row(raw: bytes) -> dict[str, Any]:
    """One line as an audit row: strict UTF-8, strict JSON (no duplicated keys, no NaN), the
    eight fields, an integer seq and string hashes. Raises _BadRow saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRow(f"not UTF-8 (byte {exc.start})") from None
    if json_depth_exceeds(text, 2):
        raise _BadRow("not an audit row (nested too deeply)")
    import json

    try:
        row = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _BadRow:
        raise
    except ValueError as exc:
        raise _BadRow(f"not JSON ({exc})") from None
    if not isinstance(row, dict) or set(row) != FIELDS:
        raise _BadRow("not an audit row (the fields are " + ", ".join(sorted(FIELDS)) + ")")
    seq = row["seq"]
    if type(seq) is not int or seq < 1:
        raise _BadRow(f"not an audit row (seq {seq!r})")
    if not (isinstance(row["prev_hash"], str) and isinstance(row["row_hash"], str)):
        raise _BadRow(f"seq {seq}: prev_hash and row_hash must be strings")
    return row


def row_to_continue(raw: bytes, key: bytes | None) -> dict[str, Any]:
    """``raw``, a log's last row, as a writer continues the chain from it: a ``ValueError``
    saying why it cannot (unreadable, tampered, or keyed otherwise than ``key``)."""
    row = _parse_row(raw)
    problem = _check_row(row, row["prev_hash"], key)
    if problem is not None:
        raise _BadRow(problem)
    return row


def _check_row(row: Mapping[str, Any], prev: str, key: bytes | None) -> str | None:
    """What is wrong with ``row`` as the successor of ``prev``, or None."""
    seq, row_hash = row["seq"], row["row_hash"]
    keyed = row_hash.startswith(KEYED)
    if key is None and keyed:
        return f"seq {seq} is keyed (HMAC-SHA-256): give the key to verify or continue it"
    if key is not None and not keyed:
        return f"seq {seq} is not keyed (HMAC-SHA-256 expected): an unkeyed row"
    if row["prev_hash"] != prev:
        return f"audit: seq {seq} prev_hash mismatch"
    body = {k: v for k, v in row.items() if k != "row_hash"}
    if not hmac.compare_digest(_row_hash(prev, body, key), row_hash):
        wrong = (
            "row_hash tampered" if key is None else "HMAC does not match (forged, or a wrong key)"
        )
        return f"audit: seq {seq} {wrong}"
    return None


if sys.platform != "win32":

    @contextlib.contextmanager
    def _locked(file: BinaryIO) -> Iterator[None]:
        import fcntl  # only a file-backed log locks: loaded when one opens

        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)

else:  # pragma: no cover - no advisory lock: one writer per file (docs/governance.md)

    @contextlib.contextmanager
    def _locked(file: BinaryIO) -> Iterator[None]:
        yield


def _tail(file: BinaryIO) -> tuple[bytes, int, bytes]:
    """(the last non-blank complete line, the offset where it starts, the bytes after the last
    newline: a torn line when not empty), reading backwards from the end."""
    size = file.seek(0, os.SEEK_END)
    data, start = b"", size
    while True:
        end = data.rfind(b"\n")
        complete = data[: end + 1].rstrip()
        cut = complete.rfind(b"\n")
        if cut != -1 or start == 0:
            torn = data[end + 1 :] if end != -1 else data
            return complete[cut + 1 :].strip(), start + cut + 1, torn
        step = min(65_536, start)
        start -= step
        file.seek(start)
        data = file.read(step) + data


class JsonlAuditLog:
    """A hash-chained audit log, one JSON object per line, written through.

    Each row is ``{seq, occurred_at, actor, action, target, details, prev_hash, row_hash}``;
    ``row_hash`` is the SHA-256 of ``{"prev": prev_hash, "row": row with row_hash ""}`` (the Go
    system's scheme), so editing, deleting or reordering any row breaks the chain at that row.
    With a ``key`` it is ``hmac-sha256:`` and the HMAC-SHA-256 of the same bytes: then a chain
    rewritten from the start, or a row appended, without the key is found too.

    Each record is flushed when written (``fsync=True`` also forces it to disk), so a crash
    loses nothing already decided. Opening an existing log continues its chain; writers (in
    this process or others) take an exclusive lock on the file for each record and continue
    from its last row, so their rows interleave in one valid chain. A torn last line (a crash
    mid-write) is kept and accounted for by a ``recovered_torn_line`` row. AuditLogError when
    the log cannot be continued: its last row is unreadable, or keyed and the key is not given
    (or the other way round).
    """

    def __init__(self, path: str | Path, *, fsync: bool = False, key: bytes | None = None) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._key = None if key is None else check_audit_key(key, "given")
        self._seq = 0
        self._prev = GENESIS
        self._size = 0  # of the file after this writer's last write
        self._refused = False  # a write the disk refused
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = self.path.open("a+b")
        try:
            with _locked(self._file):
                self._catch_up()
        except BaseException:
            self._file.close()
            raise

    def _catch_up(self) -> None:
        """Continue from the file's last row (another writer may have added rows)."""
        last, offset, torn = _tail(self._file)
        self._seq, self._prev = 0, GENESIS
        if last:
            try:
                row = row_to_continue(last, self._key)
            except ValueError as exc:
                line = self._line_at(offset)
                raise AuditLogError(
                    f"cannot continue audit log {self.path}: line {line}: {exc} "
                    f"(genie audit verify {self.path} shows the whole chain)"
                ) from None
            self._seq, self._prev = row["seq"], row["row_hash"]
        if torn:
            self._recover(torn)
        self._size = self._file.seek(0, os.SEEK_END)

    def _line_at(self, offset: int) -> int:
        self._file.seek(0)
        return self._file.read(offset).count(b"\n") + 1

    def _recover(self, torn: bytes) -> None:
        """The file ends in ``torn``, a line without its newline (a crash mid-write)."""
        if not torn.strip():
            self._write(b"\n")
            return
        try:
            row = _parse_row(torn)
            whole = row["seq"] == self._seq + 1 and _check_row(row, self._prev, self._key) is None
        except _BadRow:
            whole = False
        self._write(b"\n")
        if whole:  # only the newline was lost
            self._seq, self._prev = row["seq"], row["row_hash"]
            return
        line = self._line_at(self._file.seek(0, os.SEEK_END) - 1)
        details = {
            "torn_line": str(line),
            "torn_bytes": str(len(torn)),
            "torn_sha256": hashlib.sha256(torn).hexdigest(),
        }
        self._append(AuditRecord(datetime.now(UTC), "audit", RECOVERED, self.path.name, details))

    def record(self, record: AuditRecord) -> None:
        with _locked(self._file):
            if os.fstat(self._file.fileno()).st_size != self._size:
                self._catch_up()
            self._append(record)

    def _append(self, record: AuditRecord) -> None:
        # The chain moves on only once its row is written: a row that could not be made or
        # written leaves no gap in the sequence for verification to find.
        row = chained_row(record, self._seq + 1, self._prev, self._key)
        self._write(row_line(row))
        self._seq, self._prev = row["seq"], row["row_hash"]

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:  # a full disk, say: named, for the runtime stops with it
            self._refused = True
            raise AuditWriteError(
                f"cannot write the audit log {self.path}: {exc.strerror}"
            ) from exc

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            # Closing writes what the refused write left buffered, and is refused the same
            # way: that failure was said already (and a torn last line is recovered next).
            if not self._refused:
                raise


class AuditVerdict(Record):
    """``ok``: every row verifies (and the anchor, when given, is there). ``line`` and
    ``problem`` name the first fault; ``last_hash`` is the last row's hash (keep it elsewhere
    to detect a later truncation); ``recovered`` the torn lines accounted for."""

    ok: bool
    rows: int
    line: int | None = None
    problem: str = ""
    last_hash: str = GENESIS
    keyed: bool = False
    recovered: tuple[int, ...] = ()


def verify_audit_log(
    path: str | Path, *, key: bytes | None = None, anchor: str | None = None
) -> AuditVerdict:
    """Walk the chain; report the first line that is not a row, or whose hash, link or
    sequence is wrong. With ``key``, every row must carry its HMAC. With ``anchor`` (a
    row_hash noted earlier), the chain must still hold that row. Raises FileRefusedError when
    ``path`` is not a regular file or cannot be opened (a named pipe is refused, not waited
    on), OSError when reading it fails."""
    prev, rows = GENESIS, 0
    recovered: list[int] = []
    torn: tuple[int, bytes, str] | None = None  # a line that is not a row, pending

    def broken(line: int, problem: str) -> AuditVerdict:
        return AuditVerdict(False, rows, line, problem, prev, key is not None, tuple(recovered))

    anchored = anchor is None or anchor == GENESIS
    with open_regular(path) as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\n")
            if not line.strip():
                continue
            try:
                row = _parse_row(line)
            except _BadRow as exc:
                if torn is not None:
                    return broken(torn[0], f"line {torn[0]}: {torn[2]}")
                torn = (lineno, line, str(exc))
                continue
            if torn is not None:
                if not _accounts_for(row, torn[0], torn[1]):
                    return broken(torn[0], f"line {torn[0]}: {torn[2]}")
                recovered.append(torn[0])
                torn = None
            elif row["action"] == RECOVERED:
                return broken(lineno, f"audit: seq {row['seq']} recovers a torn line not there")
            rows += 1
            if row["seq"] != rows:
                return broken(lineno, f"audit: seq {row['seq']} out of order (expected {rows})")
            problem = _check_row(row, prev, key)
            if problem is not None:
                return broken(lineno, problem)
            prev = row["row_hash"]
            anchored = anchored or prev == anchor
    if torn is not None:
        kind = "torn last line (a crash mid-write?)" if not raw.endswith(b"\n") else torn[2]
        return broken(torn[0], f"line {torn[0]}: {kind}")
    if not anchored:
        return AuditVerdict(
            False,
            rows,
            None,
            f"anchor {anchor} is not in the log: rows were removed at its end, or the log "
            "was replaced",
            prev,
            key is not None,
            tuple(recovered),
        )
    return AuditVerdict(True, rows, None, "", prev, key is not None, tuple(recovered))


def _accounts_for(row: Mapping[str, Any], line: int, torn: bytes) -> bool:
    """Whether ``row`` is the recovery record of the torn ``line`` holding ``torn``."""
    details = row["details"]
    return (
        row["action"] == RECOVERED
        and isinstance(details, dict)
        and details.get("torn_line") == str(line)
        and details.get("torn_sha256") == hashlib.sha256(torn).hexdigest()
    )
