"""Fraud, money-mule, AML and identity agents."""

from .identity import CyberGuardian, KycOrchestrator, SyntheticIdentityDetector
from .phishing import PhishingClassifier
from .transactions import AmlMonitor, FraudDetector, MuleDetector

AGENTS = {
    "kyc_orchestrator": KycOrchestrator,
    "fraud_detector": FraudDetector,
    "mule_detector": MuleDetector,
    "aml_monitor": AmlMonitor,
    "synthetic_identity_detector": SyntheticIdentityDetector,
    "cyber_guardian": CyberGuardian,
    "phishing_classifier": PhishingClassifier,
}

__all__ = [
    "AGENTS",
    "AmlMonitor",
    "CyberGuardian",
    "FraudDetector",
    "KycOrchestrator",
    "MuleDetector",
    "PhishingClassifier",
    "SyntheticIdentityDetector",
]
