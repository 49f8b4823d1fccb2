"""Symbols' profiles in Redis: ``{prefix}:profile:{SYM}`` holds one JSON :class:`SymbolProfile`.

``orderflow calibrate`` saves them; the detector loads each monitored symbol's profile when it starts monitoring it.
The Redis side (key, GET/SET) is :class:`orderflow_client.bus.profiles.ProfileRecords`; this adds the decoding.
"""

from __future__ import annotations

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.profiles import ProfileRecords
from services.detector.profiles import SymbolProfile, decode_profile, encode_profile


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
