"""Measurements that need a fresh process: memory per idle agent, import time, a whole run,
the soak.

Memory is measured in a child per implementation: the RSS of a process that has already run
other workloads depends on what its allocator kept, and gave 288 to 1,900 bytes per agent for
the same code. ``python -m genie_bench.process idle NAME COUNT`` is that child, and
``python -m genie_bench.process soak SESSIONS`` the soak's (``soak.py``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .variants import build

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


def _python(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=_child_env(), check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _idle(name: str, count: int) -> float:
    [impl] = [i for i in build([name], ())[0] if i.name == name]
    assert impl.idle is not None
    async with impl.idle(100):  # one-time costs (imports, schemas, caches) are not per agent
        pass
    gc.collect()
    before = rss_bytes()
    async with impl.idle(count):
        gc.collect()
        after = rss_bytes()
    return (after - before) / count


def idle_memory(name: str, count: int) -> float:
    """Bytes of RSS per idle agent: ``count`` agents ready for work and given none."""
    out = _python("-m", "genie_bench.process", "idle", name, str(count))
    return float(json.loads(out)["bytes_per_agent"])


IMPORT = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def import_seconds(module: str, repeats: int) -> list[float]:
    """``import module`` in a fresh interpreter, ``repeats`` times."""
    return [float(_python("-c", IMPORT.format(module))) for _ in range(repeats)]


def wall_seconds(argv: list[str], repeats: int) -> list[float]:
    """Wall time of a whole command (interpreter start included), ``repeats`` times."""
    samples = []
    for _ in range(repeats):
        begin = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=_child_env(), check=False)
        samples.append(time.perf_counter() - begin)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]!r}")
    return samples


def genie_command() -> list[str]:
    """The ``genie`` console script next to this interpreter, else the same through ``-c``."""
    script = Path(sys.executable).with_name("genie")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from genie._cli import main; sys.exit(main())"]


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples) * 1e3, "best_ms": min(samples) * 1e3}


def soak(sessions: int) -> dict[str, object]:
    """The soak (``soak.py``) in a fresh process: sampled every tenth of the run, flat from a
    fifth on (the bounded stores have filled by then in a run of 20,000 sessions or more)."""
    return json.loads(_python("-m", "genie_bench.process", "soak", str(sessions)))  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "idle":
        per_agent = asyncio.run(_idle(argv[1], int(argv[2])))
        print(json.dumps({"bytes_per_agent": per_agent}))
        return 0
    if len(argv) == 2 and argv[0] == "soak":
        from . import soak as soaking

        sessions = int(argv[1])
        report, samples = soaking.soak(sessions, max(1, sessions // 10))
        print(json.dumps(soaking.as_json(report, samples, sessions // 5)))
        return 0
    print("usage: python -m genie_bench.process idle NAME COUNT | soak SESSIONS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
