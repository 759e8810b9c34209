"""The reporter: the final report text, line for line the Go format (reference §7.2)."""

from __future__ import annotations

from genie import BaseAgent, Context, Message, Payload, handler

from .models import (
    AnalysisResult,
    Anomalies,
    FinalReport,
    FinalReportRequest,
    ForecastResult,
    Recommendations,
    ReportParts,
)

__all__ = ["Reporter", "go_json", "render_report"]

# Go's encoding/json escapes these inside strings; they cannot occur outside strings.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def go_json(payload: Payload) -> str:
    """The payload as Go's ``json.Marshal`` writes it: compact, struct order, HTML-escaped."""
    return payload.model_dump_json().translate(_GO_ESCAPES)


def render_report(r: FinalReportRequest) -> str:
    lines = [
        "Genie Financial Report",
        f"Question: {r.question}",
        f"Currency: {r.currency}",
        f"Income:  {r.total_income_cents} (minor units)",
        f"Expense: {r.total_expense_cents} (minor units)",
        f"Net:     {r.net_cents} (minor units)",
    ]
    if r.top_overspend:
        lines.append(f"Top categories: {', '.join(r.top_overspend)}")
    for label, part in (
        ("Forecast", r.forecast),
        ("Anomalies", r.anomalies),
        ("Recommendations", r.recommendations),
    ):
        if part is not None:
            lines.append(f"{label}: {go_json(part)}")
    return "".join(line + "\n" for line in lines)


def request_from_parts(parts: ReportParts, question: str) -> FinalReportRequest:
    """The supervisor's bundle rebuilt from a gather's parts; a missing branch is left out of
    the report, a missing analysis is an error (there are no totals to report)."""
    found = parts.parts
    if "analysis_result" not in found:
        raise ValueError(f"cannot report without the analysis (missing: {list(parts.missing)})")
    a = AnalysisResult.model_validate(found["analysis_result"])
    return FinalReportRequest(
        question=question,
        currency=a.currency,
        total_income_cents=a.total_income_cents,
        total_expense_cents=a.total_expense_cents,
        net_cents=a.net_cents,
        top_overspend=a.top_overspend,
        forecast=parts.part(ForecastResult),
        anomalies=parts.part(Anomalies),
        recommendations=parts.part(Recommendations),
    )


class Reporter(BaseAgent):
    """Renders the final report as plain text, from the supervisor's bundle or from a
    gather's ``report_parts``."""

    capabilities = ("render_report",)
    produces = (FinalReport,)

    @handler
    async def on_request(self, payload: FinalReportRequest, ctx: Context) -> Message:
        return ctx.emit(FinalReport(text=render_report(payload)))

    @handler
    async def on_parts(self, payload: ReportParts, ctx: Context) -> Message:
        question = str(ctx.message.metadata.get("question", ""))
        return ctx.emit(FinalReport(text=render_report(request_from_parts(payload, question))))
