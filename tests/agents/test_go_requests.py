"""Go-shaped requests (issue 23): recorded Go JSON is accepted and means what it meant in Go.

``go_requests/corpus.json`` holds requests written as the Go system's request structs
(field names and units: paise, percent, bucket keys), each with the same request in the
port's canonical form. Each is sent as JSON through the real runtime; the answer must equal
the canonical request's answer, and the parsed payload must be the canonical payload. Where
Go sent part of its request in the message's metadata (``"metadata"``: a CSV, an account
id), the Go payload is the canonical one without those fields, sent with that metadata
(``"canonical_metadata"``: what both carry, as the user id). ``"clock_fields"`` name the
answer's fields stamped from the run's clock (a deadline), left out of the comparison.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from genie_agents._go import GoName, go_names
from genie_agents.advisory.moa import MoaRecommender
from genie_agents.connectors.aa import AaFetcher, InMemoryFIClient
from genie_agents.connectors.portfolio import PortfolioAdvisor
from genie_agents.connectors.vault import TokenVault
from genie_agents.finance.receipts import ReceiptOcr
from genie_agents.fraud.models import KycRequest
from genie_agents.lending.models import SimulateLoan
from genie_agents.markets.trends import GoogleTrends, InMemoryTrendFetcher
from genie_agents.payments.models import PaymentRequest
from genie_agents.research.deep import CorpusSearch, DeepResearch
from genie_agents.support.review import Auditor
from genie_agents.tax.models import TaxEstimateRequest
from genie_agents.treasury.models import AlmRequest

from genie import Agent, Catalogue, InvalidMessageError, MessageTypes, Payload, Runtime
from genie.llm import ScriptedProvider
from genie.llm._config import ScriptedAnswer, ScriptedToolCall
from genie.policies import InMemoryConsentLedger

from .helpers import ask

CORPUS = json.loads((Path(__file__).parent / "go_requests" / "corpus.json").read_text())
CATALOGUE = Catalogue.installed()
# The agents whose payload models take Go's request structs (docs/catalogue.md, "Migrating
# from the Go system"); the corpus must hold a request for each.
GO_SHAPED = {
    "aa_fetcher",
    "advance_tax_planner",
    "alm_agent",
    "asset_allocator",
    "auto_insurance",
    "bulk_statement_analyzer",
    "cashflow_underwriter",
    "claim_adjudicator",
    "complaint_triage",
    "currency_converter",
    "cyber_guardian",
    "debt_optimizer",
    "deductions_optimizer",
    "deep_research",
    "dividend_planner",
    "emergency_fund_advisor",
    "financial_educator",
    "financial_supervisor",
    "goal_planner",
    "google_trends",
    "h_supervisor",
    "health_preauth",
    "ingestor",
    "invoice_discounter",
    "invoice_processor",
    "kyc_orchestrator",
    "lcr_projector",
    "llm_auditor",
    "loan_advisor",
    "macro_research",
    "mf_screener",
    "moa_recommender",
    "options_explainer",
    "payment_orchestrator",
    "phishing_classifier",
    "portfolio_advisor",
    "prepayment_advisor",
    "rate_watcher",
    "receipt_ocr",
    "sip_vs_lumpsum",
    "sme_loan_workflow",
    "supply_chain_finance",
    "synthetic_identity_detector",
    "tax_estimator",
    "tax_harvester",
    "var_calculator",
    "voice",
    "voice_streaming",
    "working_capital_forecaster",
}
# The finance flow's payloads (and mpc_research's) are Go's content field for field
# (canonical "same").
SAME_SHAPE = {
    "aml_monitor",
    "analyzer",
    "anomaly_detector",
    "carbon_estimator",
    "enricher",
    "forecaster",
    "fraud_detector",
    "mpc_research",
    "mule_detector",
    "normalizer",
    "recommender",
    "reporter",
    "subscription_detector",
}


TYPES = MessageTypes({p for e in CORPUS for p in CATALOGUE.get(e["agent"]).consumes})
RECEIPT = (
    '{"date": "2026-03-14", "description": "Cafe Coffee Day latte", "merchant": "ccd", '
    '"amount_cents": -24000, "category": "food:dining"}'
)


def _research() -> list[Agent]:
    search = ScriptedToolCall(name="corpus_search", arguments={"corpus": "fiu_ind", "query": "STR"})
    model = ScriptedProvider([ScriptedAnswer(tool_calls=[search]).response(1), "File an STR."])
    return [DeepResearch("deep_research", llm=model), CorpusSearch("corpus_search")]


class _Broker:
    """A broker's MCP tools' answers (tests/agents/test_portfolio.py runs a real server)."""

    async def fetch(self, token: str) -> tuple[object, object]:
        assert token == "kite-token"
        line = {"tradingsymbol": "INFY", "quantity": 10, "average_price": 1500, "last_price": 1650}
        return [line], {"net": [], "day": []}


def _consenting() -> InMemoryConsentLedger:
    ledger = InMemoryConsentLedger()
    ledger.grant("user-1", "transactions")
    return ledger


def _vault(tmp: Path) -> TokenVault:
    vault = TokenVault(tmp / "tokens.json", TokenVault.generate_key())
    vault.put("user-1", "kite-token")
    return vault


# Agents whose catalogue instance has nothing to serve (a service behind an interface, empty
# by default; a model): the corpus asks the agents a fixture builds instead (in a temporary
# directory).
FIXTURES: dict[str, Callable[[Path], list[Agent]]] = {
    "google_trends": lambda tmp: [
        GoogleTrends(
            "google_trends",
            fetcher=InMemoryTrendFetcher({"gold etf": [40, 42, 38, 44, 61, 66, 70, 59]}),
        )
    ],
    "deep_research": lambda tmp: _research(),
    "moa_recommender": lambda tmp: [
        MoaRecommender(
            "moa_recommender",
            llm=tuple(
                ScriptedProvider([text], name=name)
                for name, text in (
                    ("a", "A liquid fund."),
                    ("b", "An FD."),
                    ("c", "A liquid fund."),
                )
            ),
        )
    ],
    "receipt_ocr": lambda tmp: [ReceiptOcr("receipt_ocr", llm=ScriptedProvider([RECEIPT]))],
    "llm_auditor": lambda tmp: [
        Auditor("llm_auditor", llm=ScriptedProvider(["SCORE: 2\nREASONING: promises returns"]))
    ],
    "aa_fetcher": lambda tmp: [
        AaFetcher("aa_fetcher", client=InMemoryFIClient.sample(), ledger=_consenting())
    ],
    "portfolio_advisor": lambda tmp: [
        PortfolioAdvisor("portfolio_advisor", source=_Broker(), vault=_vault(tmp))
    ],
}


async def answer(
    entry: dict[str, Any], payload: Payload, metadata: dict[str, Any], tmp: Path
) -> Any:
    """The agent's answer on the real runtime (a fixture's, for the agents in FIXTURES; seeded,
    so the ids an answer quotes are the same for the Go and the canonical request)."""
    if entry["agent"] not in FIXTURES and not metadata:
        return await ask(entry["agent"], payload, entry.get("until"))
    name = entry["agent"]
    agents = FIXTURES[name](tmp) if name in FIXTURES else [CATALOGUE.get(name).factory(name)]
    async with Runtime(agents, seed=0) as rt:
        msg = rt.message(payload, recipient=name, metadata=metadata)
        result = await rt.ask(msg, until=entry["until"])
    assert result.message is not None, result
    return result.message.payload


def parse(kind: str, body: dict[str, Any] | str) -> Payload:
    """As a Go client's request arrives at a boundary: JSON text of a named message type."""
    return TYPES.parse_payload(kind, json.dumps(body))


def refused(kind: str, body: dict[str, Any]) -> str:
    with pytest.raises(InvalidMessageError) as info:
        parse(kind, body)
    return str(info.value)


def test_the_corpus_covers_every_go_shaped_agent() -> None:
    assert {e["agent"] for e in CORPUS} == GO_SHAPED | SAME_SHAPE
    for entry in CORPUS:  # a Go request really is in Go's shape, not the canonical one
        same = entry["canonical"] == "same"
        assert same == (entry["agent"] in SAME_SHAPE), entry["agent"]
        if not same:
            assert entry["go"] != entry["canonical"], entry


@pytest.mark.parametrize(
    "entry", CORPUS, ids=[f"{e['agent']}-{i}" for i, e in enumerate(CORPUS, 1)]
)
async def test_a_go_request_is_the_canonical_request(entry: dict[str, Any], tmp_path: Path) -> None:
    go = parse(entry["type"], entry["go"])
    both = entry.get("canonical_metadata", {})
    go_metadata = both | entry.get("metadata", {})
    if entry["canonical"] == "same":
        # Nothing to convert: the port's JSON of the payload is the Go content itself.
        assert json.loads(go.model_dump_json()) == entry["go"]
        assert await answer(entry, go, go_metadata, tmp_path)
        return
    canonical = parse(entry["type"], entry["canonical"])
    # What Go sent in the metadata is missing from the Go payload (or null, where the payload
    # says so), and nothing else differs.
    in_metadata = entry.get("metadata", {})
    kept = {k: v for k, v in entry["canonical"].items() if k not in in_metadata}
    kept |= {k: None for k in in_metadata if k in go.model_fields_set}
    assert go == parse(entry["type"], kept)
    # Serialisation stays canonical: a Go request written back out is the port's shape.
    assert set(json.loads(go.model_dump_json())) == set(json.loads(canonical.model_dump_json()))
    from_go = await answer(entry, go, go_metadata, tmp_path)
    from_canonical = await answer(entry, canonical, both, tmp_path)
    clock = dict.fromkeys(entry.get("clock_fields", ()))  # stamped from each run's clock
    assert from_go.model_copy(update=clock) == from_canonical.model_copy(update=clock)


def test_the_docs_name_every_agent_not_go_shaped_yet() -> None:
    page = (Path(__file__).parents[2] / "docs" / "catalogue.md").read_text()
    section = page.split("- Not Go-shaped yet")[1].split("(`fallback` takes any message")[0]
    not_yet = set(re.findall(r"`([a-z_]+)`", section))
    not_from_go = {"echo", "delay", "flaky", "fanout", "sink", "fallback", "corpus_search"}
    ported = {s.name for s in CATALOGUE if s.domain != "desks"} - not_from_go
    unaccounted = ported - GO_SHAPED - SAME_SHAPE - not_yet
    assert not unaccounted, (
        f"{sorted(unaccounted)}: add a Go-shaped request to go_requests/corpus.json (and "
        "GO_SHAPED), or list the agent under 'Not Go-shaped yet' in docs/catalogue.md"
    )
    assert not_yet <= ported
    assert not not_yet & (GO_SHAPED | SAME_SHAPE)


def test_a_field_in_both_shapes_is_refused_naming_both() -> None:
    loan = {"principal_cents": 50_000_000, "principal": 500_000, "apr_pct": 10, "term_months": 6}
    with pytest.raises(ValueError, match="given twice, as 'principal' and as the Go system's"):
        SimulateLoan.model_validate(loan)
    with pytest.raises(ValueError, match=r"months\n.*given twice, as 'months'"):
        SimulateLoan.model_validate(
            {"principal": 1, "annual_rate_pct": 1, "months": 6, "term_months": 6}
        )
    pay = {"amount_rupees": 10, "amount_paise": 1000, "beneficiary": "x", "idempotency_key": "k"}
    with pytest.raises(ValueError, match=r"amount_paise\n.*given twice"):
        PaymentRequest.model_validate(pay)
    alm = {"total_assets": 10, "assets": {"1-7d": 1, "day_1_7": 1}, "liabilities": {}}
    with pytest.raises(ValueError, match="bucket '1-7d' given twice, also as 'day_1_7'"):
        AlmRequest.model_validate(alm)


def test_go_values_the_port_cannot_take_are_refused_with_the_go_field() -> None:
    base = {"apr_pct": 10, "term_months": 12}
    with pytest.raises(ValueError, match=r"principal_cents\n\s+paise must be a whole number"):
        SimulateLoan.model_validate(base | {"principal_cents": 100.5})
    with pytest.raises(ValueError, match=r"amount_rupees\n.*at most two decimals"):
        PaymentRequest.model_validate({"amount_rupees": 10.005, "beneficiary_name": "x"})
    with pytest.raises(ValueError, match=r"regime\n.*the port estimates the new regime only"):
        TaxEstimateRequest.model_validate({"gross_income_rupees": 1, "regime": "old"})
    kyc = {
        "customer_id": "c",
        "pan_number": "ABCPK1234F",
        "name_on_pan": "A",
        "name_on_aadhaar": "A",
        "aadhaar_offline_kyc": True,
        "address_match_score_0_1": 1,
        "liveness_score_0_1": 1,
    }
    # Go let the caller set the flags; the port derives them, and will not contradict them.
    with pytest.raises(ValueError, match=r"high_risk_country\n.*from the country \('IN'"):
        KycRequest.model_validate(kyc | {"high_risk_country": True})
    with pytest.raises(ValueError, match=r"occupation_high_risk\n.*from 'occupation'"):
        KycRequest.model_validate(kyc | {"occupation_high_risk": True})
    ok = KycRequest.model_validate(kyc | {"occupation_high_risk": True, "occupation": "jeweller"})
    assert ok.occupation == "jeweller"


def test_at_the_boundary_the_error_names_the_type_and_the_field() -> None:
    body = {"principal_cents": 1, "principal": 2, "apr_pct": 1, "term_months": 1}
    assert refused("simulate_loan", body) == (
        "invalid 'simulate_loan' message: field 'principal': given twice, as 'principal' "
        "and as the Go system's 'principal_cents': send one"
    )
    text = {"principal_cents": "lots", "apr_pct": 1, "term_months": 1}
    assert "field 'principal_cents': paise must be a whole number" in refused("simulate_loan", text)


def test_schemas_show_the_go_names_beside_the_canonical_ones() -> None:
    # genie agents --json: each payload's properties are the port's fields; the Go names it
    # accepts are listed beside them (x-go-names), so a Go user can read the mapping.
    for entry in CORPUS:
        if not isinstance(entry["canonical"], dict) or not isinstance(entry["go"], dict):
            continue
        schema = CATALOGUE.get(entry["agent"]).describe()["schemas"][entry["type"]]
        properties, go_names = schema["properties"], schema.get("x-go-names", {})
        go_only = set(entry["go"]) - set(entry["canonical"])
        assert set(properties) >= set(entry["canonical"]), entry["agent"]
        assert not set(properties) & go_only, entry["agent"]
        assert go_only <= set(go_names), (entry["agent"], go_only - set(go_names))
        for go, mapping in go_names.items():
            field = mapping["field"]
            assert field is None or go in properties[field]["x-go-names"], (entry["agent"], go)


def test_the_schema_says_how_each_go_value_converts() -> None:
    schema = CATALOGUE.get("loan_advisor").describe()["schemas"]["simulate_loan"]
    assert schema["x-go-names"]["principal_cents"] == {
        "field": "principal",
        "conversion": "Go's `*_cents` / `*_paise` integers to rupees "
        "(a whole number of paise only).",
    }
    assert schema["x-go-names"]["apr_pct"] == {"field": "annual_rate_pct"}
    assert schema["properties"]["months"]["x-go-names"] == ["term_months"]
    pay = CATALOGUE.get("payment_orchestrator").describe()["schemas"]["payment_request"]
    assert pay["x-go-names"]["payer_id"]["field"] is None
    assert pay["x-go-names"]["urgency"] == {"field": "urgent", "conversion": "urgent unless 'any'"}
    term = CATALOGUE.get("financial_educator").describe()["schemas"]
    assert [s.get("x-go-text") for s in term.values() if "x-go-text" in s] == ["term"]
    # A conversion that cannot say what it does is refused when its model is defined.
    with pytest.raises(TypeError, match="'amount_cents': its converter needs a docstring"):
        go_names({"amount_cents": GoName("amount", lambda cents: cents / 100)})
    assert go_names({"amount_cents": GoName("amount", lambda cents: cents / 100, "paise")})


@pytest.mark.parametrize(
    ("kind", "body", "error"),
    [
        (
            "asset_allocation_request",
            {
                "age": 30,
                "horizon_years": 5,
                "risk_tolerance": "moderate",
                "current": {"gold_rupees": 5},
            },
            "field 'current': gold and cash holdings: the port allocates equity and debt only",
        ),
        (
            "dividend_request",
            {"shares": 1, "current_price_rupees": 100, "dividend_per_share_rupees": 2}
            | {"dividend_yield_pct": 2, "horizon_years": 1, "tds_and_slab_pct": 0},
            "field 'dividend_yield_pct': given twice, as 'dividend_yield_pct' and as the Go "
            "system's 'dividend_per_share_rupees'",
        ),
        (
            "dividend_request",
            {
                "shares": 1,
                "dividend_per_share_rupees": 2,
                "horizon_years": 1,
                "tds_and_slab_pct": 0,
            },
            "field 'dividend_per_share_rupees': needs a positive current_price_rupees",
        ),
        (
            "lcr_request",
            {"hqla": {"level1": 1}, "outflows": {}, "inflows": {"retail": 5}},
            "field 'inflows': Value error, unknown Go inflow 'retail'",
        ),
        (
            "lcr_request",
            {"hqla": {"level1": 1}, "outflows": {"other": 1, "unsecured_wholesale_funding": 1}},
            "field 'outflows.other': given twice, as 'other' and as the Go system's "
            "'unsecured_wholesale_funding'",
        ),
        (
            "emergency_fund_request",
            {"transactions": [{"date": "2026-01-01", "amount_cents": "12"}]},
            "field 'transactions': item 0: a transaction with integer amount_cents",
        ),
        (
            "tax_harvest_request",
            {"as_of_date": "2026-01-01", "holdings": [{"symbol": "X", "quantity": 0}]},
            "field 'holdings': item 0: a holding with a positive quantity and a cost basis",
        ),
        (
            "tax_harvest_request",
            {"as_of": "2026-01-01", "lots": [], "realised_stcg": 1}
            | {"realised_gains": {"short_term_rupees": 2}},
            "field 'realised_stcg': given twice",
        ),
        (
            "goal_request",
            {"target_corpus_rupees": 1, "horizon_months": 18},
            "field 'horizon_months': the port plans in whole years: a multiple of 12 months",
        ),
        (
            "goal_request",
            {"target_corpus_rupees": 1, "horizon_months": 12, "seed": 7},
            "field 'seed': set on the agent in the port (param 'seed'), not per request",
        ),
        (
            "debt_payoff_request",
            {"debts": [], "extra_per_month_rupees": 1, "monthly_budget": 5},
            "field 'monthly_budget': given twice, as 'monthly_budget' and as the Go system's "
            "'extra_per_month_rupees'",
        ),
        (
            "debt_payoff_request",
            {"debts": [{"name": "a", "balance_rupees": 1}], "extra_per_month_rupees": 1},
            "field 'extra_per_month_rupees': needs each debt's min_payment_rupees",
        ),
        (
            "alm_request",
            {"total_assets": 10, "assets": {"1-7d": 1, "day_1_7": 1}, "liabilities": {}},
            "field 'assets': Value error, bucket '1-7d' given twice, also as 'day_1_7'",
        ),
    ],
)
def test_go_shapes_that_cannot_convert_are_refused_naming_the_field(
    kind: str, body: dict[str, Any], error: str
) -> None:
    assert error in refused(kind, body)
