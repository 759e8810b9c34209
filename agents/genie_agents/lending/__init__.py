"""Lending agents: EMI and eligibility, underwriting, prepayment, debt payoff, SME loans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attribute

if TYPE_CHECKING:
    from .loans import CashflowUnderwriter as CashflowUnderwriter
    from .loans import DebtOptimizer as DebtOptimizer
    from .loans import LoanAdvisor as LoanAdvisor
    from .loans import PrepaymentAdvisor as PrepaymentAdvisor
    from .sme import SmeLoanStep as SmeLoanStep
    from .sme import SmeLoanWorkflow as SmeLoanWorkflow

# Where each class lives: imported on first use (genie_agents._lazy).
CLASSES = {
    "CashflowUnderwriter": ".loans",
    "DebtOptimizer": ".loans",
    "LoanAdvisor": ".loans",
    "PrepaymentAdvisor": ".loans",
    "SmeLoanStep": ".sme",
    "SmeLoanWorkflow": ".sme",
}
# Catalogue name -> class; genie_agents.register adds them without importing them.
AGENTS = {
    "loan_advisor": "LoanAdvisor",
    "cashflow_underwriter": "CashflowUnderwriter",
    "prepayment_advisor": "PrepaymentAdvisor",
    "debt_optimizer": "DebtOptimizer",
    "sme_loan_workflow": "SmeLoanWorkflow",
    "sme_loan_step": "SmeLoanStep",
}


def __getattr__(name: str) -> object:
    return lazy_attribute(__name__, CLASSES, name)


__all__ = [
    "AGENTS",
    "CLASSES",
    "CashflowUnderwriter",
    "DebtOptimizer",
    "LoanAdvisor",
    "PrepaymentAdvisor",
    "SmeLoanStep",
    "SmeLoanWorkflow",
]
