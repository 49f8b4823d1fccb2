"""Symbols' profiles on the bus: ``orderflow:profile:{AAPL}`` holds one JSON profile.

``orderflow calibrate`` saves them; the detector loads each monitored symbol's profile when it starts monitoring it.
What a profile holds, and its decoding, are the detector's (``services/detector/profiles.py``): here it is bytes.
"""

from __future__ import annotations

from orderflow_client.bus.connection import Bus


class ProfileRecords:
    """Get and set the stored profile of a symbol."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def save(self, symbol: str, payload: bytes) -> None:
        """SET the profile of ``symbol`` (replacing the one stored)."""
        async with self.bus.calling("save_profile"):
            await self.bus.client.set(self.bus.keys.profile(symbol), payload)

    async def load(self, symbol: str) -> bytes | None:
        """GET the stored profile of ``symbol``; None when there is none."""
        async with self.bus.calling("load_profile"):
            payload = await self.bus.client.get(self.bus.keys.profile(symbol))
        return payload if payload is None or isinstance(payload, bytes) else payload.encode()
