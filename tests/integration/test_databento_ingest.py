"""Live ingest from Databento through the real ``databento.Live`` client against the local gateway
(:class:`services.tools.databento_gateway.DatabentoGateway`, in-process on the test's loop), publishing to a real
Redis: the positions' books and trades on their streams, subscriptions following the registry, drops, malformed
records, a wrong key, and the key in no output."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY, generate_latest

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import BookUpdate, FeedStatus, OrderUpdate, Trade
from services.ingest.live_feed import FeedAuthError
from services.ingest.service import IngestService
from services.tools.databento_gateway import DatabentoGateway
from services.tools.databento_gateway_market import Market, load_market
from shared.config import OrderFlowConfig
from tests.support.cli import ORDERFLOW, orderflow_environment
from tests.support.ingest_service import RunningIngest
from tests.support.paths import REPO, shared_data
from tests.support.streams import market_stream_events
from tests.support.waiting import wait_for_async

pytestmark = pytest.mark.redis
KEY = "db-ORDERFLOWtest0123456789SECRT"
SPEED = 60  # market seconds per wall second: records of both symbols every few milliseconds


@pytest.fixture(scope="module")
def market() -> Market:
    """AMZN's and AAPL's level-1 LOBSTER days as MBP-10 and MBO records (made once for the module)."""
    days = [shared_data("lobster", f"LOBSTER_SampleFile_{symbol}_2012-06-21_1.zip") for symbol in ("AMZN", "AAPL")]
    return load_market(days, lobster_schemas=frozenset({"mbp-10", "mbo"}))


@pytest.fixture
async def gateway(market):
    gateway = await DatabentoGateway(market, api_key=KEY, speed=SPEED).start()
    yield gateway
    await gateway.stop()


def settings(gateway: DatabentoGateway, prefix: str, **overrides) -> OrderFlowConfig:
    """No market symbols unless a test asks (the gateway simulator serves the positions' symbols only)."""
    return OrderFlowConfig(
        key_prefix=prefix,
        data_source="databento",
        databento_gateway=f"127.0.0.1:{gateway.port}",
        **{"market_symbols": (), **overrides},
    )


async def events_of(bus: Bus, symbol: str, kind: type) -> list:
    return [event for event in await market_stream_events(bus, symbol) if isinstance(event, kind)]


async def has_trades(bus: Bus, *symbols: str) -> bool:
    for symbol in symbols:
        if not await events_of(bus, symbol, Trade):
            return False
    return True


async def test_the_positions_books_and_trades_with_their_sides_follow_the_registry(gateway, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    registry = PositionRegistry(bus)
    await registry.open("AMZN", quantity=100, entry_price="220.00")
    service = IngestService(settings(gateway, key_prefix), bus, api_key=KEY)
    async with RunningIngest(service):
        await wait_for_async(lambda: has_trades(bus, "AMZN"), timeout=20, what="AMZN's trades")
        await asyncio.sleep(1.0)
        assert await bus.client.exists(bus.keys.market("AAPL")) == 0  # not a position: not subscribed

        opened = time.monotonic()
        await registry.open("AAPL", quantity=10, entry_price="580.00")
        await wait_for_async(lambda: has_trades(bus, "AAPL"), timeout=20, what="the new position's trades")
        assert time.monotonic() - opened < 5.0
        assert service.stats.reconnects == 0  # subscribed on the open session

        await registry.close("AAPL")
        await asyncio.sleep(1.5)
        before = await bus.client.xlen(bus.keys.market("AAPL"))
        dropped = service.stats.rejects.by_code["unsubscribed_symbol"]
        await asyncio.sleep(2.0)
        assert await bus.client.xlen(bus.keys.market("AAPL")) == before  # its records go on arriving: dropped
        assert service.stats.rejects.by_code["unsubscribed_symbol"] > dropped
        assert service.symbols == ["AMZN"] and service.stats.reconnects == 0
    trades = await events_of(bus, "AMZN", Trade)
    books = await events_of(bus, "AMZN", BookUpdate)
    last = (await events_of(bus, "AMZN", FeedStatus))[-1]
    assert (last.state, last.code, last.detail) == ("disconnected", "stop", "ingest stopped; not reconnecting")
    assert len(trades) > 20 and len(books) > len(trades)
    assert all(t.symbol == "AMZN" and t.side in ("buy", "sell") and t.side_source == "feed" for t in trades)
    assert {t.side for t in trades} == {"buy", "sell"}
    trade = trades[-1]
    # the paced gateway stamps a record with when it is due and may write it a little (< 5 ms) before
    assert -5e6 <= trade.ts_recv - trade.ts_event < 2e9 and trade.ts_recv == trade.ts_arrival
    assert abs(trade.ts_recv - time.time_ns()) < 30e9  # our receive time
    book = books[-1]
    assert 1 <= len(book.bids) <= 10 and 1 <= len(book.asks) <= 10 and book.bids[0][0] < book.asks[0][0]
    assert service.stats.trades >= len(trades) and service.stats.trades_without_side == 0
    await bus.close()


async def test_mbo_books_are_rebuilt_order_by_order(gateway, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    service = IngestService(settings(gateway, key_prefix, databento_schema="mbo"), bus, api_key=KEY)
    async with RunningIngest(service):
        await wait_for_async(lambda: has_trades(bus, "AMZN"), timeout=20, what="AMZN's trades from MBO")
        await asyncio.sleep(1.0)
    books = await events_of(bus, "AMZN", BookUpdate)
    trades = await events_of(bus, "AMZN", Trade)
    assert books and all(t.side_source == "feed" for t in trades)
    # joined mid-day without a snapshot: the book holds the orders added since, best levels first
    assert all(
        list(book.bids) == sorted(book.bids, reverse=True) and list(book.asks) == sorted(book.asks) for book in books
    )
    # the offers travel order by order beside the books: adds, fills and cancels, each with the shares left
    orders = await events_of(bus, "AMZN", OrderUpdate)
    actions = {order.action for order in orders}
    assert {"add", "fill", "cancel"} <= actions and all(order.venue == "XNAS" for order in orders)
    added = {order.order_id: order.size for order in orders if order.action == "add"}
    fills = [order for order in orders if order.action == "fill" and order.order_id in added]
    assert fills and all(fill.remaining < added[fill.order_id] for fill in fills)
    await bus.close()


@pytest.mark.parametrize("kind", ["reset", "close", "error"])
async def test_a_dropped_connection_is_a_gap_then_the_flow_resumes(gateway, redis_url, key_prefix, kind):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    service = IngestService(settings(gateway, key_prefix), bus, api_key=KEY, backoff_cap_seconds=0.5)
    async with RunningIngest(service):
        await wait_for_async(lambda: has_trades(bus, "AMZN"), timeout=20, what="first trades")
        assert gateway.drop_connections(kind) == 1
        await wait_for_async(lambda: gap_published(bus), timeout=20, what="a gap")
        resumed = len(await events_of(bus, "AMZN", Trade))
        await wait_for_async(lambda: grew(bus, "AMZN", resumed), timeout=20, what="trades after the gap")
    events = await market_stream_events(bus, "AMZN")
    statuses = [e for e in events if isinstance(e, FeedStatus)]
    disconnected = next(s for s in statuses if s.state == "disconnected")
    gap = next(s for s in statuses if s.state == "gap")
    assert (disconnected.source, gap.source, gap.code, gap.symbols) == (
        "databento",
        "databento",
        "socket_disconnect",
        ("AMZN",),
    )
    assert gap.gap_start_ns < gap.gap_end_ns
    after = [e for e in events[events.index(gap) :] if isinstance(e, Trade)]
    assert after and after[0].ts_event > gap.gap_start_ns - 5e9
    assert service.stats.reconnects == 1 and service.stats.gaps == 1
    await bus.close()


async def gap_published(bus: Bus) -> bool:
    return any(s.state == "gap" for s in await events_of(bus, "AMZN", FeedStatus))


async def grew(bus: Bus, symbol: str, before: int) -> bool:
    return len(await events_of(bus, symbol, Trade)) > before + 5


async def test_malformed_records_are_counted_and_survived(gateway, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    service = IngestService(settings(gateway, key_prefix), bus, api_key=KEY, backoff_cap_seconds=0.5)
    async with RunningIngest(service):
        await wait_for_async(lambda: has_trades(bus, "AMZN"), timeout=20, what="first trades")
        assert gateway.inject("bad_side") == 1
        assert gateway.inject("undefined_price") == 1
        await wait_for_async(lambda: rejected(service, "unknown_side", "undefined_price"), timeout=10, what="rejects")
        assert service.stats.reconnects == 0
        before = len(await events_of(bus, "AMZN", Trade))
        await wait_for_async(lambda: grew(bus, "AMZN", before), timeout=20, what="flow after the bad records")
        # a record the client cannot decode: it closes the session itself, quietly; the feed reconnects
        assert gateway.inject("unknown_record_type") == 1
        await wait_for_async(lambda: reconnected(service), timeout=20, what="a reconnect after an undecodable record")
        before = len(await events_of(bus, "AMZN", Trade))
        await wait_for_async(lambda: grew(bus, "AMZN", before), timeout=20, what="flow after the reconnect")
    trades = await events_of(bus, "AMZN", Trade)
    assert all(t.side in ("buy", "sell") and t.price > 0 for t in trades)
    await bus.close()


async def rejected(service: IngestService, *codes: str) -> bool:
    return all(service.stats.rejects.by_code[code] >= 1 for code in codes)


async def reconnected(service: IngestService) -> bool:
    return service.stats.reconnects >= 1 and service.feed.connected


async def test_a_silent_feed_trips_the_watchdog_though_heartbeats_arrive(gateway, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    config = settings(gateway, key_prefix, watchdog_seconds=3.0)
    service = IngestService(config, bus, api_key=KEY, market_hours_only=False, backoff_cap_seconds=0.5)
    async with RunningIngest(service):
        await wait_for_async(lambda: has_trades(bus, "AMZN"), timeout=20, what="first trades")
        gateway.paused = True
        await wait_for_async(lambda: silenced(service), timeout=15, what="the watchdog")
        gateway.paused = False
        await wait_for_async(lambda: reconnected(service), timeout=15, what="a reconnect")
    assert "watchdog_silence" in [s.state for s in await events_of(bus, "AMZN", FeedStatus)]
    await bus.close()


async def silenced(service: IngestService) -> bool:
    return "watchdog_silence" in service.stats.statuses


async def test_a_wrong_key_stops_with_a_clear_error_and_no_retry(gateway, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    service = IngestService(settings(gateway, key_prefix), bus, api_key="db-WRONGwrongwrong0123456789ABCDE")
    started = time.monotonic()
    with pytest.raises(FeedAuthError, match="Databento rejected the API key"):
        await asyncio.wait_for(service.run(asyncio.Event()), timeout=20)
    assert time.monotonic() - started < 10 and service.stats.reconnects == 0
    await bus.close()


async def test_the_key_appears_in_no_log_or_metric(gateway, redis_url, key_prefix, tmp_path):
    log_dir = tmp_path / "logs"
    logs.configure_logging(service="ingest", log_dir=log_dir, level="DEBUG", secrets=[KEY], console=False)
    try:
        bus = await Bus.connect(redis_url, prefix=key_prefix)
        await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
        service = IngestService(settings(gateway, key_prefix), bus, api_key=KEY, backoff_cap_seconds=0.5)
        async with RunningIngest(service):
            await wait_for_async(lambda: has_trades(bus, "AMZN"), timeout=20, what="first trades")
            gateway.drop_connections("error")
            await wait_for_async(lambda: gap_published(bus), timeout=20, what="a gap")
        await bus.close()
    finally:
        import logging

        logging.getLogger().handlers.clear()
    written = "".join(path.read_text() for path in log_dir.glob("*.jsonl"))
    assert "order_flow.feed_gap" in written and "order_flow.feed_disconnected" in written
    assert KEY not in written and KEY[-5:] not in written  # not even the bucket id the client logs at debug
    assert KEY not in generate_latest(REGISTRY).decode()


async def run_ingest(environment: dict[str, str], *arguments: str, timeout: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *ORDERFLOW,
        "ingest",
        *arguments,
        cwd=REPO,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_cli_wrong_key_exits_5_with_one_line_and_never_shows_it(gateway, redis_url, key_prefix, tmp_path):
    wrong = "db-WRONGkeyNEVERshown0123456789"
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    await bus.close()
    environment = orderflow_environment(
        REDIS_URL=redis_url,
        ORDER_FLOW_KEY_PREFIX=key_prefix,
        ORDER_FLOW_DATA_SOURCE="databento",
        DATABENTO_API_KEY=wrong,
        ORDER_FLOW_DATABENTO_GATEWAY=f"127.0.0.1:{gateway.port}",
        ORDER_FLOW_LOG_DIR=str(tmp_path),
        ORDER_FLOW_METRICS_PORT="0",
    )
    code, output = await run_ingest(environment, "--record", str(tmp_path / "captures" / "live"))
    assert code == 5, output
    assert "--record records Polygon frames: with ORDER_FLOW_DATA_SOURCE=databento nothing is recorded" in output
    assert not (tmp_path / "captures").exists()  # compose passes --record whatever the source: said, not fatal
    lines = [line for line in output.splitlines() if "authentication failed" in line]
    assert lines == [
        "authentication failed: Databento rejected the API key (Authentication failed.): check DATABENTO_API_KEY"
    ]
    written = "".join(p.read_text() for p in tmp_path.glob("*.jsonl"))
    assert "order_flow.feed_auth_failed" in written and "order_flow.record_ignored" in written
    assert wrong not in output and wrong not in written


async def test_cli_without_a_key_exits_2(tmp_path):
    environment = orderflow_environment(ORDER_FLOW_DATA_SOURCE="databento", ORDER_FLOW_LOG_DIR=str(tmp_path))
    environment.pop("DATABENTO_API_KEY", None)
    code, output = await run_ingest(environment)
    assert code == 2 and "DATABENTO_API_KEY is not set" in output
