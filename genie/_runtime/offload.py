"""Plain ``def`` handlers, run off the event loop: in worker threads, or in a process pool.

A ``BaseAgent`` handler written as a plain ``def`` is bound once, when its agent is added, as a
handler of another kind (``ThreadHandler`` or ``ProcessHandler``): the runner's one call site
awaits it like any ``async def`` handler, so deadlines, retries, the breaker, fallbacks and dead
letters are the same for every handler. What the handler raises off the loop fails its delivery
only: a ``SystemExit`` or ``KeyboardInterrupt`` too, which on the loop's thread would stop the
runtime, comes back as an ``AgentError`` naming it, with the handler's traceback.

Threads. Each call takes a slot of its agent's limiter (``max_concurrency``) and one of its
runtime's (``Runtime(threads=...)``); two runtimes never share one. A thread cannot be
interrupted: at the handler's deadline, or when its request or the runtime is cancelled, the
delivery is given up at once (its outcome recorded as for an ``async def`` handler: a timeout,
a cancelled dead letter) and the thread is abandoned (anyio's ``abandon_on_cancel``). It runs on
to its end, still holding both slots, so the limits count the threads that really run; what it
returns then is discarded, and ``OffloadStatistics.abandoned`` counts it.

Processes (``AgentOptions(offload="process")``). The message crosses to a child process as JSON
and is rebuilt there through the message-type registry (the payload's model imported by its
name); the handler runs on a copy of the agent pickled when it was added; its outputs come back
as JSON, are validated through the runtime's registry and built again by the delivery's own
context (ids, time, correlation from this runtime). The child's context builds messages
(``reply``, ``emit``, ``now``, ``logger``) and refuses the rest (``request``, ``schedule``,
``sleep``, ``llm``): they need the runtime, which stays in the parent.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._agent.agent import Agent, process_offload_problem
from .._agent.context import Context, ProcessContext
from .._agent.outputs import outputs_of
from .._agent.threads import Slots, run_in_thread
from .._base.clock import waiting_outside
from .._base.failure import format_failure, formatted_there
from .._base.imports import folder_packages, restore_folder_packages
from .._base.record import Record
from .._errors import (
    AgentError,
    ConfigurationError,
    InvalidOutputError,
    UnknownMessageTypeError,
    described,
)
from .._message.envelope import Message
from .._message.payload import Payload, unencodable
from .._message.types import MessageTypes
from .options import AgentOptions
from .transport import Delivery

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from .._agent.agent import BaseAgent, SyncBinder

__all__ = [
    "Offload",
    "OffloadStatistics",
    "ProcessHandler",
    "ThreadHandler",
]

T = TypeVar("T")


class OffloadStatistics(Record):
    """The runtime's plain ``def`` handlers off the event loop, now and since it started."""

    thread_limit: int
    threads: int  # handler threads running now, abandoned ones included
    process_limit: int
    processes: int  # handler calls in the process pool now, abandoned ones included
    abandoned: int  # calls given up (deadline, cancel) while running: their results discarded

    @classmethod
    def unused(cls, threads: int, processes: int | None) -> OffloadStatistics:
        """A runtime none of whose agents has a plain ``def`` handler."""
        return cls(
            thread_limit=threads,
            threads=0,
            process_limit=processes or _cores(),
            processes=0,
            abandoned=0,
        )


class Offload:
    """One runtime's threads and process pool for plain ``def`` handlers (no global state: each
    runtime builds its own)."""

    def __init__(
        self,
        types: MessageTypes,
        threads: int,
        processes: int | None,
        stopping: Callable[[], bool],
    ) -> None:
        self.types = types
        # Whether the runtime is stopping: a thread it gives up is told so.
        self.stopping = stopping
        self.threads = anyio.CapacityLimiter(threads)
        # anyio's own limit is not ours to take: the slots are held (and given back) by us.
        self.unlimited = anyio.CapacityLimiter(math.inf)
        self.process_limit = processes or _cores()
        self.abandoned = 0
        self._calls: set[Future[Any]] = set()  # submitted to the pool, finished or not
        self._pool: ProcessPoolExecutor | None = None

    def binder(self, agent: Agent, options: AgentOptions) -> SyncBinder:
        """How ``agent``'s plain ``def`` handlers are bound (``handler_table``). Refuses
        ``offload="process"`` for an agent with none."""
        if options.offload == "process" and (problem := process_offload_problem(agent)):
            raise ConfigurationError(problem)
        if options.offload == "process":
            return functools.partial(ProcessHandler, self)
        agent_limit = anyio.CapacityLimiter(options.max_concurrency)
        return functools.partial(ThreadHandler, self, agent_limit)

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # Spawned, not forked: the parent runs an event loop and threads, which a fork
            # would copy mid-flight.
            self._pool = ProcessPoolExecutor(
                self.process_limit,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_end_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    def submit(
        self, call: Callable[..., T], *args: object
    ) -> tuple[ProcessPoolExecutor, Future[T]]:
        """``call(*args)`` submitted to the pool, and that pool. A pool found broken here (a
        child died while idle: killed, out of memory) is replaced first: nothing of this
        call ran, and the pool would refuse every call after it."""
        from concurrent.futures.process import BrokenProcessPool

        pool = self.pool()
        try:
            future = pool.submit(call, *args)
        except BrokenProcessPool:
            self.broken(pool)
            pool = self.pool()
            future = pool.submit(call, *args)
        self._calls = {c for c in self._calls if not c.done()}
        self._calls.add(future)
        return pool, future

    def broken(self, pool: ProcessPoolExecutor) -> None:
        """A child died: the pool is unusable; the next call starts a new one."""
        if self._pool is pool:
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """The runtime stopped: the pool's children finish what they run, then exit. The
        runtime waits for that as long as for any ``on_close``; a child still running then is
        terminated (what it would return is discarded already), else the interpreter would
        wait for it at exit, however long it runs."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            shutdown = functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            await anyio.to_thread.run_sync(shutdown, abandon_on_cancel=True)
        finally:
            # The pool's children (no public handle on them before Python 3.14's
            # ``terminate_workers``): each has ended, unless the wait was cut short.
            children: dict[int, Any] = getattr(pool, "_processes", None) or {}
            for child in list(children.values()):
                if child.is_alive():
                    child.terminate()

    def statistics(self) -> OffloadStatistics:
        return OffloadStatistics(
            thread_limit=int(self.threads.total_tokens),
            threads=self.threads.borrowed_tokens,
            process_limit=self.process_limit,
            processes=sum(not call.done() for call in self._calls),
            abandoned=self.abandoned,
        )


def _cores() -> int:
    return os.cpu_count() or 1


PARENT_CHECK_SECONDS = 0.5


def _end_with_parent(parent: int) -> None:
    """In each child, as it starts: end when the parent is gone. A parent killed outright
    (SIGKILL, the OOM killer) runs no shutdown, and its children would otherwise wait for
    calls forever, or finish a handler whose result has nowhere to go, each crash leaving
    more of them. An orphan is adopted by another process, so its parent's id changes."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="genie-parent-watch", daemon=True).start()


class ThreadHandler:
    """A plain ``def`` handler bound to its agent, run in a worker thread under its agent's and
    its runtime's limits (see the module docstring)."""

    __slots__ = ("agent_limit", "method", "offload")

    def __init__(
        self,
        offload: Offload,
        agent_limit: anyio.CapacityLimiter,
        agent: BaseAgent,
        name: str,
        payload_type: type[Payload],
    ) -> None:
        self.offload = offload
        self.agent_limit = agent_limit
        self.method = getattr(agent, name)

    async def __call__(self, payload: Payload, ctx: Context) -> object:
        slots = Slots(self._release, self.offload.stopping)
        runtime_limit = self.offload.threads
        await self.agent_limit.acquire_on_behalf_of(slots)
        try:
            await runtime_limit.acquire_on_behalf_of(slots)
        except BaseException:
            self.agent_limit.release_on_behalf_of(slots)
            raise
        try:
            # anyio's own limit is not ours to take: the slots are held (and given back) here.
            return await run_in_thread(self.method, payload, ctx, slots, self.offload.unlimited)
        finally:
            if slots.abandoned:
                self.offload.abandoned += 1

    def _release(self, slots: Slots) -> None:
        self.offload.threads.release_on_behalf_of(slots)
        self.agent_limit.release_on_behalf_of(slots)


class ProcessHandler:
    """A plain ``def`` handler run in its runtime's process pool (see the module docstring)."""

    __slots__ = ("agent_id", "folders", "offload", "pickled", "type_name")

    def __init__(
        self, offload: Offload, agent: BaseAgent, name: str, payload_type: type[Payload]
    ) -> None:
        import pickle  # only agents whose handlers run in processes pay for it

        where = f"agent {agent.id!r} (offload='process')"
        self.offload = offload
        self.agent_id = agent.id
        self.type_name = _importable(payload_type, where)
        # Classes of a module beside a pipeline file live in a package made for its folder:
        # the child makes the same one before it imports them.
        self.folders = folder_packages(type(agent).__module__, payload_type.__module__)
        try:
            # The handler bound to a copy of its agent, taken now.
            self.pickled = pickle.dumps(getattr(agent, name))
        except Exception as exc:
            raise ConfigurationError(
                f"{where}: the agent cannot be pickled to run in a process "
                f"({described(exc)}); keep clients, locks and open files out of "
                "its attributes, or run its handlers in threads"
            ) from exc

    async def __call__(self, payload: Payload, ctx: Context) -> object:
        offload = self.offload
        wire = Delivery(ctx.message, self.agent_id).encode()
        pool, future = offload.submit(
            _in_child, self.folders, self.pickled, self.type_name, wire, ctx.now()
        )
        try:
            with waiting_outside():
                returned = await anyio.to_thread.run_sync(
                    future.result, abandon_on_cancel=True, limiter=offload.unlimited
                )
        except BaseException as exc:
            from concurrent.futures.process import BrokenProcessPool

            if isinstance(exc, BrokenProcessPool):
                offload.broken(pool)
            if not future.done() and not future.cancel():
                offload.abandoned += 1  # it runs on in its child; what it returns is dropped
            raise
        if isinstance(returned, _Raised):
            raise returned.error(self.agent_id, ctx.message)
        outputs = []
        for text in returned:
            try:
                out = offload.types.parse_message(text)
            except UnknownMessageTypeError as exc:
                raise InvalidOutputError(
                    f"agent {self.agent_id!r} emitted {exc.type_name!r} from its process, "
                    "which is not registered: list it in the agent's produces",
                    message_id=ctx.message.id,
                    agent_id=self.agent_id,
                    correlation_id=ctx.message.correlation_id,
                ) from exc
            # Built again here: this runtime's ids, time, correlation and causation.
            outputs.append(
                ctx.emit(
                    out.payload,
                    recipient=out.recipient,
                    role=out.role,
                    classification=out.classification,
                    metadata=out.metadata,
                )
            )
        return outputs


def _importable(model: type[Payload], where: str) -> str:
    """``module:qualname`` of ``model``, checked to name that very class in a fresh process."""
    path = f"{model.__module__}:{model.__qualname__}"
    found: object = None
    if "<locals>" not in model.__qualname__:
        try:
            found = _import(path)
        except (ImportError, AttributeError):
            found = None
    if found is not model:
        raise ConfigurationError(
            f"{where}: its payload type {model.__qualname__} ({model.message_type!r}) cannot "
            f"be imported by name as {path} in another process; define it at the top level "
            "of a module"
        )
    return path


def _import(path: str) -> Any:
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


class _Raised:
    """What a handler raised in its child process, as it crosses back to the parent: the
    exception pickled (None if it does not pickle), its ``Type: message`` and its traceback,
    formatted in the child. Returned, never raised: an exception the parent's pool cannot
    unpickle (one whose ``__init__`` takes other arguments than its message, say) would break
    the whole pool, and with it every call running there."""

    __slots__ = ("pickled", "said", "traceback")

    def __init__(self, error: BaseException) -> None:
        import pickle

        try:
            self.pickled: bytes | None = pickle.dumps(error)
        except Exception:
            self.pickled = None
        self.said = described(error)
        self.traceback = format_failure(error)

    def error(self, agent_id: str, msg: Message) -> Exception:
        """The exception again, or, when it cannot be rebuilt here (or is no ``Exception``: a
        child's ``SystemExit`` ends its own process, not the runtime), an ``AgentError``
        saying what it was; either keeps the child's traceback for the dead letter."""
        import pickle

        error: object = None
        if self.pickled is not None:
            try:
                error = pickle.loads(self.pickled)
            except Exception:
                error = None
        if not isinstance(error, Exception):
            error = AgentError(
                f"agent {agent_id!r}: its handler raised {self.said} in its process, and that "
                "exception cannot cross back to the runtime (it does not pickle, or it is no "
                "Exception)",
                message_id=msg.id,
                agent_id=agent_id,
                correlation_id=msg.correlation_id,
            )
        formatted_there(error, self.traceback)
        return error


def _in_child(
    folders: dict[str, str], pickled: bytes, type_path: str, wire: bytes, now: datetime
) -> list[str] | _Raised:
    """In the child: rebuild the message through a registry of its payload's model, call the
    handler, return its outputs as JSON envelopes, or what it raised."""
    try:
        return _outputs_in_child(folders, pickled, type_path, wire, now)
    except BaseException as exc:
        return _Raised(exc)


def _outputs_in_child(
    folders: dict[str, str], pickled: bytes, type_path: str, wire: bytes, now: datetime
) -> list[str]:
    import pickle

    restore_folder_packages(folders)
    handler = pickle.loads(pickled)
    model = _import(type_path)
    delivery = Delivery.decode(wire, MessageTypes([model]))
    msg = delivery.message
    ctx = ProcessContext(delivery.recipient, msg, now)
    result = outputs_of(delivery.recipient, msg, handler(msg.payload, ctx), typed=True)
    try:
        texts = [m.model_dump_json() for m in result]
    except ValueError:  # pydantic's: a string UTF-8 cannot encode, or a value with no JSON
        _refuse_unencodable(result)
        raise
    # A key UTF-8 cannot encode, pydantic writes as U+FFFD instead: the parent would get
    # another key than the handler's. (ASCII text is not searched at all.)
    if any("\ufffd" in text for text in texts):
        _refuse_unencodable(result)
    return texts


def _refuse_unencodable(outputs: Sequence[Message]) -> None:
    """Raise the ``InvalidMessageError`` naming the first output holding text UTF-8 cannot
    encode (a lone surrogate) and where, if one does: an output comes back as JSON in UTF-8, so
    it cannot, and the same output would fail again (never retried)."""
    for out in outputs:
        problem = unencodable(
            out.type,
            out.payload,
            out.metadata,
            "an output comes back from the handler's process as UTF-8 JSON",
        )
        if problem is not None:
            raise problem from None
