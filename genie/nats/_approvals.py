"""Approvals across processes: the desk a worker hosts lists its pending approvals in the
namespace's KV bucket ``GENIE_<NS>_APPROVALS``, and people answer them there from any process
(``genie approvals ... --nats``, docs/durability.md "On NATS: approvals").

Keys, each the hash of an approval's id (ids have characters a key may not):

- ``pending.<id>``: the approval's request message, as the desk's worker has it pending, and
  ``escalated``: whether the desk has offered it to its ``escalate_to`` role (the role that
  may answer it now; the request alone names the first). The worker writes one when its desk
  takes a request, again when the desk escalates it, and deletes it when the desk decides or
  forgets it (its request cancelled); it is
  a list for people and for the entry process (a request waiting for a person is not cancelled
  when its caller's wait ends), not the desk's state: a killed worker's desk is rebuilt from
  what it took (``_held``), and the list is written again from the rebuilt desk.
- ``answer.<id>.<n>``: a person's answer, left by any process, under a key of its own (two
  people answering at once never write one key). The worker hosting the desk takes it while
  the approval is pending there (the answer is then a message from that person to the desk,
  judged by the policies and audited, as in one process). What became of it (``outcome``) is
  written into the same key once the desk has decided the approval (or the answer was
  refused), which the answering process reads and deletes. Until then the answer stays as it
  was left, so a worker started after a kill that cut the answer short takes it again: an
  answer reaches the desk at least once, and the desk decides on the first. An answer for an
  approval neither pending nor listed is refused, as decided already or unknown, and audited
  (``Approvals.answer_left``); an outcome nobody came back for is deleted ``KEPT`` seconds
  after the answer; an entry that is not an answer (written by hand) is refused, not taken.

The worker writes an entry only over the revision it read (a newer write wins), and a NATS
error while it looks for answers is logged and looked at again on the next poll.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from .._base.log import lazy_logger
from .._base.nesting import loads_bounded
from .._errors import ConfigurationError, described
from .._message.envelope import Message
from .._runtime.transport import Answer
from ._wire import Bucket, bound, message_json

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

__all__ = ["NatsApprovals", "listing"]

_DELETED = ("DEL", "PURGE")
# What the desk tells a person of an answer (approval id, by, approved), once it decided.
Told = Callable[[str, str, bool], str | None]
_log = lazy_logger("genie.nats")
POLL = 0.25  # seconds between looks for answers, once the desk here is listed
KEPT = 24 * 3600.0  # seconds an answer's outcome nobody came back for stays (from ``at``)


def _key(kind: str, approval_id: str) -> str:
    return f"{kind}.{hashlib.sha256(approval_id.encode()).hexdigest()[:40]}"


def _answer_of(value: bytes) -> dict[str, Any] | None:
    """An answer entry as ``NatsApprovals.answer`` leaves it (None: anything else)."""
    try:
        body = json.loads(value)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    fields = (body.get("approval_id"), body.get("by"), body.get("reason", ""))
    roles = body.get("roles", [])
    if not (
        all(isinstance(f, str) for f in fields)
        and isinstance(body.get("approved"), bool)
        and isinstance(roles, list)
        and all(isinstance(r, str) for r in roles)
        and isinstance(body.get("at", 0.0), int | float)
    ):
        return None
    return body


def listing(request: Message, escalated: bool) -> str:
    """The entry ``pending.<id>`` of the approval ``request`` asked, ``escalated`` or not."""
    return json.dumps({**message_json(request), "escalated": escalated}, separators=(",", ":"))


def _not_written(bucket: str, key: str, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"a pending approval that genie did not write: {bucket} {key}: {what}"
    )


class NatsApprovals:
    """The namespace's approvals bucket (``transport.approvals``)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._store = Bucket(bucket)
        self._listed: dict[str, str] = {}  # the desk here: approval id -> its request's JSON
        self._read = False  # whether ``_listed`` has what the bucket listed before this process
        self._waiting: dict[str, set[str]] = {}  # followed: correlation -> approvals pending
        self._sent: dict[str, bytes] = {}  # the desk here: answers sent it, key -> as left

    async def bind(self, js: JetStreamContext) -> None:
        """Create the bucket if it is not there (no expiry: a person may take days)."""
        await self._store.make(js)

    async def open(self, js: JetStreamContext) -> bool:
        """Open the bucket if it is there (False: no desk has run in the namespace)."""
        return await self._store.open(js)

    def _bucket(self) -> KeyValue:
        return self._store.kv

    async def _entries(self, kind: str) -> list[tuple[str, bytes]]:
        return await self._store.entries(f"{kind}.>")

    # --- any process: people's side --------------------------------------------------------
    async def pending(self) -> list[dict[str, Any]]:
        """The pending approvals' request messages (as JSON objects), oldest first; a
        one-line ConfigurationError for an entry no desk wrote (not JSON, not an object), as
        for a store's row (``genie approvals list`` says it, and lists nothing)."""
        requests = []
        for key, value in await self._entries("pending"):
            try:
                request = loads_bounded(value.decode())
            except ValueError as exc:
                raise _not_written(self.bucket, key, described(exc)) from None
            if not isinstance(request, dict):
                raise _not_written(self.bucket, key, f"a JSON {type(request).__name__}")
            requests.append(request)
        return sorted(requests, key=lambda m: str(m.get("created_at", "")))

    async def answer(
        self, approval_id: str, approved: bool, by: str, roles: tuple[str, ...], reason: str
    ) -> str:
        """Leave ``by``'s answer for the desk's worker; the answer's key, for ``outcome``."""
        body = {"approval_id": approval_id, "approved": approved, "by": by}
        body |= {"roles": list(roles), "reason": reason, "at": time.time()}
        key = f"{_key('answer', approval_id)}.{uuid.uuid4().hex}"
        await self._bucket().create(key, json.dumps(body).encode())
        return key

    async def outcome(self, answer: str) -> str | None:
        """What became of the answer ``answer`` (the key ``answer()`` gave; None: its approval
        is not decided yet); read once: a decided answer is deleted."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        try:
            entry = await self._bucket().get(answer)
        except KeyNotFoundError:
            return None
        try:
            body = json.loads(entry.value or b"{}")
        except ValueError:  # written over by hand: the worker marks it, and it is read then
            return None
        outcome = body.get("outcome") if isinstance(body, dict) else None
        if outcome is not None:
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self._bucket().delete(answer, last=entry.revision)
        return None if outcome is None else str(outcome)

    # --- the worker hosting the desk ---------------------------------------------------------
    async def list_pending(self, requests: Iterable[tuple[str, str]]) -> set[str]:
        """Make the bucket's list the desk's: ``requests`` are its pending approvals' ids and
        entries (``listing``); the ids no longer pending. An entry that changed (escalated) is
        written again. The first call also deletes what a killed worker listed and its
        rebuilt desk no longer has."""
        if not self._read:
            for key, value in await self._entries("pending"):
                try:
                    self._listed[str(json.loads(value)["id"])] = value.decode()
                except (ValueError, KeyError, TypeError):  # not the desk's: not listed by it
                    _log.warning("approvals bucket %s: entry %r is not ours", self.bucket, key)
                    await self._bucket().delete(key)
            self._read = True
        now = dict(requests)
        kv = self._bucket()
        for approval_id, body in now.items():
            if self._listed.get(approval_id) != body:
                await kv.put(_key("pending", approval_id), body.encode())
        gone = self._listed.keys() - now.keys()
        for approval_id in gone:
            await kv.delete(_key("pending", approval_id))
        self._listed = now
        return gone

    async def decided(self, approval_ids: Iterable[str], told: Told) -> None:
        """Tell the answers left for the approvals the desk here decided (or whose decision
        a withdrawal crossed) what became of them, in the desk's words (``told``: the desk's
        ``ApprovalDesk.told``), before the deciding delivery is acked: a kill before it has
        the desk decide again."""
        for approval_id in approval_ids:
            # Retried through a broker's restart: written at the revision read, so once.
            tell = functools.partial(self._decided, approval_id, told)
            await bound(f"tell the answers to {approval_id}", tell)

    async def _decided(self, approval_id: str, told: Told) -> None:
        """Each answer left for ``approval_id``: the answerer's own word, or, when the desk
        decided otherwise first (another person, the deadline, the asker withdrawing), the
        decision that was made. An answer told it decided, whose asker's withdrawal crossed
        it since, is told again that it was refused, if its answerer has not read it yet."""
        for key, value in await self._entries(_key("answer", approval_id)):
            self._sent.pop(key, None)
            body = _answer_of(value)
            if body is None:
                continue
            outcome = told(approval_id, body["by"], body["approved"])
            if outcome is None or outcome == body.get("outcome"):
                continue  # forgotten by the desk (taken again as not pending), or told so
            if body.get("outcome", "approved") not in ("approved", "rejected"):
                continue  # refused before it reached the desk: that stands
            await self._settle(key, value, body | {"outcome": outcome})

    async def _settle(self, key: str, value: bytes, body: dict[str, Any] | None) -> None:
        """Write ``body`` (None: delete) over the entry ``key`` if it still is ``value``."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        kv = self._bucket()
        with contextlib.suppress(KeyNotFoundError, KeyWrongLastSequenceError):
            entry = await kv.get(key)
            if entry.value != value:
                return  # written since it was read: a newer write wins
            if body is None:
                await kv.delete(key, last=entry.revision)
            else:
                await kv.update(key, json.dumps(body).encode(), last=entry.revision)

    async def take_answers(self, answer: Answer, relist: Callable[[], Awaitable[None]]) -> None:
        """Forever: hand the answers people left to ``answer``, each once; a refused one's
        outcome is written at once, a sent one's when the desk decides (``decided``). Each
        look first ``relist``s: the desk forgets an approval whose request was cancelled
        without a delivery to it (no deadline to tell it), and the list follows."""
        from nats.errors import Error as NatsError

        while True:
            await anyio.sleep(POLL)
            # Looked for while nothing is pending here too: an answer left just after the
            # decision (its answerer listed the approval before it) is refused then. Not
            # before the desk here is listed: one a killed worker listed waits for it.
            if not self._read:
                continue
            try:
                await relist()
                await self._take(answer)
            except (NatsError, TimeoutError) as exc:  # the broker away: look again next time
                _log.warning("approvals bucket %s: %r; looking again", self.bucket, exc)

    async def _take(self, answer: Answer) -> None:
        now = time.time()
        for key, value in await self._entries("answer"):
            if self._sent.get(key) == value:
                continue  # sent from here already: its outcome comes with the decision
            body = _answer_of(value)
            if body is None:
                _log.warning("approvals bucket %s: entry %r is not an answer", self.bucket, key)
                await self._settle(key, value, {"outcome": "refused: not an answer"})
                continue
            old = now - float(body.get("at", 0.0)) > KEPT
            if "outcome" in body:
                if old:  # nobody came back for it
                    await self._settle(key, value, None)
                continue
            approval_id = body["approval_id"]
            if not key.startswith(_key("answer", approval_id) + "."):
                await self._settle(key, value, body | {"outcome": "refused: not an answer"})
                continue
            outcome = answer(
                approval_id,
                body["approved"],
                body["by"],
                tuple(body.get("roles", ())),
                body.get("reason", ""),
                float(body["at"]) if isinstance(body.get("at"), int | float) else None,
                approval_id in self._listed,  # listed, not pending here: taken when it is
            )
            if outcome is None:  # listed, not pending here yet
                continue
            if isinstance(outcome, str):  # refused before it reached the desk: told at once
                await self._settle(key, value, body | {"outcome": outcome})
            else:
                self._sent[key] = value

    # --- the entry process: which of its requests wait for a person ---------------------------
    def waits(self, correlation_id: str) -> bool:
        """Whether an approval of ``correlation_id`` is pending (as followed)."""
        return bool(self._waiting.get(correlation_id))

    async def follow(self, js: JetStreamContext) -> None:
        """Keep which correlations have approvals pending, from the bucket's list."""
        from nats.js.api import DeliverPolicy

        prefix = f"$KV.{self.bucket}.pending."
        sub = await bound(
            f"follow the approvals bucket {self.bucket}",
            lambda: js.subscribe(
                f"{prefix}>",
                stream=f"KV_{self.bucket}",
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                idle_heartbeat=1.0,
            ),
        )
        by_key: dict[str, str] = {}
        try:
            async for raw in sub.messages:
                key = raw.subject[len(prefix) :]
                if (raw.headers or {}).get("KV-Operation") in _DELETED:
                    cid = by_key.pop(key, None)
                    if cid is not None:
                        self._waiting.get(cid, set()).discard(key)
                    continue
                try:
                    cid = str(json.loads(raw.data)["correlation_id"])
                except (ValueError, KeyError, TypeError):
                    _log.warning("approvals bucket %s: entry %r is not ours", self.bucket, key)
                    continue
                by_key[key] = cid
                self._waiting.setdefault(cid, set()).add(key)
        finally:
            await sub.unsubscribe()
