"""LLM metrics: what a built stack's calls, cache and budgets show to Prometheus, and every
metric is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genie.llm import BudgetExceededError, CallContext, LLMConfig, LLMMetrics, build_stacks

from .helpers import simple_request

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
