"""LLM metrics: what a built stack's calls, cache and budgets show to Prometheus, and every
metric is documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from genie import ConfigurationError
from genie.llm import (
    BudgetExceededError,
    CallContext,
    CallRecord,
    CostObserver,
    Deadline,
    LLMConfig,
    LLMMetrics,
    LLMTimeoutError,
    OpenAIProvider,
    PriceTable,
    build_stacks,
)

from .helpers import HTTPX_HALF_READ, fixture, simple_request

DOCS = Path(__file__).resolve().parents[2] / "docs" / "llm.md"


def sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match[1].split(","))) == want:
            return float(match[2])
    raise AssertionError(f"no sample {name}{{{want}}} in:\n{text}")


async def test_calls_tokens_cost_latency_cache_and_refusals_are_exported() -> None:
    config = LLMConfig.model_validate(
        {
            "providers": {"offline": {"kind": "scripted", "model": "sim", "answers": ["hello"]}},
            "prices": {"sim": {"input": 1000000, "output": 2000000}},
            "budgets": {"daily_tokens_per_principal": 60},
            "stacks": {"judge": {"providers": ["offline"], "cache": {"ttl": 60}}},
        }
    )
    metrics = LLMMetrics()
    built = build_stacks(config, {}, metrics=metrics)
    judge = built["judge"]
    request = simple_request(max_tokens=20, model=None, context=CallContext(correlation_id="c"))
    await judge.complete(request)  # a miss, then the scripted answer (no usage: estimated)
    await judge.complete(request)  # a hit
    with pytest.raises(BudgetExceededError):
        await judge.complete(simple_request(max_tokens=50, context=CallContext(correlation_id="c")))
    text = metrics.text()
    assert sample(text, "genie_llm_calls_total", provider="offline", model="sim", outcome="ok") == 1
    assert sample(text, "genie_llm_cache_hits_total", stack="judge") == 1
    assert sample(text, "genie_llm_cache_misses_total", stack="judge") == 2
    assert sample(text, "genie_llm_budget_refusals_total", budget="daily") == 1
    assert sample(text, "genie_llm_call_seconds_count", provider="offline", model="sim") == 1


def test_every_metric_is_documented() -> None:
    text = LLMMetrics().text()
    names = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    assert len(names) == 7
    documented = DOCS.read_text()
    for name in names:
        assert f"`{name}" in documented, name


@HTTPX_HALF_READ  # the stream its reader leaves early
async def test_every_call_sent_is_recorded_whatever_ended_it() -> None:
    # A kill switch charges each of these calls: the observer used to record only LLMErrors,
    # so the metrics missed every one of them.
    async def reply(request: httpx.Request) -> httpx.Response:
        asked = request.read().decode()
        if '"broken"' in asked:
            raise RuntimeError("a transport's own bug")
        if '"slow"' in asked:
            await anyio.sleep(60)
        if '"stream": true' in asked or '"stream":true' in asked:
            return httpx.Response(
                200,
                content=fixture("openai_stream.txt"),
                headers={"content-type": "text/event-stream"},
            )
        return httpx.Response(200, content=fixture("openai_response.json"))

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    records: list[CallRecord] = []
    metrics = LLMMetrics()

    def record(call: CallRecord) -> None:
        records.append(call)
        metrics.record(call)

    observer = CostObserver(OpenAIProvider(client=client), on_call=record)
    timed = Deadline(observer, timeout=0.05)
    slow, broken = simple_request(model="slow"), simple_request(model="broken")

    with pytest.raises(LLMTimeoutError):  # 1: cut by a deadline outside the observer
        await timed.complete(slow)
    with pytest.raises(LLMTimeoutError):
        async with timed.stream(slow) as events:
            _ = [e async for e in events]
    with pytest.raises(RuntimeError):  # 2: an error that is not an LLMError
        await observer.complete(broken)
    async with observer.stream(simple_request()) as events:  # 3: left after its first event
        async for _ in events:
            break
    with anyio.move_on_after(0.05) as scope:  # 4: cancelled by the caller
        await observer.complete(slow)
        raise AssertionError("the cancellation was swallowed")
    assert scope.cancelled_caught
    await observer.complete(simple_request())  # and an answer
    outcomes = [r.error for r in records]
    assert outcomes == ["cancelled", "cancelled", "RuntimeError", "unfinished", "cancelled", None]
    assert [r.stream for r in records] == [False, True, False, True, False, False]
    # Cut at the deadline, not at once: the deadline's clock started before the observer's,
    # so the call it timed is a little shorter than the deadline.
    assert records[0].seconds >= 0.04
    assert observer.statistics().calls == 6
    assert observer.statistics().failures == 5
    text = metrics.text()
    for model, outcome, count in (
        ("slow", "cancelled", 3),
        ("broken", "RuntimeError", 1),
        ("m-1", "unfinished", 1),
        ("gpt-4.1-mini-2025-04-14", "ok", 1),  # the answer's model; the others the request's
    ):
        labels = {"provider": "openai", "model": model}
        assert sample(text, "genie_llm_calls_total", outcome=outcome, **labels) == count
        assert sample(text, "genie_llm_call_seconds_count", **labels) == count


async def test_a_usage_that_cannot_be_true_never_takes_the_counters_down() -> None:
    """A provider reporting negative counts (or more cached tokens than input) is not
    believed by the kill switch; the observer must not believe it either: before, the tokens
    and cost counters went down (Prometheus reads that as a restart) and the answer carried
    a negative cost, a refund for whoever bills on it."""
    lies = iter(
        [
            {"prompt_tokens": -1000, "completion_tokens": -500},
            {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 99},
            },
        ]
    )

    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(fixture("openai_response.json"))
        body["usage"] = next(lies, body["usage"])
        return httpx.Response(200, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    metrics = LLMMetrics()
    observer = CostObserver(
        OpenAIProvider(client=client),
        PriceTable.of({"*": {"input": 1.0, "output": 2.0, "cached_input": 0.5}}),
        on_call=metrics.record,
    )
    costs = [(await observer.complete(simple_request())).cost for _ in range(3)]
    assert costs[:2] == [None, None]  # nothing believable to price
    assert costs[2] is not None
    assert costs[2] > 0
    stats = observer.statistics()
    assert min(stats.input_tokens, stats.output_tokens, stats.cached_tokens, stats.cost) >= 0
    text = metrics.text()
    labels = {"provider": "openai", "model": "gpt-4.1-mini-2025-04-14"}
    honest = json.loads(fixture("openai_response.json"))["usage"]
    assert sample(text, "genie_llm_tokens_total", kind="input", **labels) == honest["prompt_tokens"]
    assert sample(text, "genie_llm_calls_total", outcome="ok", **labels) == 3


@pytest.mark.parametrize("auto_describe", [False, True], ids=["own", "like-the-process-one"])
def test_a_registry_holds_one_llm_metrics_and_a_second_is_refused_naming_why(
    auto_describe: bool,
) -> None:
    """A second ``LLMMetrics`` on one registry was prometheus-client's bare ``ValueError``
    (a registry that describes its collectors, as the process-wide one does), or taken
    silently by one that does not: every family exposed twice, which Prometheus refuses."""
    registry = CollectorRegistry(auto_describe=auto_describe)
    first = LLMMetrics(registry)
    with pytest.raises(ConfigurationError, match="already holds LLM metrics"):
        LLMMetrics(registry)
    assert generate_latest(registry).decode().count("# TYPE genie_llm_calls_total counter") == 1
    assert first.registry is registry
