"""Genie's benchmark harness: ``genie bench`` or ``python -m genie_bench`` (see docs/benchmarks.md).

Genie, a raw asyncio floor, a raw anyio baseline and autogen-core (the ``bench`` extra) run
the same workloads with the same payloads in one process run; every figure is reported as a
ratio to the floor measured in that run.
"""

from .cli import Settings, main, run, write

__all__ = ["Settings", "main", "run", "write"]
