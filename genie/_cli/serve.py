"""The ``genie serve`` command: parse, load everything (any mistake is exit 2 before a port is
bound), serve until SIGTERM or Ctrl-C, drain, and report what was cut.

Imports nothing heavy until the command runs, so ``genie --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING, Any

from .._errors import ConfigurationError, StoreError, for_terminal
from ..pipeline._args import _variables
from .audit_key import add_audit_options, audit_log_key
from .loop import add_loop_option, run_on
from .one_file import audit_roles, one_file_twice, store_roles
from .options import byte_count, count, path_option, port, rate, seconds
from .store_sync import add_store_sync_option
from .unreadable import add_discard_unreadable_option, check_discard_unreadable, refuse_unreadable

# Seconds uvicorn waits past the drain: time for the answer to a request cut at its end.
ANSWER_CUT = 1.0

if TYPE_CHECKING:
    from .._runtime.runtime import Runtime

__all__ = ["add_parser"]


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve pipelines over HTTP (ask, server-sent events, a live page)",
        description="Serve each PIPELINE over HTTP on HOST:PORT until SIGTERM or Ctrl-C, then "
        "drain in-flight requests for up to --drain seconds and report what was cut. Needs "
        "the 'serve' extra. Exit 0 after a clean stop, 1 when requests were cut, 2 for a bad "
        "pipeline, key file or address (docs/serve.md).",
    )
    serve.add_argument("pipelines", nargs="+", metavar="PIPELINE", help="pipeline YAML files")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8080, help="port (default 8080; 0: any free)")
    serve.add_argument(
        "--keys",
        type=path_option,
        metavar="FILE",
        help="API keys YAML (default: the GENIE_API_KEYS variable); see docs/serve.md",
    )
    serve.add_argument(
        "--rate", type=rate, default=10.0, metavar="R", help="requests/s per principal (10)"
    )
    serve.add_argument("--burst", type=count, metavar="N", help="requests at once (default: R)")
    serve.add_argument(
        "--max-body",
        type=byte_count,
        default=1 << 20,
        metavar="BYTES",
        help="request size limit (1 MiB)",
    )
    serve.add_argument(
        "--body-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="seconds a request's body may take to arrive, else 408 (30)",
    )
    serve.add_argument(
        "--max-timeout",
        type=seconds,
        default=300.0,
        metavar="S",
        help="the longest a request may wait for its pipeline's answer: a longer ?timeout is "
        "a 400, a pipeline's longer timeout is cut to it (300)",
    )
    serve.add_argument(
        "--drain", type=seconds, default=10.0, metavar="S", help="seconds to drain on stop (10)"
    )
    serve.add_argument(
        "--hold-back",
        type=_hold_back,
        default=64,
        metavar="N",
        help="characters of streamed model text held until more arrives, so a policy judges "
        "them whole (64); 'end': each model call's text only once it ended",
    )
    serve.add_argument(
        "--store",
        type=path_option,
        metavar="DIR",
        help="keep each pipeline's deliveries in DIR/NAME.db until they end; a server killed "
        "midway resumes its requests when started again on DIR (docs/durability.md)",
    )
    add_store_sync_option(serve)
    add_discard_unreadable_option(serve, "serve")
    serve.add_argument(
        "--mcp",
        action="store_true",
        help="also serve the pipelines as MCP tools at /mcp (streamable HTTP, each call as "
        "its API key's principal; the 'mcp' extra; docs/tools.md)",
    )
    add_audit_options(serve)
    serve.add_argument(
        "--otel",
        choices=("console", "global"),
        help="trace every delivery with OpenTelemetry (the 'otel' extra): 'console' prints "
        "spans on stderr, 'global' uses the tracer provider the process configured",
    )
    serve.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="set ${KEY} in the pipeline files (over the environment); repeatable",
    )
    add_loop_option(serve)
    serve.set_defaults(func=_serve)


def _hold_back(value: str) -> int | None:
    if value == "end":
        return None
    if not (value.isascii() and value.isdigit()):
        raise argparse.ArgumentTypeError(f"a number of characters, or 'end', not {value!r}")
    return int(value)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP, and without it every keep-alive request waits ~40 ms for a
    # delayed ACK (measured: 45 ms for /healthz instead of 1 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port, "
            "or 0 for any free port)"
        ) from exc
    # Listening before uvicorn starts: a request sent meanwhile waits in the backlog until
    # the runtimes have started, instead of being refused.
    sock.listen(2048)
    return sock


def _tracing(mode: str | None) -> Any:
    """What ``create_app(tracing=...)`` takes: False (off), True (the global tracer provider)
    or a provider of ours printing spans on stderr (shut down at exit)."""
    if mode is None:
        return False
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        raise ConfigurationError(
            "--otel needs the 'otel' extra: pip install 'genie-bus[otel]'"
        ) from exc
    if mode == "global":
        return True
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    return provider


def _not_cancelled(record: logging.LogRecord) -> bool:
    import asyncio

    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def _serve(args: argparse.Namespace) -> int:
    import anyio

    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigurationError(
            "genie serve needs the 'serve' extra: pip install 'genie-bus[serve]'"
        ) from exc

    from .._runtime.audit import JsonlAuditLog
    from ..pipeline import load_pipeline
    from ..serve import ServeSettings, create_app, load_keys
    from ..serve._app import store_file

    check_discard_unreadable(args, "DIR")
    variables = _variables(args.set)
    pipelines = [load_pipeline(path, variables=variables) for path in args.pipelines]
    # Before anything is opened or made: the audit log over a pipeline's store, its pipeline
    # file or the keys appended its rows to them.
    audit_written, audit_read = audit_roles(args)
    folder = Path(args.store) if args.store else None
    # Each name once: two pipelines of one name are refused as such (``create_app``).
    named = dict.fromkeys(p.name for p in pipelines)
    stores = [role for name in named for role in store_roles(folder and store_file(folder, name))]
    one_file_twice(
        [*stores, *audit_written],
        [*(("the pipeline file", p.path) for p in pipelines), ("--keys", args.keys), *audit_read],
    )
    keys = load_keys(args.keys, os.environ)
    settings = ServeSettings(
        rate=args.rate,
        burst=args.burst,
        max_body=args.max_body,
        body_timeout=args.body_timeout,
        max_timeout=args.max_timeout,
        hold_back=args.hold_back,
        store=folder,
        store_sync=args.store_sync,
        mcp=args.mcp,
    )
    key, keyed_how = audit_log_key(args)
    try:
        audit = JsonlAuditLog(args.audit, key=key) if args.audit else None
    except OSError as exc:
        raise ConfigurationError(f"cannot open audit log {args.audit}: {exc.strerror}") from exc
    tracing = _tracing(args.otel)
    check = None
    if folder is not None:
        served = " ".join(quote(p) for p in args.pipelines)

        def check(name: str, rt: Runtime) -> None:
            refuse_unreadable(
                rt,
                store_file(folder, name),
                command="genie serve",
                again=f"genie serve {served} --store {quote(args.store)}",
                held="the server did not start",
                discard=args.discard_unreadable,
            )

    app = create_app(pipelines, keys, settings=settings, audit=audit, tracing=tracing, check=check)
    state = app.state.genie
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    names = ", ".join(p.name for p in pipelines)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            # The runtimes have started (``startup`` exits at once when they cannot): the
            # first line says where the server answers, once it does.
            await super().startup(sockets)
            print(f"genie serve: {names} on http://{host}:{port}", file=sys.stderr, flush=True)
            if keyed_how:
                said = f"genie serve: audit log {args.audit} {keyed_how}"
                print(said, file=sys.stderr, flush=True)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            state.drain(anyio.current_time() + args.drain)
            await super().shutdown(sockets)

        async def on_tick(self, counter: int) -> bool:
            # A store's write refused stopped the runtimes: the server stops too (exit 1
            # below), for a supervisor to start it again on the store, which resumes it.
            return await super().on_tick(counter) or state.failure() is not None

    config = uvicorn.Config(
        app,
        log_level="warning",
        # Past the drain by a little: a request still running at its end is answered (503)
        # by the server before uvicorn cuts its connection.
        timeout_graceful_shutdown=args.drain + ANSWER_CUT,
        lifespan="on",
        access_log=False,
    )
    server = Server(config)

    def started(record: logging.LogRecord) -> bool:
        return state.unstarted is None

    uvicorn_log = logging.getLogger("uvicorn.error")
    # A request cut at the drain deadline is reported below, not as a traceback.
    uvicorn_log.addFilter(_not_cancelled)
    # A start that failed (a store it cannot use) is said below in one line, with our exit
    # code: not as uvicorn's lines and its exit (3).
    uvicorn_log.addFilter(started)
    # uvicorn re-raises the signal it caught once it has stopped (Ctrl-C as a KeyboardInterrupt);
    # these handlers make that a no-op, so either stop prints the report below with our exit
    # code. uvicorn installs its own while it serves, so each still starts the stop.
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {stop: signal.signal(stop, lambda signum, frame: None) for stop in stops}
    try:
        run_on(args.loop, server.serve, [sock])
    except SystemExit:
        if state.unstarted is None:
            raise
    finally:
        uvicorn_log.removeFilter(started)
        for stop, handler in previous.items():
            signal.signal(stop, handler)
        sock.close()
        if audit is not None:
            audit.close()
        if not isinstance(tracing, bool):
            tracing.shutdown()  # flushes the spans still batched
    failure = state.failure()
    if failure is None and state.unstarted is not None:
        raise state.unstarted  # a store it cannot use, say: one line, exit 2
    if isinstance(failure, StoreError):
        said = (
            "what it kept before is in the store: started again with --store "
            f"{quote(args.store)}, it resumes the requests"
        )
        if not failure.kept:  # the file is gone, and the requests it kept with it
            said = f"what it kept is not in {failure.path}: its requests must be sent again"
        print(
            for_terminal(f"genie serve: {failure}; the server stopped, and {said}"), file=sys.stderr
        )
        return 1
    if failure is not None:  # its audit log refused a record
        print(for_terminal(f"genie serve: {failure}"), file=sys.stderr)
        return 1
    cut = state.cut
    print(
        f"genie serve: stopped; {state.at_signal} request(s) in flight at the "
        f"signal, {state.completed_while_draining} finished within the {args.drain:g} s drain, "
        f"{len(cut)} cut",
        file=sys.stderr,
    )
    for flight in cut:
        said = for_terminal(f"  cut: {flight.method} {flight.path} ({flight.principal})")
        print(said, file=sys.stderr)
    return 1 if cut else 0
