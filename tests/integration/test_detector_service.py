"""The detector on real Redis: scenarios, live equals offline, crash recovery,
redelivery, bad payloads, a deleted group."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
import redis

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.streams import BusEntry
from orderflow_client.errors import BusUnavailableError
from orderflow_client.logs import configure_logging
from orderflow_client.positions import PositionRegistry
from orderflow_client.timestamps import now_ns
from orderflow_client.wire import FeedState, decode, unbatched
from services.detector.outputs import Output
from services.detector.service import STOP_GRACE_SECONDS, DetectorService
from services.detector.sink import STATUS_EVENTS
from services.ingest.replay import replay
from services.ingest.sources import read_events
from services.offline.analyze import analyze
from services.tools.scenario_expectations import EXPECTATIONS
from services.tools.scenarios import SCENARIOS, write_scenario
from shared.config import OrderFlowConfig
from tests.support.cli import redis_environment, start_orderflow
from tests.support.jsonl import log_lines, read_jsonl
from tests.support.redis_server import free_port
from tests.support.streams import alert_ids, caught_up
from tests.support.waiting import wait_for, wait_for_async


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("captures")
    paths = {}
    for name in SCENARIOS:
        paths[name] = folder / f"{name}.capture"
        write_scenario(name, paths[name], symbol=name.upper().replace("-", ""))
    return paths


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_gives_exactly_what_it_documents(name, captures, tmp_path):
    summary = analyze("capture", [captures[name]], tmp_path, SCENARIO_CONFIG)
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    exits = read_jsonl(tmp_path / "exits.jsonl")
    statuses = read_jsonl(tmp_path / "statuses.jsonl")
    expected = EXPECTATIONS[name]
    assert tuple((a["alert_type"], a["source"], a["severity"], a["two_sided"]) for a in alerts) == expected.alerts
    assert tuple(e["trigger"] for e in exits) == expected.exits
    assert tuple(s["state"] for s in statuses) == expected.statuses
    assert bool(summary.validation_errors) == expected.validation_errors
    document = json.loads((tmp_path / "summary.json").read_text())
    assert document["events"] == summary.events > 5000 and document["exits"] == len(exits)


def test_analyze_emits_trades_with_their_side(captures, tmp_path):
    analyze("capture", [captures["quiet"]], tmp_path, OrderFlowConfig(), emit_trades=True)
    trades = read_jsonl(tmp_path / "trades.jsonl")
    assert len(trades) > 9000
    assert {t["side_source"] for t in trades} <= {"quote", "tick", "none"}
    assert sum(t["side"] in ("buy", "sell") for t in trades) > 0.99 * len(trades)


SCENARIO_CONFIG = OrderFlowConfig(threshold_mode="absolute")
"""The scenarios are judged with the absolute thresholds (they have no history)."""


@pytest.mark.redis
def test_live_and_offline_agree_on_alert_ids(redis_url, key_prefix, captures, tmp_path):
    files = [captures["large-sellers"], captures["red-burst"]]
    offline = tmp_path / "offline"
    analyze("capture", files, offline, SCENARIO_CONFIG)
    expected_alerts = [a["id"] for a in read_jsonl(offline / "alerts.jsonl")]
    expected_exits = [e["id"] for e in read_jsonl(offline / "exits.jsonl")]
    env = redis_environment(redis_url, key_prefix, tmp_path)
    replayed = start_orderflow("replay", "--format", "capture", *map(str, files), env=env)
    replayed.expect_exit(0, timeout=120)
    detector = start_orderflow("detect", "--symbol", "LARGESELLERS", "--symbol", "REDBURST", env=env)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: caught_up(client, key_prefix, ["LARGESELLERS", "REDBURST"]), what="the detector to catch up")
        import urllib.request

        scraped = (
            urllib.request.urlopen(f"http://127.0.0.1:{env['ORDER_FLOW_METRICS_PORT']}/metrics", timeout=5)
            .read()
            .decode()
        )
        assert 'orderflow_alerts_total{alert_type="large_seller",severity="warning"} 4.0' in scraped
        assert "orderflow_exit_recommendations_total 2.0" in scraped
        assert "orderflow_alert_latency_seconds_count 7.0" in scraped
        assert (
            'orderflow_events_processed_total{kind="trade"}' in scraped and "orderflow_monitored_symbols 2.0" in scraped
        )
        detector.send_signal(signal.SIGTERM)
        detector.expect_exit(0, timeout=30)
        live_alerts = alert_ids(client, f"{key_prefix}:alerts")
        live_exits = alert_ids(client, f"{key_prefix}:exits")
    finally:
        detector.stop_if_running()
        client.close()
    assert sorted(live_alerts) == sorted(expected_alerts) and len(expected_alerts) == 7
    assert sorted(live_exits) == sorted(expected_exits) and len(expected_exits) == 2
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.jsonl"))
    latencies = [
        json.loads(line)["latency_ms"]
        for line in log.splitlines()
        if '"event":"order_flow.large_seller_detected"' in line
    ]
    assert len(latencies) == 5 and all(latency >= 0 for latency in latencies)


@pytest.mark.redis
def test_a_detector_killed_mid_stream_loses_and_duplicates_nothing(redis_url, key_prefix, captures, tmp_path):
    files = [captures["large-sellers"], captures["red-burst"]]
    offline = tmp_path / "offline"
    analyze("capture", files, offline, SCENARIO_CONFIG)
    expected = sorted(a["id"] for a in read_jsonl(offline / "alerts.jsonl")) + sorted(
        e["id"] for e in read_jsonl(offline / "exits.jsonl")
    )
    env = redis_environment(redis_url, key_prefix, tmp_path)
    # the market keeps arriving while the detector dies: 12 minutes of market at 40x ≈ 18 s
    replayed = start_orderflow("replay", "--format", "capture", *map(str, files), "--speed", "40", env=env)
    client = redis.Redis.from_url(redis_url)
    try:
        first = start_orderflow("detect", "--symbol", "LARGESELLERS", "--symbol", "REDBURST", env=env)
        wait_for(lambda: client.xlen(f"{key_prefix}:alerts") >= 2, timeout=90, what="the first alerts")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_with = client.xlen(f"{key_prefix}:alerts")
        second = start_orderflow("detect", "--symbol", "LARGESELLERS", "--symbol", "REDBURST", env=env)
        replayed.expect_exit(0, timeout=120)
        wait_for(
            lambda: caught_up(client, key_prefix, ["LARGESELLERS", "REDBURST"]),
            what="the restarted detector to catch up",
        )
        second.send_signal(signal.SIGTERM)
        second.expect_exit(0, timeout=30)
        live = sorted(alert_ids(client, f"{key_prefix}:alerts")) + sorted(alert_ids(client, f"{key_prefix}:exits"))
    finally:
        replayed.stop_if_running()
        client.close()
    assert 2 <= killed_with < 7  # it really died mid-stream
    assert live == expected  # none lost, none twice


@pytest.mark.redis
async def test_redelivered_entries_never_give_a_second_alert(redis_url, key_prefix, captures):
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await replay(bus, read_events("capture", [captures["large-sellers"]]))
        first = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="one")
        await first.refresh()
        await first.drain()
        assert first.stats.alerts == 5 and first.stats.exits == 1
        await first.leave()  # a clean stop: its lease released, the second takes the symbol at once
        stream = bus.keys.market("LARGESELLERS")
        await bus.client.xgroup_setid(stream, config.consumer_group, "0")  # everything is delivered again
        second = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="two")
        await second.refresh()
        await second.drain()
        assert second.stats.events > 5000 and second.stats.alerts == 0 and second.stats.exits == 0
        assert second.stats.duplicates_suppressed == 6
        assert await bus.client.xlen(bus.keys.alerts) == 5


@pytest.mark.redis
async def test_an_undecodable_entry_is_logged_acknowledged_and_survived(redis_url, key_prefix, captures):
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("LARGESELLERS")
        await bus.client.xadd(stream, {"trade": b"\xc1 not msgpack"})
        await replay(bus, read_events("capture", [captures["large-sellers"]]))
        service = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="one")
        await service.refresh()
        await service.drain()
        assert service.stats.undecodable == 1 and service.stats.alerts == 5
        assert await bus.pending_count(stream, config.consumer_group) == 0


@pytest.mark.redis
def test_a_deleted_group_is_recreated_where_the_detector_left_off(redis_url, key_prefix, tmp_path):
    """The group vanishes under a running detector (deleted, or Redis restarted empty): it is recreated after
    the last entry handled, a status says so, entries after it are read and the ones before are not again."""
    client = redis.Redis.from_url(redis_url)
    stream = f"{key_prefix}:md:{{GONE}}"
    dead = f"{stream}:dead"
    client.xadd(stream, {"status": b"x"})  # poison: dead-lettered, so each read of it shows
    env = redis_environment(redis_url, key_prefix, tmp_path)
    detector = start_orderflow("detect", "--symbol", "GONE", env=env)

    def recreated() -> bool:
        return any(
            decode(next(iter(fields.values()))).code == "group_recreated"
            for _id, fields in client.xrange(f"{key_prefix}:status")
        )

    try:
        wait_for(lambda: caught_up(client, key_prefix, ["GONE"]) and client.xlen(dead) == 1, what="the group")
        client.xgroup_destroy(stream, "detector")
        wait_for(recreated, what="the group recreated")
        client.xadd(stream, {"status": b"y"})
        wait_for(lambda: client.xlen(dead) == 2, what="the entry after the recreation")
        time.sleep(1.0)
        assert client.xlen(dead) == 2 and detector.poll() is None  # the first entry was not read again; still running
    finally:
        detector.stop_if_running()
        client.close()


@pytest.mark.redis
async def test_the_detector_follows_the_position_registry(redis_url, key_prefix, captures):
    from orderflow_client.positions import PositionRegistry

    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await replay(bus, read_events("capture", [captures["large-sellers"]]))
        registry = PositionRegistry(bus)
        service = DetectorService(config, bus, consumer="one")  # no --symbol: open positions
        await service.refresh()
        assert service.group_consumer.streams == {}
        await registry.open("LARGESELLERS", quantity=100, entry_price="50")
        await service.refresh()
        await service.drain()
        assert service.stats.alerts == 5 and "LARGESELLERS" in service.engine.symbols
        await registry.close("LARGESELLERS")
        await service.refresh()
        assert service.group_consumer.streams == {} and "LARGESELLERS" not in service.engine.symbols


@pytest.mark.redis
async def test_poison_entries_are_dead_lettered_acknowledged_and_survived(redis_url, key_prefix, captures):
    """Valid msgpack of the wrong type, in the wrong field or for the wrong symbol once crashed the detector on every
    restart (the entry stayed pending). Now each is moved to <stream>:dead with its reason, reported, and
    acknowledged."""
    from orderflow_client.wire import ExitRecommendation, Quote, Trade, encode

    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("LARGESELLERS")
        forged = ExitRecommendation(
            id="x",
            symbol="LARGESELLERS",
            trigger="large_sellers",
            ts_event=1,
            ts_recv=1,
            timestamp_utc="t",
            alert_ids=(),
            reasoning="r",
        )
        quote = Quote(
            symbol="LARGESELLERS", ts_event=1, ts_recv=1, ts_arrival=1, bid_price=1, bid_size=1, ask_price=2, ask_size=1
        )
        other = Trade(symbol="OTHER", ts_event=1, ts_recv=1, ts_arrival=1, price=1, size=1)
        await bus.client.xadd(stream, {"trade": encode(forged)})  # wrong type
        await bus.client.xadd(stream, {"trade": encode(quote)})  # wrong field
        await bus.client.xadd(stream, {"trade": encode(other)})  # wrong symbol
        await bus.client.xadd(stream, {"trade": b"\xc1 not msgpack"})  # undecodable
        await replay(bus, read_events("capture", [captures["large-sellers"]]))
        service = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="one")
        await service.refresh()
        await service.drain()
        assert service.stats.undecodable == 4 and service.stats.alerts == 5
        assert await bus.pending_count(stream, config.consumer_group) == 0
        dead = await bus.client.xrange(bus.keys.dead_letters(stream))
        assert [fields[b"code"] for _id, fields in dead] == [
            b"wrong_type",
            b"wrong_field",
            b"wrong_symbol",
            b"wire_undecodable",
        ]
        assert (
            dead[0][1][b"payload"] == encode(forged) and dead[0][1][b"field"] == b"trade"
        )  # nothing lost: kept with its reason
        statuses = [decode(next(iter(fields.values()))) for _id, fields in await bus.client.xrange(bus.keys.status)]
        assert [s.code for s in statuses if s.state == "dead_letter"] == [
            "wrong_type",
            "wrong_field",
            "wrong_symbol",
            "wire_undecodable",
        ]
        # a restart warms up from a history holding the poison, and a redelivery meets it again: neither crashes
        await bus.client.xgroup_setid(stream, config.consumer_group, "0")
        again = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="one")
        await again.refresh()
        await again.drain()
        assert again.stats.undecodable == 4 and await bus.pending_count(stream, config.consumer_group) == 0
        assert await bus.client.xlen(bus.keys.dead_letters(stream)) == 8


@pytest.mark.redis
async def test_a_rested_offer_on_a_quiet_stock_is_reported_without_waiting_for_the_next_event(redis_url, key_prefix):
    """One quote shows 15,000 shares offered, then the stock goes quiet: the running detector's heartbeat reports
    the offer once it has rested 2 s of receive time, not at the next event (which never comes here)."""
    from tests.support.events import T0, Feed

    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        service = DetectorService(config, bus, symbols=["X"], consumer="one")
        stop = asyncio.Event()
        running = asyncio.ensure_future(service.run(stop))
        try:
            await asyncio.sleep(0.3)
            shown = now_ns()
            quote = Feed().quote(T0, ask_size=15_000)
            await bus.publish([(bus.keys.market("X"), msgspec.structs.replace(quote, ts_recv=shown))])
            while not await bus.client.xlen(bus.keys.alerts) and now_ns() - shown < 5 * 10**9:
                await asyncio.sleep(0.01)
            seen = now_ns()
        finally:
            stop.set()
            await running
        ((_, fields),) = await bus.client.xrange(bus.keys.alerts)
        alert = decode(next(iter(fields.values())))
        assert (alert.source, alert.ts_event, alert.evidence["rested_seconds"]) == ("book", T0 + 2 * 10**9, 2.0)
        assert alert.ts_recv == shown + 2 * 10**9 and 0 <= alert.latency_ms < 100  # published within 100 ms of due
        assert 2.0 <= (seen - shown) / 1e9 < 2.3


@pytest.mark.redis
def test_the_detector_rides_out_a_20_second_redis_outage_and_loses_nothing(captures, tmp_path):
    """Redis (append-only) is killed under a running detector and comes back 20 s later: the detector neither
    exits nor loses anything; the large sellers published afterwards give their 5 alerts and the exit."""
    from tests.support.redis_server import RedisProcess, redis_server_binary

    server = RedisProcess(port=free_port(), binary=redis_server_binary(), append_only=True).start()
    prefix = "outage"
    env = redis_environment(server.url, prefix, tmp_path, ORDER_FLOW_THRESHOLD_MODE="absolute")
    detector = start_orderflow("detect", "--symbol", "LARGESELLERS", env=env)
    try:
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: caught_up(client, prefix, ["LARGESELLERS"]), what="the detector's group")
        client.close()
        server.stop()
        time.sleep(20)
        assert detector.poll() is None, f"the detector exited during the outage\n{detector.report()}"
        server.start()
        client = redis.Redis.from_url(server.url)

        async def publish() -> None:
            async with await Bus.connect(server.url, prefix=prefix) as bus:
                await replay(bus, read_events("capture", [captures["large-sellers"]]))

        asyncio.run(publish())
        wait_for(lambda: client.exists(f"{prefix}:exits") and client.xlen(f"{prefix}:exits") == 1, what="the exit")
        wait_for(lambda: client.xlen(f"{prefix}:alerts") == 5, what="the five alerts")
        detector.send_signal(signal.SIGTERM)
        detector.expect_exit(0, timeout=30)
        events = [line["event"] for line in log_lines(tmp_path / "logs")]
        assert "order_flow.bus_unavailable" in events and "order_flow.bus_recovered" in events
        client.close()
    finally:
        detector.stop_if_running()
        server.stop()


@pytest.mark.redis
def test_monitoring_survives_a_redis_restart_without_persistence(captures, tmp_path):
    """Redis without persistence restarts under a detector following the registry: the detector writes the
    position back, says positions_lost naming it, recreates its group, and alerts on what comes next."""
    from tests.support.redis_server import RedisProcess, redis_server_binary

    server = RedisProcess(port=free_port(), binary=redis_server_binary()).start()
    prefix = "restart"
    env = redis_environment(server.url, prefix, tmp_path)
    client = redis.Redis.from_url(server.url)

    async def open_position() -> None:
        async with await Bus.connect(server.url, prefix=prefix) as bus:
            await PositionRegistry(bus).open("LARGESELLERS", quantity=100, entry_price="50.10")

    asyncio.run(open_position())
    detector = start_orderflow("detect", env=env)
    try:
        wait_for(lambda: caught_up(client, prefix, ["LARGESELLERS"]), what="the detector's group")
        client.close()
        server.stop()
        server.start()  # empty: positions, streams and groups are gone
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: client.hexists(f"{prefix}:positions", "LARGESELLERS"), what="the position written back")

        def positions_lost_said() -> bool:  # published just after the write-back
            statuses = [decode(next(iter(fields.values()))) for _id, fields in client.xrange(f"{prefix}:status")]
            return any(s.state == "positions_lost" and s.symbols == ("LARGESELLERS",) for s in statuses)

        wait_for(positions_lost_said, timeout=10, what="a positions_lost status naming LARGESELLERS")

        async def publish() -> None:
            async with await Bus.connect(server.url, prefix=prefix) as bus:
                await replay(bus, read_events("capture", [captures["large-sellers"]]))

        asyncio.run(publish())
        wait_for(
            lambda: client.exists(f"{prefix}:alerts") and client.xlen(f"{prefix}:alerts") == 5, what="the five alerts"
        )
        assert detector.poll() is None
    finally:
        detector.stop_if_running()
        client.close()
        server.stop()


@pytest.mark.redis
async def test_entries_trimmed_before_the_detector_read_them_are_a_reported_gap(redis_url, key_prefix, captures):
    """A 1,000-entry stream cap and a detector that has read nothing yet: the quiet scenario's 13,800 events
    trim most of the stream unread. The detector says so (gap, code trimmed_unread, how many) before it reads,
    once for that trimming, then goes on with what is left."""
    config = OrderFlowConfig(key_prefix=key_prefix, stream_max_length=1000, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix, stream_max_length=1000) as bus:
        service = DetectorService(config, bus, symbols=["QUIET"], consumer="one")
        await service.refresh()
        stream = bus.keys.market("QUIET")
        await replay(bus, read_events("capture", [captures["quiet"]]), batch_size=1)  # an entry per event
        info = await bus.client.xinfo_stream(stream)
        stop = asyncio.Event()
        running = asyncio.ensure_future(service.run(stop))
        await asyncio.sleep(1.5)
        stop.set()
        await running
        statuses = [decode(next(iter(fields.values()))) for _id, fields in await bus.client.xrange(bus.keys.status)]
        trimmed = [status for status in statuses if status.code == "trimmed_unread"]
        assert len(trimmed) == 1 and trimmed[0].state == "gap" and trimmed[0].symbols == ("QUIET",)
        assert trimmed[0].detail.startswith(f"{info['entries-added'] - info['length']:,} entries")
        assert trimmed[0].gap_end_ns > 0 and service.stats.events == info["length"]


@pytest.mark.redis
def test_sigterm_during_a_redis_outage_ends_the_detector_within_seconds(tmp_path):
    """Redis is killed the moment the detector's group exists (the detector may still be starting: warming up,
    recovering, reclaiming) and SIGTERM comes 3 s into the outage: exit 0 within 4 s, the stop logged. On failure
    the message holds the detector's stdout, stderr and JSONL log."""
    from tests.support.redis_server import RedisProcess, redis_server_binary

    server = RedisProcess(port=free_port(), binary=redis_server_binary()).start()
    env = redis_environment(server.url, "sigterm", tmp_path)
    detector = start_orderflow("detect", "--symbol", "QUIET", env=env)
    try:
        client = redis.Redis.from_url(server.url)
        wait_for(lambda: caught_up(client, "sigterm", ["QUIET"]), what="the detector's group")
        client.close()
        server.stop()
        time.sleep(3)
        assert detector.poll() is None, f"the detector exited during the outage\n{detector.report()}"
        stopped = time.monotonic()
        detector.send_signal(signal.SIGTERM)
        detector.expect_exit(0, timeout=10)  # on failure: its stdout, stderr and JSONL log
        took = time.monotonic() - stopped
        assert took < 4.0, f"SIGTERM took {took:.1f} s\n{detector.report()}"
        events = [line["event"] for line in log_lines(tmp_path / "logs")]
        assert events[-1] == "order_flow.detector_stopped", detector.report()
    finally:
        detector.stop_if_running()
        server.stop()


@pytest.fixture
def detector_log(tmp_path) -> Callable[[], list[dict[str, Any]]]:
    """This process's log as the detector's JSONL (``tmp_path/detector-log``); returns what reads its lines."""
    configure_logging(service="detector", log_dir=tmp_path / "detector-log", console=False)
    return lambda: log_lines(tmp_path / "detector-log")


def _unavailable(operation: str) -> BusUnavailableError:
    return BusUnavailableError(f"Redis at redis://127.0.0.1:1/0 unavailable during {operation}: Connection refused")


@pytest.mark.redis
async def test_a_stop_while_starting_into_a_redis_outage_is_a_clean_stop(redis_url, key_prefix, detector_log):
    """The race behind a flaky SIGTERM test: Redis dies right after the detector created its group, while it is
    still starting (its warm-up's first call fails), and SIGTERM comes during those retries. The start was outside
    the loop's recovery, so run raised BusUnavailableError (``orderflow detect`` exit 3, or killed by the SIGTERM
    while exiting). It is a stop like any other: run returns, the outage and nothing else logged."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stop = asyncio.Event()

        async def redis_gone_then_sigterm(stream: str, group: str) -> str | None:
            stop.set()
            raise _unavailable("processed_until")

        bus.processed_until = redis_gone_then_sigterm  # type: ignore[method-assign]
        service = DetectorService(config, bus, symbols=["QUIET"], consumer="one")
        stats = await asyncio.wait_for(service.run(stop), timeout=STOP_GRACE_SECONDS + 1)
        assert stats.events == 0
    events = [line["event"] for line in detector_log()]
    assert "order_flow.bus_unavailable" in events and "order_flow.detector_failed" not in events


@pytest.mark.redis
async def test_a_redis_outage_while_starting_is_waited_out(redis_url, key_prefix, captures, detector_log):
    """Redis fails the detector's first calls after it connected (its warm-up): waited out like any outage, then
    the detector starts reading and alerts as usual."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        await replay(bus, read_events("capture", [captures["large-sellers"]]))
        answering = bus.processed_until
        failures = iter([_unavailable("processed_until")])

        async def fails_once(stream: str, group: str) -> str | None:
            for error in failures:
                raise error
            return await answering(stream, group)

        bus.processed_until = fails_once  # type: ignore[method-assign]
        service = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="one")
        stop = asyncio.Event()
        running = asyncio.ensure_future(service.run(stop))
        try:
            await wait_for_async(lambda: service.stats.alerts == 5 and service.stats.exits == 1, what="the alerts")
        finally:
            stop.set()
            await running
    events = [line["event"] for line in detector_log()]
    assert events.count("order_flow.bus_unavailable") == 1 and events.count("order_flow.bus_recovered") == 1


@pytest.mark.redis
@pytest.mark.parametrize("dies", ["heartbeat_at_the_stop", "read_loop"])
async def test_a_task_that_dies_is_logged_and_raised_even_at_the_stop(redis_url, key_prefix, dies, detector_log):
    """A defect in the heartbeat (the rules raising as event time passes) in the same loop iteration as SIGTERM was
    swallowed: exit 0, nothing logged. One in the read loop raised out of run unlogged (``orderflow detect`` exit 1,
    a traceback on stderr, nothing in the JSONL log). Each is ``order_flow.detector_failed``, then raised."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        service = DetectorService(config, bus, symbols=["QUIET"], consumer="one")
        stop = asyncio.Event()

        def heartbeat_defect(now_recv: int) -> list[Output]:
            stop.set()
            raise ZeroDivisionError("a rules defect")

        async def read_loop_defect(*args: object, **options: object) -> list[BusEntry]:
            raise ZeroDivisionError("a rules defect")

        if dies == "heartbeat_at_the_stop":
            service.engine.advance = heartbeat_defect  # type: ignore[method-assign]
        else:
            bus.read_group = read_loop_defect  # type: ignore[method-assign]
        with pytest.raises(ZeroDivisionError):
            await asyncio.wait_for(service.run(stop), timeout=STOP_GRACE_SECONDS + 1)
    failed = [line for line in detector_log() if line["event"] == "order_flow.detector_failed"]
    assert len(failed) == 1 and failed[0]["code"] == "internal_error" and "a rules defect" in failed[0]["error"]


@pytest.mark.redis
async def test_a_stop_during_a_redis_call_that_hangs_ends_within_the_grace(redis_url, key_prefix, detector_log):
    """SIGTERM while a Redis call hangs (a read retrying into an outage): the call is cancelled after
    STOP_GRACE_SECONDS, the stop is logged as mid-call and run returns; no task outlives it."""
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        service = DetectorService(config, bus, symbols=["QUIET"], consumer="one")
        stop = asyncio.Event()
        reading = asyncio.Event()

        async def hangs(*args: object, **options: object) -> list[BusEntry]:
            reading.set()
            await asyncio.sleep(60)
            return []

        bus.read_group = hangs  # type: ignore[method-assign]
        before = asyncio.all_tasks()
        running = asyncio.ensure_future(service.run(stop))
        await asyncio.wait_for(reading.wait(), timeout=5)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, timeout=STOP_GRACE_SECONDS + 1)
        assert time.monotonic() - started < STOP_GRACE_SECONDS + 0.5
        assert asyncio.all_tasks() == before
    events = [line["event"] for line in detector_log()]
    assert "order_flow.detector_stopped_mid_call" in events and "order_flow.detector_failed" not in events


def test_every_status_state_has_a_literal_log_event():
    assert set(STATUS_EVENTS) == set(get_args(FeedState))
    assert all(event == f"order_flow.{state}" for state, event in STATUS_EVENTS.items())


@pytest.mark.redis
async def test_an_entry_the_rules_fail_on_is_dead_lettered_and_the_others_still_alert(
    redis_url, key_prefix, captures, monkeypatch
):
    """A defect in the rules meets one print: that entry goes to the dead-letter stream with the exception, the
    symbol's windows are reset, and every other entry is handled (the five large sellers still alert); a restart
    that warms up over it does not crash either."""
    from orderflow_client.wire import Trade
    from services.detector.engine import SymbolEngine

    events = list(read_events("capture", [captures["large-sellers"]]))
    victim = next(event for index, event in enumerate(events) if type(event) is Trade and index > 50)
    original = SymbolEngine._on_trade

    def failing(self, trade, *args):
        if trade.ts_event == victim.ts_event and trade.size == victim.size:
            raise ZeroDivisionError("injected defect")
        return original(self, trade, *args)

    monkeypatch.setattr(SymbolEngine, "_on_trade", failing)
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute")
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("LARGESELLERS")
        await replay(bus, events)
        service = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="one")
        await service.refresh()
        await service.drain()
        assert service.stats.processing_failures == 1 and service.stats.alerts == 5
        assert await bus.pending_count(stream, config.consumer_group) == 0
        dead = await bus.client.xrange(bus.keys.dead_letters(stream))
        assert len(dead) == 1 and dead[0][1][b"code"] == b"processing_failed"
        parked = unbatched(decode(dead[0][1][b"payload"]))  # the victim's whole entry (replay packs events)
        position = next(
            i
            for i, e in enumerate(parked, 1)
            if type(e) is Trade and (e.ts_event, e.size) == (victim.ts_event, victim.size)
        )
        reason = dead[0][1][b"reason"].decode()
        assert reason == f"event {position} of {len(parked)}: the rules raised ZeroDivisionError: injected defect"
        assert len(parked) > 1 and parked[position - 1].sequence == victim.sequence
        statuses = [decode(next(iter(fields.values()))) for _id, fields in await bus.client.xrange(bus.keys.status)]
        assert [s.code for s in statuses if s.state == "dead_letter"] == ["processing_failed"]
        restarted = DetectorService(config, bus, symbols=["LARGESELLERS"], consumer="one")
        await restarted.refresh()  # the warm-up replays the history holding it
        assert restarted.stats.warmed_up_events > 0


@pytest.mark.redis
async def test_an_entry_delivered_too_often_is_dead_lettered_instead_of_handled_again(redis_url, key_prefix):
    """A reader that dies on an entry every time (killed mid-batch, out of memory) leaves it pending; after
    ORDER_FLOW_MAX_DELIVERIES deliveries the next start moves it to the dead-letter stream, while an entry
    delivered once before (one crash) is handled normally."""
    from orderflow_client.wire import Trade, encode

    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="absolute", max_deliveries=3)
    now = now_ns()
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stream = bus.keys.market("CRASHY")
        await bus.ensure_group(stream, config.consumer_group, "0")
        killer = Trade(symbol="CRASHY", ts_event=now, ts_recv=now, ts_arrival=now, price=10_000_000_000, size=100)
        later = Trade(
            symbol="CRASHY", ts_event=now + 1, ts_recv=now + 1, ts_arrival=now + 1, price=10_000_000_000, size=200
        )
        killer_id = await bus.client.xadd(stream, {"trade": encode(killer)})
        await bus.client.xreadgroup(config.consumer_group, "one", {stream: ">"}, count=1)  # delivered once
        for _ in range(2):  # each restart that died on it delivered it again
            await bus.client.xreadgroup(config.consumer_group, "one", {stream: "0"}, count=1)
        later_id = await bus.client.xadd(stream, {"trade": encode(later)})
        await bus.client.xreadgroup(config.consumer_group, "one", {stream: ">"}, count=1)  # one crash on this one
        service = DetectorService(config, bus, symbols=["CRASHY"], consumer="one")
        await (
            service.refresh()
        )  # recovery: the fourth delivery of the first is over the limit of 3; the second's is its second
        dead = await bus.client.xrange(bus.keys.dead_letters(stream))
        assert [(fields[b"entry_id"], fields[b"code"]) for _id, fields in dead] == [(killer_id, b"delivery_limit")]
        assert b"delivered 4 times" in dead[0][1][b"reason"]
        assert service.stats.events == 1 and service.group_consumer.last_entry[stream] == later_id
        assert await bus.pending_count(stream, config.consumer_group) == 0
