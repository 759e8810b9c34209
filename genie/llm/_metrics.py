"""Prometheus metrics of LLM calls: what the cost observer records, and what the caches and
budget ledgers count, read when Prometheus scrapes. In a registry of its own unless given one;
every metric is listed in docs/llm.md."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from .._errors import ConfigurationError
from ._cache import Cache
from ._cost import CallRecord
from ._ledger import BudgetLedger

__all__ = ["LLMMetrics"]

# From a cached local answer (1 ms) to a long generation (2 min).
LATENCY_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class LLMMetrics(Collector):
    """``record`` is a cost observer's ``on_call``; ``watch_cache`` and ``watch_ledger`` add
    the hits and refusals of a cache or a ledger. ``text()`` renders the exposition."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._calls: dict[tuple[str, str, str], int] = {}
        self._tokens: dict[tuple[str, str, str], int] = {}
        self._cost: dict[tuple[str, str], float] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # counts per bucket, and the sum
        self._caches: dict[str, Cache] = {}
        self._ledgers: list[BudgetLedger] = []
        try:
            self.registry.register(self)
        except ValueError as exc:  # prometheus-client's DuplicateTimeseries
            raise ConfigurationError(
                "this registry already holds LLM metrics (or metrics of the same names): give "
                "each LLMMetrics a registry of its own (LLMMetrics() makes one)"
            ) from exc

    def record(self, call: CallRecord) -> None:
        key = (call.provider, call.model)
        outcome = "ok" if call.error is None else call.error
        self._calls[(*key, outcome)] = self._calls.get((*key, outcome), 0) + 1
        for kind, n in (
            ("input", call.usage.input_tokens),
            ("output", call.usage.output_tokens),
            ("cached", call.usage.cached_tokens),
        ):
            if n:
                self._tokens[(*key, kind)] = self._tokens.get((*key, kind), 0) + n
        if call.cost:
            self._cost[key] = self._cost.get(key, 0.0) + call.cost
        counts = self._latency.setdefault(key, [0.0] * (len(LATENCY_BUCKETS) + 2))
        counts[bisect_left(LATENCY_BUCKETS, call.seconds)] += 1
        counts[-1] += call.seconds

    def watch_cache(self, stack: str, cache: Cache) -> None:
        self._caches[stack] = cache

    def watch_ledger(self, ledger: BudgetLedger) -> None:
        self._ledgers.append(ledger)

    def text(self) -> str:
        return generate_latest(self.registry).decode("utf-8")

    def describe(self) -> Iterator[Metric]:
        """Every family these metrics expose, for any registry to check when they register
        (one that does not describe its collectors itself would take a second set)."""
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        yield _counter(
            "genie_llm_calls",
            "LLM calls by provider, model and outcome (ok, the error class, cancelled, unfinished)",
            ["provider", "model", "outcome"],
            self._calls,
        )
        yield _counter(
            "genie_llm_tokens",
            "Tokens by provider, model and kind (input, output, cached)",
            ["provider", "model", "kind"],
            self._tokens,
        )
        yield _counter(
            "genie_llm_cost",
            "Cost of LLM calls, in the price table's unit",
            ["provider", "model"],
            self._cost,
        )
        latency = HistogramMetricFamily(
            "genie_llm_call_seconds",
            "LLM call latency, failures included",
            labels=["provider", "model"],
        )
        for key, counts in dict(self._latency).items():
            running, buckets = 0.0, list[tuple[str, float]]()
            for bound, in_bucket in zip(
                (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"), counts[:-1], strict=True
            ):
                running += in_bucket
                buckets.append((bound, running))
            latency.add_metric(list(key), buckets, counts[-1])
        yield latency
        hits = CounterMetricFamily(
            "genie_llm_cache_hits", "Answers served from an LLM stack's cache", labels=["stack"]
        )
        misses = CounterMetricFamily(
            "genie_llm_cache_misses",
            "Calls an LLM stack's cache could not answer",
            labels=["stack"],
        )
        for stack, cache in dict(self._caches).items():
            stats = cache.statistics()
            hits.add_metric([stack], stats.hits)
            misses.add_metric([stack], stats.misses)
        yield hits
        yield misses
        by_budget: dict[tuple[str], int] = {}
        for ledger in self._ledgers:
            budget = (ledger.name,)
            by_budget[budget] = by_budget.get(budget, 0) + ledger.statistics().refusals
        yield _counter(
            "genie_llm_budget_refusals",
            "LLM calls refused before sending because a budget would be overrun",
            ["budget"],
            by_budget,
        )


def _counter(
    name: str, doc: str, labels: list[str], values: Mapping[Any, float]
) -> CounterMetricFamily:
    """A counter family with one sample per label tuple (``values`` copied first: a call may
    record while Prometheus scrapes)."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in dict(values).items():
        family.add_metric(list(key), value)
    return family
