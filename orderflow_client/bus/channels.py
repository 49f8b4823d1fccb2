"""Pub/sub on the bus: publish a message on a channel, and follow a channel.

Channels are fast and lossy (a subscriber that is away misses what was published), so each has a durable source
beside it: ``orderflow:exit-signals`` the ``orderflow:exits`` stream, ``orderflow:positions:changes`` the positions
hash, which followers re-read periodically::

    async with bus.subscribe(bus.keys.positions_channel) as changes:
        payload = await changes.next_message(timeout=0.2)  # b'{"action":"open","symbol":"AAPL"}', or None
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orderflow_client.bus.calls import RedisCalls
from orderflow_client.wire import WireMessage, encode


class Subscription:
    """A subscription to one channel (made by :meth:`Channels.subscribe`)."""

    def __init__(self, calls: RedisCalls, pubsub: PubSub, channel: str) -> None:
        self._calls = calls
        self._pubsub = pubsub
        self.channel = channel

    async def next_message(self, timeout: float) -> bytes | None:
        """The next message's payload, waiting at most ``timeout`` seconds; None when none came."""
        async with self._calls.calling("next_message"):
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        return None if message is None else message["data"]


class Channels(RedisCalls):
    """Publishing on, and following, pub/sub channels."""

    async def publish_channel(self, channel: str, message: WireMessage) -> int:
        """PUBLISH on a pub/sub channel; returns the number of subscribers reached."""
        async with self.calling("publish_channel"):
            return int(await self.client.publish(channel, encode(message)))

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """SUBSCRIBE to ``channel`` for the ``async with`` block; the subscription's connection is closed at its
        end (an error closing it, Redis being away, is ignored: the connection is gone either way)."""
        pubsub = self.client.pubsub()
        try:
            async with self.calling("subscribe"):
                await pubsub.subscribe(channel)
            yield Subscription(self, pubsub, channel)
        finally:
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                await pubsub.aclose()
