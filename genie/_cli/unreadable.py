"""A store keeping requests the pipeline cannot read (its models edited since they were kept):
``genie run`` and ``genie serve`` refuse to start on it, naming the store, each request and
what reading it said, or with ``--discard-unreadable`` drop them, each said, and go on."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from .._errors import ConfigurationError, GenieError

if TYPE_CHECKING:
    from .._runtime.runtime import Runtime

__all__ = ["add_discard_unreadable_option", "check_discard_unreadable", "refuse_unreadable"]


def add_discard_unreadable_option(parser: argparse.ArgumentParser, then: str) -> None:
    parser.add_argument(
        "--discard-unreadable",
        action="store_true",
        help="drop the requests the --store keeps that this pipeline cannot read (a model "
        f"edited since they were kept), and all that was kept of them, then {then}",
    )


def check_discard_unreadable(args: argparse.Namespace, store: str) -> None:
    """``--discard-unreadable`` without a store has nothing to drop: refused as said."""
    if args.discard_unreadable and not args.store:
        raise ConfigurationError(f"--discard-unreadable needs --store {store}")


def refuse_unreadable(
    rt: Runtime,
    store: str | os.PathLike[str],
    *,
    command: str,
    again: str,
    held: str,
    discard: bool,
) -> None:
    """Refuse to go on while ``rt``'s store keeps requests its pipeline cannot read: going on
    as if nothing were kept would leave them there unsaid. ``command`` names the command
    (``genie run``), ``again`` how to run it again on the store, ``held`` what it did not do
    (``no new request was sent``). With ``discard`` they are dropped instead, each said."""
    unreadable = rt.unreadable()
    if not unreadable:
        return
    if discard:
        for cid in unreadable:
            rt.discard(cid)
            print(
                f"{command}: discarded request {cid} from the store {store}: this pipeline "
                "cannot read it",
                file=sys.stderr,
            )
        return
    many = len(unreadable) > 1
    them = "them" if many else "it"
    which = "; ".join(f"request {cid}: {why}" for cid, why in unreadable.items())
    raise ConfigurationError(
        f"the store {store} keeps {'requests' if many else 'a request'} this pipeline cannot "
        f"read: {which}; {them} {'were' if many else 'was'} not resumed, and {held}: run the "
        f"pipeline that made {them}{_named_in(store)}, or {again} --discard-unreadable drops "
        f"{them} (what {'they' if many else 'it'} kept is lost)"
    )


def _named_in(store: str | os.PathLike[str]) -> str:
    """`` (FILE)``, the pipeline file the store names as the one whose runs it keeps, or ""
    when it names none (or cannot be read again now)."""
    import sqlite3  # as the store's own module: only a run with a store needs it

    from .._runtime.durable.store import StoreClient

    try:
        client = StoreClient(store)
    except (GenieError, OSError, sqlite3.Error):
        return ""
    try:
        named = client.pipeline()
    finally:
        client.close()
    return "" if named is None else f" ({named})"
