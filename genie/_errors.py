"""Every error Genie raises, rooted at :class:`GenieError`.

::

    GenieError
    ├── ConfigurationError            the runtime refuses to start or to accept an agent
    │   └── DuplicateAgentError       an agent id registered twice
    ├── MessageError                  a message failed at a boundary
    │   ├── UnknownMessageTypeError   no payload model is registered under the type
    │   ├── InvalidMessageError       the payload (or envelope) failed validation
    │   ├── ToolArgumentsError        a tool call's arguments do not fit its schema, or JSON
    │   └── MemoryArgumentError       a memory call's argument is not what memory keeps
    ├── DeliveryError                 a message could not be delivered
    │   ├── RuntimeClosedError        publish before start or after close
    │   ├── UnknownRecipientError     the direct recipient is not registered
    │   ├── NoRouteError              nobody would receive the message
    │   ├── WouldBlockError           publish_nowait into a full mailbox
    │   ├── DuplicateMessageError     a message published again by id (it was sent already)
    │   ├── PublishFromHandlerError   publish, publish_nowait or ask called inside a handler
    │   │                             of the same runtime: a handler returns its messages
    │   └── DeniedError               admission refused it (policy or limit)
    │       └── ToolDeniedError       a tool call, or its result, denied: never retried
    ├── LimitExceededError            a limit refused work in a handler (a model call over
    │                                 its correlation's budget): never retried
    ├── ToolCallError                 a tool server is unknown or unreachable, or failed
    ├── StoreError                    the durable store could not be written (the disk is
    │                                 full, its file removed): the runtime stops with it
    ├── AuditWriteError               the audit sink refused a record: the runtime stops
    ├── InvalidArgumentError          a call refused an argument's value (a ValueError too)
    ├── NoReplyError                  GatherResult.message with no reply (a LookupError too)
    └── AgentError                    a handler failed (what dead letters record)
        ├── HandlerTimeoutError       the handler overran its deadline
        ├── InvalidOutputError        handle() returned something that is not a Message
        ├── UnhandledMessageError     the agent has no handler for the payload
        └── CircuitOpenError          the agent's circuit breaker is open

Errors carry the ids they concern (message, agent, correlation) so a caller can act on them
without parsing the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

__all__ = [
    "AgentError",
    "AuditWriteError",
    "CircuitOpenError",
    "ConfigurationError",
    "DeliveryError",
    "DeniedError",
    "MemoryDeniedError",
    "DuplicateAgentError",
    "DuplicateMessageError",
    "GenieError",
    "HandlerTimeoutError",
    "InvalidArgumentError",
    "InvalidMessageError",
    "InvalidOutputError",
    "LimitExceededError",
    "MemoryArgumentError",
    "MessageError",
    "NoRouteError",
    "PublishFromHandlerError",
    "RuntimeClosedError",
    "StoreError",
    "UnhandledMessageError",
    "UnknownMessageTypeError",
    "UnknownRecipientError",
    "WouldBlockError",
]


def did_you_mean(name: str, choices: Iterable[str], known: Mapping[str, str] = {}) -> str:
    """`` (did you mean 'x'?)`` naming the closest choice, or an empty string. ``known``
    maps a name genie uses elsewhere for a choice, not spelt like it, to that choice."""
    if name in known:
        return f" (did you mean {known[name]!r}?)"
    import difflib  # only when a name is wrong: not worth its import at start-up

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@contextmanager
def unwrapped(kind: type[BaseException]) -> Iterator[None]:
    """Raise the one exception a task group failed with (through groups of one) as itself
    when it is a ``kind``: genie's own error, a write the store's disk refused say, is one
    clear error naming what went wrong, not a group for the caller to take apart. Anything
    else, or more than one, stays a group."""
    try:
        yield
    except BaseExceptionGroup as group:
        found: BaseException = group
        while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
            found = found.exceptions[0]
        if not isinstance(found, kind):
            raise
        context = group.__context__
        try:
            raise found
        finally:
            # Its context is what the group interrupted (the caller's own exception, say),
            # not the group that held it.
            found.__context__ = context


REASON_CHARS = 2_000  # of an error's text in a reason; the middle is cut
NAMED_IN_GROUP = 3  # of a group's failures, named in its reason; the rest are counted
NESTED_IN_GROUP = 64  # levels of groups in groups a reason names what they hold of


def described(error: BaseException) -> str:
    """``Type: message``, as a reason or a dead letter says why, or ``Type`` alone for an
    error raised with no message: never raises, whatever the exception's own ``__str__`` does
    (a user's exception class may fail to print), and stays short whatever it says (a
    failure's message may be a whole payload dumped): a reason is kept with its dead letter
    and audit row, logged, and handed to whoever waited.

    A group (a task group's failures) names what it holds after its own text: its message
    says only how many failed, and what failed is what a reader needs."""
    return _described(error, NESTED_IN_GROUP, REASON_CHARS)


def _described(error: BaseException, depth: int, room: int) -> str:
    """``described``, for a reason with about ``room`` characters left to say it in."""
    said = _described_one(error)
    # Each level says at least its type and count: past ``depth`` nested groups the reason
    # would be cut there anyway, and a group nested deeper than Python's recursion limit
    # (a task group per level of a recursive walk) must not fail the describing.
    if isinstance(error, BaseExceptionGroup) and depth > 0:
        try:
            failures = error.exceptions
        except BaseException:  # its class hides what it holds: said by its own text alone
            return said
        room -= len(said)
        held: list[str] = []
        for inner in failures[:NAMED_IN_GROUP]:
            # Once the text is longer than a reason keeps, the rest is counted, not walked: a
            # group holding groups (the same one many times over, say) would be walked past
            # any time a reason may take, and cut in the middle.
            if room <= 0:
                break
            held.append(_described(inner, depth - 1, room))
            room -= len(held[-1]) + 2
        if (more := len(failures) - len(held)) > 0:
            held.append(f"and {more} more")
        said = middle_cut(f"{said} ({'; '.join(held)})", REASON_CHARS)
    return said


def type_name(error: BaseException) -> str:
    """The name of ``error``'s class, read past its metaclass: a class whose metaclass fails
    the read (or answers it with no text) still names itself, as a reason or a letter's
    ``error_type`` must."""
    return _CLASS_NAME(type(error))  # type: ignore[no-any-return]


# ``type``'s own descriptor of a class's name: what ``cls.__name__`` reads unless a metaclass
# answers in its stead.
_CLASS_NAME = type.__dict__["__name__"].__get__


def _described_one(error: BaseException) -> str:
    try:
        text = str(error)
        from pydantic import ValidationError  # here: pydantic's models import this module

        if isinstance(error, ValidationError):  # a payload a handler built, say: one line
            field, problem = validation_problems(error.errors(include_url=False))
            text = str(InvalidMessageError(_model_named(error.title), field, problem))
    except BaseException as exc:
        text = f"<its str() raised {type_name(exc)}>"
    name = type_name(error)
    if not text.strip():
        return name
    return f"{name}: {middle_cut(text, REASON_CHARS)}"


def validation_problems(
    errors: Sequence[ErrorDetails], hint: Callable[[ErrorDetails], str] | None = None
) -> tuple[str, str]:
    """Pydantic's problems on one line: the first field at fault, then every problem, a key
    that is no field said to be unknown (``hint``: the closest field, as a hint)."""
    first, *rest = errors
    problem = f"unknown field{hint(first) if hint else ''}" if _unknown(first) else first["msg"]
    for err in rest:
        field = _field(err)
        if _unknown(err):
            problem += f"; unknown field {field!r}{hint(err) if hint else ''}"
        else:
            problem += f"; field {field!r}: {' '.join(err['msg'].split())}"
    return _field(first), " ".join(problem.split())


def _field(err: ErrorDetails) -> str:
    return ".".join(str(p) for p in err["loc"]) or "<root>"


def _unknown(err: ErrorDetails) -> bool:
    return err["type"] == "extra_forbidden"


def _model_named(title: str) -> str:
    """The message type of the payload classes named ``title`` when they agree on one (a
    model's error names its class), else ``title``."""
    from pydantic import BaseModel

    types: set[object] = set()
    todo = list(BaseModel.__subclasses__())
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        if model.__name__ == title:
            types.add(getattr(model, "message_type", None))
    kind = types.pop() if len(types) == 1 else None
    return kind if isinstance(kind, str) and kind else title


def middle_cut(text: str, limit: int) -> str:
    """``text``, or when it has more than ``limit`` characters its two ends, saying how much
    of its middle was cut."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    cut = f"[... {len(text) - 2 * keep:,} characters cut ...]"
    return f"{text[:keep]}\n  {cut}\n{text[len(text) - keep :]}"  # [-0:] would be all of it


def shown(value: str, limit: int = 40) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters (``'99999...'``): an error
    quotes what it refuses, and a 5,000-digit amount or a 100 MB line must not become the
    message."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def _escape(code: int) -> str:
    said = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(chr(code))
    return said or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


# What a terminal acts on rather than shows: C0 and C1 controls (line breaks, escapes that
# move the cursor, clear the screen or set the window's title), Unicode's line and paragraph
# separators, and the marks that reorder the text around them.
_ACTED_ON = {
    code: _escape(code)
    for code in (
        *range(0x20),
        *range(0x7F, 0xA0),
        0x2028,
        0x2029,
        0x061C,
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        # Not acted on but unwritable: a lone surrogate (JSON's "\ud800") has no UTF-8, so a
        # stream that encodes strictly (a log file) would refuse the whole line that holds it.
        *range(0xD800, 0xE000),
    )
}


_ACTED_ON_BUT_LINES = {code: said for code, said in _ACTED_ON.items() if code != ord("\n")}


def for_terminal(text: object, *, keep_lines: bool = False) -> str:
    """``text`` (a reason, a subject, an id: what a handler, a request or a store said) as a
    terminal may show it in a line of its own: every character a terminal would act on
    written as its escape (``\\n``, ``\\x1b``), so that it can neither begin a line that
    seems the command's own nor drive the terminal. The text itself, in JSON, stays as is.
    ``keep_lines``: a text of several lines (a traceback) keeps its line breaks."""
    return str(text).translate(_ACTED_ON_BUT_LINES if keep_lines else _ACTED_ON)


class GenieError(Exception):
    """Root of every error Genie raises."""

    def __init__(
        self,
        message: str,
        *,
        message_id: str | None = None,
        agent_id: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message_id = message_id
        self.agent_id = agent_id
        self.correlation_id = correlation_id

    def __reduce__(
        self,
    ) -> tuple[Callable[..., GenieError], tuple[object, ...], dict[str, object]]:
        # Rebuilt from its parts as they are, not by calling the class with its text again:
        # many errors' ``__init__`` takes its parts (``MemoryArgumentError(memory, call, ...)``)
        # or keywords (``policy=``), and one raised in a handler's process must reach the
        # runtime as what it is, for the retry policy to know it. Its parts are its state,
        # set once the error is made (``BaseException.__setstate__``), so that a part that
        # refers back to the error finds it; a user's error keeps what its slots hold too.
        return _rebuilt, (type(self), self.args), {**vars(self), **_slotted(self)}


def _rebuilt(cls: type[GenieError], args: tuple[object, ...]) -> GenieError:
    """Unpickles a ``GenieError`` (``GenieError.__reduce__``); its parts are set after."""
    error = cls.__new__(cls)
    error.args = args
    return error


def _slotted(error: GenieError) -> dict[str, object]:
    """What the ``__slots__`` of ``error``'s classes hold (a private slot by its mangled name)."""
    held: dict[str, object] = {}
    for cls in type(error).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{name}"
            if hasattr(error, name):
                held[name] = getattr(error, name)
    return held


class ConfigurationError(GenieError):
    """The runtime, an agent or a pipeline is configured wrongly; nothing was started.

    ``source``: where in the user's code the mistake is (``path:line``) when that is not where
    it was raised: a handler refused as its class is defined names the line of its ``def``."""

    source: str | None = None
    # The constructor argument refused, when one is: a pipeline file's error points at its
    # key under ``params``, not at ``params`` as a whole.
    argument: str | None = None


class DuplicateAgentError(ConfigurationError):
    """An agent id is already registered in this runtime."""


class MessageError(GenieError):
    """A message failed validation at a boundary (construction, YAML, CLI, wire)."""


class UnknownMessageTypeError(MessageError):
    """No payload model is registered under the message type."""

    def __init__(self, type_name: str, known: list[str] | None = None) -> None:
        hint = did_you_mean(type_name, known or ())
        super().__init__(
            f"unknown message type {type_name!r}: no payload model is registered{hint}"
        )
        self.type_name = type_name


class InvalidMessageError(MessageError):
    """The payload of a message failed its model; ``field`` names the first failing field."""

    def __init__(self, type_name: str, field: str, problem: str) -> None:
        super().__init__(f"invalid {type_name!r} message: field {field!r}: {problem}")
        self.type_name = type_name
        self.field = field
        self.problem = problem


class DeliveryError(GenieError):
    """A message could not be delivered."""


class RuntimeClosedError(DeliveryError):
    """The runtime is not running (not started yet, or closed)."""


class UnknownRecipientError(DeliveryError):
    """The message names a recipient that is not registered in this runtime."""


class NoRouteError(DeliveryError):
    """No agent would receive the message: no recipient, no subscriber, nobody waiting."""


class WouldBlockError(DeliveryError):
    """``publish_nowait`` found a recipient's mailbox full, or a policy that would wait to
    prepare the message (a classifier with no verdict on its text yet)."""


class DuplicateMessageError(DeliveryError):
    """A message published from outside whose id this runtime has sent already (in flight,
    or among the last it took from outside): its recipients would get one message twice.
    Nothing is sent; ``message_id`` is the id seen before."""


class PublishFromHandlerError(DeliveryError):
    """``publish``, ``publish_nowait`` or ``ask`` was called inside a handler of the same
    runtime, or in a task the handler started. Such a send would begin a request of its own,
    outside the hop limit, the correlation budget and the handler's delivery: a handler sends
    by returning its messages (``ctx.emit``, ``ctx.reply``) or with ``ctx.request``. Nothing
    was sent. The agent's retry policy never retries it: the same send would be refused
    again."""


class WaitFromHandlerError(DeliveryError):
    """``rt.wait_idle()`` was awaited inside a handler of the same runtime, or in a task the
    handler started. The runtime is idle only once every delivery has ended, this handler's
    own among them, so the wait could never end: it is refused at once."""


class DeniedError(DeliveryError):
    """Admission refused the message; ``policy`` names the rule that decided."""

    def __init__(self, message: str, *, policy: str, reason: str, **ids: str | None) -> None:
        super().__init__(message, **ids)
        self.policy = policy
        self.reason = reason


class ToolDeniedError(DeniedError):
    """A policy denied a tool call (``direction`` ``out``: its arguments may not leave) or its
    result (``in``: the agent may not read it), or a listing of a server's tools (``listing``:
    ``out``, the server may not be asked; ``in``, the agent may not read its descriptions);
    audited like any denial, never retried."""

    def __init__(
        self, policy: str, reason: str, direction: str, listing: bool = False, **ids: str | None
    ) -> None:
        what = "listing" if listing else "call" if direction == "out" else "result"
        super().__init__(
            f"tool {what} denied by {policy}: {reason}", policy=policy, reason=reason, **ids
        )
        self.direction = direction
        self.listing = listing


class MemoryDeniedError(DeniedError):
    """A policy denied a memory write (``direction`` ``out``: the text may not be stored) or
    a read (``in``: the agent may not see what was found); audited, never retried."""

    def __init__(self, memory: str, policy: str, reason: str, direction: str, **ids: str | None):
        what = "write to" if direction == "out" else "read of"
        super().__init__(
            f"memory {what} {memory!r} denied by {policy}: {reason}",
            policy=policy,
            reason=reason,
            **ids,
        )
        self.memory = memory
        self.direction = direction


class ToolArgumentsError(MessageError):
    """A tool call's arguments do not fit the tool's input schema, or hold what JSON cannot
    carry exactly (NaN, bytes, a key that is not text, ...); ``field`` names the first that does
    not, as a path (``a.1``; empty: the arguments as a whole). Nothing was sent."""

    def __init__(self, server: str, tool: str, field: str, problem: str) -> None:
        where = f"field {field!r}" if field else "the arguments"
        super().__init__(f"tool {tool!r} of {server!r}: {where}: {problem}")
        self.server = server
        self.tool = tool
        self.field = field
        self.problem = problem


class MemoryArgumentError(MessageError, ValueError):
    """A handler's memory call was given an argument memory does not keep: text that is not
    valid UTF-8 (a lone surrogate, which no file, bucket or JSON reader holds as text), a
    value JSON would not read back as given or cannot hold (a key that is not text, a
    ``set``, NaN, a value holding itself, ...; ``problem`` says where in it), a search's
    ``k`` that is not a whole number of at least 1, a fact's confidence that is not a number
    from 0 to 1, a semantic entry's meta that is not a mapping, text that is not a ``str``.
    ``call`` names the call (``kv.set``), ``argument`` the argument (``key``, ``value``);
    ``memory`` is None when the call is ``ctx.memory(name)`` itself, given a name that is no
    text: it names no memory. Nothing was judged, stored or read, and the agent's retry policy
    never retries it: the same call would be refused again. A ``ValueError`` too, as such a
    mistake is in Python."""

    def __init__(self, memory: str | None, call: str, argument: str, problem: str) -> None:
        which = "" if memory is None else f"memory {memory!r}: "
        super().__init__(f"{which}{call}: argument {argument!r} {problem}")
        self.memory = memory
        self.call = call
        self.argument = argument
        self.problem = problem


class ToolCallError(GenieError):
    """A tool could not be called: the server is unknown or unreachable, the tool does not
    exist, or the call failed on its way. A handler that lets it propagate fails and is
    retried as its options say."""


class AuditWriteError(GenieError):
    """A runtime's audit sink could not take a record (a full disk under a JSONL log, a sink
    of your own that raised): the runtime stops with it, as no governed outcome may go on
    unrecorded. The outcomes the runtime ends while it stops are kept as dead letters and
    counted, but not offered to the sink again (docs/governance.md)."""


class StoreError(GenieError):
    """A runtime's store (``Runtime(store=PATH)``) could not be written: the disk is full, the
    file can no longer be written or was removed. The runtime stops with it, and a ``publish``
    waiting for the write that failed raises it; ``path`` names the store. What was written
    before the failure stays in the file for the next start (docs/durability.md), unless
    ``kept`` is False: the file was removed or replaced, and what was written went with it."""

    def __init__(self, message: str, *, path: str, kept: bool = True) -> None:
        super().__init__(message)
        self.path = path
        self.kept = kept


class LimitExceededError(GenieError):
    """A limit of the runtime refused work a handler asked for (``genie.llm``'s
    ``BudgetExceededError``: a model call over its correlation's token or cost budget).
    ``limit`` names it. The agent's retry policy never retries it: the same work would be
    refused again."""

    limit: str = ""


class InvalidArgumentError(GenieError, ValueError):
    """A call was given an argument it cannot take (a timeout or delay that is no number, a
    gather's count out of range, an event stream's buffer below 1); a ``ValueError`` too, as
    Python's own refusals of a value are."""


class AgentError(GenieError):
    """An agent's handler failed."""


class HandlerTimeoutError(AgentError):
    """The handler ran past its deadline and was cancelled."""


class InvalidOutputError(AgentError):
    """The handler returned something that is not a sequence of messages."""


class UnhandledMessageError(AgentError):
    """The agent has no handler for the payload type it was given."""


class CircuitOpenError(AgentError):
    """The agent's circuit breaker is open, so the handler was not called."""
