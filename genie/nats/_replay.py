"""The origin's side: the outcome records of the requests this process started, replayed in
its own ledger, so ``ask``, its partial results and the accounting identity hold there as in
one process (docs/scale-out.md, "The mapping")."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from pydantic import ValidationError

from .._base.log import lazy_logger
from .._base.nesting import MAX_DEPTH, json_depth_exceeds, loads_bounded
from .._errors import InvalidMessageError, MessageError, described, middle_cut
from .._message.envelope import Message
from .._message.payload import Payload
from .._runtime.deadletter import DeadLetter, DeadLetterKind
from .._runtime.policy import Decision

if TYPE_CHECKING:
    from .._message.types import MessageTypes
    from .._runtime.host import Correlation, TransportHost

__all__ = [
    "APPLIED_KEPT",
    "HELD_KEPT",
    "UNKNOWN",
    "OutcomeReplay",
    "Undecodable",
    "load_record",
    "record_undecodable",
    "what_it_was",
]

_log = lazy_logger("genie.nats")

# Settled correlations whose applied deliveries the entry remembers, for the records that
# still come after settling (a redelivery, a child its parent's record does not count). The
# correlations still open are never forgotten for room: their applied deliveries are what
# finishes them, and there are never more of them than requests the entry has in flight.
APPLIED_KEPT = 10_000
# Child records one correlation may hold for their parents' records: far more than a worker's
# outputs outrun its own record, and a bound on what a client of the broker can make a
# process keep by naming parents that never come.
HELD_KEPT = 1_000
# The messages a record carries sit at least one level down (its own ``message``), so a
# record whose text nests at most this deep holds no message deeper than ``MAX_DEPTH``.
_BOUNDED = MAX_DEPTH + 1
# A message sits at most four levels down in a record (in a timer's record that it carries:
# the list, the record, its replies): text deeper than this holds none a process would send.
_READABLE = MAX_DEPTH + 4
_SHAPE: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("correlation_id", str),
    ("delivery", str),
    ("agent", str),
    ("outcome", str),
    ("parent", (str, type(None))),
    ("spawned", int),
    ("answered", int),
    ("denied", list),
    ("shed", list),
    ("replies", list),
    ("limits", list),
    ("ended", list),
)
_OPTIONAL = frozenset({"answered", "limits", "ended"})


def load_record(data: bytes) -> tuple[dict[str, Any], bool]:
    """An outcome record from its JSON, and whether its text bounds every message in it to
    ``MAX_DEPTH`` (then they are parsed without walking each for depth: one check of the
    text instead of one walk per message). ValueError (not JSON, too deep to read) or
    TypeError (not shaped as a worker writes one) for bytes that are no outcome record: any
    client of the broker may publish on the outcome subject, and the origin passes them
    over."""
    text = data.decode()
    record = loads_bounded(text, _READABLE)
    _check_shape(record)
    return record, not json_depth_exceeds(text, _BOUNDED)


def _check_shape(record: object) -> None:
    """TypeError unless ``record`` has the fields ``OutcomeReplay`` routes it by, of their
    types, as ``outcome_items`` writes them (the records of the timers it carries too)."""
    if not isinstance(record, dict):
        raise TypeError(f"an outcome record is a JSON object, not {type(record).__name__}")
    for key, kinds in _SHAPE:
        if key in record or key not in _OPTIONAL:
            value = record.get(key)
            if not isinstance(value, kinds) or isinstance(value, bool):
                what = type(value).__name__ if key in record else "missing"
                raise TypeError(f"an outcome record's {key!r} cannot be {what}")
            if isinstance(value, int) and value < 0:
                # Counted as deliveries opened and answers collected: a negative one would
                # close what is still in flight, and the request would never settle.
                raise ValueError(f"an outcome record's {key!r} cannot be {value} (below 0)")
    for ended in record.get("ended", ()):
        _check_shape(ended)


class OutcomeReplay:
    """Each outcome record closes one delivery and opens the ones its handler sent
    (``spawned``), and carries the denials, sheds and replies of that delivery."""

    def __init__(self) -> None:
        self._applied: dict[str, set[str]] = {}  # correlation -> deliveries whose record is in
        # The correlations of ``_applied`` that settled here, oldest settled first: the only
        # ones forgotten for room.
        self._settled: dict[str, None] = {}
        # correlation -> the records of its children held for their parent's, each with its
        # parent and its ``bounded``
        self._held: dict[str, list[tuple[str, Mapping[str, Any], bool]]] = {}
        self._unclaimed: dict[str, int] = {}  # delivery -> its spawned not yet reported
        # Deliveries of this process's requests that it runs itself (it hosts their agent):
        # its runtime counts each one's outcome as it runs, so their records only reconcile.
        self._run_here: set[str] = set()
        self.replaying = False  # applying an outcome record (the loss notices read it)
        # The deliveries this process sent from outside a handler (a request's roots), by
        # delivery id, with their correlation, until their records come: a record with no
        # parent for any other is none of this process's (a client of the broker wrote it).
        self._roots: dict[str, str] = {}
        self._rooted: dict[str, int] = {}  # correlation -> its deliveries in ``_roots``

    @property
    def held(self) -> int:
        """The child records held for their parent's record, of every correlation."""
        return sum(len(held) for held in self._held.values())

    def awaits(self, delivery: str, correlation_id: str) -> None:
        """This process sends ``delivery`` of ``correlation_id`` from outside a handler (or
        takes up one an earlier process of its name sent): its record is awaited here."""
        if self._roots.get(delivery) != correlation_id:
            self._unroot(delivery)
            self._roots[delivery] = correlation_id
            self._rooted[correlation_id] = self._rooted.get(correlation_id, 0) + 1

    def _unroot(self, delivery: str) -> None:
        cid = self._roots.pop(delivery, None)
        if cid is not None:
            left = self._rooted.pop(cid) - 1
            if left:
                self._rooted[cid] = left

    def awaited(self, delivery: str, correlation_id: str) -> bool:
        """Whether this process sent ``delivery`` of ``correlation_id`` (from outside a
        handler) and awaits its record."""
        return self._roots.get(delivery) == correlation_id

    def awaits_no_more(self, delivery: str) -> None:
        """``delivery`` never reached the stream: no record of it comes (nor of its
        children, if it was its correlation's last root and none of it was applied)."""
        cid = self._roots.get(delivery)
        self._unroot(delivery)
        if cid is not None and cid not in self._rooted and cid not in self._applied:
            self._held.pop(cid, None)

    def recorded(self, correlation_id: str, delivery: str) -> bool:
        """Whether the outcome record of ``delivery`` was applied here (while its correlation
        is open, and for the last ``APPLIED_KEPT`` settled): its outcome is counted, once."""
        return delivery in self._applied.get(correlation_id, ())

    def runs_here(self, delivery: str) -> None:
        """This process runs ``delivery``, one of the requests it started: its runtime counts
        the outcome, the denials and the sheds as the delivery runs, and counts what it sends
        delivered as it sends it, so its record adds none of that again."""
        self._run_here.add(delivery)

    def settle(
        self,
        host: TransportHost,
        record: Mapping[str, Any],
        bounded: bool = False,
        seq: int | None = None,
    ) -> None:
        """Apply ``record``, once the record of the delivery that sent it is applied (a worker
        publishes its outcome and its outputs at once, so a child's record may come first:
        applied before its parent's, it could close the correlation early). ``bounded``: its
        messages are known to nest at most ``MAX_DEPTH`` (``load_record``); ``seq``: its
        sequence in the outcome stream, for the log."""
        cid = record["correlation_id"]
        parent = record.get("parent")
        if parent is not None and parent not in self._applied.get(cid, ()):
            self._hold(cid, parent, record, bounded, seq)
            return
        ready = [(record, bounded)]
        corr = None
        while ready:
            rec, rec_bounded = ready.pop()
            try:
                applied = self._apply(host, rec, rec_bounded)
            except (ValueError, TypeError, KeyError, MessageError) as exc:
                # Shaped as a record and carrying what no worker writes: passed over, and
                # the children held for its delivery wait for the genuine record.
                _log.error(
                    "outcome record of delivery %s passed over: %s",
                    middle_cut(str(rec["delivery"]), 200),
                    described(exc),
                )
                continue
            corr = applied or corr
            # The timers its handler withdrew, whose records ride in it: settled with it, so
            # a waiter that takes a reply it carries finds none of them still in flight.
            # (Their messages nest deeper than its own: its ``bounded`` bounds them too.)
            for ended in rec.get("ended", ()):
                self.settle(host, ended, rec_bounded)
            ready += self._children(rec["correlation_id"], rec["delivery"])
        if corr is not None:
            self._settled.pop(cid, None)  # open again, or settled just now: last in line
            if host.settled(corr):
                self._settled[cid] = None
        # Kept after the correlation settles (a record its parent's does not count may still
        # come, see ``_replay``), for the last APPLIED_KEPT settled; the children held of one
        # forgotten go with it, as no parent's record of it is applied any more.
        while len(self._settled) > APPLIED_KEPT:
            forgotten = next(iter(self._settled))
            del self._settled[forgotten], self._applied[forgotten]
            if forgotten not in self._rooted:
                self._held.pop(forgotten, None)

    def _hold(
        self, cid: str, parent: str, record: Mapping[str, Any], bounded: bool, seq: int | None
    ) -> None:
        """Hold ``record`` for its parent's: only of a correlation this process started (it
        awaits a root of it, or applied a record of it), and at most ``HELD_KEPT`` of one."""
        where = "-" if seq is None else str(seq)
        if cid not in self._rooted and cid not in self._applied:
            _log.error(
                "outcome record %s of delivery %s passed over: its parent %s is of no "
                "request this process started",
                where,
                middle_cut(str(record["delivery"]), 200),
                middle_cut(parent, 200),
            )
            return
        held = self._held.setdefault(cid, [])
        if len(held) >= HELD_KEPT:
            _log.warning(
                "outcome record %s of delivery %s passed over: correlation %s holds %s "
                "records for their parents' already",
                where,
                middle_cut(str(record["delivery"]), 200),
                middle_cut(cid, 80),
                f"{HELD_KEPT:,}",
            )
            return
        held.append((parent, record, bounded))

    def _children(self, cid: str, delivery: str) -> list[tuple[Mapping[str, Any], bool]]:
        """The records held of ``cid`` for ``delivery``'s, no longer held."""
        held = self._held.get(cid)
        if not held:
            return []
        children = [(rec, b) for parent, rec, b in held if parent == delivery]
        if children:
            kept = [h for h in held if h[0] != delivery]
            if kept:
                self._held[cid] = kept
            else:
                del self._held[cid]
        return children

    def _apply(
        self, host: TransportHost, record: Mapping[str, Any], bounded: bool
    ) -> Correlation | None:
        """Replay ``record``; the correlation it was counted in (None: applied already)."""
        self.replaying = True
        try:
            return self._replay(host, record, bounded)
        finally:
            self.replaying = False

    def _replay(
        self, host: TransportHost, record: Mapping[str, Any], bounded: bool
    ) -> Correlation | None:
        # Everything it carries is read before any of it is acted on: a record of the right
        # shape that carries no message a worker wrote (any client of the broker may publish
        # on the outcome subject) is refused whole, never half applied.
        carried = _Carried.read(host.types, record, bounded)
        cid, delivery = record["correlation_id"], record["delivery"]
        if delivery in self._applied.get(cid, ()):
            # Its delivery ran again where its first record was out already (a timer a fan-in
            # set again after its worker's kill, a delivery run again past the stream's
            # duplicate window): one delivery, one outcome.
            return None
        parent = record.get("parent")
        if parent is None:
            if not self.awaited(delivery, cid):
                self._run_here.discard(delivery)  # ran here, sent by none of this process
                raise ValueError(
                    f"no delivery of correlation {middle_cut(cid, 80)} this process sent and "
                    "awaits the outcome of"
                )
            self._unroot(delivery)
        self._applied.setdefault(cid, set()).add(delivery)
        ran_here = delivery in self._run_here
        self._run_here.discard(delivery)
        corr = host.correlation(cid)
        if parent is not None:
            left = self._unclaimed.get(parent, 0)
            if left > 1:
                self._unclaimed[parent] = left - 1
            elif left == 1:
                del self._unclaimed[parent]
            else:
                # A delivery its parent's record does not count (that record is the dead
                # letter of a worker that died after sending it): open it now, so the
                # count stays exact.
                host.opened(corr)
        spawned = int(record["spawned"])
        if spawned:
            self._unclaimed[delivery] = spawned
        answered = int(record.get("answered", 0))  # collected by the asker's waiter
        if ran_here:
            host.ran_here(corr, spawned, answered)
            return corr
        for msg, consumer, decision, notify in carried.denied:
            host.denied(msg, consumer, corr, decision, notify=notify)
        for msg, consumer, reason in carried.shed:
            host.shed(msg, consumer, corr, reason)
        for limit, agent, reason in carried.limits:
            assert carried.message is not None  # ``read`` refuses limits without it
            host.limit_fired(limit, agent, carried.message, reason)
        for reply in carried.replies:
            host.reply_arrived(reply, corr)
        if answered:
            host.collected(corr, answered)
        if spawned:
            host.opened(corr, spawned)
        if record["outcome"] == "handled":
            host.handled(corr)
            return corr
        if carried.message is None:  # undecodable on arrival: no message to keep
            about, text = record.get("about") or {}, str(record.get("raw", ""))
            record_undecodable(host, record["agent"], about, record, text, corr)
            return corr
        host.dead_lettered(
            record["agent"],
            carried.message,
            corr,
            record["kind"],
            record["reason"],
            int(record["attempts"]),
            record.get("error_type"),
            tuple(record.get("tracebacks", ())),
        )
        return corr


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"an outcome record's {what} cannot be {type(value).__name__}")
    return value


def _entries(record: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    entries = record.get(key, ())
    for entry in entries:
        if not isinstance(entry, dict):
            raise TypeError(f"an outcome record's {key!r} holds a {type(entry).__name__}")
    return list(entries)


_KINDS = frozenset(get_args(DeadLetterKind))


@dataclass(frozen=True, slots=True)
class _Carried:
    """What an outcome record carries beyond its counts, read (every message parsed, every
    field of its type) before the record is acted on."""

    denied: list[tuple[Message, str, Decision, bool]]
    shed: list[tuple[Message, str, str]]
    limits: list[tuple[str, str, str]]
    replies: list[Message]
    message: Message | None

    @classmethod
    def read(cls, types: MessageTypes, record: Mapping[str, Any], bounded: bool) -> _Carried:
        """ValueError, TypeError, KeyError or MessageError for anything no worker writes."""
        parse: Callable[[Any], Message]
        parse = types.parse_bounded_message if bounded else types.parse_message
        denied = []
        for d in _entries(record, "denied"):
            decision = Decision.deny(_text(d["policy"], "policy"), _text(d["reason"], "reason"))
            notify = d.get("notify", True)
            if not isinstance(notify, bool):
                raise TypeError(f"an outcome record's notify cannot be {type(notify).__name__}")
            denied.append((parse(d["message"]), _text(d["consumer"], "consumer"), decision, notify))
        shed = [
            (parse(s["message"]), _text(s["consumer"], "consumer"), _text(s["reason"], "reason"))
            for s in _entries(record, "shed")
        ]
        limits = [
            (_text(f["limit"], "limit"), _text(f["agent"], "agent"), _text(f["reason"], "reason"))
            for f in _entries(record, "limits")
        ]
        replies = [parse(reply) for reply in record["replies"]]
        message = None if record.get("message") is None else parse(record["message"])
        if limits and message is None:
            raise KeyError("an outcome record with limits carries their message")
        if record["outcome"] != "handled":
            if record["outcome"] != "dead_lettered":
                raise ValueError(f"an outcome record's outcome cannot be {record['outcome']!r}")
            _text(record["reason"], "reason")
            if message is None:  # undecodable on arrival: what it says of the delivery
                about = record.get("about") or {}
                if not isinstance(about, dict) or not all(
                    isinstance(v, str) for v in about.values()
                ):
                    raise TypeError("an outcome record's 'about' maps names to text")
            else:
                if record["kind"] not in _KINDS:
                    raise ValueError(f"an outcome record's kind cannot be {record['kind']!r}")
                attempts = record["attempts"]
                if not isinstance(attempts, int) or isinstance(attempts, bool):
                    raise TypeError("an outcome record's attempts is a whole number")
                if not isinstance(record.get("error_type"), (str, type(None))):
                    raise TypeError("an outcome record's error_type is text or null")
                tracebacks = record.get("tracebacks", [])
                if not isinstance(tracebacks, list):
                    raise TypeError("an outcome record's tracebacks is a list")
                for line in tracebacks:
                    _text(line, "traceback")
        return cls(denied, shed, limits, replies, message)


class Undecodable(Payload):
    """The message of the dead letter of a delivery its worker could not read: the
    delivery's text as it came, and the message type it names (``<undecodable>`` where it
    names none). Its envelope has the message's id and sender as far as the text shows them."""

    message_type = "genie.undecodable"

    text: str
    declared_type: str


def record_undecodable(
    host: TransportHost,
    agent: str,
    about: Mapping[str, str],
    record: Mapping[str, Any],
    text: str,
    corr: Correlation | None = None,
) -> DeadLetter:
    """An undecodable delivery for ``agent`` in a process's dead letters, its dead-letter
    metric and its audit log (the row names the message as the text shows it), as one
    process keeps an invalid delivery; ``record`` is the worker's outcome record of it.
    ``corr``: at the origin, where the delivery was in flight: this dead letter is its
    outcome, and its waiters hear why it failed."""
    reason = record["reason"]
    message_id = about.get("message_id") or record["delivery"]
    sender = about.get("sender") or UNKNOWN
    details = {
        "message_id": message_id,
        "message_type": about.get("message_type") or UNKNOWN,
        "sender": sender,
        "correlation_id": record["correlation_id"],
        "reason": reason,
    }
    payload = Undecodable(text=text, declared_type=details["message_type"])
    try:
        msg = Message(
            id=message_id,
            sender=sender,
            recipient=agent,
            correlation_id=record["correlation_id"],
            payload=payload,
        )
    except (ValidationError, InvalidMessageError):  # ids or a sender the envelope refuses:
        # the payload keeps them
        msg = Message(sender=UNKNOWN, recipient=agent, payload=payload)
    return host.unreadable(agent, msg, reason, details, corr)


UNKNOWN = "<undecodable>"


def what_it_was(text: str, delivery: str) -> dict[str, str]:
    """What can be read of an undecodable delivery for its audit row: its message's id
    (else the one in its delivery id), type and sender, each where it is a string."""
    about = {"message_id": delivery.rsplit(":", 1)[0]}
    if json_depth_exceeds(text, MAX_DEPTH + 1):
        return about  # too deep to load safely: nothing more is read
    try:
        data = json.loads(text)
    except ValueError:
        return about
    msg = data.get("message") if isinstance(data, dict) else None
    if isinstance(msg, dict):
        for key, field in (("message_id", "id"), ("message_type", "type"), ("sender", "sender")):
            if isinstance(msg.get(field), str):
                about[key] = msg[field]
    return about
