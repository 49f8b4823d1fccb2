"""Symbols' profiles in Redis: ``{prefix}:profile:{SYM}`` holds one JSON :class:`SymbolProfile`.

``orderflow calibrate`` saves them; the detector loads each monitored symbol's profile when it starts monitoring it.
The Redis side (key, GET/SET) is :class:`orderflow_client.bus.profiles.ProfileRecords`; this adds the decoding.
:func:`whole_trading_days` gives the days a profile built now can hold, against which its freshness is judged.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.profiles import ProfileRecords
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.detector.profiles import SymbolProfile, decode_profile, encode_profile
from shared.sessions import SessionClock

NEW_YORK = ZoneInfo("America/New_York")


class ProfileStore:
    """Profiles in Redis: ``{prefix}:profile:{SYM}`` holds one JSON :class:`SymbolProfile`."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._records = ProfileRecords(bus)

    async def save(self, profile: SymbolProfile) -> None:
        await self._records.save(profile.symbol, encode_profile(profile))

    async def load(self, symbol: str) -> SymbolProfile | None:
        """The stored profile, None when there is none; :class:`ProfileError` when unreadable."""
        payload = await self._records.load(symbol)
        return None if payload is None else decode_profile(payload)


def new_york_day(ts_ns: int) -> date:
    """The New York calendar date of ``ts_ns`` (UTC ns), e.g. 2024-06-20 for 2024-06-21T03:00Z."""
    return datetime.fromtimestamp(ts_ns / NANOSECONDS_PER_SECOND, tz=NEW_YORK).date()


def whole_trading_days(sessions: SessionClock, now_ns: int, count: int) -> list[date]:
    """The last ``count`` NYSE trading days before ``now_ns``'s New York date (history serves whole days), oldest
    first: on 2024-06-21 (Friday) with 2, 2024-06-18 and 2024-06-20 (06-19 is Juneteenth)."""
    days: list[date] = []
    day = new_york_day(now_ns) - timedelta(days=1)
    while len(days) < count:
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=NEW_YORK)
        market_open, market_close = sessions.regular_hours(int(noon.timestamp()) * NANOSECONDS_PER_SECOND)
        if market_open < market_close:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]
