"""The implementations a run can compare, by name; the peer only when it is installed."""

from __future__ import annotations

from collections.abc import Sequence

from genie import Policy

from .workloads import ANYIO, FLOOR, Implementation, genie

VARIANTS = (
    "asyncio",
    "anyio",
    "genie",
    "genie+policies",
    "genie+metrics",
    "genie+policies+metrics",
    "autogen-core",
)
PEER_MISSING = (
    "autogen-core is not installed (pip install 'genie-bus[bench]'): its column is skipped"
)


class UnknownVariantError(ValueError):
    pass


def build(
    names: Sequence[str], policies: Sequence[Policy]
) -> tuple[list[Implementation], dict[str, str]]:
    """The implementations for ``names`` (the floor always first) and what was skipped, why."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UnknownVariantError(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    impls: list[Implementation] = [FLOOR]
    skipped: dict[str, str] = {}
    for name in dict.fromkeys(names):
        if name == "asyncio":
            continue
        if name == "anyio":
            impls.append(ANYIO)
        elif name == "autogen-core":
            try:
                from .peer import PEER
            except ImportError:
                skipped[name] = PEER_MISSING
            else:
                impls.append(PEER)
        else:
            impls.append(genie(policies if "policies" in name else (), "metrics" in name))
    return impls, skipped
