"""Where the port and the Go reference differ on purpose (docs/catalogue.md, "Where the port
differs from the Go system"): one test per row, at the point where the two disagree, showing
what the port does there. Go's figure is worked out in each comment from the Go source."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from genie_agents.advisory.models import AssetAllocationRequest, EmergencyFundRequest
from genie_agents.connectors.aa import AaFetcher, AaFetchRequest, InMemoryFIClient
from genie_agents.connectors.voice import VoiceAsrChunk, VoiceStreaming
from genie_agents.finance.statement import StatementError, parse_statement
from genie_agents.fraud.models import KycRequest, Login, SessionCheck, SyntheticCheck
from genie_agents.fraud.phishing import PhishingCheck
from genie_agents.insurance.models import ClaimRequest, MotorRequest, PreauthRequest
from genie_agents.lending.models import Loan, PrepaymentRequest, SimulateLoan, SmeLoanRequest
from genie_agents.markets.funds import MfScreenRequest, SipLumpsumRequest, simulate_sip_lumpsum
from genie_agents.markets.mpc import MpcSummary
from genie_agents.markets.options import OptionRequest
from genie_agents.markets.trends import GoogleTrends, InMemoryTrendFetcher, TrendRequest
from genie_agents.payments.models import (
    ConvertCurrency,
    Invoice,
    InvoiceDiscountRequest,
    InvoiceLine,
    InvoicePacket,
    PaymentRequest,
    Receivable,
)
from genie_agents.support.semantic import HSuperviseRequest, HSupervisor, SemanticRoute
from genie_agents.tax.models import DeductionsRequest, TaxEstimateRequest, TaxHarvestRequest
from genie_agents.treasury.models import (
    AlmRequest,
    LcrRequest,
    VarRequest,
    WorkingCapitalRequest,
)

from genie import InvalidMessageError, MessageTypes
from genie.policies import InMemoryConsentLedger

from .helpers import ask, one


def kyc(**changes: Any) -> KycRequest:
    base: dict[str, Any] = {
        "customer_id": "c",
        "name": "Asha Kumar",
        "pan": "ABCPK1234F",
        "pan_name": "Asha Kumar",
        "aadhaar_offline_verified": True,
        "address_match": 0.95,
        "liveness": 0.95,
    }
    return KycRequest(**(base | changes))


def payment(**changes: Any) -> PaymentRequest:
    base: dict[str, Any] = {
        "idempotency_key": "k",
        "beneficiary": "Mehta Traders",
        "beneficiary_trusted": True,
        "account_number": "50100012345",
        "ifsc": "HDFC0000123",
    }
    return PaymentRequest(**(base | changes))


async def test_loan_emi_is_shown_to_the_rupee() -> None:
    # Go answers emi_cents 1,062,352 (paise); the port shows 10,624 rupees. The DSCR of both
    # is on the exact instalment.
    loan = SimulateLoan(principal=500_000, annual_rate_pct=10, months=60)
    assert (await ask("loan_advisor", loan)).emi == 10_624


async def test_tax_uses_the_fy_2024_25_slabs_it_names() -> None:
    # Go labels FY 2024-25 but taxes 18 L with the FY 2023-24 slabs (3/6/9/12/15 L):
    # 15,000 + 30,000 + 45,000 + 60,000 + 90,000 = 2,40,000, plus 4 % cess = 2,49,600.
    # FY 2024-25 (3/7/10/12/15 L): 20,000 + 30,000 + 30,000 + 60,000 + 90,000 = 2,30,000
    # plus cess = 2,39,200 (not salaried: no standard deduction, as in Go).
    est = await ask("tax_estimator", TaxEstimateRequest(gross_income=1_800_000, salaried=False))
    assert (est.financial_year, est.slab_tax, est.total_tax) == ("2024-25", 230_000, 239_200)


async def test_tax_gives_salaried_income_the_standard_deduction() -> None:
    # Go deducts nothing; the port takes Rs 75,000 off salaried income (the default).
    est = await ask("tax_estimator", TaxEstimateRequest(gross_income=1_800_000))
    assert (est.standard_deduction, est.taxable_income) == (75_000, 1_725_000)


async def test_tax_rebate_has_marginal_relief() -> None:
    # Go: above 7 L the full slab tax is due (7,10,000 taxed 25,000 + cess in Go's slabs).
    # The port's 87A marginal relief caps the tax at the income above 7 L: 10,000 + cess.
    est = await ask("tax_estimator", TaxEstimateRequest(gross_income=710_000, salaried=False))
    assert (est.slab_tax - est.rebate, est.total_tax) == (10_000, 10_400)


async def test_kyc_score_of_exactly_030_is_sdd() -> None:
    # Name mismatch 0.20 + address 0.10: in Go's float64 0.2 + 0.1 = 0.30000000000000004,
    # which is not <= 0.30, so Go's tier is "standard", against its own rule.
    assert 0.2 + 0.1 > 0.3  # the floating-point fact Go trips on
    v = await ask("kyc_orchestrator", kyc(pan_name="Ravi Kumar", address_match=0.5))
    assert (v.score, v.tier, v.decision) == (0.3, "sdd", "approve")


async def test_kyc_names_must_match_whole() -> None:
    # Go passes names that share one token ("Asha Kumar" and "Asha K" share "Asha").
    v = await ask("kyc_orchestrator", kyc(pan_name="Asha K"))
    assert v.reasons == ("name_mismatch",)


async def test_kyc_liveness_of_zero_is_low() -> None:
    # Go skips liveness when it is 0 (not measured); the port counts 0 as below 0.70.
    v = await ask("kyc_orchestrator", kyc(liveness=0))
    assert v.reasons == ("liveness_low",)


async def test_kyc_pan_is_checked_for_format_only() -> None:
    # Go also wants the 5th character to be the surname's initial ('K' for Kumar); the port
    # leaves that to synthetic_identity_detector. 'ABCPX1234F' is a well-formed PAN.
    v = await ask("kyc_orchestrator", kyc(pan="ABCPX1234F"))
    assert v.reasons == ()


async def test_kyc_middle_tier_is_cdd() -> None:
    # Go names the tier between SDD and EDD "standard"; the port "cdd" (due diligence).
    v = await ask("kyc_orchestrator", kyc(aadhaar_offline_verified=False, liveness=0.5))
    assert (v.score, v.tier) == (0.35, "cdd")


async def test_kyc_country_risk_comes_from_the_country() -> None:
    # Go reads a caller-set high_risk_country flag; the port derives it from the country.
    v = await ask("kyc_orchestrator", kyc(country="IR"))
    assert v.reasons == ("high_risk_country",)


async def test_deductions_savings_include_cess() -> None:
    # Go: 50,000 unused 80C x 30 % = 15,000. The port: x 1.04 for the 4 % cess = 15,600.
    plan = await ask(
        "deductions_optimizer", DeductionsRequest(claimed={"80c": 100_000}, marginal_rate_pct=30)
    )
    assert plan.gaps[0].section == "80c"
    assert plan.gaps[0].tax_saving == 15_600


async def test_urgent_payment_between_2_and_5_lakh_goes_by_imps() -> None:
    # Go sends Rs 3 L by RTGS inside the RTGS window (07-18 h, not Sunday) and by IMPS
    # outside it (a clock decides). The port is clock-free: urgent up to 5 L is IMPS.
    out = await ask("payment_orchestrator", payment(amount_paise=300_000_00))
    assert (out.rail, out.action) == ("IMPS", "hold_hitl")
    out = await ask("payment_orchestrator", payment(amount_paise=600_000_00))
    assert out.rail == "RTGS"


async def test_untrusted_beneficiary_hold_is_its_own_action() -> None:
    # Go: action hold_hitl with no rail, as for any large payment; the port says "hold".
    out = await ask(
        "payment_orchestrator", payment(amount_paise=60_000_00, beneficiary_trusted=False)
    )
    assert (out.action, out.rail) == ("hold", "")


async def test_asset_allocation_is_not_capped_at_85_percent() -> None:
    # Go: 100 - 20 + 15 + 5 = 100 % equity, capped to 85 %, the rest 70/15/15 in
    # debt/gold/cash. The port keeps 0-100 % and puts the rest in debt.
    plan = await ask(
        "asset_allocator",
        AssetAllocationRequest(age=20, risk_profile="aggressive", horizon_years=30),
    )
    assert (plan.equity_pct, plan.debt_pct) == (100, 0)
    plan = await ask(
        "asset_allocator",
        AssetAllocationRequest(age=95, risk_profile="conservative", horizon_years=1),
    )
    assert (plan.equity_pct, plan.debt_pct) == (0, 100)  # Go's floor: 10 %


async def test_emergency_fund_gives_all_three_tiers() -> None:
    # Go picks one: 3 months (stable income), 6 (variable), 9 (dependents).
    plan = await ask("emergency_fund_advisor", EmergencyFundRequest(monthly_expenses=(40_000,)))
    assert (plan.minimum, plan.recommended, plan.comfortable) == (120_000, 240_000, 360_000)


def test_alm_needs_total_assets() -> None:
    # Go: total_assets_for_breach_threshold 0 silently skips the breach check.
    body = {"total_assets_for_breach_threshold": 0, "assets": {}, "liabilities": {}}
    with pytest.raises(InvalidMessageError, match="field 'total_assets': Input should be greater"):
        MessageTypes([AlmRequest]).parse_payload("alm_request", body)


async def test_currency_answers_with_its_own_type() -> None:
    # Go answers convert_currency with convert_currency: routed by type, that loops.
    req = ConvertCurrency(amount=100, from_currency="USD", to_currency="INR")
    out = await ask("currency_converter", req, until="currency_conversion")
    assert (out.message_type, out.converted) == ("currency_conversion", 8_300)


async def test_parametric_var_uses_the_sample_deviation_and_drift_over_the_horizon() -> None:
    # Returns +1 % and -1 % on 1,000 at 99 % (z = 2.3263): Go's population sigma 0.01 gives
    # 23.26; the sample sigma 0.014142 gives 32.90.
    one_day = VarRequest(portfolio_value=1_000, returns=(0.01, -0.01))
    assert (await ask("var_calculator", one_day)).parametric_var == 32.9
    # Mean 1 % a day over 4 days: Go takes (z sigma - mu) x sqrt(4) = 26.53; the port
    # z sigma sqrt(4) - mu x 4 = 65.80 - 40 = 25.80 (drift adds up day by day).
    drift = VarRequest(portfolio_value=1_000, returns=(0.02, 0.0), horizon_days=4)
    assert (await ask("var_calculator", drift)).parametric_var == 25.8


async def test_lcr_caps_level_2b_at_15_percent_of_the_capped_stock() -> None:
    # Level 1 100, level 2B 200 (100 after its 50 % haircut). Go caps 2B at 15 % of the
    # stock before the cap (0.15 x 200 = 30): HQLA 130. Basel's cap is on the stock after
    # it, 2B <= 15/85 of the rest = 17.65: HQLA 117.65.
    req = LcrRequest(hqla={"level1": 100, "level2b": 200}, outflows={"other": 100})
    assert (await ask("lcr_projector", req)).hqla == 117.65


async def test_tax_harvest_also_books_gains_within_the_exemption() -> None:
    # Go harvests losses only. With no realised gains, a long-term lot up Rs 50,000 can be
    # sold tax-free inside the Rs 1.25 L exemption (and bought back at a higher cost).
    lot = {"symbol": "INFY", "bought_on": "2023-01-02", "quantity": 100}
    req = TaxHarvestRequest.model_validate(
        {"as_of": "2025-12-01", "lots": [lot | {"cost_per_unit": 1_000, "price": 1_500}]}
    )
    plan = await ask("tax_harvester", req)
    assert [(a.symbol, a.action, a.term, a.gain) for a in plan.actions] == [
        ("INFY", "sell_gain", "long", 50_000)
    ]


async def test_working_capital_days_come_from_the_balance_sheet() -> None:
    # Go takes DSO, DIO and DPO as days; the port derives them from the balances:
    # receivables 1 M on revenue 12 M a year = 30.4 days.
    req = WorkingCapitalRequest(
        annual_revenue=12_000_000,
        annual_cogs=7_300_000,
        receivables=1_000_000,
        inventory=600_000,
        payables=400_000,
        cash=500_000,
    )
    out = await ask("working_capital_forecaster", req)
    assert (out.dso, out.dio, out.dpo, out.cash_conversion_cycle) == (30.4, 30.0, 20.0, 40.4)


# --- the markets agents, read against agents/mf_screener and agents/sip_vs_lumpsum ------------
GO_FUND: dict[str, Any] = {
    "scheme": "Z",
    "category": "equity-large",
    "aum_crore": 300,
    "expense_ratio": 0.01,
    "three_year_cagr": -0.02,
    "five_year_cagr": 0.05,
    "std_dev": 0.15,
    "neg_quarters_last_5yr": 6,
}


def test_mf_fund_without_a_deviation_is_refused() -> None:
    # Go: std_dev 0 (left out) -> sharpe = 0.0, and the fund is scored as if its Sharpe were
    # 0. The port needs a deviation to compute a Sharpe ratio and names the field.
    with pytest.raises(InvalidMessageError, match=r"field 'funds\.0\.std_dev_pct'"):
        MessageTypes([MfScreenRequest]).parse_payload(
            "mf_screen_request", {"funds": [GO_FUND | {"std_dev": 0}]}
        )


async def test_mf_negative_sharpe_is_rounded_to_nearest() -> None:
    # Go: (0.05 - 0.07) / 0.15 = -0.1333; round2 = int64(-13.33 + 0.5) / 100 = int64(-12.83)
    # / 100 = -0.12 (Go's int64 conversion truncates toward zero). Nearest is -0.13.
    out = await ask("mf_screener", MfScreenRequest.model_validate({"funds": [GO_FUND]}))
    assert out.funds[0].sharpe == -0.13


async def test_mf_negative_minimum_cagr_is_a_cut() -> None:
    # Go cuts on min_three_yr_cagr only when it is > 0: -0.01 keeps the fund at -2 %. The
    # port cuts at any minimum given (Go's 0, left out, is still no cut).
    req = {"funds": [GO_FUND], "filter": {"min_three_yr_cagr": -0.01}}
    out = await ask("mf_screener", MfScreenRequest.model_validate(req))
    assert (out.funds, out.filtered_out) == ((), 1)
    none = {"funds": [GO_FUND], "filter": {"min_three_yr_cagr": 0}}
    assert (await ask("mf_screener", MfScreenRequest.model_validate(none))).filtered_out == 0


def test_sip_growth_is_lognormal_so_wealth_stays_positive() -> None:
    # Go draws a simple normal return a month, 1 + mu/12 + sigma/sqrt(12) z: at 100 %
    # volatility sigma is 0.2887 a month, so any z below -(1 + 0.01) / 0.2887 = -3.50 (about
    # 2.3 in 10,000 draws; 240,000 draws here) makes the month lose more than everything and
    # the wealth negative. Go's own text says lognormal; the port is, with Go's mean.
    req = SipLumpsumRequest(amount=100_000, horizon_months=240, volatility_pct=100)
    finals = simulate_sip_lumpsum(req)
    assert min(min(pair) for pair in finals) > 0


def test_sip_horizon_shorter_than_the_sip_is_refused() -> None:
    # Go pays amount / 12 only in the months of the horizon: over 6 months it invests half
    # the amount and compares it with the whole lumpsum. The port refuses the horizon.
    go = {"amount_rupees": 120_000, "horizon_months": 6, "annual_volatility": 0.15}
    with pytest.raises(InvalidMessageError, match=r"field 'horizon_months': .*at least sip_months"):
        MessageTypes([SipLumpsumRequest]).parse_payload("sip_lumpsum_request", go)


# --- mpc_research, read against agents/mpc_research ------------------------------------------
GO_MEETING: dict[str, Any] = {
    "meeting_date": "2025-12-05",
    "repo_rate_pct": 6.5,
    "sdf_rate_pct": 6.25,
    "msf_rate_pct": 6.75,
    "crr_pct": 4,
    "slr_pct": 18,
    "stance": "neutral",
    "vote_for": 6,
    "vote_against": 0,
    "cpi_projection_pct": 4.5,
    "gdp_projection_pct": 7.0,
    "consensus_repo_change_bps": 0,
}


def mpc(**current: Any) -> MpcSummary:
    return MpcSummary.model_validate({"current": GO_MEETING | current, "previous": GO_MEETING})


async def test_mpc_revisions_are_rounded_to_whole_bps() -> None:
    # Go: int((4.76 - 4.5) * 100) = int(25.999999999999979) = 25, not beyond 25 bps: the
    # hold stays "unchanged". The revision is 26 bps; the port rounds, and it is hawkish.
    out = await ask("mpc_research", mpc(cpi_projection_pct=4.76))
    assert (out.cpi_revision_bps, out.hawkishness_delta) == (26, "more_hawkish")


async def test_mpc_a_cut_is_never_more_hawkish() -> None:
    # Go: case repoBps > 0 || cpiBps > 25 comes first, so a 25 bps cut with CPI revised up
    # 50 bps is "more_hawkish". In the port the decision outranks the outlook.
    out = await ask("mpc_research", mpc(repo_rate_pct=6.25, cpi_projection_pct=5.0))
    assert (out.repo_change_bps, out.cpi_revision_bps, out.hawkishness_delta) == (
        -25,
        50,
        "more_dovish",
    )
    assert "macro_research: flag inflation upside risk" in out.downstream_hints


def test_mpc_refuses_impossible_votes_and_dates() -> None:
    # Go takes seven votes of a six-member committee, and any text as the date.
    types = MessageTypes([MpcSummary])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"vote_for": 4, "vote_against": 3}, "current"),
        ({"meeting_date": "Feb 2026"}, "current.meeting_date"),
        ({"meeting_date": "2026-13-01"}, "current.meeting_date"),
    ]
    for bad, field in cases:
        body = {"current": GO_MEETING | bad, "previous": GO_MEETING}
        with pytest.raises(InvalidMessageError, match=f"field '{field}'"):
            types.parse_payload("mpc_summary", body)


# --- phishing_classifier, read against agents/phishing_classifier ----------------------------
async def test_phishing_sbi_own_domains_are_not_impersonation() -> None:
    # Go trusts sbi.co.in only: "sbi" in www.onlinesbi.sbi (SBI's net banking) is a
    # look-alike, 0.5, suspicious. The port knows the bank's other domains.
    out = await ask("phishing_classifier", PhishingCheck(url="https://www.onlinesbi.sbi/"))
    assert (out.score, out.verdict) == (0.0, "safe")


async def test_phishing_at_in_the_query_is_not_an_attack() -> None:
    # Go: strings.Contains(raw, "@") adds 0.3 for an e-mail address in the query. The port
    # looks for an @ before the host only (https://bank@evil.example/ still scores 0.3).
    query = PhishingCheck(url="https://example.com/contact?to=help@example.com")
    assert (await ask("phishing_classifier", query)).score == 0.0
    userinfo = PhishingCheck(url="https://bank@evil.example/")
    assert (await ask("phishing_classifier", userinfo)).score == 0.3


async def test_phishing_upi_handles_are_matched_whole() -> None:
    # Go: a handle is a PSP's if it contains "ok", "paytm", "ybl", "axl" or "ibl": @facebook
    # ("ok" inside) passes, SBI's own @sbi scores 0.2. The port matches whole handles.
    fake = await ask("phishing_classifier", PhishingCheck(vpa="refund@facebook"))
    assert (fake.score, fake.verdict) == (0.6, "suspicious")  # Go: 0.4
    sbi = await ask("phishing_classifier", PhishingCheck(vpa="shop@sbi"))
    assert sbi.score == 0.0  # Go: 0.2


def test_phishing_malformed_input_is_refused_not_safe() -> None:
    # Go scores a link without a host, or a VPA without an @, as 0 (skipped): "safe".
    types = MessageTypes([PhishingCheck])
    for body, field in [({"url": "www.sbi-kyc.example"}, "url"), ({"upi_vpa": "refund"}, "vpa")]:
        with pytest.raises(InvalidMessageError, match=f"field '{field}'"):
            types.parse_payload("phishing_check", body)


async def test_phishing_whitespace_cannot_hide_a_phrase() -> None:
    # Go looks for "share otp" in the lowered text as sent: "share\nOTP" or "share  OTP"
    # slips past (0). The port reads words one space apart: 0.5.
    out = await ask("phishing_classifier", PhishingCheck(text="Please share\nOTP  now"))
    assert [(s.rule, s.weight) for s in out.signals] == [("credential_request", 0.5)]


# --- options_explainer, read against agents/options_explainer --------------------------------
# The formulas are Go's (Black-Scholes-Merton, T = days / 365, vega and rho per point, theta
# per calendar day): test_markets.py checks them against Hull. These rows are the edges.
GO_OPTION: dict[str, Any] = {
    "side": "put",
    "underlying_price": 22_000,
    "strike": 22_000,
    "days_to_expiry": 45,
    "implied_volatility_pct": 14,
    "risk_free_rate_pct": 6.5,
    "dividend_yield_pct": 0,
    "lot_size": 0,
}


def test_options_go_priced_as_zero_are_refused() -> None:
    # Go: a spot, strike, expiry or volatility of 0 returns an empty result (price 0, greeks
    # 0) with "cannot price" in the disclaimer; a side other than "put" is priced as a call
    # but paid off as a put ("CALL" fails Go's side == "call" test). The port names the field.
    types = MessageTypes([OptionRequest])
    for go_field, field in [
        ("underlying_price", "spot"),
        ("days_to_expiry", "days_to_expiry"),
        ("implied_volatility_pct", "volatility_pct"),
    ]:
        with pytest.raises(InvalidMessageError, match=f"field '{field}'"):
            types.parse_payload("option_request", GO_OPTION | {go_field: 0})
    with pytest.raises(InvalidMessageError, match="field 'kind'"):
        types.parse_payload("option_request", GO_OPTION | {"side": "CALL"})


async def test_options_negative_greeks_round_to_nearest() -> None:
    # An at-the-money Nifty put, 45 days: delta -0.425595, theta -2.980866 a day. Go's
    # round4 = int64(x * 10000 + 0.5) / 10000 truncates toward zero: int64(-4255.45) =
    # -4255 -> -0.4255 and int64(-29808.16) -> -2.9808. Nearest: -0.4256 and -2.9809.
    out = await ask("options_explainer", OptionRequest.model_validate(GO_OPTION))
    assert (out.greeks.delta, out.greeks.theta) == (-0.4256, -2.9809)


# --- google_trends, read against agents/google_trends ----------------------------------------
def trends(series: list[float]) -> GoogleTrends:
    return GoogleTrends("google_trends", fetcher=InMemoryTrendFetcher({"gold etf": series}))


def test_trends_take_one_keyword_per_request() -> None:
    # Go fetched and answered a list together; the port refuses a list of two.
    go = {"geo": "IN", "keywords": ["gold etf", "silver etf"], "window_points": 4}
    with pytest.raises(InvalidMessageError, match="field 'keywords': one keyword per request"):
        MessageTypes([TrendRequest]).parse_payload("trend_request", go)


async def test_trends_interest_gone_to_zero_is_fading() -> None:
    # Prior (40, 50) mean 45, latest (0, 0): Go's mult = 0 / 45 = 0, and "fading" needs
    # mult > 0, so Go says steady. The port: ratio 0, fading.
    out = await one(trends([40, 50, 0, 0]), TrendRequest(keyword="gold etf", window_points=2))
    assert (out.ratio, out.signal) == (0.0, "fading")


async def test_trends_interest_from_nothing_is_surging() -> None:
    # Prior (0, 0), latest (5, 7): Go's mult stays 0 (baseMean is not > 0): steady.
    out = await one(trends([0, 0, 5, 7]), TrendRequest(keyword="gold etf", window_points=2))
    assert (out.ratio, out.signal) == (None, "surging")


async def test_trends_too_short_a_series_is_an_error() -> None:
    # Go: len(points) <= window -> Signal{Direction: "steady"}, no means.
    with pytest.raises(ValueError, match=r"'gold etf': need more than window_points \(4\)"):
        await one(trends([10, 20, 30, 40]), TrendRequest(keyword="gold etf"))


# --- the service-backed agents, read against agents/voice, h_supervisor, aa_fetcher ----------
async def test_streamed_speech_is_transcribed_as_one_stream() -> None:
    # Go transcribes each voice_asr_chunk alone (a one-chunk stream per message): the final
    # of "hel" then "lo" is the echo of "lo". The port transcribes the audio so far.
    agent = VoiceStreaming("voice_streaming")
    await one(agent, VoiceAsrChunk(stream_id="s", seq=0, audio=b"hel"))
    final = await one(agent, VoiceAsrChunk(stream_id="s", seq=1, audio=b"lo", final=True))
    assert (final.message_type, final.text) == ("voice_asr_final", "hello (echo)")


class _WordEmbedder:
    """Counts two words, so a query with neither scores 0 against every exemplar."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(t.split().count(w)) for w in ("card", "otp")] for t in texts]


async def test_a_query_like_no_route_is_not_forwarded() -> None:
    # Go routes every query to its best-scoring route, however low: "hello there" would go
    # to the first route with a score of 0. The port answers the caller h_unrouted.
    routes = {"scam": SemanticRoute("phishing_classifier", PhishingCheck, ("otp",))}
    agent = HSupervisor("h_supervisor", routes=routes, embedder=_WordEmbedder())
    out = await one(agent, HSuperviseRequest(query="hello there"))
    assert (out.message_type, out.best_route, out.best_score) == ("h_unrouted", "scam", 0.0)


async def test_aa_fetch_without_dates_is_the_whole_statement() -> None:
    # Go's fixture fills an empty window from the wall clock (the month to today), so the
    # same request answers differently each day. The port's window is the request's; none
    # asked, the whole statement (January's and February's 2026 entries alike).
    ledger = InMemoryConsentLedger()
    ledger.grant("user-1", "transactions")
    agent = AaFetcher("aa_fetcher", client=InMemoryFIClient.sample(), ledger=ledger)
    out = await one(agent, AaFetchRequest(account_id="acct-123"), metadata={"user_id": "user-1"})
    assert [t.date for t in out.transactions] == [
        "2026-01-01",
        "2026-01-03",
        "2026-01-10",
        "2026-02-01",
    ]


async def test_invoice_discounting_least_cost_before_lowest_apr() -> None:
    # At 10 % a year: L (AAA, 365 days) costs 10,000 of 1 L (APR 10,000 / 90,000 = 11.1 %);
    # S (A, x1.25, 30 days) costs 1 L x 0.125 x 30 / 365 = 1,027.40 (APR 12.6 %). For 50,000
    # Go takes L, the lower APR, at 10,000; the port takes S at 1,027.40.
    invoices = (
        Receivable(invoice_id="L", face_value=100_000, days=365, buyer_rating="AAA"),
        Receivable(invoice_id="S", face_value=100_000, days=30, buyer_rating="A"),
    )
    request = InvoiceDiscountRequest(invoices=invoices, target=50_000, annual_rate_bp=1000)
    plan = await ask("invoice_discounter", request)
    assert ([p.invoice_id for p in plan.picks], plan.cost) == (["S"], 1027.40)


async def test_prepayment_saving_on_a_deductible_loan_is_after_tax() -> None:
    # 20,000 at 1 % a month, EMI 10,000: 305.02 of interest; 10,000 prepaid leaves 101 (a
    # 204.02 saving, test_lending.py). Go reports 204.02 for a home loan too; at a 30 % slab
    # the port's net saving is 204.02 x 0.7 = 142.81.
    loan = Loan(
        loan_id="home", outstanding=20_000, annual_rate_pct=12, emi=10_000, tax_deductible=True
    )
    request = PrepaymentRequest(loans=(loan,), lump_sum=10_000, marginal_rate_pct=30)
    plan = await ask("prepayment_advisor", request)
    (option,) = plan.options
    assert (option.interest_saved, option.net_saving) == (204.02, 142.81)


async def test_claim_sublimit_caps_the_expense_before_the_deductible_and_copay() -> None:
    # 150,000 of hospitalisation, a 1 L sublimit, a 10,000 deductible, a 10 % co-pay. Go:
    # (150,000 - 10,000) x 0.9 = 126,000, then capped at the sublimit: 100,000. The port
    # admits 100,000 (the sublimit), takes the deductible, then the co-pay:
    # (100,000 - 10,000) x 0.9 = 81,000.
    terms = {"policy_id": "P", "start_date": "2025-01-01", "sum_insured": 500_000}
    rule = {"category": "hospitalization", "copay": 0.1, "sublimit": 100_000}
    terms |= {"deductible": 10_000, "coverage": [rule]}
    request = ClaimRequest.model_validate(
        {
            "claim_id": "C",
            "policy": terms,
            "incident_date": "2025-06-01",
            "items": [{"category": "hospitalization", "amount": 150_000}],
        }
    )
    decision = await ask("claim_adjudicator", request)
    assert (decision.action, decision.payable) == ("approve_partial", 81_000)


async def test_preauth_room_above_the_limit_cuts_every_charge_in_proportion() -> None:
    # A room at 8,000 a day against a 5,000 limit, 4 days, a 1 L bill. Go deducts the excess
    # rent (3,000 x 4 = 12,000) and 60 % of the bill x 3,000 / 8,000 (22,500): 65,500 paid.
    # The port pays every charge at 5,000 / 8,000: 62,500.
    request = PreauthRequest(
        request_id="P",
        policy_active=True,
        procedure="appendectomy",
        estimate=100_000,
        stay_days=4,
        room_rent_per_day=8_000,
        room_rent_limit_per_day=5_000,
        sum_insured_remaining=300_000,
    )
    out = await ask("health_preauth", request)
    assert (out.action, out.approved_amount) == ("approve_with_deduction", 62_500)


async def test_synthetic_thin_file_does_not_depend_on_age() -> None:
    # Go: at a stated age of 22, 3 months of bureau history is no signal (its rule starts at
    # 25). The port flags a file under 6 months at any age.
    check = SyntheticCheck(
        pan="ABCPK1234F", pan_name="Asha Kumar", aadhaar_name="Asha Kumar", credit_history_months=3
    )
    out = await ask("synthetic_identity_detector", check)
    assert (out.verdict, out.signals) == ("review", ("thin_file",))


async def test_session_logins_at_the_same_instant_in_two_cities_is_travel() -> None:
    # Go skips a pair of logins with no time between them (hours <= 0): Mumbai and Delhi at
    # the same millisecond is no signal there. Here it is impossible travel.
    at = datetime(2026, 1, 1, tzinfo=UTC)
    check = SessionCheck(
        user_id="u1",
        previous=Login(at=at, latitude=19.07, longitude=72.88, device_id="d1", ip="1.1.1.1"),
        current=Login(at=at, latitude=28.61, longitude=77.21, device_id="d1", ip="1.1.1.1"),
    )
    out = await ask("cyber_guardian", check)
    assert (out.action, out.signals) == ("block", ("impossible_travel",))


async def test_invoice_problems_hold_or_reject_whatever_go_confidence() -> None:
    # Go scores confidence and posts above 0.8: 9 laptops received of 10 invoiced (-0.10),
    # no PO matched (-0.15) or a line total off (-0.05) each still post. Here a match problem
    # holds and a document problem rejects.
    line = InvoiceLine(sku="8471", qty=10, unit_price=1_000)
    invoice = Invoice(
        number="I",
        supplier_gstin="27AAPFU0939F1ZV",
        buyer_gstin="29AABCT1332L1ZT",
        irn="ab" * 32,
        taxable_value=10_000,
        gst_rate=18,
        gst_amount=1_800,
        lines=(line,),
    )
    short = InvoicePacket(
        invoice=invoice, po_total=11_800, goods_receipt=(line.model_copy(update={"qty": 9}),)
    )
    assert (await ask("invoice_processor", short)).action == "hold"
    no_po = InvoicePacket(invoice=invoice, goods_receipt=(line,))
    assert (await ask("invoice_processor", no_po)).problems == ("no purchase order to match",)
    printed = invoice.model_copy(update={"lines": (line.model_copy(update={"line_total": 99}),)})
    wrong = InvoicePacket(invoice=printed, po_total=11_800, goods_receipt=(line,))
    assert (await ask("invoice_processor", wrong)).action == "reject"


async def test_motor_third_party_is_the_tariff_not_a_share_of_the_idv() -> None:
    # A 5 L IDV renewed at 25 % NCB with zero-dep. Go: base 3 % = 15,000, own damage 70 %
    # (10,500) x 0.75 = 7,875, third party 30 % (4,500): 12,375, x 1.10 for zero-dep on the
    # whole = 13,612.50. The port: own damage 15,000 x 0.75 = 11,250, x 1.10 = 12,375, plus
    # the third-party tariff 2,094 = 14,469.
    request = MotorRequest(
        kind="renewal_quote", policy_id="M", idv=500_000, claim_free_years=2, zero_dep=True
    )
    quote = await ask("auto_insurance", request)
    assert (quote.ncb, quote.premium) == (0.25, 14_469)


async def test_motor_repair_of_exactly_75_percent_is_not_a_total_loss() -> None:
    # 3.75 L of repairs on a 5 L IDV. Go (>= 75 %): a total loss, settlement hint 5 L, with
    # garages. The port (IRDAI: the repair *exceeds* 75 %): a repair, less the Rs 1,000
    # compulsory deductible, at the city's garages.
    request = MotorRequest(
        kind="fnol", policy_id="M", idv=500_000, repair_estimate=375_000, city="Mumbai"
    )
    claim = await ask("auto_insurance", request)
    assert (claim.action, claim.payable, len(claim.garages)) == ("repair", 374_000, 2)


def _sme(**changes: Any) -> SmeLoanRequest:
    application: dict[str, Any] = {
        "business_id": "B",
        "gstin": None,
        "annual_turnover": 20_000_000,
        "requested_amount": 3_000_000,
        "tenure_months": 36,
        "cashflow_score": 0.75,
        "gst_filing_regular": True,
        "udyam_registered": True,
        "sector": "manufacturing",
    }
    return SmeLoanRequest.model_validate(application | changes)


async def test_sme_irregular_gst_filing_declines() -> None:
    # Go stored gst_filing_regular and never read it: approved, 30 L at 11.25 %. The port's
    # GST step declines a filer who missed returns (fewer than 9 of 12, or Go's flag false).
    offer = await ask("sme_loan_workflow", _sme(gst_filing_regular=False))
    assert (offer.status, offer.steps[0].status) == ("declined", "failed")


async def test_sme_offer_is_capped_by_what_the_surplus_services() -> None:
    # Go offers min(asked, 30 % of turnover): 30 L. Given monthly flows as well (surplus
    # 1,00,000 - 80,000 = 20,000 a month), the port also caps at what half the surplus
    # services over the tenor at the offered 11.25 %: 10,000 x 3,000,000 / 98,571.70 =
    # 304,347.
    flows = {"monthly_inflows": (100_000,) * 3, "monthly_outflows": (80_000,) * 3}
    offer = await ask("sme_loan_workflow", _sme(**flows))
    assert (offer.status, offer.amount) == ("sanctioned", 304_347)


def test_a_sign_against_the_type_is_refused() -> None:
    # Go: cents = int64(-450 * 100) = -45000, and only a debit with cents > 0 is negated, so
    # the credit stays -45000: a 450 expense. The port refuses the row, naming its line.
    head = "date,description,amount,type\n"
    with pytest.raises(StatementError, match=r"^line 2: amount '-450' is money out but the type"):
        parse_statement(head + "2026-01-01,Refund,-450,credit\n")
    (debit,) = parse_statement(head + "2026-01-01,Rent,-450,debit\n")  # agrees: 450 out
    assert debit.amount_cents == -45_000
