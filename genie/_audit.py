"""The audit trail: every deny, every dead letter and every limit that fires is recorded."""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

__all__ = [
    "AuditRecord",
    "AuditSink",
    "AuditVerdict",
    "JsonlAuditLog",
    "MemoryAuditLog",
    "verify_audit_log",
]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """``actor`` decided ``action`` about ``target`` (e.g. policy ``rbac`` denied a delivery)."""

    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, str]


class AuditSink(Protocol):
    """Where audit records go. ``record`` is synchronous; a durable sink writes through."""

    def record(self, record: AuditRecord) -> None: ...


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
    escaped, other non-ASCII as UTF-8. Hashes then match a log written by the Go system."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _row_hash(prev: str, row: Mapping[str, object]) -> str:
    body = {**row, "row_hash": ""}
    return hashlib.sha256(_go_json({"prev": prev, "row": body}).encode()).hexdigest()


GENESIS = "genesis"


class JsonlAuditLog:
    """A hash-chained audit log, one JSON object per line, written through.

    Each row is ``{seq, occurred_at, actor, action, target, details, prev_hash, row_hash}``;
    ``row_hash`` is the SHA-256 of ``{"prev": prev_hash, "row": row with row_hash ""}`` (the Go
    system's scheme), so editing, deleting or reordering any row breaks the chain at that row.
    Each record is flushed when written (``fsync=True`` also forces it to disk), so a crash
    loses nothing already decided. Opening an existing log continues its chain.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._seq = 0
        self._prev = GENESIS
        if self.path.exists():
            last = _last_line(self.path)
            if last:
                row = json.loads(last)
                self._seq, self._prev = int(row["seq"]), str(row["row_hash"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def record(self, record: AuditRecord) -> None:
        self._seq += 1
        row: dict[str, object] = {
            "seq": self._seq,
            "occurred_at": _go_time(record.at),
            "actor": record.actor,
            "action": record.action,
            "target": record.target,
            "details": dict(sorted(record.details.items())),
            "prev_hash": self._prev,
        }
        row["row_hash"] = self._prev = _row_hash(self._prev, row)
        self._file.write(_go_json(row) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _last_line(path: Path) -> str:
    with path.open("rb") as f:
        lines = f.read().splitlines()
    return lines[-1].decode() if lines else ""


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    ok: bool
    rows: int
    line: int | None = None
    problem: str = ""


def verify_audit_log(path: str | Path) -> AuditVerdict:
    """Walk the chain; report the first row whose hash, link or sequence is wrong."""
    prev = GENESIS
    rows = 0
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                seq, row_hash, prev_hash = row["seq"], row["row_hash"], row["prev_hash"]
            except (ValueError, KeyError, TypeError):
                return AuditVerdict(False, rows, lineno, f"line {lineno}: not an audit row")
            rows += 1
            if seq != rows:
                return AuditVerdict(
                    False, rows, lineno, f"audit: seq {seq} out of order (expected {rows})"
                )
            if prev_hash != prev:
                return AuditVerdict(False, rows, lineno, f"audit: seq {seq} prev_hash mismatch")
            if _row_hash(prev, {k: v for k, v in row.items() if k != "row_hash"}) != row_hash:
                return AuditVerdict(False, rows, lineno, f"audit: seq {seq} row_hash tampered")
            prev = row_hash
    return AuditVerdict(True, rows)
