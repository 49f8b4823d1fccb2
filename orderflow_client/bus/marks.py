"""A bot's marks on the exit recommendations it handles: ``orderflow:riskmanager:<bot>:handled:<id>``.

The value says where a recommendation stands for that bot name: a process's lease ``working:<hex>`` while its
handler runs (``SET NX``, expiring, so a crashed process's lease lapses), then ``done`` or ``parked``, kept for
``remember_seconds`` so the recommendation is never handled again.
"""

from __future__ import annotations

from typing import Literal

from orderflow_client.bus.connection import Bus


class HandledMarks:
    """The handled marks of one bot name."""

    def __init__(self, bus: Bus, bot_name: str) -> None:
        self.bus = bus
        self.bot_name = bot_name

    def key(self, recommendation_id: str) -> str:
        return self.bus.keys.handled(self.bot_name, recommendation_id)

    async def take_lease(self, recommendation_id: str, lease: bytes, seconds: int) -> bool:
        """SET NX EX: True when this process now holds the recommendation (no lease or mark was there)."""
        async with self.bus.calling("take_lease"):
            return bool(await self.bus.client.set(self.key(recommendation_id), lease, nx=True, ex=seconds))

    async def holder(self, recommendation_id: str) -> bytes | None:
        """What the mark holds: another process's lease, ``b"done"``, ``b"parked"``; None when none (lapsed)."""
        async with self.bus.calling("lease_holder"):
            value = await self.bus.client.get(self.key(recommendation_id))
        return value if value is None or isinstance(value, bytes) else value.encode()

    async def release(self, recommendation_id: str) -> None:
        """DEL the lease: the handler failed, the recommendation is free to be tried again."""
        async with self.bus.calling("release_lease"):
            await self.bus.client.delete(self.key(recommendation_id))

    async def finish(self, recommendation_id: str, outcome: Literal[b"done", b"parked"], seconds: int) -> None:
        """SET the final mark for ``seconds``: never handled again by this bot name."""
        async with self.bus.calling("finish_lease"):
            await self.bus.client.set(self.key(recommendation_id), outcome, ex=seconds)
