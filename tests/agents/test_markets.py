"""Markets agents: fund screening, SIP against lumpsum, options, the MPC reader, trends."""

from __future__ import annotations

import math

import pytest
from genie_agents.markets import (
    GoogleTrends,
    InMemoryTrendFetcher,
    MfScreener,
    MpcResearch,
    OptionsExplainer,
    SipVsLumpsum,
)
from genie_agents.markets.funds import (
    Fund,
    MfScreenRequest,
    SipLumpsumRequest,
    simulate_sip_lumpsum,
)
from genie_agents.markets.mpc import MpcBaseline, MpcSummary
from genie_agents.markets.options import OptionRequest
from genie_agents.markets.trends import TrendRequest, TrendSignal

from genie import InvalidMessageError, MessageTypes

from .helpers import one

TYPES = MessageTypes([MfScreenRequest, SipLumpsumRequest, OptionRequest, MpcSummary, TrendRequest])


def refused(type_name: str, data: dict[str, object], field: str) -> None:
    with pytest.raises(
        InvalidMessageError, match=f"invalid '{type_name}' message: field '{field}'"
    ):
        TYPES.parse_payload(type_name, data)


# --- mf_screener -------------------------------------------------------------------------------
# A: 3y 15 % -> 0.75, 5y 12 % -> 0.6, Sharpe 1.2 -> 0.6, TER 0.5 % -> 1 - 0.5/2.5 = 0.8, three
#    of four years above a 5 % benchmark -> 0.75:
#    100 x (0.25x0.75 + 0.25x0.6 + 0.2x0.6 + 0.15x0.8 + 0.15x0.75) = 69.00
# B: 3y 25 % -> capped 1, 5y -5 % -> 0, Sharpe 3 -> capped 1, TER 3 % -> 0, 2 of 2 -> 1:
#    100 x (0.25 + 0 + 0.2 + 0 + 0.15) = 60.00; "Alpha" has the same numbers and ranks first.
A = Fund(
    name="A",
    cagr_3y_pct=15,
    cagr_5y_pct=12,
    sharpe=1.2,
    expense_ratio_pct=0.5,
    yearly_returns_pct=(10, -2, 8, 15),
)
B = Fund(
    name="Beta",
    cagr_3y_pct=25,
    cagr_5y_pct=-5,
    sharpe=3,
    expense_ratio_pct=3.0,
    yearly_returns_pct=(6, 7),
)
ALPHA = B.model_copy(update={"name": "Alpha"})


async def test_mf_screener_composite_and_ranking() -> None:
    req = MfScreenRequest(funds=(B, A, ALPHA), benchmark_return_pct=5)
    out = await one(MfScreener("mf_screener"), req)
    assert [(f.rank, f.name, f.score) for f in out.funds] == [
        (1, "A", 69.0),
        (2, "Alpha", 60.0),
        (3, "Beta", 60.0),
    ]
    a = out.funds[0]
    assert (a.cagr_3y, a.cagr_5y, a.sharpe, a.expense, a.consistency) == (
        0.75,
        0.6,
        0.6,
        0.8,
        0.75,
    )
    top = await one(MfScreener("m"), req.model_copy(update={"top": 2}))
    assert [f.name for f in top.funds] == ["A", "Alpha"]


async def test_mf_screener_consistency_is_strictly_above_the_benchmark() -> None:
    # A year equal to the benchmark does not count: 10 and 15 of (10, -2, 8, 15) beat 8.
    out = await one(MfScreener("m"), MfScreenRequest(funds=(A,), benchmark_return_pct=8))
    assert out.funds[0].consistency == 0.5


def test_mf_screener_refuses_bad_funds() -> None:
    refused("mf_screen_request", {"funds": []}, "funds")
    fund = A.model_dump()
    refused("mf_screen_request", {"funds": [fund, fund]}, "funds")
    refused(
        "mf_screen_request",
        {"funds": [{**fund, "yearly_returns_pct": []}]},
        "funds.0.yearly_returns_pct",
    )
    refused(
        "mf_screen_request",
        {"funds": [{**fund, "expense_ratio_pct": -1}]},
        "funds.0.expense_ratio_pct",
    )
    with pytest.raises(InvalidMessageError, match="repeated: A"):
        TYPES.parse_payload("mf_screen_request", {"funds": [fund, fund]})


# --- sip_vs_lumpsum ----------------------------------------------------------------------------
# 12,000 at 12 % a year, no volatility. Lumpsum: 12,000 x 1.12 = 13,440. SIP: 1,000 at the start
# of each month, g = 1.12^(1/12): 1,000 x g (g^12 - 1) / (g - 1) = 12,766.50.
SURE = SipLumpsumRequest(amount=12_000, volatility_pct=0)


def sip_annuity(amount: float, yearly: float, months: int) -> float:
    g = (1 + yearly) ** (1 / 12)
    return float(amount / months * g * (g**months - 1) / (g - 1))


async def test_sip_vs_lumpsum_without_volatility() -> None:
    out = await one(SipVsLumpsum("sip_vs_lumpsum"), SURE)
    assert (out.lumpsum_p10, out.lumpsum_p50, out.lumpsum_p90) == (13_440.0,) * 3
    assert out.sip_p50 == 12_766.5 == round(sip_annuity(12_000, 0.12, 12), 2)
    assert (out.regret_probability, out.recommendation) == (0.0, "lumpsum")
    # A falling market: the SIP buys lower, the lumpsum is regretted on every path.
    falling = await one(SipVsLumpsum("s"), SURE.model_copy(update={"expected_return_pct": -12}))
    assert falling.lumpsum_p50 == 10_560.0
    assert falling.sip_p50 == round(sip_annuity(12_000, -0.12, 12), 2)
    assert (falling.regret_probability, falling.recommendation) == (1.0, "sip")


async def test_sip_vs_lumpsum_longer_horizon_grows_both_after_the_sip() -> None:
    out = await one(SipVsLumpsum("s"), SURE.model_copy(update={"horizon_months": 24}))
    assert out.lumpsum_p50 == 15_052.8  # 12,000 x 1.12^2
    assert out.sip_p50 == 14_298.48  # 12,766.50 x 1.12


async def test_sip_vs_lumpsum_is_seeded_and_paired() -> None:
    req = SipLumpsumRequest(amount=120_000, volatility_pct=20)
    first = await one(SipVsLumpsum("s"), req)
    assert first == await one(SipVsLumpsum("s"), req)
    assert first != await one(SipVsLumpsum("s", seed=7), req)
    finals = simulate_sip_lumpsum(req, paths=1000, seed=42)
    assert first.regret_probability == sum(ls < sp for ls, sp in finals) / 1000
    assert 0 < first.regret_probability < 1
    assert first.lumpsum_p10 < first.sip_p10 < first.sip_p90 < first.lumpsum_p90
    # Expected lumpsum value: 120,000 x 1.12 (the drift is set so).
    mean = sum(ls for ls, _ in finals) / 1000
    assert mean == pytest.approx(134_400, rel=0.02)


def test_sip_vs_lumpsum_refuses_bad_requests() -> None:
    refused("sip_lumpsum_request", {"amount": 0}, "amount")
    refused("sip_lumpsum_request", {"amount": 1, "horizon_months": 241}, "horizon_months")
    refused(
        "sip_lumpsum_request",
        {"amount": 1, "sip_months": 12, "horizon_months": 6},
        "horizon_months",
    )
    with pytest.raises(ValueError, match="paths must be at least 1"):
        SipVsLumpsum("s", paths=0)


# --- options_explainer ------------------------------------------------------------------------
# Hull, Options, Futures and Other Derivatives, examples 15.6 and 19.x: S=42, K=40, r=10 %,
# sigma=20 %, T=0.5: d1 = 0.7693, d2 = 0.6278, call 4.76, put 0.81. S=49, K=50, r=5 %,
# sigma=20 %, T=0.3846: delta 0.522, gamma 0.066, vega 12.1 (0.121 per point), theta -4.31 a
# year (-0.0118 a day), rho 8.91 (0.0891 per point).
HULL = OptionRequest(
    kind="call", spot=42, strike=40, days_to_expiry=182.5, volatility_pct=20, rate_pct=10
)


async def test_black_scholes_prices_match_hull() -> None:
    call = await one(OptionsExplainer("options_explainer"), HULL)
    put = await one(OptionsExplainer("o"), HULL.model_copy(update={"kind": "put"}))
    assert call.d1 == pytest.approx(0.7693, abs=1e-4)
    assert call.d2 == pytest.approx(0.6278, abs=1e-4)
    assert call.fair_value == pytest.approx(4.76, abs=0.005)
    assert put.fair_value == pytest.approx(0.81, abs=0.005)
    # Put-call parity: C - P = S - K e^(-rT).
    assert call.fair_value - put.fair_value == pytest.approx(42 - 40 * math.exp(-0.05), abs=1e-3)


async def test_greeks_match_hull() -> None:
    req = OptionRequest(
        kind="call", spot=49, strike=50, days_to_expiry=0.3846 * 365, volatility_pct=20, rate_pct=5
    )
    g = (await one(OptionsExplainer("o"), req)).greeks
    assert g.delta == pytest.approx(0.522, abs=1e-3)
    assert g.gamma == pytest.approx(0.066, abs=1e-3)
    assert g.vega == pytest.approx(0.121, abs=1e-3)
    assert g.theta == pytest.approx(-4.31 / 365, abs=1e-4)
    assert g.rho == pytest.approx(0.0891, abs=1e-4)
    short = await one(
        OptionsExplainer("o"), req.model_copy(update={"position": "short", "quantity": 2})
    )
    assert short.greeks.delta == pytest.approx(-2 * g.delta, abs=1e-4)


async def test_expiry_payoff_breakeven_and_limits() -> None:
    long_call = HULL.model_copy(update={"premium": 4.76, "expiry_spots": (30, 40, 50)})
    out = await one(OptionsExplainer("o"), long_call)
    assert [(p.spot, p.payoff) for p in out.payoff] == [(30, -4.76), (40, -4.76), (50, 5.24)]
    assert (out.breakeven, out.max_profit, out.max_loss) == (44.76, None, 4.76)
    short = await one(
        OptionsExplainer("o"), long_call.model_copy(update={"position": "short", "quantity": 2})
    )
    assert [p.payoff for p in short.payoff] == [9.52, 9.52, -10.48]
    assert (short.max_profit, short.max_loss) == (9.52, None)
    put = HULL.model_copy(update={"kind": "put", "premium": 0.81})
    long_put = await one(OptionsExplainer("o"), put)
    assert (long_put.breakeven, long_put.max_profit, long_put.max_loss) == (39.19, 39.19, 0.81)
    # Default spots: 80-120 % of the strike.
    assert [p.spot for p in long_put.payoff] == [32, 36, 40, 44, 48]
    assert long_put.payoff[0].payoff == 7.19  # 40 - 32 - 0.81
    short_put = await one(OptionsExplainer("o"), put.model_copy(update={"position": "short"}))
    assert (short_put.max_profit, short_put.max_loss) == (0.81, 39.19)


def test_options_refuse_bad_requests() -> None:
    good = HULL.model_dump()
    refused("option_request", {**good, "kind": "straddle"}, "kind")
    refused("option_request", {**good, "spot": 0}, "spot")
    refused("option_request", {**good, "days_to_expiry": 0}, "days_to_expiry")
    refused("option_request", {**good, "volatility_pct": 0}, "volatility_pct")
    refused("option_request", {**good, "expiry_spots": [1.0] * 101}, "expiry_spots")


# --- mpc_research -----------------------------------------------------------------------------
BASE = MpcBaseline(
    repo_rate_pct=6.5, stance="neutral", cpi_projection_pct=4.5, gdp_projection_pct=7.0
)


def summary(**fields: object) -> MpcSummary:
    values: dict[str, object] = {
        "meeting": "2026-02",
        "repo_rate_pct": 6.5,
        "stance": "neutral",
        "cpi_projection_pct": 4.5,
        "gdp_projection_pct": 7.0,
        "baseline": BASE,
    }
    return MpcSummary.model_validate({**values, **fields})


async def test_mpc_cut_with_a_softer_stance_is_dovish() -> None:
    # -25 bps = -1, neutral -> accommodative = -1, CPI 4.5 -> 4.0 = -0.5: hawkishness -2.5.
    out = await one(
        MpcResearch("mpc_research"),
        summary(
            repo_rate_pct=6.25,
            stance="accommodative",
            cpi_projection_pct=4.0,
            gdp_projection_pct=6.8,
        ),
    )
    assert (out.direction, out.rate_change_bps, out.stance_shift) == ("cut", -25, -1)
    assert (out.cpi_revision_pp, out.gdp_revision_pp) == (-0.5, -0.2)
    assert (out.hawkishness, out.tone) == (-2.5, "dovish")
    assert (out.surprise_bps, out.surprise) == (-25, True)  # no change was expected


async def test_mpc_hold_tone_at_the_edges() -> None:
    # A hold with CPI revised up 0.4 points: 0.4, neutral; 0.5 points: hawkish (inclusive).
    mild = await one(MpcResearch("m"), summary(cpi_projection_pct=4.9))
    assert (mild.direction, mild.hawkishness, mild.tone, mild.surprise) == (
        "hold",
        0.4,
        "neutral",
        False,
    )
    edge = await one(MpcResearch("m"), summary(cpi_projection_pct=5.0))
    assert (edge.hawkishness, edge.tone) == (0.5, "hawkish")
    hike = await one(
        MpcResearch("m"),
        summary(repo_rate_pct=6.85, stance="withdrawal_of_accommodation"),
    )
    assert (hike.direction, hike.rate_change_bps, hike.hawkishness, hike.tone) == (
        "hike",
        35,
        2.4,  # 35/25 + 1
        "hawkish",
    )


async def test_mpc_surprise_is_against_the_expected_rate() -> None:
    expected_cut = BASE.model_copy(update={"expected_repo_rate_pct": 6.25})
    held = await one(MpcResearch("m"), summary(baseline=expected_cut))
    assert (held.direction, held.surprise_bps, held.surprise) == ("hold", 25, True)
    assert "+25 bps against expectations" in held.rationale
    cut = await one(MpcResearch("m"), summary(baseline=expected_cut, repo_rate_pct=6.25))
    assert (cut.surprise_bps, cut.surprise) == (0, False)


def test_mpc_refuses_bad_summaries() -> None:
    good = summary().model_dump()
    refused("mpc_summary", {**good, "stance": "hawkish"}, "stance")
    refused("mpc_summary", {**good, "repo_rate_pct": -1}, "repo_rate_pct")
    refused("mpc_summary", {k: v for k, v in good.items() if k != "baseline"}, "baseline")


# --- google_trends ----------------------------------------------------------------------------
FETCHER = InMemoryTrendFetcher(
    {
        # Window of 2: prior (10, 12, 8) mean 10, latest (14, 16) mean 15: 1.5x, surging.
        "gold loan": [10, 12, 8, 14, 16],
        "crypto": [10, 10, 5, 7],  # latest mean 6 of prior 10: 0.6x, fading
        "sip": [10, 10, 14, 15.8],  # 14.9 / 10 = 1.49x: steady
        "new thing": [0, 0, 3, 1],  # nothing before: surging, no ratio
        "flat": [0, 0, 0],
        "short": [5, 6],
        "broken": [1, 2, float("nan")],
    }
)


async def trend(keyword: str, window: int = 2) -> TrendSignal:
    signal: TrendSignal = await one(
        GoogleTrends("google_trends", fetcher=FETCHER),
        TrendRequest(keyword=keyword, window_points=window),
    )
    return signal


async def test_trend_thresholds_are_inclusive() -> None:
    surging = await trend("Gold Loan")
    assert (surging.latest_mean, surging.prior_mean, surging.ratio, surging.signal) == (
        15,
        10,
        1.5,
        "surging",
    )
    fading = await trend("crypto")
    assert (fading.ratio, fading.signal) == (0.6, "fading")
    steady = await trend("sip")
    assert (steady.ratio, steady.signal) == (1.49, "steady")
    new = await trend("new thing")
    assert (new.ratio, new.signal) == (None, "surging")
    assert (await trend("flat", window=1)).signal == "steady"
    # The default window is Go's 4: (10) against (12, 8, 14, 16) mean 12.5: 1.25x.
    default = await one(GoogleTrends("g", fetcher=FETCHER), TrendRequest(keyword="gold loan"))
    assert (default.ratio, default.signal) == (1.25, "steady")


async def test_trend_errors_name_the_keyword() -> None:
    with pytest.raises(ValueError, match=r"trend for 'short': need more than window_points \(2\)"):
        await trend("short")
    with pytest.raises(ValueError, match="interest values must be finite and >= 0"):
        await trend("broken", window=1)
    with pytest.raises(LookupError, match="no trend series for 'nope' in 'IN'"):
        await trend("nope")
    # Without a fetcher (as Go, where a nil fetcher errors), every keyword fails clearly.
    with pytest.raises(LookupError, match="no trend series"):
        await one(GoogleTrends("g"), TrendRequest(keyword="sip"))
    refused("trend_request", {"keyword": "x", "window_points": 0}, "window_points")
    refused("trend_request", {"keyword": ""}, "keyword")
