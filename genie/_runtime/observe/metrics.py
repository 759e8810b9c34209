"""Prometheus metrics for one runtime, in a registry the runtime owns.

Two sources, read when Prometheus scrapes: the observer hook (counts by agent and type, handler
durations, fan-out widths: plain dict increments on the loop) and the components'
``statistics()`` (in flight, mailboxes, correlations, policies). Nothing is exported until
scraped, and nothing is written to prometheus-client's global registry unless you pass it.
Every metric is listed in docs/observability.md.
"""

from __future__ import annotations

import contextlib
import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import Collector

from ..._errors import ConfigurationError, HandlerTimeoutError, InvalidArgumentError, type_name
from ..._message.envelope import Message
from ..deadletter import DeadLetter
from .observer import Observer

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ..statistics import RuntimeStatistics

__all__ = ["Metrics", "MetricsServer"]

# Handler durations from 10 µs (a pure-Python agent) to 10 s (a slow outside call).
DURATION_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
FANOUT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Observed(Protocol):
    """What metrics need of a runtime (a protocol, so this module does not import it)."""

    def add_observer(self, observer: Observer) -> None: ...

    def statistics(self) -> RuntimeStatistics: ...

    def hosts(self, agent_id: str) -> bool: ...


class _AgentCounts:
    """What the hot path counts for one agent, by message type.

    Most agents take one message type: the first type enqueued (and the first handled) is
    counted in this object's own slots, so a delivery reaches one object, not a dict per
    count; any other type is counted in a dict (string keys hash once) after it, in the order
    met, so the exposition lists them as it did. ``durations`` holds counts per bucket, not
    cumulative (one increment per call); ``bisect_left`` puts a value equal to a bound in
    that bound's bucket, as ``le`` means. The first bucket's count, where nearly every call
    of a pure-Python handler falls, is a slot of its own (``fastest``): a call in it touches
    neither the list nor its items, two more cold lines when 1,000 agents take turns. An
    agent's other calls mostly fall where its last one did: that bucket (``bucket``, with
    ``low < duration <= high`` its range) is tried before a ``bisect``.
    """

    __slots__ = (
        "bucket",
        "durations",
        "enqueued",
        "enqueued_n",
        "enqueued_type",
        "fastest",
        "high",
        "low",
        "ok",
        "ok_n",
        "ok_type",
        "seconds",
    )

    def __init__(self, buckets: int) -> None:
        self.enqueued_type: str | None = None
        self.enqueued_n = 0
        self.enqueued: dict[str, int] = {}  # the other types
        self.ok_type: str | None = None
        self.ok_n = 0
        self.ok: dict[str, int] = {}
        self.durations = [0] * buckets  # one per bound, then +Inf; the first in ``fastest``
        self.fastest = 0
        self.seconds = 0.0
        self.bucket = 0  # the last call's bucket past the first: none yet (no duration fits)
        self.low = math.inf
        self.high = -math.inf

    def ok_other(self, key: str) -> None:
        """Count a call of ``key`` when it is not the first type (or there is none yet)."""
        if self.ok_type is None:
            self.ok_n = 1  # before the type: a scrape never reads a count of 0
            self.ok_type = key
        else:
            counts = self.ok
            counts[key] = counts.get(key, 0) + 1

    def enqueued_other(self, key: str) -> None:
        """Count a delivery of ``key`` when it is not the first type (or there is none yet)."""
        if self.enqueued_type is None:
            self.enqueued_n = 1  # before the type: a scrape never reads a count of 0
            self.enqueued_type = key
        else:
            counts = self.enqueued
            counts[key] = counts.get(key, 0) + 1

    def enqueued_counts(self) -> dict[str, int]:
        """Every type's count, the first type met first (a copy: the scrape's thread)."""
        first, n = self.enqueued_type, self.enqueued_n
        return {first: n, **self.enqueued} if first is not None else dict(self.enqueued)

    def ok_counts(self) -> dict[str, int]:
        first, n = self.ok_type, self.ok_n
        return {first: n, **self.ok} if first is not None else dict(self.ok)

    def duration_counts(self) -> list[int]:
        counts = list(self.durations)
        counts[0] += self.fastest
        return counts


class _TypeCounts:
    """How often one message type was published, by fan-out width: nearly every message goes
    to no agent (a reply the caller gathers) or to one, so those two widths are slots (an
    increment on an object found by one lookup); the others are in a dict. The type's count is
    their sum, taken when scraped."""

    __slots__ = ("one", "wide", "zero")

    def __init__(self, recipients: int) -> None:
        # Made with its first message counted: a scrape never reads a count of 0.
        self.zero = 1 if recipients == 0 else 0
        self.one = 1 if recipients == 1 else 0
        self.wide: dict[int, int] = {recipients: 1} if recipients > 1 else {}

    def widths(self) -> dict[int, int]:
        """Messages by width (a copy: the scrape's thread)."""
        out = dict(self.wide)
        out[0], out[1] = self.zero, self.one
        return out


def _cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, n in zip((*(repr(float(b)) for b in bounds), "+Inf"), counts, strict=True):
        running += n
        out.append((bound, float(running)))
    return out


def _rising(name: str, bounds: Sequence[float]) -> tuple[float, ...]:
    """``bounds``, checked: a duration's bucket is found by bisection, which needs them in
    order (and a scrape's ``le`` labels must rise)."""
    out = tuple(bounds) if isinstance(bounds, Iterable) and not isinstance(bounds, str) else None
    if out is None or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in out):
        raise ConfigurationError(f"{name} must be a sequence of numbers, not {bounds!r}")
    if any(math.isnan(b) for b in out) or not all(low < high for low, high in pairwise(out)):
        raise ConfigurationError(f"{name} must rise strictly: {list(out)}")
    # The +Inf bucket is always there: one given too (as prometheus-client's own histograms
    # take them) would be a second, its le="inf" one more series of the same bound.
    return out[:-1] if out and out[-1] == math.inf else out


def _bump(counts: dict[tuple[str, ...], int], key: tuple[str, ...]) -> None:
    counts[key] = counts.get(key, 0) + 1


class Metrics(Observer):
    """The metrics of one runtime: ``Runtime(metrics=True)`` makes one, ``rt.metrics`` is it.

    ``registry`` defaults to a new ``CollectorRegistry`` of its own; pass
    ``prometheus_client.REGISTRY`` to share the process-wide one (then only one runtime at a
    time can export: a registry holding a running runtime's metrics refuses another's with
    ``ConfigurationError``; metrics whose runtime closed stay readable there until the next
    ``Metrics`` made on it takes their place, and ``text()`` then renders them alone).
    ``duration_buckets`` (seconds) and ``fanout_buckets`` (agents) are the histograms' upper
    bounds, numbers rising strictly, or ``ConfigurationError`` (as is a ``registry`` that is
    no ``CollectorRegistry``). ``serve(port)`` exposes ``/metrics``, ``text()`` renders it,
    ``write(path)`` saves it.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        fanout_buckets: Sequence[float] = FANOUT_BUCKETS,
    ) -> None:
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise ConfigurationError(
                "registry must be a prometheus_client.CollectorRegistry, not "
                f"{type(registry).__qualname__}"
            )
        self.registry = registry if registry is not None else CollectorRegistry()
        self.runtime: Observed | None = None
        self._duration_bounds = _rising("duration_buckets", duration_buckets)
        self._fanout_bounds = _rising("fanout_buckets", fanout_buckets)
        # Durations at or under it go to ``_AgentCounts.fastest`` without a ``bisect`` (with no
        # bounds, the first bucket is +Inf and takes every duration).
        self._first_bound = self._duration_bounds[0] if self._duration_bounds else math.inf
        # Bucket i takes low < duration <= high: (-inf, first], ..., (last, +inf).
        self._ranges = list(pairwise((-math.inf, *self._duration_bounds, math.inf)))
        self._published: dict[str, _TypeCounts] = {}
        self._agents: dict[str, _AgentCounts] = {}
        self._handled: dict[tuple[str, ...], int] = {}  # errors and timeouts (ok is per agent)
        self._exceptions: dict[tuple[str, ...], int] = {}
        self._denied: dict[tuple[str, ...], int] = {}
        self._dead: dict[tuple[str, ...], int] = {}
        self._shed: dict[tuple[str, ...], int] = {}
        self._limits: dict[tuple[str, ...], int] = {}  # model-call limits (not admission's)
        self._collector = _Collector(self)
        self._read = self.registry  # what ``text`` renders: the registry, or ours once let go
        self._closed = False  # its runtime closed: the next metrics may take the registry
        try:
            self.registry.register(self._collector)
        except ValueError as exc:  # prometheus-client's DuplicateTimeseries
            if self._taken_from_closed():
                return
            raise ConfigurationError(
                "this registry already holds the metrics of a runtime (or metrics of the same "
                "names): give each runtime a registry of its own (Metrics() makes one)"
            ) from exc

    def bind(self, runtime: Observed) -> None:
        """Start observing ``runtime`` (the runtime does this; one runtime per ``Metrics``)."""
        if self.runtime is not None:
            raise ConfigurationError("these metrics already belong to another runtime")
        self.runtime = runtime
        runtime.add_observer(self)

    def unbind(self, runtime: Observed) -> None:
        """Let go of ``runtime``, refused before it ran (the runtime does this): what it
        counted is nothing, and the runtime made in its place may take these metrics."""
        if self.runtime is runtime:
            self.runtime = None

    # --- exposure ------------------------------------------------------------------------------
    def text(self) -> str:
        """The Prometheus text exposition of everything now."""
        return generate_latest(self._read).decode("utf-8")

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.text(), encoding="utf-8")

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` from a thread (port 0 picks a free one) until
        ``close()``. Raises ``ConfigurationError`` if the address cannot be bound, and
        ``InvalidArgumentError`` for a port or host that is none."""
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535):
            raise InvalidArgumentError(f"port must be a whole number, 0 to 65535, not {port!r}")
        if not isinstance(host, str):
            raise InvalidArgumentError(f"host must be a str (an address), not {host!r}")
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} "
                "(choose another --metrics-port, or 0 for any free port)"
            ) from exc
        return MetricsServer(server, thread, host)

    # --- the observer hook (on the runtime's loop: dict increments only) -------------------------
    never_raises = True

    # published, delivered and handled run for every delivery: each is one dict increment on
    # the runtime's loop; the Prometheus counters read these dicts only when scraped.
    def published(self, msg: Message, recipients: int) -> None:
        key = msg.type
        try:
            counts = self._published[key]
        except KeyError:
            self._published[key] = _TypeCounts(recipients)
            return
        if recipients == 0:
            counts.zero += 1
        elif recipients == 1:
            counts.one += 1
        else:
            wide = counts.wide
            wide[recipients] = wide.get(recipients, 0) + 1

    def delivered(self, msg: Message, agent_id: str) -> None:
        try:
            agent = self._agents[agent_id]
        except KeyError:
            agent = self._agent(agent_id)
        key = msg.type
        if key == agent.enqueued_type:
            agent.enqueued_n += 1
        else:
            agent.enqueued_other(key)

    def delivered_many(self, msg: Message, agent_ids: Sequence[str]) -> None:
        # ``delivered`` for each, in one call (a publish to many agents).
        key = msg.type
        agents = self._agents
        for agent_id in agent_ids:
            try:
                agent = agents[agent_id]
            except KeyError:
                agent = self._agent(agent_id)
            if key == agent.enqueued_type:
                agent.enqueued_n += 1
            else:
                agent.enqueued_other(key)

    def handled(self, msg: Message, agent_id: str, duration: float, outputs: int) -> None:
        try:
            agent = self._agents[agent_id]
        except KeyError:
            agent = self._agent(agent_id)
        if msg.type == agent.ok_type:
            agent.ok_n += 1
        else:
            agent.ok_other(msg.type)
        if duration <= self._first_bound:
            agent.fastest += 1
        elif agent.low < duration <= agent.high:
            agent.durations[agent.bucket] += 1
        else:
            self._moved(agent, duration)
        agent.seconds += duration

    def _moved(self, agent: _AgentCounts, duration: float) -> None:
        """Count ``duration`` in its bucket, found by bisection, and try that one first next."""
        bucket = agent.bucket = bisect_left(self._duration_bounds, duration)
        agent.low, agent.high = self._ranges[bucket]
        agent.durations[bucket] += 1

    def _agent_label(self, consumer: str | None) -> str:
        """``consumer`` as an ``agent`` label: an agent of the runtime, else ``-``. Labels are
        bounded by the configuration, never by traffic, and a name a caller chose is traffic.
        (Metrics of no runtime have nothing to judge by: they keep the name.)"""
        if consumer is None:
            return "-"
        rt = self.runtime
        return consumer if rt is None or rt.hosts(consumer) else "-"

    def _agent(self, agent_id: str) -> _AgentCounts:
        agent = self._agents[agent_id] = _AgentCounts(len(self._duration_bounds) + 1)
        return agent

    def failed(self, msg: Message, agent_id: str, duration: float, error: BaseException) -> None:
        status = "timeout" if isinstance(error, HandlerTimeoutError) else "error"
        _bump(self._handled, (agent_id, msg.type, status))
        _bump(self._exceptions, (agent_id, type_name(error)))
        agent = self._agents.get(agent_id) or self._agent(agent_id)
        agent.durations[bisect_left(self._duration_bounds, duration)] += 1
        agent.seconds += duration

    def denied(self, msg: Message, agent_id: str, policy: str, reason: str) -> None:
        # A waiter's refusal names the caller that waits, under a name it wrote itself.
        _bump(self._denied, (self._agent_label(agent_id), msg.type, policy))

    def limit_fired(self, msg: Message, agent_id: str, limit: str, reason: str) -> None:
        _bump(self._limits, (limit.removeprefix("limit:"),))

    def closed(self) -> None:
        # What a closed runtime counted stays in the registry given, for whoever reads it
        # there, until the next runtime's metrics take the registry (``_taken_from_closed``).
        self._closed = True

    def _taken_from_closed(self) -> bool:
        """Take the registry from the metrics of runtimes that closed (a process that runs one
        runtime after another on the process-wide registry); True if these took their place.
        The metrics let go keep what they counted for ``text`` and ``write``, in a registry of
        their own."""
        held = getattr(self.registry, "_collector_to_names", {})
        closed = [c for c in list(held) if isinstance(c, _Collector) and c.metrics._closed]
        for collector in closed:
            with contextlib.suppress(KeyError):  # let go already
                self.registry.unregister(collector)
            collector.metrics._read = CollectorRegistry()
            collector.metrics._read.register(collector)
        if not closed:
            return False
        try:
            self.registry.register(self._collector)
        except ValueError:  # a running runtime's metrics are there too
            return False
        return True

    def dead_lettered(self, letter: DeadLetter) -> None:
        # An unrouted letter names its recipient: a caller's name, or any name a handler wrote.
        agent = self._agent_label(letter.agent_id)
        _bump(self._dead, (agent, letter.kind))
        if letter.kind == "shed":
            _bump(self._shed, (agent, letter.message.type))

    # --- the scrape ----------------------------------------------------------------------------
    def describe(self) -> Iterator[Metric]:
        """Every family these metrics expose, for the registry to check when they register:
        a registry with another runtime's metrics in it would expose each family twice."""
        yield from self._observed()
        yield from _Read().families()

    def collect(self) -> Iterator[Metric]:
        yield from self._observed()
        if self.runtime is not None:
            yield from _from_statistics(self.runtime, dict(self._limits))

    def _observed(self) -> Iterator[Metric]:
        """The families counted from the observer hook."""
        # Copies first, each one atomic: the scrape runs on the server's thread.
        agents = list(self._agents.items())
        types = [(type_, counts.widths()) for type_, counts in list(self._published.items())]
        published: dict[tuple[str, ...], int] = {
            (type_,): sum(widths.values()) for type_, widths in types
        }
        yield _counter(
            "genie_messages_published", "Messages published, by type.", ["type"], published
        )
        deliveries: dict[tuple[str, ...], int] = {}
        handled = dict(self._handled)
        for agent, counts in agents:
            for type_, n in counts.enqueued_counts().items():
                deliveries[agent, type_] = n
            for type_, n in counts.ok_counts().items():
                handled[agent, type_, "ok"] = n
        for (agent, type_, _policy), n in dict(self._denied).items():
            deliveries[agent, type_] = deliveries.get((agent, type_), 0) + n
        for key, n in dict(self._shed).items():
            deliveries[key] = deliveries.get(key, 0) + n
        yield _counter(
            "genie_deliveries",
            "Deliveries (a message to one agent), whatever their outcome.",
            ["agent", "type"],
            deliveries,
        )
        yield _counter(
            "genie_messages_handled",
            "Handler calls by outcome (ok, error, timeout); retries count each call.",
            ["agent", "type", "status"],
            handled,
        )
        yield _counter(
            "genie_handler_exceptions",
            "Exceptions raised by handlers, by exception type.",
            ["agent", "exception"],
            self._exceptions,
        )
        denied: dict[tuple[str, ...], int] = {}
        for (agent, _type, policy), n in dict(self._denied).items():
            denied[agent, policy] = denied.get((agent, policy), 0) + n
        yield _counter(
            "genie_deliveries_denied",
            "Deliveries refused at admission, by recipient and policy (or limit).",
            ["agent", "policy"],
            denied,
        )
        yield _counter(
            "genie_dead_letters",
            "Dead letters by agent and reason (failed, cancelled, shed, unrouted).",
            ["agent", "reason"],
            self._dead,
        )
        durations = HistogramMetricFamily(
            "genie_handle_duration_seconds",
            "Handler call duration on the runtime clock, by agent.",
            labels=["agent"],
        )
        for agent, counts in agents:
            buckets = _cumulative(self._duration_bounds, counts.duration_counts())
            durations.add_metric([agent], buckets, counts.seconds)
        yield durations
        widths: dict[int, int] = {}
        for _type, by_width in types:
            for width, n in by_width.items():
                widths[width] = widths.get(width, 0) + n
        per_bucket = [0] * (len(self._fanout_bounds) + 1)
        for width, n in widths.items():
            per_bucket[bisect_left(self._fanout_bounds, width)] += n
        fanout = HistogramMetricFamily(
            "genie_fanout_width", "Agents each published message was routed to."
        )
        total = float(sum(width * n for width, n in widths.items()))
        fanout.add_metric([], _cumulative(self._fanout_bounds, per_bucket), total)
        yield fanout


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics.collect()

    def describe(self) -> Iterator[Metric]:
        return self.metrics.describe()


def _counter(
    name: str, doc: str, labels: list[str], counts: dict[tuple[str, ...], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in dict(counts).items():
        family.add_metric(list(key), n)
    return family


class _Read:
    """The families read from a runtime's ``statistics()`` when scraped, made empty: filled by
    ``_from_statistics``, named as they are by ``Metrics.describe``."""

    def __init__(self) -> None:
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        self.in_flight = gauge("genie_in_flight", "Deliveries queued or running now.")
        self.retries = counter("genie_retries", "Handler retries.")
        self.fallbacks = counter("genie_fallbacks", "Failed messages the fallback agent handled.")
        self.depth = gauge("genie_mailbox_depth", "Messages queued, by agent.", labels=["agent"])
        self.capacity = gauge("genie_mailbox_capacity", "Mailbox size, by agent.", labels=["agent"])
        self.active = gauge(
            "genie_handlers_active", "Handlers running, by agent.", labels=["agent"]
        )
        self.decisions = counter(
            "genie_policy_decisions",
            "Governance decisions by policy (allow, deny): deliveries (fallbacks, taps and "
            "waiters too), tool calls and their results, memory writes and reads.",
            labels=["policy", "decision"],
        )
        self.limits = counter(
            "genie_limits_fired",
            "Deliveries and tool calls stopped by the hop limit or the correlation budget, and "
            "correlations whose model calls their token or cost budget stopped.",
            labels=["limit"],
        )
        self.correlations = gauge(
            "genie_correlations_active", "Correlations with work in flight or someone waiting."
        )
        self.pending = gauge("genie_gathers_pending", "Fan-ins (gathers, asks) waiting now.")
        self.gathers = counter("genie_gathers", "Finished fan-ins by status.", labels=["status"])
        self.late = counter("genie_late_replies", "Replies that came after their fan-in ended.")

    def families(self) -> tuple[Metric, ...]:
        return (
            self.in_flight,
            self.retries,
            self.fallbacks,
            self.depth,
            self.capacity,
            self.active,
            self.decisions,
            self.limits,
            self.correlations,
            self.pending,
            self.gathers,
            self.late,
        )


def _from_statistics(rt: Observed, model_limits: dict[tuple[str, ...], int]) -> Iterator[Metric]:
    stats = rt.statistics()
    read = _Read()
    read.in_flight.add_metric([], stats.in_flight)
    read.retries.add_metric([], stats.retries)
    read.fallbacks.add_metric([], stats.fallbacks)
    for agent, mb in stats.mailboxes.items():
        read.depth.add_metric([agent], mb.depth)
        read.capacity.add_metric([agent], mb.capacity)
        read.active.add_metric([agent], mb.active)
    policies = stats.policies
    for (policy, decision), n in policies.decisions().items():
        read.decisions.add_metric([policy, decision], n)
    for limit in ("hops", "budget"):
        read.limits.add_metric([limit], policies.denied.get(f"limit:{limit}", 0))
    for (limit,), n in model_limits.items():
        read.limits.add_metric([limit], n)
    corr = stats.correlations
    read.correlations.add_metric([], corr.correlations_active)
    read.pending.add_metric([], corr.gathers_pending)
    read.gathers.add_metric(["complete"], corr.gathers_complete)
    read.gathers.add_metric(["partial"], corr.gathers_partial)
    read.gathers.add_metric(["timed_out"], corr.gathers_timed_out)
    read.late.add_metric([], corr.late_replies)
    return iter(read.families())


class MetricsServer:
    """A running ``/metrics`` endpoint; ``close()`` (or leaving ``with``) stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port: int = server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
