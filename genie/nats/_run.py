"""A delivery a worker runs, seen from the worker: what its handler's outputs became
(renamed to ids derived from the delivery, denied, shed, replies, its dead letter), and the
outcome record that carries all of it to the process that started the request, exactly once
(docs/scale-out.md, "The mapping")."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._message.envelope import Message
from .._runtime.deadletter import DeadLetter
from .._runtime.local.mailbox import Handoff
from .._runtime.observe.observer import Observer
from .._runtime.transport import Delivery, delivery_id
from ._names import NatsNames
from ._wire import MSG_ID, Item, derived_id, message_json

__all__ = ["Recorder", "Run", "answer_of", "outcome_items"]


@dataclass
class Run:
    """One delivery a worker is running: what its handler's outputs became."""

    delivery: Delivery
    origin: str
    parent: str | None
    request: bool = False  # its message is a ``ctx.request``: the answer goes to the asker
    outbox: list[tuple[Message, str]] = field(default_factory=list)
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

    def limit_fired(self, msg: Message, agent_id: str, limit: str, reason: str) -> None:
        run = self.running.get(delivery_id(msg, agent_id))
        if run is not None:  # the origin writes it to its audit log, as it does denials
            run.limits.append({"limit": limit, "reason": reason, "agent": agent_id})

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        run = self.run_of(msg)
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
        if letter.agent_id is not None:
            own = self.running.get(delivery_id(msg, letter.agent_id))
            if own is not None and letter.kind in ("failed", "cancelled"):
                own.dead = letter
                return
        run = self.run_of(msg)
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


def outcome_items(names: NatsNames, run: Run, agent_id: str) -> list[Item]:
    """The outcome record (to the origin) and the dead letter: exactly once, by id."""
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
    data = json.dumps(record, separators=(",", ":")).encode()
    # The id alone: the record carries the rest, and every header costs its reader a parse.
    headers = {MSG_ID: d.id}
    items = [(names.outcome(run.origin), data, headers)]
    if dead is not None:
        items.append((names.dead_letter(agent_id), data, headers))
    return items
