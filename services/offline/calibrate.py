"""``orderflow calibrate``: build symbols' profiles from history and store them.

History comes from files (any ``--format`` analyze reads) or from Polygon
REST (``/v3/trades`` and ``/v3/quotes`` of each of the last ``--days``
trading days, through :class:`services.ingest.polygon_rest_client.PolygonRest`).
Either way the events run through the same normaliser and rules engine as
live detection, whose :class:`~services.detector.day_recorder.DayRecorder`
sums up each regular session, so a profile means exactly what the rules
measure. Profiles are stored as JSON under ``orderflow:profile:{SYM}``
(:class:`services.detector.profile_store.ProfileStore`) and, with ``--out``, written to ``SYM.json``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns, ns_to_utc_iso
from orderflow_client.wire import MarketEvent, Quote
from services.detector.calibration_process import FetchProgress, HistoryUnavailableError
from services.detector.engine import Engine
from services.detector.profiles import (
    DayStatistics,
    SymbolProfile,
    build_profile,
    decode_profile,
    encode_profile,
)
from services.detector.rule_settings import RuleSettings
from services.ingest.http_retries import Cancellation, FetchBoundReached, FetchBudget
from services.ingest.normalise import Normaliser, normalised
from services.ingest.polygon_rest_client import PolygonRest, RestError
from services.ingest.polygon_rest_parse import parse_quotes_page, parse_trades_page
from services.ingest.rejects import Reject, RejectCounter
from services.ingest.sources import read_events
from services.offline.index_bars import index_for, with_index_minutes
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock

_replace = msgspec.structs.replace
NEW_YORK = ZoneInfo("America/New_York")


def profiles_from_events(
    events: Iterable[MarketEvent | Reject],
    config: OrderFlowConfig,
    *,
    source: str,
    conditions: ConditionTable | None = None,
    rejects: RejectCounter | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, SymbolProfile]:
    """Each symbol's profile from its sessions in ``events`` (time-ordered), the last ``profile_days``."""
    recorded = sessions_from_events(events, config, conditions=conditions, rejects=rejects, on_progress=on_progress)
    built = ns_to_utc_iso(now_ns())
    return {
        symbol: build_profile(symbol, sessions, source=source, built_utc=built, profile_days=config.profile_days)
        for symbol, sessions in recorded.items()
    }


def sessions_from_events(
    events: Iterable[MarketEvent | Reject],
    config: OrderFlowConfig,
    *,
    conditions: ConditionTable | None = None,
    rejects: RejectCounter | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, list[DayStatistics]]:
    """Each symbol's regular sessions in ``events`` (time-ordered), oldest first, as the rules engine records them
    (symbols with none left out); ``on_progress(10_000)`` after every 10,000 events."""
    conditions = conditions or ConditionTable.bundled()
    adaptive = config.model_copy(update={"threshold_mode": "adaptive"})
    engine = Engine(RuleSettings.from_config(adaptive), conditions, config=adaptive)
    events_read = normalised(events, Normaliser(conditions, method=config.side_method), rejects or RejectCounter())
    for count, event in enumerate(events_read, start=1):
        engine.process(event)
        if on_progress is not None and count % 10_000 == 0:
            on_progress(10_000)
    recorded = {symbol: symbol_engine.recorded_sessions() for symbol, symbol_engine in engine.symbols.items()}
    return {symbol: sessions for symbol, sessions in recorded.items() if sessions}


def profiles_from_files(
    format: str,
    paths: list[Path],
    symbols: list[str],
    config: OrderFlowConfig,
    *,
    conditions: ConditionTable | None = None,
    rejects: RejectCounter | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, SymbolProfile]:
    """The profiles of ``symbols`` (every symbol when empty) from history files of one ``format``."""
    events: Iterable[MarketEvent | Reject] = read_events(format, paths)
    if symbols:
        events = (event for event in events if getattr(event, "symbol", None) in symbols)
    return profiles_from_events(
        events, config, source="files", conditions=conditions, rejects=rejects, on_progress=on_progress
    )


def profiles_from_rest(
    rest: PolygonRest,
    symbols: list[str],
    last: date,
    days: int,
    config: OrderFlowConfig,
    *,
    conditions: ConditionTable | None = None,
    rejects: RejectCounter | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, SymbolProfile]:
    """The profiles of ``symbols`` from Polygon REST: their trades and quotes of the ``days`` trading days up to
    ``last``. Raises :class:`services.ingest.polygon_rest_client.RestError` when REST fails."""
    multiplier = config.round_lot_size if config.quote_size_unit == "round_lots" else 1
    profiles: dict[str, SymbolProfile] = {}
    for symbol in symbols:
        history = (
            event
            for day in trading_days(last, days)
            for event in rest_events(rest, symbol, day, quote_size_multiplier=multiplier)
        )
        profiles.update(
            profiles_from_events(
                history, config, source="rest", conditions=conditions, rejects=rejects, on_progress=on_progress
            )
        )
    return profiles


def bounded_rest(config: OrderFlowConfig, budget: FetchBudget) -> PolygonRest:
    """A REST client for one bounded fetch: few retries (the caller retries later), every wait and request
    counted against ``budget``. Needs ``polygon_api_key``."""
    key = config.polygon_api_key.get_secret_value() if config.polygon_api_key is not None else ""
    return PolygonRest(
        key,
        config.polygon_rest_url,
        client=config.polygon_client,
        attempts=3,
        backoff_cap=5.0,
        requests_per_minute=config.polygon_rest_requests_per_minute,
        budget=budget,
    )


def sessions_from_rest_bounded(
    rest: PolygonRest,
    budget: FetchBudget,
    symbol: str,
    days: list[date],
    config: OrderFlowConfig,
    *,
    conditions: ConditionTable | None = None,
    on_day: Callable[[FetchProgress], None] | None = None,
) -> tuple[list[DayStatistics], FetchProgress]:
    """``symbol``'s regular sessions of ``days`` from REST, newest day first, within ``budget``: a day cut short by a
    bound is left out and the fetch ends there (``progress.stopped`` says which bound). Each day runs through its own
    rules engine. ``on_day(progress)`` after each whole day. Raises
    :class:`~services.ingest.polygon_rest_client.RestError` when REST fails."""
    multiplier = config.round_lot_size if config.quote_size_unit == "round_lots" else 1
    progress = FetchProgress(symbol=symbol, days_wanted=len(days))
    sessions: list[DayStatistics] = []

    def counted(events: Iterator[MarketEvent | Reject]) -> Iterator[MarketEvent | Reject]:
        for event in events:
            progress.events += 1
            yield event

    for day in sorted(days, reverse=True):
        try:
            found = sessions_from_events(
                counted(rest_events(rest, symbol, day, quote_size_multiplier=multiplier, quote_slices=QUOTE_SLICES)),
                config,
                conditions=conditions,
            )
        except FetchBoundReached as reached:
            progress.stopped = reached.bound
            break
        finally:
            progress.requests = budget.requests
        sessions.extend(session for session in found.get(symbol, []) if session.day == day.isoformat())
        progress.days_done += 1
        if on_day is not None:
            on_day(msgspec.structs.replace(progress))
    return sorted(sessions, key=lambda session: session.day), progress


class RestHistory:
    """The live calibration worker's history (:class:`~services.detector.calibration_worker.HistorySource`): a
    symbol's days from Polygon REST within ``calibration_fetch_requests`` and ``calibration_fetch_seconds``. It
    pickles (the config, the condition table) and runs in the worker's child process (``runs_in_process``)."""

    runs_in_process = True

    def __init__(self, config: OrderFlowConfig, conditions: ConditionTable | None = None) -> None:
        self.config = config
        self.conditions = conditions

    def fetch(
        self,
        symbol: str,
        days: list[date],
        cancelled: Cancellation,
        on_day: Callable[[FetchProgress], None],
    ) -> tuple[list[DayStatistics], FetchProgress]:
        """See :meth:`HistorySource.fetch`; REST failing raises :class:`HistoryUnavailableError` with the REST
        error's code (``rest_unavailable``, ``rest_error``, ``rest_bad_body``). Then, within the same bounds, the
        index's minute prices of ``days``, returned after the sessions
        (:func:`~services.offline.index_bars.with_index_minutes`: their failing never fails the fetch)."""
        config = self.config
        budget = FetchBudget(config.calibration_fetch_requests, config.calibration_fetch_seconds, cancelled=cancelled)
        rest = bounded_rest(config, budget)
        try:
            sessions, progress = sessions_from_rest_bounded(
                rest, budget, symbol, days, config, conditions=self.conditions, on_day=on_day
            )
            return with_index_minutes(rest, budget, sessions, progress, days, index_for(config, symbol))
        except RestError as error:
            raise HistoryUnavailableError(str(error), error.code) from None
        except msgspec.DecodeError as error:
            raise HistoryUnavailableError(f"unreadable REST page: {error}", "rest_bad_body") from None
        finally:
            rest.close()


def trading_days(last: date, count: int, calendar: str = "NYSE") -> list[date]:
    """The ``count`` trading days up to and including ``last``, oldest first."""
    import pandas_market_calendars as market_calendars  # only here: ~0.5 s that every other command skips

    schedule = market_calendars.get_calendar(calendar).schedule(
        (last - timedelta(days=count * 2 + 10)).isoformat(), last.isoformat()
    )
    return [label.date() for label in schedule.index][-count:]


QUOTE_SLICES = 13
"""A day of quotes longer than one page (a liquid symbol: 100+ pages of 50,000) is sampled, live, in this many
evenly spaced slices of the regular session …"""
QUOTE_SLICE_SECONDS = 120
"""… of this long each (13 × 2 minutes: 26 of the session's 390 minutes, a page or two each)."""


def rest_events(
    rest: PolygonRest,
    symbol: str,
    day: date,
    *,
    quote_size_multiplier: int = 1,
    quote_slices: int = 0,
    page_rows: int = 50_000,
) -> Iterator[MarketEvent | Reject]:
    """One day's trades and quotes of ``symbol`` from REST, merged by SIP time (quotes first on ties).

    History arrives long after it happened: each event's ``ts_arrival`` is its SIP time (as for files
    without receive times), so freshness checks judge it as the live session did.

    ``quote_slices`` 0: every quote. Else, when the day's quotes are more than one page (of ``page_rows``), only
    the first page and ``quote_slices`` slices of :data:`QUOTE_SLICE_SECONDS` evenly spaced through the regular
    session are fetched (trades always in full); each gap between them starts with an empty quote (bid and ask 0),
    so no quote is credited across it and no trade in it is judged against a stale one (see
    :func:`quote_windows`)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NANOSECONDS_PER_SECOND
    params = {
        "timestamp.gte": start,
        "timestamp.lt": start + 86_400 * NANOSECONDS_PER_SECOND,
        "order": "asc",
        "limit": page_rows,
    }
    received = now_ns()

    def quote_pages(query: dict) -> Generator[tuple[list[MarketEvent | Reject], str | None]]:
        for body in rest.pages(f"/v3/quotes/{symbol}", query):
            page = parse_quotes_page(body, symbol, received, quote_size_multiplier=quote_size_multiplier)
            quotes = [_replace(quote, ts_arrival=quote.ts_event) for quote in page.events]
            yield [*page.rejects, *quotes], page.next_url

    def gap(ts: int) -> Quote:
        return Quote(
            symbol=symbol, ts_event=ts, ts_recv=ts, ts_arrival=ts, bid_price=0, bid_size=0, ask_price=0, ask_size=0
        )

    def quotes() -> Iterator[MarketEvent | Reject]:
        pages = quote_pages(params)
        for events, next_url in pages:
            yield from events
            if not quote_slices or not next_url:
                continue
            pages.close()  # a liquid day: sampled from here on
            seen = max((event.ts_event for event in events if not isinstance(event, Reject)), default=start)
            yield gap(seen + 1)
            for low, high in quote_windows(day, quote_slices, QUOTE_SLICE_SECONDS):
                if high <= seen + 1:
                    continue
                window = {**params, "timestamp.gte": max(low, seen + 1), "timestamp.lt": high}
                for window_events, _next in quote_pages(window):
                    yield from window_events
                yield gap(high)
            return

    def trades() -> Iterator[MarketEvent | Reject]:
        for body in rest.pages(f"/v3/trades/{symbol}", params):
            page = parse_trades_page(body, symbol, received)
            yield from page.rejects
            yield from (_replace(trade, ts_arrival=trade.ts_event) for trade in page.events)

    return heapq.merge(quotes(), trades(), key=lambda item: 0 if isinstance(item, Reject) else item.ts_event)


def quote_windows(day: date, count: int, seconds: float) -> list[tuple[int, int]]:
    """``count`` windows of ``seconds`` (``[low, high)`` UTC ns) centred evenly through ``day``'s regular session
    (early closes included); none on a closed day. Sample: 2024-06-20, 13 × 120 s: 09:44–09:46 ET, 10:14–10:16 ET,
    … 15:44–15:46 ET."""
    noon = int(datetime(day.year, day.month, day.day, 12, tzinfo=NEW_YORK).timestamp()) * NANOSECONDS_PER_SECOND
    market_open, market_close = SessionClock().regular_hours(noon)
    if market_close <= market_open or count <= 0:
        return []
    step, half = (market_close - market_open) / count, int(seconds * NANOSECONDS_PER_SECOND) // 2
    centres = [market_open + int(step * (index + 0.5)) for index in range(count)]
    return [(max(market_open, centre - half), min(market_close, centre + half)) for centre in centres]


def write_profile(profile: SymbolProfile, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{profile.symbol}.json"
    path.write_bytes(encode_profile(profile) + b"\n")
    return path


def read_profiles(paths: Iterable[Path]) -> dict[str, SymbolProfile]:
    """Profiles from ``SYM.json`` files written by ``calibrate --out``."""
    profiles = {}
    for path in paths:
        profile = decode_profile(path.read_bytes())
        profiles[profile.symbol] = profile
    return profiles


class ProfileSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One calibrated symbol as ``orderflow calibrate`` lists it: sizes in shares, the spread in bps."""

    symbol: str
    first_day: str  # ISO New York dates of the first and last session
    last_day: str
    sessions: int
    large_order_shares: int  # the order size at quantile 0.999 (0 when not fitted)
    large_offer_shares: int  # the displayed size at quantile 0.999
    daily_volume: int
    spread_bps: float
    has_volume_curve: bool  # False: no full session to take the intraday curve from


class CalibrationReport(msgspec.Struct, kw_only=True):
    """What a calibration built: each profile's summary (by symbol), rejects by code, the symbols asked for that
    had no regular-session history."""

    profiles: list[ProfileSummary]
    rejects_by_code: dict[str, int]
    missing: list[str]


def calibration_report(
    profiles: dict[str, SymbolProfile], rejects: RejectCounter, wanted: list[str]
) -> CalibrationReport:
    summaries = []
    for symbol, built in sorted(profiles.items()):
        orders = dict(built.order_size_quantiles)
        offers = dict(built.offer_size_quantiles)
        summaries.append(
            ProfileSummary(
                symbol=symbol,
                first_day=built.first_day,
                last_day=built.last_day,
                sessions=len(built.days),
                large_order_shares=orders.get(0.999, 0),
                large_offer_shares=offers.get(0.999, 0),
                daily_volume=built.daily_volume,
                spread_bps=built.spread_bps,
                has_volume_curve=bool(built.volume_curve),
            )
        )
    return CalibrationReport(
        profiles=summaries,
        rejects_by_code=dict(rejects.by_code),
        missing=[symbol for symbol in wanted if symbol not in profiles],
    )
