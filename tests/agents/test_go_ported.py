"""Go's inputs ported (issue 23): hand-computed answers to requests in the Go system's shape,
for the agents whose Go request asked its question differently from the port's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from genie_agents.treasury.models import WorkingCapitalRequest

from genie import Catalogue, InvalidMessageError, MessageTypes, Payload

from .helpers import ask

CATALOGUE = Catalogue.installed()
TYPES = MessageTypes({p for spec in CATALOGUE for p in spec.consumes})


def parse(kind: str, body: Any) -> Payload:
    return TYPES.parse_payload(kind, json.dumps(body))


def refused(kind: str, body: Any) -> str:
    with pytest.raises(InvalidMessageError) as info:
        parse(kind, body)
    return str(info.value)


WORKING_CAPITAL = {
    "monthly_revenue_rupees": 500_000,
    "gross_margin_pct": 40,
    "operating_costs_monthly_rupees": 250_000,
    "dso_days": 45,
    "dio_days": 30,
    "dpo_days": 60,
    "opening_cash_rupees": 200_000,
    "horizon_months": 9,
}


async def test_working_capital_from_go_days_gives_go_cycle() -> None:
    request = parse("working_capital_request", WORKING_CAPITAL)
    assert isinstance(request, WorkingCapitalRequest)
    # Revenue 60 L a year at a 40 % margin: cost of goods 36 L.
    assert (request.annual_revenue, request.annual_cogs) == (6_000_000, 3_600_000)
    out = await ask("working_capital_forecaster", request)
    # Go: CCC = DSO + DIO - DPO = 45 + 30 - 60 = 15 days.
    assert (out.dso, out.dio, out.dpo, out.cash_conversion_cycle) == (45, 30, 60, 15)
    # Gross profit 2 L a month less 2.5 L of costs: 50,000 a month burnt; 2 L lasts 4 months,
    # over Go's nine-month horizon.
    assert out.monthly_cashflow == -50_000
    assert len(out.cash_by_month) == 9
    assert out.cash_by_month[:4] == (150_000, 100_000, 50_000, 0)
    assert out.runway_months == 4


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"gross_margin_pct": 100}, "field 'gross_margin_pct': a gross margin from 0 to under"),
        ({"monthly_revenue_rupees": 0}, "field 'monthly_revenue_rupees': a positive monthly"),
        ({"dpo_days": -5}, "field 'dpo_days': days: a number, 0 or more"),
        ({"horizon_months": 0}, "field 'forecast_months': Input should be greater than or"),
    ],
)
def test_working_capital_go_values_refused_naming_the_field(
    change: dict[str, Any], error: str
) -> None:
    assert error in refused("working_capital_request", WORKING_CAPITAL | change)
