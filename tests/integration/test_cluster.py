"""orderflow on a real local Redis Cluster (3 masters, 3 replicas, started by tests/support/redis_cluster.py): the
bus's operations with the symbols' streams spread over the masters, the whole pipeline as processes giving the
alert and exit ids of the same input judged offline (which a single server gives too:
tests/integration/test_detector_service.py), and a master failover under a running detector that loses nothing
and is reported."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.cluster
from redis.exceptions import ConnectionError as RedisConnectionError

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.dedup import ALREADY_PUBLISHED, PUBLISHED, PublishOnce
from orderflow_client.bus.keys import Keys
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import FeedStatus, Trade, decode, encode, unbatched
from services.offline.analyze import analyze
from services.tools.scenarios import write_scenario
from shared.config import OrderFlowConfig
from tests.support.blocking_reads import check_blocking_read_after
from tests.support.cli import redis_environment, start_orderflow
from tests.support.jsonl import log_lines, read_jsonl
from tests.support.redis_cluster import RedisCluster, running_cluster
from tests.support.streams import alert_ids, caught_up
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis
SYMBOLS = [f"S{number:02d}" for number in range(12)]
SCENARIO_CONFIG = OrderFlowConfig(threshold_mode="absolute")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with running_cluster() as started:
        yield started


def trade(symbol: str, number: int) -> Trade:
    ts = 1_764_000_000_000_000_000 + number
    return Trade(symbol=symbol, ts_event=ts, ts_recv=ts, ts_arrival=ts, price=50_000_000_000, size=100 + number)


async def test_the_bus_works_with_the_streams_spread_over_the_masters(cluster):
    bus = await Bus.connect(cluster.url, prefix="spread")
    try:
        assert bus.keys.cluster and bus.keys.alerts == "spread:{outputs}:alerts" and "(cluster)" in bus.description
        streams = [bus.keys.market(symbol) for symbol in SYMBOLS]
        assert len({cluster.master_of(stream) for stream in streams}) == 3  # every master holds some symbols
        for stream in streams:
            await bus.ensure_group(stream, "detector")
        await bus.publish_market_events([(bus.keys.market(s), trade(s, n)) for n in range(5) for s in SYMBOLS])
        # one read across every stream: each stream's events in their order, none missing
        entries = await bus.read_group("detector", "one", streams, block_ms=200)
        read = [(entry.stream, event.size) for entry in entries for event in unbatched(decode(entry.payload))]
        assert sorted(read) == sorted((stream, 100 + n) for stream in streams for n in range(5))
        assert await bus.read_group("detector", "one", streams, block_ms=50) == []  # nothing new: waited, empty
        for entry in entries:
            assert await bus.ack(entry.stream, "detector", [entry.entry_id]) == 1
        positions = await bus.group_positions(streams, "detector")
        assert all(position.lag == 0 for position in positions.values())
        assert len(await bus.read_after(dict.fromkeys(streams, "0-0"))) == len(entries)
        # an output is published once, atomically with its mark, in the outputs' slot
        once = PublishOnce(bus)
        status = FeedStatus(source="detector", state="gap", ts_event=1, ts_recv=1, symbols=("S00",))
        payload = encode(status)
        assert await once.publish("gap-1", bus.keys.status, "status", payload, remember_seconds=60)
        assert not await once.publish("gap-1", bus.keys.status, "status", payload, remember_seconds=60)
        assert len(await bus.read_range(bus.keys.status)) == 1
        # a dead letter beside its stream, the registry and its channel
        await bus.dead_letter(entries[0], "handler_failed", "a test")
        assert len(await bus.read_range(bus.keys.dead_letters(entries[0].stream))) == 1
        registry = PositionRegistry(bus)
        async with bus.subscribe(bus.keys.positions_channel) as changes:
            await registry.open("S03", quantity=10, entry_price="50.00")
            notices = [await changes.next_message(timeout=0.5) for _ in range(4)]  # the first may be the confirmation
            assert any(notice is not None and b"S03" in notice for notice in notices)
        assert "S03" in await registry.symbols()
        assert await bus.delete_streams(streams) == len(streams)
    finally:
        await bus.close()


async def test_an_append_whose_pipeline_failed_after_a_master_took_its_part_is_tried_again_once(cluster, monkeypatch):
    """A pipeline over several masters can raise after some of them appended their streams' batches (one master
    unreachable past redis-py's retries, as in a failover). The append tries every stream again: the masters that
    took their part already are recognised by their stream's last entry, so each stream holds its batch once."""
    bus = await Bus.connect(cluster.url, prefix="lost-reply")
    try:
        streams = [bus.keys.market(symbol) for symbol in SYMBOLS]
        await bus.publish([(bus.keys.market(s), trade(s, 0)) for s in SYMBOLS])  # (every master has the scripts)
        tries = []
        pipeline = bus.client.pipeline

        def reply_lost_the_first_time(**options):
            pipe = pipeline(**options)
            execute = pipe.execute

            async def executed(**arguments):
                replies = await execute(**arguments)
                tries.append(len(replies))
                if len(tries) == 1:
                    raise RedisConnectionError("the reply of one master was lost")
                return replies

            pipe.execute = executed
            return pipe

        monkeypatch.setattr(bus.client, "pipeline", reply_lost_the_first_time)
        ids = await bus.publish([(bus.keys.market(s), trade(s, n)) for n in range(1, 4) for s in SYMBOLS])
        assert tries == [len(SYMBOLS), len(SYMBOLS)] and all(ids)
        for stream in streams:
            assert [decode(entry.payload).size for entry in await bus.read_range(stream)] == [100, 101, 102, 103]
        await bus.delete_streams(streams)
    finally:
        await bus.close()


def _offline_ids(files: list[Path], folder: Path) -> list[str]:
    analyze("capture", files, folder, SCENARIO_CONFIG)
    return sorted(a["id"] for a in read_jsonl(folder / "alerts.jsonl")) + sorted(
        e["id"] for e in read_jsonl(folder / "exits.jsonl")
    )


def _captures(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name in ("large-sellers", "red-burst"):
        files.append(folder / f"{name}.capture")
        write_scenario(name, files[-1], symbol=name.upper().replace("-", ""))
    return files


def _live_ids(client: redis.cluster.RedisCluster, keys: Keys) -> list[str]:
    return sorted(alert_ids(client, keys.alerts)) + sorted(alert_ids(client, keys.exits))


def test_the_pipeline_on_a_cluster_gives_the_ids_of_the_offline_run(cluster, tmp_path):
    files = _captures(tmp_path / "captures")
    expected = _offline_ids(files, tmp_path / "offline")
    keys = Keys("pipeline", cluster=True)
    env = redis_environment(cluster.url, keys.prefix, tmp_path)
    start_orderflow("replay", "--format", "capture", *map(str, files), env=env).expect_exit(0, timeout=120)
    detector = start_orderflow("detect", "--symbol", "LARGESELLERS", "--symbol", "REDBURST", env=env)
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    try:
        wait_for(lambda: caught_up(client, keys.prefix, ["LARGESELLERS", "REDBURST"]), what="the detector")
        detector.send_signal(signal.SIGTERM)
        detector.expect_exit(0, timeout=30)
        assert _live_ids(client, keys) == expected and len(expected) == 9  # 7 alerts, 2 exits
    finally:
        detector.stop_if_running()
        client.close()


def test_a_master_failover_under_the_detector_loses_nothing_and_is_reported(tmp_path):
    """The market is on the cluster; the detector reads it; the master holding one symbol's stream is killed and
    its replica promoted. The replay's appends to that master are tried again until the promotion (a batch a master
    took before its reply was lost is not appended twice); both say so (``order_flow.bus_failover``, naming the
    master gone), and the detector ends with exactly the offline run's ids: nothing lost, nothing twice."""
    files = _captures(tmp_path / "captures")
    expected = _offline_ids(files, tmp_path / "offline")
    keys = Keys("failover", cluster=True)
    with running_cluster() as own:
        env = redis_environment(own.url, keys.prefix, tmp_path)
        client = redis.cluster.RedisCluster.from_url(own.url)
        replay = start_orderflow("replay", "--format", "capture", *map(str, files), "--speed", "40", env=env)
        detector = start_orderflow("detect", "--symbol", "LARGESELLERS", "--symbol", "REDBURST", env=env)
        try:
            wait_for(lambda: client.exists(keys.alerts) and client.xlen(keys.alerts) >= 2, 90, "the first alerts")
            victim = own.master_of(keys.market("REDBURST"))
            promoted = own.kill_master(victim)
            assert promoted != victim
            replay.expect_exit(0, timeout=120)
            wait_for(lambda: caught_up(client, keys.prefix, ["LARGESELLERS", "REDBURST"]), 60, "the detector after it")
            detector.send_signal(signal.SIGTERM)
            detector.expect_exit(0, timeout=30)
            live = _live_ids(client, keys)
        finally:
            replay.stop_if_running()
            detector.stop_if_running()
            client.close()
    assert live == expected  # none lost, none twice
    failovers = [line for line in log_lines(tmp_path / "logs") if line["event"] == "order_flow.bus_failover"]
    assert {line["service"] for line in failovers} == {"detector", "replay"}  # both saw it, and said so
    assert all(line["gone"] == [f"127.0.0.1:{victim}"] for line in failovers)


async def test_an_output_its_master_died_with_before_a_replica_had_it_is_published_again(tmp_path):
    """Replication is asynchronous: an output written just before its master dies can miss the replica promoted in
    its place. Made to happen for real: the outputs' replica is paused (SIGSTOP) and its link closed, an alert is
    published (its WAIT times out: kept as unconfirmed), the master is killed, the replica resumed and promoted —
    without the alert. :meth:`PublishOnce.confirm` publishes it on the new master; the alert confirmed before is
    not written twice."""
    with running_cluster() as own:
        bus = await Bus.connect(own.url, prefix="confirm")
        try:
            once = PublishOnce(bus)
            master = own.master_of(bus.keys.alerts)
            master_id = next(node.node_id for node in own.nodes() if node.port == master)
            replica = next(node.port for node in own.nodes() if node.master_id == master_id)
            status = FeedStatus(source="detector", state="gap", ts_event=1, ts_recv=1, symbols=("S00",))
            payload = encode(status)
            assert await once.publish("kept", bus.keys.alerts, "status", payload, remember_seconds=60) == PUBLISHED
            assert once.unconfirmed == {}  # the replica acknowledged it within the WAIT
            own.processes[replica].send_signal(signal.SIGSTOP)  # it cannot reconnect (nor read what its kernel holds)
            try:
                own.client(master).client_kill_filter(_type="replica")  # nothing written after this reaches it
                assert await once.publish("lost", bus.keys.alerts, "status", payload, remember_seconds=60) == PUBLISHED
                assert list(once.unconfirmed) == ["lost"]  # no replica acknowledged it: kept
                own.processes[master].kill()
                own.processes[master].wait(timeout=10)
            finally:
                own.processes[replica].send_signal(signal.SIGCONT)
            wait_for(
                lambda: {node.port: node for node in own.nodes(replica)}[replica].role == "master",
                30,
                f"replica {replica} promoted in place of master {master}",
            )
            wait_for(
                lambda: own.client(replica).xlen(bus.keys.alerts) == 1, 10, "the promoted replica serving the alerts"
            )
            for _ in range(20):  # the promoted master never had "lost": published again ("kept" is not written twice)
                await once.confirm()  # (the first round may still ask the dead master's address: redis-py re-routes)
                if not once.unconfirmed:
                    break
                await asyncio.sleep(0.1)
            assert once.unconfirmed == {}
            entries = await bus.read_range(bus.keys.alerts)
            assert len(entries) == 2
            assert (
                await once.publish("lost", bus.keys.alerts, "status", payload, remember_seconds=60) == ALREADY_PUBLISHED
            )
        finally:
            await bus.close()


async def test_a_blocking_read_after_polls_the_streams_of_every_master(cluster):
    bus = await Bus.connect(cluster.url, prefix="after")
    try:
        streams = [bus.keys.market(symbol) for symbol in SYMBOLS]
        assert len({cluster.master_of(stream) for stream in streams}) == 3
        await check_blocking_read_after(bus, streams)
    finally:
        await bus.close()
