"""Genie's benchmark harness: ``genie bench`` or ``python -m genie_bench`` (see docs/benchmarks.md).

Genie, two floors, a raw anyio baseline and the peers (the ``bench`` extra) run the same
workloads with the same payloads in one run; every figure is reported as a ratio to each floor
measured in that run: the asyncio floor (a queue and a task per agent, the floor for Python) and
the pool floor (genie's design with nothing else, the limit of this design).
"""

from .cli import Settings, main, run, write

__all__ = ["Settings", "main", "run", "write"]
