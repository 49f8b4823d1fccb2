"""A Databento live gap backfilled through the historical API: the real ``databento.Live`` client against the local
gateway, ingest's own ``timeseries.get_range`` adapter against the local stand-in of the historical endpoint
(:mod:`services.tools.databento_history_server`, answering from the market the gateway plays), into a real Redis."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging

import pytest
from prometheus_client import REGISTRY, generate_latest

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import FeedStatus, Trade
from services.ingest.backfill import BACKFILL_OVERLAP_NS
from services.ingest.databento_history import DatabentoHistorical, HistoricalError, HistoricalUnavailableError
from services.ingest.service import IngestService
from services.tools.databento_gateway import DatabentoGateway
from services.tools.databento_gateway_market import Market, load_market
from services.tools.databento_history_server import HistoricalServer, HistoricalStandIn
from shared.config import OrderFlowConfig
from tests.support.ingest_service import RunningIngest
from tests.support.paths import shared_data
from tests.support.streams import market_stream_events
from tests.support.waiting import wait_for_async

pytestmark = pytest.mark.redis
KEY = "db-BACKFILLtest0123456789SECRT"
SPEED = 60  # market seconds per wall second: AMZN trades every few tens of milliseconds


@pytest.fixture(scope="module")
def market() -> Market:
    """AMZN's level-1 LOBSTER day as MBP-10 records (the live schema; the stand-in serves their trades)."""
    return load_market([shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")])


@pytest.fixture
async def gateway(market):
    gateway = await DatabentoGateway(market, api_key=KEY, speed=SPEED).start()
    yield gateway
    await gateway.stop()


@pytest.fixture
def history_server(gateway):
    with HistoricalServer(HistoricalStandIn(gateway, api_key=KEY)) as server:
        yield server


def history(server: HistoricalServer, key: str = KEY, **options) -> DatabentoHistorical:
    defaults = {"backoff_base": 0.05, "backoff_cap": 0.2, "read_timeout": 5.0}
    return DatabentoHistorical(key, server.url, **{**defaults, **options})


def settings(gateway: DatabentoGateway, prefix: str) -> OrderFlowConfig:
    return OrderFlowConfig(
        key_prefix=prefix,
        data_source="databento",
        databento_gateway=f"127.0.0.1:{gateway.port}",
        market_symbols=(),  # the gateway simulator serves the positions' symbols only
    )


async def start_and_drop(bus: Bus, gateway: DatabentoGateway, service: IngestService) -> None:
    await wait_for_async(lambda: trades_after(bus, 0), timeout=20, what="AMZN's first trades")
    await asyncio.sleep(1.5)  # live longer than the backfill's overlap before the gap: all of it was seen live
    assert gateway.drop_connections("reset") == 1


async def statuses(bus: Bus) -> list[FeedStatus]:
    return [e for e in await market_stream_events(bus, "AMZN") if isinstance(e, FeedStatus)]


async def status_with(bus: Bus, code: str) -> bool:
    return any(s.code == code for s in await statuses(bus))


async def trades_after(bus: Bus, count: int) -> bool:
    return sum(isinstance(e, Trade) for e in await market_stream_events(bus, "AMZN")) > count


async def test_a_gap_is_backfilled_once_without_duplicates_and_says_so(gateway, history_server, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    client = history(history_server)
    service = IngestService(settings(gateway, key_prefix), bus, api_key=KEY, history=client, backoff_cap_seconds=1.0)
    async with RunningIngest(service):
        await start_and_drop(bus, gateway, service)
        await wait_for_async(lambda: status_with(bus, "backfilled"), timeout=20, what="the backfilled status")
        after = sum(isinstance(e, Trade) for e in await market_stream_events(bus, "AMZN"))
        await wait_for_async(lambda: trades_after(bus, after + 5), timeout=20, what="live trades after the backfill")
    events = await market_stream_events(bus, "AMZN")
    gap = next(e for e in events if isinstance(e, FeedStatus) and e.state == "gap")
    done = next(e for e in events if isinstance(e, FeedStatus) and e.code == "backfilled")
    assert (gap.code, gap.source, done.state, done.symbols) == (
        "socket_disconnect",
        "databento",
        "connected",
        ("AMZN",),
    )
    assert (done.gap_start_ns, done.gap_end_ns) == (gap.gap_start_ns, gap.gap_end_ns)
    between = events[events.index(gap) + 1 : events.index(done)]
    backfilled = [e for e in events if isinstance(e, Trade) and e.backfilled]
    # the reconnect took 0.1-1 s: at 60x some 3-30 trades played meanwhile, published once, between the two statuses
    assert backfilled and all(e in between for e in backfilled) and len(backfilled) == service.stats.backfilled
    assert done.detail == f"gap backfilled from Databento's historical API: {len(backfilled)} trades"
    low = gap.gap_start_ns - BACKFILL_OVERLAP_NS
    assert all(low <= t.ts_event <= gap.gap_end_ns and t.side_source == "feed" for t in backfilled)
    trades = [e for e in events if isinstance(e, Trade)]
    identities = [(t.exchange, t.trade_id) for t in trades]
    assert len(identities) == len(set(identities))  # nothing live had published came twice
    live = [t for t in trades if not t.backfilled]
    last_live_before = max(t.sequence for t in live if events.index(t) < events.index(gap))
    first_live_after = min(t.sequence for t in live if events.index(t) > events.index(done))
    played = [entry.record.sequence for entry in gateway.market.records if entry.schema == "trades"]
    # the backfill is exactly the prints the drop hid: every trade of the day between the two live runs, once
    assert sorted(t.sequence for t in backfilled) == [s for s in played if last_live_before < s < first_live_after]
    asked = history_server.stand_in.requests[-1][1]
    assert (asked["schema"], asked["symbols"], asked["dataset"]) == ("trades", "AMZN", "XNAS.ITCH")
    assert int(asked["start"]) == low and int(asked["end"]) == gap.gap_end_ns + 1
    await bus.close()


async def test_a_429_is_retried_after_its_retry_after(gateway, history_server, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    stand_in = history_server.stand_in
    stand_in.fail_next, stand_in.retry_after_seconds = [429, 429], 0.6
    client = history(history_server)
    service = IngestService(settings(gateway, key_prefix), bus, api_key=KEY, history=client, backoff_cap_seconds=1.0)
    async with RunningIngest(service):
        await start_and_drop(bus, gateway, service)
        await wait_for_async(lambda: status_with(bus, "backfilled"), timeout=20, what="the backfill after two 429s")
    times = [moment for moment, _ in stand_in.requests]
    assert len(times) == 3 and client.retries_done == 2
    # our own backoff here is at most 0.2 s: the waits are the server's Retry-After
    assert all(later - earlier >= 0.6 for earlier, later in itertools.pairwise(times))
    assert service.stats.backfilled > 0
    await bus.close()


async def test_the_historical_api_down_leaves_the_gap_reported_and_ingest_running(
    gateway, history_server, redis_url, key_prefix, tmp_path
):
    log_dir = tmp_path / "logs"
    logs.configure_logging(service="ingest", log_dir=log_dir, level="DEBUG", secrets=[], console=False)
    try:
        bus = await Bus.connect(redis_url, prefix=key_prefix)
        await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
        history_server.stand_in.down = True
        client = history(history_server, attempts=3)
        config = settings(gateway, key_prefix)
        service = IngestService(config, bus, api_key=KEY, history=client, backoff_cap_seconds=1.0)
        async with RunningIngest(service):
            await start_and_drop(bus, gateway, service)
            await wait_for_async(lambda: status_with(bus, "backfill_failed"), timeout=20, what="the failed backfill")
            count = sum(isinstance(e, Trade) for e in await market_stream_events(bus, "AMZN"))
            await wait_for_async(lambda: trades_after(bus, count + 5), timeout=20, what="live trades going on")
        failed = next(s for s in await statuses(bus) if s.code == "backfill_failed")
        assert failed.state == "connected" and "failed 3 times; last: HTTP 503 gateway_unavailable" in failed.detail
        assert service.stats.backfilled == 0 and client.requests_made == 3
        assert not any(isinstance(e, Trade) and e.backfilled for e in await market_stream_events(bus, "AMZN"))
        await bus.close()
    finally:
        logging.getLogger().handlers.clear()
    written = "".join(path.read_text() for path in log_dir.glob("*.jsonl"))
    assert '"code": "databento_historical_unavailable"' in written or "databento_historical_unavailable" in written
    assert "order_flow.backfill_failed" in written and "order_flow.databento_historical_retry" in written
    # no redaction configured (secrets=[]): the key must simply never have been written, nor its basic-auth form
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    assert KEY not in written and KEY[-5:] not in written and basic not in written
    assert KEY not in generate_latest(REGISTRY).decode()


async def test_errors_name_databentos_message_and_never_the_key(gateway, history_server):
    wrong = "db-WRONGwrongWRONG0123456789ABC"
    with pytest.raises(HistoricalError) as refused:
        list(history(history_server, key=wrong).trades(["AMZN"], 1, 2))
    assert refused.value.status == 401 and refused.value.code == "databento_historical_error"
    assert "401 auth_authentication_failed: Authentication failed." in str(refused.value)
    assert wrong not in str(refused.value) and wrong not in repr(refused.value)
    with pytest.raises(HistoricalError, match="422 schema_not_supported"):
        client = history(history_server)
        list(client.get_range({"dataset": "XNAS.ITCH", "symbols": "AMZN", "schema": "mbo", "start": "1", "end": "2"}))
    history_server.stand_in.delay_seconds = 1.0
    with pytest.raises(HistoricalUnavailableError, match="ReadTimeoutError"):
        list(history(history_server, read_timeout=0.2, attempts=2).trades(["AMZN"], 1, 2))


async def test_the_stand_in_answers_the_played_trades_with_their_live_times(gateway, history_server):
    await asyncio.sleep(1.5)  # 90 market seconds played
    client = history(history_server)
    now = gateway.due_ns(0, gateway.market.records[0].ts_index) + 1_500_000_000
    batches = await asyncio.to_thread(lambda: list(client.trades(["AMZN"], 0, now)))
    trades = [trade for batch in batches for trade in batch.trades]
    assert not any(batch.rejects for batch in batches)
    played = [entry for send, entry in history_server.stand_in.played(0, now)]
    assert len(trades) == len(played) > 10
    assert [t.sequence for t in trades] == [entry.record.sequence for entry in played]
    assert all(t.backfilled and t.symbol == "AMZN" and t.side in ("buy", "sell") for t in trades)
    origin = gateway.due_ns(0, gateway.market.records[0].ts_index)
    assert origin <= trades[0].ts_event < trades[-1].ts_event < now  # the clock's times, not 2012's


async def test_the_command_backfills_through_the_historical_url_setting(
    gateway, history_server, redis_url, key_prefix, tmp_path
):
    """`orderflow ingest` with ORDER_FLOW_DATA_SOURCE=databento, a drop, and the gap's trades from the stand-in named by
    ORDER_FLOW_DATABENTO_HISTORICAL_URL: the command wires the backfill as the service tests do."""
    import signal

    from tests.support.cli import redis_environment, start_orderflow

    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AMZN", quantity=100, entry_price="220.00")
    environment = redis_environment(
        redis_url,
        key_prefix,
        tmp_path,
        ORDER_FLOW_DATA_SOURCE="databento",
        DATABENTO_API_KEY=KEY,
        ORDER_FLOW_DATABENTO_GATEWAY=f"127.0.0.1:{gateway.port}",
        ORDER_FLOW_DATABENTO_HISTORICAL_URL=history_server.url,
        ORDER_FLOW_THRESHOLD_MODE="adaptive",
    )
    ingest = start_orderflow("ingest", env=environment)
    try:
        await wait_for_async(lambda: trades_after(bus, 0), timeout=30, what="AMZN's first trades")
        await asyncio.sleep(1.5)
        assert gateway.drop_connections("reset") == 1
        await wait_for_async(lambda: status_with(bus, "backfilled"), timeout=30, what="the backfilled status")
        ingest.send_signal(signal.SIGTERM)
        ingest.expect_exit(0, timeout=20)
    finally:
        ingest.stop_if_running()
    assert any(isinstance(e, Trade) and e.backfilled for e in await market_stream_events(bus, "AMZN"))
    await bus.close()
