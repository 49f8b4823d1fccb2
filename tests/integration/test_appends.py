"""Appends are exactly once: a batch tried again after its reply was lost is recognised on its stream and not
appended twice (a real Redis server, and the embedded mode)."""

from __future__ import annotations

import asyncio

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.streams import stream_id
from orderflow_client.errors import BusUnavailableError
from orderflow_client.wire import Trade, decode

pytestmark = pytest.mark.redis


def trades(symbol: str, first: int, count: int) -> list[Trade]:
    ts = 1_764_000_000_000_000_000
    return [
        Trade(symbol=symbol, ts_event=ts + n, ts_recv=ts + n, ts_arrival=ts + n, price=50_000_000_000, size=100 + n)
        for n in range(first, first + count)
    ]


async def _published_again_once(bus: Bus) -> None:
    a, b = bus.keys.market("AAA"), bus.keys.market("BBB")
    batch = [(a, trade) for trade in trades("AAA", 0, 3)] + [(b, trade) for trade in trades("BBB", 0, 2)]
    first = await bus.publish(batch)
    assert await bus.publish(batch) == first  # a try whose reply was lost: the same ids, nothing appended
    assert [decode(entry.payload).size for entry in await bus.read_range(a)] == [100, 101, 102]
    assert [decode(entry.payload).size for entry in await bus.read_range(b)] == [100, 101]
    # only the stream that did not get its part is appended: BBB's batch is there, AAA's next one is not
    following = [(a, trade) for trade in trades("AAA", 3, 2)] + [(b, trade) for trade in trades("BBB", 0, 2)]
    ids = await bus.publish(following)
    assert ids[2:] == first[3:] and min(stream_id(entry_id) for entry_id in ids[:2]) > stream_id(first[2])
    assert [decode(entry.payload).size for entry in await bus.read_range(a)] == [100, 101, 102, 103, 104]
    assert len(await bus.read_range(b)) == 2
    # the same events as a new batch are appended (a batch is recognised by its last entry only at the tail)
    await bus.publish([(a, trade) for trade in trades("AAA", 0, 1)])
    assert len(await bus.read_range(a)) == 6


async def test_a_batch_published_again_is_appended_once_and_gives_its_ids(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await _published_again_once(bus)


async def test_the_embedded_bus_appends_a_batch_published_again_once(key_prefix):
    async with await Bus.connect(None, prefix=key_prefix) as bus:
        await _published_again_once(bus)


async def test_packed_market_events_published_again_are_appended_once(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("AAA")
        events = [(stream, trade) for trade in trades("AAA", 0, 200)]  # several packed entries
        first = await bus.publish_market_events(events)
        assert len(first) > 1
        assert await bus.publish_market_events(events) == first
        assert len(await bus.read_range(stream)) == len(first)


async def test_a_fenced_batch_tried_again_after_its_lease_moved_gives_its_ids(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream, lease = bus.keys.market("AAA"), bus.keys.lease("ingest", "AAA")
        await bus.client.set(lease, "ingest-a#1")
        batch = [(stream, trade) for trade in trades("AAA", 0, 3)]
        assert await bus.publish_market_events_fenced(batch, {stream: (lease, "ingest-a#1")}) == set()
        await bus.client.set(lease, "ingest-b#2")  # another ingest took the symbol since
        # the batch is on the stream: the try again says so instead of "refused", and appends nothing
        assert await bus.publish_market_events_fenced(batch, {stream: (lease, "ingest-a#1")}) == set()
        assert len(await bus.read_range(stream)) == 1
        following = [(stream, trade) for trade in trades("AAA", 3, 2)]
        assert await bus.publish_market_events_fenced(following, {stream: (lease, "ingest-a#1")}) == {stream}
        assert len(await bus.read_range(stream)) == 1


async def test_ingest_tries_a_batch_whose_reply_was_lost_again_before_it_appends_anything_else(redis_url, key_prefix):
    """Ingest's batch reaches its stream but the reply is lost past the retries (an outage); a status from another
    of ingest's tasks waits until the batch is through, so the try again finds the batch at the stream's tail and
    does not append it twice."""
    from services.ingest.publisher import StreamPublisher
    from services.ingest.stats import IngestStats

    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        publisher = StreamPublisher(bus, IngestStats(), symbols=lambda: ["AAA"])
        publish, tries, statuses = bus.publish_market_events, [], []

        async def reply_lost_the_first_time(entries):
            ids = await publish(entries)
            tries.append(ids)
            if len(tries) == 1:  # meanwhile the watchdog reports a status on the same stream
                statuses.append(asyncio.ensure_future(publisher.publish_status("connected", "", "a status")))
                await asyncio.sleep(0.1)
                raise BusUnavailableError("the reply was lost", entries)
            return ids

        bus.publish_market_events = reply_lost_the_first_time
        try:
            await publisher.publish_events(trades("AAA", 0, 3))
            await statuses[0]
        finally:
            del bus.publish_market_events
        assert len(tries) == 2 and tries[1] == tries[0]  # recognised: the same ids
        kinds = [entry.field for entry in await bus.read_range(bus.keys.market("AAA"))]
        assert kinds == [b"events", b"status", b"status"]  # the batch once, then the status and the outage's gap


async def test_a_batch_longer_than_the_stream_s_cap_found_appended_gives_the_ids_still_there(redis_url, key_prefix):
    """A batch trimmed by the stream's cap (MAXLEN ~) as it was appended: published again, the ids of its entries
    still on the stream come back in their places, the trimmed ones blank."""
    async with await Bus.connect(redis_url, prefix=key_prefix, stream_max_length=10) as bus:
        stream = bus.keys.market("AAA")
        batch = [(stream, trade) for trade in trades("AAA", 0, 500)]
        first = await bus.publish(batch)
        kept = len(await bus.read_range(stream))
        assert 10 <= kept < 500
        again = await bus.publish(batch)
        assert again[-kept:] == first[-kept:] and again[:-kept] == [""] * (500 - kept)
        assert len(await bus.read_range(stream)) == kept  # nothing appended
