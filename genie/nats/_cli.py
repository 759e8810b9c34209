"""The command line of scale-out: ``genie run PIPELINE --nats URL`` (the entry process) and
``genie worker PIPELINE --nats URL [--agents a,b]`` (docs/scale-out.md).

Where the broker is, and which process hosts which agents, are flags and not YAML: the same
pipeline file runs in one process and across many, and only the deployment differs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._cli.loop import stop_on_signal
from .._cli.options import count, name_option, path_option, seconds, url_option
from .._errors import ConfigurationError
from .._runtime.approvals import DESK, ApprovalRequest
from .._runtime.audit import AuditVerdict, audit_key, verify_audit_log
from ..pipeline._args import add_set, load

if TYPE_CHECKING:
    from .._runtime.runtime import Runtime
    from ..pipeline import Pipeline, RunResult
    from ._approvals import NatsApprovals
    from ._transport import NatsTransport, StepHook

__all__ = [
    "add_run_options",
    "add_worker",
    "ask_over_nats",
    "entry_transport",
    "on_approvals",
    "run_over_nats",
]

T = TypeVar("T")
_APPROVAL = ApprovalRequest.message_type


def _add_broker(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--nats",
        type=url_option,
        metavar="URL",
        required=required,
        help="run across processes on this NATS JetStream server (e.g. nats://127.0.0.1:4222); "
        "see docs/scale-out.md",
    )
    parser.add_argument(
        "--namespace",
        type=name_option,
        metavar="NS",
        help="streams and subjects of this name (default: the pipeline's name)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="take the namespace over from processes of another pipeline or genie version "
        "once they have all stopped (refused while deliveries of theirs wait in its stream)",
    )


def add_run_options(run: argparse.ArgumentParser) -> None:
    """``genie run``'s scale-out flags (without them it runs in this process)."""
    _add_broker(run, required=False)
    run.add_argument(
        "--origin",
        type=name_option,
        metavar="NAME",
        help="with --nats: a name for this entry process; its request is kept in JetStream "
        "until it ends, and a run killed midway is resumed by the next run of the same NAME "
        "(docs/durability.md, 'On NATS')",
    )


def check_run_options(args: argparse.Namespace) -> None:
    """Refuse ``genie run``'s scale-out flags where they do not go together, before the
    pipeline is loaded or any file is made (an audit log and its key, the metrics)."""
    if args.nats:
        if args.store:
            raise ConfigurationError(
                "--store keeps a run's deliveries in this process; with --nats JetStream keeps them"
            )
        return
    if args.origin:
        raise ConfigurationError("--origin names an entry process of --nats: give --nats URL")
    if args.namespace:  # else taken, and the run would go in this process regardless
        raise ConfigurationError("--namespace names a namespace of --nats: give --nats URL")
    if args.replace:
        raise ConfigurationError("--replace takes a namespace of --nats over: give --nats URL")


def _transport(
    pipeline: Pipeline,
    args: argparse.Namespace,
    hosted: tuple[str, ...],
    audit_key: bytes | None = None,
    on_unhosted: Callable[[list[str]], None] | None = None,
) -> NatsTransport:
    try:
        import nats  # noqa: F401  (_nats imports it only when it connects: ask for it here)

        from ._transport import NatsNames, NatsTransport
    except ImportError as exc:  # nats-py is the optional extra
        raise ConfigurationError(
            f"--nats needs the nats extra: pip install 'genie-bus[nats]' ({exc.name} missing)"
        ) from exc
    return NatsTransport(
        args.nats,
        NatsNames(args.namespace or pipeline.name),
        hosted=hosted,
        **({"ack_wait": args.ack_wait} if getattr(args, "ack_wait", None) else {}),
        max_deliveries=getattr(args, "max_deliveries", 5),
        audit_key=audit_key,
        on_unhosted=on_unhosted,
        origin=getattr(args, "origin", None),
        replace=getattr(args, "replace", False),
    )


def entry_transport(
    pipeline: Pipeline, args: argparse.Namespace, audit_key: bytes | None = None
) -> NatsTransport | None:
    """The transport of ``genie run --nats`` (None without it): hosts no agent; its audit
    stream chain is keyed with ``audit_key``; agents no worker hosts are named on stderr as
    soon as the run publishes."""
    if not args.nats:
        return None

    def warn(agents: list[str]) -> None:
        from ._presence import unhosted_warning

        namespace = args.namespace or pipeline.name
        print(f"genie run: {unhosted_warning(namespace, agents)}", file=sys.stderr, flush=True)

    return _transport(pipeline, args, (), audit_key, warn)


async def ask_over_nats(
    transport: NatsTransport, go: Callable[[], Awaitable[list[RunResult]]]
) -> tuple[list[RunResult], dict[str, int]]:
    """``go`` (the request of ``genie run --nats``, or those it resumes), and, when one did
    not end ok, the agents no worker hosts that deliveries wait for (each with how many
    wait), asked as they end."""
    results = await go()
    if all(result.ok for result in results):
        return results, {}
    return results, {a: n for a, n in (await transport.unhosted()).items() if n}


def verify_audit_stream(url: str, key: bytes | None, anchor: str | None) -> AuditVerdict:
    """``genie audit verify nats://HOST:PORT/NAMESPACE``: the JSONL log's checks, over the
    namespace's audit stream (line N is its row N)."""
    server, _, namespace = url.partition("://")[2].partition("/")
    if not namespace:
        raise ConfigurationError(f"{url}: name the namespace (nats://HOST:PORT/NAMESPACE)")
    try:
        from nats.js.errors import NotFoundError

        from ._audit import as_file, read_chain
        from ._transport import NatsNames
        from ._wire import connected
    except ImportError as exc:
        raise ConfigurationError(
            f"nats:// needs the nats extra: pip install 'genie-bus[nats]' ({exc.name} missing)"
        ) from exc

    stream = NatsNames(namespace).audit

    async def read() -> list[bytes]:
        nc = await connected(f"nats://{server}")  # a plain connection: verifying creates nothing
        try:
            return await read_chain(nc.jetstream(), stream)
        except NotFoundError:
            raise ConfigurationError(
                f"{url}: namespace {namespace!r} has no audit stream"
            ) from None
        finally:
            await nc.close()

    with as_file(anyio.run(read)) as path:
        return verify_audit_log(path, key=key, anchor=anchor)


async def on_approvals(
    url: str, namespace: str, act: Callable[[NatsApprovals], Awaitable[T]]
) -> T | None:
    """``act`` on namespace's approvals bucket (``genie approvals ... --nats URL``); None
    when the namespace has none (no worker hosting its desk has run)."""
    try:
        import nats  # noqa: F401  (the extra: asked for here, for its one-line error)

        from ._approvals import NatsApprovals
        from ._names import NatsNames
        from ._wire import connected
    except ImportError as exc:
        raise ConfigurationError(
            f"--nats needs the nats extra: pip install 'genie-bus[nats]' ({exc.name} missing)"
        ) from exc

    nc = await connected(url)  # a plain connection: listing creates nothing
    try:
        approvals = NatsApprovals(NatsNames(namespace).approvals)
        if not await approvals.open(nc.jetstream()):
            return None
        return await act(approvals)
    finally:
        await nc.close()


async def run_over_nats(transport: NatsTransport, rt: Runtime, go: Callable[[], Awaitable[T]]) -> T:
    """``go`` (which enters ``rt``) with ``transport`` connected around it, and the
    pipeline's consent policy asking the namespace's shared ledger."""
    transport.consent.share(rt.policies)
    transport.attach(rt)
    await transport.connect()
    try:
        return await go()
    finally:
        await transport.close()


def add_worker(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="host a pipeline's agents for `genie run --nats` (scale-out)",
        description="Load PIPELINE and run the deliveries of its agents (all, or --agents) "
        "from the NATS JetStream server until interrupted (Ctrl-C, SIGTERM). Start as many as "
        "you like: workers hosting the same agent share its deliveries. An agent that keeps "
        "state in memory between deliveries (the finance supervisor's fan-in) must be hosted "
        "by one worker only. Exit 0 when stopped, 2 for a bad pipeline or an unreachable "
        "server.",
    )
    worker.add_argument("pipeline", help="pipeline YAML (the same file as `genie run`'s)")
    _add_broker(worker, required=True)
    worker.add_argument(
        "--agents",
        metavar="A,B",
        help="host only these agents (comma-separated ids; default: every agent)",
    )
    worker.add_argument(
        "--ack-wait",
        type=seconds,
        metavar="S",
        help="seconds before the server hands an unacknowledged delivery (a dead worker's) to "
        "another worker (default: the agent's deadline, at least 2 s; 30 s without one)",
    )
    worker.add_argument(
        "--max-deliveries",
        type=count,
        default=5,
        metavar="N",
        help="a delivery handed out N times without an outcome (its worker died each time) "
        "becomes a dead letter (default 5)",
    )
    worker.add_argument(
        "--audit-key-file",
        type=path_option,
        metavar="FILE",
        help="the key of the namespace's audit stream, the one `genie run --nats` is given "
        "(default: the GENIE_AUDIT_KEY variable when set, else an unkeyed chain): the records "
        "this worker's desk and workflows write join that chain",
    )
    add_set(worker)
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace, on_step: StepHook | None = None) -> int:
    """``genie worker``; ``on_step`` is told each step of each delivery (tests die there)."""
    pipeline = load(args)
    agents = list(pipeline.graph.nodes)  # a declared gather or workflow is an agent here too
    if any(_APPROVAL in node.produces for node in pipeline.graph.nodes.values()):
        agents.append(DESK)  # the approval desk: hosted where its asker is, by default
    hosted = tuple(a.strip() for a in args.agents.split(",") if a.strip()) if args.agents else ()
    for agent_id in hosted:
        if agent_id not in agents:
            raise ConfigurationError(
                f"--agents: pipeline {pipeline.name!r} has no agent {agent_id!r} "
                f"(it has {', '.join(agents)})"
            )
    if args.agents is not None and not hosted:
        raise ConfigurationError("--agents: name at least one agent")
    llm = pipeline.llm_stacks()
    key = audit_key(args.audit_key_file, os.environ)  # as `genie run --nats` reads it
    transport = _transport(pipeline, args, hosted or tuple(agents), key)
    transport.on_step = on_step
    rt = pipeline.runtime(llm=llm, transport=transport, shared_memory=transport.memory)

    async def serve() -> None:
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(stop_on_signal, tg.cancel_scope)  # before saying we serve
                async with rt:
                    await transport.serving()  # its consumers are bound: it serves now
                    print(
                        f"genie worker: hosting {', '.join(transport.hosted)} "
                        f"on {args.nats} (namespace {transport.names.namespace})",
                        file=sys.stderr,
                        flush=True,
                    )
                    await anyio.sleep_forever()
        finally:
            if llm is not None:
                await llm.aclose()

    anyio.run(run_over_nats, transport, rt, serve)
    return 0
