"""``python -m genie``: the ``genie`` command, where its console script is not on the PATH."""

if __name__ == "__main__":
    from ._cli.main import cli

    raise SystemExit(cli())
