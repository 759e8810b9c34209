"""Seeded statements for simulations of the finance pipeline (``simulation.inputs``).

Each session gets its own statement, drawn from the session's random generator: a salary per
month, then debits at merchants of the sample's categories, amounts drawn around each
merchant's usual spend, and now and then one unusually large payment (which the anomaly
detector should notice). Same seed and session number, same statement.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

__all__ = ["statements"]

# merchant, category, typical amount in rupees
MERCHANTS = (
    ("Swiggy order", "Food", 450.0),
    ("Zomato", "Food", 380.0),
    ("BigBasket", "Groceries", 1800.0),
    ("Uber ride", "Transport", 250.0),
    ("Metro card", "Transport", 500.0),
    ("Electricity bill", "Utilities", 2200.0),
    ("Mobile recharge", "Utilities", 599.0),
    ("Netflix", "Entertainment", 649.0),
    ("PVR cinemas", "Entertainment", 900.0),
    ("Amazon order", "Shopping", 1899.0),
    ("Myntra", "Shopping", 2400.0),
    ("Apollo pharmacy", "Health", 700.0),
)


def statements(
    rng: random.Random,
    session: int,
    *,
    transactions: tuple[int, int] = (6, 24),
    salary: float = 50_000.0,
    rent: float = 25_000.0,
    months: int = 2,
    outlier_rate: float = 0.1,
) -> str:
    """A statement CSV (the columns of config/data/sample.csv) of ``months`` calendar months
    from January 2026, with salary and rent each month and between ``transactions[0]`` and
    ``transactions[1]`` other debits; a fraction ``outlier_rate`` of statements hold one
    payment 5-12 times the merchant's usual."""
    low, high = transactions
    if not 1 <= low <= high or not 1 <= months <= 12 or not 0 <= outlier_rate <= 1:
        raise ValueError(
            "statements: need 1 <= transactions[0] <= transactions[1], 1 <= months <= 12 and "
            "0 <= outlier_rate <= 1"
        )
    starts = [date(2026, 1 + m, 1) for m in range(months)]
    days = ((starts[-1] + timedelta(days=31)).replace(day=1) - starts[0]).days
    rows: list[tuple[date, str, str, float, str]] = []
    for first in starts:
        rows.append((first, "Salary", "Income", salary, "credit"))
        rows.append((first + timedelta(days=2), "Rent payment", "Housing", rent, "debit"))
    outlier = rng.random() < outlier_rate
    for _ in range(rng.randint(low, high)):
        merchant, category, usual = rng.choice(MERCHANTS)
        amount = usual * rng.lognormvariate(0.0, 0.4)
        if outlier:
            amount *= rng.uniform(5, 12)  # one payment far above this merchant's usual
            outlier = False
        day = starts[0] + timedelta(days=rng.randrange(days))
        rows.append((day, merchant, category, round(amount, 2), "debit"))
    rows.sort(key=lambda r: r[0])
    lines = ["date,description,category,amount,type"]
    lines += [
        f"{d.isoformat()},{text},{cat},{amount:.2f},{kind}" for d, text, cat, amount, kind in rows
    ]
    return "\n".join(lines) + "\n"
