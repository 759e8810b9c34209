"""The LLM layer: a typed request/response model, provider adapters over raw HTTP, and wrappers
that are themselves providers (retry, deadline, circuit, fallback, cache, shadow, cost,
budgets, residency, the kill switch). See docs/llm.md."""

from ._budget import DailyTokenBudget as DailyTokenBudget
from ._cache import Cache as Cache
from ._cache import CacheStatistics as CacheStatistics
from ._circuit import Circuit as Circuit
from ._config import LLMConfig as LLMConfig
from ._config import LLMStacks as LLMStacks
from ._config import build_stacks as build_stacks
from ._config import load_llm_config as load_llm_config
from ._cost import CallRecord as CallRecord
from ._cost import CostObserver as CostObserver
from ._cost import CostStatistics as CostStatistics
from ._cost import Price as Price
from ._cost import PriceTable as PriceTable
from ._deadline import Deadline as Deadline
from ._errors import AllProvidersFailedError as AllProvidersFailedError
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BadRequestError as BadRequestError
from ._errors import BudgetExceededError as BudgetExceededError
from ._errors import LLMCircuitOpenError as LLMCircuitOpenError
from ._errors import LLMError as LLMError
from ._errors import LLMTimeoutError as LLMTimeoutError
from ._errors import ProviderConnectionError as ProviderConnectionError
from ._errors import ProviderError as ProviderError
from ._errors import ProviderResponseError as ProviderResponseError
from ._errors import ProviderUnavailableError as ProviderUnavailableError
from ._errors import RateLimitedError as RateLimitedError
from ._errors import ResidencyDeniedError as ResidencyDeniedError
from ._fallback import Fallback as Fallback
from ._killswitch import USAGE_SLACK as USAGE_SLACK
from ._killswitch import KillSwitch as KillSwitch
from ._killswitch import billed as billed
from ._killswitch import count_attempt as count_attempt
from ._ledger import BudgetLedger as BudgetLedger
from ._ledger import LedgerStatistics as LedgerStatistics
from ._ledger import Remaining as Remaining
from ._ledger import Reservation as Reservation
from ._metrics import LLMMetrics as LLMMetrics
from ._provider import EventStream as EventStream
from ._provider import Provider as Provider
from ._provider import complete_by_streaming as complete_by_streaming
from ._providers.anthropic import AnthropicProvider as AnthropicProvider
from ._providers.gemini import GeminiProvider as GeminiProvider
from ._providers.ollama import OllamaProvider as OllamaProvider
from ._providers.openai import OpenAIProvider as OpenAIProvider
from ._providers.scripted import ScriptedProvider as ScriptedProvider
from ._residency import Residency as Residency
from ._residency import residency_refusal as residency_refusal
from ._retry import Retry as Retry
from ._shadow import Shadow as Shadow
from ._shadow import ShadowResult as ShadowResult
from ._shadow import ShadowStatistics as ShadowStatistics
from ._tool_loop import ToolLoop as ToolLoop
from ._tool_loop import tool_loop as tool_loop
from ._types import Accumulator as Accumulator
from ._types import CallContext as CallContext
from ._types import ChatMessage as ChatMessage
from ._types import Finish as Finish
from ._types import FinishReason as FinishReason
from ._types import ImagePart as ImagePart
from ._types import Request as Request
from ._types import Response as Response
from ._types import StreamEvent as StreamEvent
from ._types import TextDelta as TextDelta
from ._types import TextPart as TextPart
from ._types import Tool as Tool
from ._types import ToolCall as ToolCall
from ._types import ToolCallDelta as ToolCallDelta
from ._types import Usage as Usage
from ._types import UsageEvent as UsageEvent

__all__ = [
    "Accumulator",
    "AllProvidersFailedError",
    "AnthropicProvider",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "BudgetLedger",
    "Cache",
    "CacheStatistics",
    "CallContext",
    "CallRecord",
    "ChatMessage",
    "Circuit",
    "CostObserver",
    "CostStatistics",
    "DailyTokenBudget",
    "Deadline",
    "EventStream",
    "Fallback",
    "Finish",
    "FinishReason",
    "GeminiProvider",
    "ImagePart",
    "KillSwitch",
    "LLMConfig",
    "LLMStacks",
    "LLMCircuitOpenError",
    "LLMError",
    "LLMMetrics",
    "LLMTimeoutError",
    "LedgerStatistics",
    "OllamaProvider",
    "OpenAIProvider",
    "Price",
    "PriceTable",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "Remaining",
    "Request",
    "Reservation",
    "Residency",
    "ResidencyDeniedError",
    "Response",
    "Retry",
    "ScriptedProvider",
    "Shadow",
    "ShadowResult",
    "ShadowStatistics",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolLoop",
    "Usage",
    "USAGE_SLACK",
    "UsageEvent",
    "billed",
    "count_attempt",
    "build_stacks",
    "complete_by_streaming",
    "load_llm_config",
    "residency_refusal",
    "tool_loop",
]
