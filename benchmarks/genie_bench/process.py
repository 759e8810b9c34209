"""Measurements that need a fresh process: memory per idle agent, import time, a whole run,
the soak.

Memory is measured in a child per implementation: the RSS of a process that has already run
other workloads depends on what its allocator kept, and gave 288 to 1,900 bytes per agent for
the same code. ``python -m genie_bench.process idle NAME COUNT`` is that child, and
``python -m genie_bench.process soak SESSIONS`` the soak's (``soak.py``).

Start-up is timed from bytecode, as an installed package runs: the environment may set
``PYTHONDONTWRITEBYTECODE`` (this one does), and then every fresh process would compile whatever
has no ``.pyc`` yet (genie, from a source checkout) while the rest loads bytecode. Each timed
command first runs once, untimed, writing bytecode for everything it imports (the standard
library, the dependencies and genie alike) into a pycache prefix of the run's own
(``PYTHONPYCACHEPREFIX``); the timed runs read it from there. Nothing is written beside the
installed sources, and the import child reports whether every module it loaded had bytecode.
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


def child_env(pycache: Path | None = None, *, write_bytecode: bool = False) -> dict[str, str]:
    """The environment of a child: this harness importable; bytecode under ``pycache``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    if pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _python(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env or child_env(),
        check=False,
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


# The time of the code (an import), then the modules it loaded from source (no bytecode read):
# checked after the clock stopped.
IMPORT = """import time
t = time.perf_counter()
{0}
t = time.perf_counter() - t
import importlib.util, os, sys
sources = [
    s.origin for m in list(sys.modules.values())
    if (s := getattr(m, "__spec__", None)) and s.cached and s.origin and s.origin.endswith(".py")
]
print(t, sum(not os.path.exists(importlib.util.cache_from_source(o)) for o in sources))"""


# What `import genie` cannot go below while `Payload` is a pydantic model
# (docs/design/imports-and-gc.md): pydantic
# and one model defined as `Payload` is (frozen, its schema deferred). Defining any model
# imports `pydantic.fields`, `pydantic.types` and `annotated_types`, about a fifth of it.
PYDANTIC_FLOOR = """from typing import ClassVar
from pydantic import BaseModel, ConfigDict
class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    message_type: ClassVar[str] = "floor"
"""


def import_seconds(module: str, repeats: int, pycache: Path) -> tuple[list[float], int]:
    """``import module`` in a fresh interpreter, ``repeats`` times, from bytecode under
    ``pycache`` (written by a first, untimed run); also how many modules still had none."""
    return code_seconds(f"import {module}", repeats, pycache)


def code_seconds(statements: str, repeats: int, pycache: Path) -> tuple[list[float], int]:
    """``statements`` timed as ``import_seconds`` times an import."""
    code = IMPORT.format(statements)
    _python("-c", code, env=child_env(pycache, write_bytecode=True))
    samples, without = [], 0
    for _ in range(repeats):
        seconds, missing = _python("-c", code, env=child_env(pycache)).split()
        samples.append(float(seconds))
        without = max(without, int(missing))
    return samples, without


def wall_seconds(argv: list[str], repeats: int, pycache: Path | None = None) -> list[float]:
    """Wall time of a whole command (interpreter start included), ``repeats`` times; with
    ``pycache``, after one untimed run that writes its bytecode there."""
    if pycache is not None:
        _run(argv, child_env(pycache, write_bytecode=True))
    samples = []
    for _ in range(repeats):
        begin = time.perf_counter()
        _run(argv, child_env(pycache))
        samples.append(time.perf_counter() - begin)
    return samples


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-500:]!r}")
    return done


def genie_command() -> list[str]:
    """The ``genie`` console script next to this interpreter, else the same through ``-c``."""
    script = Path(sys.executable).with_name("genie")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from genie._cli.main import main; sys.exit(main())"]


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
