"""Prometheus metrics of LLM calls: what the cost observer records, and what the caches and
budget ledgers count, read when Prometheus scrapes. In a registry of its own unless given one;
every metric is listed in docs/llm.md."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

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
        self.registry.register(self)

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

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "genie_llm_calls",
            "LLM calls by provider, model and outcome (ok or the error class)",
            labels=["provider", "model", "outcome"],
        )
        for call_key, n in dict(self._calls).items():
            calls.add_metric(list(call_key), n)
        yield calls
        tokens = CounterMetricFamily(
            "genie_llm_tokens",
            "Tokens by provider, model and kind (input, output, cached)",
            labels=["provider", "model", "kind"],
        )
        for token_key, count in dict(self._tokens).items():
            tokens.add_metric(list(token_key), count)
        yield tokens
        cost = CounterMetricFamily(
            "genie_llm_cost",
            "Cost of LLM calls, in the price table's unit",
            labels=["provider", "model"],
        )
        for key, value in dict(self._cost).items():
            cost.add_metric(list(key), value)
        yield cost
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
        refusals = CounterMetricFamily(
            "genie_llm_budget_refusals",
            "LLM calls refused before sending because a budget would be overrun",
            labels=["budget"],
        )
        by_budget: dict[str, int] = {}
        for ledger in self._ledgers:
            by_budget[ledger.name] = by_budget.get(ledger.name, 0) + ledger.statistics().refusals
        for budget, n in by_budget.items():
            refusals.add_metric([budget], n)
        yield refusals
