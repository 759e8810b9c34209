"""Black-Scholes(-Merton) price, greeks and the payoff at expiry of a European option."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from genie import BaseAgent, Context, Message, Payload, Risk, handler

from .._common import MAX_AMOUNT, Record
from .._go import GoName, go_names

__all__ = [
    "Greeks",
    "OptionExplanation",
    "OptionRequest",
    "OptionsExplainer",
    "PayoffPoint",
    "black_scholes",
]

DAYS_PER_YEAR = 365


def _go_lot(value: Any) -> Any:
    """Go's lot size; 0 (left out) is one unit."""
    return 1 if value == 0 else value


# A price a paisa (or cent) to MAX_AMOUNT; time from a minute; volatility from 0.01 %: below
# them log(spot / strike) and the divisions by sigma x sqrt(t) reach infinity (or 0 / 0), and
# above them the premium paid does.
_Price = Annotated[float, Field(ge=0.01, le=MAX_AMOUNT, description="a paisa to 10^12")]


class OptionRequest(Payload):
    message_type = "option_request"
    kind: Literal["call", "put"]
    spot: _Price
    strike: _Price
    days_to_expiry: float = Field(ge=1 / 1440, le=3650, description="a minute to ten years")
    volatility_pct: float = Field(ge=0.01, le=500, description="0.01 to 500 % a year")
    rate_pct: float = Field(6.5, ge=-10, le=100)
    dividend_yield_pct: float = Field(0.0, ge=0, le=100)
    position: Literal["long", "short"] = "long"
    quantity: float = Field(1.0, gt=0, le=1e9, description="units, at most 10^9")
    premium: float | None = Field(None, ge=0, le=MAX_AMOUNT, description="at most 10^12")
    expiry_spots: tuple[Annotated[float, Field(le=MAX_AMOUNT)], ...] = Field(
        (), max_length=100, description="each at most 10^12"
    )

    _go = go_names(
        {
            "side": "kind",
            "underlying_price": "spot",
            "implied_volatility_pct": "volatility_pct",
            "risk_free_rate_pct": "rate_pct",
            "lot_size": GoName("quantity", _go_lot),
        },
        defaults={"rate_pct": 0.0},  # Go priced an omitted rate as 0 %
    )


class Greeks(Record):
    delta: float
    gamma: float
    vega: float
    theta: float
    rho: float


class PayoffPoint(Record):
    spot: float
    payoff: float


class OptionExplanation(Payload):
    message_type = "option_explanation"
    kind: Literal["call", "put"]
    position: Literal["long", "short"]
    fair_value: float
    premium: float
    d1: float
    d2: float
    greeks: Greeks
    breakeven: float
    max_profit: float | None
    max_loss: float | None
    payoff: tuple[PayoffPoint, ...]
    explanation: str


def _cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def black_scholes(req: OptionRequest) -> tuple[float, float, float, Greeks]:
    """(price, d1, d2, greeks) per unit, long. Vega and rho are per 1 percentage point,
    theta per calendar day; continuous dividend yield (Merton)."""
    s, k = req.spot, req.strike
    t = req.days_to_expiry / DAYS_PER_YEAR
    sigma, r, q = req.volatility_pct / 100, req.rate_pct / 100, req.dividend_yield_pct / 100
    d1 = (math.log(s / k) + (r - q + sigma * sigma / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    dq, dr = math.exp(-q * t), math.exp(-r * t)
    gamma = dq * _pdf(d1) / (s * sigma * math.sqrt(t))
    vega = s * dq * _pdf(d1) * math.sqrt(t) / 100
    decay = -s * dq * _pdf(d1) * sigma / (2 * math.sqrt(t))
    if req.kind == "call":
        price = s * dq * _cdf(d1) - k * dr * _cdf(d2)
        delta = dq * _cdf(d1)
        theta = decay - r * k * dr * _cdf(d2) + q * s * dq * _cdf(d1)
        rho = k * t * dr * _cdf(d2) / 100
    else:
        price = k * dr * _cdf(-d2) - s * dq * _cdf(-d1)
        delta = -dq * _cdf(-d1)
        theta = decay + r * k * dr * _cdf(-d2) - q * s * dq * _cdf(-d1)
        rho = -k * t * dr * _cdf(-d2) / 100
    greeks = Greeks(delta=delta, gamma=gamma, vega=vega, theta=theta / DAYS_PER_YEAR, rho=rho)
    return price, d1, d2, greeks


def _default_spots(strike: float) -> tuple[float, ...]:
    # The Go system's curve: 21 points, 70 % to 130 % of the strike in steps of 3 %.
    return tuple(round(strike * (70 + 3 * i) / 100, 2) for i in range(21))


class OptionsExplainer(BaseAgent):
    """A European option explained: Black-Scholes fair value with a continuous dividend yield,
    d1, d2 and the greeks (delta, gamma, vega per 1 % of volatility, theta per calendar day,
    rho per 1 % of rate; time is days / 365), for ``quantity`` units long or short (a short
    position's greeks change sign). The premium paid or received is the given one, else the
    fair value; breakeven is strike + premium (call) or strike - premium (put); the payoff at
    expiry net of the premium at each of ``expiry_spots`` (default 21 points, 70-130 % of the
    strike, as the Go system).
    Unlimited profit or loss is reported as null."""

    capabilities = ("options_explainer",)
    risk = Risk.MEDIUM
    produces = (OptionExplanation,)

    @handler
    async def on_request(self, payload: OptionRequest, ctx: Context) -> Message:
        p = payload
        price, d1, d2, g = black_scholes(p)
        premium = price if p.premium is None else p.premium
        sign = 1 if p.position == "long" else -1
        n = p.quantity

        def net(spot: float) -> float:
            intrinsic = max(spot - p.strike, 0.0) if p.kind == "call" else max(p.strike - spot, 0.0)
            return round(sign * n * (intrinsic - premium), 2)

        greeks = Greeks(
            delta=round(sign * n * g.delta, 4),
            gamma=round(sign * n * g.gamma, 6),
            vega=round(sign * n * g.vega, 4),
            theta=round(sign * n * g.theta, 4),
            rho=round(sign * n * g.rho, 4),
        )
        paid = round(n * premium, 2)
        if p.kind == "call":
            breakeven = p.strike + premium
            best_long: float | None = None  # a call's upside has no cap
            worst_long: float | None = paid
        else:
            breakeven = p.strike - premium
            best_long, worst_long = round(n * (p.strike - premium), 2), paid
        if p.position == "long":
            max_profit, max_loss = best_long, worst_long
        else:  # the writer's best is the premium; the worst is the buyer's best
            max_profit, max_loss = paid, best_long
        spots = p.expiry_spots or _default_spots(p.strike)
        verb = "pays" if p.position == "long" else "receives"
        explanation = (
            f"A {p.position} {p.kind} {verb} {premium:,.2f} a unit (fair value {price:,.2f}); "
            f"at expiry it breaks even at {breakeven:,.2f}. Delta {greeks.delta:+.4f}: the "
            f"position moves {abs(greeks.delta):.4f} for a 1.00 move in the spot; theta "
            f"{greeks.theta:+.4f} a day."
        )
        return ctx.emit(
            OptionExplanation(
                kind=p.kind,
                position=p.position,
                fair_value=round(price, 4),
                premium=round(premium, 4),
                d1=round(d1, 6),
                d2=round(d2, 6),
                greeks=greeks,
                breakeven=round(breakeven, 4),
                max_profit=max_profit,
                max_loss=max_loss,
                payoff=tuple(PayoffPoint(spot=s, payoff=net(s)) for s in spots),
                explanation=explanation,
            )
        )
