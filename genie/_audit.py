"""The audit trail: every deny, every dead letter and every limit that fires is recorded."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["AuditRecord", "AuditSink", "MemoryAuditLog"]


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
