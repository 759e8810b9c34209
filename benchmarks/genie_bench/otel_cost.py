"""What tracing costs: CPU time per ``ask`` of the finance pipeline in a fresh process each,
untraced (genie alone), with ``genie.otel`` imported but not configured, and traced (the
SDK recording every span, exported to nowhere). ``python -m genie_bench.otel_cost [ROUNDS]``
prints one line per mode, the median over rounds; docs/serve.md quotes it."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import anyio

ASKS = 300
MODES = ("untraced", "imported", "traced")


async def _asks(mode: str) -> float:
    from genie.pipeline import load_pipeline

    pipeline = load_pipeline("finance")
    payload = pipeline.entry_payload(pipeline.read_input())
    async with pipeline.runtime() as rt:
        if mode != "untraced":
            from genie.otel import trace_runtime

            if mode == "traced":
                from opentelemetry.sdk.trace import TracerProvider

                trace_runtime(rt, TracerProvider())  # spans recorded, no exporter
        for _ in range(20):
            await pipeline.ask(rt, payload)
        started = time.process_time()
        for _ in range(ASKS):
            await pipeline.ask(rt, payload)
        return (time.process_time() - started) / ASKS


def main(rounds: int = 5) -> None:
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:  # interleaved, so a noisy neighbour hits every mode alike
            out = subprocess.run(
                [sys.executable, "-m", "genie_bench.otel_cost", "--child", mode],
                capture_output=True,
                text=True,
                check=True,
            )
            cpu[mode].append(float(out.stdout))
    base = statistics.median(cpu["untraced"])
    for mode in MODES:
        m = statistics.median(cpu[mode])
        print(f"{mode:<9} {m * 1e6:8.0f} µs CPU per ask  ({m / base:.3f}x untraced)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(anyio.run(_asks, sys.argv[2]))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
