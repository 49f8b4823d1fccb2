"""The calibration worker beside the detector, on a real Redis: a position opened in a symbol with no profile gets
one from Polygon REST (the simulator serving Amazon's real day) with no command run by hand; the request and time
bounds; REST failing (500, 429, 401) logged with a code and tried again later; no key; a fresh profile fetching
nothing; the refresh before the open on a driven clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
import redis

from orderflow_client.bus.connection import Bus
from orderflow_client.logs import configure_logging
from orderflow_client.positions import PositionRegistry
from orderflow_client.wire import FeedStatus
from services.detector.calibration_worker import RETRY_BASE_SECONDS, CalibrationWorker
from services.detector.profile_store import ProfileStore, new_york_day, whole_trading_days
from services.detector.profiles import build_profile
from services.detector.service import DetectorService
from services.detector.threshold_fit import FitRules, thresholds_for
from services.offline.calibrate import RestHistory, trading_days
from services.tools.simulator import PolygonSimulator
from services.tools.simulator_timeline import load_timeline
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock
from tests.support.events import D, Feed, S
from tests.support.jsonl import log_lines
from tests.support.market_days import amzn_profile_from_files
from tests.support.paths import shared_data
from tests.support.polygon_rest_server import PolygonRestServer
from tests.support.waiting import wait_for_async

KEY = "calibration-test-key-5f1e"
NY = ZoneInfo("America/New_York")


def at(day: str, hour: int, minute: int = 0) -> int:
    """ns of ``day`` at ``hour:minute`` New York time."""
    moment = datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=NY)
    return int(moment.timestamp()) * S


def config_for(url: str, key_prefix: str, **settings: Any) -> OrderFlowConfig:
    return OrderFlowConfig(
        polygon_api_key=KEY,
        polygon_rest_url=url,
        key_prefix=key_prefix,
        threshold_mode="adaptive",
        **{"market_symbols": (), **settings},  # by default no index read beside the positions
    )


@contextlib.asynccontextmanager
async def running_detector(
    redis_url: str, key_prefix: str, config: OrderFlowConfig, now: int
) -> AsyncIterator[tuple[Bus, DetectorService, CalibrationWorker]]:
    """A detector running its loop, its calibration worker on a clock stopped at ``now`` (UTC ns)."""
    bus = await Bus.connect(redis_url, prefix=key_prefix)
    service = DetectorService(config, bus, refresh_seconds=0.1)
    worker = service.monitored.calibration
    worker.history = RestHistory(config)  # what the detect command gives the service
    worker.clock = lambda: now
    stop = asyncio.Event()
    running = asyncio.ensure_future(service.run(stop))
    try:
        yield bus, service, worker
        assert not running.done(), "the detector ended"
    finally:
        stop.set()
        await running
        await service.monitored.close()
        await bus.close()


async def open_position(bus: Bus, worker: CalibrationWorker, symbol: str) -> None:
    """Open a position in ``symbol`` and wait for the detector to ask the worker about it."""
    await PositionRegistry(bus).open(symbol, quantity=100, entry_price="10")
    await wait_for_async(lambda: symbol in worker.held, what=f"the detector to monitor {symbol}")


def status_records(redis_url: str, key_prefix: str, symbol: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange(f"{key_prefix}:status")
    finally:
        client.close()
    decoded = [msgspec.msgpack.decode(next(iter(fields.values()))) for _id, fields in entries]
    return [s for s in decoded if symbol in s["symbols"]]


def statuses(redis_url: str, key_prefix: str, symbol: str) -> list[tuple[str, str, str]]:
    return [(s["state"], s["code"], s["detail"]) for s in status_records(redis_url, key_prefix, symbol)]


async def settled(worker: CalibrationWorker) -> None:
    await wait_for_async(lambda: worker.outcomes and not worker.tasks, timeout=120, what="the calibration to end")


@pytest.fixture
def detector_log(tmp_path) -> Callable[[], list[dict[str, Any]]]:
    configure_logging(service="detector", log_dir=tmp_path / "log", secrets=[KEY], console=False)
    return lambda: log_lines(tmp_path / "log")


# --- a position in a new symbol: a profile within seconds, from the simulator's REST ---------------------------------
@pytest.fixture
async def amzn_rest():
    path, from_files = amzn_profile_from_files()
    archive = load_timeline("lobster", [path])
    simulator = await PolygonSimulator(
        archive[:50], api_key=KEY, speed=1000, loop_forever=False, archive=archive
    ).start()
    try:
        yield f"http://127.0.0.1:{simulator.port}", from_files
    finally:
        await simulator.stop()


@pytest.mark.redis
async def test_a_position_in_a_new_symbol_gets_a_profile_from_rest(redis_url, key_prefix, amzn_rest, detector_log):
    url, from_files = amzn_rest
    config = config_for(url, key_prefix, profile_days=1, profile_max_age_days=1, market_symbols=("SPY",))
    async with running_detector(redis_url, key_prefix, config, at("2012-06-22", 8)) as (bus, service, worker):
        started = time.monotonic()
        await open_position(bus, worker, "AMZN")
        await settled(worker)
        elapsed = time.monotonic() - started
        stored = await ProfileStore(bus).load("AMZN")
        assert "AMZN" not in service.engine.symbols  # no event yet: its first one starts the day on the profile
        trade = Feed("AMZN").trade(at("2012-06-22", 10), 220 * D, 100)
        await service.sink.publish(service.engine.process(trade))
        thresholds = service.engine.symbols["AMZN"].thresholds
    assert worker.outcomes == {"built": 1} and worker.held == {"AMZN"}  # SPY, read beside it, is no position
    assert stored is not None and stored.source == "rest" and stored.days == ("2012-06-21",)
    assert stored.daily_volume == from_files.daily_volume  # the same day as the file's
    assert thresholds.source == "profile" and thresholds.days == "2012-06-21"
    expected = thresholds_for(stored, FitRules(), source="profile", open_ns=None)
    assert (thresholds.large_order_size, thresholds.offer_size) == (expected.large_order_size, expected.offer_size)
    seen = statuses(redis_url, key_prefix, "AMZN")
    assert [(state, code) for state, code, _ in seen] == [
        ("calibrating", "profile_fetching"),
        ("calibrating", "profile_fetching"),
        ("calibrated", "profile"),
    ]
    bounds = f"at most {config.calibration_fetch_requests} requests, {config.calibration_fetch_seconds:g} s"
    assert seen[0][2].startswith(f"fetching 1 trading days of REST history ({bounds})")
    assert seen[1][2].startswith("1 of 1 days fetched, ") and " events" in seen[1][2]
    assert elapsed < 30, f"{elapsed:.1f} s"
    events = [line["event"] for line in detector_log()]
    assert "order_flow.calibration_started" in events and "order_flow.calibration_done" in events
    assert KEY not in json.dumps(detector_log())


@pytest.mark.redis
async def test_a_running_symbol_adopts_the_profile_mid_session(redis_url, key_prefix, amzn_rest):
    url, _from_files = amzn_rest
    config = config_for(url, key_prefix, profile_days=1, profile_max_age_days=1)
    async with running_detector(redis_url, key_prefix, config, at("2012-06-22", 10, 5)) as (bus, service, worker):
        await open_position(bus, worker, "AMZN")
        # the symbol runs on the session's own fit while the worker fetches
        outputs = service.engine.process(Feed("AMZN").trade(at("2012-06-22", 10), 220 * D, 100))
        own_fit = service.engine.symbols["AMZN"].thresholds
        await service.sink.publish(outputs)
        await settled(worker)
        stored = await ProfileStore(bus).load("AMZN")
        thresholds = service.engine.symbols["AMZN"].thresholds
    assert own_fit.source == "absolute" and worker.outcomes == {"built": 1}
    assert stored is not None and thresholds.source == "profile"
    expected = thresholds_for(stored, FitRules(), source="profile", open_ns=None)
    assert (thresholds.large_order_size, thresholds.offer_size) == (expected.large_order_size, expected.offer_size)
    seen = [(state, code) for state, code, _ in statuses(redis_url, key_prefix, "AMZN")]
    assert {("calibrating", "profile_fetching"), ("calibrating", "no_profile")} <= set(seen)
    assert seen[-1] == ("calibrated", "profile")
    # adopted at the symbol's own last event time (10:00 ET), not the worker's clock (10:05 ET)
    assert status_records(redis_url, key_prefix, "AMZN")[-1]["ts_event"] == at("2012-06-22", 10)


# --- bounds and failures, against a local REST server with hand-made pages ---------------------------------------
NOW = at("2024-06-21", 8)  # a Friday before the open: REST's last whole day is Thursday 2024-06-20
DAYS = trading_days(date(2024, 6, 20), 2)  # 2024-06-18, 2024-06-20 (06-19 is Juneteenth)


def quotes_page(day: date, next_url: str = "") -> bytes:
    start = at(day.isoformat(), 9, 30)
    rows = [
        {
            "ask_exchange": 11,
            "ask_price": 50.01,
            "ask_size": 5,
            "bid_exchange": 11,
            "bid_price": 50.0,
            "bid_size": 5,
            "conditions": [],
            "participant_timestamp": start + minute * 60 * S,
            "sequence_number": minute,
            "sip_timestamp": start + minute * 60 * S,
            "tape": 3,
        }
        for minute in range(0, 390, 5)
    ]
    return json.dumps({"results": rows, "status": "OK", **({"next_url": next_url} if next_url else {})}).encode()


def trades_page(day: date, next_url: str = "") -> bytes:
    start = at(day.isoformat(), 9, 30)
    rows = [
        {
            "conditions": [],
            "exchange": 4,
            "id": str(index),
            "participant_timestamp": start + index * 20 * S + S,
            "price": 50.0,
            "sequence_number": index,
            "sip_timestamp": start + index * 20 * S + S,
            "size": 100 + 100 * (index % 7),
            "tape": 3,
        }
        for index in range(1000)
    ]
    return json.dumps({"results": rows, "status": "OK", **({"next_url": next_url} if next_url else {})}).encode()


@pytest.mark.redis
async def test_the_request_bound_builds_from_the_whole_days_fetched(redis_url, key_prefix, detector_log):
    with PolygonRestServer() as server:
        newest, older = DAYS[1], DAYS[0]
        endless = f"{server.url}/v3/trades/XYZ?cursor=1"  # a day of trades too long for the bound
        server.routes["/v3/quotes/XYZ"] = [(200, {}, quotes_page(newest)), (200, {}, quotes_page(older))]
        server.routes["/v3/trades/XYZ"] = [(200, {}, trades_page(newest)), (200, {}, trades_page(older, endless))]
        config = config_for(server.url, key_prefix, profile_days=2, calibration_fetch_requests=6)
        async with running_detector(redis_url, key_prefix, config, NOW) as (bus, _service, worker):
            await open_position(bus, worker, "XYZ")
            await settled(worker)
            stored = await ProfileStore(bus).load("XYZ")
        requests = list(server.requests)
    assert len(requests) == 6  # the bound: then the older day, cut short, is left out
    assert all(authorization == f"Bearer {KEY}" for _path, query, authorization in requests)
    assert all("apiKey" not in query for _path, query, _authorization in requests)
    assert worker.outcomes == {"bounded": 1} and worker.last_progress["XYZ"].stopped == "requests"
    assert (
        stored is not None
        and stored.days == (newest.isoformat(),)
        and stored.daily_volume == sum(100 + 100 * (i % 7) for i in range(1000))
    )
    bounded = [line for line in detector_log() if line["event"] == "order_flow.calibration_bounded"]
    assert [(line["bound"], line["days_done"], line["requests"]) for line in bounded] == [("requests", 1, 6)]
    progress = [detail for _state, code, detail in statuses(redis_url, key_prefix, "XYZ") if code == "profile_fetching"]
    assert progress[1].startswith("1 of 2 days fetched, 2 requests, ")


@pytest.mark.redis
async def test_a_hanging_rest_server_stops_at_the_time_bound(redis_url, key_prefix):
    with PolygonRestServer() as server:
        server.routes["/v3/quotes/XYZ"] = [(200, {}, quotes_page(DAYS[1]))]
        server.delays["/v3/quotes/XYZ"] = 5.0  # hangs past the bound
        config = config_for(server.url, key_prefix, profile_days=1, calibration_fetch_seconds=1.0)
        async with running_detector(redis_url, key_prefix, config, NOW) as (bus, service, worker):
            await open_position(bus, worker, "XYZ")
            started = time.monotonic()
            await settled(worker)
            elapsed = time.monotonic() - started
            stored = await ProfileStore(bus).load("XYZ")
            own_fit = service.engine.engine_for("XYZ").thresholds  # the session's own fit goes on
    assert elapsed < 3.0, f"{elapsed:.2f} s"
    assert stored is None and worker.outcomes == {"seconds_bound": 1}
    assert own_fit.source == "absolute"
    last = statuses(redis_url, key_prefix, "XYZ")[-1]
    assert last[:2] == ("calibrating", "profile_unavailable") and "(seconds_bound)" in last[2]


@pytest.mark.redis
@pytest.mark.parametrize(
    ("status", "code"), [(500, "rest_unavailable"), (429, "rest_unavailable"), (401, "rest_error")]
)
async def test_rest_failing_is_logged_and_tried_again_later(redis_url, key_prefix, detector_log, status, code):
    with PolygonRestServer() as server:
        body = json.dumps({"status": "ERROR", "error": "nope"}).encode()
        server.routes["/v3/quotes/XYZ"] = [(status, {"Retry-After": "0"} if status == 429 else {}, body)]
        server.routes["/v3/trades/XYZ"] = [(status, {}, body)]
        config = config_for(server.url, key_prefix, profile_days=1)
        async with running_detector(redis_url, key_prefix, config, NOW) as (bus, _service, worker):
            await open_position(bus, worker, "XYZ")
            await settled(worker)
            first = len(server.requests)
            worker.tick(["XYZ"], now=NOW + 10 * S)  # not due yet: nothing fetched
            await asyncio.sleep(0.3)  # the detector's own refreshes go on (its clock: NOW)
            assert not worker.tasks and len(server.requests) == first
            retry_at = NOW + int(RETRY_BASE_SECONDS + 1) * S
            worker.tick(["XYZ"], now=retry_at)
            await wait_for_async(lambda: worker.outcomes[code] == 2 and not worker.tasks, what="the retry")
            failures = worker.failures["XYZ"]
    assert first == (1 if status == 401 else 3)  # a 401 is not retried; 5xx and 429 three times
    assert failures == (2, retry_at + int(2 * RETRY_BASE_SECONDS) * S)
    failed = [line for line in detector_log() if line["event"] == "order_flow.calibration_failed"]
    assert [(line["code"], line["retry_in_seconds"]) for line in failed] == [(code, 60.0), (code, 120.0)]
    retries = [line for line in detector_log() if line["event"] == "order_flow.rest_retry"]  # logged by the child
    assert len(retries) == (0 if status == 401 else 4)  # two fetches, each two retries of its first request
    assert all(line["service"] == "detector" for line in retries)
    assert KEY not in json.dumps(detector_log())


@pytest.mark.redis
async def test_no_key_keeps_the_old_behaviour_with_one_log_line(redis_url, key_prefix, detector_log):
    config = OrderFlowConfig(key_prefix=key_prefix, threshold_mode="adaptive", polygon_api_key=None, market_symbols=())
    async with running_detector(redis_url, key_prefix, config, NOW) as (bus, service, worker):
        for symbol in ("XYZ", "ABC"):
            await PositionRegistry(bus).open(symbol, quantity=5, entry_price="10")
            await wait_for_async(lambda s=symbol: s in service.engine.profiles or _missing_logged(detector_log, s))
        await asyncio.sleep(0.3)  # a few more refreshes
        outputs = service.engine.process(Feed("XYZ").trade(at("2024-06-21", 10), 50 * D, 100))
    events = [line["event"] for line in detector_log()]
    assert events.count("order_flow.calibration_unavailable") == 1
    assert events.count("order_flow.profile_missing") == 2 and not worker.tasks and not worker.outcomes
    assert [(o.state, o.code) for o in outputs if isinstance(o, FeedStatus)] == [("calibrating", "no_profile")]


def _missing_logged(detector_log: Callable[[], list[dict[str, Any]]], symbol: str) -> bool:
    return any(line["event"] == "order_flow.profile_missing" and line["symbol"] == symbol for line in detector_log())


@pytest.mark.redis
async def test_a_fresh_stored_profile_fetches_nothing_and_the_open_refreshes_it(redis_url, key_prefix, amzn_rest):
    url, from_files = amzn_rest
    config = config_for(url, key_prefix, profile_days=2, profile_max_age_days=3)
    monday_early = at("2012-06-25", 6)  # three trading days after the profile's newest session: still fresh
    async with running_detector(redis_url, key_prefix, config, monday_early) as (bus, _service, worker):
        await ProfileStore(bus).save(from_files)  # newest session 2012-06-21 (Thursday)
        await open_position(bus, worker, "AMZN")
        await settled(worker)
        assert worker.outcomes == {"fresh": 1} and worker.last_progress == {}
        worker.tick(["AMZN"], now=at("2012-06-25", 8, 59))  # 31 minutes before the open: not yet
        assert not worker.tasks
        # 30 minutes before Monday's open: the profile lacks Friday 2012-06-22, the refresh rebuilds it
        worker.tick(["AMZN"], now=at("2012-06-25", 9, 0))
        assert set(worker.tasks) == {"AMZN"}
        await wait_for_async(lambda: worker.outcomes["built"] and not worker.tasks, timeout=120, what="the refresh")
        worker.tick(["AMZN"], now=at("2012-06-25", 9, 10))  # once per day
        assert not worker.tasks
        stored = await ProfileStore(bus).load("AMZN")
    # the simulator's archive holds 2012-06-21 only: Friday came back empty, the profile is rebuilt from Thursday
    assert worker.outcomes == {"fresh": 1, "built": 1}
    assert worker.last_progress["AMZN"].days_done == 2 and worker.last_progress["AMZN"].requests >= 4
    assert stored is not None and stored.source == "rest" and stored.days == ("2012-06-21",)


def test_the_worker_s_trading_days_are_calibrate_s():
    """The days the worker fetches and judges freshness by (the shipped session table) are ``orderflow calibrate``'s
    (pandas-market-calendars): every day of 2012 and of 2024 (holidays, Juneteenth from 2022), a week back."""
    sessions = SessionClock()
    for year in (2012, 2024):
        calendar = trading_days(date(year, 12, 31), 260)  # one pandas call: every trading day of the year
        day = date(year, 1, 15)
        while day.year == year:
            now = at(day.isoformat(), 8)
            expected = [d for d in calendar if d < new_york_day(now)][-5:]
            assert whole_trading_days(sessions, now, 5) == expected, day
            day += timedelta(days=1)
    assert whole_trading_days(sessions, NOW, 2) == [date(2024, 6, 18), date(2024, 6, 20)]
    assert new_york_day(at("2024-06-20", 23, 30)) == date(2024, 6, 20)  # 03:30 UTC the next day


@pytest.mark.redis
async def test_a_stale_profile_is_rebuilt_quietly_keeping_its_older_sessions(redis_url, key_prefix, amzn_rest):
    url, from_files = amzn_rest
    older = msgspec.structs.replace(from_files.sessions[0], day="2012-06-20")  # a session the REST side lacks
    stale = build_profile("AMZN", [older], source="files", built_utc="2012-06-21T00:00:00Z", profile_days=3)
    config = config_for(url, key_prefix, profile_days=3, profile_max_age_days=1)
    async with running_detector(redis_url, key_prefix, config, at("2012-06-25", 7)) as (bus, service, worker):
        await ProfileStore(bus).save(stale)  # newest session 2012-06-20: older than the last trading day, 06-22
        await open_position(bus, worker, "AMZN")
        await settled(worker)
        stored = await ProfileStore(bus).load("AMZN")
        handed = service.engine.profiles["AMZN"]
    assert worker.outcomes == {"built": 1} and worker.last_progress["AMZN"].days_done == 3
    assert stored is not None and stored == handed and stored.days == ("2012-06-20", "2012-06-21")
    assert stored.sessions[0] == older and stored.sessions[1].volume == from_files.sessions[0].volume
    assert statuses(redis_url, key_prefix, "AMZN") == []  # it ran on the stale profile meanwhile: no calibrating


class BrokenSource:
    """A history source with a defect (an in-process one: no ``runs_in_process``)."""

    def fetch(self, symbol, days, cancelled, on_day):
        raise ValueError("a defect in the source")


@pytest.mark.redis
async def test_close_cancels_the_recording_of_a_defect_s_failure(redis_url, key_prefix):
    config = config_for("http://127.0.0.1:9", key_prefix, profile_days=1)
    async with running_detector(redis_url, key_prefix, config, NOW) as (bus, _service, worker):
        worker.history = BrokenSource()
        stuck = asyncio.Event()

        async def status_hanging(symbol: str, code: str, detail: str) -> None:
            if code == "profile_unavailable":
                stuck.set()
                await asyncio.Event().wait()  # Redis hanging: the failure's status never goes out

        worker._status = status_hanging  # type: ignore[method-assign]
        await open_position(bus, worker, "XYZ")
        await asyncio.wait_for(stuck.wait(), 10)
        failing = set(worker.failing)
        assert len(failing) == 1 and not worker.tasks
        await worker.close()
    assert all(task.cancelled() for task in failing) and not worker.failing
    assert worker.outcomes == {"internal_error": 1}


def _served_pages(url: str, port: int, server_url: str) -> dict[str, list[tuple[int, dict, bytes]]]:
    """Amazon's day of REST pages, read once from the simulator and served by a threaded server (the simulator
    builds its pages on the test's event loop, which would be measured too); ``next_url`` points to the server."""
    from services.ingest.polygon_rest_client import PolygonRest

    rest = PolygonRest(KEY, url, client=OrderFlowConfig().polygon_client)
    start = at("2012-06-21", 0) - at("2012-06-21", 0) % (86_400 * S)
    params = {"timestamp.gte": start, "timestamp.lt": start + 86_400 * S, "order": "asc", "limit": 50_000}
    routes: dict[str, list[tuple[int, dict, bytes]]] = {}
    try:
        for kind in ("quotes", "trades"):
            bodies = [
                body.replace(f"127.0.0.1:{port}".encode(), server_url.removeprefix("http://").encode())
                for body in rest.pages(f"/v3/{kind}/AMZN", params)
            ]
            routes[f"/v3/{kind}/AMZN"] = [(200, {}, body) for body in bodies]
    finally:
        rest.close()
    return routes


async def _loop_lag_during_calibration(
    redis_url: str, key_prefix: str, url: str, in_process: bool
) -> tuple[list[float], float]:
    """The detector's event loop lag (ms: how late each ``sleep(0.01)`` wakes) while the worker builds Amazon's
    profile from REST pages, and how long the calibration took (s)."""
    port = int(url.rsplit(":", 1)[1])
    lags: list[float] = []
    with PolygonRestServer() as server:
        server.routes.update(await asyncio.to_thread(_served_pages, url, port, server.url))
        config = config_for(server.url, key_prefix, profile_days=1, profile_max_age_days=1)
        async with running_detector(redis_url, key_prefix, config, at("2012-06-22", 8)) as (bus, _service, worker):
            history = RestHistory(config)
            history.runs_in_process = in_process
            worker.history = history
            if in_process:  # the child's start (spawn: a fresh interpreter) is not what is measured
                await worker.process.fetch(history, "NONE", [], lambda progress: None)
            done = asyncio.Event()

            async def ticker() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    await asyncio.sleep(0.01)
                    lags.append((time.perf_counter() - started - 0.01) * 1000)

            ticking = asyncio.ensure_future(ticker())
            started = time.monotonic()
            await open_position(bus, worker, "AMZN")
            await settled(worker)
            elapsed = time.monotonic() - started
            done.set()
            await ticking
            assert worker.outcomes == {"built": 1}
    return sorted(lags), elapsed


@pytest.mark.redis
async def test_the_fetch_in_a_child_process_leaves_the_detector_s_loop_responsive(
    redis_url, key_prefix, amzn_rest, capsys
):
    """Before: the fetch and the replay ran in a thread, holding the GIL against the loop. After: a child process."""
    url, _from_files = amzn_rest
    measured = {}
    for in_process in (False, True):
        lags, elapsed = await _loop_lag_during_calibration(
            redis_url, f"{key_prefix}.{int(in_process)}", url, in_process
        )
        median, p99, worst = lags[len(lags) // 2], lags[int(len(lags) * 0.99)], lags[-1]
        measured[in_process] = (median, p99)
        with capsys.disabled():
            where = "child process" if in_process else "thread"
            print(
                f"\nloop lag during calibration ({where}): {len(lags)} ticks over {elapsed:.1f} s, "
                f"median {median:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms"
            )
    # a thread wakes the loop late by the GIL's switch interval (5 ms) at each tick; a child process does not
    assert measured[True][0] * 3 < measured[False][0], measured
    assert measured[True][1] < 20.0, measured


@pytest.mark.redis
async def test_a_stop_ends_the_child_s_fetch_at_its_next_request(redis_url, key_prefix):
    with PolygonRestServer() as server:
        endless = f"{server.url}/v3/trades/XYZ?cursor=1"
        server.routes["/v3/quotes/XYZ"] = [(200, {}, quotes_page(DAYS[1]))]
        server.routes["/v3/trades/XYZ"] = [(200, {}, trades_page(DAYS[1], endless))]
        server.delays["/v3/trades/XYZ"] = 0.5
        config = config_for(server.url, key_prefix, profile_days=1, calibration_fetch_seconds=60.0)
        async with running_detector(redis_url, key_prefix, config, NOW) as (bus, _service, worker):
            await open_position(bus, worker, "XYZ")
            await wait_for_async(lambda: len(server.requests) >= 2, what="the child to fetch")
            started = time.monotonic()
            await worker.close()
            stopped = time.monotonic() - started
            fetched = len(server.requests)
            await asyncio.sleep(1.0)
    assert stopped < 3.0, f"{stopped:.2f} s"
    assert len(server.requests) == fetched  # the child fetches no more
    assert not worker.tasks and not worker.outcomes  # cancelled: neither built nor failed


def _sampled_amzn_day(url: str, page_rows: int) -> tuple[list[tuple[int, int]], list[Any], int]:
    """Amazon's day from the simulator's REST, its quotes sampled: the quote windows asked for, the events, the
    number of requests."""
    from services.ingest.http_retries import FetchBudget
    from services.offline.calibrate import QUOTE_SLICE_SECONDS, QUOTE_SLICES, bounded_rest, quote_windows, rest_events

    config = config_for(url, "unused")
    budget = FetchBudget(1000, 120.0)
    rest = bounded_rest(config, budget)
    try:
        events = list(rest_events(rest, "AMZN", date(2012, 6, 21), quote_slices=QUOTE_SLICES, page_rows=page_rows))
    finally:
        rest.close()
    return quote_windows(date(2012, 6, 21), QUOTE_SLICES, QUOTE_SLICE_SECONDS), events, budget.requests


async def test_a_liquid_day_s_quotes_are_sampled_and_its_trades_read_whole(amzn_rest):
    """Amazon's day with pages of 5,000 rows (some 55,000 quotes: 12 pages): the first page and 13 slices of 2 minutes
    of quotes, every trade; the profile's volume and curve are the whole day's, its offer sizes and spread close."""
    from orderflow_client.wire import Quote, Trade
    from services.offline.calibrate import sessions_from_events

    url, from_files = amzn_rest
    windows, events, requests = await asyncio.to_thread(_sampled_amzn_day, url, 5_000)
    quotes = [event for event in events if isinstance(event, Quote)]
    gaps = [quote for quote in quotes if quote.ask_price == 0 and quote.bid_price == 0]
    first_page_end = gaps[0].ts_event
    assert len(windows) == 13 and windows[0] == (at("2012-06-21", 9, 44), at("2012-06-21", 9, 46))
    sampled = [quote for quote in quotes if quote.ask_price or quote.bid_price]
    assert all(q.ts_event < first_page_end or any(low <= q.ts_event < high for low, high in windows) for q in sampled)
    assert [gap.ts_event for gap in gaps[1:]] == [high for _low, high in windows if high > first_page_end]
    trades = sum(isinstance(event, Trade) for event in events)
    sessions = sessions_from_events(iter(events), config_for(url, "unused"))["AMZN"]
    built = build_profile("AMZN", sessions, source="rest", built_utc="2012-06-22T12:00:00Z", profile_days=1)
    offers, offers_full = dict(built.offer_size_quantiles), dict(from_files.offer_size_quantiles)
    print(
        f"\nsampled: {len(sampled):,} quotes, {trades:,} trades, {requests} requests; "
        f"offer q0.999 {offers[0.999]} vs {offers_full[0.999]}, q0.99 {offers[0.99]} vs {offers_full[0.99]}, "
        f"spread {built.spread_bps} vs {from_files.spread_bps} bps, large order q0.999 "
        f"{dict(built.order_size_quantiles)[0.999]} vs {dict(from_files.order_size_quantiles)[0.999]}"
    )
    assert built.daily_volume == from_files.daily_volume and built.volume_curve == from_files.volume_curve
    assert requests <= 1 + 13 + 3  # the first quotes page, a page per window (2 minutes of AMZN), 3 of trades
    assert abs(offers[0.999] - offers_full[0.999]) <= 0.3 * offers_full[0.999]
    assert abs(built.spread_bps - from_files.spread_bps) <= 0.3 * from_files.spread_bps
    # the aggressive sells are those inside the windows (a sell needs the bid it hits): fewer orders
    assert 0 < sum(sessions[0].order_sizes.values()) < sum(from_files.sessions[0].order_sizes.values())


# --- the beta to the index: the index's minute aggregates fetched beside the stock's days ----------------------------
BAC_DAY = "20131007"


@pytest.fixture
async def bac_spy_rest():
    """The simulator serving Bank of America's real day (trades and quotes) and SPY's trades of the same day."""
    paths = [shared_data("algoseek", "bac", f"{BAC_DAY}_{kind}.zip") for kind in ("trade", "quote")]
    spy = shared_data("algoseek", "spy", f"{BAC_DAY}_trade.zip")
    archive = await asyncio.to_thread(load_timeline, "algoseek", [*paths, spy])
    simulator = await PolygonSimulator(
        archive[:50], api_key=KEY, speed=1000, loop_forever=False, archive=archive
    ).start()
    try:
        yield f"http://127.0.0.1:{simulator.port}", spy
    finally:
        await simulator.stop()


def _spy_sessions(spy: Any) -> list[Any]:
    """SPY's session as the rules engine records it from its file (minute mids: the last print of each minute)."""
    from services.ingest.sources import read_events
    from services.offline.calibrate import sessions_from_events

    return sessions_from_events(read_events("algoseek", [spy]), OrderFlowConfig())["SPY"]


@pytest.mark.redis
async def test_a_new_position_s_profile_carries_its_beta_to_the_index(
    redis_url, key_prefix, bac_spy_rest, detector_log
):
    """BAC's profile built from the simulator's REST carries its beta to SPY from SPY's minute aggregates of the same
    day: exactly ``build_profile``'s from BAC's fetched session and SPY's session recorded from its file; the next
    day, an alert's market context uses it."""
    url, spy = bac_spy_rest
    config = config_for(url, key_prefix, profile_days=1, profile_max_age_days=1, market_symbols=("SPY",))
    async with running_detector(redis_url, key_prefix, config, at("2013-10-08", 8)) as (bus, service, worker):
        await open_position(bus, worker, "BAC")
        await settled(worker)
        stored = await ProfileStore(bus).load("BAC")
        # the next day, 10:00–10:05 ET: SPY falls 1 cent every 5 s, BAC's quote with it
        spy_feed, bac_feed = Feed("SPY"), Feed("BAC")
        for step in range(61):
            ts = at("2013-10-08", 10) + step * 5 * S
            spy_price = 169 * D - step * D // 100
            service.engine.process(spy_feed.trade(ts, spy_price, 100))
            service.engine.process(bac_feed.quote(ts + S, bid=14 * D - step * D // 1000, ask=14 * D + D // 100))
        assert service.engine.market is not None
        context = service.engine.market.context("BAC", at("2013-10-08", 10, 5))
    progress = worker.last_progress["BAC"]
    assert worker.outcomes == {"built": 1} and progress.index == "SPY" and progress.index_missing == ""
    assert stored is not None and stored.days == ("2013-10-07",) and stored.beta_index == "SPY"
    expected = build_profile(
        "BAC",
        list(stored.sessions),
        source="rest",
        built_utc=stored.built_utc,
        profile_days=1,
        index="SPY",
        index_sessions=_spy_sessions(spy),
    )
    assert stored == expected and 0.2 < stored.beta < 3.0, stored.beta
    done = [line for line in detector_log() if line["event"] == "order_flow.calibration_done"]
    assert [(line["beta"], line["beta_index"], line["beta_missing"]) for line in done] == [(stored.beta, "SPY", None)]
    assert context.index == "SPY" and context.label != "unknown" and context.beta == stored.beta
    assert abs(context.expected_return_bps - stored.beta * context.index_return_bps) < 0.05
    print(f"\nBAC's beta to SPY on 2013-10-07 (REST, {progress.requests} requests): {stored.beta}; {context.reason}")


@pytest.mark.redis
@pytest.mark.parametrize("failure", ["aggregates_500", "request_bound"])
async def test_the_index_s_aggregates_failing_leave_the_profile_without_beta(
    redis_url, key_prefix, detector_log, failure
):
    newest = DAYS[1]
    with PolygonRestServer() as server:
        server.routes["/v3/quotes/XYZ"] = [(200, {}, quotes_page(newest))]
        server.routes["/v3/trades/XYZ"] = [(200, {}, trades_page(newest))]
        aggregates = f"/v2/aggs/ticker/SPY/range/1/minute/{newest}/{newest}"
        server.routes[aggregates] = [(500, {}, b'{"status":"ERROR","error":"down"}')]
        bound = 2 if failure == "request_bound" else 200  # the stock's day spends both requests
        config = config_for(
            server.url, key_prefix, profile_days=1, market_symbols=("SPY",), calibration_fetch_requests=bound
        )
        async with running_detector(redis_url, key_prefix, config, NOW) as (bus, _service, worker):
            await open_position(bus, worker, "XYZ")
            await settled(worker)
            stored = await ProfileStore(bus).load("XYZ")
        asked = [path for path, _query, _authorization in server.requests if path.startswith("/v2/aggs/ticker/SPY/")]
    assert worker.outcomes == {"built": 1} and stored is not None and stored.days == (newest.isoformat(),)
    assert (stored.beta, stored.beta_index) == (0.0, "")
    missing = worker.last_progress["XYZ"].index_missing
    done = [line for line in detector_log() if line["event"] == "order_flow.calibration_done"]
    assert [line["beta_missing"] for line in done] == [missing] and done[0]["beta"] is None
    if failure == "request_bound":
        assert asked == [] and missing == "the requests bound reached before SPY's minute aggregates"
    else:
        assert asked == [aggregates] * 3 and missing.startswith("SPY's minute aggregates failed (rest_unavailable)")
