"""A stock and its index minute by minute, for the σ and beta in the profile the live calibration builds.

When the calibration worker builds a stock's profile from REST (:class:`services.offline.calibrate.RestHistory`), it
also reads the index's minute prices of the same days from Polygon's minute aggregates, one request for all the days
(a day holds at most 960 minute bars, 04:00–20:00 ET; a page holds up to 50,000)::

    GET /v2/aggs/ticker/SPY/range/1/minute/2013-10-07/2013-10-08?adjusted=false&sort=asc&limit=50000
    {"ticker": "SPY", "adjusted": false, "queryCount": 780, "resultsCount": 780, "status": "OK",
     "results": [{"v": 2137, "vw": 168.99, "o": 169.0, "c": 168.98, "h": 169.01, "l": 168.97,
                  "t": 1381152600000, "n": 12}, ...],
     "request_id": "6a7e466379af0a71039d60cc78e72282"}

``t`` is the bar's start (UTC ms), ``c`` the price of its last trade that sets a close (dollars). The close of the
bar starting at minute ``m`` from the regular open is the price in force at that minute's end: exactly what a
:class:`~services.detector.day_recorder.DayRecorder` records as the stock's minute mid (carried forward over minutes
with no trade, 0 before the first), so :func:`services.detector.profiles.build_profile` computes the beta from both
symbols' minutes as it does offline. Unadjusted prices: the returns are within one day, as the stock's raw ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

import msgspec

from orderflow_client.prices import price_from_float
from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND, NANOSECONDS_PER_SECOND
from services.detector.calibration_process import FetchProgress
from services.detector.profiles import DayStatistics
from services.ingest.http_retries import FetchBoundReached, FetchBudget
from services.ingest.polygon_rest_client import PolygonRest, RestError
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock

NEW_YORK = ZoneInfo("America/New_York")
MINUTE_NS = 60 * NANOSECONDS_PER_SECOND
REGULAR_MINUTES = 390
"""Minutes of a full regular session: the minute prices kept at most (as the day recorder's)."""
BAR_PAGE_ROWS = 50_000
"""Minute bars asked for per page (Polygon's most): a profile's days in one request."""


class MinuteBar(msgspec.Struct, frozen=True):
    """One aggregate bar as read: ``t`` its start (UTC ms), ``c`` its close (dollars)."""

    t: int
    c: float


class AggregatesPage(msgspec.Struct, frozen=True):
    """A page of ``/v2/aggs/ticker/{ticker}/range/...``: the bars (none on a day without trades), the next page."""

    results: list[MinuteBar] = []
    status: str = ""
    adjusted: bool = True
    next_url: str | None = None


_page_decoder = msgspec.json.Decoder(AggregatesPage)


def parse_aggregates_page(body: bytes) -> AggregatesPage:
    """A page of minute aggregates; raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` when unreadable."""
    return _page_decoder.decode(body)


def index_for(config: OrderFlowConfig, symbol: str) -> str:
    """``symbol``'s index for its beta: its sector ETF (``sector_etfs``), else the first of ``market_symbols``
    (empty: none). Sample: ``index_for(config, "BAC")`` → ``"SPY"`` with the defaults."""
    etf = config.sector_etfs.get(symbol, "")
    index = etf or (config.market_symbols[0] if config.market_symbols else "")
    return "" if index == symbol else index


def minute_sessions(index: str, bars: Iterable[tuple[int, int]], days: Iterable[date]) -> list[DayStatistics]:
    """``index``'s regular sessions of ``days`` with only their minute prices, from ``(bar start ns, close
    nano-dollars)`` pairs in time order: minute ``m``'s value is the close of the bar starting ``m`` minutes after the
    open (the last one before it carried forward, 0 before the first). A day with no bar in its session is left out.
    Sample: bars at 09:30 and 09:32 ET closing at 169.00 and 169.10 → ``minute_mids`` (169.00, 169.00, 169.10)."""
    clock = SessionClock()
    windows = []
    for day in sorted(days):
        noon = int(datetime(day.year, day.month, day.day, 12, tzinfo=NEW_YORK).timestamp()) * NANOSECONDS_PER_SECOND
        market_open, market_close = clock.regular_hours(noon)
        if market_open < market_close:
            windows.append((day, market_open, market_close))
    mids: dict[date, list[int]] = {}
    for start_ns, close in bars:
        for day, market_open, market_close in windows:
            if market_open <= start_ns < market_close:
                minute = (start_ns - market_open) // MINUTE_NS
                if minute >= REGULAR_MINUTES:
                    break
                prices = mids.setdefault(day, [])
                if len(prices) <= minute:
                    prices.extend([prices[-1] if prices else 0] * (minute + 1 - len(prices)))
                prices[minute] = close
                break
    return [
        DayStatistics(symbol=index, day=day.isoformat(), minute_mids=tuple(mids[day]))
        for day, _open, _close in windows
        if day in mids
    ]


def index_sessions_from_rest(rest: PolygonRest, index: str, days: list[date]) -> list[DayStatistics]:
    """``index``'s minute prices of ``days`` (:func:`minute_sessions`) from its minute aggregates: one request for
    all of them (more only past :data:`BAR_PAGE_ROWS` bars). Raises what ``rest`` raises
    (:class:`~services.ingest.polygon_rest_client.RestError`, ``FetchBoundReached`` under a budget) and
    ``msgspec.DecodeError`` / ``msgspec.ValidationError`` on an unreadable page."""
    if not days:
        return []
    path = f"/v2/aggs/ticker/{index}/range/1/minute/{min(days).isoformat()}/{max(days).isoformat()}"
    bars: list[tuple[int, int]] = []
    for body in rest.pages(path, {"adjusted": "false", "sort": "asc", "limit": BAR_PAGE_ROWS}):
        page = parse_aggregates_page(body)
        bars.extend((bar.t * NANOSECONDS_PER_MILLISECOND, price_from_float(bar.c)) for bar in page.results if bar.c > 0)
    bars.sort()
    return minute_sessions(index, bars, days)


def with_own_minutes(rest: PolygonRest, sessions: list[DayStatistics], days: list[date]) -> list[DayStatistics]:
    """``sessions`` with their minute prices taken from the stock's own minute aggregates (one request), where a
    day has bars: a liquid day's quotes are sampled (:mod:`services.offline.calibrate`), and between the samples
    its recorded mids stand still, which would understate its σ and its beta (BAC 2013-10-07: beta 0.49 from the
    sampled mids, 0.79 from every quote). The bars' closes are the index's kind of price, so both sides of the beta
    agree. REST failing or an unreadable page keeps the recorded mids; ``FetchBoundReached`` goes up."""
    if not sessions:
        return sessions
    symbol = sessions[0].symbol
    try:
        bars = {session.day: session for session in index_sessions_from_rest(rest, symbol, days)}
    except (RestError, msgspec.DecodeError, msgspec.ValidationError):
        return sessions
    return [
        msgspec.structs.replace(session, minute_mids=bars[session.day].minute_mids) if session.day in bars else session
        for session in sessions
    ]


def with_index_minutes(
    rest: PolygonRest,
    budget: FetchBudget,
    sessions: list[DayStatistics],
    progress: FetchProgress,
    days: list[date],
    index: str,
) -> tuple[list[DayStatistics], FetchProgress]:
    """``sessions`` (their minute prices from the stock's own minute aggregates: :func:`with_own_minutes`) and, after
    them, ``index``'s minute prices of ``days`` from its minute aggregates (:func:`index_sessions_from_rest`), within
    what is left of ``budget``:
    ``progress.index`` names the index when they came, else ``progress.index_missing`` says why not (no index, no
    session, a bound, REST failing, no bar); the stock's sessions are returned either way."""
    reason = ""
    minutes: list[DayStatistics] = []
    if not index:
        reason = "no index (market_symbols empty)"
    elif not sessions:
        reason = "no session of the stock"
    elif progress.stopped:
        reason = f"the fetch reached its {progress.stopped} bound"
    else:
        try:
            sessions = with_own_minutes(rest, sessions, days)
            minutes = index_sessions_from_rest(rest, index, days)
        except FetchBoundReached as reached:
            reason = f"the {reached.bound} bound reached before {index}'s minute aggregates"
        except RestError as error:
            reason = f"{index}'s minute aggregates failed ({error.code}): {error}"
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            reason = f"{index}'s minute aggregates unreadable: {error}"
        finally:
            progress.requests = budget.requests
        if not minutes and not reason:
            reason = f"no minute bar of {index} in the regular sessions of those days"
    if minutes:
        progress.index = index
    progress.index_missing = reason
    return [*sessions, *minutes], progress
