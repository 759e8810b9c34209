"""The Context protocol (an agent's window on the runtime) and the context used in unit tests."""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import anyio

from .._base.clock import Clock, seconds, spelt
from .._base.log import message_logger
from .._errors import ConfigurationError, InvalidArgumentError, ToolCallError
from .._message.envelope import Message, caused_by
from .._message.ids import IdSource
from .._message.payload import Classification, MetaValue, Payload, Role
from .memory import Memory, MemoryStore, memory_of, named_stores
from .tools import ToolOutput, Tools, ToolSession, ToolSpec, sendable

if TYPE_CHECKING:
    import logging

    from anyio.lowlevel import EventLoopToken

    from ..llm._provider import Provider

__all__ = [
    "Context",
    "ContextServices",
    "ProcessContext",
    "RuntimeContext",
    "TestContext",
    "Timer",
    "runtime_context",
]


class Context(Protocol):
    """What a handler may use of the runtime while it handles ``message``.

    Time comes only from ``now()`` and ``sleep()`` (the runtime clock, virtual in simulations).
    ``reply`` and ``emit`` build messages caused by ``message``: correlation and trace inherited,
    ``causation_id = message.id``, ``hops + 1``, metadata copied. They do not send anything: the
    handler returns them and the runtime publishes them.
    """

    @property
    def agent_id(self) -> str: ...

    @property
    def message(self) -> Message: ...

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    def reply(
        self,
        payload: Payload,
        *,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        """A message to ``message.sender`` (see ``emit`` for the fields)."""
        ...

    def emit(
        self,
        payload: Payload,
        *,
        recipient: str | None = None,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        """A message caused by ``message``; routed by type unless ``recipient`` is given."""
        ...

    def schedule(self, delay: float, payload: Payload) -> Timer:
        """Deliver ``payload`` to this agent after ``delay`` seconds of runtime clock, in the
        same correlation (a deadline of the agent's own). The pending timer counts as work in
        flight for the correlation; ``Timer.cancel()`` withdraws it. A delay of 0 or less
        (a deadline already past) fires at once; one that is not a finite number raises
        ``InvalidArgumentError`` (a ``ValueError``) here, in the handler."""
        ...

    async def request(
        self, recipient: str, payload: Payload, *, timeout: float | None = None
    ) -> Message:
        """Send ``payload`` to ``recipient`` and wait for the one message that answers it.

        The answer is the first message the recipient's handler returns for this request
        addressed back to this agent; it passes admission for this agent like any delivery.
        Raises ``DeniedError`` if admission refuses the request or its answer, ``AgentError``
        if the recipient fails it or handles it without answering, ``TimeoutError`` if no
        answer arrives within ``timeout`` seconds (default: the runtime's
        ``Limits.request_timeout``, so two agents requesting each other cannot wedge), and
        ``DeliveryError`` at once for a request to this agent itself when it has one worker
        (which runs this handler, so the request could never be taken), and
        ``InvalidArgumentError`` for a ``recipient`` of None, or when awaited in a thread other
        than the runtime's loop's (a def handler awaits it through ``anyio.from_thread.run``).
        """
        ...

    def llm(self, provider: Provider) -> Provider:
        """``provider`` (a ``genie.llm`` provider or stack) for the model calls of this
        handler call: each request gets the context of ``message`` (correlation,
        classification, principal, the handler's deadline) unless it carries its own, and the
        runtime's kill switch reserves its worst case against the correlation's
        ``Limits.correlation_tokens`` / ``correlation_cost`` before anything is sent. A call
        that does not fit raises ``genie.llm.BudgetExceededError`` (never retried); after the
        first refusal every call of the correlation is refused. A ``provider`` that is no
        ``Provider``, or a call given anything but a ``Request``, is an
        ``InvalidArgumentError``. See docs/llm.md."""
        ...

    def tool(self, server: str) -> Tools:
        """The tools of ``server`` (declared in the pipeline's ``tools:``, or
        ``Runtime(tools=...)``): ``await ctx.tool("broker").call("get_holdings", {})``. Each
        call is judged by the policies on its way out (a ``tool_call`` message to
        ``tool:SERVER``, counted against the correlation's delivery budget) and on its way
        back (a ``tool_result`` to this agent); a denial raises ``ToolDeniedError``, a call
        that cannot be made ``ToolCallError``. See docs/tools.md."""
        ...

    def memory(self, name: str = "default") -> Memory:
        """The memory ``name`` (the pipeline's ``memory:``, or ``Runtime(memory=...)``;
        without either, ``"default"`` is an in-memory store of the runtime's own):
        ``await ctx.memory().kv.set("prefs", "tone", "brief")``. Each write is judged by the
        policies before it is stored (a ``memory_write`` to ``memory:NAME``) and audited; a
        denial raises ``MemoryDeniedError``. See docs/memory.md."""
        ...


class Timer:
    """A pending ``Context.schedule``; ``cancel()`` withdraws it (idempotent). Made on an
    event loop and cancelled from another thread, it is withdrawn on that loop, where the
    runtime records its outcome and stops its wait (one made with no loop, a
    ``TestContext``'s, is withdrawn where it is cancelled)."""

    __slots__ = ("_loop", "_loop_thread", "_on_cancel", "_scope", "cancelled")

    def __init__(self, on_cancel: Callable[[], None] | None = None) -> None:
        self.cancelled = False
        self._scope: anyio.CancelScope | None = None
        self._on_cancel = on_cancel  # the runtime records the withdrawal at once
        self._loop_thread = threading.get_ident()
        try:
            self._loop: EventLoopToken | None = anyio.lowlevel.current_token()
        except RuntimeError:  # no loop runs here (a TestContext's)
            self._loop = None

    def cancel(self) -> None:
        if self.cancelled:
            return
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            from anyio.from_thread import run_sync  # only another thread gets here

            run_sync(self.cancel, token=self._loop)
            return
        self.cancelled = True
        if self._on_cancel is not None:
            self._on_cancel()
        if self._scope is not None:
            self._scope.cancel()


def timer_delay(delay: object) -> float:
    """``delay`` as a timer waits it: a past deadline (0 or less) fires at once; what is not a
    finite number of seconds is the handler's mistake, told in the handler. (The contexts'
    ``schedule`` take any object, so that the compiled build's signature checks leave this
    message to say it there too.)"""
    number = seconds(delay)
    if number is None or math.isinf(number):
        raise InvalidArgumentError(
            f"ctx.schedule: the delay must be a finite number of seconds, not {spelt(delay)}"
        )
    return max(number, 0.0)


def sleep_seconds(value: object) -> float:
    """``value`` as ``ctx.sleep`` waits it: 0 or less (a moment already past, say a deadline
    less the time now) returns at once, as a timer's delay fires at once; infinity waits
    until cancelled. What is no number of seconds is the handler's mistake, told by name
    (the event loop's sleep would refuse a negative time, and fail on text, in words of its
    own)."""
    number = seconds(value)
    if number is None:
        raise InvalidArgumentError(
            f"ctx.sleep: the time must be a number of seconds, not {spelt(value)}"
        )
    return max(number, 0.0)


class _ContextBase:
    """reply/emit shared by the runtime's context and the test context. No ``__init__``:
    each subclass fills the slots (see ``runtime_context``)."""

    __slots__ = ("_agent_id", "_message", "_new_id", "last_emitted")
    _agent_id: str
    _message: Message
    _new_id: Callable[[], str]
    # The last message ``emit`` built: stamped from this very input by construction (and
    # frozen), so the runtime need not check its stamp field by field.
    last_emitted: Message | None

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def message(self) -> Message:
        return self._message

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return message_logger(
            "genie.agent",
            {
                "agent_id": self._agent_id,
                "correlation_id": self._message.correlation_id,
                "message_type": self._message.type,
            },
        )

    def now(self) -> datetime:
        raise NotImplementedError

    def emit(
        self,
        payload: Payload,
        *,
        recipient: str | None = None,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        out = self.last_emitted = self._message.child(
            payload,
            sender=self._agent_id,
            id=self._new_id(),
            created_at=self.now(),
            recipient=recipient,
            role=role,
            classification=classification,
            metadata=metadata,
        )
        return out

    def reply(
        self,
        payload: Payload,
        *,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        return self.emit(
            payload,
            recipient=self._message.sender,
            role=role,
            classification=classification,
            metadata=metadata,
        )


# How a def handler's thread awaits a request: on the runtime's loop.
_REQUEST_ON_THE_LOOP = "anyio.from_thread.run(ctx.request, recipient, payload)"


class ContextServices:
    """What a runtime lends the contexts of its handlers (one per runtime, shared)."""

    __slots__ = ("clock", "llm", "memory", "new_id", "on_loop", "request", "schedule", "tool")

    def __init__(
        self,
        clock: Clock,
        new_id: Callable[[], str],
        request: Callable[[Message, float | None], Awaitable[Message]],
        schedule: Callable[[Message, float], Timer],
        llm: Callable[[Provider, str, Message], Provider],
        tool: Callable[[str, str, Message], Tools],
        memory: Callable[[str, str, Message], Memory] | None = None,
        on_loop: Callable[[str, str], None] | None = None,
    ) -> None:
        self.clock = clock
        self.new_id = new_id
        self.request = request
        self.schedule = schedule
        self.llm = llm  # (provider, agent id, message) -> the provider the handler calls
        self.tool = tool  # (server, agent id, message) -> the tools the handler calls
        self.memory = memory  # (name, agent id, message) -> the memory the handler uses
        # (what is refused, how to call it instead): raises in a thread other than the
        # runtime's loop's (a def handler's worker thread).
        self.on_loop = on_loop


class RuntimeContext(_ContextBase):
    """The context a runtime gives each handler call."""

    __slots__ = ("_services",)
    _services: ContextServices  # ``emit`` reads ids and time from it (not ``_new_id``)

    def now(self) -> datetime:
        return self._services.clock.now()

    # ``emit`` and ``reply`` take their options by position too, unlike the ``Context``
    # protocol's keyword-only ones (which type checking holds a handler to): the runtime's
    # own calls pass them in order.
    def emit(
        self,
        payload: Payload,
        recipient: str | None = None,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        # Caused by the message being handled: its correlation and trace, one hop further.
        services = self._services
        out = self.last_emitted = caused_by(
            self._message,
            payload,
            self._agent_id,
            services.new_id(),
            services.clock.timestamp(),
            recipient,
            role,
            classification,
            metadata,
        )
        return out

    def reply(
        self,
        payload: Payload,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        # ``emit`` to the sender of the message being handled, built by the same ``caused_by``.
        message = self._message
        services = self._services
        out = self.last_emitted = caused_by(
            message,
            payload,
            self._agent_id,
            services.new_id(),
            services.clock.timestamp(),
            message.sender,
            role,
            classification,
            metadata,
        )
        return out

    async def sleep(self, seconds: float) -> None:
        await self._services.clock.sleep(sleep_seconds(seconds))

    async def request(
        # ``str | None``: a recipient of None reaches the runtime, which refuses it saying why
        # (a compiled build would raise a TypeError of its own at the call).
        self,
        recipient: str | None,
        payload: Payload,
        *,
        timeout: float | None = None,
    ) -> Message:
        services = self._services
        if services.on_loop is not None:
            # A def handler's thread that awaits it in an event loop of its own (asyncio.run)
            # would build and route the request off the runtime's loop: refused first.
            services.on_loop("ctx.request() refused", _REQUEST_ON_THE_LOOP)
        return await services.request(self.emit(payload, recipient=recipient), timeout)

    def schedule(self, delay: object, payload: Payload) -> Timer:
        waited = timer_delay(delay)
        return self._services.schedule(self.emit(payload, recipient=self._agent_id), waited)

    def llm(self, provider: Provider) -> Provider:
        return self._services.llm(provider, self._agent_id, self._message)

    def tool(self, server: str) -> Tools:
        return self._services.tool(server, self._agent_id, self._message)

    def memory(self, name: str = "default") -> Memory:
        remember = self._services.memory
        if remember is None:
            raise ConfigurationError("this runtime has no memory")
        return remember(name, self._agent_id, self._message)


def runtime_context(services: ContextServices, agent_id: str, message: Message) -> RuntimeContext:
    """The context of one handler call of ``agent_id`` on ``message`` (one per delivery).

    Built empty, then its slots filled: a context is only these four fields, checked by the
    runtime that fills them, so it needs no constructor of its own."""
    ctx = RuntimeContext()
    ctx._agent_id = agent_id
    ctx._message = message
    ctx._services = services
    ctx.last_emitted = None
    return ctx


Responder = Callable[[Message], Awaitable[Message]]


class TestContext(_ContextBase):
    """A context for calling ``agent.handle`` directly in a unit test, with no runtime.

    Time is a fixed, manually advanced clock: ``sleep`` advances it without waiting (a time
    it cannot reach, infinity say, waits until cancelled, as on a runtime). ``request``
    calls ``responder`` (if given) with the request message and returns what it returns.
    ``llm`` gives requests the message's context, without a budget (no runtime: no limits).
    ``tool`` calls the sessions of ``tools`` (by server name) directly, ungoverned;
    ``memory`` uses the stores of ``memory`` (a ``genie.memory.Store``, or stores by name),
    ungoverned, summarising through the model the store names without a budget.
    """

    # ClassVar: a class attribute pytest reads on the class, in the compiled build too.
    __test__: ClassVar[bool] = False  # not a pytest test class
    __slots__ = ("_memory", "_now", "_responder", "_tools", "requests", "scheduled")

    def __init__(
        self,
        agent_id: str,
        message: Message,
        *,
        now: datetime | None = None,
        responder: Responder | None = None,
        tools: Mapping[str, ToolSession] | None = None,
        memory: MemoryStore | Mapping[str, MemoryStore] | None = None,
    ) -> None:
        self._agent_id = agent_id
        self._message = message
        self._new_id = IdSource(seed=0).next
        self.last_emitted = None
        self._now = now or datetime(2026, 1, 1, tzinfo=UTC)
        self._responder = responder
        self._tools = dict(tools or {})
        self._memory = named_stores(memory, "TestContext(memory=...)")
        for name, store in self._memory.items():
            store.bind(name, None)
        self.requests: list[Message] = []
        self.scheduled: list[tuple[float, Message, Timer]] = []

    def schedule(self, delay: object, payload: Payload) -> Timer:
        timer = Timer()
        waited = timer_delay(delay)
        self.scheduled.append((waited, self.emit(payload, recipient=self._agent_id), timer))
        return timer

    def now(self) -> datetime:
        return self._now

    def llm(self, provider: Provider) -> Provider:
        return self.llm_for(provider, self._message)

    def llm_for(self, provider: Provider, message: Message) -> Provider:
        """``llm``, its calls caused by ``message`` (the request, or it classified as the data
        a call sends)."""
        from ..llm._governed import HandlerProvider  # the caller has genie.llm loaded already

        return HandlerProvider(provider, message, self._agent_id, None)

    def tool(self, server: str) -> Tools:
        session = self._tools.get(server) if isinstance(server, str) else None
        if session is None:
            raise ToolCallError(f"TestContext has no tool server {server!r}: pass tools=")
        return _SessionTools(server, session)

    def memory(self, name: str = "default") -> Memory:
        name, store = memory_of(self._memory, name, "TestContext: pass memory=")
        return Memory(name, store, _Open(self))

    async def sleep(self, seconds: float) -> None:
        waited = sleep_seconds(seconds)
        try:
            self._now += timedelta(seconds=waited)
        except OverflowError:
            # A time past the last this clock can show (infinity, say) never comes: the
            # sleep waits until cancelled, as on a runtime.
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()

    async def request(
        self, recipient: str, payload: Payload, *, timeout: float | None = None
    ) -> Message:
        msg = self.emit(payload, recipient=recipient)
        self.requests.append(msg)
        if self._responder is None:
            raise RuntimeError("TestContext.request needs a responder= to answer requests")
        return await self._responder(msg)


class ProcessContext(_ContextBase):
    """The context of a handler in a child process: it builds messages; what needs the runtime
    (which stays in the parent) is refused, naming the method."""

    __slots__ = ("_now",)

    def __init__(self, agent_id: str, message: Message, now: datetime) -> None:
        self._agent_id = agent_id
        self._message = message
        self._new_id = IdSource().next  # ids of this side only: the parent builds them again
        self.last_emitted = None
        self._now = now

    def now(self) -> datetime:
        return self._now  # the runtime clock's time when the delivery was sent to the process

    def _refuse(self, what: str) -> ConfigurationError:
        return ConfigurationError(
            f"agent {self._agent_id!r} runs in a process (offload='process'): ctx.{what} needs "
            "the runtime, which stays in the parent; return messages instead, or run the "
            "handler in a thread"
        )

    def schedule(self, delay: object, payload: Payload) -> Timer:
        raise self._refuse("schedule")

    async def sleep(self, seconds: float) -> None:
        raise self._refuse("sleep")

    async def request(
        self, recipient: str, payload: Payload, *, timeout: float | None = None
    ) -> Message:
        raise self._refuse("request")

    def llm(self, provider: Provider) -> Provider:
        raise self._refuse("llm")


class _SessionTools:
    """A session's tools called directly (``TestContext``: no runtime, no policies)."""

    __slots__ = ("_server", "_session")

    def __init__(self, server: str, session: ToolSession) -> None:
        self._server = server
        self._session = session

    async def list(self) -> Sequence[ToolSpec]:
        return await self._session.list_tools()

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolOutput:
        return await self._session.call_tool(name, sendable(self._server, name, arguments))


class _Open:
    """A unit test's memory gate: every write and read allowed, nothing audited."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: TestContext) -> None:
        self._ctx = ctx

    def write(self, kind: str, key: str, text: str, classification: str | None = None) -> str:
        return classification or self._ctx.message.classification.value

    def read(self, kind: str, key: str, text: str, classification: str | None) -> None:
        pass

    def now(self) -> datetime:
        return self._ctx.now()

    def llm(self, provider: Provider, classification: str) -> Provider:
        # As the runtime's: the call is classified as the data it sends (a residency rule
        # in a unit test sees what the runtime's would).
        level = Classification(classification)
        message = self._ctx.message.model_copy(update={"classification": level})
        return self._ctx.llm_for(provider, message)
