"""The transport seam: where an admitted delivery leaves routing and admission for a mailbox.

Routing and admission decide *who* receives a message and *whether* they may; a transport only
moves the admitted delivery to the recipient's worker and runs it there. ``LocalTransport`` (the
default) is a bounded mailbox per agent and a small pool of executors in this process. A NATS
JetStream transport implements the same calls: ``put`` publishes ``Delivery.encode()`` to
the recipient's subject with ``Delivery.id`` as the message id (JetStream's server-side
deduplication key), ``has_room``/``wait_for_room`` read the stream's limits, and its consumer
decodes each delivery through the message-type registry and hands it to the same supervisor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._base.backend import Backend
from .._base.nesting import MAX_DEPTH, json_depth_exceeds
from .._base.record import Record
from .._errors import GenieError, InvalidMessageError
from .._message.envelope import Message
from .._message.types import MessageTypes
from .local.executor import Worker
from .local.mailbox import Mailbox, Queued

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = [
    "DESK",
    "RESERVED_IDS",
    "NO_WORKERS",
    "Answer",
    "RUNTIME",
    "Delivery",
    "RunDelivery",
    "Transport",
    "WorkerCounts",
    "delivery_id",
    "Keeper",
    "KeptOnPublish",
    "Keeps",
    "delivery_json",
    "keeps_of",
    "message_json",
]


RUNTIME = "genie"
"""The sender of the runtime's own messages (a cancellation's notice, a loss's): never a
request from outside, which a transport that keeps requests keeps."""

DESK = "approvals"
"""The runtime's approval desk: the agent that takes approval requests and sends decisions."""

# Ids the runtime's own messages are sent under, which workflows trust by that name: no agent of
# a user's may take one (``Runtime.add``, a pipeline's ids), or it could forge them.
RESERVED_IDS = {
    RUNTIME: "the sender of its notices of losses and cancellations",
    DESK: "its approval desk, whose decisions workflows act on",
}


def delivery_id(msg: Message, recipient: str) -> str:
    """Stable across retries and redeliveries: a message reaches a recipient at most once."""
    return delivery_of(msg.id, recipient)


def delivery_of(message_id: str, recipient: str) -> str:
    """``delivery_id`` of the message ``message_id``, known by its id alone."""
    return f"{message_id}:{recipient}"


class Delivery(Record):
    """One admitted message for one recipient, as it would cross a process boundary."""

    message: Message
    recipient: str

    @property
    def id(self) -> str:
        return delivery_id(self.message, self.recipient)

    def encode(self) -> bytes:
        return delivery_json(self.recipient, message_json(self.message)).encode()

    @classmethod
    def decode(cls, data: bytes | str, types: MessageTypes) -> Delivery:
        """Validate the envelope and its payload through ``types`` (what the receiver hosts).

        The whole text's nesting is checked once, before it is parsed: the message sits one
        level down, so ``MAX_DEPTH + 1`` bounds it as ``parse_message`` would."""
        import json

        text = data.decode() if isinstance(data, bytes) else data
        if json_depth_exceeds(text, MAX_DEPTH + 1):
            raise InvalidMessageError(
                "<unknown>",
                "message",
                f"nested deeper than {MAX_DEPTH} levels of arrays and objects",
            )
        body = json.loads(text)
        return cls(types.parse_bounded_message(body["message"]), str(body["recipient"]))


def message_json(message: Message) -> str:
    """``message`` as the JSON a delivery of it carries (dumped once for all its recipients)."""
    import json  # only a transport that keeps or sends deliveries encodes: not `import genie`

    return json.dumps(message.model_dump(mode="json"), separators=(",", ":"))


def delivery_json(recipient: str, message: str) -> str:
    """The JSON of a delivery to ``recipient`` of the message whose ``message_json`` is
    ``message``: what ``Delivery.decode`` reads."""
    import json

    return f'{{"recipient":{json.dumps(recipient)},"message":{message}}}'


class WorkerCounts(Record):
    """How many tasks a transport runs handlers on now (``Transport.workers``)."""

    executors: int
    idle: int
    ready: int


NO_WORKERS = WorkerCounts(0, 0, 0)

RunDelivery = Callable[[Mailbox, Worker], Awaitable[None]]


class Transport(Protocol):
    """Moves admitted deliveries to the recipient's worker and runs them there.

    The runtime owns its agents: each agent's ``Mailbox`` (its options, its handler table, its
    queue and the counts the executors keep), by id, in one registry the runtime hands over
    with ``attach_agents`` before anything else. Routing and admission have decided before a
    transport is called: it never chooses recipients, never refuses a delivery and never
    counts an outcome (the ledger does). Its duties:

    - Bounded room for outside publishers: ``has_room``, ``wait_for_room``, ``hold``,
      ``release``. A slot held is later used by ``put_held`` or given back by ``release``.
    - Queue each admitted delivery: ``put`` (a send from a handler, a timer, a request: never
      waits, may overdraw) and ``put_held`` (a publish, in its held slots). A transport that
      runs deliveries in this process queues an item with ``Mailbox.push`` and, when that
      returns True (a new token: the agent may start one more handler), arranges for the
      ``run`` it was given in ``start`` to be called with that mailbox. ``run`` takes the
      oldest queued item itself, so the calls for one mailbox may come in any order and from
      any task.
    - Run: ``run(mailbox, worker)`` runs one delivery to its outcome, then asks ``turn``
      which mailboxes to run next in the same call. ``worker`` is a ``Worker`` per task that
      calls ``run``, so that ``cancel`` can find the handlers of one correlation. When a
      delivery ends with more queued for its agent and room for another handler, the runner
      hands out the token itself: it appends the mailbox to ``ready_queue``.
    - ``cancel``, ``forward``, ``drain_queues`` and ``workers`` as documented below.
    """

    ready_queue: deque[Mailbox]
    """Mailboxes that hold a token: each is owed one ``run`` call. The runner appends to it
    from inside ``run`` (the task is free as soon as ``run`` returns, so nobody is woken);
    the transport takes them in order, in ``turn`` or once ``run`` has returned."""

    def attach_agents(self, mailboxes: Mapping[str, Mailbox]) -> None:
        """The runtime's agent registry, read (never changed) by the transport from now on;
        called once, when the runtime is built. Agents added later appear in it."""
        ...

    def start(self, tg: TaskGroup, run: RunDelivery, backend: Backend) -> None:
        """The runtime started: run deliveries with ``run`` in tasks of ``tg`` from now on
        (``backend``: the running loop's event and checkpoint). Cancelling ``tg`` stops it.

        The tasks started here, and the tasks they start, count as running this runtime's
        handlers: the runtime's public ``publish``, ``publish_nowait`` and ``ask`` refuse
        them, so none of them may publish through it. (``run`` called in any other task marks
        it for that call alone, at a small cost per call.)"""
        ...

    def turn(self, worker: Worker, first: Mailbox) -> Iterable[Mailbox]:
        """The mailboxes ``run`` runs one delivery of, in a row, in one call: ``first``, then
        whatever this transport would have ``run`` next on the same task (``(first,)``: one
        delivery a call). ``run`` stops early if a delivery raises."""
        ...

    def has_room(self, recipient: str) -> bool:
        """An outside publisher could put a delivery for ``recipient`` now without waiting."""
        ...

    async def wait_for_room(self, recipient: str) -> None:
        """Wait, first come first served, for a slot for ``recipient``, and hold it. Cancelled
        while waiting, nothing is held."""
        ...

    def hold(self, recipients: Sequence[str], start: int) -> int:
        """From ``recipients[start]`` on, hold a slot for each agent of this runtime while
        one is free now with nobody waiting ahead; the index of the first it could not hold
        (``len(recipients)``: all held). Ids that are no agent here are passed over."""
        ...

    def release(self, recipient: str) -> None:
        """Give back a slot ``wait_for_room`` or ``hold`` held, unused."""
        ...

    def put(self, item: Queued, recipient: str) -> None:
        """Queue an admitted delivery (no slot was held for it): it never waits, and may take
        the queue past its capacity (the dispatcher counted the overdraft or shed it)."""
        ...

    def put_held(self, item: Queued, recipients: Sequence[str]) -> None:
        """Queue an admitted delivery for each of ``recipients``, in order, each in the slot
        ``hold`` or ``wait_for_room`` held for it."""
        ...

    def cancel(self, correlation_id: str) -> int:
        """Cancel the handlers running for ``correlation_id``; how many there were."""
        ...

    def forward(self, msg: Message) -> bool:
        """Take ``msg``, which nobody in this process receives, to the process whose waiters
        may (True); False: it is unrouted here."""
        ...

    def drain_queues(self) -> Iterator[tuple[Mailbox, Queued]]:
        """At close, after ``tg`` ended: take out every delivery still queued, with its
        mailbox (each becomes a dead letter), and wake every publisher waiting for room."""
        ...

    def workers(self) -> WorkerCounts:
        """The tasks that run handlers now, for ``Runtime.statistics``."""
        ...


Keeps = Callable[[str], bool]
"""A fan-in's ``keeps(correlation_id)``: whether it holds a session of that correlation open."""

Answer = Callable[
    [str, bool, str, tuple[str, ...], str, float | None, bool], "Message | str | None"
]
"""``Approvals.answer_left``: a person's answer another process left (approval id, approved,
by, roles, reason, when it was given in seconds since the epoch, whether the transport keeps
its approval) given to the desk: the answer message sent, ``refused: WHY``, or None while its
approval is kept but not pending here."""


def keeps_of(agent: object) -> Keeps | None:
    """``agent``'s ``keeps``, if it is a fan-in (a declared gather, a workflow): an agent
    whose state across deliveries is a session per correlation. A transport that keeps
    deliveries keeps each one the fan-in took while it keeps the delivery's correlation, so
    that a restart delivers them again and the session is rebuilt; an agent without
    ``keeps`` holds nothing across deliveries that a transport keeps."""
    keeps = getattr(agent, "keeps", None)
    return keeps if callable(keeps) else None


@runtime_checkable
class KeptOnPublish(Protocol):
    """A transport that writes what it admits before it queues it (the SQLite store): an
    outside publish waits for the write of its message before it returns."""

    async def kept(self) -> None:
        """Return once everything admitted so far is written."""
        ...

    def failure(self) -> GenieError | None:
        """Why its writes stopped, if one failed (the disk full): the runtime stops, and
        raises it once it has closed, as itself."""
        ...

    def check(self, msg: Message) -> None:
        """Raise ``InvalidMessageError`` if ``msg``, published from outside, could not be
        written (a payload with no JSON form), or ``DeliveryError`` if it is kept already (a
        message is published once), before anything routes it: asked right before it is
        routed, with no await between, so the transport knows ``msg`` for one published from
        outside when it is put."""
        ...


@runtime_checkable
class Keeper(Protocol):
    """A transport that keeps requests across processes' lives (durable mode): what the
    runtime asks of it besides moving deliveries."""

    def unfinished(self) -> list[Message]:
        """The requests from outside a previous process left unsettled."""
        ...

    def replay(self, correlation_id: str) -> int:
        """Queue again what the store kept of ``correlation_id``; how many deliveries."""
        ...

    def replay_own(self) -> int:
        """At start: queue again the kept work no caller waits for (what runs in a
        cancellation's correlation); how many deliveries."""
        ...

    def keeps(self, correlation_id: str) -> bool:
        """``correlation_id`` is a request kept for a later start: a caller cancelled while
        it waits (Ctrl-C, a client gone) leaves it to go on, and a stop leaves it for the
        next start, as a kill would."""
        ...

    def holds(self, correlation_id: str) -> bool:
        """``correlation_id`` waits for a person (a pending approval the store keeps): a
        caller who stops waiting leaves it paused, not cancelled."""
        ...

    def stopping(self) -> None:
        """The runtime is stopping: what ends now is cut short, not finished."""
        ...

    def asked_before(self, approval_id: str) -> int | None:
        """The round (0; 1: escalated) the approval ``approval_id`` had reached at the desk
        of a process before this one, which took it and audited it asked (None: no desk
        did): the desk here takes it up again as resumed, at that round."""
        ...

    def taken_before(self, message_id: str, agent_id: str) -> bool:
        """The fan-in ``agent_id`` handled ``message_id`` in a process before this one, and
        what that handling sent was kept with it (written to the store, published on the
        broker): run again to rebuild the fan-in's session, it sends nothing, and records
        nothing, a second time."""
        ...

    def keeps_session(self, agent_id: str, correlation_id: str) -> bool:
        """What ``agent_id`` took of ``correlation_id`` is kept for the next start, which
        delivers it again (a pending approval, a fan-in's parts): the timers the agent set
        in it are set again then, so a stop loses none of them."""
        ...

    def keeps_delivery(self, message: Message, agent_id: str) -> bool:
        """The delivery of ``message`` to ``agent_id`` (or to the fallback standing in for
        it), cut short by the stop, is kept for the next start, which runs it again: the
        stop loses nothing of it."""
        ...

    def answers_to(self, answer: Answer) -> None:
        """Answers to approvals that other processes leave in the store go to ``answer``."""
        ...

    def ask(self, request: Message) -> tuple[Message, Message | None]:
        """A handler's ``ctx.request`` as it is sent (under the id it has on every run of the
        asking delivery), and the answer kept for it by a run before a restart, if any: the
        asker gets that one, and the answering agent does not run again."""
        ...

    async def take_answers(self) -> None:
        """Until cancelled: hand the answers left in the store to ``answer``."""
        ...
