"""Go's inputs ported (issue 23): hand-computed answers to requests in the Go system's shape,
for the agents whose Go request asked its question differently from the port's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from genie_agents.connectors.aa import AaFetcher, AaFetchRequest, InMemoryFIClient
from genie_agents.connectors.portfolio import PortfolioRequest
from genie_agents.finance.models import FinanceQuestion, IngestCsv
from genie_agents.finance.supervisor import FinancialSupervisor
from genie_agents.payments.models import InvoicePacket
from genie_agents.treasury.models import WorkingCapitalRequest

from genie import Catalogue, InvalidMessageError, MessageTypes, Payload
from genie.policies import InMemoryConsentLedger

from .helpers import ask, one

CATALOGUE = Catalogue.installed()
TYPES = MessageTypes({p for spec in CATALOGUE for p in spec.consumes})


def parse(kind: str, body: Any) -> Payload:
    return TYPES.parse_payload(kind, json.dumps(body))


def refused(kind: str, body: Any) -> str:
    with pytest.raises(InvalidMessageError) as info:
        parse(kind, body)
    return str(info.value)


WORKING_CAPITAL = {
    "monthly_revenue_rupees": 500_000,
    "gross_margin_pct": 40,
    "operating_costs_monthly_rupees": 250_000,
    "dso_days": 45,
    "dio_days": 30,
    "dpo_days": 60,
    "opening_cash_rupees": 200_000,
    "horizon_months": 9,
}


async def test_working_capital_from_go_days_gives_go_cycle() -> None:
    request = parse("working_capital_request", WORKING_CAPITAL)
    assert isinstance(request, WorkingCapitalRequest)
    # Revenue 60 L a year at a 40 % margin: cost of goods 36 L.
    assert (request.annual_revenue, request.annual_cogs) == (6_000_000, 3_600_000)
    out = await ask("working_capital_forecaster", request)
    # Go: CCC = DSO + DIO - DPO = 45 + 30 - 60 = 15 days.
    assert (out.dso, out.dio, out.dpo, out.cash_conversion_cycle) == (45, 30, 60, 15)
    # Gross profit 2 L a month less 2.5 L of costs: 50,000 a month burnt; 2 L lasts 4 months,
    # over Go's nine-month horizon.
    assert out.monthly_cashflow == -50_000
    assert len(out.cash_by_month) == 9
    assert out.cash_by_month[:4] == (150_000, 100_000, 50_000, 0)
    assert out.runway_months == 4


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"gross_margin_pct": 100}, "field 'gross_margin_pct': a gross margin from 0 to under"),
        ({"monthly_revenue_rupees": 0}, "field 'monthly_revenue_rupees': a positive monthly"),
        ({"dpo_days": -5}, "field 'dpo_days': days: a number, 0 or more"),
        ({"horizon_months": 0}, "field 'forecast_months': Input should be greater than or"),
    ],
)
def test_working_capital_go_values_refused_naming_the_field(
    change: dict[str, Any], error: str
) -> None:
    assert error in refused("working_capital_request", WORKING_CAPITAL | change)


async def test_supply_chain_finance_advises_treds_for_e_invoiced_receivables_only() -> None:
    go = {
        "supplier_id": "SUP-7",
        "invoices": [
            {"invoice_id": "1", "buyer_id": "B1", "amount_rupees": 300_000, "days_outstanding": 60}
            | {"gst_e_invoiced": True},
            {"invoice_id": "2", "buyer_id": "B1", "amount_rupees": 100_000, "days_outstanding": 20}
            | {"gst_e_invoiced": True},
            {"invoice_id": "3", "buyer_id": "B2", "amount_rupees": 100_000, "days_outstanding": 90},
        ],
    }
    out = await ask("supply_chain_finance", parse("scf_request", go))
    # Go: B1 holds 4 L of 5 L (80 % > 40 %); the TReDS candidate is invoice 1 alone (3 is 90
    # days old but not e-invoiced: Go's missing flag is false).
    assert (out.supplier, out.total, out.top_buyer, out.top_buyer_share) == (
        "SUP-7",
        5e5,
        "B1",
        0.8,
    )
    assert out.warnings == ("single-buyer concentration: B1 holds 80% of receivables",)
    assert out.overdue == 400_000
    assert out.advice == (
        "discount B1's Rs 300,000.00 outstanding over 45 days on TReDS",
        "e-invoice B2's Rs 100,000.00 outstanding over 45 days (GST IRN) to discount it on TReDS",
    )
    bad = go | {"invoices": [{"buyer_id": "B1", "amount_rupees": 1, "gst_e_invoiced": "maybe"}]}
    assert "field 'receivables.0.e_invoiced': Input should be a valid boolean" in refused(
        "scf_request", bad
    )


INVOICE_DISCOUNT = {
    "as_of_date": "2026-01-01",
    "annualised_rate_bp": 1000,
    "target_cash_rupees": 120_000,
    "invoices": [
        {"id": "A", "counterparty_rating": "AAA", "face_value_rupees": 100_000}
        | {"due_on": "2026-04-01"},
        {"id": "B", "counterparty_rating": "BBB", "face_value_rupees": 50_000}
        | {"due_on": "2026-01-31"},
        {"id": "C", "counterparty_rating": "BB", "face_value_rupees": 80_000}
        | {"due_on": "2026-03-02"},
        {"id": "D", "counterparty_rating": "AA", "face_value_rupees": 10_000}
        | {"due_on": "2025-12-15"},
    ],
}


async def test_invoice_discounting_at_go_request_wide_rate() -> None:
    out = await ask("invoice_discounter", parse("invoice_discount_request", INVOICE_DISCOUNT))
    # Go, at 10 % a year: A (AAA, 90 days) costs 100,000 x 0.10 x 90 / 365 = 2,465.75; B (BBB,
    # x1.5, 30 days) 50,000 x 0.15 x 30 / 365 = 616.44; C (BB, below BBB: x2, 60 days)
    # 80,000 x 0.20 x 60 / 365 = 2,630.14; D was due before the day: skipped. A and B raise
    # 97,534.25 + 49,383.56 = 146,917.81 net, past the 120,000 wanted; Go picks the same two.
    assert sorted(p.invoice_id for p in out.picks) == ["A", "B"]
    assert {p.invoice_id: p.annual_rate for p in out.picks} == {"A": 0.1, "B": 0.15}
    assert (out.face_value, out.cost, out.net_proceeds, out.reached) == (
        150_000,
        3082.19,
        146_917.81,
        True,
    )


async def test_invoice_discounting_target_is_cash_net_of_the_discount() -> None:
    # A alone has the face value asked (100,000) but raises 97,534.25 after its discount:
    # the target is not reached by A alone (Go's target is net cash too).
    go = INVOICE_DISCOUNT | {"target_cash_rupees": 100_000}
    out = await ask("invoice_discounter", parse("invoice_discount_request", go))
    assert sorted(p.invoice_id for p in out.picks) == ["A", "B"]
    just = go | {"target_cash_rupees": 97_534.25}
    out = await ask("invoice_discounter", parse("invoice_discount_request", just))
    assert ([p.invoice_id for p in out.picks], out.reached) == (["A"], True)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"as_of_date": ""}, "field 'as_of_date': YYYY-MM-DD, the day the days to each due_on"),
        (
            {"invoices": [{"id": "A", "face_value_rupees": 1, "due_on": "1 April"}]},
            "field 'invoices.0.due_on': a date, YYYY-MM-DD",
        ),
        (
            {"invoices": [{"id": "D", "face_value_rupees": 1, "due_on": "2025-12-15"}]},
            "field 'invoices': every invoice is due by 2026-01-01: none to discount",
        ),
    ],
)
def test_invoice_discounting_go_values_refused_naming_the_field(
    change: dict[str, Any], error: str
) -> None:
    assert error in refused("invoice_discount_request", INVOICE_DISCOUNT | change)


# --- Go's requests in the metadata: aa_fetcher, financial_supervisor, portfolio_advisor ---------
async def test_aa_fetch_takes_the_account_from_go_metadata() -> None:
    ledger = InMemoryConsentLedger()
    ledger.grant("user-1", "transactions")
    agent = AaFetcher("aa_fetcher", client=InMemoryFIClient.sample(), ledger=ledger)
    go = parse("aa_fetch_request", "")  # Go's content was empty
    out = await one(agent, go, metadata={"user_id": "user-1", "account_id": "acct-123"})
    assert (out.account_id, len(out.transactions)) == ("acct-123", 4)
    both = AaFetchRequest(account_id="acct-123")
    same = await one(agent, both, metadata={"user_id": "user-1", "account_id": "acct-123"})
    assert same == out
    with pytest.raises(ValueError, match="aa_fetcher: account_id differs between the payload"):
        await one(agent, both, metadata={"user_id": "user-1", "account_id": "acct-999"})
    with pytest.raises(ValueError, match="aa_fetcher: no account_id, in the payload or in the"):
        await one(agent, go, metadata={"user_id": "user-1"})
    with pytest.raises(ValueError, match="aa_fetcher: the account_id metadata must be text"):
        await one(agent, go, metadata={"user_id": "user-1", "account_id": 123})


async def test_finance_question_takes_the_csv_from_go_metadata() -> None:
    csv = "date,description,amount,type\n2026-01-01,RENT,25000.00,debit\n"
    sup = FinancialSupervisor("financial_supervisor")
    go = parse("finance_question", "How much rent?")
    assert go == FinanceQuestion(question="How much rent?", csv=None)
    assert await one(sup, go, metadata={"csv": csv}) == IngestCsv(csv=csv)
    bad = csv + "2026-01-02,X,12.345,debit\n"
    with pytest.raises(ValueError, match=r"financial_supervisor: line 3: amount '12\.345' has"):
        await one(sup, go, metadata={"csv": bad})
    with pytest.raises(ValueError, match="financial_supervisor: no csv, in the payload or in"):
        await one(sup, go)
    # The port's own request is still checked where it enters: a statement it leaves out too.
    assert "field 'csv': Field required" in refused("finance_question", {"question": "q"})
    assert "field 'csv': Value error, line 2" in refused(
        "finance_question", {"question": "q", "csv": bad.replace("RENT,25000.00", "RENT,x")}
    )


def test_portfolio_request_takes_go_free_text() -> None:
    assert parse("portfolio_request", "show portfolio") == PortfolioRequest()
    assert "Input should be an object" in refused("portfolio_request", 42)


# --- prepayment_advisor -------------------------------------------------------------------------
PREPAYMENT = {
    "prepayment_amount_rupees": 25_000,
    "borrower_slab_pct": 30,
    "loans": [
        {"name": "home", "outstanding_rupees": 30_000, "apr": 0.12, "months_remaining": 3}
        | {"is_fixed_rate": False, "tax_deductible": True},
        {"name": "car", "outstanding_rupees": 20_000, "apr": 0.10, "months_remaining": 2}
        | {"is_fixed_rate": True, "tax_deductible": False},
    ],
}


async def test_prepayment_splits_go_sum_dearest_after_tax_first() -> None:
    plan = await ask("prepayment_advisor", parse("prepayment_request", PREPAYMENT))
    # Go's order: the home loan costs 12 % x (1 - 30 %) = 8.4 % after tax, the car 10 %: the
    # car gets 20,000 (all of it) and the home loan the 5,000 left.
    car, home = plan.allocation
    assert [(o.loan_id, o.prepay, o.forecloses) for o in plan.allocation] == [
        ("car", 20_000, True),
        ("home", 5_000, False),
    ]
    # Car: EMI over 2 months at 10/12 % = 10,125.17; interest 166.67 + 83.68 = 250.35, all
    # saved by closing it (2 months sooner). Home: EMI over 3 months at 1 % = 10,200.66;
    # interest 300 + 200.99 + 101.00 = 601.99 before, 250 + 150.49 + 49.99 = 450.49 after
    # 5,000 off: 151.5 saved (Go: 151.51), the same three months; 70 % of it after tax.
    assert (car.interest_saved, car.months_saved, car.net_saving) == (250.35, 2, 250.35)
    assert (home.interest_saved, home.months_saved) == (151.5, 0)
    assert home.net_saving == round(151.505 * 0.7, 2)
    assert plan.allocation_net_saving == round(250.35 + home.net_saving, 2)
    # The whole sum on one loan: the home loan's 25,000 saves more than the car's 20,000.
    assert [o.loan_id for o in plan.options] == ["home", "car"]


@pytest.mark.parametrize(
    ("loan", "error"),
    [
        ({"months_remaining": 0}, "field 'loans.0.months_remaining': Input should be greater"),
        ({"apr": "twelve"}, "field 'loans.0.annual_rate_pct': Input should be a valid number"),
        ({"months_remaining": None}, "loan home: give emi or months_remaining (one of them)"),
    ],
)
def test_prepayment_go_values_refused_naming_the_field(loan: dict[str, Any], error: str) -> None:
    go = PREPAYMENT | {"loans": [PREPAYMENT["loans"][0] | loan]}  # type: ignore[index]
    assert error in refused("prepayment_request", go)


# --- claim_adjudicator --------------------------------------------------------------------------
GO_POLICY = {
    "product_code": "HEALTH-1",
    "waiting_period_days": 30,
    "sum_insured": 500_000,
    "deductible_rupees": 0,
    "copay_pct": 0,
    "exclusions": ["cosmetic", ""],
    "sub_limits": {"hospitalization": 100_000},
    "network_only_perils": ["hospitalization"],
}
GO_CLAIM = {
    "claim_id": "CLM-1",
    "policy_code": "POL-9",
    "incurred_rupees": 150_000,
    "peril": "hospitalization",
    "diagnosis": "Appendicitis",
    "days_since_issue": 400,
    "hospital_in_network": True,
}


@pytest.mark.parametrize(
    ("claim", "action", "payable", "reason"),
    [
        # Go: 150,000 capped by the peril's sub-limit of 1 L: approve_partial.
        ({}, "approve_partial", 100_000, "hospitalization: capped at the sublimit 100,000.00"),
        ({"incurred_rupees": 80_000}, "approve", 80_000, None),
        # Day 20 of a 30-day waiting period.
        ({"days_since_issue": 20}, "deny", 0, "incident within the 30-day waiting period"),
        # Go: a case-insensitive word of the diagnosis.
        (
            {"diagnosis": "Cosmetic rhinoplasty"},
            "deny",
            0,
            "the diagnosis matches the exclusion 'cosmetic'",
        ),
        # Go's missing flag is false: not at a network hospital.
        (
            {"hospital_in_network": None},
            "deny",
            0,
            "hospitalization: covered at network hospitals only",
        ),
        # Rs 2 L or more: a claims officer (Go: the same threshold).
        ({"incurred_rupees": 250_000}, "hitl", 100_000, "claims of 200,000 or more need a human"),
    ],
)
async def test_claim_adjudication_of_go_claims(
    claim: dict[str, Any], action: str, payable: float, reason: str | None
) -> None:
    go_claim = {k: v for k, v in (GO_CLAIM | claim).items() if v is not None}
    request = parse("claim_request", {"claim": go_claim, "policy": GO_POLICY})
    out = await ask("claim_adjudicator", request)
    assert (out.claim_id, out.action, out.payable) == ("CLM-1", action, payable)
    assert reason is None or any(reason in r for r in out.reasons), out.reasons


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"claim": {"incurred_rupees": 1}}, "field 'claim.peril': the claim's peril"),
        ({"claim": GO_CLAIM | {"days_since_issue": -1}}, "field 'claim.days_since_issue'"),
        ({"policy": GO_POLICY | {"sum_insured": 0}}, "field 'policy.sum_insured': a positive"),
        ({"policy": GO_POLICY | {"sub_limits": [1]}}, "field 'policy.sub_limits': an object"),
        ({"claim": GO_CLAIM | {"incurred_rupees": 0}}, "field 'items.0.amount': Input should"),
    ],
)
def test_claim_go_values_refused_naming_the_field(change: dict[str, Any], error: str) -> None:
    assert error in refused("claim_request", {"claim": GO_CLAIM, "policy": GO_POLICY} | change)


async def test_a_go_claim_under_the_deductible_is_denied() -> None:
    # Go answers approve_partial with a payout of 0; nothing paid is a denial here.
    policy = GO_POLICY | {"deductible_rupees": 100_000}
    go = {"claim": GO_CLAIM | {"incurred_rupees": 80_000}, "policy": policy}
    out = await ask("claim_adjudicator", parse("claim_request", go))
    assert (out.action, out.payable) == ("deny", 0)


# --- health_preauth -----------------------------------------------------------------------------
GO_PLAN = {
    "product_code": "HEALTH-1",
    "sum_insured_rupees": 300_000,
    "room_rent_sublimit_rupees": 5_000,
    "icu_rent_sublimit_rupees": 10_000,
    "copay_pct": 0.1,
    "ped_waiting_months": 48,
    "specific_waiting_months": 24,
    "excluded_procedures": ["Cosmetic surgery"],
    "procedure_package_rupees": {"cataract": 40_000},
}
GO_PREAUTH = {
    "preauth_id": "PA-1",
    "policy_code": "POL-9",
    "patient": "A. Kumar",
    "hospital_code": "H-12",
    "network_ppn": True,
    "procedure": "appendectomy",
    "is_pre_existing": False,
    "is_specific_waiting": False,
    "policy_months_at_admit": 30,
    "estimated_bill_rupees": 100_000,
    "room_rent_per_day_rupees": 4_000,
    "icu_rent_per_day_rupees": 0,
    "length_of_stay_days": 4,
    "icu_days": 0,
}


@pytest.mark.parametrize(
    ("change", "action", "approved"),
    [
        # Go: 1 L less the 10 % co-pay.
        ({}, "approve_with_deduction", 90_000),
        # Two ICU days at 15,000 against a 10,000 limit: 10,000 not paid, then the co-pay.
        ({"icu_days": 2, "icu_rent_per_day_rupees": 15_000}, "approve_with_deduction", 81_000),
        # Cataract's package rate caps 60,000 at 40,000, then the co-pay: 36,000.
        (
            {"procedure": "Cataract", "estimated_bill_rupees": 60_000},
            "approve_with_deduction",
            36e3,
        ),
        # 30 months into a 48-month pre-existing-disease wait; 20 into a 24-month one.
        ({"is_pre_existing": True}, "deny", 0),
        ({"is_specific_waiting": True, "policy_months_at_admit": 20}, "deny", 0),
        ({"is_pre_existing": True, "policy_months_at_admit": 48}, "approve_with_deduction", 9e4),
        ({"network_ppn": False}, "deny", 0),
        ({"procedure": "cosmetic SURGERY"}, "deny", 0),
    ],
)
async def test_preauth_of_go_requests(change: dict[str, Any], action: str, approved: float) -> None:
    request = parse("preauth_request", {"request": GO_PREAUTH | change, "plan": GO_PLAN})
    out = await ask("health_preauth", request)
    assert (out.request_id, out.action, out.approved_amount) == ("PA-1", action, approved)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"plan": GO_PLAN | {"sum_insured_rupees": 0}}, "field 'plan.sum_insured_rupees'"),
        ({"plan": GO_PLAN | {"procedure_package_rupees": 5}}, "'plan.procedure_package_rupees'"),
        ({"plan": GO_PLAN | {"copay_pct": 10}}, "field 'copay': Input should be less than or"),
        ({"request": GO_PREAUTH | {"length_of_stay_days": 0}}, "field 'stay_days': Input should"),
        ({"request": "PA-1"}, "field 'request': Go's request is a request and a plan"),
    ],
)
def test_preauth_go_values_refused_naming_the_field(change: dict[str, Any], error: str) -> None:
    assert error in refused("preauth_request", {"request": GO_PREAUTH, "plan": GO_PLAN} | change)


# --- synthetic_identity_detector ----------------------------------------------------------------
GO_APPLICATION = {
    "stated_age": 30,
    "bureau_tenure_months": 24,
    "name_on_pan": "Asha Kumar",
    "name_on_aadhaar": "Asha Kumar",
    "pan_number": "ABCPK1234F",
    "email_domain": "gmail.com",
    "phone_created_days": 400,
    "address_id": "addr-77",
    "address_velocity": 0,
}


@pytest.mark.parametrize(
    ("change", "verdict", "signals"),
    [
        ({}, "clear", ()),
        # Go: the PAN's 5th character against the last word of the PAN name.
        ({"pan_number": "ABCPS1234F"}, "review", ("pan_surname_mismatch",)),
        # Go's 0.3 + 0.3 + 0.15 + 0.2 = 0.95, high: a thin file, 4 KYCs at the address, a
        # disposable domain and a 10-day-old SIM.
        (
            {"bureau_tenure_months": 3, "address_velocity": 4, "email_domain": "Mailinator.com"}
            | {"phone_created_days": 10},
            "synthetic",
            ("thin_file", "shared_address", "fresh_contact", "disposable_email"),
        ),
        # Go's SIM age of 0 is unknown: not a fresh contact.
        ({"phone_created_days": 0}, "clear", ()),
    ],
)
async def test_synthetic_identity_of_go_applications(
    change: dict[str, Any], verdict: str, signals: tuple[str, ...]
) -> None:
    out = await ask(
        "synthetic_identity_detector", parse("synthetic_check", GO_APPLICATION | change)
    )
    assert (out.verdict, out.signals) == (verdict, signals)


def test_synthetic_go_values_refused_naming_the_field() -> None:
    bad = GO_APPLICATION | {"address_velocity": -1}
    assert "field 'kycs_at_address': Input should be greater than or equal to 0" in refused(
        "synthetic_check", bad
    )


# --- cashflow_underwriter -----------------------------------------------------------------------
def go_txn(day: str, rupees: float, text: str) -> dict[str, Any]:
    return {"date": day, "amount_cents": round(rupees * 100), "description": text}


GO_TRANSACTIONS = [
    go_txn("2026-01-01", 50_000, "SALARY ACME"),
    go_txn("2026-01-05", -15_000, "RENT JAN"),
    go_txn("2026-01-07", -10_000, "HDFC LOAN EMI"),
    go_txn("2026-02-01", 50_000, "SALARY ACME"),
    go_txn("2026-02-05", -15_000, "RENT FEB"),
    go_txn("2026-02-07", -10_000, "HDFC LOAN EMI"),
    go_txn("2026-02-09", -500, "I/W CHEQUE RETURN CHARGES"),
    go_txn("2026-03-01", 60_000, "SALARY ACME"),
    go_txn("2026-03-05", -15_000, "RENT MAR"),
    {"date": "2026-03-07", "amount_cents": -1_000_000, "category": "loan", "description": "X"},
]


async def test_underwriting_counts_go_transactions_by_month() -> None:
    request = parse("underwrite_request", {"transactions": GO_TRANSACTIONS})
    # Credits and debits by calendar month; Go's cues: "LOAN EMI" and the category "loan"
    # are debt service (30,000 over 3 months), "CHEQUE RETURN" a bounce.
    assert request.model_dump() == {
        "applicant_id": "",
        "monthly_inflows": (50_000, 50_000, 60_000),
        "monthly_outflows": (25_000, 25_500, 25_000),
        "monthly_debt_service": 10_000,
        "bounces": 1,
        "tenure_months": 3,
    }
    out = await ask("cashflow_underwriter", request)
    assert out.signals["bounce_rate"] == 75  # one bounce: -25


def test_underwriting_a_month_without_go_transactions_is_zero() -> None:
    gap = [t for t in GO_TRANSACTIONS if not t["date"].startswith("2026-02")]
    request = parse("underwrite_request", {"transactions": gap})
    assert request.model_dump()["monthly_inflows"] == (50_000, 0, 60_000)


@pytest.mark.parametrize(
    ("transactions", "error"),
    [
        ([], "field 'transactions': no transactions to underwrite"),
        ([go_txn("1 Jan", 1, "x")], "field 'transactions': Go transactions: each date YYYY-MM-DD"),
        ([{"date": "2026-01-01"}], "field 'transactions': Go transactions: Field required"),
        (GO_TRANSACTIONS[:3], "field 'transactions': 1 calendar month(s): the port underwrites 3"),
    ],
)
def test_underwriting_go_values_refused_naming_the_field(
    transactions: list[dict[str, Any]], error: str
) -> None:
    assert error in refused("underwrite_request", {"transactions": transactions})


# --- bulk_statement_analyzer --------------------------------------------------------------------
def go_record(account: str, day: str, text: str, rupees: float, kind: str) -> dict[str, Any]:
    return {"account_id": account, "date": day, "description": text} | {
        "amount_rupees": rupees,
        "type": kind,
    }


GO_RECORDS = [
    go_record("A", "2026-01-01", "SALARY ACME", 50_000, "credit"),
    go_record("A", "2026-01-05", "NEFT SELF", 10_000, "debit"),
    go_record("B", "2026-01-06", "NEFT SELF", 10_000, "credit"),
    go_record("B", "2026-01-01", "Salary  acme", 50_000, "credit"),
    go_record("A", "2026-02-05", "RENT, FLAT 4", 15_000.5, "debit"),
    go_record("A", "2026-03-05", "RENT, FLAT 4", 15_000.5, "debit"),
]


async def test_bulk_statements_from_go_records() -> None:
    request = parse("bulk_statement_request", {"applicant_id": "APP-1", "transactions": GO_RECORDS})
    out = await ask("bulk_statement_analyzer", request)
    # One statement per account. As in Go: B's salary is A's (same amount and description,
    # the same day): counted once; A's NEFT out and B's NEFT in, a day apart, are one
    # transfer: both go. Unlike Go, the rent paid in February and again in March is two
    # payments (Go drops a same-direction repeat whatever its date).
    assert (out.statements, out.transactions, out.duplicates_removed) == (2, 3, 1)
    assert out.transfers_removed == 1
    assert (out.total_income_cents, out.total_expense_cents) == (5_000_000, 3_000_100)


@pytest.mark.parametrize(
    ("record", "error"),
    [
        ({"type": "DR"}, "field 'transactions.0': a record with type credit or debit"),
        ({"amount_rupees": -5}, "field 'transactions.0': amount_rupees: 0 or more"),
        ({"date": "5 Jan"}, "field 'transactions.0': date: YYYY-MM-DD"),
    ],
)
def test_bulk_go_records_refused_naming_the_field(record: dict[str, Any], error: str) -> None:
    go = {"transactions": [GO_RECORDS[0] | record]}
    assert error in refused("bulk_statement_request", go)


# --- cyber_guardian -----------------------------------------------------------------------------
MUMBAI, DELHI = (19.07, 72.88), (28.61, 77.21)


def go_event(minute: int, ok: bool, device: str, where: tuple[float, float] = MUMBAI) -> Any:
    at = 1_767_225_600_000 + minute * 60_000  # 2026-01-01 00:00 UTC, in Go's milliseconds
    return {"user_id": "u1", "lat": where[0], "lng": where[1], "ip": "1.1.1.1"} | {
        "device_fingerprint": device,
        "unix_millis": at,
        "successful_auth": ok,
    }


@pytest.mark.parametrize(
    ("events", "action", "signals"),
    [
        # Mumbai at 00:00, Delhi (about 1,150 km) at 01:00: impossible between two successful
        # logins; three failures on two more devices: three devices in the window, churn.
        (
            [
                go_event(0, True, "d1"),
                *(go_event(m, False, d) for m, d in ((10, "d2"), (20, "d2"), (30, "d3"))),
                go_event(60, True, "d1", DELHI),
            ],
            "block",
            ("impossible_travel", "device_churn"),
        ),
        # Five failures, then a success from a device not enrolled.
        (
            [*(go_event(m, False, "d1") for m in range(5)), go_event(6, True, "d9")],
            "step_up",
            ("credential_stuffing", "device_drift"),
        ),
        # A success from an enrolled device after four failures: Go's 0.15 (low); no signal.
        ([*(go_event(m, False, "d1") for m in range(4)), go_event(6, True, "d1")], "allow", ()),
    ],
)
async def test_session_check_of_go_event_windows(
    events: list[dict[str, Any]], action: str, signals: tuple[str, ...]
) -> None:
    go = {"user_id": "u1", "events": events, "known_device_fps": ["d1"]}
    out = await ask("cyber_guardian", parse("session_check", go))
    assert (out.user_id, out.action, out.signals) == ("u1", action, signals)


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ([go_event(0, False, "d1")], "field 'events': no successful login to check"),
        ("none", "field 'events': a list of events"),
        ([go_event(0, True, "d1") | {"unix_millis": 1.5}], "field 'events': unix_millis: whole"),
        ([go_event(0, True, "d1") | {"lat": 91}], "field 'current.latitude': Input should be"),
    ],
)
def test_session_go_values_refused_naming_the_field(events: Any, error: str) -> None:
    assert error in refused("session_check", {"user_id": "u1", "events": events})


async def test_session_previous_login_device_is_not_checked_again() -> None:
    # Without a window the port's rule is unchanged: only the current login's device.
    previous = {"at": "2026-01-01T00:00:00Z", "latitude": 0, "longitude": 0, "ip": "1"}
    check = {
        "user_id": "u1",
        "previous": previous | {"device_id": "d9"},
        "current": previous | {"at": "2026-01-01T01:00:00Z", "device_id": "d1"},
        "known_devices": ["d1"],
    }
    out = await ask("cyber_guardian", parse("session_check", check))
    assert (out.action, out.signals) == ("allow", ())


# --- invoice_processor --------------------------------------------------------------------------
GO_INVOICE = {
    "irn": "ab" * 32,
    "supplier_gstin": "27AAPFU0939F1ZV",
    "buyer_gstin": "29AABCT1332L1ZT",
    "invoice_no": "INV-42",
    "invoice_date": "2026-01-10",
    "items": [
        {"hsn": "8471", "description": "laptops", "quantity": 10, "unit_price_rupees": 50_000}
        | {"gst_pct": 18, "line_total_rupees": 590_000},
        {"hsn": "4820", "description": "notebooks", "quantity": 100, "unit_price_rupees": 100}
        | {"gst_pct": 12, "line_total_rupees": 11_200},
    ],
    "total_rupees": 601_200,
    "po_reference": "PO-7",
    "grn_reference": "GRN-7",
}
GO_REFERENCE = {
    "po_total_rupees": 601_200,
    "grn_qty_by_hsn": {"8471": 10, "4820": 100},
    "vendor_active": True,
}


@pytest.mark.parametrize(
    ("invoice", "reference", "action", "problems"),
    [
        # Go: every check passes, confidence 1.0: post. Two GST rates, one per line.
        ({}, {}, "post", ()),
        # Go: an inactive vendor costs 0.25 (0.75 < 0.8): hold.
        ({}, {"vendor_active": False}, "hold", ("the supplier is not active in the vendor",)),
        # Go: a total 1,200 away from the PO's (beyond Rs 100): hold.
        ({}, {"po_total_rupees": 600_000}, "hold", ("total 601,200.00 vs the PO's 600,000.00",)),
    ],
)
async def test_invoice_processing_of_go_requests(
    invoice: dict[str, Any], reference: dict[str, Any], action: str, problems: tuple[str, ...]
) -> None:
    go = {"invoice": GO_INVOICE | invoice, "reference": GO_REFERENCE | reference}
    packet = parse("invoice_packet", go)
    assert isinstance(packet, InvoicePacket)
    assert (packet.invoice.taxable_value, packet.invoice.gst_amount) == (510_000, 91_200)
    out = await ask("invoice_processor", packet)
    assert (out.invoice_number, out.action) == ("INV-42", action)
    assert len(out.problems) == len(problems)
    assert all(p.startswith(want) for p, want in zip(out.problems, problems, strict=True))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"invoice": GO_INVOICE | {"items": []}}, "field 'invoice.items': one item or more"),
        (
            {"invoice": GO_INVOICE | {"items": [{"hsn": "1", "quantity": "ten"}]}},
            "field 'invoice.items.0': quantity, unit_price_rupees and gst_pct: numbers",
        ),
        (
            {"reference": GO_REFERENCE | {"grn_qty_by_hsn": [10]}},
            "field 'reference.grn_qty_by_hsn': an object of HSN -> quantity",
        ),
    ],
)
def test_invoice_go_values_refused_naming_the_field(change: dict[str, Any], error: str) -> None:
    go = {"invoice": GO_INVOICE, "reference": GO_REFERENCE} | change
    assert error in refused("invoice_packet", go)


# --- auto_insurance -----------------------------------------------------------------------------
GO_MOTOR = {
    "kind": "renewal_quote",
    "policy_number": "MOTOR-12345",
    "vehicle_reg": "MH01AB1234",
    "idv_rupees": 500_000,
    "est_repair_cost_rupees": 0,
    "incident_type": "",
    "lat": 19.05,
    "lng": 72.85,
    "hours_to_expiry": 48,
    "ncb_pct": 20,
    "claimed_this_year": False,
    "zero_dep_addon": True,
}
EXPIRING = "expires within 72 hours: driving uninsured is an offence under the Motor Vehicles Act"


@pytest.mark.parametrize(
    ("change", "ncb", "premium", "detail"),
    [
        # A clean year: 20 % climbs to 25 %. Own damage 3 % of 5 L = 15,000 x 0.75 = 11,250,
        # x 1.10 for zero-dep = 12,375, plus 2,094 third party = 14,469. 48 hours left: warned.
        ({}, 0.25, 14_469, EXPIRING),
        # A claim this year resets the NCB: 15,000 x 1.10 + 2,094 = 18,594.
        ({"claimed_this_year": True}, 0.0, 18_594, EXPIRING),
        # 50 % stays 50 %; no add-on: 7,500 + 2,094 = 9,594. Go's 0 hours is not told.
        ({"ncb_pct": 50, "zero_dep_addon": False, "hours_to_expiry": 0}, 0.5, 9_594, ""),
        # 0 % climbs to 20 %: 12,000 x 1.10 + 2,094 = 15,294; 72 hours is not within 72.
        ({"ncb_pct": 0, "hours_to_expiry": 72}, 0.2, 15_294, ""),
        # Go matched the kind in any case.
        ({"kind": "Renewal_Quote"}, 0.25, 14_469, EXPIRING),
    ],
)
async def test_motor_renewal_of_go_requests(
    change: dict[str, Any], ncb: float, premium: float, detail: str
) -> None:
    out = await ask("auto_insurance", parse("motor_request", GO_MOTOR | change))
    assert (out.policy_id, out.action, out.ncb, out.premium) == (
        "MOTOR-12345",
        "quote",
        ncb,
        premium,
    )
    assert out.detail == detail


@pytest.mark.parametrize(
    ("change", "action", "payable", "garages"),
    [
        # Go's example: 4 L of repairs on a 5 L IDV is beyond 75 % (3.75 L): a total loss,
        # the IDV less the Rs 1,000 deductible.
        ({"kind": "fnol", "est_repair_cost_rupees": 400_000}, "total_loss", 499_000, ()),
        # 1 L in Delhi's box: a repair (99,000 after the deductible) at Delhi's garages.
        (
            {"kind": "fnol", "est_repair_cost_rupees": 100_000, "lat": 28.6, "lng": 77.2},
            "repair",
            99_000,
            ("Karol Bagh Garage", "Okhla Service Hub"),
        ),
        # Roadside in Bengaluru's box; Go sends no IDV (0) for it.
        (
            {"kind": "roadside", "idv_rupees": 0, "lat": 12.97, "lng": 77.59},
            "dispatch",
            0,
            ("Koramangala Autoworks", "Whitefield Car Clinic"),
        ),
        # Go's zero location (and a point outside every box): no network garage.
        ({"kind": "roadside", "lat": 0, "lng": 0}, "dispatch", 0, ()),
        ({"kind": "roadside", "lat": 26.9, "lng": 75.8}, "dispatch", 0, ()),
    ],
)
async def test_motor_claims_and_roadside_located_by_go_coordinates(
    change: dict[str, Any], action: str, payable: float, garages: tuple[str, ...]
) -> None:
    out = await ask("auto_insurance", parse("motor_request", GO_MOTOR | change))
    assert (out.action, out.payable, out.garages) == (action, payable, garages)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"ncb_pct": 30}, "field 'ncb_pct': the NCB now, a step of the ladder [0, 20, 25"),
        ({"claimed_this_year": "no"}, "field 'claimed_this_year': true or false"),
        ({"lat": 95}, "field 'latitude': Input should be less than or equal to 90"),
        ({"lng": None}, "latitude and longitude: give both or neither"),
        ({"kind": "fnol", "idv_rupees": 0}, "idv (the insured declared value) is needed for fnol"),
        ({"hours_to_expiry": -5}, "field 'hours_to_expiry': Input should be greater than or"),
        ({"claim_free_years": 2}, "field 'claim_free_years': given twice"),
        ({"city": "Delhi"}, "city 'Delhi', but the coordinates are in mumbai"),
    ],
)
def test_motor_go_values_refused_naming_the_field(change: dict[str, Any], error: str) -> None:
    assert error in refused("motor_request", GO_MOTOR | change)


# --- sme_loan_workflow --------------------------------------------------------------------------
GO_SME = {
    "borrower_id": "sme-7891",
    "udyam_registered": True,
    "sector": "manufacturing",
    "annual_turnover_rupees": 20_000_000,
    "gst_filing_regular": True,
    "requested_amount_rupees": 3_000_000,
    "requested_tenor_months": 36,
    "cashflow_score_0_1": 0.75,
    "collateral_rupees": 0,
}


@pytest.mark.parametrize(
    ("change", "status", "amount", "rate", "months", "emi", "cgtmse"),
    [
        # Go's example: 30 L of the 60 L cap (30 % of 2 cr) at 10.5 + (1 - 0.75) x 5 - 0.5
        # (CGTMSE) = 11.25 %, 36 months: r = 0.009375, (1 + r)^36 = 1.39925, EMI 3,000,000 x
        # r x 1.39925 / 0.39925 = 98,572 (Go: 98,571.70; its doc's 98,345.67 is not its code's).
        ({}, "sanctioned", 3_000_000, 11.25, 36, 98_572, True),
        # 80 L asked: capped at 30 % of turnover, 60 L; twice the EMI.
        ({"requested_amount_rupees": 8_000_000}, "sanctioned", 6_000_000, 11.25, 36, 197_143, True),
        # The floor exactly: 10.5 + 0.7 x 5 - 0.5 = 13.5 %.
        ({"cashflow_score_0_1": 0.30}, "sanctioned", 3_000_000, 13.5, 36, 101_806, True),
        # Not Udyam-registered, or a sector CGTMSE does not cover: no relief, 11.75 %.
        ({"udyam_registered": False}, "sanctioned", 3_000_000, 11.75, 36, 99_285, False),
        ({"sector": "agriculture"}, "sanctioned", 3_000_000, 11.75, 36, 99_285, False),
        # Go's 0 tenor: the port's 60 months.
        ({"requested_tenor_months": 0}, "sanctioned", 3_000_000, 11.25, 60, 65_602, True),
        # Below Go's cash-flow floor of 0.30, and (the port's rule) irregular GST filing.
        ({"cashflow_score_0_1": 0.29}, "declined", 0, 0, 0, 0, True),
        ({"gst_filing_regular": False}, "declined", 0, 0, 0, 0, False),
    ],
)
async def test_sme_offer_from_go_applications(
    change: dict[str, Any],
    status: str,
    amount: float,
    rate: float,
    months: int,
    emi: int,
    cgtmse: bool,
) -> None:
    offer = await ask("sme_loan_workflow", parse("sme_loan_request", GO_SME | change))
    got = (offer.status, offer.amount, offer.annual_rate_pct, offer.tenure_months, offer.emi)
    assert got == (status, amount, rate, months, emi)
    assert offer.business_id == "sme-7891"
    if status == "sanctioned":
        assert offer.cgtmse == cgtmse
        assert offer.steps[0].detail == "GST filing regular; no GSTIN given"


async def test_sme_decline_names_the_go_input() -> None:
    for change, detail in (
        ({"cashflow_score_0_1": 0.29}, "cash-flow score 0.29 below 0.30"),
        ({"gst_filing_regular": False}, "GST filing not regular (the last 12 returns not all"),
    ):
        offer = await ask("sme_loan_workflow", parse("sme_loan_request", GO_SME | change))
        (failed,) = [s for s in offer.steps if s.status == "failed"]
        assert failed.detail.startswith(detail)


async def test_sme_both_cash_flow_inputs_both_apply() -> None:
    # Monthly surplus 1,000,000 - 800,000 - 50,000 = 150,000 with Go's score 0.75 (11.25 %,
    # 36 months): half the surplus, 75,000, services 75,000 x 3,000,000 / 98,571.70 =
    # 2,282,602 of the 30 L asked.
    flows = {"monthly_inflows": [1_000_000] * 3, "monthly_outflows": [800_000] * 3}
    offer = await ask(
        "sme_loan_workflow", parse("sme_loan_request", GO_SME | flows | {"existing_emi": 50_000})
    )
    assert (offer.amount, offer.annual_rate_pct) == (2_282_602, 11.25)
    assert offer.steps[1].detail == "monthly surplus 150,000.00, cash-flow score 0.75"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"cashflow_score_0_1": 1.5}, "field 'cashflow_score': Input should be less than or"),
        ({"requested_tenor_months": -3}, "field 'tenure_months': Input should be greater than"),
        ({"annual_turnover_rupees": 0}, "field 'annual_turnover': Input should be greater than"),
        ({"gst_returns_on_time": 10}, "gst_filing_regular True disagrees with 10/12 returns"),
        ({"cashflow_score_0_1": None}, "the cash flow: give monthly_inflows and monthly_outflows"),
        ({"borrower_id": 7}, "field 'business_id': Input should be a valid string"),
        ({"sector": ""}, "field 'sector': the borrower's sector (manufacturing, services"),
    ],
)
def test_sme_go_values_refused_naming_the_field(change: dict[str, Any], error: str) -> None:
    assert error in refused("sme_loan_request", GO_SME | change)
