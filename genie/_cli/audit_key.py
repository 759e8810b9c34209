"""The key of an ``--audit`` log, for every command that writes one (``genie run``, ``genie
serve``): keyed by default, since a plain chain can be rewritten or extended by anyone who can
write the file and still verify (docs/governance.md, "A keyed chain")."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .._base.files import write_problem
from .._errors import ConfigurationError
from .._runtime.audit import audit_key, create_audit_key, key_beside, read_audit_key
from .options import path_option

__all__ = ["add_audit_options", "audit_log_key"]


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--audit",
        type=path_option,
        metavar="PATH",
        help="append audit records to this hash-chained JSONL log, keyed (HMAC-SHA-256) with "
        "--audit-key-file, else GENIE_AUDIT_KEY, else PATH.key (made for a new log)",
    )
    parser.add_argument(
        "--audit-key-file",
        type=path_option,
        metavar="FILE",
        help="the key of the --audit log's chain",
    )
    parser.add_argument(
        "--audit-unkeyed",
        action="store_true",
        help="write a plain SHA-256 chain (anyone who can write the log can rewrite it)",
    )


def audit_log_key(args: argparse.Namespace) -> tuple[bytes | None, str]:
    """The key of the ``--audit`` log (of ``genie run`` or ``genie serve``) and a sentence
    saying where it came from.

    A log is keyed unless ``--audit-unkeyed`` says otherwise: a plain chain can be
    rewritten from row 1, or extended, by anyone who can write the file, and still verify.
    Without ``--audit-key-file`` or GENIE_AUDIT_KEY the key is ``PATH.key``, made (owner
    only) for a new log; a log that exists without one is refused, since a new key could
    not continue it."""
    if not args.audit:
        if args.audit_key_file or args.audit_unkeyed:
            option = "--audit-key-file" if args.audit_key_file else "--audit-unkeyed"
            raise ConfigurationError(f"{option} needs --audit PATH")
        return None, ""
    folder = Path(args.audit).parent
    try:
        is_folder = folder.is_dir()
        what = "is not a folder" if folder.exists() else "does not exist"
    except OSError as exc:  # a name the system cannot look up (too long)
        raise ConfigurationError(f"cannot open audit log {args.audit}: {exc.strerror}") from None
    if not is_folder:  # a mistyped path: no folders are made for it
        raise ConfigurationError(f"cannot open audit log {args.audit}: {folder} {what}")
    # The next run continues the chain from the log's last row: a directory, a named pipe or
    # a device (/dev/null would take every record and keep none) cannot hold it.
    if problem := write_problem(args.audit):
        raise ConfigurationError(f"cannot open audit log {args.audit}: {problem}")
    if args.audit_unkeyed:
        if args.audit_key_file:
            raise ConfigurationError("--audit-unkeyed and --audit-key-file exclude each other")
        return None, (
            "is unkeyed (--audit-unkeyed): a plain SHA-256 chain, which anyone who can write "
            "the file can rewrite or extend undetected"
        )
    key = audit_key(args.audit_key_file, os.environ)
    if key is not None:
        source = args.audit_key_file or "the GENIE_AUDIT_KEY variable"
        return key, f"is keyed (HMAC-SHA-256) with the key in {source}"
    beside = key_beside(args.audit)
    log = Path(args.audit)
    try:
        keyed, filled = beside.exists(), log.exists() and log.stat().st_size > 0
    except OSError as exc:  # a name too long to look up: the log's, or only its key's beside it
        raise ConfigurationError(
            f"cannot open audit log {log} with its key beside it ({beside}): {exc.strerror}"
        ) from None
    if keyed:
        return read_audit_key(beside), f"is keyed (HMAC-SHA-256) with the key in {beside}"
    if filled:
        raise ConfigurationError(
            f"audit log {log} exists and has no key beside it ({beside}): give its key "
            "(--audit-key-file or GENIE_AUDIT_KEY), or --audit-unkeyed to continue a plain "
            "chain, or start a new log"
        )
    try:  # the key goes beside the log: where the log cannot be written, neither can it
        key = create_audit_key(beside)
    except OSError as exc:
        raise ConfigurationError(f"cannot open audit log {log}: {exc.strerror}") from None
    return key, (
        f"is keyed (HMAC-SHA-256) with a new key written to {beside}: keep a copy where the "
        f"process cannot write, and verify with genie audit verify {log} --key-file COPY"
    )
