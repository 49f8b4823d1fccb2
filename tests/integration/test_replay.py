"""Replay into a real Redis: every event lands, exactly as live ingest would publish it."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.wire import BookUpdate, Trade, decode, unbatched
from services.ingest.normalise import Normaliser
from services.ingest.rejects import Reject
from services.ingest.replay import SourceSpec, replay, replay_files
from services.ingest.sources import read_events
from services.tools.scenarios import write_scenario
from tests.support.cli import orderflow_environment, run_orderflow
from tests.support.paths import shared_data
from tests.support.streams import market_stream_events

pytestmark = pytest.mark.redis


def _expected_lobster_events(path: Path) -> tuple[int, int]:
    """(executions, book changes) counted straight from the raw files."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        messages = io.TextIOWrapper(archive.open(next(n for n in names if "_message_" in n)), encoding="ascii")
        books = io.TextIOWrapper(archive.open(next(n for n in names if "_orderbook_" in n)), encoding="ascii")
        executions = changes = 0
        previous = None
        for message, book in zip(messages, books, strict=True):
            kind = message.split(",")[1]
            executions += kind in ("4", "5", "6")
            if kind != "7" and book != previous:
                changes += 1
                previous = book
    return executions, changes


async def test_full_amzn_day_lands_on_the_stream(redis_url, key_prefix):
    path = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_5.zip")
    executions, changes = _expected_lobster_events(path)
    started = time.time_ns()
    async with await Bus.connect(redis_url, prefix=key_prefix, stream_max_length=400_000) as bus:
        summary = await replay_files(bus, SourceSpec("lobster", (path,)))
        stream = bus.keys.market("AMZN")
        assert summary.events_by_kind == {"trade": executions, "book": changes}
        events = await market_stream_events(bus, "AMZN")
        assert len(events) == executions + changes == 164_910
        assert await bus.client.xlen(stream) <= len(events) // 10  # several events an entry when replayed this fast
        for event in (events[0], events[-1]):
            assert event.ts_recv >= started  # stamped at publish
            assert event.ts_arrival == event.ts_event  # files have no receive times
        assert summary.rejects.total == 0 and summary.symbols == {"AMZN"}


async def test_in_process_replay_matches_the_normalised_source(redis_url, key_prefix, tmp_path):
    capture = tmp_path / "large.capture"
    write_scenario("large-sellers", capture)
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        summary = await replay(bus, read_events("capture", [capture]))
        published = await market_stream_events(bus, "DEMO")
    normaliser = Normaliser()
    expected = [normaliser.process(e) for e in read_events("capture", [capture]) if not isinstance(e, Reject)]
    expected = [e for e in expected if e is not None]
    assert len(published) == len(expected) == summary.published
    import msgspec

    assert [msgspec.structs.replace(e, ts_recv=0) for e in published] == [
        msgspec.structs.replace(e, ts_recv=0) for e in expected
    ]
    trades = [e for e in published if isinstance(e, Trade)]
    assert all(t.side in ("buy", "sell") for t in trades[100:])
    assert all(t.ts_arrival > t.ts_event for t in trades)  # recorded receive times kept


async def test_speed_paces_by_event_time(redis_url, key_prefix, tmp_path):
    events = [
        BookUpdate(
            symbol="PACE",
            ts_event=second * 10**9,
            ts_recv=0,
            ts_arrival=second * 10**9,
            bids=((10**9, 1),),
            asks=((2 * 10**9, 1),),
        )
        for second in range(5)
    ]
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        started = time.perf_counter()
        await replay(bus, events, speed=10.0)  # 4 s of market time at 10x: at least 0.4 s
        elapsed = time.perf_counter() - started
        assert await bus.client.xlen(bus.keys.market("PACE")) == 5
    assert elapsed >= 0.38


def test_cli_replay_of_a_scenario(redis_url, key_prefix, tmp_path):
    capture = tmp_path / "gap.capture"
    write_scenario("gap", capture)
    env = orderflow_environment(
        REDIS_URL=redis_url, ORDER_FLOW_KEY_PREFIX=key_prefix, COLUMNS="120", ORDER_FLOW_LOG_DIR=str(tmp_path / "logs")
    )
    done = run_orderflow("replay", "--format", "capture", str(capture), "--max-speed", env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "events published" in done.stdout and "events/s" in done.stdout
    import redis

    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(f"{key_prefix}:md:{{DEMO}}")
    client.close()
    events = [event for _id, fields in entries for event in unbatched(decode(next(iter(fields.values()))))]
    assert len(events) > 10_000 and len(entries) < len(events) // 10
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.jsonl"))
    assert '"event":"ingest.replay_finished"' in log


def test_cli_replay_to_a_dead_redis_fails_clearly(tmp_path):
    capture = tmp_path / "q.capture"
    write_scenario("two-sided", capture)
    from tests.support.redis_server import free_port

    env = orderflow_environment(
        REDIS_URL=f"redis://:hunter2secret@127.0.0.1:{free_port()}/0", ORDER_FLOW_LOG_DIR=str(tmp_path)
    )
    done = run_orderflow("replay", str(capture), env=env, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "redis unavailable" in done.stderr and "hunter2secret" not in done.stderr + done.stdout
