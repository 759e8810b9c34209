"""Genie: an in-process, typed, governed multi-agent message bus."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._agent import Agent as Agent
from ._agent import BaseAgent as BaseAgent
from ._agent import Risk as Risk
from ._agent import handler as handler
from ._audit import AuditRecord as AuditRecord
from ._audit import AuditSink as AuditSink
from ._audit import AuditVerdict as AuditVerdict
from ._audit import JsonlAuditLog as JsonlAuditLog
from ._audit import MemoryAuditLog as MemoryAuditLog
from ._audit import verify_audit_log as verify_audit_log
from ._clock import Clock as Clock
from ._context import Context as Context
from ._context import TestContext as TestContext
from ._context import Timer as Timer
from ._correlator import CorrelatorStatistics as CorrelatorStatistics
from ._correlator import Gather as Gather
from ._correlator import GatherResult as GatherResult
from ._correlator import Missing as Missing
from ._deadletter import DeadLetter as DeadLetter
from ._errors import AgentError as AgentError
from ._errors import CircuitOpenError as CircuitOpenError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import DeliveryError as DeliveryError
from ._errors import DeniedError as DeniedError
from ._errors import DuplicateAgentError as DuplicateAgentError
from ._errors import GenieError as GenieError
from ._errors import HandlerTimeoutError as HandlerTimeoutError
from ._errors import InvalidMessageError as InvalidMessageError
from ._errors import InvalidOutputError as InvalidOutputError
from ._errors import LimitExceededError as LimitExceededError
from ._errors import MessageError as MessageError
from ._errors import NoRouteError as NoRouteError
from ._errors import RuntimeClosedError as RuntimeClosedError
from ._errors import UnhandledMessageError as UnhandledMessageError
from ._errors import UnknownMessageTypeError as UnknownMessageTypeError
from ._errors import UnknownRecipientError as UnknownRecipientError
from ._errors import WouldBlockError as WouldBlockError
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._message import Classification as Classification
from ._message import Message as Message
from ._message import MessageTypes as MessageTypes
from ._message import Payload as Payload
from ._message import Role as Role
from ._observe import Observer as Observer
from ._router import Tap as Tap
from ._runtime import Runtime as Runtime
from ._runtime import RuntimeState as RuntimeState
from ._runtime import ShutdownReport as ShutdownReport
from ._supervisor import AgentOptions as AgentOptions
from ._supervisor import BreakerPolicy as BreakerPolicy
from ._supervisor import Decision as Decision
from ._supervisor import Limits as Limits
from ._supervisor import Policy as Policy
from ._supervisor import PolicyStatistics as PolicyStatistics
from ._supervisor import RetryPolicy as RetryPolicy

if _TYPE_CHECKING:
    from ._catalogue import AgentSpec as AgentSpec
    from ._catalogue import Catalogue as Catalogue
    from ._events import Event as Event
    from ._events import EventStream as EventStream
    from ._logging import JsonFormatter as JsonFormatter
    from ._logging import configure_logging as configure_logging
    from ._losses import Lost as Lost
    from ._metrics import Metrics as Metrics
    from ._metrics import MetricsServer as MetricsServer
    from ._statistics import RuntimeStatistics as RuntimeStatistics

# Loaded when first asked for: prometheus-client takes ~80 ms to import; the catalogue (inspect,
# a pydantic model built per agent) serves pipelines and the CLI, not a program that builds its
# runtime itself; the log formatters need `logging` (14 M instructions), which genie's own
# loggers import when they first write (genie/_log.py). A runtime loads the rest when it first
# needs them: the `Lost` model when an agent subscribes to loss notices, the event stream at
# `rt.events()`, the statistics record at `rt.statistics()` (issue 19, import time).
_LAZY = {
    "Metrics": "._metrics",
    "MetricsServer": "._metrics",
    "AgentSpec": "._catalogue",
    "Catalogue": "._catalogue",
    "JsonFormatter": "._logging",
    "configure_logging": "._logging",
    "Event": "._events",
    "EventStream": "._events",
    "Lost": "._losses",
    "RuntimeStatistics": "._statistics",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'genie' has no attribute {name!r}")


__all__ = [
    "Agent",
    "AgentError",
    "AgentOptions",
    "AgentSpec",
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
    "DeliveryError",
    "DeniedError",
    "DuplicateAgentError",
    "Event",
    "EventStream",
    "Gather",
    "GatherResult",
    "GenieError",
    "HandlerTimeoutError",
    "InvalidMessageError",
    "InvalidOutputError",
    "LimitExceededError",
    "JsonFormatter",
    "JsonlAuditLog",
    "Limits",
    "Lost",
    "MailboxStatistics",
    "MemoryAuditLog",
    "Message",
    "MessageError",
    "MessageTypes",
    "Metrics",
    "MetricsServer",
    "Missing",
    "NoRouteError",
    "Observer",
    "Payload",
    "Policy",
    "PolicyStatistics",
    "RetryPolicy",
    "Risk",
    "Role",
    "Runtime",
    "RuntimeClosedError",
    "RuntimeState",
    "RuntimeStatistics",
    "ShutdownReport",
    "Tap",
    "TestContext",
    "Timer",
    "UnhandledMessageError",
    "UnknownMessageTypeError",
    "UnknownRecipientError",
    "WouldBlockError",
    "configure_logging",
    "handler",
    "verify_audit_log",
]
