"""OpenTelemetry tracing of a runtime: a span per delivery, parented along causation.

Needs the ``otel`` extra. Off unless configured: nothing in genie imports this package, and a
runtime without ``trace_runtime`` has no tracing observer, so the hot path pays nothing.

    from genie.otel import trace_runtime
    spans = trace_runtime(rt)    # the global tracer provider, or pass tracer_provider=...
    model = TracedProvider(model, spans)   # its calls join the trace of the request
"""

from ._llm import TracedProvider as TracedProvider
from ._spans import SpanObserver as SpanObserver
from ._spans import trace_runtime as trace_runtime

__all__ = ["SpanObserver", "TracedProvider", "trace_runtime"]
