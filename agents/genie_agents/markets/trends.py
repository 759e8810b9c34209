"""Search-interest trends behind a fetcher interface, with an in-memory fetcher shipped."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from genie import BaseAgent, Context, Message, Payload, handler

from .._go import GoName, GoValueError, go_names

__all__ = [
    "GoogleTrends",
    "InMemoryTrendFetcher",
    "TrendFetcher",
    "TrendRequest",
    "TrendSignal",
]

SURGING_AT = 1.5
FADING_AT = 0.6


@runtime_checkable
class TrendFetcher(Protocol):
    """Where interest-over-time series come from (Google Trends, a cache, a fixture)."""

    async def fetch(self, keyword: str, region: str) -> Sequence[float]:
        """The interest series for ``keyword`` in ``region``, oldest first, each value >= 0.

        Raises ``LookupError`` when there is no series for the keyword.
        """
        ...


class InMemoryTrendFetcher:
    """Series given up front, by keyword (any region; keywords match case-insensitively)."""

    def __init__(self, series: Mapping[str, Sequence[float]] | None = None) -> None:
        self._series = {k.casefold(): tuple(v) for k, v in (series or {}).items()}

    async def fetch(self, keyword: str, region: str) -> Sequence[float]:
        try:
            return self._series[keyword.casefold()]
        except KeyError:
            raise LookupError(f"no trend series for {keyword!r} in {region!r}") from None


def _one_keyword(keywords: Any) -> Any:
    """Go's list of keywords, holding one keyword (one request each in the port)."""
    if not isinstance(keywords, list) or len(keywords) != 1:
        raise GoValueError("one keyword per request in the port: send one request each")
    return keywords[0]


def _go_trend(go: Mapping[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    # Go read a window of 0 (left out) as 4, and passed a blank geo to the fetcher as its
    # default region: here that is the port's default.
    if data.get("region") == "":
        del data["region"]
    if data.get("window_points") == 0:
        data["window_points"] = 4
    return data


class TrendRequest(Payload):
    message_type = "trend_request"
    keyword: str = Field(min_length=1)
    region: str = Field("IN", min_length=2)
    window_points: int = Field(4, ge=1, le=520)

    _go = go_names({"geo": "region", "keywords": GoName("keyword", _one_keyword)}, then=_go_trend)


class TrendSignal(Payload):
    message_type = "trend_signal"
    keyword: str
    region: str
    latest_mean: float
    prior_mean: float
    ratio: float | None
    signal: Literal["surging", "fading", "steady"]


class GoogleTrends(BaseAgent):
    """Compares the mean of the latest ``window_points`` (4) of a keyword's interest series
    with the mean of the points before them, as Go: surging at 1.5x that prior mean or more,
    fading at 0.6x or less, steady between (a prior mean of 0 makes any interest surging and
    the ratio null). The series comes from the ``fetcher`` (default: an empty in-memory one,
    so every keyword fails until one is given); it needs more points than the window."""

    capabilities = ("google_trends",)
    produces = (TrendSignal,)

    def __init__(self, id: str, *, fetcher: TrendFetcher | None = None) -> None:
        super().__init__(id)
        self.fetcher: TrendFetcher = fetcher if fetcher is not None else InMemoryTrendFetcher()

    @handler
    async def on_request(self, payload: TrendRequest, ctx: Context) -> Message:
        series = list(await self.fetcher.fetch(payload.keyword, payload.region))
        where = f"trend for {payload.keyword!r}"
        window = payload.window_points
        if len(series) <= window:
            raise ValueError(
                f"{where}: need more than window_points ({window}) points, got {len(series)}"
            )
        if not all(math.isfinite(v) and v >= 0 for v in series):
            raise ValueError(f"{where}: interest values must be finite and >= 0")
        prior, latest = series[:-window], series[-window:]
        mean, latest_mean = sum(prior) / len(prior), sum(latest) / window
        ratio = latest_mean / mean if mean > 0 else None
        if ratio is None:
            signal: Literal["surging", "fading", "steady"] = (
                "surging" if latest_mean > 0 else "steady"
            )
        elif ratio >= SURGING_AT:
            signal = "surging"
        elif ratio <= FADING_AT:
            signal = "fading"
        else:
            signal = "steady"
        return ctx.emit(
            TrendSignal(
                keyword=payload.keyword,
                region=payload.region,
                latest_mean=round(latest_mean, 4),
                prior_mean=round(mean, 4),
                ratio=None if ratio is None else round(ratio, 4),
                signal=signal,
            )
        )
