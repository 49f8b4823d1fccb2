"""The NYSE trading calendar from a table shipped with orderflow (``shared/data/nyse_sessions.json``), so the
session clock needs no pandas at start-up.

The table lists, for 2000–2040, the weekdays the exchange is closed and the days with other hours than a regular
weekday (04:00 pre-market, 09:30 open, 16:00 close, 20:00 end of after-hours, New York time), as
pandas-market-calendars states them (``scripts/session_table.py`` writes it; a test holds it to the library day by
day). ``NyseSessionTable().boundaries(date(2026, 11, 27))`` is the early close's
``(pre, open, close, post)`` in UTC ns: 04:00, 09:30, 13:00 and 17:00 New York time.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, NEW_YORK

TABLE_FILE = Path(__file__).with_name("data") / "nyse_sessions.json"

Boundaries = tuple[int, int, int, int]
"""``(pre_market_start, market_open, market_close, after_hours_end)`` of one day, UTC ns."""


class NyseSessionTable:
    """A day's session boundaries from the shipped table; :meth:`covers` says which days it knows."""

    def __init__(self, path: Path = TABLE_FILE) -> None:
        document = json.loads(path.read_text())
        self.first = date.fromisoformat(document["first"])
        self.last = date.fromisoformat(document["last"])
        self.source: str = document["source"]
        self._regular: tuple[str, ...] = tuple(document["regular"])
        self._closed = {date.fromisoformat(day) for day in document["closed_weekdays"]}
        self._other_hours = {date.fromisoformat(day): tuple(hours) for day, hours in document["other_hours"].items()}

    def covers(self, day: date) -> bool:
        """Whether the table knows ``day`` (outside its range the clock asks pandas-market-calendars)."""
        return self.first <= day <= self.last

    def boundaries(self, day: date) -> Boundaries | None:
        """The day's boundaries in UTC ns; None when the exchange is closed all day (weekends, holidays)."""
        hours = self._other_hours.get(day)
        if hours is None:
            if day.weekday() >= 5 or day in self._closed:
                return None
            hours = self._regular
        pre, market_open, market_close, post = (_new_york_ns(day, clock) for clock in hours)
        return pre, market_open, market_close, post


def _new_york_ns(day: date, clock: str) -> int:
    """``"09:30"`` New York time on ``day`` as UTC ns."""
    hour, minute = (int(part) for part in clock.split(":"))
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)
    return int(moment.timestamp()) * NANOSECONDS_PER_SECOND
