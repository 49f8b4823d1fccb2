"""Live ingest through the real polygon-api-client against the local Polygon
simulator, publishing to a real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest
import redis
from prometheus_client import REGISTRY, generate_latest

from orderflow_client import logs
from orderflow_client.bus.connection import Bus
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import FeedStatus, Trade, decode
from services.ingest.live_feed import FeedAuthError
from services.ingest.polygon_rest_client import PolygonRest
from services.ingest.polygon_ws import parse_frame
from services.ingest.service import IngestService
from services.tools.scenarios import frames
from services.tools.simulator import PolygonSimulator
from services.tools.simulator_timeline import polygon_event
from shared.config import OrderFlowConfig
from tests.support.cli import ORDERFLOW, orderflow_environment, run_orderflow
from tests.support.ingest_service import RunningIngest
from tests.support.paths import REPO
from tests.support.streams import market_stream_events
from tests.support.waiting import wait_for_async

pytestmark = pytest.mark.redis
KEY = "pk_sim_SECRET_a81f"
CLIENTS = pytest.mark.parametrize("client", ["massive", "polygon-api-client"])
"""The live path through each Python client of Polygon/Massive (services/ingest/polygon_clients.py)."""


def timeline(symbols: list[str], minutes: float = 3.0) -> list[tuple[int, dict]]:
    events = []
    for symbol in symbols:
        for ts_recv, frame in frames("quiet", 7, symbol):
            for event in parse_frame(frame, ts_recv).events:
                if event.ts_event - 1_795_531_500_000_000_000 < minutes * 60e9:
                    events.append((event.ts_event, polygon_event(event)))
    return sorted(events, key=lambda pair: pair[0])


@pytest.fixture
async def simulator():
    simulator = await PolygonSimulator(timeline(["AAA", "BBB", "CCC"]), api_key=KEY, speed=10).start()
    yield simulator
    await simulator.stop()


def settings(simulator: PolygonSimulator, prefix: str, **overrides) -> OrderFlowConfig:
    """The simulator's feed; no market symbol unless given (``market_symbols=("SPY",)``): these tests, and the
    lease tests that share this, are about the positions' symbols (the index beside them:
    tests/integration/test_market_symbols_live.py)."""
    return OrderFlowConfig(
        **{
            "key_prefix": prefix,
            "polygon_feed": simulator.feed,
            "polygon_secure": False,
            "polygon_rest_url": f"http://{simulator.feed}",
            "market_symbols": (),
            **overrides,
        }
    )


async def stream(bus: Bus, symbol: str) -> list:
    return await market_stream_events(bus, symbol)


@CLIENTS
async def test_positions_drive_subscriptions_live(simulator, redis_url, key_prefix, client):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    registry = PositionRegistry(bus)
    await registry.open("AAA", quantity=100, entry_price="50.00")
    await registry.open("BBB", quantity=100, entry_price="50.00")
    service = IngestService(
        settings(simulator, key_prefix, polygon_client=client, market_symbols=("SPY",)),
        bus,
        api_key=KEY,
        rest=PolygonRest(KEY, f"http://{simulator.feed}", client=client),
    )
    async with RunningIngest(service):
        await wait_for_async(lambda: _has_trades(bus, "AAA", "BBB"), what="trades of both positions")
        await asyncio.sleep(1.5)
        trades = [e for e in await stream(bus, "AAA") if isinstance(e, Trade)]
        assert all(t.symbol == "AAA" for t in trades)
        classified = [t for t in trades if t.side in ("buy", "sell")]
        assert len(trades) > 20 and len(classified) >= 0.8 * len(trades)  # the first prints may precede any quote
        trade = classified[-1]
        assert trade.side_source in ("quote", "tick")
        assert 0 <= trade.ts_arrival - trade.ts_event < 2e9 and trade.ts_recv == trade.ts_arrival
        assert await bus.client.exists(bus.keys.market("CCC")) == 0  # not a position: not subscribed

        opened = time.monotonic()
        await registry.open("CCC", quantity=10, entry_price="50.00")
        await wait_for_async(lambda: _has_trades(bus, "CCC"), what="the third position's trades")
        assert time.monotonic() - opened < 3.0
        await registry.close("BBB")
        await asyncio.sleep(1.5)
        before = await bus.client.xlen(bus.keys.market("BBB"))
        await asyncio.sleep(1.5)
        assert await bus.client.xlen(bus.keys.market("BBB")) == before  # unsubscribed
        assert service.stats.reconnects == 0  # all on the open socket
        assert service.symbols == ["AAA", "CCC", "SPY"]  # SPY: the market symbol, while any position is open
    last = [e for e in await stream(bus, "AAA") if isinstance(e, FeedStatus)][-1]  # the stop says it is a stop
    assert (last.state, last.code, last.detail) == ("disconnected", "stop", "ingest stopped; not reconnecting")
    await bus.close()


async def _has_trades(bus: Bus, *symbols: str) -> bool:
    for symbol in symbols:
        if not any(isinstance(e, Trade) for e in await stream(bus, symbol)):
            return False
    return True


@CLIENTS
async def test_a_dropped_connection_is_a_gap_backfilled_without_duplicates(simulator, redis_url, key_prefix, client):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    rest = PolygonRest(KEY, f"http://{simulator.feed}", client=client, backoff_base=0.05, backoff_cap=0.3)
    config = settings(simulator, key_prefix, polygon_client=client, market_symbols=("SPY",))
    service = IngestService(config, bus, api_key=KEY, rest=rest, backoff_cap_seconds=1.0)
    async with RunningIngest(service):
        await wait_for_async(lambda: _has_trades(bus, "AAA"), what="first trades")
        simulator.rest.failures = 2  # the backfill meets two 429s first
        await simulator.drop_connections()
        await wait_for_async(lambda: _gap_published(bus), what="a gap")
        await wait_for_async(lambda: _count(service, "backfilled"), what="backfilled trades")
        await asyncio.sleep(1.0)
    events = await stream(bus, "AAA")
    gap = next(e for e in events if isinstance(e, FeedStatus) and e.state == "gap")
    assert gap.code == "socket_disconnect" and gap.gap_start_ns < gap.gap_end_ns and gap.symbols == ("AAA", "SPY")
    backfilled = [e for e in events if isinstance(e, Trade) and e.backfilled]
    assert backfilled and all(gap.gap_start_ns <= t.ts_event <= gap.gap_end_ns for t in backfilled)
    trades = [e for e in events if isinstance(e, Trade)]
    keys = [(t.exchange, t.trade_id) for t in trades]
    assert len(keys) == len(set(keys))  # no print twice on the stream
    position = events.index(gap)
    assert all(e.ts_event >= gap.gap_start_ns for e in events[position + 1 :] if isinstance(e, Trade))
    assert service.stats.reconnects >= 1 and rest.retries_done >= 2  # 429 → backoff honoured
    statuses = [decode(entry.payload) for entry in await bus.read_range(bus.keys.status)]
    assert any(s.state == "gap" for s in statuses)
    await bus.close()


async def _gap_published(bus: Bus) -> bool:
    return await bus.client.xlen(bus.keys.status) > 0


async def _count(service: IngestService, name: str) -> bool:
    return getattr(service.stats, name) > 0


async def test_malformed_frames_are_counted_and_survived(simulator, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    service = IngestService(settings(simulator, key_prefix), bus, api_key=KEY)
    async with RunningIngest(service):
        await wait_for_async(lambda: _has_trades(bus, "AAA"), what="first trades")
        await simulator.inject("this is not json")
        await simulator.inject('[{"ev":"T","sym":"AAA","p":"cheap","s":1,"t":1}]')
        await simulator.inject('[{"ev":"LULD","sym":"AAA"}]')
        before = await bus.client.xlen(bus.keys.market("AAA"))
        await wait_for_async(lambda: _grew(bus, "AAA", before), what="flow after the bad frames")
    assert dict(service.stats.rejects.by_code) == {"malformed_json": 1, "invalid_event": 1, "unsupported_event": 1}
    assert service.stats.reconnects == 0
    await bus.close()


async def _grew(bus: Bus, symbol: str, before: int) -> bool:
    return await bus.client.xlen(bus.keys.market(symbol)) > before + 20


async def test_a_silent_feed_trips_the_watchdog(simulator, redis_url, key_prefix):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    service = IngestService(
        settings(simulator, key_prefix, watchdog_seconds=2.0),
        bus,
        api_key=KEY,
        market_hours_only=False,
        backoff_cap_seconds=0.5,
    )
    async with RunningIngest(service):
        await wait_for_async(lambda: _has_trades(bus, "AAA"), what="first trades")
        simulator.paused = True
        await wait_for_async(lambda: _silenced(service), timeout=10, what="the watchdog")
        simulator.paused = False
        await wait_for_async(lambda: _reconnected(service), timeout=10, what="a reconnect")
    statuses = [decode(entry.payload).state for entry in await bus.read_range(bus.keys.status)]
    assert "watchdog_silence" in statuses
    await bus.close()


async def _silenced(service: IngestService) -> bool:
    return "watchdog_silence" in service.stats.statuses


async def _reconnected(service: IngestService) -> bool:
    return service.stats.reconnects >= 1 and service.feed.connected


@CLIENTS
async def test_a_wrong_key_stops_with_a_clear_error_and_no_retry(simulator, redis_url, key_prefix, client):
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    service = IngestService(settings(simulator, key_prefix, polygon_client=client), bus, api_key="wrong-key")
    started = time.monotonic()
    with pytest.raises(FeedAuthError, match="rejected the API key"):
        await asyncio.wait_for(service.run(asyncio.Event()), timeout=20)
    assert time.monotonic() - started < 10 and service.stats.reconnects == 0
    await bus.close()


async def test_redis_restarted_during_ingest_resumes_and_reports_the_gap(simulator, private_redis):
    bus = await Bus.connect(
        private_redis.url, prefix="ri", retries=2, backoff_base_seconds=0.05, backoff_cap_seconds=0.2
    )
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    service = IngestService(settings(simulator, "ri"), bus, api_key=KEY)
    async with RunningIngest(service):
        await wait_for_async(lambda: _has_trades(bus, "AAA"), what="first trades")
        private_redis.stop()
        await asyncio.sleep(2.0)
        private_redis.start()  # empty: no persistence
        await wait_for_async(lambda: _status_gap(bus), timeout=30, what="the outage reported as a gap")
        await wait_for_async(lambda: _has_trades(bus, "AAA"), timeout=10, what="publishing to resume")
    statuses = [decode(entry.payload) for entry in await bus.read_range(bus.keys.status)]
    outage = next(s for s in statuses if s.code == "bus_outage")
    assert outage.gap_end_ns - outage.gap_start_ns >= 1.5e9
    await bus.close()


async def _status_gap(bus: Bus) -> bool:
    try:
        return any(decode(e.payload).code == "bus_outage" for e in await bus.read_range(bus.keys.status))
    except Exception:
        return False


async def test_the_api_key_appears_in_no_log_error_or_metric(simulator, redis_url, key_prefix, tmp_path):
    log_dir = tmp_path / "logs"
    logs.configure_logging(service="ingest", log_dir=log_dir, level="DEBUG", secrets=[KEY], console=False)
    try:
        bus = await Bus.connect(redis_url, prefix=key_prefix)
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        rest = PolygonRest(KEY, f"http://{simulator.feed}", backoff_base=0.05, backoff_cap=0.2)
        service = IngestService(settings(simulator, key_prefix), bus, api_key=KEY, rest=rest, backoff_cap_seconds=0.5)
        async with RunningIngest(service):
            await wait_for_async(lambda: _has_trades(bus, "AAA"), what="first trades")
            await simulator.drop_connections()
            await wait_for_async(lambda: _count(service, "backfilled"), what="a backfill")
        await bus.close()
    finally:
        import logging

        logging.getLogger().handlers.clear()
    written = "".join(path.read_text() for path in log_dir.glob("*.jsonl"))
    assert "order_flow.feed_gap" in written and "order_flow.backfilled" in written
    assert KEY not in written
    assert KEY not in generate_latest(REGISTRY).decode()


def test_cli_wrong_key_exits_5_without_showing_it(tmp_path, redis_url, key_prefix):
    async def serve_and_run():
        simulator = await PolygonSimulator(timeline(["AAA"], 0.5), api_key=KEY, speed=10).start()
        env = orderflow_environment(
            REDIS_URL=redis_url,
            ORDER_FLOW_KEY_PREFIX=key_prefix,
            POLYGON_API_KEY="pk_WRONG_77",
            ORDER_FLOW_POLYGON_FEED=simulator.feed,
            ORDER_FLOW_POLYGON_SECURE="false",
            ORDER_FLOW_POLYGON_REST_URL=f"http://{simulator.feed}",
            ORDER_FLOW_LOG_DIR=str(tmp_path),
            ORDER_FLOW_METRICS_PORT="0",
        )
        process = await asyncio.create_subprocess_exec(
            *ORDERFLOW,
            "ingest",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        await simulator.stop()
        return process.returncode, out.decode() + err.decode()

    code, output = asyncio.run(serve_and_run())
    assert code == 5 and "authentication failed" in output
    assert "pk_WRONG_77" not in output
    assert "pk_WRONG_77" not in "".join(p.read_text() for p in tmp_path.glob("*.jsonl"))


async def test_a_recorded_session_replays_bit_for_bit(simulator, redis_url, key_prefix, tmp_path):
    from services.ingest.normalise import Normaliser
    from services.ingest.rejects import Reject
    from services.ingest.sources import read_events

    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    service = IngestService(settings(simulator, key_prefix), bus, api_key=KEY, record=tmp_path / "rec" / "live")
    async with RunningIngest(service):
        await wait_for_async(lambda: _has_trades(bus, "AAA"), what="first trades")
        await asyncio.sleep(1.0)
    live = [e for e in await stream(bus, "AAA") if not isinstance(e, FeedStatus)]  # the stop's status: not a frame
    (capture,) = list((tmp_path / "rec").glob("live-*.capture"))
    normaliser = Normaliser()
    replayed = [normaliser.process(e) for e in read_events("capture", [capture]) if not isinstance(e, Reject)]
    replayed = [e for e in replayed if e is not None]
    assert len(live) > 50 and replayed == live  # same events, same receive times, same sides
    await bus.close()


def test_positions_cli(redis_url, key_prefix, tmp_path):
    env = orderflow_environment(
        REDIS_URL=redis_url,
        ORDER_FLOW_KEY_PREFIX=key_prefix,
        COLUMNS="120",
    )

    def orderflow(*arguments: str) -> subprocess.CompletedProcess:
        return run_orderflow("positions", *arguments, env=env)

    assert orderflow("open", "aapl", "--quantity", "200", "--entry", "187.43", "--stop", "184").returncode == 0
    assert orderflow("open", "MSFT", "--quantity", "50", "--entry", "410.1").returncode == 0
    listed = orderflow("list").stdout
    assert "AAPL" in listed and "187.43" in listed and "184.00" in listed and "MSFT" in listed
    assert orderflow("close", "AAPL").returncode == 0
    assert "AAPL" not in orderflow("list").stdout
    bad = orderflow("open", "NOT A TICKER", "--quantity", "1", "--entry", "1")
    assert bad.returncode == 2 and "not a ticker symbol" in bad.stderr
    client = redis.Redis.from_url(redis_url)
    assert json.loads(client.hget(f"{key_prefix}:positions", "MSFT"))["entry_price"] == 410_100_000_000
    client.close()


@pytest.mark.redis
async def test_a_lost_registry_is_written_back_and_the_subscriptions_kept(redis_url, key_prefix):
    """The positions hash vanishes (as with a Redis restarted without persistence): ingest keeps its
    subscriptions, writes the positions back and publishes positions_lost naming them. Closing every
    position, by contrast, is not a loss: the subscriptions end."""
    config = OrderFlowConfig(key_prefix=key_prefix)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        registry = PositionRegistry(bus)
        await registry.open("AAPL", quantity=100, entry_price="190.00")
        await registry.open("MSFT", quantity=50, entry_price="410.00")
        ingest = IngestService(config, bus, api_key="unused")
        await ingest.follower.reconcile()
        assert ingest.symbols == ["AAPL", "MSFT", "SPY"]  # the market symbol beside the positions
        await bus.client.delete(bus.keys.positions)
        await ingest.follower.reconcile()
        assert ingest.symbols == ["AAPL", "MSFT", "SPY"]
        assert [position.symbol for position in await registry.list()] == ["AAPL", "MSFT"]
        statuses = [decode(next(iter(fields.values()))) for _id, fields in await bus.client.xrange(bus.keys.status)]
        lost = [status for status in statuses if status.state == "positions_lost"]
        assert len(lost) == 1 and lost[0].symbols == ("AAPL", "MSFT") and lost[0].code == "registry_missing"
        await registry.close("AAPL")
        await registry.close("MSFT")
        await ingest.follower.reconcile()
        assert ingest.symbols == []


async def test_sigterm_while_redis_is_down_ends_ingest_within_seconds(simulator, key_prefix):
    """Redis dies under a running ingest that keeps receiving; the stop is not held by the outage."""
    from tests.support.redis_server import RedisProcess, free_port, redis_server_binary

    server = await asyncio.to_thread(RedisProcess(port=free_port(), binary=redis_server_binary()).start)
    bus = await Bus.connect(server.url, prefix=key_prefix, retries=1)
    try:
        await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
        service = IngestService(settings(simulator, key_prefix), bus, api_key=KEY)
        stop = asyncio.Event()
        task = asyncio.ensure_future(service.run(stop))

        async def published() -> bool:
            return service.stats.events > 0

        await wait_for_async(published, what="events published")
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(3)
        assert not task.done()
        stopped = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=15)
        assert time.monotonic() - stopped < 8.0
    finally:
        await bus.close()
        await asyncio.to_thread(server.stop)


@pytest.mark.redis
async def test_a_registry_written_before_the_mark_gets_it_so_closing_everything_is_not_a_loss(redis_url, key_prefix):
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        registry = PositionRegistry(bus)
        await registry.open("AAPL", quantity=100, entry_price="190.00")
        await bus.client.hdel(bus.keys.positions, "_registry")  # as an older version wrote it
        ingest = IngestService(OrderFlowConfig(key_prefix=key_prefix), bus, api_key="unused")
        await ingest.follower.reconcile()
        await registry.close("AAPL")
        await ingest.follower.reconcile()
        assert ingest.symbols == [] and await registry.current() == []


async def test_a_long_gap_is_backfilled_page_by_page_in_order_without_duplicates(
    simulator, redis_url, key_prefix, monkeypatch
):
    """A backfill no longer loads the whole gap into one list (1.1 GB for 432,100 trades): each REST page is
    published before the next is fetched. With 5-trade pages: several pages, none published more than a page at a
    time, every trade of the gap once, in time order."""
    import services.ingest.backfill as backfill

    monkeypatch.setattr(backfill, "BACKFILL_PAGE_TRADES", 5)
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    rest = PolygonRest(KEY, f"http://{simulator.feed}", backoff_base=0.05, backoff_cap=0.3)
    service = IngestService(settings(simulator, key_prefix), bus, api_key=KEY, rest=rest, backoff_cap_seconds=1.0)
    batches: list[int] = []
    publish = service.publisher.publish_events

    async def counting(events, oldest=None):
        backfilled = sum(1 for event in events if isinstance(event, Trade) and event.backfilled)
        if backfilled:
            batches.append(backfilled)
        await publish(events, oldest)

    service.publisher.publish_events = counting
    async with RunningIngest(service):
        await wait_for_async(lambda: _has_trades(bus, "AAA"), what="first trades")
        await asyncio.sleep(0.5)
        await simulator.drop_connections()
        await wait_for_async(lambda: _gap_published(bus), what="a gap")
        await wait_for_async(lambda: _count(service, "backfilled"), what="backfilled trades")
        await asyncio.sleep(1.5)
    events = await stream(bus, "AAA")
    backfilled = [e for e in events if isinstance(e, Trade) and e.backfilled]
    assert len(batches) >= 2 and max(batches) <= 5 and sum(batches) == len(backfilled) == service.stats.backfilled
    assert [t.ts_event for t in backfilled] == sorted(t.ts_event for t in backfilled)
    keys = [(t.exchange, t.trade_id) for t in events if isinstance(t, Trade)]
    assert len(keys) == len(set(keys))
    await bus.close()


def test_sigterm_during_a_slow_backfill_ends_ingest_within_seconds(tmp_path, redis_url, key_prefix):
    """A REST API that takes 30 s a page (ingest's client times out and retries for minutes) once held SIGTERM
    for over a minute; now the backfill is abandoned at once and the process exits within seconds."""
    import signal

    async def scenario():
        simulator = await PolygonSimulator(timeline(["AAA"], 2.0), api_key=KEY, speed=10).start()
        client = redis.Redis.from_url(redis_url)
        try:
            client.hset(
                f"{key_prefix}:positions",
                mapping={"AAA": json.dumps({"symbol": "AAA", "quantity": 1, "entry_price": 1}), "_registry": "1"},
            )
            env = orderflow_environment(
                REDIS_URL=redis_url,
                ORDER_FLOW_KEY_PREFIX=key_prefix,
                POLYGON_API_KEY=KEY,
                ORDER_FLOW_POLYGON_FEED=simulator.feed,
                ORDER_FLOW_POLYGON_SECURE="false",
                ORDER_FLOW_POLYGON_REST_URL=f"http://{simulator.feed}",
                ORDER_FLOW_LOG_DIR=str(tmp_path),
                ORDER_FLOW_METRICS_PORT="0",
            )
            process = await asyncio.create_subprocess_exec(
                *ORDERFLOW,
                "ingest",
                cwd=REPO,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not client.xlen(f"{key_prefix}:md:{{AAA}}"):
                await asyncio.sleep(0.1)
            simulator.rest_delay_seconds = 30.0  # every REST page now takes 30 s (past the client's 10 s read timeout)
            await simulator.drop_connections()
            while time.monotonic() < deadline and not any(
                b"backfill" in line or b"feed_gap" in line
                for path in tmp_path.glob("*.jsonl")
                for line in path.read_bytes().splitlines()
            ):
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the backfill is waiting for its first page
            process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            code = await asyncio.wait_for(process.wait(), timeout=60)
            return code, time.monotonic() - stopped
        finally:
            client.close()
            await simulator.stop()

    code, seconds = asyncio.run(scenario())
    written = "".join(path.read_text() for path in tmp_path.glob("*.jsonl"))
    assert "order_flow.feed_gap" in written and "order_flow.backfill_stopped" in written
    assert code == 0 and seconds < 8.0, (code, seconds)


async def test_the_simulators_rest_history_is_bounded():
    """A simulator looping for days kept every trade it ever printed; now the newest ``history_trades`` per symbol."""
    simulator = await PolygonSimulator(timeline(["AAA"], 1.0), api_key=KEY, speed=200, history_trades=50).start()
    try:
        deadline = time.monotonic() + 20
        while simulator.sent_events < 400 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        printed = list(simulator.history.trades["AAA"])
        assert len(printed) == 50 and simulator.sent_events >= 400
        rest = PolygonRest(KEY, f"http://{simulator.feed}")
        body = json.loads(await asyncio.to_thread(rest.get, "/v3/trades/AAA", {"limit": 1000, "order": "desc"}))
        assert len(body["results"]) == 50  # what REST serves is the bounded history, newest first
    finally:
        await simulator.stop()


async def test_the_inbox_is_bounded_in_bytes_as_well_as_frames(redis_url, key_prefix):
    """Frames of 100 kB each: the byte cap (1 MiB) stops the inbox long before the frame cap (1,000); what is dropped is
    counted and, once the publisher has caught up, reported as a queue_overflow gap."""
    config = OrderFlowConfig(key_prefix=key_prefix, ingest_queue_bytes=1024 * 1024, ingest_queue_frames=1000)
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    try:
        service = IngestService(config, bus, api_key=KEY)
        frame = json.dumps([{"ev": "status", "status": "info", "message": "x" * 100_000}])
        for _ in range(40):
            await service.feed.receive(frame)
        assert service.inbox.frames == 11 and service.inbox.bytes <= 1024 * 1024 + len(frame)
        assert service.stats.dropped_frames == 29
        stop = asyncio.Event()
        task = asyncio.ensure_future(service.pipeline.run(stop))
        await wait_for_async(lambda: _gap_published(bus), what="the overflow gap")
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        statuses = [decode(entry.payload) for entry in await bus.read_range(bus.keys.status)]
        assert [s.code for s in statuses if s.state == "gap"] == ["queue_overflow"] and service.inbox.bytes == 0
    finally:
        await bus.close()


async def test_a_dead_publisher_ends_ingest_at_once_instead_of_leaving_it_half_alive(
    simulator, redis_url, key_prefix, monkeypatch
):
    """The soak found ingest's publisher task dead (an error Redis gave after a restart) while the process went on
    receiving and publishing nothing, unnoticed until SIGTERM. Now a task that dies ends ingest at once, with the
    error logged, so its supervisor restarts it."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    service = IngestService(settings(simulator, key_prefix), bus, api_key=KEY)

    async def broken(stop):
        await asyncio.sleep(0.5)
        raise RuntimeError("injected: the publisher failed")

    monkeypatch.setattr(service.pipeline, "run", broken)
    stop = asyncio.Event()
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="injected"):
            await asyncio.wait_for(service.run(stop), timeout=10)
        assert time.monotonic() - started < 3 and stop.is_set()
    finally:
        await bus.close()


async def test_a_cancelled_feed_ends_cancelled_and_closes_its_socket(simulator, redis_url, key_prefix):
    """Cancelling the feed's task (not a stop) propagates: the task ends cancelled, not swallowed into a reconnect,
    and the socket it held is closed."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    await PositionRegistry(bus).open("AAA", quantity=100, entry_price="50.00")
    service = IngestService(settings(simulator, key_prefix), bus, api_key=KEY)
    await service.follower.reconcile()
    feed = asyncio.ensure_future(service.feed.run(asyncio.Event()))
    await wait_for_async(lambda: service.feed.connected, what="the feed connected")
    feed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(feed, timeout=5)
    await wait_for_async(lambda: not any(client.authenticated for client in simulator.clients), what="socket closed")
    assert service.stats.reconnects == 0
    await bus.close()
