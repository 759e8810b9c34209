"""The finance supervisor: starts the flow and fans the four branches back in.

Unlike Go, sessions are keyed by correlation id (every message of one request shares it) and
expire: a session whose branches never all arrive (a deny, a failure) is dropped after
``session_ttl`` seconds, and at most ``max_sessions`` are held, so nothing leaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from genie import BaseAgent, Context, Message, Payload, handler

from .._go import from_metadata
from .models import (
    AnalysisResult,
    Anomalies,
    FinalReportRequest,
    FinanceQuestion,
    ForecastResult,
    IngestCsv,
    Recommendations,
)
from .statement import parse_statement

__all__ = ["FinancialSupervisor"]


@dataclass
class _Session:
    started: datetime
    question: str = ""
    analysis: AnalysisResult | None = None
    forecast: ForecastResult | None = None
    anomalies: Anomalies | None = None
    recommendations: Recommendations | None = None


class FinancialSupervisor(BaseAgent):
    """Sends the question's CSV (or, as Go sent it, the message's ``csv`` metadata) to
    ingestion, then waits for the analysis, forecast, anomalies and recommendations of the
    same request and asks for the final report, exactly once."""

    capabilities = ("supervise_finance",)
    produces = (IngestCsv, FinalReportRequest)

    def __init__(self, id: str, *, session_ttl: float = 300.0, max_sessions: int = 10_000) -> None:
        super().__init__(id)
        if session_ttl <= 0 or max_sessions < 1:
            raise ValueError("session_ttl must be positive and max_sessions at least 1")
        self.session_ttl = timedelta(seconds=session_ttl)
        self.max_sessions = max_sessions
        self.expired = 0
        self._sessions: dict[str, _Session] = {}

    @property
    def pending(self) -> int:
        return len(self._sessions)

    def _session(self, ctx: Context, *, fresh: bool = False) -> _Session:
        now = ctx.now()
        sessions = self._sessions
        # Insertion order is start order, so expired sessions are at the front.
        while sessions:
            key = next(iter(sessions))
            if sessions[key].started + self.session_ttl > now and len(sessions) < self.max_sessions:
                break
            del sessions[key]
            self.expired += 1
        key = ctx.message.correlation_id
        if fresh or key not in sessions:
            sessions[key] = _Session(started=now)
        return sessions[key]

    @handler
    async def on_question(self, payload: FinanceQuestion, ctx: Context) -> Message:
        try:
            csv = from_metadata("csv", payload.csv or "", ctx.message.metadata)
            if payload.csv is None:  # Go's metadata: checked here, as the model checks its own
                parse_statement(csv)
        except ValueError as exc:
            raise ValueError(f"financial_supervisor: {exc}") from None
        self._session(ctx, fresh=True).question = payload.question
        return ctx.emit(IngestCsv(csv=csv))

    @handler
    async def on_analysis(self, payload: AnalysisResult, ctx: Context) -> Message | None:
        self._session(ctx).analysis = payload
        return self._finalize(ctx)

    @handler
    async def on_forecast(self, payload: ForecastResult, ctx: Context) -> Message | None:
        self._session(ctx).forecast = payload
        return self._finalize(ctx)

    @handler
    async def on_anomalies(self, payload: Anomalies, ctx: Context) -> Message | None:
        self._session(ctx).anomalies = payload
        return self._finalize(ctx)

    @handler
    async def on_recommendations(self, payload: Recommendations, ctx: Context) -> Message | None:
        self._session(ctx).recommendations = payload
        return self._finalize(ctx)

    def _finalize(self, ctx: Context) -> Message | None:
        key = ctx.message.correlation_id
        s = self._sessions[key]
        parts: tuple[Payload | None, ...] = (s.analysis, s.forecast, s.anomalies, s.recommendations)
        if s.analysis is None or any(p is None for p in parts):
            return None
        del self._sessions[key]
        a = s.analysis
        return ctx.emit(
            FinalReportRequest(
                question=s.question,
                currency=a.currency,
                total_income_cents=a.total_income_cents,
                total_expense_cents=a.total_expense_cents,
                net_cents=a.net_cents,
                top_overspend=a.top_overspend,
                forecast=s.forecast,
                anomalies=s.anomalies,
                recommendations=s.recommendations,
            )
        )
