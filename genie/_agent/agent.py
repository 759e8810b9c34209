"""The Agent protocol, and a base class that dispatches on the payload's type."""

from __future__ import annotations

import enum
import inspect
import linecache
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar, overload, runtime_checkable

from .._errors import ConfigurationError, UnhandledMessageError
from .._message.envelope import Message
from .._message.payload import Payload
from .context import Context
from .threads import run_in_thread

__all__ = [
    "Agent",
    "BaseAgent",
    "BoundHandler",
    "Risk",
    "SyncBinder",
    "agent_risk",
    "bound_sync_handlers",
    "check_handle",
    "declared_payloads",
    "handler",
    "handler_table",
    "process_offload_problem",
]


class Risk(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@runtime_checkable
class Agent(Protocol):
    """What the runtime needs of an agent.

    ``handle`` returns zero or more messages (built with ``ctx.reply`` / ``ctx.emit``); it never
    calls another agent. It may raise: the supervisor retries, falls back or dead-letters, and
    no exception reaches the runtime or another agent. It can be unit-tested with a
    ``TestContext``, no runtime needed.

    Optional attributes the runtime reads when present: ``risk`` (a ``Risk``, default low),
    ``tier`` (a string, default ``"prototype"``), ``consumes`` and ``produces`` (tuples of
    payload models, registered with the runtime's message types when the agent is added; a
    ``BaseAgent``'s ``consumes`` comes from its handlers), ``consumes_any`` (takes every type;
    ``genie validate`` reads it), and two async hooks: ``on_start()``, awaited
    once the runtime runs (if one raises, the runtime stops everything and re-raises), and
    ``on_stop()``, awaited after it has stopped (an error there is logged).
    """

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Sequence[str]: ...

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]: ...


def check_handle(agent: Agent) -> None:
    """Refuse ``agent`` unless the runtime can call its ``handle`` as ``await handle(msg, ctx)``:
    a plain ``def``, a generator or another signature would be accepted here and fail every
    delivery later, with a TypeError from inside the runtime that names neither."""
    handle = agent.handle
    whose = f"{type(agent).__qualname__}.handle"
    body = inspect.unwrap(handle)  # the function under its decorators (functools.wraps)
    if not callable(handle):
        problem = f"is {handle!r}: it is async def handle(self, msg, ctx)"
    elif any(
        inspect.isasyncgenfunction(f) or inspect.isgeneratorfunction(f) for f in (handle, body)
    ):
        problem = (
            "is a generator: handle returns its messages (async def handle(self, msg, ctx) "
            "returning a list of them)"
        )
    elif not any(_is_async(f) for f in (handle, body)):
        problem = (
            "is a plain def: the runtime awaits it, so it is async def handle(self, msg, ctx) "
            "(for blocking work, a BaseAgent's plain def @handler runs in a worker thread)"
        )
    else:
        try:
            inspect.signature(handle).bind(None, None)
        except TypeError:
            problem = f"cannot be called as handle(msg, ctx): its signature is {_signature(handle)}"
        except ValueError:  # no signature to read (a builtin): calling it will tell
            return
        else:
            return
    raise ConfigurationError(f"agent {agent.id!r}: {whose} {problem}")


def _is_async(func: object) -> bool:
    # A callable object's ``async def __call__`` counts: ``iscoroutinefunction`` reads only
    # functions and methods.
    if inspect.isroutine(func):
        return inspect.iscoroutinefunction(func)
    return callable(func) and inspect.iscoroutinefunction(func.__call__)


def _signature(func: Callable[..., Any]) -> str:
    try:
        return f"handle{inspect.signature(func)}"
    except ValueError:
        return "unreadable"


def agent_risk(agent: Agent) -> Risk:
    """The agent's ``risk`` (low when it has none); any other value is a ConfigurationError
    naming the agent, as the runtime reads it once when it hosts the agent."""
    risk = getattr(agent, "risk", Risk.LOW)
    try:
        return Risk(risk)
    except ValueError:
        choices = ", ".join(r.value for r in Risk)
        raise ConfigurationError(
            f"agent {agent.id!r} has risk {risk!r}: give one of {choices}"
        ) from None


def declared_payloads(
    agent: object,
) -> tuple[tuple[type[Payload], ...], tuple[type[Payload], ...]]:
    """The payload models an agent, or an agent class, declares it consumes and produces.

    A ``BaseAgent`` consumes what its handlers take; any other agent says so in a ``consumes``
    attribute, as every agent does in ``produces``. Both are read here, once, so the loader
    that checks a pipeline and the runtime that registers its types agree. A declaration that
    is not a tuple of payload models is a ConfigurationError naming it.
    """
    cls = agent if isinstance(agent, type) else type(agent)
    if issubclass(cls, BaseAgent):
        consumes = cls.consumes()
    else:
        consumes = _declared(cls, "consumes", getattr(agent, "consumes", ()))
    return consumes, _declared(cls, "produces", getattr(agent, "produces", ()))


def _declared(cls: type, attribute: str, value: object) -> tuple[type[Payload], ...]:
    models = tuple(value) if isinstance(value, tuple | list | set | frozenset) else None
    wrong = value if models is None else next((m for m in models if not _is_model(m)), None)
    if models is None or wrong is not None:
        example = getattr(wrong, "__name__", "Answer") if _is_model(wrong) else "Answer"
        raise ConfigurationError(
            f"{cls.__qualname__}.{attribute} is {value!r}: it is a tuple of payload models "
            f"(Payload subclasses that set message_type), e.g. {attribute} = ({example},)"
        )
    return typing.cast(tuple[type[Payload], ...], models)


def _is_model(value: object) -> bool:
    return (
        isinstance(value, type)
        and issubclass(value, Payload)
        and bool(getattr(value, "message_type", ""))
    )


_P = TypeVar("_P", bound=Payload)
HandlerResult = Message | Sequence[Message] | None
_Method = Callable[[Any, _P, Context], Awaitable[HandlerResult]]
_SyncMethod = Callable[[Any, _P, Context], HandlerResult]


@overload
def handler(method: _Method[_P]) -> _Method[_P]: ...
@overload
def handler(method: _SyncMethod[_P]) -> _SyncMethod[_P]: ...
def handler(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a ``BaseAgent`` method as the handler for the payload type in its annotation::

    @handler
    async def on_question(self, payload: Question, ctx: Context) -> Message: ...

    @handler
    def on_invoice(self, payload: Invoice, ctx: Context) -> Message: ...  # runs in a thread

    A plain ``def`` handler runs off the event loop, in a worker thread (or a process, with
    ``AgentOptions(offload="process")``), so it may block or burn CPU without stalling the
    other agents (see docs/concepts.md, "Handler signatures").
    """
    method.__genie_handler__ = True  # type: ignore[attr-defined]
    return method


class BaseAgent:
    """A convenience base: ``@handler`` methods are chosen by the payload's type (and its bases).

    ``consumes`` is derived from the handlers; set ``produces`` to the payload models the agent
    emits so the runtime registers them and tools can draw the graph.
    """

    capabilities: Sequence[str] = ()
    risk: Risk = Risk.LOW
    produces: ClassVar[tuple[type[Payload], ...]] = ()
    _handlers: ClassVar[dict[type[Payload], str]] = {}
    # The handlers written as a plain ``def``: they run off the event loop.
    _sync_handlers: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, id: str, *, name: str | None = None) -> None:
        self.id = id
        self.name = name or id

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own: dict[type[Payload], str] = {}  # this class's own handlers
        sync = set(cls._sync_handlers)
        for attr, func in vars(cls).items():
            wrapped = isinstance(func, staticmethod | classmethod)
            if wrapped and hasattr(func.__func__, "__genie_handler__"):
                # The mark is on the function inside: unrefused, the handler would be skipped
                # and its payload type never routed to this agent.
                raise _refused(
                    cls,
                    attr,
                    func.__func__,
                    f" is a {type(func).__name__}: a handler is a plain method taking "
                    "(self, payload, ctx)",
                )
            if getattr(func, "__genie_handler__", False):
                # One type, or each member of a union (``Deposit | Withdrawal``).
                for payload in _payload_types(cls, attr, func):
                    twin = own.get(payload)
                    if twin is not None:
                        # Unrefused, the one defined last would take every such payload, and
                        # the other would never run.
                        raise _refused(
                            cls,
                            attr,
                            func,
                            f" handles {payload.message_type!r} ({payload.__qualname__}), as "
                            f"{cls.__qualname__}.{twin} does: a class has one handler per "
                            "payload type (merge them, or give each a payload type of its own)",
                        )
                    own[payload] = attr
                if _is_sync(cls, attr, func):
                    sync.add(attr)
                else:
                    sync.discard(attr)
        # A subclass's handler wins over its base's for the same payload type; a base's
        # handler the subclass redefines (the same name) takes what its new annotation says.
        redefined = set(own.values())
        inherited = {p: n for p, n in cls._handlers.items() if n not in redefined}
        cls._handlers = inherited | own
        cls._sync_handlers = frozenset(sync)

    @classmethod
    def consumes(cls) -> tuple[type[Payload], ...]:
        return tuple(cls._handlers)

    async def handle(self, msg: Message, ctx: Context) -> Sequence[Message]:
        payload = msg.payload
        handlers = self._handlers
        name = handlers.get(type(payload))  # the common case: a handler for the very type
        if name is None:
            for klass in type(payload).__mro__[1:]:
                name = handlers.get(klass)
                if name is not None:
                    break
        if name is not None:
            if name in self._sync_handlers:
                # Called directly (a test, or a subclass's own ``handle``): a thread of
                # anyio's default pool (the runtime binds its own limits, ``handler_table``),
                # with the context and the deadline the runtime's own threads have.
                result = await run_in_thread(getattr(self, name), payload, ctx)
            else:
                result = await getattr(self, name)(payload, ctx)
            if result is None:
                return ()
            if type(result) is Message or isinstance(result, Message):
                return (result,)
            return typing.cast(Sequence[Message], result)
        raise UnhandledMessageError(
            f"agent {self.id!r} has no handler for message type {msg.type!r} "
            f"(it handles {sorted(p.message_type for p in self._handlers)})",
            message_id=msg.id,
            agent_id=self.id,
            correlation_id=msg.correlation_id,
        )


# A ``BaseAgent`` handler bound to its agent: ``await handler(payload, ctx)``.
BoundHandler = Callable[[Any, Context], Awaitable[object]]
# Binds a plain ``def`` handler (``agent``, its attribute name, its payload type) as a
# ``BoundHandler`` that runs it off the event loop: the runtime's threads or processes.
SyncBinder = Callable[["BaseAgent", str, type[Payload]], BoundHandler]


def handler_table(agent: Agent, bind_sync: SyncBinder) -> dict[type[Payload], BoundHandler]:
    """``BaseAgent``'s handlers by payload type, bound to ``agent``, when it dispatches with
    ``BaseAgent.handle`` unchanged (the runtime then calls the handler itself, one coroutine
    instead of two); empty for any other agent, whose ``handle`` is called. A plain ``def``
    handler is bound once, here, by ``bind_sync``: the runtime's one call site awaits it like
    any other."""
    base = _dispatching(agent)
    if base is None:
        return {}
    return {
        payload: bind_sync(base, name, payload)
        if name in base._sync_handlers
        else getattr(agent, name)
        for payload, name in base._handlers.items()
    }


def bound_sync_handlers(agent: Agent) -> frozenset[str]:
    """The plain ``def`` handlers ``handler_table`` binds with its ``bind_sync`` (none when the
    agent's own ``handle`` dispatches)."""
    base = _dispatching(agent)
    return frozenset() if base is None else base._sync_handlers


def process_offload_problem(agent: Agent) -> str | None:
    """Why ``agent`` cannot have ``offload="process"`` (only its plain ``def`` handlers run in
    a child process), or None: the runtime refuses it, and the pipeline loader at its line."""
    if bound_sync_handlers(agent):
        return None
    return (
        f"agent {agent.id!r} has offload='process' but no plain def @handler to run "
        "there (async def handlers and an agent's own handle() run on the event loop)"
    )


def _dispatching(agent: Agent) -> BaseAgent | None:
    if getattr(getattr(agent, "handle", None), "__func__", None) is not BaseAgent.handle:
        return None
    return typing.cast(BaseAgent, agent)


def _refused(cls: type, attr: str, func: Callable[..., Any], problem: str) -> ConfigurationError:
    """The error refusing handler ``cls.attr`` for ``problem``, located at its ``def``: raised
    as its class is defined, a traceback would point at the class."""
    error = ConfigurationError(f"handler {cls.__qualname__}.{attr}{problem}")
    error.source = _defined_at(func)
    if error.source is not None:  # shown under the traceback, which ends at the class
        error.add_note(f"the handler is defined at {error.source}")
    return error


def _defined_at(func: Callable[..., Any]) -> str | None:
    """``path:line`` of ``func``'s ``def``, when it has Python source."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is None:
        return None
    # Of a decorated function, the line of its first decorator: its def is further down.
    number = first = code.co_firstlineno
    while text := linecache.getline(code.co_filename, number):
        if text.lstrip().startswith(("def ", "async def ")):
            return f"{code.co_filename}:{number}"
        number += 1
    return f"{code.co_filename}:{first}"  # no source to read


def _is_sync(cls: type, attr: str, func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return False
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise _refused(
            cls,
            attr,
            func,
            " is a generator: a handler returns its messages (async def or def, returning a "
            "Message, a list of them, or None)",
        )
    return True


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _payload_types(cls: type, attr: str, func: Callable[..., Any]) -> tuple[type[Payload], ...]:
    """The payload types handler ``cls.attr`` takes: its payload's annotation, a model or a
    union of them (``Deposit | Withdrawal``, ``Union[...]``), each refused unless it is a
    model that names a message type."""
    signature = inspect.signature(func).parameters
    params = list(signature)
    # The runtime calls handler(payload, ctx) by position: a keyword-only or starred
    # parameter would make three names that fail every call.
    if len(params) != 3 or any(p.kind not in _POSITIONAL for p in signature.values()):
        raise _refused(cls, attr, func, " must take (self, payload, ctx)")
    try:
        hints = typing.get_type_hints(func)
    except NameError as exc:
        raise _refused(cls, attr, func, f": cannot resolve annotations ({exc})") from exc
    name = params[1]
    annotation = hints.get(name)
    origin = typing.get_origin(annotation)
    if origin is not typing.Union and origin is not types.UnionType:
        return (_payload_model(cls, attr, func, name, annotation),)
    members = typing.get_args(annotation)
    for member in members:
        if isinstance(member, type) and issubclass(member, Payload):
            continue
        if member is type(None):
            # ``Optional[...]``: it promises a case that never comes, so it is a misreading.
            shown = "None"
            why = " (a handler is called with a message's payload, never None)"
        else:
            # A class by its name; anything else (``list[int]``, ``Literal["x"]``) as written.
            shown = member.__name__ if isinstance(member, type) else repr(member)
            why = ""
        raise _refused(
            cls,
            attr,
            func,
            f": '{name}' is annotated with a union whose member {shown} is not a Payload "
            f"model{why}; annotate it with Payload models that set message_type "
            "(payload: Deposit | Withdrawal)",
        )
    return tuple(_payload_model(cls, attr, func, name, member) for member in members)


def _payload_model(
    cls: type, attr: str, func: Callable[..., Any], name: str, model: object
) -> type[Payload]:
    """``model``, the annotation of parameter ``name`` (or a member of its union), refused
    unless it is a Payload model that names a message type."""
    if isinstance(model, type) and issubclass(model, Payload) and not model.message_type:
        # A base of models (genie.pipeline.Gathered, a payload base of your own) names no
        # message type, so nothing could be routed to this handler by it.
        base = model.__name__
        raise _refused(
            cls,
            attr,
            func,
            f": '{name}' is annotated with {base}, a base of payload models with no "
            f"message_type of its own; annotate it with a subclass that sets one "
            f'(class Bundle({base}): message_type = "bundle"), the type the sender emits (for '
            "a declared gather, its emit.type)",
        )
    if not (isinstance(model, type) and issubclass(model, Payload)):
        raise _refused(
            cls,
            attr,
            func,
            f": annotate '{name}' with a Payload model that sets message_type",
        )
    return model
