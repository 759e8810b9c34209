"""The PIPELINE argument and its ``--set KEY=VALUE`` overrides, shared by the commands that
load a pipeline (``genie run``, ``validate``, ``graph``, ``simulate``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .._errors import ConfigurationError
from . import Pipeline, load_pipeline

__all__ = ["add_set", "load"]


def _variables(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--set {pair!r}: expected KEY=VALUE")
        # The last would win unsaid, as a key given twice in a YAML mapping would.
        if out.get(key, value) != value:
            raise ConfigurationError(
                f"--set {pair!r}: {key} is set twice, first to {out[key]!r}: give it once"
            )
        out[key] = value
    return out


def load(args: argparse.Namespace) -> Pipeline:
    return load_pipeline(args.pipeline, variables=_variables(getattr(args, "set", None) or ()))


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="set ${KEY} in the pipeline file (over the environment); repeatable",
    )
