"""``genie approvals list|approve|reject``: the approvals a store keeps pending, answered from
another terminal (docs/durability.md). The answer is left in the store; the runtime that holds
it (a ``genie run --store`` or ``genie serve --store`` waiting for it, or the next one to
resume the request) takes it, checks who may answer, and records it in its audit log."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .._errors import ConfigurationError

__all__ = ["add_parser", "pending_approvals"]


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
    listing.add_argument("--store", required=True, metavar="PATH", help="the store file")
    listing.add_argument("--json", action="store_true", help="as JSON, one object each")
    listing.set_defaults(func=_list)
    for verb in ("approve", "reject"):
        answer = verbs.add_parser(verb, help=f"{verb} a pending approval")
        answer.add_argument("approval", metavar="ID", help="the approval's id (see list)")
        answer.add_argument("--store", required=True, metavar="PATH", help="the store file")
        answer.add_argument("--as", dest="principal", required=True, metavar="PRINCIPAL")
        answer.add_argument(
            "--role", action="append", default=[], metavar="ROLE", help="a role you hold"
        )
        answer.add_argument("--reason", default="", help="said with the decision")
        answer.add_argument(
            "--wait",
            type=float,
            default=5.0,
            metavar="S",
            help="seconds to wait for the runtime to take it (5)",
        )
        answer.set_defaults(func=_answer, approved=verb == "approve")


def pending_approvals(store: str) -> list[dict[str, object]]:
    from .._runtime.durable.store import StoreClient

    client = StoreClient(store)
    try:
        bodies = client.approvals()
    finally:
        client.close()
    pending = []
    for body in bodies:
        message = json.loads(body)
        request = message["payload"]
        pending.append(
            {
                "id": message["id"],
                "agent": message["sender"],
                "subject": request["subject"],
                "role": request.get("role"),
                "principal": request.get("principal"),
                "asked_at": message["created_at"],
                "deadline_s": request.get("deadline"),
                "correlation_id": message["correlation_id"],
            }
        )
    return pending


def _list(args: argparse.Namespace) -> int:
    pending = pending_approvals(args.store)
    if args.json:
        for approval in pending:
            print(json.dumps(approval))
        return 0
    if not pending:
        print(f"no approvals pending in {args.store}")
        return 0
    for a in pending:
        who = f"principal {a['principal']}" if a["principal"] else f"role {a['role'] or 'any'}"
        print(f"{a['id']}  {a['agent']}: {a['subject']}  ({who}; asked {a['asked_at']})")
    return 0


def _answer(args: argparse.Namespace) -> int:
    from .._runtime.durable.store import StoreClient

    ids = [a["id"] for a in pending_approvals(args.store)]
    if args.approval not in ids:
        known = ", ".join(str(i) for i in ids) or "none"
        raise ConfigurationError(f"no approval {args.approval!r} pending in {args.store} ({known})")
    client = StoreClient(args.store)
    try:
        row = client.answer(
            args.approval, args.approved, args.principal, tuple(args.role), args.reason
        )
        deadline = time.monotonic() + args.wait
        outcome = client.outcome(row)
        while outcome is None and time.monotonic() < deadline:
            time.sleep(0.1)
            outcome = client.outcome(row)
    finally:
        client.close()
    if outcome is None:
        print(
            f"genie approvals: the answer is left in {args.store}: the runtime that resumes "
            f"the request takes it (genie run --store {args.store})",
            file=sys.stderr,
        )
        return 0
    print(f"{args.approval}: {outcome}")
    return 1 if outcome.startswith("refused") else 0
