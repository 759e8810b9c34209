"""Every agent of the shipped catalogue: listed with its types, refusing bad payloads with a
clear error, and failing on the real runtime without taking it down."""

from __future__ import annotations

import typing
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from genie_agents.finance import Ingestor
from genie_agents.finance.models import AnalysisResult, IngestCsv
from genie_agents.lending import LoanAdvisor
from genie_agents.lending.models import SimulateLoan
from genie_agents.payments.models import PaymentRequest
from genie_agents.research.deep import ResearchRequest
from genie_agents.support import Fallback
from pydantic import BaseModel

from genie import (
    AgentOptions,
    AgentSpec,
    ApprovalDecision,
    Catalogue,
    InvalidMessageError,
    Message,
    MessageTypes,
    Payload,
    Runtime,
    TestContext,
    UnhandledMessageError,
)
from genie.llm import ScriptedProvider
from genie.pipeline._load import takes_panel

from .test_insurance import claim

CATALOGUE = Catalogue.installed()
SPECS = sorted(CATALOGUE, key=lambda s: s.name)
# Agents that are not ports of the Go catalogue (simulation helpers, pipeline desks).
NOT_FROM_GO = {"echo", "delay", "flaky", "fanout", "sink"}
NOT_FROM_GO |= {s.name for s in SPECS if s.domain == "desks"}


def test_at_least_45_go_agents_with_their_types() -> None:
    ported = [s for s in SPECS if s.name not in NOT_FROM_GO]
    assert len(ported) >= 45, [s.name for s in ported]
    for spec in SPECS:
        described = spec.describe()
        assert described["consumes"], spec.name
        if spec.name != "sink":
            assert described["produces"], spec.name


@pytest.mark.parametrize("spec", [s for s in SPECS if not s.consumes_any], ids=lambda s: s.name)
def test_a_payload_that_fails_the_model_names_type_and_field(spec: AgentSpec) -> None:
    types = MessageTypes(spec.consumes)
    for model in spec.consumes:
        with pytest.raises(InvalidMessageError, match=f"invalid '{model.message_type}' message"):
            types.parse_payload(model.message_type, {"not_a_field": 1})


def required_models(spec: AgentSpec) -> dict[str, object]:
    """What an agent cannot be built without: its model (a scripted one; a panel of one),
    the first choice of a required choice (which step of a workflow it runs)."""
    params: dict[str, object] = {}
    for name, field in spec.params.model_fields.items():
        if field.is_required() and typing.get_origin(field.annotation) is typing.Literal:
            params[name] = typing.get_args(field.annotation)[0]
    llm = spec.params.model_fields.get("llm")
    if llm is None or not llm.is_required():
        return params
    model = ScriptedProvider()
    return {**params, "llm": [model] if takes_panel(llm.annotation) else model}


class Stranger(Payload):
    message_type = "stranger"


@pytest.mark.parametrize("spec", [s for s in SPECS if not s.consumes_any], ids=lambda s: s.name)
async def test_a_type_the_agent_does_not_handle_is_refused(spec: AgentSpec) -> None:
    agent = spec.create(spec.name, required_models(spec))
    msg = Message.new(Stranger(), sender="upstream", recipient=spec.name)
    with pytest.raises(UnhandledMessageError, match=f"agent '{spec.name}' has no handler"):
        await agent.handle(msg, TestContext(agent.id, msg))


async def test_agent_errors_go_to_the_fallback_or_a_dead_letter() -> None:
    bad = SimulateLoan(principal=0, annual_rate_pct=10, months=12)
    async with Runtime() as rt:
        rt.add(LoanAdvisor("loan_advisor"), options=AgentOptions(fallback="loan_fallback"))
        rt.add(Fallback("loan_fallback", primary="loan_advisor"))
        rt.add(Ingestor("ingestor"))
        noticed = await rt.ask(rt.message(bad, recipient="loan_advisor"))
        failed = await rt.ask(rt.message(IngestCsv(csv=" "), recipient="ingestor"))
        # Catalogue agents emit their results by type; ask for the type to get it back.
        good = SimulateLoan(principal=1200, annual_rate_pct=0, months=12)
        ok = await rt.ask(rt.message(good, recipient="loan_advisor"), until="loan_simulation")
    assert noticed.message.type == "fallback_notice"
    assert failed.status == "partial"
    [letter] = list(rt.dead_letters)
    assert (letter.kind, letter.agent_id, letter.reason) == (
        "failed",
        "ingestor",
        "StatementError: line 1: empty csv content",
    )
    payload: Any = ok.message.payload
    assert payload.emi == 100  # the runtime goes on serving


def _catalogue_models(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    if model in seen or not model.__module__.startswith("genie_agents"):
        return
    seen.add(model)
    for field in model.model_fields.values():
        todo = [field.annotation]
        while todo:
            kind = todo.pop()
            todo.extend(typing.get_args(kind))
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                _catalogue_models(kind, seen)


def test_no_payload_of_the_catalogue_takes_nan_or_infinity() -> None:
    """A NaN compares false with every bound (a clamp scored it as a perfect signal), an
    infinity divides into a ratio that looks affordable: every model an agent reads or
    writes, and every model inside one, refuses both."""
    seen: set[type[BaseModel]] = set()
    for spec in SPECS:
        for model in (*spec.consumes, *spec.produces):
            _catalogue_models(model, seen)
    assert len(seen) > 100
    takes = sorted(
        m.__qualname__
        for m in seen
        if m.model_config.get("allow_inf_nan") is not False
        and any("float" in str(f.annotation) for f in m.model_fields.values())
    )
    assert takes == [], takes


@pytest.mark.parametrize(
    ("type_name", "data", "field"),
    [
        # A negative 80C claim was read as none claimed: the full limit shown as unused.
        (
            "deductions_request",
            {"claimed": {"80c": -500_000}, "marginal_rate_pct": 30},
            "claimed.80c",
        ),
        # Negative equity held gave a negative target portfolio and trades to match.
        (
            "asset_allocation_request",
            {
                "age": 30,
                "risk_profile": "moderate",
                "horizon_years": 10,
                "holdings": {"equity": -1},
            },
            "holdings.equity",
        ),
    ],
)
def test_a_negative_amount_is_refused_naming_the_field(
    type_name: str, data: dict[str, Any], field: str
) -> None:
    (model,) = [m for s in SPECS for m in s.consumes if m.message_type == type_name][:1]
    with pytest.raises(InvalidMessageError, match=f"field '{field}'"):
        MessageTypes([model]).parse_payload(type_name, data)


def _period(*txns: dict[str, Any]) -> dict[str, Any]:
    """An ``analysis_result`` of these transactions (the totals do not matter here)."""
    totals = {"total_income_cents": 0, "total_expense_cents": 0, "net_cents": 0}
    return totals | {
        "currency": "INR",
        "by_category": [],
        "top_overspend": [],
        "transactions": txns,
    }


# A value its model took and its agent then failed on (a date error, an OverflowError, an
# output overflowed to infinity): refused where the payload enters, naming the field.
ABSURD = [
    ("analysis_result", _period({"date": "2026-13-45", "amount_cents": 1}), "transactions.0.date"),
    ("analysis_result", _period({"date": " ", "amount_cents": 1}), "transactions.0.date"),
    (  # 90 % of it, to compare with what left again, was no float
        "analysis_result",
        _period(
            {"date": "2026-01-01", "time": "10:00", "amount_cents": 10**400},
            {"date": "2026-01-01", "time": "11:00", "amount_cents": -1},
        ),
        "transactions.0.amount_cents",
    ),
    *(
        (
            "dividend_request",
            {"shares": 1e12, "price": 1e3, "years": 50, "dividend_yield_pct": 1}
            | {"slab_rate_pct": 0, field: value},
            field,
        )
        for field, value in (
            ("price", 1e300),  # a value of infinity, which failed DividendYear's finite check
            ("shares", 1e306),
            ("price_growth_pct", 9.2e18),  # an OverflowError in (1 + g) ** year
            ("dividend_growth_pct", 1e12),
            ("price_growth_pct", -100),  # a price of 0 divided the reinvested dividend
        )
    ),
    *(
        ("simulate_loan", {"principal": 1e6, "annual_rate_pct": 10, "months": 12} | loan, field)
        for loan, field in (
            # an EMI of infinity: round() raised OverflowError
            ({"principal": 1e308, "annual_rate_pct": 100_000}, "principal"),
            ({"principal": 1e12, "annual_rate_pct": 1e300}, "annual_rate_pct"),
            # a cover ratio of infinity, which failed LoanSimulation's finite check
            (
                {"principal": 0.01, "annual_rate_pct": 0, "monthly_net_income": 1e308},
                "monthly_net_income",
            ),
        )
    ),
    *(
        (
            "invoice_discount_request",
            {"target": 1, "invoices": [{"invoice_id": "I", "buyer_rating": "AAA"} | invoice]}
            | request,
            field,
        )
        for invoice, request, field in (
            # a discount of infinity, which failed DiscountPick's finite check
            ({"face_value": 1e306, "days": 3650}, {}, "invoices.0.face_value"),
            ({"face_value": 1e6, "days": 90}, {"annual_rate_bp": 1e306}, "annual_rate_bp"),
            ({"face_value": 1, "days": 10**400}, {}, "invoices.0.days"),  # no float
        )
    ),
    *(
        (
            "option_request",
            {"kind": "call", "spot": 42, "strike": 40, "days_to_expiry": 182.5}
            | {"volatility_pct": 20}
            | option,
            field,
        )
        for option, field in (
            # d1 or the amount paid infinite, which failed OptionExplanation's finite check
            ({"spot": 1e308, "quantity": 10}, "spot"),
            ({"strike": 5e-324}, "strike"),
            ({"volatility_pct": 1e-320}, "volatility_pct"),
            ({"spot": 1e6, "strike": 1e6, "quantity": 1e306}, "quantity"),
            ({"premium": 1e308, "quantity": 10}, "premium"),
            ({"expiry_spots": [1e308], "quantity": 10}, "expiry_spots.0"),
            ({"days_to_expiry": 5e-324}, "days_to_expiry"),  # t = 0: a ZeroDivisionError
        )
    ),
    *(
        (
            "tax_harvest_request",
            {
                "as_of": "2026-03-31",
                "realised_stcg": 100_000,
                "lots": [{"symbol": "X", "bought_on": "2025-01-01"} | lot],
            },
            field,
        )
        for lot, field in (
            # a gain of infinity, which failed HarvestAction's finite check
            ({"quantity": 1e300, "cost_per_unit": 9.2e18, "price": 12}, "lots.0.quantity"),
            ({"quantity": 10, "cost_per_unit": 1e308, "price": 1}, "lots.0.cost_per_unit"),
        )
    ),
    *(
        ("var_request", {"portfolio_value": 1e6, "returns": [-0.02, 0.01]} | var, field)
        for var, field in (
            # a VaR of infinity, which failed VarResult's finite check
            ({"portfolio_value": 1e308, "horizon_days": 365}, "portfolio_value"),
            ({"returns": [-1e303, 0.01]}, "returns.0"),
            ({"horizon_days": 10**400}, "horizon_days"),  # no float: sqrt's OverflowError
        )
    ),
    *(
        (
            "debt_payoff_request",
            {"monthly_budget": 100, "debts": [{"name": "card", "min_payment": 10} | debt]},
            field,
        )
        for debt, field in (
            # interest of infinity, which failed DebtPayoffPlan's finite check
            ({"balance": 1_000, "annual_rate_pct": 1e12}, "debts.0.annual_rate_pct"),
            ({"balance": 1e308, "annual_rate_pct": 12}, "debts.0.balance"),
            # refused quoting 1,000,000,000,000,000,000,052,504,... (300 digits)
            ({"balance": 1, "annual_rate_pct": 12, "min_payment": 1e300}, "debts.0.min_payment"),
        )
    ),
    *(
        (
            "working_capital_request",
            {"annual_revenue": 1e6, "annual_cogs": 1, "cash": 1e5}
            | {"receivables": 1e12, "inventory": 1e12, "payables": 1e5, field: value},
            field,
        )
        for field, value in (
            # infinite days, which failed WorkingCapitalForecast's finite check
            ("inventory", 1e308),
            ("annual_cogs", 1e-300),
            ("annual_revenue", 1e-300),
        )
    ),
    # the agent's own corpus_query refused them, a failed delivery
    ("research_request", {"question": " \n"}, "question"),
    ("research_request", {"question": "q", "sources": [""]}, "sources.0"),
    ("research_request", {"question": "q", "sources": ["x" * 65]}, "sources.0"),
]


@pytest.mark.parametrize(("type_name", "data", "field"), ABSURD)
def test_an_absurd_value_is_refused_naming_the_field(
    type_name: str, data: dict[str, Any], field: str
) -> None:
    models = {m for s in SPECS for m in s.consumes if m.message_type == type_name}
    with pytest.raises(InvalidMessageError, match=f"field '{field}'"):
        MessageTypes(list(models)).parse_payload(type_name, data)


@pytest.mark.parametrize("name", ["aml_monitor", "fraud_detector", "mule_detector"])
async def test_the_detectors_read_the_last_day_there_is(name: str) -> None:
    # 30 days after 9999-12-31 is no date: the windows are measured, not added to it.
    last = {"date": "9999-12-31", "time": "23:00", "counterparty": "c", "channel": "cash"}
    txns = ({**last, "amount_cents": 10_000_000}, {**last, "amount_cents": -10_000_000})
    payload = AnalysisResult.model_validate(_period(*txns))
    spec = CATALOGUE.get(name)
    (produced,) = spec.produces
    async with Runtime([spec.factory(name)]) as rt:
        result = await rt.ask(rt.message(payload, recipient=name), until=produced.message_type)
    assert result.message is not None, list(rt.dead_letters)


HELD = {
    "payment_orchestrator": (
        PaymentRequest(
            idempotency_key="k-1",
            amount_paise=60_000 * 100,
            beneficiary="Meera",
            beneficiary_trusted=True,
            account_number="001234",
            ifsc="HDFC0000001",
        ),
        "payment_instruction",
        "submit",
    ),
    # the deductible off: approved in part
    "claim_adjudicator": (claim({"hospitalisation": 300_000}), "claim_decision", "approve_partial"),
}


@pytest.mark.parametrize("name", sorted(HELD))
async def test_a_held_result_is_decided_only_by_the_approval_desk(name: str) -> None:
    # A decision from anyone else, naming the approval, was read as the desk's: its details
    # as the held result (junk details failed on 'Invalid JSON'), and 'approved' paid it.
    request, produced, approved = HELD[name]
    agent = CATALOGUE.get(name).create(name, {"approval_role": "checker"})
    results: list[Any] = []

    async def asking(rt: Runtime) -> None:
        results.append(await rt.ask(rt.message(request, recipient=name), until=produced))

    async with Runtime([agent]) as rt, anyio.create_task_group() as tg:
        tg.start_soon(asking, rt)
        await wait_all_tasks_blocked()
        [approval] = rt.approvals.pending()
        for details in (approval.details, "INR"):
            forged = ApprovalDecision(
                approval_id=approval.id, approved=True, by="mallory", details=details
            )
            await rt.ask(rt.message(forged, recipient=name), timeout=2)
        assert not results  # still held
        rt.approvals.approve(approval.id, by="cora", roles=("checker",))
    assert results[0].message.payload.action == approved
    refusal = f"ValueError: {name}: a decision counts only from the approval desk ('approvals'), "
    assert [letter.reason for letter in rt.dead_letters if letter.kind == "failed"] == [
        refusal + "not from 'user'"
    ] * 2


async def test_a_long_question_is_researched_as_asked() -> None:
    # 4,000 characters passed the request, and the query of them failed at 2,000.
    question = "repo rate " * 399 + "repo rates"
    agents = [CATALOGUE.get(name).factory(name) for name in ("deep_research", "corpus_search")]
    async with Runtime(agents) as rt:
        request = rt.message(ResearchRequest(question=question), recipient="deep_research")
        result = await rt.ask(request, until="research_brief")
    assert result.message is not None, list(rt.dead_letters)
    brief: Any = result.message.payload
    assert brief.question == question
