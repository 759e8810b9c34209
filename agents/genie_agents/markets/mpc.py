"""An RBI Monetary Policy Committee decision read against the baseline before it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genie import BaseAgent, Context, Message, Payload, handler

from .._common import Record

__all__ = ["MpcBaseline", "MpcResearch", "MpcSignal", "MpcSummary", "Stance"]

# The RBI's stances from the most accommodative to the tightest; a step along it counts as
# much as a 25 bps move in the hawkishness score.
Stance = Literal["accommodative", "neutral", "withdrawal_of_accommodation", "tightening"]
STANCES: tuple[str, ...] = ("accommodative", "neutral", "withdrawal_of_accommodation", "tightening")
STEP_BPS = 25
TONE_BAND = 0.5


class MpcBaseline(Record):
    repo_rate_pct: float = Field(ge=0, le=50)
    stance: Stance
    cpi_projection_pct: float = Field(ge=-20, le=50)
    gdp_projection_pct: float = Field(ge=-30, le=50)
    expected_repo_rate_pct: float | None = Field(None, ge=0, le=50)


class MpcSummary(Payload):
    message_type = "mpc_summary"
    meeting: str = ""
    repo_rate_pct: float = Field(ge=0, le=50)
    stance: Stance
    cpi_projection_pct: float = Field(ge=-20, le=50)
    gdp_projection_pct: float = Field(ge=-30, le=50)
    baseline: MpcBaseline


class MpcSignal(Payload):
    message_type = "mpc_signal"
    meeting: str
    direction: Literal["hike", "cut", "hold"]
    rate_change_bps: int
    stance_shift: int
    cpi_revision_pp: float
    gdp_revision_pp: float
    hawkishness: float
    tone: Literal["hawkish", "dovish", "neutral"]
    surprise_bps: int
    surprise: bool
    rationale: str


def _bps(pct: float) -> int:
    return round(pct * 100)


class MpcResearch(BaseAgent):
    """Diffs an RBI MPC summary against the baseline: the direction of the repo move (hike /
    cut / hold, in bps), the stance shift (steps along accommodative, neutral, withdrawal of
    accommodation, tightening), and the CPI and GDP projection revisions. Hawkishness = rate
    change / 25 bps + stance steps + CPI revision in points; hawkish at 0.5 or more, dovish at
    -0.5 or less. A surprise is a repo rate other than the expected one (the baseline's
    ``expected_repo_rate_pct``, else its repo rate: no change expected)."""

    capabilities = ("mpc_research",)
    produces = (MpcSignal,)

    @handler
    async def on_summary(self, payload: MpcSummary, ctx: Context) -> Message:
        p, base = payload, payload.baseline
        change = _bps(p.repo_rate_pct) - _bps(base.repo_rate_pct)
        shift = STANCES.index(p.stance) - STANCES.index(base.stance)
        # Projections are given to one or two decimals: revise in basis points, exactly.
        cpi = (_bps(p.cpi_projection_pct) - _bps(base.cpi_projection_pct)) / 100
        gdp = (_bps(p.gdp_projection_pct) - _bps(base.gdp_projection_pct)) / 100
        hawkishness = round(change / STEP_BPS + shift + cpi, 2)
        tone: Literal["hawkish", "dovish", "neutral"] = (
            "hawkish"
            if hawkishness >= TONE_BAND
            else "dovish"
            if hawkishness <= -TONE_BAND
            else "neutral"
        )
        expected = base.expected_repo_rate_pct
        if expected is None:
            expected = base.repo_rate_pct
        surprise = _bps(p.repo_rate_pct) - _bps(expected)
        direction: Literal["hike", "cut", "hold"] = (
            "hike" if change > 0 else "cut" if change < 0 else "hold"
        )
        rationale = (
            f"repo {direction} of {abs(change)} bps to {p.repo_rate_pct:.2f} %, stance "
            f"{base.stance} -> {p.stance}, CPI projection {cpi:+.2f} pp, GDP {gdp:+.2f} pp"
            + (f"; {surprise:+d} bps against expectations" if surprise else "; as expected")
        )
        return ctx.emit(
            MpcSignal(
                meeting=p.meeting,
                direction=direction,
                rate_change_bps=change,
                stance_shift=shift,
                cpi_revision_pp=cpi,
                gdp_revision_pp=gdp,
                hawkishness=hawkishness,
                tone=tone,
                surprise_bps=surprise,
                surprise=surprise != 0,
                rationale=rationale,
            )
        )
