"""The HTTP application: pipelines behind ``/v1``, on the runtimes' own event loop.

Every ``/v1`` request authenticates (``Authorization: Bearer KEY`` or ``X-API-Key``), passes its
principal's rate limit and the size limit, then runs as ``genie run --json`` would: the same
result document, with an HTTP status that says how it ended (``STATUS``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

import anyio
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as Message_

from .._base.clock import Clock
from .._base.log import lazy_logger
from .._base.nesting import json_depth_exceeds
from .._base.resilience import at_least
from .._base.strict_json import LoneSurrogateError, loads_strict
from .._base.tracecontext import TraceParent
from .._errors import (
    ConfigurationError,
    GenieError,
    InvalidMessageError,
    RuntimeClosedError,
    StoreError,
    WouldBlockError,
    described,
    did_you_mean,
    for_terminal,
    unwrapped,
)
from .._message.envelope import Message
from .._runtime.approvals import (
    DESK,
    Approval,
    ApprovalDesk,
    ApprovalNotPendingError,
    ApprovalRefusedError,
    may_answer,
)
from .._runtime.audit import AuditRecord, AuditSink, MemoryAuditLog
from .._runtime.observe.metrics import Metrics
from .._runtime.observe.observer import Observer
from .._runtime.runtime import Runtime
from .._runtime.transport import RESERVED_IDS
from ..pipeline import Pipeline, RunResult
from ._exposition import exposition
from ._keys import ApiKey, KeyRing
from ._limits import FailedAuth, RateLimits
from ._openapi import openapi
from ._page import PAGE, PAGE_HEADERS
from ._stream import (
    Recording,
    Recordings,
    StreamGate,
    event_json,
    resume_point,
    text_json,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from ..llm import LLMStacks
    from ..mcp._http import HttpTools

__all__ = ["STATUS", "ServeSettings", "create_app"]

_log = lazy_logger("genie.serve")
SERVER = "genie-serve"  # the actor of the server's own audit records

# The HTTP status of each run status: the output (200, a workflow's that says it failed too:
# the body's status says so), a denial (403), a timeout (504), and a pipeline that ended
# without its output (502: the server is a gateway to the pipeline).
STATUS = {
    "ok": 200,
    "partial": 200,
    "workflow_failed": 200,
    "denied": 403,
    "timed_out": 504,
    "failed": 502,
    "fallback": 502,
    "no_output": 502,
}
METADATA_HEADER = "genie-metadata"
CLIENT_CLOSED = 499  # the status the proxies count a client that closed first under
MCP_CALLER = "genie.caller"  # where /mcp leaves the authenticated key in the request's scope
MAX_HEADER_BYTES = 16 * 1024
"""The request line and headers together, as docs/serve.md states (431 past it): enforced
here, whatever the HTTP parser in front would let through."""
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)  # ``?timeout=``: 30, 2.5
SETTLE_WAIT = 1.0  # seconds a streamed result waits for the request's last events


@dataclass(frozen=True)
class ServeSettings:
    """``rate`` requests a second per principal (``burst`` at once; a key may set its own),
    ``max_body`` bytes a request (all in within ``body_timeout`` seconds, else 408),
    ``max_timeout`` seconds a request may wait (a longer ``?timeout`` refused, a pipeline's
    longer ``timeout`` cut to it), the last ``replay`` recorded streams of
    each principal kept for reconnection (each at most ``stream_frames`` frames and
    ``stream_bytes`` bytes of them, its result aside), a comment line on a stream every
    ``heartbeat`` seconds without a frame (so proxies keep an idle stream open), and per
    client address ``auth_failures`` failed authentications at once, then
    ``auth_failure_rate`` a second, before its requests are refused with 429 (so keys cannot
    be guessed at speed). A stream carries the text its model calls stream, each release
    judged for the principal with the last ``hold_back`` characters held until more arrives
    (None: a call's text only once it ended, judged whole; see ``Runtime.model_text``)."""

    rate: float = 10.0
    burst: int | None = None
    max_body: int = 1 << 20
    max_timeout: float = 300.0
    replay: int = 128
    stream_frames: int = 1024
    stream_bytes: int = 1 << 20
    heartbeat: float = 15.0
    body_timeout: float = 30.0
    auth_failures: int = 10
    auth_failure_rate: float = 1.0
    hold_back: int | None = 64
    store: Path | None = None  # a folder: each pipeline's deliveries kept there (``store_file``)
    store_sync: float | Literal["always"] = 1.0  # when the stores' writes reach the disk
    mcp: bool = False  # POST /mcp: the pipelines as MCP tools (the ``mcp`` extra)

    def __post_init__(self) -> None:
        # Refused here, naming the setting, not by the request that first reads it: a rate of
        # 0 divides by zero there (a 500), a heartbeat of 0 sends keep-alives without end, and
        # NaN is no limit (every comparison with it is false).
        for name in ("rate", "max_timeout", "heartbeat", "body_timeout", "auth_failure_rate"):
            value = getattr(self, name)
            if not (at_least(value, 0, strictly=True) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number above 0, not {value!r}")
        # burst None: the rate's; hold_back None: a call's text once it ended.
        counts = {"max_body": 1, "burst": 1, "replay": 0, "stream_frames": 0, "stream_bytes": 0}
        for name, least in {**counts, "auth_failures": 0, "hold_back": 0}.items():
            value = getattr(self, name)
            if not (value is None and name in ("burst", "hold_back")) and not (
                isinstance(value, int) and at_least(value, least)
            ):
                raise ValueError(
                    f"{name} must be a whole number of at least {least}, not {value!r}"
                )


class _Refused(Exception):
    """A request refused before it ran: the HTTP status and one clear line."""

    def __init__(self, status: int, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.extra = extra
        self.headers: dict[str, str] = {}


class _Taken:
    """Whether a streamed request got in: set once its request is published (or its run ended
    otherwise), or with the full mailbox that kept it out, before its stream is answered."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.refused: WouldBlockError | None = None

    def set(self, refused: WouldBlockError | None = None) -> None:
        if not self.event.is_set():
            self.refused = refused
            self.event.set()


@dataclass
class _Served:
    pipeline: Pipeline
    runtime: Runtime
    gate: StreamGate
    # How long a request waits when its client names no ``?timeout``, or when no client
    # waits (one resumed from the store after a restart): its pipeline's timeout, within the
    # server's ``max_timeout``, so a restart holds no work longer than the server promises.
    timeout: float


class _InFlight:
    """One request the server runs, from when it is taken until it is answered: counted as
    in flight (the stop's report, ``genie_serve_in_flight``, the drain waits for it), then as
    cut when the drain deadline cancels it, or as finished within the drain. A request run
    inside its ``scope`` is cancelled there at the drain's end, so the server answers it (a
    503 saying so) before the HTTP server's own deadline cuts the connection."""

    def __init__(self, state: ServerState, method: str, path: str, principal: str) -> None:
        self.state = state
        self.method = method
        self.path = path
        self.principal = principal
        ends = state.drain_until
        self.scope = anyio.CancelScope(deadline=math.inf if ends is None else ends)
        state.in_flight[id(self)] = self

    def __enter__(self) -> None:
        pass

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        state = self.state
        del state.in_flight[id(self)]
        if self.scope.cancelled_caught or (
            kind is not None and issubclass(kind, anyio.get_cancelled_exc_class())
        ):
            state.cut.append(self)  # the drain deadline passed (or the client went away)
        elif kind is None and state.draining:
            state.completed_while_draining += 1


@dataclass
class ServerState:
    """What the routes share; ``ready`` once every runtime has started."""

    served: dict[str, _Served] = field(default_factory=dict)
    ready: bool = False
    draining: bool = False
    at_signal: int = 0  # requests in flight when the stop began
    drain_until: float | None = None  # when the stop's drain ends (``anyio.current_time``)
    in_flight: dict[int, _InFlight] = field(default_factory=dict)
    cut: list[_InFlight] = field(default_factory=list)
    completed_while_draining: int = 0
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (route, code)
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    tasks: TaskGroup | None = None
    mcp: HttpTools | None = None  # /mcp's tools while the runtimes run (``ServeSettings.mcp``)
    unstarted: GenieError | None = None  # what stopped it starting (a store it cannot use)

    def drain(self, until: float) -> None:
        """The stop began: requests are refused from now on, and those in flight have until
        ``until`` (``anyio.current_time``) to finish."""
        self.draining = True
        self.at_signal = len(self.in_flight)
        self.drain_until = until
        for flight in self.in_flight.values():
            flight.scope.deadline = until

    def failure(self) -> GenieError | None:
        """What stopped a runtime of the server on its own (a write its store's disk refused),
        from the moment it failed: then every runtime stops, each request still to answer is
        a 503 naming it, and ``genie serve`` exits 1 with it so a supervisor restarts it."""
        for served in self.served.values():
            if served.runtime.failure is not None:
                return served.runtime.failure
        return None


# The longest wait a ``Retry-After`` names: a rate so small that the next token is further off
# (``rate: 1e-320``, an infinite wait) is still said in whole seconds, as a day.
_LONGEST_RETRY = 86_400


def _retry_after(wait: float) -> str:
    """``wait`` seconds as a ``Retry-After``: whole seconds, at least 1, at most a day."""
    return str(max(1, round(min(wait, _LONGEST_RETRY) + 0.5)))


def _cut_at_drain(correlation_id: str | None) -> _Refused:
    """A request still running when the stop's drain ended, cancelled there: a 503."""
    return _Refused(
        503,
        "the server is stopping: the request was not finished at the end of its drain and was "
        "cancelled",
        correlation_id=correlation_id,
    )


def _stopped(failure: GenieError, correlation_id: str | None = None) -> _Refused:
    """A request the store's failure ended, or refused: a 503 (the server stops, and its
    restart on the same store resumes what it kept), naming the store and the cause."""
    extra = {} if correlation_id is None else {"correlation_id": correlation_id}
    return _Refused(503, f"{failure}; the server is stopping", **extra)


def _unavailable(state: ServerState, correlation_id: str | None = None) -> _Refused | None:
    """The 503 of a request the server cannot take, or cannot finish: its store failed
    (``_stopped``), or it is starting or stopping. None while it serves."""
    failure = state.failure()
    if failure is not None:
        return _stopped(failure, correlation_id)
    if state.draining or not state.ready:
        return _Refused(503, "the server is not ready or is shutting down")
    return None


@dataclass
class _McpCall:
    """The caller of one ``/mcp`` request: its key, and the correlation of the tool call it
    asked, once asked (what a 503 names when the server stops under the call)."""

    key: ApiKey
    trace: TraceParent | None = None  # the request's ``traceparent``, as an ask's is read
    correlation_id: str | None = None

    @property
    def principal(self) -> str:
        return self.key.principal

    @property
    def tracebacks(self) -> bool:
        return self.key.tracebacks

    def stamp(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        stamped = self.key.stamp(metadata)
        if self.trace is not None:  # the call joins the caller's trace, as an ask does
            stamped["traceparent"] = self.trace.header()
        return stamped


def _json_error(status: int, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, **extra}, status_code=status)


def create_app(
    pipelines: Sequence[Pipeline],
    keys: KeyRing,
    *,
    settings: ServeSettings | None = None,
    audit: AuditSink | None = None,
    observers: Callable[[str, Runtime], object] | None = None,
    tracing: TracerProvider | bool = False,
    check: Callable[[str, Runtime], object] | None = None,
) -> Starlette:
    """The ASGI application serving ``pipelines`` (each in a runtime of its own, started by
    the app's lifespan). ``audit`` receives the runtimes' records and the server's own
    (rate-limited, too large); ``observers`` is called with each runtime before it starts,
    ``check`` with each once all have started, before a request kept is resumed: an error of
    genie's it raises stops the start (``genie serve``: a store keeping a request its pipeline
    cannot read).
    ``tracing`` (the ``otel`` extra): True traces every delivery and LLM call with the global
    tracer provider, or give the provider."""
    settings = settings or ServeSettings()
    sink: AuditSink = audit if audit is not None else MemoryAuditLog()
    names = [p.name for p in pipelines]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"two pipelines share a name: {sorted(names)}")
    by_name = {p.name: p for p in pipelines}
    # A client's requests are sent under its principal: named as the runtime's own senders
    # (trusted by workflows, not kept by a store) or as this server's audit actor, it would
    # pass for them.
    reserved = {name: f"the runtime's own ({why})" for name, why in RESERVED_IDS.items()}
    reserved[SERVER] = "this server's own (its actor in the audit log)"
    taken = sorted(set(reserved) & set(keys.principals()))
    if taken:
        raise ConfigurationError(
            f"principal {taken[0]!r} is {reserved[taken[0]]}: rename the principal"
        )
    for p in pipelines:
        clash = sorted({d.id for d in p.config.agents} & set(keys.principals()))
        if clash:
            raise ConfigurationError(
                f"principal {clash[0]!r} is also an agent of pipeline {p.name!r}: the policies "
                "could not tell the client from the agent; rename the principal"
            )
    for p in pipelines:
        if p.config.timeout > settings.max_timeout:
            _log.warning(
                "pipeline %r: its timeout of %gs is over the server's max_timeout: its "
                "requests wait at most %gs",
                p.name,
                p.config.timeout,
                settings.max_timeout,
            )
    state = ServerState()
    limits = RateLimits(settings.rate, settings.burst)
    failures = FailedAuth(settings.auth_failure_rate, settings.auth_failures)
    recordings = Recordings(settings.replay, settings.stream_frames, settings.stream_bytes)
    no_desk = ApprovalDesk(Clock(), sink)  # refuses answers when no pipeline asks for one

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stacks: list[LLMStacks | None] = []
        served = False
        try:
            with unwrapped(GenieError):
                await anyio.to_thread.run_sync(_check_stores, settings.store, names)
                # One registry a runtime, its models' metrics in it: /metrics labels both
                # with the pipeline, and no other server or runtime of the process sees them.
                metrics = [Metrics() for _ in pipelines]
                for p, m in zip(pipelines, metrics, strict=True):
                    stacks.append(p.llm_stacks(metrics=m))  # each kept as made, to close
                async with anyio.create_task_group() as tg:
                    state.tasks = tg
                    async with _runtimes(
                        pipelines, stacks, metrics, sink, state, observers, tracing, settings
                    ):
                        if check is not None:
                            for name, kept in state.served.items():
                                check(name, kept.runtime)
                        for kept in state.served.values():
                            resume_kept(kept, tg)
                        async with mcp_tools():
                            state.ready = served = True
                            try:
                                yield
                            finally:
                                state.ready = False
                                await _drained(state)
                                tg.cancel_scope.cancel()  # streamed requests still running are cut
        except GenieError as exc:
            if not served:
                # It could not start (a store it cannot use, a write its disk refused): the
                # error is raised as itself, and told to the server as its line (``_Start``).
                state.unstarted = exc
                raise
            # A write its store's disk refused stopped a runtime, and all of them with it:
            # the server says so (``ServerState.failure``: a 503 to every request, and
            # ``genie serve`` exits 1), not as the lifespan's traceback while it serves on
            # without runtimes.
            if not isinstance(exc, StoreError):
                raise
        finally:
            for s in stacks:
                if s is not None:
                    await s.aclose()

    def mcp_tools() -> AbstractAsyncContextManager[object]:
        """The served pipelines as MCP tools on ``/mcp``, once their runtimes run."""
        if not settings.mcp:
            return nullcontext()
        from ..mcp import PipelineTools
        from ..mcp._http import HttpTools

        def asked(caller: object, correlation_id: str) -> None:
            assert isinstance(caller, _McpCall)  # as ``mcp_endpoint`` names every caller
            caller.correlation_id = correlation_id

        served = {name: (s.pipeline, s.runtime) for name, s in state.served.items()}
        tools = PipelineTools(served, sink, max_timeout=settings.max_timeout, asked=asked)
        state.mcp = HttpTools(
            tools, lambda request: request.scope[MCP_CALLER], max_body=settings.max_body
        )
        return state.mcp.running()

    def resume_kept(served: _Served, tg: TaskGroup) -> None:
        """Run to their end the requests a killed server left in the store, each recorded
        for its principal, who reconnects to ``GET /v1/streams/{correlation_id}``."""
        for request in served.runtime.unfinished():
            principal = str(request.metadata.get("user_id") or request.sender)
            key = keys.of(principal) or ApiKey(principal, (), None, frozenset(), None, None)
            rec = recordings.open(request.correlation_id, principal)
            _log.info(
                "resuming request %s of %s from the store",
                request.correlation_id,
                principal,
                extra={
                    "agent_id": "-",
                    "message_type": request.type,
                    "correlation_id": request.correlation_id,
                },
            )
            tg.start_soon(_resumed, served, key, request, rec, settings.hold_back)

    def record(action: str, principal: str, **details: str) -> None:
        state.rejected[action] = state.rejected.get(action, 0) + 1
        sink.record(AuditRecord(datetime.now(UTC), SERVER, action, principal, details))
        _log.warning("%s: %s %s", action, principal, details)

    def busy(served: _Served, key: ApiKey, path: str, full: WouldBlockError) -> _Refused:
        """A request its pipeline had no room for (an entry agent's mailbox full): nothing of
        it was sent, and the client is told to come back, as over its rate."""
        agent = full.agent_id or "?"
        record("busy", key.principal, path=path, agent=agent)
        refused = _Refused(429, served.pipeline.busy(served.runtime, full), agent=agent)
        refused.headers["Retry-After"] = "1"
        return refused

    async def admit(request: Request) -> ApiKey:
        unavailable = _unavailable(state)
        if unavailable is not None:
            raise unavailable
        address = request.client.host if request.client else "(unknown)"
        now = anyio.current_time()
        wait = failures.wait(address, now)
        if wait:
            refused = _Refused(
                429, "too many failed authentications from this address; retry later"
            )
            refused.headers["Retry-After"] = _retry_after(wait)
            raise refused
        presented = _credential(request)
        if not presented:
            refused = _Refused(401, "missing API key: send 'Authorization: Bearer KEY'")
            refused.headers["WWW-Authenticate"] = "Bearer"
            raise refused
        key = keys.find(presented)
        if key is None:
            if failures.failed(address, now):
                record("auth_throttled", address, path=request.url.path)
            refused = _Refused(401, "unknown API key")
            refused.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            raise refused
        wait = limits.take(key.principal, now, key.rate, key.burst)
        if wait:
            record("rate_limited", key.principal, path=request.url.path)
            refused = _Refused(
                429, f"rate limit of principal {key.principal!r} exceeded; retry later"
            )
            refused.headers["Retry-After"] = _retry_after(wait)
            raise refused
        return key

    async def body_of(request: Request, key: ApiKey, metadata: bytes) -> bytes:
        """The body; the ``Genie-Metadata`` header counts against the limit with it, as it
        ends up in the message too."""
        declared = request.headers.get("content-length")
        too_large = _Refused(
            413, f"request body and Genie-Metadata over the limit of {settings.max_body} bytes"
        )
        size = len(metadata)
        if declared is not None and declared.isascii() and declared.isdigit():
            if int(declared) + size > settings.max_body:
                record(
                    "too_large", key.principal, path=request.url.path, bytes=f"{declared}+{size}"
                )
                raise too_large
        elif size > settings.max_body:
            record("too_large", key.principal, path=request.url.path, bytes=f"{size} (metadata)")
            raise too_large
        chunks = []
        # A body sent a byte at a time would hold the request, and the server's slot, for as
        # long as its caller liked.
        with anyio.move_on_after(settings.body_timeout) as reading:
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > settings.max_body:
                        record("too_large", key.principal, path=request.url.path, bytes=f">{size}")
                        raise too_large
                    chunks.append(chunk)
            except ClientDisconnect:
                # The client left before its body was in: it asked nothing, and no fault of
                # the server's. Counted as the proxies count it (499: the client closed).
                _log.info(
                    "%s %s: the client left before its body arrived",
                    request.method,
                    for_terminal(request.url.path),
                )
                raise _Refused(
                    CLIENT_CLOSED, "the client closed the connection before its body arrived"
                ) from None
        if reading.cancelled_caught:
            waited = f"{settings.body_timeout:g}s"
            record("body_timeout", key.principal, path=request.url.path, waited=waited)
            raise _Refused(408, f"the request body did not arrive within {waited}")
        return b"".join(chunks)

    def served_of(name: str) -> _Served:
        served = state.served.get(name)
        if served is None:
            hint = did_you_mean(name, state.served)
            raise _Refused(404, f"no pipeline {name!r} is served{hint}")
        return served

    async def prepare(request: Request) -> tuple[_Served, ApiKey, Message, float | None]:
        key = await admit(request)
        served = served_of(request.path_params["name"])
        headers = request.headers.getlist(METADATA_HEADER)
        if len(headers) > 1:
            raise _Refused(400, "header Genie-Metadata given twice: send one")
        # Header values reach us as Latin-1 text: their bytes are read as UTF-8, strictly.
        header = headers[0].encode("latin-1") if headers else b""
        raw = await body_of(request, key, header)
        pipeline, rt = served.pipeline, served.runtime
        data = _json_object(raw or b"{}", "the request body")
        extra = _metadata(_json_object(header or b"{}", "header Genie-Metadata"))
        timeout = _timeout(_query(request, "timeout"), settings.max_timeout)
        if timeout is None:  # the pipeline's own, within the server's ceiling as on /mcp
            timeout = served.timeout
        trace = TraceParent.parse(request.headers.getlist("traceparent"))
        metadata = key.stamp(extra)
        if trace is not None:
            metadata["traceparent"] = trace.header()
        try:
            payload = pipeline.request_payload(rt, data)
            msg = pipeline.entry_message(
                rt, payload, metadata=metadata, trace_id=trace.trace_id if trace else None
            )
        except InvalidMessageError as exc:
            raise _Refused(400, str(exc), type=exc.type_name, field=exc.field) from exc
        return served, key, msg, timeout

    def guarded(
        route: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                response = await handler(request)
            except _Refused as refused:
                response = _json_error(refused.status, refused.error, **refused.extra)
                response.headers.update(refused.headers)
            except RuntimeClosedError as exc:  # a request that arrived as the runtime closed
                failure = state.failure()  # closed by its store's failure: that is the why
                response = _json_error(503, str(exc if failure is None else _stopped(failure)))
            except GenieError as exc:
                _log.exception("%s %s failed", request.method, for_terminal(request.url.path))
                response = _json_error(500, str(exc))
            except Exception:  # a fault of ours: logged, and still a JSON answer
                _log.exception("%s %s failed", request.method, for_terminal(request.url.path))
                response = _json_error(500, "internal error (logged on the server)")
            key = (route, str(response.status_code))
            state.counts[key] = state.counts.get(key, 0) + 1
            return response

        return endpoint

    async def ask(request: Request) -> Response:
        served, key, msg, timeout = await prepare(request)
        flight = _InFlight(state, "POST", request.url.path, key.principal)
        with flight, flight.scope:
            try:
                result = await served.pipeline.ask(served.runtime, msg, timeout=timeout, wait=False)
            except WouldBlockError as full:
                raise busy(served, key, request.url.path, full) from None
        if flight.scope.cancelled_caught:
            raise _cut_at_drain(msg.correlation_id)
        failure = state.failure()
        if failure is not None and result.status != "ok":  # ended by the stop it caused
            raise _stopped(failure, msg.correlation_id)
        return _result_response(result, key.tracebacks)

    async def ask_stream(request: Request) -> Response:
        served, key, msg, timeout = await prepare(request)
        rec = recordings.open(msg.correlation_id, key.principal)
        assert state.tasks is not None
        flight = _InFlight(state, "POST", request.url.path, key.principal)
        taken = _Taken()
        ask = partial(served.pipeline.ask, wait=False)

        async def run() -> None:
            try:
                with flight:
                    await _run_recorded(
                        served, key, msg, timeout, rec, settings.hold_back, ask, taken
                    )
            finally:
                rec.finish()
                taken.set()

        state.tasks.start_soon(run)
        # Answered 200 once the request is in: a full mailbox is the client's 429 instead.
        await taken.event.wait()
        if taken.refused is not None:
            recordings.forget(msg.correlation_id, key.principal)
            raise busy(served, key, request.url.path, taken.refused)
        location = {"Location": f"/v1/streams/{msg.correlation_id}"}
        return _sse(rec, -1, settings.heartbeat, location)

    async def resume(request: Request) -> Response:
        key = await admit(request)
        cid = request.path_params["correlation_id"]
        # Another principal's stream is as unknown as one that never was.
        rec = recordings.get(cid, key.principal)
        if rec is None:
            raise _Refused(404, f"no stream {cid!r} to resume (expired, or never started)")
        # Given twice, the header is read as HTTP joins it (``CID:3, CID:9``): malformed,
        # where the first alone would depend on who reads them.
        last = ", ".join(request.headers.getlist("last-event-id"))
        after = resume_point(last, cid, len(rec.frames))
        return _sse(rec, after, settings.heartbeat)

    async def list_pipelines(request: Request) -> Response:
        await admit(request)
        return JSONResponse({"pipelines": [_describe(s.pipeline) for s in state.served.values()]})

    async def statistics(request: Request) -> Response:
        await admit(request)
        served = served_of(request.path_params["name"])
        return JSONResponse(served.runtime.statistics().as_dict())

    def with_desk() -> list[tuple[str, Runtime]]:
        """The served runtimes that take approvals (their pipelines have an agent asking)."""
        return [
            (name, served.runtime)
            for name, served in state.served.items()
            if any(agent.id == DESK for agent in served.runtime.agents())
        ]

    async def list_approvals(request: Request) -> Response:
        key = await admit(request)
        pending = [
            {"pipeline": name, **_approval_json(approval)}
            for name, rt in with_desk()
            for approval in rt.approvals.pending()
            if may_answer(approval, key.principal, key.roles) is None
        ]
        return JSONResponse({"approvals": pending})

    async def answer_approval(request: Request) -> Response:
        key = await admit(request)
        approval_id = request.path_params["approval_id"]
        verb = request.path_params["verb"]
        if verb not in ("approve", "reject"):
            raise _Refused(404, f"POST {request.url.path}: answer with approve or reject")
        raw = await body_of(request, key, b"")
        body = _json_object(raw or b"{}", "the request body")
        # A mistyped key would decide the approval without the reason meant for the record.
        unknown = next((k for k in body if k != "reason"), None)
        if unknown is not None:
            raise _Refused(
                400,
                f"the request body: unknown field {unknown!r}{did_you_mean(unknown, ['reason'])}; "
                'an answer\'s body is {"reason": "..."}',
                field=unknown,
            )
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise _Refused(400, "'reason' must be text", field="reason")
        approved = verb == "approve"
        desks = with_desk()
        # The desk that has the approval, or decided it. An id none knows is still an answer
        # someone gave (a stale link, a mistyped id, a guess), refused and audited by one desk,
        # or, when no pipeline here asks for approvals, by a desk that holds none.
        knowing = [d for d in desks if d[1].approvals.knows(approval_id)] or desks[:1]
        if not knowing:
            raise _Refused(404, no_desk.refuse_not_pending(key.principal, approval_id, approved))
        name, rt = knowing[0]
        answer = rt.approvals.approve if approved else rt.approvals.reject
        try:
            answer(approval_id, by=key.principal, roles=key.roles, reason=reason)
        except ApprovalNotPendingError as gone:
            raise _Refused(404, str(gone)) from None
        except ApprovalRefusedError as refused:
            raise _Refused(403, str(refused)) from None
        outcome = "approved" if approved else "rejected"
        return JSONResponse({"approval_id": approval_id, "pipeline": name, "answer": outcome})

    async def healthz(request: Request) -> Response:
        failure = state.failure()
        if failure is not None:  # the process stops: a supervisor restarts it
            return JSONResponse({"status": "failed", "error": str(failure)}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        failure = state.failure()
        if failure is not None:
            return JSONResponse({"status": "failed", "error": str(failure)}, status_code=503)
        if state.ready and not state.draining:
            return JSONResponse({"status": "ready", "pipelines": list(state.served)})
        why = "draining" if state.draining else "starting"
        return JSONResponse({"status": why}, status_code=503)

    async def metrics(request: Request) -> Response:
        text = exposition(
            {name: s.runtime.metrics for name, s in state.served.items() if s.runtime.metrics},
            state.counts,
            state.rejected,
            len(state.in_flight),
        )
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi([by_name[n] for n in names], mcp=settings.mcp))

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=PAGE_HEADERS)

    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        """``/mcp``: authenticated and rate-limited as any route, then the request is the MCP
        SDK's to answer, as the key's principal. One the server stops under (a store's
        failure stopping the runtimes) is answered as an ``ask`` is, not with the SDK's
        error for a session it ended: a 503 naming the failure, and the correlation of the
        tool call it cut short."""
        status = 500
        started = False  # the answer's start was sent
        call: _McpCall | None = None
        cut: _Refused | None = None  # the SDK's answer replaced by this

        async def counted(message: Message_) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        async def unless_cut(message: Message_) -> None:
            nonlocal cut
            if message["type"] == "http.response.start" and message["status"] >= 500:
                assert call is not None
                cut = _unavailable(state, call.correlation_id)
            if cut is None:
                await counted(message)

        async def refuse(refused: _Refused) -> None:
            response = _json_error(refused.status, refused.error, **refused.extra)
            response.headers.update(refused.headers)
            await response(scope, receive, counted)

        # The SDK's own refusals (an Accept without application/json, a body that is no
        # JSON-RPC message) come in its shapes, a JSON-RPC error or plain text: held here
        # and answered in the shape of every other refusal of the server's.
        held: list[bytes] = []
        refused_status = 0

        async def in_our_shape(message: Message_) -> None:
            nonlocal refused_status
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                refused_status = message["status"]
            if not refused_status:
                await unless_cut(message)
                return
            if message["type"] == "http.response.body":
                held.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await refuse(_Refused(refused_status, _sdk_refusal(b"".join(held))))

        try:
            try:
                request = Request(scope, receive)
                key = await admit(request)
                _json_content_type(request)
                # Read here, as every route reads its body: within --max-body and
                # --body-timeout, and a client that left first is no fault of the server's.
                body = await body_of(request, key, b"")
                # Strict as every body here: a key given twice would be the SDK's last while
                # a proxy or a log reading the same bytes may keep the first (another tool,
                # other arguments), and NaN or 1e999 a number to it alone.
                _mcp_message(body)
            except _Refused as refused:
                await refuse(refused)
                return
            assert state.mcp is not None  # set before the server is ready
            trace = TraceParent.parse(request.headers.getlist("traceparent"))
            call = scope[MCP_CALLER] = _McpCall(key, trace)
            flight = _InFlight(state, scope["method"], "/mcp", key.principal)
            with flight, flight.scope:
                await state.mcp.handle(scope, _replayed(body, receive), in_our_shape)
            if flight.scope.cancelled_caught and not started:
                cut = _cut_at_drain(call.correlation_id)
            if cut is not None:
                await refuse(cut)
        finally:
            state.counts[("mcp", str(status))] = state.counts.get(("mcp", str(status)), 0) + 1

    async def not_found(request: Request, exc: Exception) -> Response:
        """No such route (404), or not with this method (405, with the ``Allow`` header the
        routing wrote: HTTP requires it), as JSON like every other refusal."""
        assert isinstance(exc, HTTPException)
        response = _json_error(
            exc.status_code, f"{request.method} {request.url.path}: {exc.detail}"
        )
        response.headers.update(exc.headers or {})
        return response

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/v1/pipelines", guarded("pipelines", list_pipelines), methods=["GET"]),
        Route("/v1/pipelines/{name}/ask", guarded("ask", ask), methods=["POST"]),
        Route(
            "/v1/pipelines/{name}/ask/stream", guarded("ask_stream", ask_stream), methods=["POST"]
        ),
        Route(
            "/v1/pipelines/{name}/statistics",
            guarded("statistics", statistics),
            methods=["GET"],
        ),
        Route("/v1/streams/{correlation_id}", guarded("resume", resume), methods=["GET"]),
        Route("/v1/approvals", guarded("approvals", list_approvals), methods=["GET"]),
        Route(
            "/v1/approvals/{approval_id}/{verb}",
            guarded("answer", answer_approval),
            methods=["POST"],
        ),
    ]
    if settings.mcp:
        try:
            import mcp as _sdk  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                "the MCP endpoint needs the 'mcp' extra: pip install 'genie-bus[mcp]'"
            ) from exc
        # POST only: stateless, the endpoint has no event stream for a GET to open (the MCP
        # spec's 405 for that) and no session for a DELETE to end; the SDK would hold a GET
        # open with nothing to send.
        routes.append(Route("/mcp", _Asgi(mcp_endpoint), methods=["POST"]))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found},
        middleware=[Middleware(_Start, state=state), Middleware(_Edge)],
    )
    # A path with a slash too many is a 404 like any path not served, not Starlette's 307 to
    # a URL built from the Host header, sent before the key is checked.
    app.router.redirect_slashes = False
    app.state.genie = state
    return app


def store_file(folder: Path, pipeline: str) -> Path:
    """The file in a ``store`` folder that keeps the deliveries of the pipeline so named."""
    return folder / f"{pipeline}.db"


def _check_stores(folder: Path | None, names: Sequence[str]) -> None:
    """Each pipeline's store in ``folder`` (made if missing), opened and read once before any
    runtime starts: a store in use, not genie's, or holding a row genie did not write stops
    the start before a runtime resumes a request that another store's refusal would cut."""
    if folder is None:
        return
    from .._runtime.durable.store import DeliveryStore  # sqlite3: loaded with a store only

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot make the store folder {folder}: {exc.strerror}") from exc
    for name in names:
        store = DeliveryStore(store_file(folder, name))
        try:
            store.pending()
            store.requests()
        finally:
            store.close()


async def _drained(state: ServerState) -> None:
    """Wait, until the drain ends, for the requests still in flight: by now the streamed ones,
    which run in the app's task group whether or not their clients stay (a client may have
    left to resume later), so no connection kept the server waiting for them."""
    if state.drain_until is None:
        return
    with anyio.move_on_after(state.drain_until - anyio.current_time()):
        while state.in_flight:  # noqa: ASYNC110 - set by many routes; a stop is rare
            await anyio.sleep(0.05)


@asynccontextmanager
async def _runtimes(
    pipelines: Sequence[Pipeline],
    stacks: Sequence[LLMStacks | None],
    metrics: Sequence[Metrics],
    sink: AuditSink,
    state: ServerState,
    observers: Callable[[str, Runtime], object] | None,
    tracing: TracerProvider | bool,
    settings: ServeSettings,
) -> AsyncIterator[None]:
    """Every pipeline's runtime, started (and closed, draining, on the way out); with a
    ``settings.store`` folder, each keeps its deliveries in ``NAME.db`` there."""
    if not pipelines:
        yield
        return
    pipeline, rest = pipelines[0], pipelines[1:]
    spans = _spans(tracing, stacks[0]) if tracing is not False else None
    rt = pipeline.runtime(
        audit=sink,
        metrics=metrics[0],
        llm=stacks[0],
        store=None if settings.store is None else store_file(settings.store, pipeline.name),
        store_sync=settings.store_sync,
    )
    if spans is not None:
        rt.add_observer(spans)
    if observers is not None:
        observers(pipeline.name, rt)
    async with rt:
        waits = min(pipeline.config.timeout, settings.max_timeout)
        gate = StreamGate(rt, pipeline.policies)
        state.served[pipeline.name] = _Served(pipeline, rt, gate, waits)
        async with _runtimes(
            rest, stacks[1:], metrics[1:], sink, state, observers, tracing, settings
        ):
            yield


def _spans(tracing: TracerProvider | bool, stacks: LLMStacks | None) -> Observer:
    """A runtime's span observer; the models of ``stacks`` are wrapped to join its traces."""
    from opentelemetry import trace

    from ..otel import SpanObserver, TracedProvider

    provider = None if isinstance(tracing, bool) else tracing
    spans = SpanObserver(trace.get_tracer("genie", tracer_provider=provider))
    if stacks is not None:
        stacks.stacks = {name: TracedProvider(p, spans) for name, p in stacks.stacks.items()}
    return spans


async def _resumed(
    served: _Served, key: ApiKey, request: Message, rec: Recording, hold_back: int | None
) -> None:
    try:
        await _run_recorded(
            served, key, request, served.timeout, rec, hold_back, served.pipeline.resume
        )
    except Exception as exc:
        # Resumed in the server's own task group, where no HTTP request answers 500 for it:
        # what fails one resumed request ends its stream, never the server.
        _log.exception("resuming request %s failed", request.correlation_id)
        rec.add("error", {"error": f"resuming the request failed: {described(exc)}"}, last=True)
    finally:
        rec.finish()


async def _run_recorded(
    served: _Served,
    key: ApiKey,
    msg: Message,
    timeout: float | None,
    rec: Recording,
    hold_back: int | None,
    run: Callable[..., Awaitable[RunResult]],
    taken: _Taken | None = None,
) -> None:
    """Run ``msg`` (``run``: the pipeline's ``ask``, or ``resume`` for a request kept in the
    store), recording its events and the text of its model calls (what the principal may
    see), and then its result. ``taken`` is set once the request is published, or with the
    full mailbox that refused it (then nothing is recorded after ``accepted``)."""
    rt = served.runtime
    admitted = served.gate.watch(msg.correlation_id, key.principal)
    events = rt.events(msg.correlation_id, buffer=4096)
    text = rt.model_text(msg.correlation_id, reader=key.principal, hold_back=hold_back)
    origin = rt.clock.monotonic()
    rec.add("accepted", {"correlation_id": msg.correlation_id, "trace_id": msg.trace_id})
    try:
        settled = anyio.Event()
        spoken = anyio.Event()

        async def pump() -> None:
            async for event in events:
                if taken is not None and event.kind == "published" and event.message_id == msg.id:
                    taken.set()
                if event.message_id is None or event.message_id in admitted:
                    rec.add(event.kind, event_json(event, origin, key.tracebacks))
            settled.set()

        async def speak() -> None:
            async for chunk in text:
                rec.add(*text_json(chunk))
            spoken.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            tg.start_soon(speak)
            try:
                result = await run(rt, msg, timeout=timeout)
            except GenieError as exc:
                tg.cancel_scope.cancel()
                if taken is not None and isinstance(exc, WouldBlockError):
                    taken.set(exc)  # the client's 429: nothing ran, nothing more to record
                    return
                rec.add("error", {"error": str(exc)}, last=True)
                return
            if rt.failure is not None and result.status != "ok":  # ended by the stop it caused
                tg.cancel_scope.cancel()
                rec.add("error", {"error": str(_stopped(rt.failure))}, last=True)
                return
            # The events of what is still in flight come first, but the result waits for
            # them only briefly (the stream ends when the request settles).
            with anyio.move_on_after(SETTLE_WAIT):
                await settled.wait()
                await spoken.wait()
            tg.cancel_scope.cancel()
        answer = result.as_json(tracebacks=key.tracebacks)
        rec.add("result", {"http_status": STATUS[result.status], **answer}, last=True)
    except anyio.get_cancelled_exc_class():
        if rt.failure is not None:  # cut as the runtimes stop: the stream says why
            rec.add("error", {"error": str(_stopped(rt.failure))}, last=True)
        raise
    finally:
        served.gate.unwatch(msg.correlation_id, admitted)
        await events.aclose()
        await text.aclose()


def _credential(request: Request) -> bytes | None:
    """The API key the request presents, as the bytes the client sent (header values reach
    us as Latin-1 text); two (two headers, or one header twice) are refused: which one
    counts would depend on the proxy or the parser reading them."""
    given = request.headers.getlist("x-api-key")
    authorization = request.headers.getlist("authorization")
    if len(given) + len(authorization) > 1:
        raise _Refused(
            400,
            "two credentials in one request: send one key, as Authorization: Bearer KEY "
            "or X-API-Key: KEY",
        )
    if given:
        return given[0].encode("latin-1")
    if authorization and authorization[0][:7].lower() == "bearer ":
        return authorization[0][7:].strip().encode("latin-1")
    return None


def _replayed(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the request's body, already read, given first (and whole); then the
    connection's own messages (a disconnect)."""
    given = False

    async def replay() -> Message_:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Asgi:
    """An ASGI callable as a route's endpoint (Starlette calls a plain function with a
    ``Request`` and wants a ``Response`` back)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _Start:
    """The server's start: an error of genie's that stopped it (``ServerState.unstarted``: a
    store it cannot use, say) is told to the server as its one line, where Starlette would
    send the traceback (uvicorn logs it, and says the start failed)."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def said(message: Message_) -> None:
            unstarted = self.state.unstarted
            if message["type"] == "lifespan.startup.failed" and unstarted is not None:
                message = {**message, "message": str(unstarted)}
            await send(message)

        await self.app(scope, receive, said)


class _Edge:
    """What every request meets first: a header block over MAX_HEADER_BYTES is a 431 (the
    limit docs/serve.md states, whatever the parser in front allowed), a path with an encoded
    slash a 404 (``_encoded_slash``), and every answer says ``X-Content-Type-Options:
    nosniff``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        size += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > MAX_HEADER_BYTES:
            refused = _json_error(
                431, f"the request line and headers are over {MAX_HEADER_BYTES} bytes"
            )
            await refused(scope, receive, send)
            return
        slashed = _encoded_slash(scope)
        if slashed is not None:
            await _json_error(404, slashed)(scope, receive, send)
            return

        async def send_nosniff(message: Message_) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_nosniff)


_PIPELINES = b"/v1/pipelines/"


def _encoded_slash(scope: Scope) -> str | None:
    """Why a path with an encoded slash (``%2F``) names nothing, or None for one without.

    The path is matched decoded, where ``finance%2Fask/stream`` would be the stream of
    ``finance``, while a proxy or a log reading the path as sent sees one segment: a name, or
    a route, it does not know. An encoded slash separates nothing here; a pipeline's name
    holding one is named as the client wrote it."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes) or b"%2f" not in raw.lower():
        return None
    if raw.startswith(_PIPELINES):
        segment = raw[len(_PIPELINES) :].partition(b"/")[0]
        if b"%2f" in segment.lower():
            name = unquote(segment.decode("ascii", "backslashreplace"))
            return f"no pipeline {name!r} is served: a pipeline's name has no '/' (sent as %2F)"
    path = raw.decode("ascii", "backslashreplace")
    return (
        f"{scope['method']} {path}: Not Found (an encoded slash, %2F, separates nothing in a "
        "path here)"
    )


def _sse(
    rec: Recording, after: int, heartbeat: float, headers: Mapping[str, str] | None = None
) -> Response:
    return StreamingResponse(
        rec.follow(after, heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})},
    )


def _result_response(result: RunResult, tracebacks: bool) -> Response:
    response = JSONResponse(result.as_json(tracebacks), status_code=STATUS[result.status])
    if result.status == "denied" and result.denials:
        response.headers["Genie-Denied-By"] = result.denials[0].policy
    return response


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, read as ``_json_value`` reads it."""
    data = _json_value(raw, what)
    if not isinstance(data, dict):
        raise _Refused(400, f"{what} must be a JSON object, not {type(data).__name__}")
    return data


def _json_value(raw: bytes, what: str) -> Any:
    """``raw`` as JSON, strictly: UTF-8, no NaN or Infinity (written, or a number too large
    for a float), no key twice, no string or key that is a lone surrogate."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(400, f"{what} is not UTF-8 (byte {exc.start})") from None
    if json_depth_exceeds(text):
        raise _Refused(400, f"{what} is nested too deeply")
    try:
        data = loads_strict(text)
    except LoneSurrogateError as exc:  # where in the body, for a client that builds it
        raise _Refused(400, f"{what} is not valid JSON: {exc}", path=exc.path) from exc
    except ValueError as exc:
        raise _Refused(400, f"{what} is not valid JSON: {exc}") from exc
    return data


def _mcp_message(raw: bytes) -> dict[str, Any]:
    """``raw`` as ``_json_object`` reads it, where a list is a JSON-RPC batch, which MCP
    does not have; a tool call's parameters and arguments that are no object are named."""
    data = _json_value(raw, "the request body")
    if not isinstance(data, dict):
        what = "a batch (a list)" if isinstance(data, list) else type(data).__name__
        raise _Refused(
            400,
            f"the request body must be one JSON-RPC message, a JSON object, not {what}: "
            "MCP has no batches",
        )
    if data.get("method") == "tools/call":
        # The SDK's answer to these is a JSON-RPC error with a 200, "Invalid request
        # parameters", naming no field.
        params = data.get("params")
        if not isinstance(params, dict):
            raise _Refused(
                400,
                "POST /mcp: tools/call: params must be an object (the tool's name and "
                f"arguments), not {type(params).__name__}",
            )
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise _Refused(
                400,
                "POST /mcp: tools/call: params.arguments must be an object (the tool's "
                f"arguments by name), not {type(arguments).__name__}",
            )
    return data


def _json_content_type(request: Request) -> None:
    """A 415 unless the body is declared JSON (``/mcp``: the transport's rule), naming what
    was declared."""
    declared = request.headers.get("content-type")
    if declared is None or declared.split(";")[0].strip().lower() != "application/json":
        named = "none given" if declared is None else repr(declared)
        raise _Refused(
            415,
            f"{request.method} {request.url.path}: Content-Type must be application/json, "
            f"not {named}",
        )


def _sdk_refusal(body: bytes) -> str:
    """One line saying why the MCP SDK refused a request, from its answer (a JSON-RPC
    error, or text)."""
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, TypeError, KeyError):
        message = body.decode("utf-8", "replace")
    if message.startswith("Validation error"):
        # The SDK's is pydantic's report on each member of a union, lines long.
        return (
            "the request body is not a JSON-RPC 2.0 message: a request needs "
            "'jsonrpc': '2.0', an 'id' and a 'method'"
        )
    return f"POST /mcp: {message.splitlines()[0] if message else 'refused by the MCP transport'}"


def _metadata(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` if every value is one a message's metadata holds (text, a number, a boolean,
    null, a list of text); else a 400 naming the key, before the message says it less well."""
    for key, value in extra.items():
        if value is None or isinstance(value, str | int | float):  # bool is an int
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            continue
        kind = "an object" if isinstance(value, dict) else "a list holding more than text"
        raise _Refused(
            400,
            f"header Genie-Metadata: {key!r} must be text, a number, a boolean, null or a list "
            f"of text, not {kind}",
            field=f"metadata.{key}",
        )
    return extra


def _query(request: Request, name: str) -> str | None:
    """The query parameter ``name``, if given; given twice is refused: which value counts
    would depend on the proxy or the parser reading them."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _Refused(400, f"query {name!r} given twice: send it once")
    return values[0] if values else None


def _timeout(raw: str | None, ceiling: float) -> float | None:
    """``?timeout=S``: ASCII decimal seconds only. ``float`` also reads Arabic-Indic or
    full-width digits, ``1_0``, ``1e1`` and spaces around them, which a proxy or a log
    reading the same query would not take for the deadline the server applied."""
    if raw is None:
        return None
    value = float(raw) if _DECIMAL.fullmatch(raw) else -1.0
    if not 0 < value <= ceiling:
        # Refused, not cut to the ceiling: the client learns the limit, where a cut would
        # read as its pipeline being slow.
        raise _Refused(
            400,
            f"query 'timeout' must be decimal seconds in (0, {ceiling:g}] (such as 30 or 2.5; "
            f"at most the server's max_timeout), not {raw!r}",
            max_timeout=ceiling,
        )
    return value


def _approval_json(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "correlation_id": approval.correlation_id,
        "agent": approval.agent_id,
        "subject": approval.subject,
        "role": approval.role,
        "principal": approval.principal,
        "escalated": approval.escalated,
        "details": approval.details,
    }


def _describe(pipeline: Pipeline) -> dict[str, Any]:
    entry = pipeline.config.entry
    return {
        "name": pipeline.name,
        "description": pipeline.config.description,
        "entry": {"type": entry.type, "to": entry.to, "defaults": dict(entry.payload)},
        "output": pipeline.config.output,
        "timeout": pipeline.config.timeout,
        "schema": pipeline.entry_model.model_json_schema(),
    }
