"""Compile genie's hot modules with mypyc into a tree of their own: ``make compiled``.

The tree (default ``build/mypyc``) is a copy of the ``genie`` package in which the modules of
``HOT`` are C extensions (their sources removed, so nothing can load them by mistake); put it
first on ``PYTHONPATH`` and ``import genie`` loads them. The default install never runs this:
it needs mypy (the dev extra, which ships mypyc), a C compiler and the Python headers. See
docs/benchmarks.md, "Compiled with mypyc", for what it buys and docs/design/mypyc.md
for why it stays opt-in.

``python tools/mypyc_build.py --check DIR`` says whether ``DIR`` is such a tree, as imported by
this interpreter (exit 1 when a hot module would load from source).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The delivery path: what every message goes through. Left out, with the reason:
# - genie/_supervisor.py: mypyc makes the ``ClassVar`` of a dataclass (``Decision.ALLOW``) a
#   field (mypyc issue 1122), and the module fails to import; its hot part is two small
#   functions.
HOT = (
    "genie/_runtime/dispatch.py",
    "genie/_runtime/delivery.py",
    "genie/_runtime/ledger.py",
    "genie/_runtime/correlator.py",
    "genie/_runtime/router.py",
    "genie/_runtime/admission.py",
    "genie/_agent/context.py",
    "genie/_runtime/local/executor.py",
    "genie/_runtime/local/mailbox.py",
    "genie/_runtime/policy_plan.py",
    "genie/policies/_normalise.py",
)


def build(out: Path, modules: Sequence[str], *, opt_level: str = "3") -> None:
    """Copy ``genie`` to ``out`` and compile ``modules`` (paths under the root) there."""
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]
    from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]

    if out.exists():
        shutil.rmtree(out)
    skip = shutil.ignore_patterns("__pycache__", "*.so")
    shutil.copytree(ROOT / "genie", out / "genie", ignore=skip)
    here = os.getcwd()
    os.chdir(out)  # mypyc names the extensions by their path from the working directory
    try:
        extensions = mypycify(
            # The project's mypy settings (strict, the pydantic plugin): what mypyc compiles
            # from is what `mypy` checks.
            ["--config-file", str(ROOT / "pyproject.toml"), *modules],
            opt_level=opt_level,
            target_dir="c",
            group_name="genie_hot",
        )
        command = build_ext(Distribution({"ext_modules": extensions}))
        command.inplace = True
        command.build_temp = "c/obj"
        command.build_lib = "c/lib"
        command.ensure_finalized()
        command.run()
    finally:
        os.chdir(here)
    for module in modules:
        (out / module).unlink()


def check(tree: Path, modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that would load from source with ``tree`` first on the path."""
    sys.path.insert(0, str(tree))
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    from_source = []
    for module in modules:
        name = module.removesuffix(".py").replace("/", ".")
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is None or not origin.endswith(suffixes):
            from_source.append(f"{name} ({origin})")
    return from_source


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/mypyc_build.py", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--out", default="build/mypyc", help="the tree to write (build/mypyc)")
    parser.add_argument("--opt-level", default="3", choices=("0", "1", "2", "3"))
    parser.add_argument("--check", metavar="DIR", help="check a tree instead of building one")
    parser.add_argument(
        "modules", nargs="*", default=list(HOT), help="paths under the repository root (HOT)"
    )
    args = parser.parse_args(argv)
    if args.check is not None:
        from_source = check(Path(args.check).resolve(), args.modules)
        for name in from_source:
            print(f"{args.check}: {name} loads from source", file=sys.stderr)
        if not from_source:
            print(f"{args.check}: {len(args.modules)} modules compiled")
        return 1 if from_source else 0
    missing = [m for m in args.modules if not (ROOT / m).is_file()]
    if missing:
        parser.error(f"no module {missing[0]} under {ROOT}")
    build(Path(args.out).resolve(), args.modules, opt_level=args.opt_level)
    print(f"compiled {len(args.modules)} modules into {args.out}: put it first on PYTHONPATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
