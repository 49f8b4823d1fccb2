"""The session clock's shipped NYSE table says, for every day of 2000–2040, exactly what pandas-market-calendars
says (closed days, early closes, the pre-market and after-hours bounds), to the nanosecond."""

from __future__ import annotations

from datetime import date, timedelta

import pandas_market_calendars as market_calendars

from shared.session_table import NyseSessionTable
from shared.sessions import SessionClock
from tests.support.events import S

NEW_YEAR_2041 = 2240611200 * S  # 2041-01-01 00:00 UTC


def library_boundaries(first: date, last: date) -> dict[date, tuple[int, int, int, int]]:
    schedule = market_calendars.get_calendar("NYSE").schedule(
        first.isoformat(), last.isoformat(), start="pre", end="post"
    )
    return {
        label.date(): tuple(int(row[column].value) for column in ("pre", "market_open", "market_close", "post"))
        for label, row in schedule.iterrows()
    }


def test_every_day_of_the_table_matches_the_library():
    table = NyseSessionTable()
    library = library_boundaries(table.first, table.last)
    assert len(library) > 10_000
    day, differing = table.first, []
    while day <= table.last:
        if table.boundaries(day) != library.get(day):
            differing.append((day.isoformat(), table.boundaries(day), library.get(day)))
        day += timedelta(days=1)
    assert not differing, differing[:5]


def test_known_days():
    table = NyseSessionTable()
    assert table.boundaries(date(2026, 11, 26)) is None  # Thanksgiving
    assert table.boundaries(date(2026, 12, 5)) is None  # a Saturday
    pre, market_open, market_close, post = table.boundaries(date(2026, 11, 27))  # early close, 13:00 New York
    assert (market_open - pre) // S == 5 * 3600 + 30 * 60
    assert (market_close - market_open) // S == 3 * 3600 + 30 * 60 and (post - market_close) // S == 4 * 3600


def test_outside_the_table_the_clock_asks_the_library():
    clock = SessionClock()
    assert clock._calendar is None
    assert clock.session(1_795_531_951 * S) == "regular"  # 2026-11-24 15:32 New York, from the table
    assert clock._calendar is None
    later = NEW_YEAR_2041 + 16 * 3600 * S  # 2041-01-01 11:00 New York: New Year's Day, closed
    assert clock.session(later) == "closed" and clock._calendar is not None
    assert clock.session(later + 24 * 3600 * S) == "regular"  # 2041-01-02 11:00 New York, a Wednesday
