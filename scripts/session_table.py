"""Writes shared/data/nyse_sessions.json, the NYSE trading calendar the session clock reads without pandas.

The clock answers ``pre_market`` / ``regular`` / ``after_hours`` / ``closed`` for every event; loading
pandas-market-calendars for that cost every command ~0.5 s of start-up. The table holds what that library says
for every day of its range, as exceptions to a regular weekday (04:00 pre-market, 09:30 open, 16:00 close, 20:00
end of after-hours, New York time): the weekdays the exchange is closed, and the days with other hours (early
closes: 13:00 close, 17:00 end of after-hours). A test holds the clock on the table to the library, day by day.

    python scripts/session_table.py --write     # after upgrading pandas-market-calendars, or to widen the range
    python scripts/session_table.py --check     # exit 1 when the committed table is not what the library says
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas_market_calendars as market_calendars

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "shared" / "data" / "nyse_sessions.json"
FIRST, LAST = date(2000, 1, 1), date(2040, 12, 31)
REGULAR = ("04:00", "09:30", "16:00", "20:00")
NEW_YORK = ZoneInfo("America/New_York")


def table() -> dict[str, Any]:
    """The calendar document: its range, the closed weekdays, the days with other hours (local ``HH:MM``)."""
    schedule = market_calendars.get_calendar("NYSE").schedule(
        FIRST.isoformat(), LAST.isoformat(), start="pre", end="post"
    )
    open_days: dict[date, tuple[str, ...]] = {}
    for label, row in schedule.iterrows():
        open_days[label.date()] = tuple(
            row[column].tz_convert(NEW_YORK).strftime("%H:%M")
            for column in ("pre", "market_open", "market_close", "post")
        )
    closed = []
    other_hours = {}
    for ordinal in range(FIRST.toordinal(), LAST.toordinal() + 1):
        day = date.fromordinal(ordinal)
        hours = open_days.get(day)
        if hours is None:
            if day.weekday() < 5:
                closed.append(day.isoformat())
        elif hours != REGULAR or day.weekday() >= 5:
            other_hours[day.isoformat()] = list(hours)
    return {
        "calendar": "NYSE",
        "source": f"pandas-market-calendars {version('pandas-market-calendars')}",
        "written": datetime.now(tz=NEW_YORK).date().isoformat(),
        "first": FIRST.isoformat(),
        "last": LAST.isoformat(),
        "regular": list(REGULAR),
        "closed_weekdays": closed,
        "other_hours": other_hours,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true")
    action.add_argument("--check", action="store_true")
    arguments = parser.parse_args()
    document = table()
    if arguments.write:
        TABLE.write_text(json.dumps(document, indent=1) + "\n")
        closed, other = document["closed_weekdays"], document["other_hours"]
        print(f"wrote {TABLE.relative_to(REPO)}: {len(closed)} closed weekdays, {len(other)} days with other hours")
        return 0
    committed = json.loads(TABLE.read_text())
    same = all(
        committed[key] == document[key] for key in ("first", "last", "regular", "closed_weekdays", "other_hours")
    )
    print("the committed table is what the library says" if same else "the committed table differs: --write it")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
