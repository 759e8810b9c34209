"""``--store-sync``: when the writes of a ``--store`` reach the disk (docs/durability.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .._errors import ConfigurationError
from .options import as_seconds

if TYPE_CHECKING:
    from .._runtime.durable.transport import Sync

__all__ = ["add_store_sync_option"]


def _store_sync(value: str) -> Sync:
    # The store's module (and sqlite3) only for a run that names a sync: a run without a
    # store never loads them.
    from .._runtime.durable.transport import check_sync

    try:
        return check_sync(value if value == "always" else as_seconds(value))
    except (ValueError, ConfigurationError):
        raise argparse.ArgumentTypeError(
            f"a number of seconds above 0, or 'always', not {value!r}"
        ) from None


def add_store_sync_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store-sync",
        type=_store_sync,
        default=1.0,
        metavar="S",
        help="with --store: seconds between syncs of its writes to the disk (1; a write "
        "survives a kill of the process at once), or 'always' (each write waits for the "
        "disk, and survives a loss of power too)",
    )
