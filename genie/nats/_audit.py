"""The audit log of a namespace as a JetStream stream, hash-chained in stream order.

Every process that writes appends rows to one stream; each row is a ``JsonlAuditLog`` row
(the same fields and hash), and the chain is the stream's order: a row is published only if
the stream's last sequence is still the one whose hash it links to
(``Nats-Expected-Last-Sequence``), so writers in many processes interleave in one valid
chain, as writers of one JSONL file do under its lock. ``genie audit verify
nats://HOST:PORT/NAMESPACE`` walks it with the JSONL log's checks (docs/scale-out.md).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

import anyio

from .._base.log import lazy_logger
from .._errors import middle_cut
from .._runtime.audit import (
    GENESIS,
    AuditLogError,
    AuditRecord,
    chained_row,
    check_audit_key,
    row_line,
    row_to_continue,
)
from ._run import less_kept
from ._wire import MSG_ID, header_bytes

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

__all__ = ["NatsAuditLog", "read_chain", "row_id_of"]

_log = lazy_logger("genie.nats")
EXPECTED_LAST = "Nats-Expected-Last-Sequence"
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code: another writer appended first


class NatsAuditLog:
    """An ``AuditSink`` whose rows go to ``stream`` (subject ``subject``), chained there.

    ``record`` is synchronous (as every sink's): it queues the record, and ``run`` (a task
    ``NatsTransport`` starts) appends the queue in order; ``drain`` appends what is left, and
    returns once every record queued before it was called is in the stream (a delivery that
    made records waits for it before its ack; ``NatsTransport.close`` calls it, so a run's
    records are all written before it ends).
    A row over the broker's max_payload (``max_payload`` reads it) is written with its long
    details cut (``fitted_row``): refused, it would be retried for ever, and no row after it
    written.
    """

    def __init__(
        self,
        stream: str,
        subject: str,
        *,
        key: bytes | None = None,
        max_payload: Callable[[], int] = lambda: 1 << 20,
    ) -> None:
        self.stream, self.subject = stream, subject
        self._max_payload = max_payload
        self._key = None if key is None else check_audit_key(key, "given")
        self._queue: deque[tuple[str, AuditRecord]] = deque()
        self._wake = anyio.Event()
        self._appending = anyio.Lock()  # one appender at a time: the queue's head is its own
        self._tail: tuple[int, int, str] | None = None  # stream seq, row seq, row hash
        self.written = 0

    @property
    def queued(self) -> int:
        """Records not written yet."""
        return len(self._queue)

    def record(self, record: AuditRecord, row_id: str | None = None) -> None:
        """Queue ``record``. ``row_id`` (``row_id_of``): its id for the broker, which drops a
        second row of that id within its duplicate window; a new one when None. Either way
        the id is the record's for good: a publish retried after a lost ack is dropped."""
        self._queue.append((row_id or uuid.uuid4().hex, record))
        self._wake.set()

    async def run(self, js: JetStreamContext) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.drain(js)

    async def drain(self, js: JetStreamContext) -> None:
        """Append every record queued before the call, in order: those queued since (rows
        other deliveries make meanwhile) are the next drain's, so that a delivery waits for
        its own rows, not for others' as long as they come."""
        until = self.written + len(self._queue)  # the queue is first in, first written
        async with self._appending:
            while self.written < until:
                await self._append(js, *self._queue[0])
                self._queue.popleft()
                self.written += 1

    async def _append(self, js: JetStreamContext, msg_id: str, record: AuditRecord) -> None:
        from nats.errors import Error as NatsError
        from nats.js.errors import APIError

        delay = 0.05
        while True:
            try:
                if self._tail is None:
                    self._tail = await _last_row(js, self.stream, self._key)
                last_seq, seq, prev = self._tail
                headers = {MSG_ID: msg_id, EXPECTED_LAST: str(last_seq)}
                room = self._max_payload() - header_bytes(headers)
                row = fitted_row(record, seq + 1, prev, self._key, room)
                ack = await js.publish(self.subject, row_line(row), headers=headers)
            except APIError as exc:
                self._tail = None  # another writer appended first: link to its row
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    continue
                _log.warning("audit stream %s: %s; retrying", self.stream, exc)
            except (NatsError, TimeoutError) as exc:
                self._tail = None
                _log.warning("audit stream %s: %s; retrying", self.stream, exc)
            else:
                # A duplicate is this record, already in (its first ack was lost).
                self._tail = None if ack.duplicate else (ack.seq, seq + 1, row["row_hash"])
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)


def row_id_of(delivery_id: str, index: int, record: AuditRecord) -> str:
    """The id of the ``index``-th row a delivery's handler makes, ``record``: the same when
    the delivery runs again after a kill and makes the same row in the same place (the time
    it was made aside), so that the broker writes it once; no other row has it."""
    made = [delivery_id, index, record.actor, record.action, record.target]
    made.append(sorted(record.details.items()))
    return hashlib.sha256(json.dumps(made).encode()).hexdigest()[:32]


def fitted_row(
    record: AuditRecord, seq: int, prev: str, key: bytes | None, room: int
) -> dict[str, Any]:
    """``record`` as row ``seq`` (``chained_row``) whose line is at most ``room`` bytes where
    its details can make it so: each detail over the characters kept keeps its two ends (the
    text says how many it lost), fewer until the line fits, and the detail ``cut`` names
    those cut. The row is hashed as written: the chain verifies."""
    row = chained_row(record, seq, prev, key)
    kept = max((len(v) for v in record.details.values()), default=0)
    while len(row_line(row)) > room and kept > 0:
        longer = sum(1 for value in record.details.values() if len(value) >= kept)
        kept = less_kept(kept, longer, len(row_line(row)), room)
        details = {name: middle_cut(value, kept) for name, value in record.details.items()}
        cut = sorted(name for name, value in record.details.items() if len(value) > kept)
        row = chained_row(record.replace(details={**details, "cut": ",".join(cut)}), seq, prev, key)
    return row


async def _last_row(js: JetStreamContext, stream: str, key: bytes | None) -> tuple[int, int, str]:
    """The stream's last sequence, and the seq and hash of the row there, which the next row
    links to. A row no writer of the chain made (bytes anyone published on the subject) is
    refused, as a log file's unreadable last line is: a row linked past it would hide it."""
    last = (await js.stream_info(stream)).state.last_seq
    if last == 0:
        return 0, 0, GENESIS
    try:
        row = row_to_continue((await js.get_msg(stream, last)).data or b"", key)
    except ValueError as exc:
        raise AuditLogError(
            f"cannot continue audit stream {stream}: sequence {last}: {exc} "
            "(genie audit verify nats://HOST:PORT/NAMESPACE shows the whole chain)"
        ) from None
    return last, row["seq"], row["row_hash"]


async def read_chain(js: JetStreamContext, stream: str) -> list[bytes]:
    """The stream's rows in stream order, as JSONL lines: line N is stream sequence N (a
    removed row is an empty line; the check of the next row finds it missing)."""
    from nats.js.errors import NotFoundError

    state = (await js.stream_info(stream)).state
    lines: list[bytes] = []
    for seq in range(1, state.last_seq + 1):
        try:
            data = (await js.get_msg(stream, seq)).data or b""
        except NotFoundError:
            data = b""  # deleted (or aged out): the next row's link breaks
        lines.append(data.rstrip(b"\n") + b"\n")
    return lines


@contextmanager
def as_file(lines: list[bytes]) -> Iterator[Path]:
    """``lines`` in a temporary JSONL file (for ``verify_audit_log``, whose line numbers are
    then the stream's sequence numbers)."""
    with TemporaryDirectory(prefix="genie-audit-") as tmp:
        path = Path(tmp) / "audit.jsonl"
        path.write_bytes(b"".join(lines))
        yield path
