"""A bot's lease on a recommendation is renewed only while it is still its own: a lease that lapsed and was taken
by another process between the renewal's GET and its SET is left to that process (WATCH/MULTI/EXEC), on a real
Redis server and in the embedded mode."""

from __future__ import annotations

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.marks import HandledMarks

pytestmark = pytest.mark.redis


async def _renewed_only_while_held(bus: Bus) -> None:
    marks = HandledMarks(bus, "renewal")
    key = marks.key("AAPL:exit:1")
    assert await marks.take_lease("AAPL:exit:1", b"working:a", 5)
    assert await marks.renew("AAPL:exit:1", b"working:a", 60)
    assert 55 <= await bus.client.ttl(key) <= 60  # extended
    assert not await marks.renew("AAPL:exit:9", b"working:a", 60)  # none there: nothing created
    assert await bus.client.get(marks.key("AAPL:exit:9")) is None

    # the lease lapses and another process takes it right after this renewal's GET
    pipeline = bus.client.pipeline

    def taken_after_the_get(**options):
        transaction = pipeline(**options)
        get = transaction.get

        async def get_then_taken(name):
            held = await get(name)
            await bus.client.set(name, b"working:b", ex=30)  # (another connection: the pool's other one)
            return held

        transaction.get = get_then_taken
        return transaction

    bus.client.pipeline = taken_after_the_get
    try:
        assert not await marks.renew("AAPL:exit:1", b"working:a", 60)
    finally:
        del bus.client.pipeline
    assert await marks.holder("AAPL:exit:1") == b"working:b"  # the other process's lease stands
    assert await bus.client.ttl(key) <= 30


async def test_a_lease_is_renewed_only_while_it_is_still_this_process_s(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await _renewed_only_while_held(bus)


async def test_the_embedded_bus_renews_a_lease_only_while_it_is_held(key_prefix):
    async with await Bus.connect(None, prefix=key_prefix) as bus:
        await _renewed_only_while_held(bus)


async def test_a_connection_dropped_while_the_lease_is_watched_is_not_taken_for_a_lost_lease(redis_url, key_prefix):
    """redis-py reports a connection dropped between WATCH and EXEC as a changed key (WatchError); the lease is still
    this process's, so the renewal reads it again and renews it, instead of raising (the keeper died) or giving the
    lease up (another process would take it during the broker call)."""
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        marks = HandledMarks(bus, "renewal")
        assert await marks.take_lease("AAPL:exit:2", b"working:a", 5)
        pipeline, dropped = bus.client.pipeline, []

        def dropped_once_while_watched(**options):
            transaction = pipeline(**options)
            get = transaction.get

            async def get_after_a_drop(name):
                if not dropped:
                    dropped.append(await transaction.client_id())  # (the watching connection's own id)
                    await bus.client.client_kill_filter(_id=dropped[0])  # that connection only
                return await get(name)

            transaction.get = get_after_a_drop
            return transaction

        bus.client.pipeline = dropped_once_while_watched
        try:
            assert await marks.renew("AAPL:exit:2", b"working:a", 60)
        finally:
            del bus.client.pipeline
        assert dropped and 55 <= await bus.client.ttl(marks.key("AAPL:exit:2")) <= 60
