"""Trading sessions of the NYSE calendar (holidays, early closes).

``SessionClock().session(ts_ns)`` answers ``pre_market``, ``regular``,
``after_hours`` or ``closed`` for a UTC ns time. A day's boundaries are
looked up once and cached as integers, so the per-event cost is two
comparisons. 2026-11-27 (day after Thanksgiving) closes at 13:00 New York;
2026-11-26 is ``closed`` all day.

Days of 2000–2040 come from the table shipped with orderflow
(:mod:`shared.session_table`: no pandas, so a command starts in a fraction
of a second); other days, or another calendar, from pandas-market-calendars,
imported only then.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import TradingSession
from shared.session_table import NyseSessionTable

_NEW_YORK_OFFSET_GUESS = timedelta(hours=5)  # only to pick the calendar day; boundaries are exact


class SessionClock:
    """Session of any instant, for one exchange calendar."""

    def __init__(self, calendar: str = "NYSE") -> None:
        self.calendar_name = calendar
        self._table = NyseSessionTable() if calendar == "NYSE" else None
        self._calendar: Any = None  # a pandas_market_calendars calendar, loaded for a day outside the table
        self._days: dict[date, tuple[int, int, int, int] | None] = {}
        self._current: tuple[int, int, int, int, int, int] | None = None  # day start/end + boundaries
        self.day = ""  # the trading day (New York calendar date, ISO) of the last instant asked about

    def _boundaries(self, day: date) -> tuple[int, int, int, int] | None:
        if day not in self._days:
            if self._table is not None and self._table.covers(day):
                self._days[day] = self._table.boundaries(day)
                return self._days[day]
            if self._calendar is None:
                import pandas_market_calendars as market_calendars  # only outside the shipped table: ~0.5 s

                self._calendar = market_calendars.get_calendar(self.calendar_name)
            # one pandas call (~150 ms) loads three weeks, so a day change costs nothing
            first, last = day - timedelta(days=10), day + timedelta(days=10)
            schedule = self._calendar.schedule(first.isoformat(), last.isoformat(), start="pre", end="post")
            for offset in range((last - first).days + 1):
                self._days.setdefault(first + timedelta(days=offset), None)
            for label, row in schedule.iterrows():
                pre, market_open, market_close, post = (
                    int(row[column].value) for column in ("pre", "market_open", "market_close", "post")
                )
                self._days[label.date()] = (pre, market_open, market_close, post)
        return self._days[day]

    def session(self, ts_ns: int) -> TradingSession:
        current = self._current
        if current is None or not current[0] <= ts_ns < current[1]:
            current = self._load(ts_ns)
        pre, market_open, market_close, post = current[2:]
        if ts_ns < pre or ts_ns >= post:
            return "closed"
        if ts_ns < market_open:
            return "pre_market"
        if ts_ns < market_close:
            return "regular"
        return "after_hours"

    def _load(self, ts_ns: int) -> tuple[int, int, int, int, int, int]:
        moment = datetime.fromtimestamp(ts_ns / NANOSECONDS_PER_SECOND, tz=UTC)
        day = (moment - _NEW_YORK_OFFSET_GUESS).date()
        bounds = self._boundaries(day)
        # the cache covers this calendar day in UTC-5 terms: from its midnight to the next
        start = (
            int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * NANOSECONDS_PER_SECOND)
            + int(_NEW_YORK_OFFSET_GUESS.total_seconds()) * NANOSECONDS_PER_SECOND
        )
        end = start + 86_400 * NANOSECONDS_PER_SECOND
        if bounds is None:
            bounds = (end, end, end, end)  # closed all day
        current = (start, end, *bounds)
        self._current = current
        self.day = day.isoformat()
        return current

    def _covering(self, ts_ns: int) -> tuple[int, int, int, int, int, int]:
        """``(day_start, day_end, pre, open, close, post)`` ns of the day holding ``ts_ns`` (loaded if need be)."""
        current = self._current
        if current is None or not current[0] <= ts_ns < current[1]:
            current = self._load(ts_ns)
        return current

    def regular_hours(self, ts_ns: int) -> tuple[int, int]:
        """``(market_open_ns, market_close_ns)`` of the trading day holding ``ts_ns`` (equal on a closed day)."""
        current = self._covering(ts_ns)
        return current[3], current[4]

    def day_of(self, ts_ns: int) -> tuple[str, int, int, int | None]:
        """``(day, day_start_ns, day_end_ns, market_open_ns)`` of the New York trading day holding
        ``ts_ns`` (open None on a day the market is closed)."""
        start, end, _pre, market_open, _close, _post = self._covering(ts_ns)
        return self.day, start, end, (market_open if market_open < end else None)
