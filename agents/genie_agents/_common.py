"""Small pieces the domains share: the payload and record bases, distance on Earth, rounding,
quantiles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from genie import Context

__all__ = [
    "APPROVAL_DESK",
    "EARTH_RADIUS_KM",
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "Amount",
    "Record",
    "from_the_desk",
    "haversine_km",
    "median",
    "money",
    "once_each",
    "shown",
]

EARTH_RADIUS_KM = 6371.0

# The largest amount of money an agent takes, in major units (a trillion rupees or dollars):
# above any real transaction, loan or holding, and its minor units (10**14) stay exact in
# float arithmetic (floats are exact to 2**53, about 9 * 10**15). A field bounds itself with
# ``Field(le=MAX_AMOUNT)``: 10**300 was a float, and overflowed to infinity in the agent.
MAX_AMOUNT = 10**12
# The largest figure of an institution's books (a bank's portfolio, a company's annual
# revenue), in major units: a thousand times MAX_AMOUNT, as the largest banks' books run past
# 10**13 rupees, and still far from a float's overflow in any ratio or horizon.
MAX_BALANCE = 10**15

# An amount of money held, owed, paid or claimed, inside a list or a map (a field takes
# ``Field(ge=0)`` itself): never negative. A negative one was read as a number, moving the
# totals it joins (a month's outflow, a bucket's balance, a deduction claimed).
Amount = Annotated[float, Field(ge=0)]


class Record(BaseModel):
    """A value inside a payload: frozen, unknown fields refused, floats finite (as every
    ``Payload``'s: NaN compares false with every bound, so a clamp passes it as the best score,
    and an infinity divides into a ratio that looks affordable)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, allow_inf_nan=False)


# The runtime's approval desk: the one sender of a decision that counts (docs/durability.md;
# the id is the runtime's own, refused to any agent).
APPROVAL_DESK = "approvals"


def from_the_desk(ctx: Context) -> None:
    """Refuse a ``genie.approval_decision`` the approval desk did not send: only the desk's
    answers count, so no one approves a held payment or claim by sending a decision of their
    own (whose ``details``, not the agent's own, were read as the held result)."""
    sender = ctx.message.sender
    if sender != APPROVAL_DESK:
        raise ValueError(
            f"{ctx.agent_id}: a decision counts only from the approval desk "
            f"({APPROVAL_DESK!r}), not from {shown(sender)}"
        )


def once_each(names: Iterable[str], what: str) -> None:
    """Refuse a name given twice in one list (two loans, two debts of one name): an agent
    keyed by the name would keep one and answer for part of what was asked."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {shown(name)} given twice")
        seen.add(name)


def shown(value: str, limit: int = 40) -> str:
    """``value`` quoted for an error, cut to ``limit`` characters (``'99999...'``): what a
    refusal quotes must not make it as long as the input (the library's rule, in its
    ``_errors.shown``; the catalogue imports only genie's public API)."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a sphere of the Earth's mean radius."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def money(value: float) -> float:
    """Round to paise (two decimals) for reporting."""
    return round(value + 0.0, 2)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
