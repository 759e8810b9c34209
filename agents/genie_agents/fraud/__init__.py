"""Fraud, money-mule, AML and identity agents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .identity import CyberGuardian as CyberGuardian
    from .identity import KycOrchestrator as KycOrchestrator
    from .identity import SyntheticIdentityDetector as SyntheticIdentityDetector
    from .phishing import PhishingClassifier as PhishingClassifier
    from .transactions import AmlMonitor as AmlMonitor
    from .transactions import FraudDetector as FraudDetector
    from .transactions import MuleDetector as MuleDetector

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "CyberGuardian": ".identity",
    "KycOrchestrator": ".identity",
    "SyntheticIdentityDetector": ".identity",
    "PhishingClassifier": ".phishing",
    "AmlMonitor": ".transactions",
    "FraudDetector": ".transactions",
    "MuleDetector": ".transactions",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "kyc_orchestrator": "KycOrchestrator",
    "fraud_detector": "FraudDetector",
    "mule_detector": "MuleDetector",
    "aml_monitor": "AmlMonitor",
    "synthetic_identity_detector": "SyntheticIdentityDetector",
    "cyber_guardian": "CyberGuardian",
    "phishing_classifier": "PhishingClassifier",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "AmlMonitor",
    "CyberGuardian",
    "FraudDetector",
    "KycOrchestrator",
    "MuleDetector",
    "PhishingClassifier",
    "SyntheticIdentityDetector",
]
