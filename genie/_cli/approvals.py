"""``genie approvals list|approve|reject``: the approvals a store keeps pending, or the desk
of a scale-out lists in its namespace's bucket (``--nats``), answered from another terminal
(docs/durability.md). The answer is left in the store (or the bucket); the runtime that holds
the approval (a ``genie run --store`` or ``genie serve --store`` waiting for it, the next one
to resume the request, or the ``genie worker`` hosting the desk) takes it, checks who may
answer, and records it in its audit log."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any, cast

import anyio

from .._base.surrogates import lone_surrogate
from .._errors import ConfigurationError, for_terminal
from .options import name_option, path_option, seconds_or_zero, url_option

__all__ = ["add_parser", "answer_command", "pending_approvals", "said_of"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "approvals",
        help="list and answer the approvals a store keeps pending",
        description="List the approvals pending in a store (genie run --store, genie serve "
        "--store), or approve or reject one as a principal. The runtime that holds the store "
        "takes the answer and checks that the principal may give it; exit 0 when it was taken "
        "or left for the next run, 1 when it was refused, 2 for a bad store or id.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the pending approvals")
    _add_where(listing)
    listing.add_argument("--json", action="store_true", help="as JSON, one object each")
    listing.set_defaults(func=_list)
    for verb in ("approve", "reject"):
        answer = verbs.add_parser(verb, help=f"{verb} a pending approval")
        answer.add_argument("approval", metavar="ID", help="the approval's id (see list)")
        _add_where(answer)
        answer.add_argument("--as", dest="principal", required=True, metavar="PRINCIPAL")
        answer.add_argument(
            "--role", action="append", default=[], metavar="ROLE", help="a role you hold"
        )
        answer.add_argument("--reason", default="", help="said with the decision")
        answer.add_argument(
            "--wait",
            type=seconds_or_zero,
            default=5.0,
            metavar="S",
            help="seconds to wait for the runtime (or the worker hosting the desk) to take it (5)",
        )
        answer.set_defaults(func=_answer, approved=verb == "approve")


def _add_where(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", type=path_option, metavar="PATH", help="the store file")
    where.add_argument(
        "--nats",
        type=url_option,
        metavar="URL",
        help="a scale-out's NATS server (with --namespace): the desk a genie worker hosts",
    )
    parser.add_argument(
        "--namespace", type=name_option, metavar="NS", help="with --nats: the namespace"
    )


def _where(args: argparse.Namespace) -> str:
    if args.nats is None:
        if args.namespace is not None:
            raise ConfigurationError("--namespace names a namespace of --nats: give --nats URL")
        return str(args.store)
    if not args.namespace:
        raise ConfigurationError("--nats: name the namespace (--namespace, the pipeline's name)")
    return f"namespace {args.namespace} on {args.nats}"


def listed(message: dict[str, Any], escalated: bool | None = None) -> dict[str, object]:
    """A pending approval as ``genie approvals list`` shows it, from its request message;
    ``escalated`` by the desk, it is offered to its ``escalate_to`` role only, as the desk
    that takes it up again offers it (``ApprovalDesk.on_request``). None: not known where it
    is kept (a NATS bucket listed by a worker of a genie before the escalation was
    recorded there), and not said."""
    try:
        request = message["payload"]
        role, principal = request.get("role"), request.get("principal")
        if escalated is not None:
            escalated = escalated and request.get("escalate_to") is not None
        if escalated:
            role, principal = request["escalate_to"], None
        shown: dict[str, object] = {
            "id": message["id"],
            "agent": message["sender"],
            "subject": request["subject"],
            "role": role,
            "principal": principal,
            "asked_at": message["created_at"],
            "deadline_s": request.get("deadline"),
            "correlation_id": message["correlation_id"],
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"a pending approval that genie did not write: {exc!r}") from None
    if escalated is not None:
        shown["escalated"] = escalated
    return shown


def pending_approvals(store: str) -> list[dict[str, object]]:
    """The approvals ``store`` keeps pending, each with the ``answers`` left to it (who left
    each, and what became of it: None while no runtime has taken it)."""
    from .._runtime.durable.store import StoreClient

    client = StoreClient(store)
    try:
        bodies = client.approvals()
        escalated = client.escalated()
        try:
            pending = [
                listed(m, isinstance(m, dict) and m.get("id") in escalated)
                for m in map(json.loads, bodies)
            ]
        except ValueError as exc:
            raise ConfigurationError(f"cannot use {store} as a store: {exc}") from None
        left = client.answers_left(str(a["id"]) for a in pending)
    finally:
        client.close()
    for approval in pending:
        answers = left.get(str(approval["id"]), [])
        approval["answers"] = [{"by": by, "outcome": outcome} for by, outcome in answers]
    return pending


def _decided(store: str, approval_id: str) -> str | None:
    """How an approval no longer pending in ``store`` was decided by an answer left there
    (``approved by tina``), or None: decided otherwise (its deadline, an answer given to the
    run itself), or never asked."""
    from .._runtime.durable.store import StoreClient

    client = StoreClient(store)
    try:
        answers = client.answers_left([approval_id]).get(approval_id, [])
    finally:
        client.close()
    for by, outcome in answers:
        if outcome in ("approved", "rejected"):
            shown = by if _not_a_name(by) is None else repr(by)
            return f"{outcome} by {shown}"
    return None


def answer_command(approval_id: object, where: str, role: object, principal: object) -> str:
    """The command that approves ``approval_id`` (kept ``where``: the store's or the
    namespace's flags), with the ``--role`` it needs and the principal it names if it names
    one: it runs as printed once PRINCIPAL is a person's name."""
    who = shlex.quote(str(principal)) if principal else "PRINCIPAL"
    needs = f" --role {shlex.quote(str(role))}" if role else ""
    return f"genie approvals approve {approval_id} {where} --as {who}{needs}"


def said_of(answer: object) -> str:
    """What became of an answer ``pending_approvals`` lists, in a sentence on one line. A
    store's row may have been written by hand: a name no person has, or an outcome that is
    not one line of text, is quoted, so that it cannot pass for other lines."""
    assert isinstance(answer, dict)
    by, outcome = str(answer["by"]), answer["outcome"]
    shown = by if _not_a_name(by) is None else repr(by)
    if outcome is None:
        return f"the answer left by {shown} is not taken yet"
    outcome = str(outcome)
    return f"the answer left by {shown}: {outcome if outcome.isprintable() else repr(outcome)}"


def pending_on_nats(url: str, namespace: str) -> list[dict[str, object]]:
    """The approvals the desk of ``namespace`` lists as pending (none: no desk has run)."""
    from ..nats._cli import on_approvals

    async def read() -> list[dict[str, object]] | None:
        return await on_approvals(url, namespace, lambda bucket: bucket.pending())

    # Whether the desk escalated it, as its worker lists it (a worker before that did not).
    return [
        listed(m, escalated if isinstance(escalated := m.get("escalated"), bool) else None)
        for m in anyio.run(read) or []
    ]


def _pending(args: argparse.Namespace) -> list[dict[str, object]]:
    if args.nats is not None:
        return pending_on_nats(args.nats, args.namespace)
    return pending_approvals(args.store)


def _list(args: argparse.Namespace) -> int:
    where = _where(args)
    pending = _pending(args)
    if args.json:
        for approval in pending:
            print(json.dumps(approval))
        return 0
    if not pending:
        print(f"no approvals pending in {where}")
        return 0
    for a in pending:
        # Both when it names both: the desk asks the answerer for each (``may_answer``).
        needs = [f"{k} {a[k]}" for k in ("principal", "role") if a[k]]
        who = ", ".join(needs) or "role any"
        print(
            for_terminal(f"{a['id']}  {a['agent']}: {a['subject']}  ({who}; asked {a['asked_at']})")
        )
        for answer in cast(list[object], a.get("answers", [])):
            print(f"    {said_of(answer)}")
    return 0


def _answer(args: argparse.Namespace) -> int:
    where = _where(args)
    refused = _not_a_name(args.principal)
    if refused is not None:
        # The desk refuses such a name whatever the approval; left while no process holds the
        # request, it would be refused unseen at the next start.
        raise ConfigurationError(f"--as {refused}")
    for option, text in [("--reason", args.reason), *(("--role", role) for role in args.role)]:
        if (at := lone_surrogate(text)) is not None:
            # A byte the terminal's encoding could not read (argv holds it as a surrogate):
            # no store, bucket or audit log can keep it.
            raise ConfigurationError(f"{option}: not valid text (an undecodable byte at {at})")
    pending = _pending(args)
    ids = [a["id"] for a in pending]
    if args.approval not in ids:
        decided = None if args.nats is not None else _decided(args.store, args.approval)
        if decided is not None:
            raise ConfigurationError(f"approval {args.approval!r} was decided already: {decided}")
        known = ", ".join(str(i) for i in ids) or "none"
        raise ConfigurationError(f"no approval {args.approval!r} pending in {where} ({known})")
    [asked] = [a for a in pending if a["id"] == args.approval]
    # Answers left before this one and not taken yet: the first the desk accepts decides.
    ahead = [
        str(a["by"])
        for a in cast(list[dict[str, object]], asked.get("answers", []))
        if a["outcome"] is None
    ]
    answer = (args.approval, args.approved, args.principal, tuple(args.role), args.reason)
    try:
        if args.nats is not None:
            outcome = _answer_on_nats(args, answer)
            taker = "the genie worker hosting the approval desk takes it when it runs"
        else:
            outcome, pipeline = _answer_in_store(args, answer)
            if pipeline is not None:
                resume = f"genie run {shlex.quote(pipeline)} --store {shlex.quote(where)}"
            else:  # a store made before stores named their pipeline file
                resume = (
                    f"genie run PIPELINE --store {shlex.quote(where)}, PIPELINE the pipeline "
                    "file (or name) whose run asked for it"
                )
            taker = f"the runtime that resumes the request takes it: {resume}"
    except KeyboardInterrupt:
        print("genie approvals: interrupted before the answer was left", file=sys.stderr)
        return 130
    if outcome is None:
        behind = ""
        if ahead:
            names = ", ".join(n if _not_a_name(n) is None else repr(n) for n in ahead)
            behind = (
                f" behind {len(ahead)} not taken yet (by {names}): the first answer the desk "
                "accepts decides, so this one counts only if "
                f"{'that one is' if len(ahead) == 1 else 'those are'} refused"
            )
        print(f"genie approvals: the answer is left in {where}{behind}: {taker}", file=sys.stderr)
        return 0
    print(for_terminal(f"{args.approval}: {outcome}"))
    return 0 if outcome in ("approved", "rejected") else 1  # refused, or decided already


Answer = tuple[str, bool, str, tuple[str, ...], str]


def _not_a_name(principal: str) -> str | None:
    """Why ``principal`` may answer no approval at all, by the desk's own rule."""
    from .._runtime.approvals import not_a_name

    return not_a_name(principal)


def _answer_in_store(args: argparse.Namespace, answer: Answer) -> tuple[str | None, str | None]:
    """Leave ``answer`` in the store and wait ``--wait`` for what became of it: the outcome
    (None: not taken yet) and the pipeline file the store names (None: it names none)."""
    from .._runtime.durable.store import StoreClient

    client = StoreClient(args.store)
    row: int | None = None
    pipeline: str | None = None
    try:
        pipeline = client.pipeline()
        row = client.answer(*answer)
        deadline = time.monotonic() + args.wait
        outcome = client.outcome(row)
        while outcome is None and time.monotonic() < deadline:
            time.sleep(0.1)
            outcome = client.outcome(row)
    except KeyboardInterrupt:  # Ctrl-C while it waits: the answer is left, as after --wait
        if row is None:
            raise
        outcome = None
    finally:
        client.close()
    return outcome, pipeline


def _answer_on_nats(args: argparse.Namespace, answer: Answer) -> str | None:
    from ..nats._approvals import NatsApprovals
    from ..nats._cli import on_approvals

    left: list[str] = []  # the answer's key, once it is in the bucket

    async def give(bucket: NatsApprovals) -> str | None:
        key = await bucket.answer(*answer)
        left.append(key)
        deadline = time.monotonic() + args.wait
        outcome = await bucket.outcome(key)
        while outcome is None and time.monotonic() < deadline:
            await anyio.sleep(0.1)  # the worker looks for answers every 0.25 s
            outcome = await bucket.outcome(key)
        return outcome

    async def go() -> str | None:
        return await on_approvals(args.nats, args.namespace, give)

    try:
        return anyio.run(go)
    except KeyboardInterrupt:  # Ctrl-C while it waits: the answer is left, as after --wait
        if not left:
            raise
        return None
