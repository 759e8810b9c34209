"""An RBI Monetary Policy Committee meeting read against the one before it (the Go system's
``mpc_research``: the same request, rules and signal)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from genie import BaseAgent, Context, Message, Payload, handler

from .._common import Record

__all__ = ["MpcMeeting", "MpcResearch", "MpcSignal", "MpcSummary", "Stance"]

Stance = Literal["accommodative", "neutral", "withdrawal_of_accommodation"]
MPC_MEMBERS = 6
CPI_BAND_BPS = 25  # a CPI projection revised by more than this moves the tone on a hold
SURPRISE_BAND_BPS = 15  # a repo move this far from the consensus is a surprise


class MpcMeeting(Record):
    """One meeting's outcome, field for field the Go system's ``Summary``."""

    meeting_date: str = ""  # YYYY-MM-DD, or blank (Go's zero value)
    repo_rate_pct: float = Field(ge=0, le=50)
    sdf_rate_pct: float = Field(0.0, ge=0, le=50)
    msf_rate_pct: float = Field(0.0, ge=0, le=50)
    crr_pct: float = Field(0.0, ge=0, le=100)
    slr_pct: float = Field(0.0, ge=0, le=100)
    stance: Stance
    vote_for: int = Field(0, ge=0, le=MPC_MEMBERS)
    vote_against: int = Field(0, ge=0, le=MPC_MEMBERS)
    cpi_projection_pct: float = Field(ge=-20, le=50)
    gdp_projection_pct: float = Field(ge=-30, le=50)
    # The market's expected repo change for this meeting (read on the current meeting only).
    consensus_repo_change_bps: int = Field(0, ge=-500, le=500)

    @field_validator("meeting_date")
    @classmethod
    def _a_date(cls, text: str) -> str:
        try:
            written = date.fromisoformat(text).isoformat() if text else text
        except ValueError:
            written = None
        if written != text:
            raise ValueError("must be a date, YYYY-MM-DD (or blank)")
        return text

    @model_validator(mode="after")
    def _six_votes(self) -> MpcMeeting:
        if self.vote_for + self.vote_against > MPC_MEMBERS:
            raise ValueError(
                f"vote_for + vote_against is at most {MPC_MEMBERS} (the committee's members)"
            )
        return self


class MpcSummary(Payload):
    message_type = "mpc_summary"
    current: MpcMeeting
    previous: MpcMeeting


class MpcSignal(Payload):
    message_type = "mpc_signal"
    meeting_date: str
    repo_change_bps: int
    stance_shift: Literal["easing", "neutral", "tightening", "unchanged"]
    hawkishness_delta: Literal["more_hawkish", "more_dovish", "unchanged"]
    surprise: Literal["hawkish_surprise", "dovish_surprise", "in_line"]
    cpi_revision_bps: int
    gdp_revision_bps: int
    downstream_hints: tuple[str, ...]
    headline: str


def _bps(new: float, old: float) -> int:
    # Rates are given to two decimals: the difference in basis points is a whole number, so
    # round it (4.76 - 4.5 is 25.999... bps in floating point, and truncating makes it 25).
    return round((new - old) * 100)


def _stance_shift(cur: str, prev: str) -> Literal["easing", "neutral", "tightening", "unchanged"]:
    if cur == prev:
        return "unchanged"
    if cur == "accommodative":
        return "easing"
    if cur == "withdrawal_of_accommodation":
        return "tightening"
    return "neutral"


class MpcResearch(BaseAgent):
    """Diffs an RBI MPC meeting (``current``) against the one before (``previous``), as the Go
    system does: the repo change and the CPI and GDP projection revisions in bps; the stance
    shift (``easing`` to accommodative, ``tightening`` to withdrawal of accommodation,
    ``neutral`` to neutral, else ``unchanged``); the hawkishness delta (a hike is more
    hawkish, a cut more dovish; on a hold, a CPI revision beyond 25 bps either way); the
    surprise (the repo change more than 15 bps from ``consensus_repo_change_bps``); hints
    for the agents a rate or outlook change concerns, and a headline."""

    capabilities = ("mpc_research",)
    produces = (MpcSignal,)

    @handler
    async def on_summary(self, payload: MpcSummary, ctx: Context) -> Message:
        cur, prev = payload.current, payload.previous
        repo = _bps(cur.repo_rate_pct, prev.repo_rate_pct)
        cpi = _bps(cur.cpi_projection_pct, prev.cpi_projection_pct)
        gdp = _bps(cur.gdp_projection_pct, prev.gdp_projection_pct)
        # The decision outranks the outlook: a cut is never "more hawkish" (in Go, a CPI
        # revision up could make it so).
        tone = repo if repo else (cpi if abs(cpi) > CPI_BAND_BPS else 0)
        hawkishness: Literal["more_hawkish", "more_dovish", "unchanged"] = (
            "more_hawkish" if tone > 0 else "more_dovish" if tone < 0 else "unchanged"
        )
        off = repo - cur.consensus_repo_change_bps
        surprise: Literal["hawkish_surprise", "dovish_surprise", "in_line"] = (
            "hawkish_surprise"
            if off > SURPRISE_BAND_BPS
            else "dovish_surprise"
            if off < -SURPRISE_BAND_BPS
            else "in_line"
        )
        hints: list[str] = []
        if repo:
            hints += [
                "rate_watcher: refresh published rates",
                "loan_advisor: reprice floating-rate EMI projections",
                "prepayment_advisor: recompute effective APR rankings",
            ]
        if cpi > CPI_BAND_BPS:
            hints.append("macro_research: flag inflation upside risk")
        if gdp < -CPI_BAND_BPS:
            hints.append("macro_research: flag growth downside risk")
        on = cur.meeting_date or "the meeting date"
        headline = (
            f"MPC raised repo by {repo} bps on {on}; stance {cur.stance}."
            if repo > 0
            else f"MPC cut repo by {-repo} bps on {on}; stance {cur.stance}."
            if repo < 0
            else f"MPC kept policy steady on {on}."
        )
        return ctx.emit(
            MpcSignal(
                meeting_date=cur.meeting_date,
                repo_change_bps=repo,
                stance_shift=_stance_shift(cur.stance, prev.stance),
                hawkishness_delta=hawkishness,
                surprise=surprise,
                cpi_revision_bps=cpi,
                gdp_revision_bps=gdp,
                downstream_hints=tuple(hints),
                headline=headline,
            )
        )
