"""The ``genie`` command: a thin layer over the library.

Exit codes: 0 success, 1 the run failed (denied, failed, timed out), 2 usage or configuration
error. Errors print one clear line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from ._audit import verify_audit_log
from ._demo import Statement, demo_agents
from ._errors import GenieError
from ._runtime import Runtime

__all__ = ["main"]


async def run_demo(csv_text: str, timeout: float) -> tuple[int, dict[str, object]]:
    async with Runtime() as rt:
        for agent, subscriptions in demo_agents():
            rt.add(agent, subscribe=subscriptions)
        request = rt.message(Statement(csv=csv_text), sender="caller")
        result = await rt.ask(request, until="demo.report", timeout=timeout)
    stats = rt.statistics()
    out: dict[str, object] = {
        "status": "ok" if result.complete else result.status,
        "correlation_id": result.correlation_id,
        "output": result.replies[0].payload.model_dump() if result.replies else None,
        "missing": [
            {"key": m.key, "kind": m.kind, "reason": m.reason, "policy": m.policy}
            for m in result.missing
        ],
        "stats": {
            "delivered": stats.delivered,
            "handled": stats.handled,
            "denied": stats.denied,
            "dead_lettered": stats.dead_lettered,
            "shed": stats.shed,
        },
    }
    return (0 if result.complete else 1), out


def _demo(args: argparse.Namespace) -> int:
    path = Path(args.csv)
    try:
        csv_text = sys.stdin.read() if args.csv == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"genie demo: cannot read {args.csv}: {exc.strerror}", file=sys.stderr)
        return 2
    code, out = anyio.run(run_demo, csv_text, args.timeout)
    if args.json:
        print(json.dumps(out, indent=2))
    elif code == 0:
        output = out["output"]
        assert isinstance(output, dict)
        print(output["text"], end="")
        stats = out["stats"]
        assert isinstance(stats, dict)
        print(" ".join(f"{k}={v}" for k, v in stats.items()))
    else:
        missing = out["missing"]
        assert isinstance(missing, list)
        print(f"genie demo: the run {out['status']}", file=sys.stderr)
        for m in missing:
            print(f"  {m['key']}: {m['kind']}: {m['reason']}", file=sys.stderr)
    return code


def _audit_verify(args: argparse.Namespace) -> int:
    try:
        verdict = verify_audit_log(args.file)
    except OSError as exc:
        print(f"genie audit verify: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if verdict.ok:
        print(f"OK: {verdict.rows} rows, hash chain intact ({args.file})")
        return 0
    print(f"BROKEN: {args.file}:{verdict.line}: {verdict.problem}")
    return 1


def _policy_check(args: argparse.Namespace) -> int:
    from .policies import load_policy_file, run_probes

    report = run_probes(load_policy_file(args.policy), args.probes)
    if args.json:
        print(report.as_json())
    else:
        unexpected = set(report.unexpected_allows) | set(report.unexpected_denies)
        for name, outcome in report.details.items():
            bad = name in unexpected or f"{name} (wrong reason)" in unexpected
            print(f"{'UNEXPECTED' if bad else 'ok':10s} {name}: {outcome}")
        if report.passed:
            print(f"OK: all {report.total} probes denied / allowed as expected.")
        else:
            print(
                f"FAILED: {len(report.unexpected_allows)} unexpected allow(s), "
                f"{len(report.unexpected_denies)} unexpected deny(s) of {report.total} probes"
            )
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genie", description="Genie: an in-process, typed, governed multi-agent bus."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log warnings (dead letters, denies)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the built-in demo pipeline on a statement CSV",
        description="Parse a statement, fan it out to three analysts, gather one report.",
    )
    demo.add_argument("csv", nargs="?", default="config/data/sample.csv", help="CSV file, or -")
    demo.add_argument("--json", action="store_true", help="print the result as JSON")
    demo.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    demo.set_defaults(func=_demo)

    audit = commands.add_parser("audit", help="work with audit logs", description="Audit logs.")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check an audit log's hash chain",
        description="Walk the hash chain of a JSONL audit log. Exit 0 if intact, 1 at the "
        "first broken, edited, deleted or reordered row.",
    )
    verify.add_argument("file", help="the JSONL audit log")
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
    check.add_argument("--probes", required=True, help="probes YAML")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_policy_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # The command reports failures itself; the log repeats them only when asked to.
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except GenieError as exc:
        if args.debug:
            raise
        print(f"genie {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
