"""The ``llm:`` section of a pipeline file: providers, price table, budgets, and named stacks
of wrappers, built into providers with keys read from the environment (never from the file)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .._base.yamlconf import ConfigFileError, WholeNumber, read_yaml, validate
from .._errors import ConfigurationError, did_you_mean
from ._budget import DailyTokenBudget
from ._cache import Cache
from ._circuit import Circuit
from ._cost import CallRecord, CostObserver, Price, PriceTable
from ._deadline import Deadline
from ._fallback import Fallback
from ._ledger import BudgetLedger
from ._metrics import LLMMetrics
from ._provider import Provider
from ._providers.anthropic import AnthropicProvider
from ._providers.gemini import GeminiProvider
from ._providers.http import MAX_RESPONSE_BYTES, HTTPAdapter
from ._providers.ollama import OllamaProvider
from ._providers.openai import OpenAIProvider
from ._providers.scripted import ScriptedProvider
from ._residency import Residency
from ._retry import Retry
from ._types import Response, ToolCall

__all__ = ["LLMConfig", "LLMStacks", "build_stacks", "load_llm_config"]

_STRICT = ConfigDict(frozen=True, extra="forbid")

_ADAPTERS: dict[str, type[HTTPAdapter]] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "ollama": OllamaProvider,
}


class ScriptedToolCall(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedAnswer(BaseModel):
    """A scripted answer that calls tools (a plain text answer is a string)."""

    model_config = _STRICT
    text: str = ""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)

    def response(self, index: int) -> Response:
        calls = tuple(
            ToolCall(id=f"call-{index}-{n}", name=c.name, arguments=c.arguments)
            for n, c in enumerate(self.tool_calls, 1)
        )
        return Response(
            text=self.text, tool_calls=calls, finish_reason="tool_calls" if calls else "stop"
        )


class ProviderConfig(BaseModel):
    """One provider. ``api_key_env`` names the environment variable holding its key."""

    model_config = _STRICT
    kind: Literal["openai", "anthropic", "gemini", "ollama", "scripted"]
    model: str | None = None
    base_url: str | None = None
    region: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float = Field(default=60.0, gt=0)
    max_response_bytes: WholeNumber = Field(default=MAX_RESPONSE_BYTES, ge=1)
    answers: list[str | ScriptedAnswer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.kind == "scripted":
            if self.api_key_env or self.base_url:
                raise ValueError("a scripted provider takes answers, not a key or a base_url")
            if "max_response_bytes" in self.model_fields_set:
                raise ValueError(
                    "max_response_bytes is for an HTTP provider: a scripted one reads no answer"
                )
        elif self.answers:
            raise ValueError("answers are for kind 'scripted' only")
        needs_key = self.kind in ("anthropic", "gemini") or (
            self.kind == "openai" and self.base_url is None
        )
        if needs_key and not self.api_key_env:
            raise ValueError(
                f"kind {self.kind!r} needs api_key_env: the name of the environment variable "
                "that holds its key (a key is never written in the file)"
            )
        return self


class RetryConfig(BaseModel):
    model_config = _STRICT
    attempts: WholeNumber = Field(default=3, ge=1)
    backoff: float = Field(default=0.5, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_backoff: float = Field(default=20.0, ge=0)
    jitter: float = Field(default=0.25, ge=0, le=1)
    max_retry_after: float = Field(default=60.0, ge=0)
    seed: int | None = None


class CircuitConfig(BaseModel):
    model_config = _STRICT
    failure_threshold: WholeNumber = Field(default=5, ge=1)
    reset_after: float = Field(default=30.0, gt=0)


class CacheConfig(BaseModel):
    model_config = _STRICT
    ttl: float = Field(default=600.0, gt=0)
    max_entries: WholeNumber = Field(default=1024, ge=1)


class ResidencyConfig(BaseModel):
    model_config = _STRICT
    home_region: str = "in"
    allow_cross_border_for_public: bool = True


class StackConfig(BaseModel):
    """A provider (or a fallback chain of them) and its wrappers; ``null`` turns one off."""

    model_config = _STRICT
    providers: list[str] = Field(min_length=1)
    deadline: float | None = Field(default=30.0, gt=0)
    cache: CacheConfig | None = None
    retry: RetryConfig | None = RetryConfig()
    circuit: CircuitConfig | None = CircuitConfig()
    residency: ResidencyConfig = ResidencyConfig()


class BudgetsConfig(BaseModel):
    """The per-principal daily token limit. The per-correlation budgets are the runtime's
    (``limits.correlation_tokens`` / ``correlation_cost``), so they cover every stack."""

    model_config = _STRICT
    daily_tokens_per_principal: WholeNumber | None = Field(default=None, ge=0)

    # Moved to the pipeline's limits: accepted here only to say so, at their own line.
    correlation_tokens: Any = None
    correlation_cost: Any = None

    @field_validator("correlation_tokens", "correlation_cost", mode="before")
    @classmethod
    def _moved(cls, value: Any, info: ValidationInfo) -> Any:
        key = info.field_name
        raise ValueError(
            f"a limit of the runtime now: write it under the pipeline's limits: "
            f"({key}: {value}), where it covers every model call of a request"
        )


class LLMConfig(BaseModel):
    model_config = _STRICT
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    stacks: dict[str, StackConfig] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    budgets: BudgetsConfig = BudgetsConfig()

    @model_validator(mode="after")
    def _known_providers(self) -> Self:
        for stack, config in self.stacks.items():
            for name in config.providers:
                if name not in self.providers:
                    hint = did_you_mean(name, self.providers)
                    raise ValueError(f"stack {stack!r} names provider {name!r}, not declared{hint}")
        return self


def load_llm_config(path: str | Path) -> LLMConfig | None:
    """The ``llm:`` section of the YAML file ``path`` (None when it has none); a mistake
    raises ``ConfigFileError`` naming the file, the line and the key."""
    path = Path(path)
    doc = read_yaml(path)
    if doc.problems:
        raise ConfigFileError(doc.problems)
    section = doc.data.get("llm") if isinstance(doc.data, dict) else None
    if section is None:
        return None
    return validate(LLMConfig, section, path, doc.lines, at=("llm",))


class LLMStacks:
    """The built stacks by name, and the ledgers and observers they share."""

    def __init__(self, stacks: dict[str, Provider], adapters: list[HTTPAdapter]) -> None:
        self.stacks = stacks
        self._adapters = adapters

    def __getitem__(self, name: str) -> Provider:
        try:
            return self.stacks[name]
        except KeyError:
            hint = did_you_mean(name, self.stacks)
            raise ConfigurationError(f"no llm stack named {name!r}{hint}") from None

    async def aclose(self) -> None:
        for adapter in self._adapters:
            await adapter.aclose()


def build_stacks(
    config: LLMConfig,
    environ: Mapping[str, str] | None = None,
    *,
    on_call: Callable[[CallRecord], None] | None = None,
    metrics: LLMMetrics | None = None,
) -> LLMStacks:
    """Build every stack of ``config``. Each provider is wrapped once, inside to outside,
    ``CostObserver → Circuit → DailyTokenBudget → Retry`` (shared by the stacks
    naming it); a stack adds ``Residency`` (or ``Fallback`` over several), then ``Cache``, then
    ``Deadline``. A key missing from the environment is a ``ConfigurationError`` now, naming
    every one missing, not at the first call. ``metrics`` records every call, cache and
    budget of the stacks (with ``on_call`` too, if given)."""
    environ = os.environ if environ is None else environ
    missing = [
        f"llm provider {name!r}: environment variable {p.api_key_env} is not set"
        for name, p in config.providers.items()
        if p.api_key_env and not environ.get(p.api_key_env)
    ]
    if missing:
        raise ConfigurationError("; ".join(missing))
    if metrics is not None:
        record = metrics.record
        on_call = record if on_call is None else _both(on_call, record)
    prices = PriceTable(prices=config.prices)
    budgets = config.budgets
    daily = None
    if budgets.daily_tokens_per_principal is not None:
        daily = BudgetLedger(max_tokens=budgets.daily_tokens_per_principal, name="daily")
    adapters: list[HTTPAdapter] = []
    wrapped: dict[str, Provider] = {}
    for name, p in config.providers.items():
        base: ScriptedProvider | HTTPAdapter
        if p.kind == "scripted":
            base = ScriptedProvider(
                [a if isinstance(a, str) else a.response(i) for i, a in enumerate(p.answers, 1)]
                or ["(scripted empty response)"],
                name=name,
                region=p.region or "on-prem",
                model=p.model or "scripted-model",
            )
        else:
            adapter = _ADAPTERS[p.kind](
                api_key=environ.get(p.api_key_env) if p.api_key_env else None,
                base_url=p.base_url,
                model=p.model,
                name=name,
                timeout=p.timeout,
                region=p.region,
                max_response_bytes=p.max_response_bytes,
            )
            adapters.append(adapter)
            base = adapter
        wrapped[name] = CostObserver(base, prices, on_call=on_call)
    stacks: dict[str, Provider] = {}
    for stack_name, s in config.stacks.items():
        members: list[Provider] = []
        for name in s.providers:
            provider: Provider = wrapped[name]
            if s.circuit is not None:
                provider = Circuit(provider, **s.circuit.model_dump())
            if daily is not None:
                provider = DailyTokenBudget(provider, ledger=daily)
            if s.retry is not None:
                provider = Retry(provider, **s.retry.model_dump())
            members.append(provider)
        residency = s.residency.model_dump()
        top: Provider = (
            Fallback(*members, **residency)
            if len(members) > 1
            else Residency(members[0], **residency)
        )
        if s.cache is not None:
            top = Cache(top, **s.cache.model_dump())
            if metrics is not None:
                metrics.watch_cache(stack_name, top)
        if s.deadline is not None:
            top = Deadline(top, s.deadline)
        stacks[stack_name] = top
    if metrics is not None and daily is not None:
        metrics.watch_ledger(daily)
    return LLMStacks(stacks, adapters)


def _both(
    first: Callable[[CallRecord], None], second: Callable[[CallRecord], None]
) -> Callable[[CallRecord], None]:
    def call(record: CallRecord) -> None:
        first(record)
        second(record)

    return call
