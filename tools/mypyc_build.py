"""Compile genie's hot modules with mypyc into a tree of their own: ``make compiled``.

The tree (default ``build/mypyc``) is a copy of the ``genie`` package in which the modules of
``HOT`` are C extensions (their sources removed, so nothing can load them by mistake); put it
first on ``PYTHONPATH`` and ``import genie`` loads them. The default install never runs this:
it needs mypy (the dev extra, which ships mypyc), a C compiler and the Python headers. See
docs/benchmarks.md, "Compiled with mypyc", for what it buys and docs/design/mypyc.md
for why it stays opt-in.

``python tools/mypyc_build.py --check DIR`` says whether ``DIR`` is such a tree, as imported by
this interpreter (exit 1 when a hot module would load from source).

``python tools/mypyc_build.py --wheel PURE --out TREE --dist DIR`` (``make wheel-compiled``)
writes the platform wheel a user installs: the pure wheel ``PURE`` (``pip wheel .``) with the
hot modules' sources replaced by the tree's extensions, tagged for this interpreter and
platform (``genie_bus-VERSION-cp311-cp311-linux_x86_64.whl``). Same sources, same metadata,
same entry points; only where the hot modules load from differs.

``python tools/mypyc_build.py --install DIR --env ENV`` (``make test-compiled``) installs the
platform wheel of ``DIR`` into a fresh environment ``ENV`` whose other packages are this
interpreter's, and checks that its hot modules load as extensions: the core suite then runs
there, against genie as a user installs it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The delivery path: what every message goes through. Left out, with the reason:
# - genie/_runtime/policy.py: mypyc makes the ``ClassVar`` of a dataclass (``Decision.ALLOW``) a
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


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel(pure: Path, tree: Path, dist: Path, modules: Sequence[str]) -> Path:
    """The platform wheel: ``pure``'s files, each module of ``modules`` an extension of
    ``tree`` instead of its source, and the extensions' shared library at the top level."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    name, version = pure.name.split("-")[:2]
    out = dist / f"{name}-{version}-{tag}-{tag}-{platform}.whl"
    sources = set(modules)
    extensions = [m.removesuffix(".py") + suffix for m in modules]
    extensions += [p.name for p in tree.glob(f"*__mypyc{suffix}")]  # the modules' shared code
    missing = [e for e in extensions if not (tree / e).is_file()]
    if missing or len(extensions) == len(modules):
        what = missing[0] if missing else f"genie_hot__mypyc{suffix}"
        raise SystemExit(f"{tree}: no compiled tree (make compiled): {what} is missing")
    dist.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    records = []
    with zipfile.ZipFile(pure) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename in sources or item.filename == f"{info}/RECORD":
                continue
            data = src.read(item)
            if item.filename == f"{info}/WHEEL":
                data = (
                    data.decode()
                    .replace("Root-Is-Purelib: true", "Root-Is-Purelib: false")
                    .replace("Tag: py3-none-any", f"Tag: {tag}-{tag}-{platform}")
                    .encode()
                )
            dst.writestr(item, data)
            records.append(_record_line(item.filename, data))
        for extension in extensions:
            data = (tree / extension).read_bytes()
            info_ = zipfile.ZipInfo(extension, date_time=(2026, 1, 1, 0, 0, 0))
            info_.external_attr = 0o755 << 16
            dst.writestr(info_, data, zipfile.ZIP_DEFLATED)
            records.append(_record_line(extension, data))
        records.append(f"{info}/RECORD,,")
        dst.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return out


def install(dist: Path, env: Path, modules: Sequence[str]) -> None:
    """A fresh environment at ``env`` with the platform wheel of ``dist`` installed and this
    interpreter's packages (its dependencies, the test tools) seen after it."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted(dist.glob(f"genie_bus-*-{tag}-{tag}-*.whl"))
    if not found:
        raise SystemExit(f"{dist}: no platform wheel (make wheel-compiled)")
    if env.exists():
        shutil.rmtree(env)
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", "--target", purelib, found[-1]], check=True)
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    names = [m.removesuffix(".py").replace("/", ".") for m in modules]
    where = subprocess.run(
        [
            python,
            "-c",
            f"import importlib; [print(importlib.import_module(n).__file__) for n in {names}]",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=env,
    ).stdout.split()
    from_source = [w for w in where if not (w.startswith(purelib) and w.endswith(suffix))]
    if from_source:
        raise SystemExit(f"{env}: loaded from source: {', '.join(from_source)}")
    print(f"{env}: genie from {found[-1].name}, {len(names)} modules compiled")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/mypyc_build.py", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--out", default="build/mypyc", help="the tree to write (build/mypyc)")
    parser.add_argument("--opt-level", default="3", choices=("0", "1", "2", "3"))
    parser.add_argument("--check", metavar="DIR", help="check a tree instead of building one")
    parser.add_argument(
        "--wheel", metavar="PURE", help="write the platform wheel of --out's tree and this wheel"
    )
    parser.add_argument("--dist", default="dist", help="where --wheel writes (dist)")
    parser.add_argument("--install", metavar="DIR", help="install DIR's platform wheel in --env")
    parser.add_argument("--env", default="build/compiled-env", help="for --install")
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
    if args.install is not None:
        install(Path(args.install), Path(args.env).resolve(), args.modules)
        return 0
    if args.wheel is not None:
        built = wheel(Path(args.wheel), Path(args.out), Path(args.dist), args.modules)
        print(f"{built}: pip install it (genie with {len(args.modules)} modules compiled)")
        return 0
    missing = [m for m in args.modules if not (ROOT / m).is_file()]
    if missing:
        parser.error(f"no module {missing[0]} under {ROOT}")
    build(Path(args.out).resolve(), args.modules, opt_level=args.opt_level)
    print(f"compiled {len(args.modules)} modules into {args.out}: put it first on PYTHONPATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
