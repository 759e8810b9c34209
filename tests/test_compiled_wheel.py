"""``make wheel-compiled``'s packing (tools/mypyc_build.py ``wheel``): the pure wheel with the
hot modules' sources replaced by the tree's extensions, retagged, its RECORD true to every
file. The compiling itself is checked by ``make test-compiled`` in CI, which installs the
real wheel and runs the core suite against it."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REQUIRE_ALL

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
INFO = "genie_bus-0.1.0.dist-info"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mypyc_build", ROOT / "tools" / "mypyc_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pure_wheel(folder: Path) -> Path:
    path = folder / "genie_bus-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr("genie/__init__.py", "")
        whl.writestr("genie/_runtime/dispatch.py", "SOURCE = True\n")
        whl.writestr("genie/_runtime/ledger.py", "SOURCE = True\n")
        whl.writestr("genie_agents/config/pipelines/finance.yaml", "name: finance\n")
        whl.writestr(f"{INFO}/METADATA", "Name: genie-bus\nVersion: 0.1.0\n")
        whl.writestr(f"{INFO}/entry_points.txt", "[console_scripts]\ngenie = genie._cli.main:cli\n")
        whl.writestr(
            f"{INFO}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: hatchling\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        whl.writestr(f"{INFO}/RECORD", "stale\n")
    return path


def tree(folder: Path) -> Path:
    out = folder / "tree"
    (out / "genie" / "_runtime").mkdir(parents=True)
    (out / "genie" / "_runtime" / f"dispatch{SUFFIX}").write_bytes(b"\x7fELF dispatch")
    (out / f"genie_hot__mypyc{SUFFIX}").write_bytes(b"\x7fELF shared")
    return out


def test_the_platform_wheel_is_the_pure_one_with_extensions_for_sources(tmp_path: Path) -> None:
    built = tool().wheel(
        pure_wheel(tmp_path), tree(tmp_path), tmp_path / "dist", ["genie/_runtime/dispatch.py"]
    )
    assert built.name.startswith(f"genie_bus-0.1.0-{TAG}-{TAG}-")
    assert built.name.endswith(".whl")
    assert "none-any" not in built.name
    with zipfile.ZipFile(built) as whl:
        names = set(whl.namelist())
        assert "genie/_runtime/dispatch.py" not in names  # nothing can load it by mistake
        assert f"genie/_runtime/dispatch{SUFFIX}" in names
        assert f"genie_hot__mypyc{SUFFIX}" in names
        # Everything else as it was: the other sources, the shipped files, the entry points.
        assert whl.read("genie/_runtime/ledger.py") == b"SOURCE = True\n"
        assert "genie_agents/config/pipelines/finance.yaml" in names
        assert whl.read(f"{INFO}/entry_points.txt").startswith(b"[console_scripts]")
        wheel_file = whl.read(f"{INFO}/WHEEL").decode()
        assert "Root-Is-Purelib: false" in wheel_file
        assert f"Tag: {TAG}-{TAG}-" in wheel_file
        assert "py3-none-any" not in wheel_file
        rows = [line.split(",") for line in whl.read(f"{INFO}/RECORD").decode().splitlines()]
        recorded = {name: (digest, size) for name, digest, size in rows}
        assert set(recorded) == names
        assert recorded.pop(f"{INFO}/RECORD") == ("", "")
        for name, (digest, size) in recorded.items():
            data = whl.read(name)
            sha = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={sha.decode()}", name
            assert int(size) == len(data), name


def test_without_a_compiled_tree_it_says_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"no compiled tree \(make compiled\)"):
        tool().wheel(pure_wheel(tmp_path), tmp_path / "empty", tmp_path / "dist", ["x.py"])


@pytest.mark.skipif(
    "GENIE_COMPILED" not in os.environ, reason="runs in make test-compiled, on the compiled wheel"
)
def test_the_suite_runs_against_the_compiled_modules() -> None:
    for module in tool().HOT:
        name = module.removesuffix(".py").replace("/", ".")
        where = importlib.import_module(name).__file__ or ""
        assert where.endswith(SUFFIX), f"{name} loaded from {where}"
        assert "site-packages" in where  # the installed wheel's, not the checkout's


def test_no_interpreted_class_derives_from_a_compiled_one() -> None:
    """mypyc refuses to make an instance of an interpreted subclass of a compiled class (a
    TypeError when it is made, in the compiled build only): no genie module outside ``HOT``
    may derive a class from one defined inside it."""
    import pkgutil

    import genie

    hot = {m.removesuffix(".py").replace("/", ".") for m in tool().HOT}
    crossing = []
    for info in pkgutil.walk_packages(genie.__path__, "genie."):
        if info.name in hot or info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as missing:  # an extra's dependency, unless CI installed all
            if REQUIRE_ALL or (missing.name or "genie").startswith("genie"):
                raise
            continue
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == info.name:
                crossing += [
                    f"{info.name}.{value.__qualname__} derives from "
                    f"{base.__module__}.{base.__qualname__}"
                    for base in value.__mro__[1:]
                    if base.__module__ in hot
                ]
    assert not crossing
