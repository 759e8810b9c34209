"""``GET /metrics``: every served runtime's registry, labelled by pipeline, and the server's
own counters, as one Prometheus text exposition."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .._runtime.observe.metrics import Metrics

__all__ = ["exposition"]


class _Labelled(Collector):
    def __init__(self, runtimes: Mapping[str, Metrics]) -> None:
        self._runtimes = runtimes

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pipeline, metrics in self._runtimes.items():
            for family in metrics.registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = Metric(family.name, family.documentation, family.type, family.unit)
                    families[family.name] = merged
                merged.samples.extend(
                    Sample(s.name, {"pipeline": pipeline, **s.labels}, s.value, s.timestamp)
                    for s in family.samples
                )
        yield from families.values()


class _Server(Collector):
    def __init__(
        self, requests: Mapping[tuple[str, str], int], rejected: Mapping[str, int], flying: int
    ) -> None:
        self._requests, self._rejected, self._flying = requests, rejected, flying

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "genie_serve_requests",
            "HTTP requests to /v1 by route and status",
            labels=["route", "code"],
        )
        for (route, code), n in sorted(self._requests.items()):
            requests.add_metric([route, code], n)
        yield requests
        rejected = CounterMetricFamily(
            "genie_serve_rejected",
            "requests refused by a limit (rate_limited, too_large, body_timeout, busy, "
            "auth_throttled), each with an audit record",
            labels=["reason"],
        )
        for reason, n in sorted(self._rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield GaugeMetricFamily("genie_serve_in_flight", "requests running now", value=self._flying)


def exposition(
    runtimes: Mapping[str, Metrics],
    requests: Mapping[tuple[str, str], int],
    rejected: Mapping[str, int],
    in_flight: int,
) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Labelled(runtimes))
    registry.register(_Server(requests, rejected, in_flight))
    return generate_latest(registry).decode("utf-8")
