"""Genie: an in-process, typed, governed multi-agent message bus."""

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
from ._catalogue import AgentSpec as AgentSpec
from ._catalogue import Catalogue as Catalogue
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
from ._router import Tap as Tap
from ._runtime import Runtime as Runtime
from ._runtime import RuntimeStatistics as RuntimeStatistics
from ._runtime import ShutdownReport as ShutdownReport
from ._supervisor import AgentOptions as AgentOptions
from ._supervisor import BreakerPolicy as BreakerPolicy
from ._supervisor import Decision as Decision
from ._supervisor import Limits as Limits
from ._supervisor import Policy as Policy
from ._supervisor import RetryPolicy as RetryPolicy

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
    "Gather",
    "GatherResult",
    "GenieError",
    "HandlerTimeoutError",
    "InvalidMessageError",
    "InvalidOutputError",
    "JsonlAuditLog",
    "Limits",
    "MailboxStatistics",
    "MemoryAuditLog",
    "Message",
    "MessageError",
    "MessageTypes",
    "Missing",
    "NoRouteError",
    "Payload",
    "Policy",
    "RetryPolicy",
    "Risk",
    "Role",
    "Runtime",
    "RuntimeClosedError",
    "RuntimeStatistics",
    "ShutdownReport",
    "Tap",
    "TestContext",
    "Timer",
    "UnhandledMessageError",
    "UnknownMessageTypeError",
    "UnknownRecipientError",
    "WouldBlockError",
    "handler",
    "verify_audit_log",
]
