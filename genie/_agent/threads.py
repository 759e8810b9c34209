"""Plain ``def`` handlers in worker threads: the thread's context and the one way a handler
thread is run, whether the runtime binds the handler (``ThreadHandler``, under its limits) or
``BaseAgent.handle`` reaches it (an agent's own ``handle``, a unit test: anyio's pool).

A thread cannot be interrupted: at the handler's deadline, or when its request or the runtime
is cancelled, the delivery gives the thread up at once and the thread runs on to its end; what
it returns then is discarded, and what it would do through its context is refused. What the
handler raises in the thread fails its delivery only: a ``SystemExit`` or
``KeyboardInterrupt`` too, which on the loop's thread would stop the runtime, comes back as an
``AgentError`` naming it, with the handler's traceback (and so does a ``GeneratorExit``, which
the wait for the thread would take for its own closing).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from .._base.clock import OutsideWork, waiting_outside
from .._base.failure import exiting, format_failure, formatted_there
from .._errors import AgentError, GenieError, InvalidArgumentError, described
from .._message.envelope import Message
from .._message.payload import Classification, MetaValue, Payload, Role
from .context import Context, Timer
from .memory import checked
from .outputs import RETURNS, no_message

if TYPE_CHECKING:
    import logging

    from ..llm._provider import Provider
    from ..llm._types import Request, Response, StreamEvent
    from .memory import Memory
    from .tools import ToolOutput, Tools, ToolSpec

__all__ = ["Slots", "ThreadContext", "run_in_thread"]

T = TypeVar("T")


class Slots:
    """One handler thread: whether it has ended and whether its delivery gave it up (``done``
    and ``abandoned``, read and set under ``lock`` by both sides), and how the limiter slots
    it holds are given back (``release``, none when it runs in anyio's own pool): by the
    delivery's task when the thread returns; once the delivery has given it up, by the thread
    itself, when it ends."""

    __slots__ = ("abandoned", "done", "lock", "outside", "release", "started", "stopped", "waits")

    def __init__(
        self,
        release: Callable[[Slots], None] | None = None,
        stopped: Callable[[], bool] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        # A delivery given up before a thread took its call: the thread never runs it
        # (anyio may drop the call, or run it late), and the delivery gives the slots back.
        self.started = False
        self.done = False
        self.abandoned = False
        self.release = release
        # The thread's work as announced to the loop: paused while it waits on the loop.
        self.outside: OutsideWork | None = None
        # Whether the runtime is stopping, which gives every thread up: what the thread is
        # refused then says so (none: a thread of anyio's pool, outside a runtime's stop).
        self.stopped = stopped
        # The thread's waits on the loop under way (``anyio.from_thread.run``), cancelled when
        # the delivery gives the thread up: on trio they are not the delivery's to cancel.
        # Read and changed on the loop only.
        self.waits: set[anyio.CancelScope] = set()

    def stopping(self) -> bool:
        return self.stopped is not None and self.stopped()

    def why(self) -> str:
        """Why the delivery gave the thread up, for what the thread is refused from then on."""
        if self.stopping():
            return "the runtime stopped"
        return "its deadline passed, or its request was cancelled"


async def run_in_thread(
    method: Callable[[Payload, Context], T],
    payload: Payload,
    ctx: Context,
    slots: Slots | None = None,
    limiter: anyio.CapacityLimiter | None = None,
) -> T:
    """``method(payload, ctx)``, a plain ``def`` handler, in a worker thread with the thread's
    context (``ThreadContext``): the runtime's threads (``ThreadHandler``, its slots taken),
    or anyio's pool when ``BaseAgent.handle`` reaches the handler (an agent's own ``handle``,
    a unit test). Either way the delivery gives the thread up at a deadline or cancel, and what
    the handler raises, an exit too, fails its delivery only (see the module docstring)."""
    slots = slots or Slots()
    try:
        with waiting_outside() as slots.outside:
            return await anyio.to_thread.run_sync(
                _in_thread,
                method,
                slots,
                payload,
                ThreadContext(ctx, slots),
                abandon_on_cancel=True,
                limiter=limiter,
            )
    finally:
        with slots.lock:
            slots.abandoned = not slots.done
            started = slots.started
        if slots.abandoned:
            for wait in slots.waits:
                wait.cancel()
        if (not slots.abandoned or not started) and slots.release is not None:
            slots.release(slots)


def _in_thread(
    method: Callable[[Payload, Context], T], slots: Slots, payload: Payload, ctx: ThreadContext
) -> T:
    with slots.lock:
        if slots.abandoned:  # given up before it began: nobody waits for what it returns
            return cast("T", None)
        slots.started = True
    try:
        returned = method(payload, ctx)
    except BaseException as exc:
        if exiting(exc) is None and not isinstance(exc, GeneratorExit):
            raise
        # The handler's own code raised it (Ctrl-C reaches the main thread only): in a Python
        # thread it ends that thread, never the program, so here it ends this delivery, as it
        # does in a child process; on the loop it would stop the runtime. A GeneratorExit
        # handed back to the loop would close the coroutine that waits for the thread (anyio
        # raises "coroutine ignored GeneratorExit" in the runtime's task group), not fail it.
        raise _ended_thread(exc, ctx) from exc
    else:
        if inspect.iscoroutine(returned):
            # The await forgotten. Handed back from the thread, trio would take it for an
            # async function passed as a sync one, and fail the delivery in its own words.
            raise no_message(ctx.agent_id, ctx.message, returned, "", RETURNS)
        return returned
    finally:
        with slots.lock:
            slots.done = True
            abandoned = slots.abandoned
        if abandoned and slots.release is not None:
            # If the runtime's event loop has ended, its limiters have gone with it.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(slots.release, slots)


def _ended_thread(exc: BaseException, ctx: ThreadContext) -> AgentError:
    """The failure of a delivery whose handler raised ``SystemExit`` or ``KeyboardInterrupt``
    in its thread, keeping the handler's traceback for the dead letter."""
    msg = ctx.message
    error = AgentError(
        f"agent {ctx.agent_id!r}: its handler raised {described(exc)} in its thread, where it "
        "fails the delivery and does not stop the runtime (in any Python thread it ends only "
        "that thread)",
        message_id=msg.id,
        agent_id=ctx.agent_id,
        correlation_id=msg.correlation_id,
    )
    formatted_there(error, format_failure(exc))
    return error


class ThreadContext:
    """The context of a handler in a thread. What reads the runtime clock or its ids (``now``,
    ``reply``, ``emit``, ``schedule``) is carried to the event loop and done there, as in an
    ``async def`` handler (the clock may be trio's, or virtual); ``logger``, ``agent_id`` and
    ``message`` are read here. The async methods are awaited on the loop by the handler itself:
    ``anyio.from_thread.run(ctx.request, "pricer", Quote(...))``.

    Once the delivery has given its thread up, what would reach the runtime (``now``,
    ``reply``, ``emit``, ``schedule``, ``sleep``, ``request``, ``llm``, ``tool``, ``memory``,
    and the calls of the tools, memory and model taken before) is refused: a late thread
    leaves nothing behind, and never waits on a loop that may have ended. Those calls are
    refused too when awaited off the event loop (``asyncio.run`` in the thread)."""

    __slots__ = ("_ctx", "_loop", "_slots")

    def __init__(self, ctx: Context, slots: Slots) -> None:
        self._ctx = ctx
        self._slots = slots
        self._loop = threading.get_ident()  # made on the event loop's thread

    def _on_loop(self, what: str, call: Callable[..., T], *args: object) -> T:
        """``call(*args)`` on the event loop, unless the delivery gave this thread up (read
        here first: its runtime, and the loop, may be gone by now)."""
        self._check(what)
        return anyio.from_thread.run_sync(call, *args)

    def _awaited(self, what: str) -> None:
        """``_check``, for a call of the tools, memory or model the thread took, which the
        handler awaits: refused too when awaited off the event loop (a loop of the thread's
        own, ``asyncio.run``), where what it changes would race the loop's deliveries."""
        self._check(what)
        if threading.get_ident() != self._loop:
            raise InvalidArgumentError(
                f"ctx.{what}: a call of it was awaited in the handler's worker thread (a def "
                f"handler); await it on the event loop: anyio.from_thread.run(...)"
            )

    def _awaiting(self, what: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Around a call of the tools, memory or model the thread took: ``_awaited``, then
        the wait ``_given_up_meanwhile``, as the thread's own sleep and requests."""
        self._awaited(what)
        return self._given_up_meanwhile(what)

    def _check(self, what: str) -> None:
        # In the thread, then again on the event loop, where the delivery's task marks its
        # thread given up.
        if self._slots.abandoned:
            raise self._refused(what)

    def _refused(self, what: str) -> AgentError:
        msg = self._ctx.message
        return AgentError(
            f"agent {self._ctx.agent_id!r}: ctx.{what} refused, the delivery gave this "
            f"thread up ({self._slots.why()})",
            message_id=msg.id,
            agent_id=self._ctx.agent_id,
            correlation_id=msg.correlation_id,
        )

    @contextlib.asynccontextmanager
    async def _given_up_meanwhile(self, what: str) -> AsyncIterator[None]:
        """Around a wait on the loop for the thread (``anyio.from_thread.run``: its sleep,
        request, or a call of its tools, memory or model), entered on the loop: refused at
        once if the delivery gave the thread up, and if it does meanwhile, the wait is
        cancelled and the thread refused as a call made after would be, on every backend.
        On asyncio anyio cancels the wait with the delivery (a bare ``CancelledError`` in the
        thread); on trio the delivery's scope does not reach it, so the delivery cancels the
        thread's waits itself (``Slots.waits``) as it gives the thread up."""
        self._check(what)
        waits, outside = self._slots.waits, self._slots.outside
        try:
            # The thread waits on the loop: no longer work outside it that a virtual clock
            # must wait for, whatever it waits on (its sleep, a reply, its tools, memory or
            # model, which may wait on the loop's clock in turn).
            with (
                anyio.CancelScope() as wait,
                contextlib.nullcontext() if outside is None else outside.paused(),
            ):
                waits.add(wait)
                try:
                    yield
                finally:
                    waits.discard(wait)
        except anyio.get_cancelled_exc_class() as exc:
            # The wait is the thread's alone, cancelled with its delivery: the thread is told
            # so instead of the bare cancellation (which ends nothing else: the task is
            # anyio's for this call).
            raise self._refused(what) from exc
        except GenieError as exc:
            if self._slots.abandoned or self._slots.stopping():
                raise self._refused(what) from exc
            raise
        if wait.cancel_called:  # what it waited for ended anyway, given up: not the thread's
            raise self._refused(what)

    @property
    def agent_id(self) -> str:
        return self._ctx.agent_id

    @property
    def message(self) -> Message:
        return self._ctx.message

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._ctx.logger

    def now(self) -> datetime:
        return self._on_loop("now", self._ctx.now)

    def reply(
        self,
        payload: Payload,
        *,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        build = functools.partial(
            self._ctx.reply, role=role, classification=classification, metadata=metadata
        )
        return self._on_loop("reply", build, payload)

    def emit(
        self,
        payload: Payload,
        *,
        recipient: str | None = None,
        role: Role = Role.AGENT,
        classification: Classification | None = None,
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> Message:
        build = functools.partial(
            self._ctx.emit,
            recipient=recipient,
            role=role,
            classification=classification,
            metadata=metadata,
        )
        return self._on_loop("emit", build, payload)

    def schedule(self, delay: float, payload: Payload) -> Timer:
        return self._on_loop("schedule", self._schedule, delay, payload)

    def _schedule(self, delay: float, payload: Payload) -> Timer:
        self._check("schedule")
        return self._ctx.schedule(delay, payload)

    async def sleep(self, seconds: float) -> None:
        async with self._given_up_meanwhile("sleep"):
            await self._ctx.sleep(seconds)

    async def request(
        self, recipient: str, payload: Payload, *, timeout: float | None = None
    ) -> Message:
        async with self._given_up_meanwhile("request"):
            return await self._ctx.request(recipient, payload, timeout=timeout)

    def llm(self, provider: Provider) -> Provider:
        return self._on_loop("llm", self._llm, provider)

    def _llm(self, provider: Provider) -> Provider:
        self._check("llm")
        return _CheckedProvider(self._ctx.llm(provider), functools.partial(self._awaiting, "llm"))

    # What ``tool`` and ``memory`` return is awaited on the loop by the handler itself:
    # ``anyio.from_thread.run(ctx.tool("broker").call, "get_holdings", {})``.
    def tool(self, server: str) -> Tools:
        return self._on_loop("tool", self._tool, server)

    def _tool(self, server: str) -> Tools:
        self._check("tool")
        return _CheckedTools(self._ctx.tool(server), functools.partial(self._awaiting, "tool"))

    def memory(self, name: str = "default") -> Memory:
        return self._on_loop("memory", self._memory, name)

    def _memory(self, name: str) -> Memory:
        self._check("memory")
        # Its reads and writes are refused too once the thread is given up: they run later,
        # on the loop, when the handler awaits them.
        return checked(
            self._ctx.memory(name),
            functools.partial(self._awaited, "memory"),
            functools.partial(self._awaiting, "memory"),
        )


# What a call the thread awaits runs in: refused once the delivery gave the thread up, or
# off the loop, and ended with a refusal when the delivery gives the thread up meanwhile.
_Guard = Callable[[], contextlib.AbstractAsyncContextManager[None]]


class _CheckedProvider:
    """A thread's model (``ctx.llm``): each call, awaited later on the loop, is refused once
    the delivery gave the thread up, as ``ctx.llm`` itself is, or when awaited off the loop,
    and refused when the delivery gives the thread up while it runs."""

    __slots__ = ("_guard", "_provider")

    def __init__(self, provider: Provider, guard: _Guard) -> None:
        self._provider, self._guard = provider, guard

    @property
    def name(self) -> str:
        return self._provider.name

    @property
    def region(self) -> str:
        return self._provider.region

    async def complete(self, request: Request) -> Response:
        async with self._guard():
            return await self._provider.complete(request)

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        async with self._guard(), self._provider.stream(request) as events:
            yield events


class _CheckedTools:
    """A thread's tools of one server: each call, awaited later on the loop, is refused once
    the delivery gave the thread up, as ``ctx.tool`` itself is, or when awaited off the
    loop, and refused when the delivery gives the thread up while it runs."""

    __slots__ = ("_guard", "_tools")

    def __init__(self, tools: Tools, guard: _Guard) -> None:
        self._tools, self._guard = tools, guard

    async def list(self) -> Sequence[ToolSpec]:
        async with self._guard():
            return await self._tools.list()

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> ToolOutput:
        async with self._guard():
            return await self._tools.call(name, arguments)
