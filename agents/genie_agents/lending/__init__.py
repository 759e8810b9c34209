"""Lending agents: EMI and eligibility, underwriting, prepayment, debt payoff, SME loans."""

from .loans import CashflowUnderwriter, DebtOptimizer, LoanAdvisor, PrepaymentAdvisor
from .sme import SmeLoanWorkflow

AGENTS = {
    "loan_advisor": LoanAdvisor,
    "cashflow_underwriter": CashflowUnderwriter,
    "prepayment_advisor": PrepaymentAdvisor,
    "debt_optimizer": DebtOptimizer,
    "sme_loan_workflow": SmeLoanWorkflow,
}

__all__ = [
    "AGENTS",
    "CashflowUnderwriter",
    "DebtOptimizer",
    "LoanAdvisor",
    "PrepaymentAdvisor",
    "SmeLoanWorkflow",
]
