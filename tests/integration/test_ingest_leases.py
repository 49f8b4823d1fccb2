"""Two ingests sharing the open positions' symbols through leases, against the local Polygon simulator and a real
Redis: each subscribes to its share; one that dies (its task cancelled mid-flow, its leases left to expire) has its
symbols taken over by the other within the lease time, each bridged by a ``handover`` gap and the trades the gap
hid backfilled from REST before live data goes on; and a paused ingest's appends under a lease it lost are refused."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.leases import Leases, holder_of
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import FeedStatus, Trade
from services.ingest.polygon_rest_client import PolygonRest
from services.ingest.service import IngestService
from services.tools.simulator import PolygonSimulator
from tests.integration.test_live_ingest import KEY, settings, timeline
from tests.support.streams import market_stream_events
from tests.support.waiting import wait_for_async

pytestmark = pytest.mark.redis
SYMBOLS = ["IA", "IB", "IC", "ID", "IE", "IF"]
LEASE_SECONDS = 2.0
SECOND_KEY = "pk_sim_SECOND_c02e"  # one WebSocket connection per key: each ingest has its own account's key


@pytest.fixture
async def six_symbols():
    simulator = await PolygonSimulator(
        timeline(SYMBOLS, minutes=6.0), api_key=KEY, other_keys=(SECOND_KEY,), speed=10
    ).start()
    yield simulator
    await simulator.stop()


async def holders(bus: Bus) -> dict[str, str]:
    values = await Leases(bus).holders("ingest", SYMBOLS)
    return {symbol: holder_of(value) for symbol, value in values.items()}


async def test_two_ingests_share_the_symbols_and_one_takes_over_a_dead_ones(six_symbols, redis_url, key_prefix):
    config = settings(six_symbols, key_prefix, ingest_lease_seconds=LEASE_SECONDS)
    buses = [await Bus.connect(redis_url, prefix=key_prefix) for _ in range(3)]
    watcher = buses[2]
    for symbol in SYMBOLS:
        await PositionRegistry(watcher).open(symbol, quantity=100, entry_price="50.00")
    keys = (KEY, SECOND_KEY)
    rests = [PolygonRest(key, f"http://{six_symbols.feed}", backoff_base=0.05, backoff_cap=0.3) for key in keys]
    services = [
        IngestService(config, buses[index], api_key=keys[index], rest=rests[index], name=name)
        for index, name in enumerate(("i1", "i2"))
    ]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.ensure_future(service.run(stop)) for service, stop in zip(services, stops, strict=True)]
    try:

        async def shared() -> bool:
            return set((await holders(watcher)).values()) == {"i1", "i2"}

        await wait_for_async(shared, timeout=20, what="both ingests owning symbols")

        async def settled() -> bool:  # each subscribed to its own share only, together to every symbol
            shares = await holders(watcher)
            return (
                set(services[0].symbols) == {s for s, holder in shares.items() if holder == "i1"}
                and sorted(services[0].symbols + services[1].symbols) == SYMBOLS
            )

        await wait_for_async(settled, timeout=10, what="the subscriptions to follow the leases")
        shares = await holders(watcher)

        async def all_flowing() -> bool:
            for symbol in SYMBOLS:
                if not any(isinstance(e, Trade) for e in await market_stream_events(watcher, symbol)):
                    return False
            return True

        await wait_for_async(all_flowing, timeout=30, what="trades of every symbol")
        orphans = [symbol for symbol, holder in shares.items() if holder == "i1"]
        tasks[0].cancel()  # i1 dies: no clean stop, its leases expire on their own
        await asyncio.gather(tasks[0], return_exceptions=True)
        died = time.monotonic()

        async def taken_over() -> bool:
            now = await holders(watcher)
            return all(now[symbol] == "i2" for symbol in orphans) and set(orphans) <= set(services[1].symbols)

        await wait_for_async(taken_over, timeout=LEASE_SECONDS + 10, what="i2 taking i1's symbols")
        taken_seconds = time.monotonic() - died

        async def bridged() -> bool:
            for symbol in orphans:
                events = await market_stream_events(watcher, symbol)
                gaps = [e for e in events if isinstance(e, FeedStatus) and e.code == "handover"]
                if not gaps or not any(isinstance(e, Trade) and e.ts_event > gaps[0].gap_end_ns for e in events):
                    return False
            return True

        await wait_for_async(bridged, timeout=30, what="a handover gap, then live trades, on every taken symbol")
        events = await market_stream_events(watcher, orphans[0])
        gap = next(e for e in events if isinstance(e, FeedStatus) and e.code == "handover")
        backfilled = [e for e in events if isinstance(e, Trade) and e.backfilled]
        assert gap.symbols == (orphans[0],) and gap.gap_start_ns < gap.gap_end_ns
        assert backfilled and all(gap.gap_start_ns <= t.ts_event <= gap.gap_end_ns for t in backfilled)
        assert services[1].stats.backfilled >= len(backfilled)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=15)
        for rest in rests:
            rest.close()
        for bus in buses:
            await bus.close()
    assert taken_seconds <= LEASE_SECONDS + 4  # the lease, a registry read (each second), a little slack


async def test_an_append_under_a_lease_another_ingest_holds_is_refused(redis_url, key_prefix):
    """A paused ingest waking up with a stale lease: its events for that symbol are not appended."""
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        leases = Leases(bus)
        mine = await leases.acquire("ingest", "IA", "i1", ttl_ms=60_000)
        trade = Trade(symbol="IA", ts_event=1, ts_recv=1, ts_arrival=1, price=10**9, size=100)
        stream = bus.keys.market("IA")
        assert (
            await bus.publish_market_events_fenced([(stream, trade)], {stream: (bus.keys.lease("ingest", "IA"), mine)})
            == set()
        )
        await bus.client.set(bus.keys.lease("ingest", "IA"), "i2#99")  # expired while i1 slept; i2 took it
        later = msgspec.structs.replace(trade, ts_event=2, ts_recv=2, ts_arrival=2)  # (the same batch again is
        refused = await bus.publish_market_events_fenced(  # recognised as appended: tests/integration/test_appends.py)
            [(stream, later)], {stream: (bus.keys.lease("ingest", "IA"), mine)}
        )
        assert refused == {stream} and await bus.client.xlen(stream) == 1


async def test_a_woken_ingest_says_nothing_of_the_symbols_it_lost(redis_url, key_prefix):
    """A gap an ingest reports after a pause reaches only the symbols whose lease it still holds: on their market
    streams (appended under the lease) and named on the status stream; a symbol another ingest took meanwhile
    gets nothing from it, until this ingest holds it again."""
    from services.ingest.publisher import StreamPublisher
    from services.ingest.stats import IngestStats

    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        leases = Leases(bus)
        held = {symbol: await leases.acquire("ingest", symbol, "i1", ttl_ms=60_000) for symbol in ("IA", "IB")}
        publisher = StreamPublisher(
            bus,
            IngestStats(),
            symbols=lambda: ["IA", "IB"],
            fence_of=lambda symbol: (bus.keys.lease("ingest", symbol), held[symbol]) if symbol in held else None,
        )
        await bus.client.set(bus.keys.lease("ingest", "IB"), "i2#99")  # IB's lease expired while i1 slept; i2 took it
        await publisher.report_gap(1_000, 2_000, "socket_disconnect")
        assert set(publisher.refused) == {"IB"}
        gaps = [event for event in await market_stream_events(bus, "IA") if isinstance(event, FeedStatus)]
        assert [(gap.state, gap.code) for gap in gaps] == [("gap", "socket_disconnect")]
        assert await market_stream_events(bus, "IB") == []
        statuses = await bus.read_range(bus.keys.status)
        assert len(statuses) == 1 and b"IB" not in statuses[0].payload and b"IA" in statuses[0].payload
        # the gap is held for IB: said once this ingest holds IB again (here its lease expired: Redis forgot it)
        await bus.client.delete(bus.keys.lease("ingest", "IB"))
        held["IB"] = await leases.acquire("ingest", "IB", "i1", ttl_ms=60_000)
        await publisher.publish_held_statuses(["IA", "IB"])
        gaps = [event for event in await market_stream_events(bus, "IB") if isinstance(event, FeedStatus)]
        assert [(gap.code, gap.gap_start_ns, gap.gap_end_ns) for gap in gaps] == [("socket_disconnect", 1_000, 2_000)]
        assert publisher.held_statuses == {}
