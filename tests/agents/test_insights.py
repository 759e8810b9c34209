"""Subscriptions, carbon footprint and multi-statement merging."""

from __future__ import annotations

import pytest
from genie_agents.finance import BulkStatementAnalyzer, CarbonEstimator, SubscriptionDetector
from genie_agents.finance.models import BulkStatementRequest

from .helpers import one, period, tx


async def test_subscriptions_and_zombies() -> None:
    out = await one(
        SubscriptionDetector("subscription_detector"),
        period(
            tx("n1", -649, "2026-01-10", merchant="netflix"),
            tx("n2", -649, "2026-02-11", merchant="netflix"),
            tx("n3", -649, "2026-03-09", merchant="netflix"),
            tx("s1", -119, "2026-01-05", merchant="spotify"),
            tx("s2", -119, "2026-02-05", merchant="spotify"),
            tx("s3", -119, "2026-03-05", merchant="spotify"),
            tx("s4", -149, "2026-04-05", merchant="spotify"),  # +25.2 %: a zombie
            tx("g1", -999, "2026-01-02", merchant="gym"),  # two months only
            tx("g2", -999, "2026-02-02", merchant="gym"),
            tx("f1", -450, "2026-01-03", merchant="swiggy"),  # 450 -> 350 drops over 5 %
            tx("f2", -350, "2026-02-03", merchant="swiggy"),
            tx("f3", -360, "2026-03-03", merchant="swiggy"),
            tx("r1", -100, "2026-01-01", merchant="club"),  # days 1, 28, 15: sigma 11
            tx("r2", -100, "2026-02-28", merchant="club"),
            tx("r3", -100, "2026-03-15", merchant="club"),
        ),
    )
    rows = [
        (s.merchant, s.months, s.latest_cents, s.day_of_month, s.price_change_pct, s.zombie)
        for s in out.subscriptions
    ]
    assert rows == [
        ("netflix", 3, 64_900, 10, 0.0, False),
        ("spotify", 4, 14_900, 5, 25.21, True),
    ]
    assert out.monthly_total_cents == 64_900 + 14_900


async def test_a_small_price_dip_is_still_steady() -> None:
    out = await one(
        SubscriptionDetector("s"),
        period(
            tx("a", -100, "2026-01-05", merchant="x"),
            tx("b", -95, "2026-02-05", merchant="x"),  # exactly -5 %
            tx("c", -95, "2026-03-05", merchant="x"),
        ),
    )
    assert [s.merchant for s in out.subscriptions] == ["x"]


async def test_carbon_by_category_month_and_trend() -> None:
    out = await one(
        CarbonEstimator("carbon_estimator"),
        period(
            tx("h", -25_000, "2026-01-14", category="housing:rent"),  # x 0.4 / 1000 = 10.0 kg
            tx("u", -2_200, "2026-01-08", category="Utilities"),  # x 3.0 = 6.6
            tx("f1", -2_800, "2026-01-12", category="food:delivery"),  # x 1.2 = 3.36
            tx("t", -250, "2026-01-06", category="transport:ride"),  # x 2.5 = 0.625
            tx("f2", -1_000, "2026-02-02", category="food:delivery"),  # 1.2
            tx("m", -1_000, "2026-02-03", category="misc"),  # default 0.6
            tx("salary", 50_000, "2026-01-01", category="income:salary"),
        ),
    )
    assert [(r.category, r.kg_co2e) for r in out.by_category] == [
        ("housing:rent", 10.0),
        ("Utilities", 6.6),
        ("food:delivery", 4.56),
        ("transport:ride", 0.625),
        ("misc", 0.6),
    ]
    assert out.by_month == {"2026-01": 20.585, "2026-02": 1.8}
    assert out.trend_pct == round(100 * (1.8 / 20.585 - 1), 2)
    assert out.total_kg_co2e == 22.385
    assert len(out.tips) == 2
    assert out.tips[0].startswith("Service air conditioners")  # housing first


async def test_carbon_single_month_has_no_trend() -> None:
    out = await one(CarbonEstimator("c"), period(tx("a", -100, category="food")))
    assert out.trend_pct is None


HEADER = "date,description,amount,type\n"


async def test_bulk_statements_deduplicate_across_statements() -> None:
    first = HEADER + (
        "2026-01-01,Salary,50000,credit\n"
        "2026-01-05,Swiggy,450,debit\n"
        "2026-01-05,Swiggy,450,debit\n"  # twice in one statement: both real
    )
    second = HEADER + (
        "2026-01-02, SALARY ,50000,credit\n"  # the first statement's salary, a day later
        "2026-01-05,Uber,250,debit\n"
        "2026-02-01,Salary,50000,credit\n"
    )
    out = await one(
        BulkStatementAnalyzer("bulk_statement_analyzer"),
        BulkStatementRequest(statements=(first, second)),
    )
    assert (out.statements, out.transactions, out.duplicates_removed) == (2, 5, 1)
    assert (out.total_income_cents, out.total_expense_cents, out.net_cents) == (
        10_000_000,
        115_000,
        9_885_000,
    )
    assert [(m.month, m.income_cents, m.expense_cents) for m in out.by_month] == [
        ("2026-01", 5_000_000, 115_000),
        ("2026-02", 5_000_000, 0),
    ]


async def test_bulk_statement_error_names_the_statement() -> None:
    bad = BulkStatementRequest(statements=(HEADER + "2026-01-01,x,1,debit\n", "date,amount\n1,2\n"))
    with pytest.raises(ValueError, match='statement 2: line 1: missing column "description"'):
        await one(BulkStatementAnalyzer("b"), bad)
