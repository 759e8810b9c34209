"""The implementations a run can compare, by name; a peer only when it is installed."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from genie import ConfigurationError, Policy

from .guarantees import GUARANTEES
from .report import FLOORS, MYPYC, UVLOOP
from .workloads import ANYIO, ENVELOPE, FLOOR, POOL, Implementation, genie

# A peer: the package a user installs, the module a user imports (its import is timed too),
# and our module and attribute that drive it.
PEERS = {
    "autogen-core": ("autogen-core", "autogen_core", "peer", "PEER"),
    "autogen-core+send": ("autogen-core", "autogen_core", "peer", "SEND"),
    "agent-framework": ("agent-framework-core", "agent_framework", "maf", "PEER"),
    "langgraph": ("langgraph", "langgraph.graph", "langgraph_peer", "PEER"),
}
VARIANTS = (
    *FLOORS,
    "asyncio+envelope",
    "pool+guarantees",
    "anyio",
    "genie",
    "genie+policies",
    "genie+metrics",
    "genie+policies+metrics",
    "genie+gcfreeze",
    "genie+store",
    "genie+store-always",
    *PEERS,
)


class UnknownVariantError(ValueError):
    pass


def compiled_tree(path: str) -> str:
    """``path`` resolved, when it holds a genie whose hot modules mypyc compiled; else a clear
    error (a tree without them would measure pure Python under the compiled name)."""
    tree = Path(path).resolve()
    if not any((tree / "genie" / "_runtime").glob("dispatch.*.so")):
        raise ConfigurationError(
            f"--compiled: {path} holds no mypyc-compiled genie (build one with `make compiled`)"
        )
    return str(tree)


def _require_compiled(name: str) -> None:
    """In a ``+mypyc`` worker: the genie imported is the compiled one, or the run stops."""
    import importlib.machinery

    import genie._runtime.dispatch

    origin = genie._runtime.dispatch.__file__ or ""
    if not origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        raise ConfigurationError(f"{name}: genie was imported from source ({origin})")


def compiled_twins(names: Sequence[str]) -> list[str]:
    """The ``+mypyc`` twin of each genie variant of ``names``."""
    return [f"{name}{MYPYC}" for name in names if name.startswith("genie")]


def loop_twins(names: Sequence[str]) -> list[str]:
    """The ``@uvloop`` twin of each floor and pure genie variant of ``names``."""
    return [
        f"{name}{UVLOOP}"
        for name in names
        if (name in FLOORS or name.startswith("genie")) and not name.endswith(MYPYC)
    ]


def missing(name: str) -> str | None:
    """Why the peer ``name`` cannot run here (its package is not installed), else None."""
    if name not in PEERS:
        return None
    package, module, _, _ = PEERS[name]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or set to None in sys.modules
        found = False
    if found:
        return None
    install = "pip install 'genie-bus[bench]'"
    return f"{package} is not installed ({install}): the {name} column is skipped"


def available(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The variants of ``names`` to run (both floors first: every ratio is to them), and those
    skipped with why."""
    unknown = [n for n in names if n.removesuffix(MYPYC) not in VARIANTS]
    if unknown:
        raise UnknownVariantError(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    run, skipped = list(FLOORS), {}
    for name in dict.fromkeys(names):
        if name in FLOORS:
            continue
        why = missing(name)
        if why is None:
            run.append(name)
        else:
            skipped[name] = why
    return run, skipped


def load_policies(path: str) -> list[Policy]:
    """The policy set of the ``+policies`` variants; a clear error when the file is not there."""
    from genie.policies import load_policy_file

    # A folder or a device is said as what it is, by the policy loader.
    if not Path(path).exists():
        raise ConfigurationError(
            f"policy file {path} not found (run from the repository root, or pass --policies)"
        )
    return list(load_policy_file(path).policies)


def build(
    names: Sequence[str], policies: Sequence[Policy]
) -> tuple[list[Implementation], dict[str, str]]:
    """The implementations for ``names`` (the floors always first) and what was skipped, why."""
    run, skipped = available(names)
    impls: list[Implementation] = []
    for name in run:
        if name == "asyncio":
            impls.append(FLOOR)
        elif name == "pool":
            impls.append(POOL)
        elif name == "asyncio+envelope":
            impls.append(ENVELOPE)
        elif name == "pool+guarantees":
            impls.append(GUARANTEES)
        elif name == "anyio":
            impls.append(ANYIO)
        elif name in PEERS:
            _, _, ours, attribute = PEERS[name]
            module = importlib.import_module(f"{__package__}.{ours}")
            impls.append(getattr(module, attribute))
        else:
            if name.endswith(MYPYC):
                _require_compiled(name)
            impls.append(
                genie(
                    policies if "policies" in name else (),
                    "metrics" in name,
                    freeze_gc="gcfreeze" in name,
                    store="always" if "store-always" in name else "store" in name,
                )
            )
    return impls, skipped
