"""Governance policies: each evaluates one delivery (message, recipient) before the mailbox.

Deny reasons match the Go system's word for word, but never show payload text. Content-scanning
policies share one ``ContentView``, so a message is serialised and normalised (``_normalise``)
once, not once per policy and recipient.
"""

from ._access import RBAC as RBAC
from ._access import MaxContentLength as MaxContentLength
from ._access import RequiredMetadata as RequiredMetadata
from ._access import RiskGate as RiskGate
from ._access import Tenant as Tenant
from ._board import BoardPolicy as BoardPolicy
from ._board import PolicySet as PolicySet
from ._board import load_policy_file as load_policy_file
from ._classifier import Classifier as Classifier
from ._classifier import ClassifierPolicy as ClassifierPolicy
from ._classifier import ModelClassifier as ModelClassifier
from ._compliance import Consent as Consent
from ._compliance import ConsentCategory as ConsentCategory
from ._compliance import ConsentLedger as ConsentLedger
from ._compliance import Explainability as Explainability
from ._compliance import InMemoryConsentLedger as InMemoryConsentLedger
from ._compliance import JsonSchema as JsonSchema
from ._content import ContentView as ContentView
from ._data import ClassificationCeiling as ClassificationCeiling
from ._data import DataResidency as DataResidency
from ._detectors import PIIBlock as PIIBlock
from ._detectors import PromptInjection as PromptInjection
from ._detectors import SecretsBlock as SecretsBlock
from ._detectors import SqlBlock as SqlBlock
from ._dsl import Rule as Rule
from ._dsl import RuleError as RuleError
from ._dsl import compile_rule as compile_rule
from ._probes import ProbeReport as ProbeReport
from ._probes import run_probes as run_probes

__all__ = [
    "RBAC",
    "BoardPolicy",
    "Classifier",
    "ClassifierPolicy",
    "ClassificationCeiling",
    "Consent",
    "ConsentCategory",
    "ConsentLedger",
    "ContentView",
    "DataResidency",
    "Explainability",
    "InMemoryConsentLedger",
    "JsonSchema",
    "MaxContentLength",
    "ModelClassifier",
    "PIIBlock",
    "PolicySet",
    "ProbeReport",
    "PromptInjection",
    "RequiredMetadata",
    "RiskGate",
    "Rule",
    "RuleError",
    "SecretsBlock",
    "SqlBlock",
    "Tenant",
    "compile_rule",
    "load_policy_file",
    "run_probes",
]
