"""Symbols' profiles in Redis: ``{prefix}:profile:{SYM}`` holds one JSON :class:`SymbolProfile`.

``orderflow calibrate`` saves them; the detector loads each monitored symbol's profile when it starts monitoring it.
"""

from __future__ import annotations

from orderflow_client.bus import Bus
from services.detector.profiles import SymbolProfile, decode_profile, encode_profile


class ProfileStore:
    """Profiles in Redis: ``{prefix}:profile:{SYM}`` holds one JSON :class:`SymbolProfile`."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def key(self, symbol: str) -> str:
        return f"{self.bus.keys.prefix}:profile:{{{symbol}}}"

    async def save(self, profile: SymbolProfile) -> None:
        await self.bus.client.set(self.key(profile.symbol), encode_profile(profile))

    async def load(self, symbol: str) -> SymbolProfile | None:
        """The stored profile, None when there is none; :class:`ProfileError` when unreadable."""
        payload = await self.bus.client.get(self.key(symbol))
        return None if payload is None else decode_profile(payload)
