"""The position registry's storage: the hash ``orderflow:positions`` and its change channel.

Field = symbol, value = a JSON position (``{"symbol":"AAPL","quantity":200,"entry_price":187430000000,…}``), plus
:data:`REGISTRY_MARK`; after every change a notice ``{"action":"open","symbol":"AAPL"}`` goes to
``orderflow:positions:changes`` (follow it with :meth:`~orderflow_client.bus.channels.Channels.subscribe`). What the
values mean, and their checks, are :class:`orderflow_client.positions.PositionRegistry`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.typing import EncodableT, FieldT

from orderflow_client.bus.connection import Bus

REGISTRY_MARK = "_registry"
"""A field the positions hash keeps once any position was opened, so the hash outlives its last position:
a missing hash then means the registry was lost (Redis restarted without persistence), not that every
position was closed."""


class RegistryHash:
    """The positions hash and its change channel on one bus."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def entries(self) -> dict[str, bytes]:
        """Every field (HGETALL): symbol → JSON position, and :data:`REGISTRY_MARK`; empty when the hash is missing.
        A field name that is not UTF-8 is decoded with replacement characters."""
        async with self.bus.calling("registry_entries"):
            values = await self.bus.client.hgetall(self.bus.keys.positions)
        return {
            (name.decode(errors="replace") if isinstance(name, bytes) else name): (
                value if isinstance(value, bytes) else value.encode()
            )
            for name, value in values.items()
        }

    async def put(self, fields: Mapping[str, bytes]) -> None:
        """HSET the fields (symbol → JSON position, or the mark)."""
        async with self.bus.calling("registry_put"):
            mapping: dict[FieldT, EncodableT] = dict(fields.items())
            await self.bus.client.hset(self.bus.keys.positions, mapping=mapping)

    async def put_if_absent(self, symbol: str, payload: bytes) -> bool:
        """HSETNX: write ``symbol``'s position unless one is there (set since); True when written."""
        async with self.bus.calling("registry_put_if_absent"):
            return bool(await self.bus.client.hsetnx(self.bus.keys.positions, symbol, payload))

    async def mark(self) -> None:
        """HSET :data:`REGISTRY_MARK`: the registry exists (even with no position open)."""
        async with self.bus.calling("registry_mark"):
            await self.bus.client.hset(self.bus.keys.positions, REGISTRY_MARK, b"1")

    async def remove(self, symbol: str) -> bool:
        """HDEL ``symbol``; True when it was there."""
        async with self.bus.calling("registry_remove"):
            return bool(await self.bus.client.hdel(self.bus.keys.positions, symbol))

    async def announce(self, notice: bytes) -> int:
        """PUBLISH a change notice on the registry's channel; returns how many followers it reached."""
        async with self.bus.calling("registry_announce"):
            return int(await self.bus.client.publish(self.bus.keys.positions_channel, notice))
