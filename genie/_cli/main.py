"""The ``genie`` command: a thin layer over the library.

Exit codes: 0 success, 1 the run failed (denied, failed, timed out, paused), 2 usage or
configuration error, 3 the output arrived but work of the request was lost (dead letters),
130 Ctrl-C.
Errors print one clear line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from shlex import quote
from typing import TYPE_CHECKING, TextIO, cast

import anyio

from _genie_cli import INTERRUPTED, interrupted, interrupted_early
from _genie_cli import command_at as _command_at
from _genie_cli import said_as as _said_as

from .._agent.catalogue import Catalogue
from .._base.files import FileRefusedError, file_problem, write_problem
from .._base.log_format import configure_logging
from .._base.yamlconf import ConfigFileError
from .._errors import (
    AuditWriteError,
    ConfigurationError,
    GenieError,
    StoreError,
    for_terminal,
    unwrapped,
)
from .._message.payload import Payload
from .._runtime.approvals import Approval, ApprovalRequest
from .._runtime.audit import (
    JsonlAuditLog,
    audit_key,
    key_beside,
    read_audit_key,
    verify_audit_log,
)
from .._runtime.correlator import Missing
from .._runtime.deadletter import DeadLetter
from .._runtime.delivery import CANCELLED_WITH_REQUEST
from .._runtime.observe.events import TIMELINE_HEADER, EventStream
from .._runtime.observe.metrics import Metrics
from .._runtime.runtime import Runtime
from ..nats._cli import add_run_options as add_nats_run_options
from ..nats._cli import add_worker, ask_over_nats, entry_transport, run_over_nats
from ..nats._cli import check_run_options as check_nats_run_options
from ..pipeline import Pipeline, RunResult
from ..pipeline._args import add_set as _add_set
from ..pipeline._args import load as _load
from ..pipeline._run import settled
from ..pipeline._tally import RunTally
from ..simulation._command import add_parser as add_simulate
from . import plugins as _installed_commands
from .approvals import add_parser as add_approvals
from .approvals import answer_command, pending_approvals, pending_on_nats, said_of
from .audit_key import add_audit_options, audit_log_key
from .catalogue_page import catalogue_markdown
from .init import add_parser as add_init
from .loop import add_loop_option, run_on
from .mcp import add_parser as add_mcp
from .one_file import Role, audit_roles, one_file_twice, store_roles
from .options import Parser, given, path_option, port, seconds
from .serve import add_parser as add_serve
from .store_sync import add_store_sync_option
from .unreadable import add_discard_unreadable_option, check_discard_unreadable, refuse_unreadable

if TYPE_CHECKING:
    from .._runtime.model_text import ModelTextStream
    from ..llm import LLMStacks

__all__ = ["cli", "main"]

# What a shell reports for a command killed by SIGPIPE (128 + 13), as `yes | head` does.
SIGPIPE_EXIT = 141
# The output arrived, but some of the request's work was lost on the way (a failed side
# branch, a message nobody could receive): not 0, which says nothing was lost, nor 1, which
# says the run gave no output (docs/design/cli-run-report.md).
LOST_WORK = 3
APPROVAL = ApprovalRequest.message_type  # what asks a person (the approval desk takes it)
# Seconds `genie run` waits, after its request timed out, for the request's cancelled work to
# report (docs/cli.md): its whole wait is --timeout plus at most this.
CANCELLED_DRAIN = 2.0


def _exit_status(exc: SystemExit) -> int:
    """The status ``sys.exit(code)`` ends a process with, as Python reads ``code``: None is 0,
    a number is itself, anything else (a message) is 1."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def _standard_stream(path: str) -> TextIO | None:
    """This command's own standard output or error if ``path`` is it (``/dev/stdout``, a pipe,
    a terminal or a file it was redirected to), else None. It is written through the stream
    open already: it waits for no reader, and a second open of a redirected file would
    write from the file's start, over what the stream wrote."""
    try:
        found = os.stat(path)
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            if os.path.samestat(found, os.fstat(fd)):
                return stream
    except OSError:  # no such path, or no such stream
        pass
    return None


def _one_file_twice(pipeline: Pipeline, args: argparse.Namespace) -> None:
    """Refuse a run whose options name one file for two roles, one of which writes it
    (``one_file_twice``), before anything is opened."""
    metrics = args.metrics_out
    audit_written, audit_read = audit_roles(args)
    written: list[Role] = [
        *store_roles(args.store),
        *audit_written,
        ("--metrics-out", None if metrics and _standard_stream(metrics) else metrics),
    ]
    read: list[Role] = [
        ("the pipeline file", pipeline.path),
        ("--input" if args.input else "the input", pipeline.input_path(args.input)),
        *audit_read,
    ]
    one_file_twice(written, read)


def _run(args: argparse.Namespace) -> int:
    check_nats_run_options(args)
    pipeline = _load(args)
    _one_file_twice(pipeline, args)
    payload = pipeline.entry_payload(
        pipeline.read_input(args.input), pipeline.input_name(args.input)
    )
    # The runtime's metrics, made first so its models' calls, tokens and cost are counted in them.
    metrics = Metrics() if args.metrics_out or args.metrics_port is not None else None
    llm = pipeline.llm_stacks(metrics=metrics)  # a missing key stops the run here
    # Everything that can fail is opened before the run starts, so a bad path or a busy port
    # costs nothing and loses nothing.
    out = args.metrics_out
    stream = _standard_stream(out) if out else None
    if out and stream is None and (problem := write_problem(out)):
        raise ConfigurationError(f"cannot write metrics to {out}: {problem}")
    check_discard_unreadable(args, "PATH")
    if args.nats and not args.audit and args.audit_unkeyed:
        raise ConfigurationError("--audit-unkeyed needs --audit PATH")
    # What this command makes for the run (an audit log, its new key, the metrics file) is
    # taken back if the run cannot start after all (a store refused): nothing ran to fill it.
    beside = os.fspath(key_beside(args.audit)) if args.audit else None
    made = [
        p for p in (args.audit, beside, None if stream else out) if p and not os.path.lexists(p)
    ]
    audit: JsonlAuditLog | None = None
    metrics_out: TextIO | None = None
    try:
        if args.nats and not args.audit:  # the namespace's audit stream, keyed when given one
            key, keyed_how = audit_key(args.audit_key_file, os.environ), ""
        else:
            key, keyed_how = audit_log_key(args)
        try:
            audit = JsonlAuditLog(args.audit, key=key) if args.audit else None
        except OSError as exc:
            raise ConfigurationError(f"cannot open audit log {args.audit}: {exc.strerror}") from exc
        try:
            metrics_out = stream or (open(out, "w", encoding="utf-8") if out else None)  # noqa: SIM115
        except OSError as exc:
            raise ConfigurationError(f"cannot write metrics to {out}: {exc.strerror}") from exc
        # None: in this process. Across processes, without --audit, the namespace's audit stream.
        transport = entry_transport(pipeline, args, None if audit else key)
        rt = pipeline.runtime(
            audit=audit if audit is not None or transport is None else transport.audit,
            metrics=metrics or False,
            llm=llm,
            transport=transport,
            store=args.store,
            store_sync=args.store_sync,
            shared_memory=None if transport is None else transport.memory,
        )
        server = None
        if args.metrics_port is not None:  # a port in use refuses the run here
            assert rt.metrics is not None
            server = rt.metrics.serve(args.metrics_port, args.metrics_host)
    except BaseException:
        if metrics_out is not None and metrics_out is not stream:
            metrics_out.close()
        if audit is not None:
            audit.close()
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    if keyed_how and (args.audit_unkeyed or "new key" in keyed_how):
        print(f"genie run: audit log {args.audit} {keyed_how}", file=sys.stderr)
    if server is not None:
        print(f"genie run: serving metrics on {server.url}", file=sys.stderr)
    taken: set[str] = set()  # approvals whose answers left in the store this run took
    metrics_lost = False  # the disk refused the metrics file at the end
    try:
        go = functools.partial(
            _go,
            pipeline,
            rt,
            payload,
            args.timeout,
            sys.stderr if args.trace else None,
            llm,
            sys.stderr if args.stream_text else None,
            kept="kept in the store" if transport is None else f"of origin {args.origin}",
            asked=_asked_hint(pipeline, args, taken) if transport is None else None,
            check=functools.partial(
                refuse_unreadable,
                store=args.store,
                command="genie run",
                again=f"genie run {quote(args.pipeline)} --store {quote(args.store)}",
                held="no new request was sent",
                discard=args.discard_unreadable,
            )
            if args.store
            else None,
        )
        stuck: dict[str, int] = {}  # agents no worker hosts that deliveries wait for
        try:
            # The run's own error (a write its store's disk refused, say) stops the task
            # groups it is raised in: one line, not a group. So does a second Ctrl-C, raised
            # in the runtime's stop (its store closing) where the first stopped it.
            with unwrapped(GenieError), unwrapped(KeyboardInterrupt):
                if transport is None:
                    results = run_on(args.loop, go)
                else:
                    asking = functools.partial(ask_over_nats, transport, go)
                    results, stuck = run_on(args.loop, run_over_nats, transport, rt, asking)
        except SystemExit as exc:  # a handler's sys.exit() stopped the runtime
            if args.debug:
                raise
            said = "the run stopped, what was in flight cancelled"
            agent = _stopped_by(rt, exc)
            who = f"the handler of {agent}" if agent else "a handler"
            print(f"genie run: {who} called sys.exit({exc.code!r}): {said}", file=sys.stderr)
            return _exit_status(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or a handler that raised it
            kept = f" --store {quote(args.store)}" if args.store else ""
            kept = kept or (
                f" --nats {quote(args.nats)} --origin {quote(args.origin)}" if args.origin else ""
            )
            said = (
                f": what it had not finished is kept; genie run {quote(args.pipeline)}{kept} "
                "resumes it"
            )
            agent = _stopped_by(rt, exc)
            if agent is None:  # the user pressed Ctrl-C, as the hint for an approval says
                print(f"genie run: interrupted{said if kept else ''}", file=sys.stderr)
            else:
                print(
                    f"genie run: the handler of {agent} raised KeyboardInterrupt: the run "
                    f"stopped, what was in flight cancelled{said if kept else ''}",
                    file=sys.stderr,
                )
            return INTERRUPTED
        except StoreError as exc:  # the run failed, not its command line: exit 1
            if args.debug:
                raise
            where = f"genie run {quote(args.pipeline)} --store {quote(args.store)}"
            said = f"the run stopped, and what it kept before is in the store: {where} resumes it"
            if not exc.kept:  # the file is gone: that command would send a new request
                said = f"the run stopped, and what it kept is not in {args.store}: send it again"
            print(for_terminal(f"genie run: {exc}; {said}"), file=sys.stderr)
            return 1
        except AuditWriteError as exc:  # the run failed too (its audit log's disk is full)
            if args.debug:
                raise
            print(for_terminal(f"genie run: {exc}"), file=sys.stderr)
            return 1
    finally:
        if server is not None:
            server.close()
        if metrics_out is not None:
            metrics_lost = not _write_metrics(rt, metrics_out, stream, out)
        if audit is not None:
            audit.close()
    timed_out = [r.correlation_id for r in results if r.status == "timed_out"]
    pending: list[dict[str, object]] = []
    where = resume = ""  # where the pending approvals are kept, and the run that resumes
    if args.store:
        where = f"--store {quote(args.store)}"
        resume = f"{quote(args.pipeline)} {where}"
        pending = pending_approvals(args.store)
    elif args.origin and timed_out:
        namespace = args.namespace or pipeline.name
        where = f"--nats {quote(args.nats)} --namespace {quote(namespace)}"
        resume = f"{quote(args.pipeline)} --nats {quote(args.nats)} --origin {quote(args.origin)}"
        pending = pending_on_nats(args.nats, namespace)
    # A request that stopped waiting while a person's approval is pending is kept, not
    # cancelled: it is paused, and the next run resumes it.
    paused = [a for a in pending if a["correlation_id"] in timed_out]
    code = max(
        _report(
            pipeline,
            args,
            result,
            stuck,
            [a for a in paused if a["correlation_id"] == result.correlation_id],
        )
        for result in results
    )
    if where:  # a store, or a named entry: what waits for a person is kept
        _say_paused(paused, where, resume)
        _say_not_counted(args.store, taken - {str(a["id"]) for a in paused})
    elif timed_out and any(APPROVAL in node.produces for node in pipeline.graph.nodes.values()):
        print(
            f"  {pipeline.name} may wait for a person's approval: run it with --store PATH "
            "(or --nats URL --origin NAME), and answer from another terminal with genie "
            "approvals (docs/durability.md)",
            file=sys.stderr,
        )
    return 1 if metrics_lost else code


def _write_metrics(rt: Runtime, metrics_out: TextIO, stream: TextIO | None, out: str) -> bool:
    """Write the run's final metrics to ``metrics_out`` (``stream``: the command's own
    stdout or stderr, flushed and left open) and close it; False, said in one line, when the
    disk refuses them (full, say). The run is over and its output still to be reported: a
    traceback here would lose both, and leave the audit log unclosed."""
    try:
        if rt.metrics is not None:
            metrics_out.write(rt.metrics.text())
        if metrics_out is stream:  # before the report, which goes after it
            metrics_out.flush()
        else:
            metrics_out.close()  # a file closes even when its last write is refused
    except OSError as exc:
        said = exc.strerror or str(exc)
        print(for_terminal(f"genie run: cannot write metrics to {out}: {said}"), file=sys.stderr)
        return False
    return True


def _say_paused(paused: list[dict[str, object]], where: str, resume: str) -> None:
    """The approvals paused requests wait for (as listed ``where``: the store's or the
    namespace's flags), how to answer them and resume the requests (``resume``: the
    arguments of ``genie run`` that do), and what became of the answers left to them (one
    refused is said to nobody else)."""
    for approval in paused:
        command = answer_command(approval["id"], where, approval["role"], approval["principal"])
        print(
            for_terminal(
                f"  paused: approval {approval['id']} ({approval['agent']}: "
                f"{approval['subject']}) waits for a person: {command}; the next genie run "
                f"{resume} resumes the request"
            ),
            file=sys.stderr,
        )
        for answer in cast(list[object], approval.get("answers", [])):
            print(f"    {said_of(answer)}", file=sys.stderr)


def _report(
    pipeline: Pipeline,
    args: argparse.Namespace,
    result: RunResult,
    stuck: Mapping[str, int],
    paused: Sequence[Mapping[str, object]] = (),
) -> int:
    """Print how a run ended (its output on stdout, the rest on stderr); its exit status.
    ``paused``: the approvals a request that stopped waiting is kept for (as
    ``genie approvals list`` lists them): it is paused, not cancelled."""
    if args.json:
        document = result.as_json()
        if paused:
            document["status"] = "paused"
            document["paused_on"] = [
                {
                    "approval": a["id"],
                    **{k: a[k] for k in ("agent", "subject", "role", "principal")},
                }
                for a in paused
            ]
        print(json.dumps(document, indent=2))
    elif result.output is not None:
        print(_render(result.output.payload), end="")
    unfinished = _workflow_unfinished(result)
    if unfinished:
        print(for_terminal(f"genie run: {pipeline.name}: {unfinished}"), file=sys.stderr)
    lost = _lost(result)
    if result.status != "ok" or result.denials or lost:
        ended = f"the run ended {result.status}"
        if paused:
            waits = "approval waits" if len(paused) == 1 else "approvals wait"
            ended = f"the run paused: {len(paused)} {waits} for a person"
        elif result.ok and lost:
            ended += f", and lost work: {len(lost)} dead letter{'s' if len(lost) > 1 else ''}"
        print(f"genie run: {pipeline.name}: {ended}", file=sys.stderr)
        for d in result.denials:
            print(
                for_terminal(
                    f"  denied: {d.type} to {d.recipient} by policy {d.policy}: {d.reason}"
                ),
                file=sys.stderr,
            )
    if result.status != "ok" and not paused:  # a paused run's approvals are said after
        for m in result.missing:
            if m.kind != "denied" or result.output is not None:
                # A denial that ended the run is printed above, with its message type; a
                # partial output names each part it lacks, and why. A timed-out reply's
                # reason names the agents the deadline cut short, an output replaced by
                # another type the agent that replied.
                named = (
                    m.agent_id and m.agent_id != m.key and m.kind not in ("timed_out", "no_reply")
                )
                at = f" to {m.agent_id}" if named else ""
                by = f" (policy {m.policy})" if m.policy else ""
                print(for_terminal(f"  {m.key}: {m.kind}{at}{by}: {m.reason}"), file=sys.stderr)
    for letter in lost:
        to = f" to {letter.agent_id}" if letter.agent_id else ""
        print(
            for_terminal(
                f"  dead letter: {letter.message.type}{to}: {letter.kind}: {letter.reason}"
            ),
            file=sys.stderr,
        )
    if result.status != "ok" or lost:
        _show_tracebacks(result, args.debug, f"genie --debug run {quote(args.pipeline)}")
        for agent_id, waiting in stuck.items():
            print(
                f"  {agent_id}: no worker hosts it; {waiting} "
                f"{'delivery waits' if waiting == 1 else 'deliveries wait'} for it in the stream "
                f"(genie worker {quote(args.pipeline)} --nats {quote(args.nats)} "
                f"--agents {quote(agent_id)})",
                file=sys.stderr,
            )
    if not result.ok:  # a paused run too (its output has not come yet), a failed workflow
        return 1
    return LOST_WORK if result.dead_letters else 0


def _lost(result: RunResult) -> list[DeadLetter]:
    """The request's dead letters no line of its ``missing`` says already: a failed side
    branch, a message nobody could receive, work shed, of a run that may still have ended
    ok."""
    said = {(m.agent_id, m.reason) for m in result.missing}
    # A request that timed out was cancelled: its timed-out line names what that cut short.
    cut = ("cancelled", CANCELLED_WITH_REQUEST) if result.status == "timed_out" else None
    return [
        d
        for d in result.dead_letters
        if (d.agent_id, d.reason) not in said and (d.kind, d.reason) != cut
    ]


def _with_cut_short(rt: Runtime, result: RunResult) -> RunResult:
    """``result`` of a request that timed out, its timed-out reply naming the agents whose
    deliveries were still running or queued at the deadline: the request's cancelled dead
    letters, which come in after the result is made (the runtime drains them at its close)."""
    if result.status != "timed_out":
        return result
    cut_short = list(
        dict.fromkeys(
            d.agent_id
            for d in rt.dead_letters
            if (d.kind, d.reason) == ("cancelled", CANCELLED_WITH_REQUEST)
            and d.message.correlation_id == result.correlation_id
            and d.agent_id
        )
    )
    if not cut_short:
        return result
    agents = ", ".join(cut_short)
    missing = tuple(
        Missing(
            m.key,
            m.kind,
            f"{m.reason}; still working then, cancelled: {agents}",
            m.policy,
            agents,
            m.message_id,
        )
        if m.kind == "timed_out" and m.agent_id is None
        else m
        for m in result.missing
    )
    return dataclasses.replace(result, missing=missing)


def _stopped_by(rt: Runtime, stopper: BaseException) -> str | None:
    """The agent whose handler raised ``stopper`` (a ``SystemExit``, a ``KeyboardInterrupt``)
    on the event loop's thread: its delivery is the cancelled dead letter that says so. None
    when no handler did (Ctrl-C), or one in a task nobody awaits."""
    said = f"the runtime stopped: {type(stopper).__name__}"
    return next(
        (d.agent_id for d in rt.dead_letters if d.kind == "cancelled" and d.reason == said),
        None,
    )


def _workflow_unfinished(result: RunResult) -> str:
    """How a workflow that did not complete ended, in words ("" when it completed, or the
    output is not a workflow's)."""
    from ..pipeline import WorkflowOutcome

    outcome = result.output.payload if result.output is not None else None
    if not isinstance(outcome, WorkflowOutcome) or outcome.status == "completed":
        return ""
    at = f" at {outcome.failed_step}" if outcome.failed_step else ""
    undone = ", ".join(outcome.compensated) or "nothing"
    failed = ", ".join(outcome.not_compensated)
    return (
        f"workflow {outcome.workflow} {outcome.status}{at}: {outcome.reason}; compensated: "
        f"{undone}" + (f"; compensation failed: {failed}" if failed else "")
    )


def _show_tracebacks(result: RunResult, debug: bool, again: str) -> None:
    """Where each failed handler raised: with ``--debug`` its traceback (genie's frames
    folded), else one line saying how to see it."""
    failed = [d for d in result.dead_letters if d.traceback is not None]
    if not failed:
        return
    if not debug:
        print(f"  (a handler failed: {again} ... shows where it raised)", file=sys.stderr)
        return
    for letter in failed:
        assert letter.traceback is not None
        print(
            for_terminal(f"  {letter.agent_id}: the traceback of its last attempt:"),
            file=sys.stderr,
        )
        # Python's lines, each indented under the line above: none can pass for the report's.
        for line in for_terminal(letter.traceback, keep_lines=True).split("\n"):
            print(f"    {line}", file=sys.stderr)


async def _go(
    pipeline: Pipeline,
    rt: Runtime,
    payload: Payload,
    timeout: float | None,
    trace: TextIO | None,
    llm: LLMStacks | None = None,
    text: TextIO | None = None,
    kept: str = "kept in the store",
    asked: Callable[[Approval], str] | None = None,
    check: Callable[[Runtime], None] | None = None,
) -> list[RunResult]:
    """One request through ``rt``, or, when its store (or its named origin on NATS) kept
    requests a killed run left unfinished, those requests resumed instead (each result, in
    order; ``kept`` says where they were kept). With ``trace``, the
    timeline is printed there live, and with ``text`` the text its model calls stream, as the
    request's sender may see it. The ``llm`` stacks are closed at the end, in the loop that
    used them. With ``asked``, each approval the request asks for is said on stderr as it is
    asked, in the words ``asked`` gives. ``check`` looks at the runtime once it has started,
    before anything is resumed or sent, and may refuse the run."""
    stream = rt.events(buffer=65_536) if trace is not None else None
    approvals = rt.events(buffer=65_536) if asked is not None else None
    try:
        async with anyio.create_task_group() as tg:
            if stream is not None:
                assert trace is not None
                tg.start_soon(_print_trace, stream, trace)
            if approvals is not None:
                assert asked is not None
                tg.start_soon(_say_asked, approvals, rt, asked)
            async with rt:
                if check is not None:
                    check(rt)
                unfinished = rt.unfinished()
                if unfinished:
                    print(
                        f"genie run: resuming {len(unfinished)} unfinished "
                        f"request{'s' if len(unfinished) > 1 else ''} {kept} "
                        "(the new request is not sent)",
                        file=sys.stderr,
                    )
                    # Each counted until the runtime closes: what a request's side branches
                    # do after its output came is the run's too (``settled``).
                    counted = [RunTally(m.correlation_id) for m in unfinished]
                    results = [
                        await pipeline.resume(rt, m, timeout=timeout, counting=c)
                        for m, c in zip(unfinished, counted, strict=True)
                    ]
                else:
                    msg = pipeline.entry_message(rt, payload)
                    if text is not None:
                        said = rt.model_text(msg.correlation_id, reader=msg.sender)
                        tg.start_soon(_print_text, said, text)
                    counted = [RunTally(msg.correlation_id)]
                    results = [await pipeline.ask(rt, msg, timeout=timeout, counting=counted[0])]
                if any(result.status == "timed_out" for result in results):
                    # The request was cancelled: its handlers stop at once here, and within a
                    # broker round trip in workers. A delivery waiting for an agent no worker
                    # hosts never reports, nor does one a store keeps for a person's approval,
                    # so the wait for the rest is short and bounded.
                    rt.drain_timeout = min(rt.drain_timeout, CANCELLED_DRAIN)
    finally:
        if llm is not None:
            await llm.aclose()
    return [
        _with_cut_short(rt, settled(result, rt, tally))
        for result, tally in zip(results, counted, strict=True)
    ]


def _asked_hint(
    pipeline: Pipeline, args: argparse.Namespace, taken: set[str]
) -> Callable[[Approval], str] | None:
    """For a pipeline that can ask a person's approval, what to say when it does: how to
    answer it (with ``--store``), or that this run cannot be answered (without). The id of
    an approval with an answer left in the store, which the run takes, is added to
    ``taken``."""
    if not any(APPROVAL in node.produces for node in pipeline.graph.nodes.values()):
        return None
    name = pipeline.name

    def hint(approval: Approval) -> str:
        asked = (
            f"genie run: {name}: approval {approval.id} ({approval.agent_id}: {approval.subject})"
        )
        if not args.store:
            return (
                f"{asked} waits for a person, and a run without --store cannot be answered: "
                f"stop it (Ctrl-C), run genie run {quote(args.pipeline)} --store PATH and answer "
                "from another terminal with genie approvals (docs/workflows.md)"
            )
        command = answer_command(
            approval.id, f"--store {quote(args.store)}", approval.role, approval.principal
        )
        answer = (
            f"answer from another terminal with {command} (or reject); this run waits for it "
            f"until its timeout, and the next genie run {quote(args.pipeline)} --store "
            f"{quote(args.store)} "
            "resumes the request"
        )
        left = _untaken_answer(args.store, approval.id)
        if left is not None:  # left while no process held the request: taken now
            taken.add(approval.id)
            return f"{asked} has an answer left by {left}, taken now; if it is refused, {answer}"
        return f"{asked} waits for a person: {answer}"

    return hint


def _say_not_counted(store: str, approval_ids: set[str]) -> None:
    """The answers left in ``store`` to ``approval_ids`` (approvals the run took answers
    for and went on past: no ``paused:`` line lists them) that did not decide them, refused
    or behind the one that did, and what became of each: said to nobody else, and no longer
    listed by ``genie approvals list``, as their approval is not pending."""
    import sqlite3

    from .._runtime.durable.store import StoreClient

    if not approval_ids:
        return
    try:
        client = StoreClient(store)
        try:
            left = client.answers_left(approval_ids)
        finally:
            client.close()
    except (GenieError, sqlite3.Error):  # the store's trouble is the run's to report
        return
    for approval_id in sorted(left):
        for by, outcome in left[approval_id]:
            if outcome not in (None, "approved", "rejected"):
                said = said_of({"by": by, "outcome": outcome})
                print(for_terminal(f"  approval {approval_id}: {said}"), file=sys.stderr)


def _untaken_answer(store: str, approval_id: str) -> str | None:
    """Who left an answer to ``approval_id`` in ``store`` that no runtime has taken yet (a
    resumed request's approval, answered while no process held it); None if nobody did."""
    import sqlite3

    from .._runtime.durable.store import StoreClient

    try:
        client = StoreClient(store)
        try:
            left = client.answers_left([approval_id]).get(approval_id, [])
        finally:
            client.close()
    except (GenieError, sqlite3.Error):  # the store's trouble is the run's to report
        return None
    return next((by for by, outcome in left if outcome is None), None)


async def _say_asked(stream: EventStream, rt: Runtime, asked: Callable[[Approval], str]) -> None:
    """Each approval a request asks for, said on stderr as soon as the desk has it."""
    said: set[str] = set()
    async for event in stream:
        if event.kind == "handled" and event.message_type == APPROVAL:
            for approval in rt.approvals.pending():
                if approval.id not in said:
                    said.add(approval.id)
                    print(for_terminal(asked(approval)), file=sys.stderr, flush=True)


async def _print_trace(stream: EventStream, out: TextIO) -> None:
    print(TIMELINE_HEADER, file=out)
    origin: float | None = None
    async for event in stream:
        origin = event.at if origin is None else origin
        print(for_terminal(event.line(origin)), file=out)


async def _print_text(text: ModelTextStream, out: TextIO) -> None:
    """Each model call's text as it is released, then a line saying how it ended."""
    fresh = True  # at the start of a line
    async with text:
        async for chunk in text:
            if chunk.kind == "text":
                out.write(chunk.text)
                fresh = chunk.text.endswith("\n")
            else:
                how = (
                    f"the rest denied by {chunk.policy}: {chunk.reason}"
                    if chunk.kind == "denied"
                    else f"ended: {chunk.finish or chunk.error or 'left unread'}"
                )
                lead = "" if fresh else "\n"
                out.write(f"{lead}{for_terminal(f'[{chunk.agent_id} call {chunk.call} {how}]')}\n")
                fresh = True
            out.flush()


def _render(payload: Payload) -> str:
    """A payload whose one field is text prints as that text; anything else as JSON."""
    data = payload.model_dump(mode="json")
    if len(data) == 1:
        (value,) = data.values()
        if isinstance(value, str):
            return value if value.endswith("\n") else value + "\n"
    return json.dumps(data, indent=2) + "\n"


def _validate(args: argparse.Namespace) -> int:
    pipeline = _load(args)
    if args.strict and pipeline.warnings:
        raise ConfigFileError(list(pipeline.warnings))  # each one, then the count
    for warning in pipeline.warnings:
        print(for_terminal(f"warning: {warning}"), file=sys.stderr)
    graph = pipeline.graph
    print(
        f"OK: {args.pipeline}: pipeline {pipeline.name!r}, {len(graph.nodes)} agents, "
        f"{len(graph.edges())} edges, entry {graph.entry.type!r} -> {graph.entry.target!r}, "
        f"output {graph.output!r}"
    )
    return 0


def _graph(args: argparse.Namespace) -> int:
    graph = _load(args).graph
    print(graph.mermaid() if args.format == "mermaid" else graph.text(), end="")
    return 0


def _agents(args: argparse.Namespace) -> int:
    catalogue = Catalogue.installed()
    if args.json:
        print(json.dumps([spec.describe() for spec in catalogue], indent=2))
    elif args.markdown:
        print(catalogue_markdown(catalogue), end="")
    else:
        for spec in catalogue:
            consumes = ", ".join(spec.describe()["consumes"])
            produces = ", ".join(spec.describe()["produces"])
            print(f"{spec.name:<28} {spec.risk!s:<6} {consumes} -> {produces}")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    key = audit_key(args.key_file, os.environ)
    beside = key_beside(args.file)
    # file_problem, not is_file: a name the system cannot look up (too long) is no key here,
    # and the log's own read then says why.
    if key is None and not args.file.startswith("nats://") and file_problem(beside) is None:
        key = read_audit_key(beside)  # the key `genie serve` made for this log
        print(f"key: {beside}")
    try:
        if args.file.startswith("nats://"):
            from ..nats._cli import verify_audit_stream

            verdict = verify_audit_stream(args.file, key, args.anchor)
        else:
            verdict = verify_audit_log(args.file, key=key, anchor=args.anchor)
    except FileRefusedError as exc:  # a directory, a named pipe: named, not waited on
        problem = exc.problem.removeprefix("cannot be read: ")  # said once, in the line's start
        print(f"genie audit verify: cannot read {args.file}: {problem}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"genie audit verify: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if verdict.ok:
        chain = "keyed (HMAC-SHA-256) chain" if verdict.keyed else "hash chain"
        recovered = ", ".join(str(n) for n in verdict.recovered)
        print(
            f"OK: {verdict.rows} rows, {chain} intact ({args.file})"
            + (f", torn lines recovered: {recovered}" if recovered else "")
            + f"\nlast row_hash: {verdict.last_hash}"
        )
        if not verdict.keyed:
            print(
                "unkeyed: this proves no row was edited, removed or reordered in place, not "
                "that the log was not rewritten from row 1 or extended: anyone who can write "
                "it can do that undetected (docs/governance.md)"
            )
        return 0
    where = f"{args.file}:{verdict.line}" if verdict.line is not None else args.file
    print(f"BROKEN: {where}: {verdict.problem}")
    return 1


def _policy_check(args: argparse.Namespace) -> int:
    from ..policies import load_policy_file, run_probes

    report = run_probes(load_policy_file(args.policy), args.probes)
    if args.json:
        print(report.as_json())
    else:
        unexpected = set(report.unexpected_allows) | set(report.unexpected_denies)
        for name, outcome in report.details.items():
            bad = name in unexpected or f"{name} (wrong reason)" in unexpected
            print(f"{'UNEXPECTED' if bad else 'ok':10s} {name}: {outcome}")
        if len(report.classes) > 1 or "-" not in report.classes:
            width = max(len(k) for k in report.classes)
            for kind, counts in sorted(report.classes.items()):
                print(f"class {kind:{width}s}  {counts.text()}")
        if report.passed:
            print(f"OK: all {report.total} probes denied / allowed as expected.")
        else:
            print(
                f"FAILED: {len(report.unexpected_allows)} unexpected allow(s), "
                f"{len(report.unexpected_denies)} unexpected deny(s) of {report.total} probes"
            )
    return 0 if report.passed else 1


def build_parser(installed: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser of the built-in commands, and of ``installed`` ones (name: help line) for
    ``genie --help`` and the list of choices; those parse their own arguments."""
    parser = Parser(
        prog="genie", description="Genie: an in-process, typed, governed multi-agent bus."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at info level (dead letters, denies)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run one request through a pipeline and print its output",
        description="Load PIPELINE, send one request built from its entry and the input, and "
        "print the output message (its text, or JSON). Exit 0 when the output arrives, 1 when "
        "the run is denied, fails, times out or waits for an approval, 2 for a bad pipeline "
        "or input, 3 when the output arrives but work of the request was lost (a dead letter, "
        "each said on stderr).",
    )
    run.add_argument("pipeline", help="pipeline YAML (e.g. config/pipelines/finance.yaml)")
    run.add_argument(
        "--input",
        type=path_option,
        metavar="PATH",
        help="input file, or - for stdin (default: the pipeline's entry.input.default)",
    )
    _add_set(run)
    run.add_argument("--json", action="store_true", help="print the result as a JSON object")
    run.add_argument(
        "--timeout",
        type=seconds,
        metavar="S",
        help="seconds to wait for the output (default: the pipeline's timeout)",
    )
    add_audit_options(run)
    run.add_argument(
        "--trace", action="store_true", help="print the run's timeline (every event) on stderr"
    )
    run.add_argument(
        "--store",
        type=path_option,
        metavar="PATH",
        help="keep the run's deliveries in the SQLite file PATH until they end; a run killed "
        "midway is resumed by the next run on PATH (docs/durability.md)",
    )
    add_discard_unreadable_option(run, "run")
    add_store_sync_option(run)
    run.add_argument(
        "--stream-text",
        action="store_true",
        help="print the text the model calls stream on stderr as it comes, governed",
    )
    run.add_argument(
        "--metrics-port",
        type=port,
        metavar="N",
        help="serve Prometheus /metrics on port N while the run lasts (0: any free port)",
    )
    run.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    run.add_argument(
        "--metrics-out",
        type=path_option,
        metavar="PATH",
        help="write the final Prometheus text exposition to PATH",
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log records as text or as one JSON object per line (on stderr)",
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log level (default: error; -v means info)",
    )
    add_loop_option(run)
    add_nats_run_options(run)
    run.set_defaults(func=_run)

    validate = commands.add_parser(
        "validate",
        help="check a pipeline without running it",
        description="Check PIPELINE: schema, agents, message types, routes, fallbacks, "
        "governance and that the output is reachable. Exit 0 when valid, 2 with every error.",
    )
    validate.add_argument("pipeline", help="pipeline YAML")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="refuse the file for its warnings too (a type no agent takes, say)",
    )
    _add_set(validate)
    validate.set_defaults(func=_validate)

    graph = commands.add_parser(
        "graph",
        help="print the routing graph of a pipeline",
        description="Every edge sender --type--> recipient of PIPELINE, as text or Mermaid.",
    )
    graph.add_argument("pipeline", help="pipeline YAML")
    graph.add_argument("--format", choices=("text", "mermaid"), default="text")
    _add_set(graph)
    graph.set_defaults(func=_graph)

    add_init(commands)

    agents = commands.add_parser(
        "agents",
        help="list the agent catalogue",
        description="Every installed catalogue agent: name, risk, capabilities, the message "
        "types it consumes and produces, and its parameters.",
    )
    fmt = agents.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="as a JSON array")
    fmt.add_argument("--markdown", action="store_true", help="as the docs/agents.md page")
    agents.set_defaults(func=_agents)

    audit = commands.add_parser("audit", help="work with audit logs", description="Audit logs.")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check an audit log's hash chain",
        description="Walk the hash chain of a JSONL audit log. Exit 0 if intact, 1 at the "
        "first broken, edited, deleted or reordered row, 2 if the file or the key cannot be "
        "read.",
    )
    verify.add_argument(
        "file",
        help="the JSONL audit log, or nats://HOST:PORT/NAMESPACE for a namespace's audit "
        "stream (`genie run --nats`; line N is then the stream's row N)",
    )
    verify.add_argument(
        "--key-file",
        type=path_option,
        metavar="FILE",
        help="the log is keyed (HMAC-SHA-256) with the key in FILE (default: the "
        "GENIE_AUDIT_KEY variable when set, else the log's own FILE.key when there)",
    )
    verify.add_argument(
        "--anchor",
        type=given("a row_hash"),
        metavar="HASH",
        help="a row_hash noted earlier (the last one verify printed): fail unless the log "
        "still holds that row, so rows removed at the end are found",
    )
    verify.set_defaults(func=_audit_verify)

    policy = commands.add_parser("policy", help="work with policy files", description="Policies.")
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    check = policy_commands.add_parser(
        "check",
        help="run red-team probes against a policy file",
        description="Load POLICY (a board policy file) and evaluate each probe of PROBES. "
        "Exit 1 on any unexpected allow or deny, 2 if a file is invalid.",
    )
    check.add_argument("policy", help="board policy YAML (e.g. config/policies/ai-policy.yaml)")
    check.add_argument("--probes", type=path_option, required=True, help="probes YAML")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_policy_check)

    add_simulate(commands)
    add_serve(commands)
    add_mcp(commands)
    add_approvals(commands)
    add_worker(commands)

    for name, summary in (installed or {}).items():
        commands.add_parser(name, help=summary, add_help=False)
    parser.set_defaults(builtin=frozenset(commands.choices) - set(installed or ()))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    at = _command_at(argv)
    name = argv[at] if at < len(argv) else ""
    if name not in parser.get_default("builtin"):
        # Another package's command (`genie bench`), help, or a typo: only now read the
        # entry points (they cost a scan of the installed packages).
        commands = _installed_commands.installed()
        entry = commands.get(name)
        if entry is not None:
            command: _installed_commands.Command = entry.load()
            try:
                return command(argv[at + 1 :], f"genie {name}")
            except KeyboardInterrupt:
                if "--debug" in argv[:at]:
                    raise
                return _interrupted(name)
        parser = build_parser({n: _installed_commands.summary(e) for n, e in commands.items()})
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # The command reports failures itself; the log repeats them only when asked to.
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.ERROR
    if getattr(args, "log_level", None):
        level = getattr(logging, args.log_level.upper())
    root = logging.getLogger()
    saved_level = root.level
    handler = configure_logging(getattr(args, "log_format", "text"), level)
    try:
        code: int = args.func(args)
    except ConfigFileError as exc:
        if args.debug:
            raise
        for problem in exc.problems:  # quoting a file's keys and path: maybe someone else's
            print(for_terminal(problem), file=sys.stderr)
        n = exc.count
        print(f"genie {args.command}: {n} problem{'s' if n > 1 else ''}", file=sys.stderr)
        return 2
    except GenieError as exc:
        if args.debug:
            raise
        # Genie's own message, which may say several problems on lines of their own, quoting
        # what a request or a store said.
        print(for_terminal(f"genie {args.command}: {exc}", keep_lines=True), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        return _interrupted(args.command)
    finally:
        root.removeHandler(handler)  # main() may be called again in one process (tests)
        root.setLevel(saved_level)
    return code


def _interrupted(command: str) -> int:
    """Ctrl-C during ``genie COMMAND``, said in one line; its exit status. The command prints
    nothing it had half made (``genie run`` says what its store kept itself, before this)."""
    return interrupted(f"genie {command}")


class _OutputError(Exception):
    """A write to the command's standard output failed (a full disk): ``strerror`` says why."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(exc.strerror or str(exc))
        self.strerror = exc.strerror or str(exc)


# What a write to a standard output closed before the command started (``genie run P >&-``)
# fails with: Python then has no ``sys.stdout`` at all.
_CLOSED = OSError(errno.EBADF, "it is closed")


class _Output:
    """The command's standard output, whose failed writes say they are the output's, so that
    cli() tells a full disk under ``genie run P > file`` from any other OSError. A reader gone
    (BrokenPipeError) stays itself."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if self.stream is None:
            raise _OutputError(_CLOSED)
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputError(exc) from exc

    def flush(self) -> None:
        if self.stream is None:
            return  # nothing was written: a write said so already
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _OutputError(exc) from exc

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def _drop_output(stdout: TextIO | None) -> None:
    """Point standard output at devnull, as Python's docs advise (library/signal, "Note on
    SIGPIPE"), so the interpreter's own flush at exit does not fail a second time. One closed
    from the start has nothing to flush."""
    if stdout is None:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout.fileno())


def cli() -> int:
    """The ``genie`` console script: ``main()``, and a reader that goes away early
    (``genie agents | head``) ends the command quietly instead of with a traceback, an output
    that cannot be written (a full disk) in one line, exit 1. A thread still running when the
    command is done (a plain ``def`` handler its delivery gave up) is waited for a moment,
    then left: the process ends with the command's status."""
    stdout = sys.stdout
    sys.stdout = cast(TextIO, _Output(stdout))
    try:
        code = main()
        sys.stdout.flush()  # output still in the buffer meets the closed pipe here
    except BrokenPipeError:
        _drop_output(stdout)
        return SIGPIPE_EXIT
    except _OutputError as exc:
        print(f"{_said_as()}: cannot write to standard output: {exc.strerror}", file=sys.stderr)
        _drop_output(stdout)
        return 1
    except KeyboardInterrupt as exc:
        return interrupted_early(exc)
    finally:
        sys.stdout = stdout
    left = _threads_left(THREADS_GRACE)
    if left:
        # Python's exit would join them, however long they block: the run has ended and said
        # so, and a thread cannot be interrupted, so the process ends without them.
        many = len(left) > 1
        print(
            f"genie: {len(left)} thread{'s' if many else ''} still running ("
            f"{', '.join(sorted({t.name for t in left}))}; a plain def handler given up at its "
            f"deadline or with its request, say): the command ends without waiting for "
            f"{'them' if many else 'it'}",
            file=sys.stderr,
        )
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


THREADS_GRACE = 2.0  # seconds a finished command waits for threads still running


def _threads_left(grace: float) -> list[threading.Thread]:
    """The threads Python's exit would wait for (not daemons) still running after ``grace``
    seconds in all; Ctrl-C cuts the wait short."""
    deadline = time.monotonic() + grace
    left = [
        t
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]
    try:
        for thread in left:
            thread.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    return [t for t in left if t.is_alive()]
