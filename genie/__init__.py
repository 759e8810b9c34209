"""Genie: an in-process, typed, governed multi-agent message bus."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._agent.agent import Agent as Agent
from ._agent.agent import BaseAgent as BaseAgent
from ._agent.agent import Risk as Risk
from ._agent.agent import handler as handler
from ._agent.context import Context as Context
from ._agent.context import TestContext as TestContext
from ._agent.context import Timer as Timer
from ._agent.memory import Memory as Memory
from ._agent.tools import ToolOutput as ToolOutput
from ._agent.tools import Tools as Tools
from ._agent.tools import ToolServer as ToolServer
from ._agent.tools import ToolSession as ToolSession
from ._agent.tools import ToolSpec as ToolSpec
from ._base.clock import Clock as Clock
from ._base.lazy import lazy_names as _lazy_names
from ._base.resilience import BreakerPolicy as BreakerPolicy
from ._base.resilience import RetryPolicy as RetryPolicy
from ._errors import AgentError as AgentError
from ._errors import AuditWriteError as AuditWriteError
from ._errors import CircuitOpenError as CircuitOpenError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import DeliveryError as DeliveryError
from ._errors import DeniedError as DeniedError
from ._errors import DuplicateAgentError as DuplicateAgentError
from ._errors import DuplicateMessageError as DuplicateMessageError
from ._errors import GenieError as GenieError
from ._errors import HandlerTimeoutError as HandlerTimeoutError
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import InvalidMessageError as InvalidMessageError
from ._errors import InvalidOutputError as InvalidOutputError
from ._errors import LimitExceededError as LimitExceededError
from ._errors import MemoryArgumentError as MemoryArgumentError
from ._errors import MemoryDeniedError as MemoryDeniedError
from ._errors import MessageError as MessageError
from ._errors import NoRouteError as NoRouteError
from ._errors import PublishFromHandlerError as PublishFromHandlerError
from ._errors import RuntimeClosedError as RuntimeClosedError
from ._errors import StoreError as StoreError
from ._errors import ToolArgumentsError as ToolArgumentsError
from ._errors import ToolCallError as ToolCallError
from ._errors import ToolDeniedError as ToolDeniedError
from ._errors import UnhandledMessageError as UnhandledMessageError
from ._errors import UnknownMessageTypeError as UnknownMessageTypeError
from ._errors import UnknownRecipientError as UnknownRecipientError
from ._errors import WaitFromHandlerError as WaitFromHandlerError
from ._errors import WouldBlockError as WouldBlockError
from ._message.envelope import Message as Message
from ._message.payload import Classification as Classification
from ._message.payload import Payload as Payload
from ._message.payload import Role as Role
from ._message.types import MessageTypes as MessageTypes
from ._runtime.audit import AuditRecord as AuditRecord
from ._runtime.audit import AuditSink as AuditSink
from ._runtime.audit import AuditVerdict as AuditVerdict
from ._runtime.audit import JsonlAuditLog as JsonlAuditLog
from ._runtime.audit import MemoryAuditLog as MemoryAuditLog
from ._runtime.audit import verify_audit_log as verify_audit_log
from ._runtime.correlator import CorrelatorStatistics as CorrelatorStatistics
from ._runtime.correlator import Gather as Gather
from ._runtime.correlator import GatherResult as GatherResult
from ._runtime.correlator import Missing as Missing
from ._runtime.correlator import NoReplyError as NoReplyError
from ._runtime.deadletter import DeadLetter as DeadLetter
from ._runtime.local.mailbox import MailboxStatistics as MailboxStatistics
from ._runtime.observe.observer import Observer as Observer
from ._runtime.options import AgentOptions as AgentOptions
from ._runtime.policy import Decision as Decision
from ._runtime.policy import DeclaredPolicy as DeclaredPolicy
from ._runtime.policy import Limits as Limits
from ._runtime.policy import Policy as Policy
from ._runtime.policy import PolicyStatistics as PolicyStatistics
from ._runtime.router import Tap as Tap
from ._runtime.runtime import Runtime as Runtime
from ._runtime.runtime import RuntimeState as RuntimeState
from ._runtime.runtime import ShutdownReport as ShutdownReport

if _TYPE_CHECKING:
    from ._agent.catalogue import AgentSpec as AgentSpec
    from ._agent.catalogue import Catalogue as Catalogue
    from ._base.log_format import JsonFormatter as JsonFormatter
    from ._base.log_format import configure_logging as configure_logging
    from ._runtime.approvals import Approval as Approval
    from ._runtime.approvals import ApprovalDecision as ApprovalDecision
    from ._runtime.approvals import ApprovalNotPendingError as ApprovalNotPendingError
    from ._runtime.approvals import ApprovalRefusedError as ApprovalRefusedError
    from ._runtime.approvals import ApprovalRequest as ApprovalRequest
    from ._runtime.approvals import Approvals as Approvals
    from ._runtime.losses import Lost as Lost
    from ._runtime.losses import Unanswered as Unanswered
    from ._runtime.model_text import ModelText as ModelText
    from ._runtime.model_text import ModelTextStream as ModelTextStream
    from ._runtime.model_text import TextChunk as TextChunk
    from ._runtime.observe.events import Event as Event
    from ._runtime.observe.events import EventStream as EventStream
    from ._runtime.observe.metrics import Metrics as Metrics
    from ._runtime.observe.metrics import MetricsServer as MetricsServer
    from ._runtime.offload import OffloadStatistics as OffloadStatistics
    from ._runtime.statistics import RuntimeStatistics as RuntimeStatistics

# Loaded when first asked for (docs/design/imports-and-gc.md): prometheus-client serves only a
# runtime with metrics on; the catalogue (inspect, a pydantic model built per agent) serves
# pipelines and the CLI, not a program that builds its runtime itself; the log formatters need
# `logging`, which genie's own loggers import when they first write (genie/_base/log.py). A
# runtime loads the rest when it first needs them: the `Lost` model (and `Unanswered`) when an
# agent subscribes to loss notices, the event stream at `rt.events()`, model text at
# `rt.model_text()`, the statistics record at `rt.statistics()`.
_LAZY = {
    "Metrics": "._runtime.observe.metrics",
    "MetricsServer": "._runtime.observe.metrics",
    "AgentSpec": "._agent.catalogue",
    "Catalogue": "._agent.catalogue",
    "JsonFormatter": "._base.log_format",
    "configure_logging": "._base.log_format",
    "Event": "._runtime.observe.events",
    "EventStream": "._runtime.observe.events",
    "Lost": "._runtime.losses",
    "Unanswered": "._runtime.losses",
    "Approval": "._runtime.approvals",
    "ApprovalDecision": "._runtime.approvals",
    "ApprovalNotPendingError": "._runtime.approvals",
    "ApprovalRefusedError": "._runtime.approvals",
    "ApprovalRequest": "._runtime.approvals",
    "Approvals": "._runtime.approvals",
    "ModelText": "._runtime.model_text",
    "ModelTextStream": "._runtime.model_text",
    "TextChunk": "._runtime.model_text",
    "OffloadStatistics": "._runtime.offload",
    "RuntimeStatistics": "._runtime.statistics",
}


__getattr__ = _lazy_names(__name__, _LAZY)


__all__ = [
    "Agent",
    "AgentError",
    "AuditWriteError",
    "AgentOptions",
    "AgentSpec",
    "Approval",
    "ApprovalDecision",
    "ApprovalNotPendingError",
    "ApprovalRefusedError",
    "ApprovalRequest",
    "Approvals",
    "AuditRecord",
    "AuditSink",
    "AuditVerdict",
    "BaseAgent",
    "BreakerPolicy",
    "Catalogue",
    "CircuitOpenError",
    "Classification",
    "Clock",
    "ConfigurationError",
    "Context",
    "CorrelatorStatistics",
    "DeadLetter",
    "Decision",
    "DeclaredPolicy",
    "DeliveryError",
    "DeniedError",
    "DuplicateAgentError",
    "DuplicateMessageError",
    "Event",
    "EventStream",
    "Gather",
    "GatherResult",
    "GenieError",
    "HandlerTimeoutError",
    "InvalidArgumentError",
    "InvalidMessageError",
    "InvalidOutputError",
    "LimitExceededError",
    "JsonFormatter",
    "JsonlAuditLog",
    "Limits",
    "Lost",
    "MailboxStatistics",
    "Memory",
    "MemoryArgumentError",
    "MemoryAuditLog",
    "MemoryDeniedError",
    "Message",
    "MessageError",
    "MessageTypes",
    "Metrics",
    "MetricsServer",
    "Missing",
    "ModelText",
    "ModelTextStream",
    "NoReplyError",
    "NoRouteError",
    "Observer",
    "OffloadStatistics",
    "Payload",
    "Policy",
    "PolicyStatistics",
    "PublishFromHandlerError",
    "RetryPolicy",
    "Risk",
    "Role",
    "Runtime",
    "RuntimeClosedError",
    "RuntimeState",
    "RuntimeStatistics",
    "ShutdownReport",
    "StoreError",
    "Tap",
    "TestContext",
    "TextChunk",
    "Timer",
    "ToolArgumentsError",
    "ToolCallError",
    "ToolDeniedError",
    "ToolOutput",
    "ToolServer",
    "ToolSession",
    "ToolSpec",
    "Tools",
    "Unanswered",
    "UnhandledMessageError",
    "UnknownMessageTypeError",
    "UnknownRecipientError",
    "WaitFromHandlerError",
    "WouldBlockError",
    "configure_logging",
    "handler",
    "verify_audit_log",
]
