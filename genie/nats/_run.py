"""A delivery a worker runs, seen from the worker: what its handler's outputs became
(renamed to ids derived from the delivery, denied, shed, replies, its dead letter), and the
outcome record that carries all of it to the process that started the request, exactly once
(docs/scale-out.md, "The mapping")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._errors import ConfigurationError, middle_cut
from .._message.envelope import Message
from .._runtime.deadletter import DeadLetter
from .._runtime.local.mailbox import Handoff
from .._runtime.observe.observer import Observer
from .._runtime.transport import Delivery, delivery_id
from ._names import NatsNames
from ._wire import MSG_ID, Item, derived_id, message_json

__all__ = [
    "ID_CHARS",
    "MIN_MAX_PAYLOAD",
    "Recorder",
    "Run",
    "answer_of",
    "fitted",
    "less_kept",
    "need_max_payload",
    "outcome_items",
]

ID_CHARS = 200  # of each id a record keeps where it cuts them (its two ends)
LEAST_ID_CHARS = 16  # where even that is too long for the broker's limit
# The least max_payload genie takes: a record cut as far as ``fitted`` cuts (every id to
# LEAST_ID_CHARS, its text and notes to nothing) fits in it with its header block, whatever
# the delivery carried; and so does an ordinary message with its headers.
MIN_MAX_PAYLOAD = 4096


@dataclass
class Run:
    """One delivery a worker is running: what its handler's outputs became."""

    delivery: Delivery
    origin: str
    parent: str | None
    request: bool = False  # its message is a ``ctx.request``: the answer goes to the asker
    outbox: list[tuple[Message, str]] = field(default_factory=list)
    # The outputs (by their ids as sent) whose sender watches for their reply: published
    # marked so, for the worker that runs them to watch them (``Runtime.watch_reply``).
    watched: set[str] = field(default_factory=set)
    renamed: dict[str, str] = field(default_factory=dict)
    derived: set[str] = field(default_factory=set)
    denied: list[dict[str, Any]] = field(default_factory=list)
    shed: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    dead: DeadLetter | None = None
    handoffs: list[Handoff] = field(default_factory=list)
    # Its keys in the worker's running map (its delivery, its handoffs' deliveries): dropped
    # when it ends, without scanning a map as large as the worker's concurrency.
    keys: list[str] = field(default_factory=list)
    # Requests its handler sent (published at once) and timers it set (reported when they
    # end): deliveries it opened besides its outputs.
    asked: int = 0
    asking: list[anyio.Event] = field(default_factory=list)  # set once each request is out
    answered: int = 0  # its answer reached the asker's waiter (a collected reply)
    limits: list[dict[str, str]] = field(default_factory=list)  # model budgets that fired
    # Whether an output's id is the worker runtime's own, renamed to one derived from the
    # delivery (so that the delivery run again sends the same ids); an id its handler chose
    # is the same in every run already, and the handler may be waiting for replies to it.
    minted: Callable[[str], bool] = lambda _: True
    timers_ended: list[Run] = field(default_factory=list)  # timers its handler withdrew
    rows: int = 0  # audit rows its handler made itself (``row_id_of``)
    # The start of the worker that took it again from the held bucket (the desk rebuilding
    # its pending approvals), or None. Such a run replays what was handled before the stop,
    # and its rows repeat those the delivery made then, but for the approval taken up again:
    # news of this start, as each start's is of its own.
    retaken: str | None = None

    def rename(self, msg: Message) -> Message:
        if msg.id in self.derived or not self.minted(msg.id):  # renamed already, or chosen
            return msg
        new = self.renamed.get(msg.id)
        if new is None:
            new = self.renamed[msg.id] = derived_id(self.delivery.id, len(self.renamed))
            self.derived.add(new)
        return msg.model_copy(update={"id": new})


class Recorder(Observer):
    """Sees, in a worker, what happens to the outputs of the deliveries it runs."""

    never_raises = True

    def __init__(self, running: Mapping[str, Run], run_of: Callable[[Message], Run | None]) -> None:
        self.running = running  # by delivery id
        self.run_of = run_of  # the running delivery a message is an output of

    def carrier(self, told: str, action: str, msg: Message, agent_id: str | None) -> Run | None:
        """The running delivery whose outcome record carries what the observers are told
        (``told``: their call, ``denied``, ``dead_lettered`` or ``limit_fired``; ``action``: its
        audit row's) to the process that started it; None where none does."""
        if told == "limit_fired":
            return self.running.get(delivery_id(msg, agent_id or "-"))
        if told == "denied":
            return self.run_of(msg)
        kind = action.removeprefix("dead_letter:")
        if agent_id is not None and kind in ("failed", "cancelled"):
            own = self.running.get(delivery_id(msg, agent_id))
            if own is not None:
                return own
        return self.run_of(msg) if kind in ("unrouted", "shed") else None

    def limit_fired(self, msg: Message, agent_id: str, limit: str, reason: str) -> None:
        run = self.carrier("limit_fired", "limit_fired", msg, agent_id)
        if run is not None:  # the origin writes it to its audit log, as it does denials
            run.limits.append({"limit": limit, "reason": reason, "agent": agent_id})

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        run = self.carrier("denied", "denied", msg, agent_id)
        if run is not None:
            run.denied.append(
                {
                    "message": message_json(run.rename(msg)),
                    "consumer": agent_id,
                    "policy": policy,
                    "reason": reason,
                }
            )

    def dead_lettered(self, letter: DeadLetter) -> None:
        msg = letter.message
        run = self.carrier("dead_lettered", f"dead_letter:{letter.kind}", msg, letter.agent_id)
        if run is None:
            return
        if letter.kind == "unrouted":
            # An output of a correlation cancelled here: the origin records it (``forward``
            # takes every other message nobody here receives, without a dead letter).
            run.replies.append(message_json(run.rename(msg)))
        elif letter.kind == "shed":
            run.shed.append(
                {
                    "message": message_json(run.rename(msg)),
                    "consumer": letter.agent_id,
                    "reason": letter.reason,
                }
            )
        else:
            run.dead = letter


def answer_of(run: Run) -> dict[str, Any]:
    """What the asker of request ``run`` hears (its handler has run): the first output
    addressed back to the asker (taken out of the outputs: the asker's waiter consumes
    it, as in one process; subscribers of its type still get it), or its denial to the
    asker, or the request's dead letter, or that there was no answer."""
    asker = run.delivery.message.sender
    for i, (out, recipient) in enumerate(run.outbox):
        if recipient == asker and out.recipient == asker:
            del run.outbox[i]
            run.answered = 1
            return {"reply": message_json(out)}
    for denied in run.denied:
        if denied["consumer"] == asker and denied["message"]["recipient"] == asker:
            denied["notify"] = False  # the waiter is told, not the whole correlation
            return {"refused": denied}
    if run.dead is not None:
        return {"failed": {"kind": run.dead.kind, "reason": run.dead.reason}}
    return {"no_reply": True}


def outcome_items(
    names: NatsNames,
    run: Run,
    agent_id: str,
    room: Callable[[Mapping[str, str]], int],
    ended: Sequence[Run] = (),
) -> list[Item]:
    """The outcome record (to the origin) and the dead letter: exactly once, by id; fitted
    to ``room``, the most data a message with its headers may carry.

    ``ended``: the timers ``run``'s handler ended (withdrew) as it ran. Their records ride
    inside ``run``'s (``ended``), so the origin applies them with it, at once: the record
    that carries an output to the caller settles everything its delivery ended, and the
    caller's answer counts none of it in flight. Only where that record would not fit the
    broker whole do they follow it, each a message of its own."""
    record = _record(run, agent_id)
    headers = _headers(run)
    limit = room(headers)
    data = fitted(record, limit)
    items = [(names.outcome(run.origin), data, headers)]
    if run.dead is not None:
        items.append((names.dead_letter(agent_id), data, headers))
    if not ended:
        return items
    carried = _json({**record, "ended": [_record(t, _setter(t)) for t in ended]})
    if len(carried) > limit:
        for timer in ended:
            items += outcome_items(names, timer, _setter(timer), room)
        return items
    items[0] = (names.outcome(run.origin), carried, headers)
    for timer in ended:  # its record rides in run's: its dead letter, if any, goes alone
        items += outcome_items(names, timer, _setter(timer), room)[1:]
    return items


def _setter(timer: Run) -> str:
    """The agent that set ``timer`` (its message is the agent's to itself)."""
    return timer.delivery.message.sender


def _record(run: Run, agent_id: str) -> dict[str, Any]:
    """The outcome record of ``run``, uncut."""
    d = run.delivery
    dead = run.dead
    record: dict[str, Any] = {
        "delivery": d.id,
        "correlation_id": d.message.correlation_id,
        "agent": agent_id,
        "outcome": "handled" if dead is None else "dead_lettered",
        "parent": run.parent,
        "spawned": len(run.outbox) + run.asked,
        "answered": run.answered,
        "denied": run.denied,
        "shed": run.shed,
        "replies": run.replies,
    }
    if run.limits:
        record["limits"] = run.limits
        record["message"] = message_json(d.message)
    if dead is not None:
        record |= {
            "agent": dead.agent_id,
            "kind": dead.kind,
            "reason": dead.reason,
            "attempts": dead.attempts,
            "error_type": dead.error_type,
            "tracebacks": list(dead.tracebacks),  # bounded: a few, each at most 4,000 chars
            "message": message_json(d.message),
        }
    return record


def _headers(run: Run) -> dict[str, str]:
    """The id alone: the record carries the rest, and every header costs its reader a parse.
    A header is never cut: an id longer than a record's ids may be is known by its digest."""
    d = run.delivery
    long = len(d.id.encode()) > ID_CHARS
    return {MSG_ID: hashlib.sha256(d.id.encode()).hexdigest() if long else d.id}


def need_max_payload(url: str, max_payload: int) -> None:
    """A ConfigurationError (one line) for a server whose ``max_payload`` cannot hold every
    record genie publishes: refused at connect, not found when a dead letter is lost."""
    if max_payload < MIN_MAX_PAYLOAD:
        raise ConfigurationError(
            f"the NATS server at {url} has a max_payload of {max_payload:,} bytes: genie needs "
            f"at least {MIN_MAX_PAYLOAD:,} (its dead letters and outcome records must cross "
            "it); raise max_payload in the server's configuration (1 MiB unless set)"
        )


def fitted(record: dict[str, Any], limit: int) -> bytes:
    """An outcome record (a dead letter is one) as JSON of at most ``limit`` bytes: a record
    that cannot cross the broker would stop the worker with its delivery never acked. Only
    while it is over the limit, and in this order, it is cut, saying what it cut:

    - its tracebacks keep their two ends (each says how much of it was cut);
    - each id over ``ID_CHARS`` keeps its two ends, ``ids_cut`` naming the ids cut: a
      hostile delivery's own ids (its headers, its text) may take most of the limit;
    - a dead letter's message is carried as its text (``raw``, the message ``None``, as an
      undecodable delivery's), and that text keeps its head, ``raw_cut`` counting the
      characters left out: a message near the limit, escaped once more or with a traceback
      beside it, may be over it though its delivery was not;
    - its reason keeps its two ends (it says how much was cut);
    - the ids cut keep fewer characters, down to ``LEAST_ID_CHARS``.

    The ids are cut only where needed: the origin finds the request by its correlation id.
    At ``MIN_MAX_PAYLOAD`` (less the header block) the last step always fits."""
    whole, data = record, _json(record)
    steps: tuple[Callable[[dict[str, Any]], Cut], ...] = (
        lambda r: _tracebacks_cut(r, limit),
        lambda r: _with_json(_ids_cut(r, whole, ID_CHARS)),
        lambda r: _message_cut(r, whole, limit),
        lambda r: _reason_cut(r, limit),
        lambda r: _shrunk(
            r, limit, _ids_of(whole), lambda kept: _ids_cut(r, whole, max(kept, LEAST_ID_CHARS))
        ),
    )
    for step in steps:
        if len(data) <= limit:
            break
        record, data = step(record)
    return data


Cut = tuple[dict[str, Any], bytes]  # a record and its JSON


def _json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def _with_json(record: dict[str, Any]) -> Cut:
    return record, _json(record)


def _shrunk(
    record: dict[str, Any], limit: int, texts: list[str], cut: Callable[[int], dict[str, Any]]
) -> Cut:
    """``cut(kept)`` of ``record``, ``kept`` (the characters kept of each of ``texts``, what
    it cuts) starting at the longest and less each time (``less_kept``), until the record
    fits ``limit`` or nothing more can go."""
    data, kept = _json(record), max(map(len, texts), default=0)
    while len(data) > limit and kept > 0:
        kept = less_kept(kept, sum(1 for text in texts if len(text) >= kept), len(data), limit)
        record, data = _with_json(cut(kept))
    return record, data


def less_kept(kept: int, cut: int, size: int, limit: int) -> int:
    """The characters to keep of each of ``cut`` texts, each keeping ``kept`` now, in
    something of ``size`` bytes that must be at most ``limit``: the overshoot shared among
    them (a character is at least a byte), or where that cuts more, as much less as the
    whole is over (escaped characters are several bytes: the overshoot in characters would
    cut most of a text to shed a little). Always less than ``kept``."""
    shared = kept - -(-(size - limit) // max(cut, 1))
    return max(0, shared, kept * limit // size)


def _tracebacks_cut(record: dict[str, Any], limit: int) -> Cut:
    tracebacks: list[str] = record.get("tracebacks") or []

    def ends(kept: int) -> dict[str, Any]:
        return {**record, "tracebacks": [middle_cut(t, kept) for t in tracebacks]}

    return _shrunk(record, limit, tracebacks, ends)


def _ids_cut(record: dict[str, Any], whole: Mapping[str, Any], chars: int) -> dict[str, Any]:
    """``record`` with each id of ``whole`` (the record uncut: its delivery's, its
    correlation's and its parent's id, and what its message's text names) over ``chars``
    cut to its two ends, and ``ids_cut`` naming those cut."""
    cut: list[str] = []

    def kept(name: str, value: str | None) -> str | None:
        if value is None or len(value) <= chars:
            return value
        cut.append(name)
        return middle_cut(value, chars)

    ids: dict[str, Any] = {name: kept(name, whole[name]) for name in _IDS}
    if "about" in record:
        ids["about"] = {name: kept(name, value) for name, value in _about(whole).items()}
    return {**record, **ids, "ids_cut": cut} if cut else record


_IDS = ("delivery", "correlation_id", "parent")


def _ids_of(whole: Mapping[str, Any]) -> list[str]:
    """The ids ``_ids_cut`` may cut, of the record uncut, each at most ``ID_CHARS`` long
    (cut once already)."""
    ids = [whole[name] for name in _IDS] + list(_about(whole).values())
    return [middle_cut(i, ID_CHARS) for i in ids if i is not None]


def _about(record: Mapping[str, Any]) -> dict[str, str]:
    """What a record's message is (its id, type and sender), from its message or its text."""
    from ._replay import what_it_was

    if record.get("message") is None:
        return dict(record.get("about") or {})
    return what_it_was(json.dumps({"message": record["message"]}), record["delivery"])


def _message_cut(record: dict[str, Any], whole: Mapping[str, Any], limit: int) -> Cut:
    """A dead letter's message as its text (``raw``), whose head is kept."""
    if record.get("message") is not None and record.get("outcome") == "dead_lettered":
        message = json.dumps(record["message"], separators=(",", ":"))
        as_text = {**record, "message": None, "about": _about(record), "raw": message}
        record = _ids_cut(as_text, whole, ID_CHARS)
    if record.get("raw") is None:
        return _with_json(record)
    text: str = record["raw"]

    def head(kept: int) -> dict[str, Any]:
        return {**record, "raw": text[:kept], "raw_cut": len(text) - kept}

    return _shrunk(record, limit, [text], head)


def _reason_cut(record: dict[str, Any], limit: int) -> Cut:
    reason: str = record.get("reason") or ""

    def ends(kept: int) -> dict[str, Any]:
        return {**record, "reason": middle_cut(reason, kept)}

    return _shrunk(record, limit, [reason], ends)
