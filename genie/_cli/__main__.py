"""``python -m genie._cli``: the ``genie`` command without its console script."""

from .main import cli

raise SystemExit(cli())
