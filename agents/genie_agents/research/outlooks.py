"""Static macro and policy-rate outlooks for India, the US and the euro area, as in Go: a
region the table lacks gets the default (India), and the answer says which region it used."""

from __future__ import annotations

from genie import BaseAgent, Context, Message, Payload, handler

from .._go import go_text

__all__ = [
    "MacroContext",
    "MacroContextResult",
    "MacroResearch",
    "RateOutlook",
    "RateOutlookResult",
    "RateWatcher",
]

DEFAULT_REGION = "in"
MACRO = {
    "in": "India: growth near 6.5-7 %, CPI inflation inside the RBI's 2-6 % band, a current "
    "account deficit near 1 % of GDP; domestic demand leads.",
    "us": "United States: growth slowing towards trend, core inflation easing but above 2 %, "
    "a cooling labour market.",
    "eu": "Euro area: weak growth led by services, headline inflation near the ECB's 2 % "
    "target, manufacturing soft.",
}
RATES = {
    "in": "RBI: repo rate on hold with a neutral stance; the next move depends on food "
    "inflation and the monsoon.",
    "us": "Federal Reserve: gradual cuts priced in, data dependent; balance-sheet run-off "
    "continues at a slower pace.",
    "eu": "ECB: deposit rate being lowered in steps as inflation nears target.",
}


def _region(value: str) -> str:
    key = value.strip().casefold()
    return key if key in MACRO else DEFAULT_REGION


class MacroContext(Payload):
    message_type = "macro_context"
    region: str = DEFAULT_REGION

    _go = go_text("region")  # Go's content was the region itself


class MacroContextResult(Payload):
    message_type = "macro_context_result"
    region: str
    outlook: str


class RateOutlook(Payload):
    message_type = "rate_outlook"
    central_bank: str = DEFAULT_REGION

    _go = go_text("central_bank")  # Go's content was the central bank itself


class RateOutlookResult(Payload):
    message_type = "rate_outlook_result"
    central_bank: str
    outlook: str


class MacroResearch(BaseAgent):
    """A static macro outlook for in / us / eu (anything else: in)."""

    capabilities = ("macro_research",)
    produces = (MacroContextResult,)

    @handler
    async def on_request(self, payload: MacroContext, ctx: Context) -> Message:
        region = _region(payload.region)
        return ctx.emit(MacroContextResult(region=region, outlook=MACRO[region]))


class RateWatcher(BaseAgent):
    """A static policy-rate outlook for in (RBI) / us (Fed) / eu (ECB) (anything else: in)."""

    capabilities = ("rate_outlook",)
    produces = (RateOutlookResult,)

    @handler
    async def on_request(self, payload: RateOutlook, ctx: Context) -> Message:
        bank = _region(payload.central_bank)
        return ctx.emit(RateOutlookResult(central_bank=bank, outlook=RATES[bank]))
