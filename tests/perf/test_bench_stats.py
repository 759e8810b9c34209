"""What the harness computes from its samples: percentiles, the table's markers, the rounds'
order, the cost per unit. No timing: each figure is computed from numbers the test gives."""

from __future__ import annotations

import pytest
from genie_bench import measure


def _from_top(samples: int, q: float) -> int:
    """Which request, counting from the slowest (1), the ``q`` percentile of ``samples`` is."""
    ordered = [float(i) for i in range(samples)]
    return samples - int(measure.percentile(ordered, q))


@pytest.mark.parametrize("samples", [1000, 2000, 10_000])
def test_p999_is_nearest_rank_also_where_the_rank_is_a_whole_number(samples: int) -> None:
    # The rank is 99.9 % of the count, rounded up: of 1,000 samples the 999th, not the slowest.
    assert _from_top(samples, 99.9) == samples // 1000 + 1


def test_the_tables_markers_say_what_the_percentile_is() -> None:
    """``*``: p999 is the slowest request exactly below 1,000 samples; ``†``: p99 is among the
    five slowest exactly below 500 (docs/benchmarks.md, the latency table's note)."""
    for samples in range(1, 3001):
        assert (_from_top(samples, 99.9) == 1) == (samples < 1000), samples
        assert (_from_top(samples, 99) <= 5) == (samples < 500), samples


def test_p50_is_the_lower_middle_of_an_even_count() -> None:
    assert measure.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert measure.percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_each_implementation_takes_each_place_in_the_rounds_equally() -> None:
    names = ["asyncio", "pool", "genie"]
    orders = [measure._rotated(names, r) for r in range(6)]
    for place in range(3):
        assert sorted(order[place] for order in orders) == sorted(names * 2)
    assert all(sorted(order) == sorted(names) for order in orders)


def test_a_cost_per_unit_is_summed_over_its_slices() -> None:
    cost = measure.Cost()
    cost.add({"wall_s": 0.4, "cpu_s": 0.2, "gc_s": 0.01, "gc_collections": 2}, units=100)
    cost.add({"wall_s": 0.6, "cpu_s": 0.3, "gc_s": 0.03, "gc_collections": 1}, units=300)
    per = cost.per_unit_us()
    assert per["cpu_us"] == pytest.approx(0.5 / 400 * 1e6)
    assert per["gc_us"] == pytest.approx(0.04 / 400 * 1e6)
    assert per["cpu_share"] == pytest.approx(0.5)
    assert per["gc_collections"] == 3


def test_a_latency_summary_reads_microseconds_from_seconds() -> None:
    summary = measure.latency_summary([i / 1e6 for i in range(1000, 0, -1)])
    assert summary == pytest.approx(
        {"p50_us": 500.0, "p99_us": 990.0, "p999_us": 999.0, "samples": 1000}
    )


def test_the_serve_workloads_percentiles_are_the_same_nearest_rank() -> None:
    from genie_bench import serve_load

    latencies = [float(i) for i in range(500, 0, -1)]
    assert serve_load._percentile(latencies, 0.99) == 495.0  # the 495th of 500, not the 496th
    assert serve_load._percentile(latencies, 0.50) == 250.0
