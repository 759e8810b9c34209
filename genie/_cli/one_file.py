"""One file named for two roles on a command line, one of which writes it, is refused before
anything is opened (``genie run``, ``genie serve``): a metrics file opened over the pipeline
file, the input or a store truncated it, and audit rows were appended to a database, a key
file or a pipeline file."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from .._errors import ConfigurationError
from .._runtime.audit import key_beside

__all__ = ["Role", "audit_roles", "one_file_twice", "store_roles"]

Role = tuple[str, "str | os.PathLike[str] | None"]
"""How an error names a file's role (``--store``, ``the pipeline file``), and its path: None
when the command was given none."""


def audit_roles(args: argparse.Namespace) -> tuple[list[Role], list[Role]]:
    """The files an ``--audit`` log writes (the log, and the key made beside it unless one is
    given or it is unkeyed) and reads (``--audit-key-file``)."""
    keyed = args.audit and not (args.audit_key_file or args.audit_unkeyed)
    written: list[Role] = [
        ("--audit", args.audit),
        ("the key of --audit", key_beside(args.audit) if keyed else None),
    ]
    return written, [("--audit-key-file", args.audit_key_file)]


def store_roles(store: str | os.PathLike[str] | None) -> list[Role]:
    """The files a ``--store`` writes: the store, and those beside it while it is held (its
    lock, SQLite's side files), so that a log or a metrics file is not written over one:
    an audit log's lock on the store's lock file waits forever, and a metrics file over its
    write-ahead log cuts off the writes a killed run left there."""
    if not store:
        return []
    from .._runtime.durable.store import beside

    return [
        ("--store", store),
        *((f"the {what} of --store", p) for what, p in beside(store).items()),
    ]


def one_file_twice(written: Sequence[Role], read: Sequence[Role]) -> None:
    """Refuse the files of a command whose options name one file for two roles, one of which
    writes it: ``written`` is compared with itself and with ``read`` (one file read twice is no
    harm), each by its inode, or for a file still to be made by its resolved path."""
    roles = [
        (role, path, _file_identity(path), writes)
        for group, writes in ((written, True), (read, False))
        for role, path in group
        if path
    ]
    for i, (first, path, same, writes) in enumerate(roles):
        if not writes:
            break  # the rest only read
        for second, _, other, _ in roles[i + 1 :]:
            if same == other:
                raise ConfigurationError(f"{first} and {second} name one file: {path}")


def _file_identity(path: str | os.PathLike[str]) -> tuple[object, ...]:
    """What makes two paths one file: its device and inode when it exists, else the path with
    its links and ``..`` resolved."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return ("path", os.path.realpath(path))
    return ("inode", found.st_dev, found.st_ino)
