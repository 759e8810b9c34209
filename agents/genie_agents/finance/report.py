"""The reporter: the final report text, line for line the Go format (reference §7.2)."""

from __future__ import annotations

from genie import BaseAgent, Context, Message, Payload, handler

from .models import FinalReport, FinalReportRequest

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


class Reporter(BaseAgent):
    """Renders the final report as plain text."""

    capabilities = ("render_report",)
    produces = (FinalReport,)

    @handler
    async def on_request(self, payload: FinalReportRequest, ctx: Context) -> Message:
        return ctx.emit(FinalReport(text=render_report(payload)))
