"""A smoke run of the LLM overhead benchmark: it runs, and its numbers are measurements."""

from __future__ import annotations

import pytest
from genie_bench.llm import run


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the harness runs on asyncio; it stops streams at their first token


async def test_the_overhead_benchmark_runs_and_reports_its_numbers() -> None:
    result = await run(calls=8, rounds=2)
    assert set(result) == {
        "bare_ms",
        "stack_ms",
        "bare_ttft_ms",
        "stack_ttft_ms",
        "ratio",
        "ttft_delta_ms",
        "bare_cpu_ms",
        "stack_cpu_ms",
        "bare_ttft_cpu_ms",
        "stack_ttft_cpu_ms",
        "cpu_ratio",
        "ttft_cpu_delta_ms",
    }
    assert all(result[k] > 0 for k in ("bare_ms", "stack_ms", "bare_ttft_ms", "stack_ttft_ms"))
    assert result["ratio"] == pytest.approx(result["stack_ms"] / result["bare_ms"])
    assert result["cpu_ratio"] == pytest.approx(result["stack_cpu_ms"] / result["bare_cpu_ms"])
