"""The ``serve`` workload: ``genie serve`` under load on loopback.

A fresh ``genie serve`` process serves the finance pipeline; this process sends ``requests``
asks of the sample statement with 1, 16 and 64 clients at once (httpx on one connection pool),
and measures requests per second and the latency percentiles. Nothing may be lost: every
request must be answered 200 with its own correlation id, the server must count exactly the
requests sent, and its runtime's accounting must balance with nothing left in flight.
``genie bench --workloads serve`` runs it (it needs the ``serve`` extra).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from .measure import percentile

__all__ = ["CONCURRENCY", "serve_load"]

CONCURRENCY = (1, 16, 64)
KEY = "bench-key-0123456789"
PIPELINE = "finance"


def _percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0.99: p99) of ``values``, nearest-rank as every figure of the
    harness."""
    return percentile(sorted(values), q * 100)


async def _load(url: str, body: dict[str, str], requests: int, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    ids: set[str] = set()
    codes: dict[int, int] = {}
    left = list(range(requests))
    # Idle connections are dropped by the client before uvicorn's 5 s keep-alive timeout: at
    # the same 5 s (httpx's default) a request can go out on a connection the server is
    # closing, and fail with a ReadError that is no loss of the server's.
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one_client() -> None:
            while left:
                left.pop()
                started = time.perf_counter()
                r = await client.post("/v1/pipelines/finance/ask", json=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    ids.add(r.json()["correlation_id"])

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(clients):
                tg.start_soon(one_client)
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": requests,
        "answered": len(latencies),
        "ok": codes.get(200, 0),
        "distinct_correlations": len(ids),
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


def serve_load(requests: int, root: Path = Path()) -> dict[str, Any]:
    """Run the workload (``requests`` per concurrency level) and check nothing was lost;
    raises AssertionError naming what does not add up."""
    env = {
        **os.environ,
        "GENIE_API_KEYS": f"{{keys: [{{principal: bench, key: {KEY}, roles: [user]}}]}}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "genie._cli",
            "serve",
            PIPELINE,
            "--port",
            "0",
            "--rate",
            "1e9",
        ],
        cwd=root,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"on (http://\S+)", line)
        if found is None:
            raise RuntimeError(f"genie serve did not start: {line.strip()}")
        url = found.group(1)
        body = {"csv": (root / "config/data/sample.csv").read_text(encoding="utf-8")}
        levels = [anyio.run(_load, url, body, requests, c) for c in CONCURRENCY]
        stats = httpx.get(
            f"{url}/v1/pipelines/finance/statistics",
            headers={"Authorization": f"Bearer {KEY}"},
        ).json()
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    total = requests * len(CONCURRENCY)
    served = re.search(r'genie_serve_requests_total\{code="200",route="ask"\} (\S+)', metrics)
    checks = {
        "every request answered 200": all(x["ok"] == x["requests"] for x in levels),
        "a correlation of its own each": all(
            x["distinct_correlations"] == x["requests"] for x in levels
        ),
        "the server counted exactly the requests sent": served is not None
        and float(served.group(1)) == total,
        "delivered = handled + denied + dead_lettered + shed, nothing in flight": stats["delivered"]
        == stats["handled"] + stats["denied"] + stats["dead_lettered"] + stats["shed"]
        and stats["in_flight"] == 0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise AssertionError(f"serve load lost something: {failed}; {json.dumps(levels)}")
    return {"pipeline": PIPELINE, "levels": levels, "checks": checks, "statistics": stats}
