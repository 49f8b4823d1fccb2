"""The market symbols in the live path, on a real Redis: ingest subscribes SPY (and a position's sector ETF) beside
the positions through the real Polygon client against the local simulator, leased like any symbol among several
ingests; two detectors share the symbols by lease: the one owning SPY publishes the market_selloff exit once, the
other tails SPY's stream (no group) and its alerts carry the context an engine that saw everything computes."""

from __future__ import annotations

import asyncio
import time

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import ExitRecommendation, OrderFlowAlert, Quote, Trade, decode
from services.detector.engine import Engine
from services.detector.index_reader import IndexTail
from services.detector.rule_settings import RuleSettings
from services.detector.service import DetectorService
from services.ingest.polygon_rest_client import PolygonRest
from services.ingest.replay import replay
from services.ingest.service import IngestService
from services.ingest.sources import read_events
from services.tools.scenarios import START_MS, write_scenario
from services.tools.simulator import PolygonSimulator
from shared.config import OrderFlowConfig
from shared.market_symbols import index_symbols, with_index_symbols
from shared.ownership import preferred
from tests.integration.test_live_ingest import KEY, settings, timeline
from tests.support.events import BID, MS, T0, D, Feed, S
from tests.support.ingest_service import RunningIngest
from tests.support.streams import market_stream_events
from tests.support.waiting import wait_for_async

pytestmark = pytest.mark.redis


def test_the_index_symbols_are_the_market_symbols_and_the_positions_sector_etfs_while_any_is_open():
    config = OrderFlowConfig(market_symbols=("SPY", "QQQ"), sector_etfs={"AAPL": "XLK", "BAC": "XLF"})
    assert index_symbols(config, ["AAPL", "MSFT"]) == ["QQQ", "SPY", "XLK"]
    assert index_symbols(config, []) == []
    assert with_index_symbols(config, ["MSFT", "AAPL", "MSFT"]) == ["MSFT", "AAPL", "QQQ", "SPY", "XLK"]
    assert with_index_symbols(config, ["SPY"]) == ["SPY", "QQQ"]  # a position in the index itself: listed once
    assert index_symbols(OrderFlowConfig(market_symbols=()), ["AAPL"]) == []  # off


# --- ingest ----------------------------------------------------------------------------
@pytest.fixture
async def simulator():
    simulator = await PolygonSimulator(timeline(["AAA", "SPY", "XLK"]), api_key=KEY, speed=10).start()
    yield simulator
    await simulator.stop()


async def _trades(bus: Bus, symbol: str) -> list[Trade]:
    return [event for event in await market_stream_events(bus, symbol) if isinstance(event, Trade)]


async def test_ingest_subscribes_spy_and_the_sector_etf_beside_a_position(simulator, redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        registry = PositionRegistry(bus)
        config = settings(
            simulator, key_prefix, market_symbols=("SPY",), sector_etfs={"AAA": "XLK"}, polygon_client="massive"
        )
        service = IngestService(config, bus, api_key=KEY, rest=PolygonRest(KEY, f"http://{simulator.feed}"))
        async with RunningIngest(service):
            await service.follower.reconcile()
            assert service.symbols == []  # no position: no index either
            await registry.open("AAA", quantity=100, entry_price="50.00")

            async def all_three() -> bool:
                return all([len(await _trades(bus, symbol)) >= 5 for symbol in ("AAA", "SPY", "XLK")])

            await wait_for_async(all_three, what="trades of the position, SPY and its sector ETF")
            assert service.symbols == ["AAA", "SPY", "XLK"]
            spy = await _trades(bus, "SPY")
            assert all(trade.symbol == "SPY" for trade in spy) and len(spy) >= 5
            await registry.close("AAA")
            await wait_for_async(lambda: service.symbols == [], what="every subscription ended with the position")
            await asyncio.sleep(1.0)
            before = await bus.client.xlen(bus.keys.market("SPY"))
            await asyncio.sleep(1.5)
            assert await bus.client.xlen(bus.keys.market("SPY")) == before  # SPY unsubscribed too
            assert service.stats.reconnects == 0


async def test_two_ingests_lease_the_market_symbol_like_a_position(redis_url, key_prefix):
    """Exactly one of two ingests subscribes each of the positions and SPY (their leases), none both."""
    config = OrderFlowConfig(key_prefix=key_prefix, ingest_lease_seconds=3.0)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        registry = PositionRegistry(bus)
        for symbol in ("AAA", "BBB", "CCC", "DDD"):
            await registry.open(symbol, quantity=100, entry_price="50.00")
        first = IngestService(config, bus, api_key="unused", name="ingest-one")
        second = IngestService(config, bus, api_key="unused", name="ingest-two")
        for _round in range(3):
            await first.follower.reconcile()
            await second.follower.reconcile()
        owned = set(first.symbols) | set(second.symbols)
        assert owned == {"AAA", "BBB", "CCC", "DDD", "SPY"} and not set(first.symbols) & set(second.symbols)
        members = ["ingest-one", "ingest-two"]
        holder = first if preferred("SPY", members) == "ingest-one" else second
        assert "SPY" in holder.symbols  # the preferred one (rendezvous), as for any symbol
        for service in (first, second):
            assert service.ownership is not None
            await service.ownership.leave()


# --- detectors -------------------------------------------------------------------------
def spy_selloff(start: int, seconds: int = 300) -> list[Quote | Trade]:
    """SPY falling 100 bps in ``seconds`` s from $500.00: a quote each second 10 bps wide of a cent, and 1,000
    shares sold at the bid 200 ms into it."""
    feed = Feed("SPY")
    events: list[Quote | Trade] = []
    for second in range(seconds + 1):
        bid = 500 * D - (5 * D * second) // seconds
        ts = start + second * S
        events.append(feed.quote(ts, bid=bid, ask=bid + D // 100, bid_size=5_000, ask_size=5_000))
        events.append(feed.trade(ts + 200 * MS, bid, 1_000, side="sell"))
    return events


def stock_large_seller(symbol: str, at: int) -> list[Quote | Trade]:
    """``symbol`` quoted $50.00 × $50.01 from ``at`` - 60 s, then one 12,000-share sell at the bid at ``at``."""
    feed = Feed(symbol)
    events: list[Quote | Trade] = [feed.quote(at - 60 * S + second * S) for second in range(60)]
    return [*events, feed.trade(at, BID, 12_000), feed.quote(at + S)]


def names_apart(index: str, stock: str) -> tuple[str, str]:
    """Two detector names such that the first is preferred for ``index`` and the second for ``stock``."""
    for number in range(100):
        members = [f"detector-{number}a", f"detector-{number}b"]
        if preferred(index, members) != preferred(stock, members):
            return preferred(index, members), preferred(stock, members)
    raise AssertionError("no pair of names splits the symbols")


async def _outputs(bus: Bus) -> tuple[list[OrderFlowAlert], list[ExitRecommendation]]:
    alerts = [decode(entry.payload) for entry in await bus.read_range(bus.keys.alerts)]
    exits = [decode(entry.payload) for entry in await bus.read_range(bus.keys.exits)]
    return alerts, exits  # type: ignore[return-value]


async def test_two_detectors_one_owns_spy_the_other_tails_it_for_its_alerts_context(redis_url, key_prefix):
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute", detector_lease_seconds=2.0)
    index_owner, stock_owner = names_apart("SPY", "AAA")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        first = DetectorService(config, bus, consumer=index_owner)
        second = DetectorService(config, bus, consumer=stock_owner)
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        running = [asyncio.ensure_future(first.run(stop_first)), asyncio.ensure_future(second.run(stop_second))]
        try:

            def settled() -> bool:
                return sorted(first.group_consumer.streams.values()) == ["SPY"] and sorted(
                    second.group_consumer.streams.values()
                ) == ["AAA"]

            await wait_for_async(settled, what="SPY leased to one detector, AAA to the other")
            assert first.index_tail.tailed == [] and second.index_tail.tailed == ["SPY"]  # never fed twice

            spy = spy_selloff(T0)
            await bus.publish_market_events([(bus.keys.market("SPY"), event) for event in spy])
            await wait_for_async(lambda: second.index_tail.observed == len(spy), what="SPY tailed by the other")
            stock = stock_large_seller("AAA", T0 + 300 * S + 500 * MS)
            await bus.publish_market_events([(bus.keys.market("AAA"), event) for event in stock])

            async def published() -> bool:
                alerts, exits = await _outputs(bus)
                return any(alert.symbol == "AAA" for alert in alerts) and any(
                    exit.trigger == "market_selloff" for exit in exits
                )

            await wait_for_async(published, what="the stock's alert and SPY's market exit")
            await asyncio.sleep(1.5)  # anything published twice would be there now
            alerts, exits = await _outputs(bus)
            selloffs = [alert for alert in alerts if alert.alert_type == "market_selloff"]
            market_exits = [exit for exit in exits if exit.trigger == "market_selloff"]
            assert len(selloffs) == 1 and selloffs[0].symbol == "SPY" and selloffs[0].source == "index"
            assert len(market_exits) == 1 and market_exits[0].scope == "market"
            assert market_exits[0].symbols == ("AAA",)  # the open positions, not the index
            (seller,) = [alert for alert in alerts if alert.symbol == "AAA"]
            assert seller.context is not None and seller.context.index == "SPY"
            assert seller.context.label != "unknown" and seller.context.index_return_bps < -90

            # the context computed from the tail is the one an engine that ran everything computes
            engine = Engine(RuleSettings.from_config(config), config=config)
            engine.set_open_positions(["AAA"])
            produced = [output for event in [*spy, *stock] for output in engine.process(event)]
            (expected,) = [o for o in produced if isinstance(o, OrderFlowAlert) and o.symbol == "AAA"]
            assert seller.id == expected.id and seller.context == expected.context

            # the owner stops: the other takes SPY over, stops tailing it and reads it through the group
            stop_first.set()
            await asyncio.wait_for(running[0], timeout=10)

            def taken_over() -> bool:
                return sorted(second.group_consumer.streams.values()) == ["AAA", "SPY"]

            await wait_for_async(taken_over, what="SPY taken over by the remaining detector")
            assert second.index_tail.tailed == []
            await asyncio.sleep(1.0)
            _alerts, exits = await _outputs(bus)
            assert len([exit for exit in exits if exit.trigger == "market_selloff"]) == 1  # not published again
        finally:
            stop_first.set()
            stop_second.set()
            await asyncio.gather(*running, return_exceptions=True)


async def test_a_silent_index_is_reported_once_and_its_return_too(redis_url, key_prefix):
    """SPY's stream silent for context_stale_seconds while the detector's own streams go on: reported (the market
    is open, only the index is silent); a quiet market (nothing anywhere) is not; an entry ends it."""
    config = OrderFlowConfig(key_prefix=key_prefix, context_stale_seconds=0.5)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        engine = Engine(RuleSettings.from_config(config), config=config)
        tail = IndexTail(config, bus, engine)
        spy = spy_selloff(T0, seconds=10)
        await bus.publish_market_events([(bus.keys.market("SPY"), event) for event in spy])
        await tail.follow(["SPY"])
        assert tail.observed == len(spy)  # warm: the last context window of the stream
        started = time.monotonic()
        await asyncio.sleep(0.6)
        assert tail.check_silence(None) == []  # nothing arrives anywhere: a closed market
        assert tail.check_silence(started) == []  # the own streams' last batch is older than the silence
        assert tail.check_silence(time.monotonic()) == ["SPY"]
        assert tail.check_silence(time.monotonic()) == ["SPY"] and tail.silent == {bus.keys.market("SPY")}
        more = spy_selloff(T0 + 11 * S, seconds=1)
        await bus.publish_market_events([(bus.keys.market("SPY"), event) for event in more])
        assert await tail.poll() == len(more) and tail.check_silence(time.monotonic()) == []
        assert await tail.poll() == 0  # each entry once
        await tail.follow([])
        assert tail.tailed == [] and await tail.poll() == 0


# --- replay of a stock and its index, end to end ----------------------------------------
async def test_a_replayed_index_selloff_beside_a_quiet_position_gives_one_market_exit(tmp_path, redis_url, key_prefix):
    """``orderflow replay`` of a quiet stock's capture and SPY's index-selloff capture, interleaved by event time
    (the capture reader merges the files), then a detector following the registry: one market_selloff of SPY and one
    market-scope exit naming the position; the quiet stock alerts nothing and its entries read SPY's context."""
    stock, index = tmp_path / "AAA.capture", tmp_path / "SPY.capture"
    write_scenario("quiet", stock, symbol="AAA")
    write_scenario("index-selloff", index, symbol="SPY")
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        summary = await replay(bus, read_events("capture", [stock, index]))
        assert summary.symbols == {"AAA", "SPY"}
        published = [entry.entry_id for key in ("AAA", "SPY") for entry in await bus.read_range(bus.keys.market(key))]
        assert len(published) > 100
        detector = DetectorService(config, bus, consumer="one")
        await detector.refresh()
        await detector.drain()
        assert sorted(detector.group_consumer.streams.values()) == ["AAA", "SPY"]
        alerts, exits = await _outputs(bus)
        assert [(alert.symbol, alert.alert_type, alert.source) for alert in alerts] == [
            ("SPY", "market_selloff", "index")
        ]
        assert [(exit.symbol, exit.trigger, exit.scope, exit.symbols) for exit in exits] == [
            ("SPY", "market_selloff", "market", ("AAA",))
        ]
        fall = alerts[0].context
        assert fall is not None and fall.index == "SPY" and fall.index_return_bps <= -30
        assert START_MS * 1_000_000 + 600 * S <= alerts[0].ts_event <= START_MS * 1_000_000 + 900 * S
