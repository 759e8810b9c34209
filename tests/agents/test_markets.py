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
    FundFilter,
    MfScreenRequest,
    SipLumpsumRequest,
    simulate_sip_lumpsum,
)
from genie_agents.markets.mpc import MpcMeeting, MpcSummary
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
# The Go system's composite (agents/mf_screener): 40 % 5y CAGR / 25 %, 25 % Sharpe / 1.5, 20 %
# (1 - TER / 2 %), 15 % (1 - negative quarters / 8), Sharpe = (5y CAGR - 7 %) / std dev.
# X: 5y 15 % -> 0.6; Sharpe (15 - 7) / 12 = 0.6667 -> 0.4444; TER 1 % -> 0.5; 2 quarters ->
#    0.75: 100 x (0.4x0.6 + 0.25x0.4444 + 0.2x0.5 + 0.15x0.75) = 24 + 11.11 + 10 + 11.25 = 56.36
# Y: 5y 30 % -> 1; Sharpe 23 / 10 = 2.3 -> 1; TER 0.2 % -> 0.9; none -> 1: 40+25+18+15 = 98.00
# Z: 5y -5 % -> 0; Sharpe -12 / 20 = -0.6 -> 0; TER 3 % -> 0; 10 quarters -> 0: 0.00
X = Fund(
    name="X",
    category="equity-large",
    aum_crore=5_000,
    expense_ratio_pct=1.0,
    cagr_3y_pct=14,
    cagr_5y_pct=15,
    std_dev_pct=12,
    negative_quarters_5y=2,
)
Y = Fund(
    name="Y",
    category="equity-mid",
    aum_crore=800,
    expense_ratio_pct=0.2,
    cagr_3y_pct=25,
    cagr_5y_pct=30,
    std_dev_pct=10,
    negative_quarters_5y=0,
)
Z = Fund(
    name="Z",
    category="equity-large",
    aum_crore=300,
    expense_ratio_pct=3.0,
    cagr_3y_pct=-2,
    cagr_5y_pct=-5,
    std_dev_pct=20,
    negative_quarters_5y=10,
)


async def test_mf_screener_composite_and_ranking() -> None:
    out = await one(MfScreener("mf_screener"), MfScreenRequest(funds=(X, Z, Y)))
    assert [(f.rank, f.name, f.score, f.sharpe) for f in out.funds] == [
        (1, "Y", 98.0, 2.3),
        (2, "X", 56.36, 0.67),
        (3, "Z", 0.0, -0.6),
    ]
    x = out.funds[1]
    assert (x.cagr_5y_part, x.sharpe_part, x.expense_part, x.consistency_part) == (
        0.6,
        0.4444,
        0.5,
        0.75,
    )
    assert out.filtered_out == 0
    top = await one(MfScreener("m"), MfScreenRequest(funds=(X, Z, Y), top=2))
    assert [f.name for f in top.funds] == ["Y", "X"]
    # The risk-free rate is the agent's: at 3 %, X's Sharpe is 12 / 12 = 1 -> 0.6667 of 25.
    low = await one(MfScreener("m", risk_free_pct=3), MfScreenRequest(funds=(X,)))
    assert (low.funds[0].sharpe, low.funds[0].score) == (1.0, 61.92)  # 24 + 16.67 + 10 + 11.25


async def test_mf_screener_equal_scores_keep_the_given_order() -> None:
    # Go's sort is stable: a tie keeps the request's order, whatever the names.
    twin = X.model_copy(update={"name": "A twin"})
    out = await one(MfScreener("m"), MfScreenRequest(funds=(X, twin)))
    assert [f.name for f in out.funds] == ["X", "A twin"]


async def test_mf_screener_filter_cuts_before_scoring() -> None:
    def screen(**cut: object) -> MfScreenRequest:
        return MfScreenRequest(funds=(X, Y, Z), filter=FundFilter.model_validate(cut))

    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"category": "equity-large"}, ["X", "Z"]),
        ({"min_aum_crore": 800}, ["Y", "X"]),  # at the minimum is kept
        ({"max_expense_ratio_pct": 1.0}, ["Y", "X"]),  # at the maximum is kept
        ({"min_cagr_3y_pct": 14}, ["Y", "X"]),
        ({"min_cagr_3y_pct": -1}, ["Y", "X"]),  # a negative minimum is a cut too
        ({"category": "equity-large", "min_aum_crore": 1_000}, ["X"]),
    ]
    for cut, kept in cases:
        out = await one(MfScreener("m"), screen(**cut))
        assert [f.name for f in out.funds] == kept, cut
        assert out.filtered_out == 3 - len(kept)


def test_mf_screener_refuses_bad_funds() -> None:
    refused("mf_screen_request", {"funds": []}, "funds")
    fund = X.model_dump()
    refused("mf_screen_request", {"funds": [fund, fund]}, "funds")
    refused("mf_screen_request", {"funds": [{**fund, "std_dev_pct": 0}]}, "funds.0.std_dev_pct")
    refused(
        "mf_screen_request",
        {"funds": [{**fund, "negative_quarters_5y": 21}]},
        "funds.0.negative_quarters_5y",
    )
    refused(
        "mf_screen_request",
        {"funds": [{**fund, "expense_ratio_pct": -1}]},
        "funds.0.expense_ratio_pct",
    )
    refused(
        "mf_screen_request",
        {"funds": [fund], "filter": {"max_aum": 3}},
        "filter.max_aum",
    )
    with pytest.raises(InvalidMessageError, match="repeated: X"):
        TYPES.parse_payload("mf_screen_request", {"funds": [fund, fund]})


# --- sip_vs_lumpsum ----------------------------------------------------------------------------
# Go's model (agents/sip_vs_lumpsum): the monthly growth has mean 1 + return / 12, the SIP puts
# amount / 12 in at the end of each of the first 12 months. 12,000 at 12 % a year, no
# volatility: g = 1.01. Lumpsum: 12,000 x 1.01^12 = 13,521.90. SIP: 1,000 x (1.01^12 - 1) /
# 0.01 = 12,682.50 (the last instalment earns nothing).
SURE = SipLumpsumRequest(amount=12_000, volatility_pct=0)


def sip_annuity(amount: float, yearly: float, months: int) -> float:
    g = 1 + yearly / 12
    return float(amount / months * (g**months - 1) / (g - 1))


async def test_sip_vs_lumpsum_without_volatility() -> None:
    out = await one(SipVsLumpsum("sip_vs_lumpsum"), SURE)
    assert (out.lumpsum_p10, out.lumpsum_p50, out.lumpsum_p90) == (13_521.9,) * 3
    assert out.sip_p50 == 12_682.5 == round(sip_annuity(12_000, 0.12, 12), 2)
    assert (out.lumpsum_win_probability, out.recommendation) == (1.0, "lumpsum")
    assert out.expected_regret_at_p50 == 839.4  # 13,521.90 - 12,682.50
    # A falling market: 12,000 x 0.99^12 = 10,636.62; the SIP buys lower and wins every path.
    falling = await one(SipVsLumpsum("s"), SURE.model_copy(update={"expected_return_pct": -12}))
    assert falling.lumpsum_p50 == 10_636.62
    assert (
        falling.sip_p50 == round(sip_annuity(12_000, -0.12, 12), 2) == 11_361.51
    )  # 1,000 x (1 - 0.99^12) / 0.01
    assert (falling.lumpsum_win_probability, falling.recommendation) == (0.0, "sip")


async def test_sip_vs_lumpsum_longer_horizon_grows_both_after_the_sip() -> None:
    out = await one(SipVsLumpsum("s"), SURE.model_copy(update={"horizon_months": 24}))
    assert out.lumpsum_p50 == 15_236.82  # 12,000 x 1.01^24
    assert out.sip_p50 == 14_290.96  # 12,682.50 x 1.01^12


async def test_sip_vs_lumpsum_verdict_thresholds_are_inclusive() -> None:
    # Go: lumpsum at a win probability of 0.70 or more, SIP at 0.30 or less, else a toss-up.
    # Ten paths of a flat, volatile market; the seeds were picked for 7, 6, 4 and 3 wins.
    flat = SipLumpsumRequest(amount=120_000, expected_return_pct=0, volatility_pct=20, paths=10)
    verdicts = []
    for seed in (4, 5, 2, 10):
        out = await one(SipVsLumpsum("s"), flat.model_copy(update={"seed": seed}))
        verdicts.append((out.lumpsum_win_probability, out.recommendation))
    assert verdicts == [(0.7, "lumpsum"), (0.6, "toss_up"), (0.4, "toss_up"), (0.3, "sip")]


async def test_sip_vs_lumpsum_is_seeded_and_paired() -> None:
    req = SipLumpsumRequest(amount=120_000, volatility_pct=20)
    first = await one(SipVsLumpsum("s"), req)
    assert first == await one(SipVsLumpsum("s"), req)
    assert first != await one(SipVsLumpsum("s"), req.model_copy(update={"seed": 7}))
    finals = simulate_sip_lumpsum(req)
    assert first.lumpsum_win_probability == sum(ls > sp for ls, sp in finals) / 1000
    assert first.lumpsum_p10 < first.sip_p10 < first.sip_p90 < first.lumpsum_p90
    # The lumpsum's expected value is Go's: 120,000 x 1.01^12 = 135,219.01.
    mean = sum(ls for ls, _ in finals) / 1000
    assert mean == pytest.approx(135_219, rel=0.02)
    fewer = await one(SipVsLumpsum("s"), req.model_copy(update={"paths": 10}))
    assert fewer.paths == 10


def test_sip_vs_lumpsum_refuses_bad_requests() -> None:
    refused("sip_lumpsum_request", {"amount": 0}, "amount")
    refused("sip_lumpsum_request", {"amount": 1, "horizon_months": 241}, "horizon_months")
    refused(
        "sip_lumpsum_request",
        {"amount": 1, "sip_months": 12, "horizon_months": 6},
        "horizon_months",
    )
    refused("sip_lumpsum_request", {"amount": 1, "paths": 0}, "paths")
    # 1,001 paths over 240 months is past the CPU bound (240,000 path-months).
    with pytest.raises(InvalidMessageError, match="at most 240,000"):
        TYPES.parse_payload(
            "sip_lumpsum_request", {"amount": 1, "paths": 1001, "horizon_months": 240}
        )


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
    # Default spots, Go's: 21 points from 70 % to 130 % of the strike (28, 29.2, ..., 52).
    spots = [p.spot for p in long_put.payoff]
    assert (len(spots), spots[:3], spots[10], spots[-1]) == (21, [28, 29.2, 30.4], 40, 52)
    assert long_put.payoff[0].payoff == 11.19  # 40 - 28 - 0.81
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
# Go's rules (agents/mpc_research): changes in bps; a hike is more hawkish, a cut more dovish,
# on a hold a CPI revision beyond 25 bps decides; a surprise is a repo change more than 15 bps
# from the consensus change.
BEFORE = MpcMeeting(
    meeting_date="2025-12-05",
    repo_rate_pct=6.5,
    sdf_rate_pct=6.25,
    msf_rate_pct=6.75,
    crr_pct=4,
    slr_pct=18,
    stance="neutral",
    vote_for=6,
    cpi_projection_pct=4.5,
    gdp_projection_pct=7.0,
)


def summary(**fields: object) -> MpcSummary:
    now = BEFORE.model_copy(update={"meeting_date": "2026-02-06", **fields})
    return MpcSummary(current=MpcMeeting.model_validate(now.model_dump()), previous=BEFORE)


async def test_mpc_cut_with_a_softer_stance_is_dovish() -> None:
    out = await one(
        MpcResearch("mpc_research"),
        summary(
            repo_rate_pct=6.25,
            stance="accommodative",
            cpi_projection_pct=4.0,
            gdp_projection_pct=6.7,
        ),
    )
    assert (out.repo_change_bps, out.stance_shift, out.hawkishness_delta) == (
        -25,
        "easing",
        "more_dovish",
    )
    assert (out.cpi_revision_bps, out.gdp_revision_bps) == (-50, -30)
    assert out.surprise == "dovish_surprise"  # -25 against a consensus of no change
    assert out.headline == "MPC cut repo by 25 bps on 2026-02-06; stance accommodative."
    assert out.downstream_hints == (
        "rate_watcher: refresh published rates",
        "loan_advisor: reprice floating-rate EMI projections",
        "prepayment_advisor: recompute effective APR rankings",
        "macro_research: flag growth downside risk",  # GDP -30 bps, beyond -25
    )


async def test_mpc_hold_tone_at_the_edges() -> None:
    # A hold with CPI revised up 25 bps: unchanged (beyond 25 is needed); 26 bps: hawkish.
    mild = await one(MpcResearch("m"), summary(cpi_projection_pct=4.75))
    assert (mild.repo_change_bps, mild.hawkishness_delta, mild.surprise) == (
        0,
        "unchanged",
        "in_line",
    )
    assert (mild.headline, mild.downstream_hints) == ("MPC kept policy steady on 2026-02-06.", ())
    edge = await one(MpcResearch("m"), summary(cpi_projection_pct=4.76))
    assert (edge.cpi_revision_bps, edge.hawkishness_delta) == (26, "more_hawkish")
    assert edge.downstream_hints == ("macro_research: flag inflation upside risk",)
    down = await one(MpcResearch("m"), summary(cpi_projection_pct=4.24))
    assert (down.cpi_revision_bps, down.hawkishness_delta) == (-26, "more_dovish")
    hike = await one(
        MpcResearch("m"), summary(repo_rate_pct=6.85, stance="withdrawal_of_accommodation")
    )
    assert (hike.repo_change_bps, hike.stance_shift, hike.hawkishness_delta) == (
        35,
        "tightening",
        "more_hawkish",
    )
    assert hike.surprise == "hawkish_surprise"
    back = MpcSummary(current=BEFORE, previous=hike_meeting())
    assert (await one(MpcResearch("m"), back)).stance_shift == "neutral"


def hike_meeting() -> MpcMeeting:
    return BEFORE.model_copy(update={"stance": "withdrawal_of_accommodation"})


async def test_mpc_surprise_is_against_the_consensus_change() -> None:
    # Consensus -25 bps. A hold is 25 bps off: hawkish surprise; a 40 bps cut is 15 off:
    # in line (beyond 15 is needed); a 50 bps cut, 25 off: dovish surprise.
    def expecting_a_cut(repo: float) -> MpcSummary:
        return summary(repo_rate_pct=repo, consensus_repo_change_bps=-25)

    outcomes = [
        (await one(MpcResearch("m"), expecting_a_cut(repo))).surprise for repo in (6.5, 6.1, 6.0)
    ]
    assert outcomes == ["hawkish_surprise", "in_line", "dovish_surprise"]
    # The consensus is read on the current meeting; the previous one's is ignored.
    old_consensus = MpcSummary(
        current=summary().current,
        previous=BEFORE.model_copy(update={"consensus_repo_change_bps": 50}),
    )
    assert (await one(MpcResearch("m"), old_consensus)).surprise == "in_line"


def test_mpc_refuses_bad_summaries() -> None:
    good = summary().model_dump()
    refused(
        "mpc_summary",
        {**good, "current": {**good["current"], "stance": "hawkish"}},
        "current.stance",
    )
    refused(
        "mpc_summary",
        {**good, "previous": {**good["previous"], "repo_rate_pct": -1}},
        "previous.repo_rate_pct",
    )
    refused("mpc_summary", {"current": good["current"]}, "previous")
    refused(
        "mpc_summary",
        {**good, "current": {**good["current"], "vote_for": 5, "vote_against": 2}},
        "current",
    )
    refused(
        "mpc_summary",
        {**good, "current": {**good["current"], "meeting_date": "Feb 2026"}},
        "current.meeting_date",
    )


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
