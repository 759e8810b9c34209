"""The reporter: the final report as text a person reads (amounts as currency), or line for
line the Go system's format (raw minor units and JSON), for tools that compare the two."""

from __future__ import annotations

from typing import Literal

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

__all__ = ["ReportFormat", "Reporter", "format_amount", "go_json", "render_report"]

ReportFormat = Literal["text", "go"]

# Amounts are hundredths of the currency unit throughout the finance flow: the ingest
# multiplies every statement amount by 100, whatever the currency.
_SYMBOLS = {"INR": "₹", "USD": "$", "EUR": "€", "GBP": "£"}

# Go's encoding/json escapes these inside strings; they cannot occur outside strings.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def go_json(payload: Payload) -> str:
    """The payload as Go's ``json.Marshal`` writes it: compact, struct order, HTML-escaped."""
    return payload.model_dump_json().translate(_GO_ESCAPES)


def format_amount(cents: int, currency: str) -> str:
    """``cents`` hundredths of ``currency`` as a person writes them: ``₹1,00,000.00`` (Indian
    grouping in lakhs and crores for INR), ``$1,234.50``, ``CHF 12.00``."""
    units, hundredths = divmod(abs(cents), 100)
    digits = str(units)
    if currency == "INR" and len(digits) > 3:
        head, tail = digits[:-3], digits[-3:]
        pairs = [head[max(i - 2, 0) : i] for i in range(len(head), 0, -2)][::-1]
        grouped = ",".join([*pairs, tail])
    else:
        grouped = f"{units:,}"
    symbol = _SYMBOLS.get(currency, f"{currency} " if currency else "")
    return f"{'-' if cents < 0 else ''}{symbol}{grouped}.{hundredths:02d}"


def render_report(r: FinalReportRequest, format: ReportFormat = "text") -> str:
    """The report as text for a person (``text``) or in the Go system's format (``go``)."""
    return _go_report(r) if format == "go" else _text_report(r)


def _text_report(r: FinalReportRequest) -> str:
    def amount(cents: int) -> str:
        return format_amount(cents, r.currency)

    lines = ["Genie Financial Report", f"Question: {r.question}", ""]
    lines += _aligned(
        [
            ("Income", amount(r.total_income_cents)),
            ("Expense", amount(r.total_expense_cents)),
            ("Net", amount(r.net_cents)),
        ]
    )
    if r.top_overspend:
        lines += ["", f"Top categories: {', '.join(r.top_overspend)}"]
    if r.forecast is not None:
        f = r.forecast
        lines += ["", "Forecast of the net"]
        lines += _aligned(
            [
                ("1 month", amount(f.horizon_1m_cents)),
                ("3 months", amount(f.horizon_3m_cents)),
                ("6 months", amount(f.horizon_6m_cents)),
            ]
        )
    if r.anomalies is not None:
        found = r.anomalies.anomalies
        if found is None:
            lines += ["", "Anomalies: too few transactions to tell"]
        elif not found:
            lines += ["", "Anomalies: none"]
        else:
            lines += ["", "Anomalies"]
            for a in found:
                where = f" ({a.transaction_id})" if a.transaction_id else ""
                lines.append(f"  - {a.category}: {amount(a.amount_cents)}{where}: {a.reason}")
    if r.recommendations is not None:
        if not r.recommendations.recommendations:
            lines += ["", "Recommendations: none"]
        else:
            lines += ["", "Recommendations"]
            for rec in r.recommendations.recommendations:
                lines.append(
                    f"  - {rec.title}: impact {amount(rec.impact_cents)}, "
                    f"{rec.confidence} confidence"
                )
                lines.append(f"    {rec.rationale}")
    return "".join(line + "\n" for line in lines)


def _aligned(rows: list[tuple[str, str]]) -> list[str]:
    """Labels left, amounts right, in one column."""
    label = max(len(name) for name, _ in rows)
    value = max(len(amount) for _, amount in rows)
    return [f"  {name:<{label}}  {amount:>{value}}" for name, amount in rows]


def _go_report(r: FinalReportRequest) -> str:
    """Line for line the Go system's report: raw minor units, branches as Go's JSON."""
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
    gather's ``report_parts``: amounts as currency (``format: text``), or the Go system's
    report line for line (``format: go``: minor units and JSON)."""

    capabilities = ("render_report",)
    produces = (FinalReport,)

    def __init__(self, id: str, *, format: ReportFormat = "text") -> None:
        super().__init__(id)
        self.format: ReportFormat = format

    @handler
    async def on_request(self, payload: FinalReportRequest, ctx: Context) -> Message:
        return ctx.emit(FinalReport(text=render_report(payload, self.format)))

    @handler
    async def on_parts(self, payload: ReportParts, ctx: Context) -> Message:
        question = str(ctx.message.metadata.get("question", ""))
        request = request_from_parts(payload, question)
        return ctx.emit(FinalReport(text=render_report(request, self.format)))
