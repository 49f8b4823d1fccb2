"""Adaptive thresholds live: calibration from Polygon REST (the simulator) and the detector giving analyze's alert
ids with the same profile, on a real Redis."""

from __future__ import annotations

import asyncio
import signal

import msgspec
import pytest
import redis

from orderflow_client.bus.connection import Bus
from services.detector.profile_store import ProfileStore
from services.offline.analyze import analyze
from services.offline.calibrate import read_profiles
from services.tools.simulator import PolygonSimulator
from services.tools.simulator_timeline import load_timeline
from shared.config import OrderFlowConfig
from tests.support.cli import ORDERFLOW, redis_environment, start_orderflow
from tests.support.jsonl import read_jsonl
from tests.support.market_days import AIG_DAYS, aig, amzn_profile_from_files
from tests.support.paths import REPO
from tests.support.streams import alert_ids, caught_up
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def amzn_profile():
    return amzn_profile_from_files()


@pytest.mark.redis
async def test_calibration_from_polygon_rest_through_the_simulator(redis_url, key_prefix, amzn_profile, tmp_path):
    path, from_files = amzn_profile
    archive = load_timeline("lobster", [path])
    simulator = await PolygonSimulator(
        archive[:50], api_key="rest-key", speed=1000, loop_forever=False, archive=archive
    ).start()
    try:
        environment = redis_environment(
            redis_url,
            key_prefix,
            tmp_path,
            POLYGON_API_KEY="rest-key",
            ORDER_FLOW_POLYGON_REST_URL=f"http://127.0.0.1:{simulator.port}",
        )
        process = await asyncio.create_subprocess_exec(
            *ORDERFLOW,
            "calibrate",
            "AMZN",
            "--days",
            "1",
            "--end",
            "2012-06-21",
            "--out",
            str(tmp_path),
            cwd=REPO,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    finally:
        await simulator.stop()
    assert process.returncode == 0, stdout.decode() + stderr.decode()
    assert "stored 1 profile" in stdout.decode() and "rest-key" not in stdout.decode() + stderr.decode()
    async with await Bus.connect(redis_url, prefix=key_prefix) as bus:
        stored = await ProfileStore(bus).load("AMZN")
    assert stored == read_profiles([tmp_path / "AMZN.json"])["AMZN"]
    assert stored.source == "rest" and stored.days == ("2012-06-21",)
    # the same day through REST: the same volume; sides re-inferred (Lee-Ready), so order sizes agree closely
    assert stored.daily_volume == from_files.daily_volume
    rest_q, file_q = dict(stored.order_size_quantiles), dict(from_files.order_size_quantiles)
    assert abs(rest_q[0.99] - file_q[0.99]) <= 0.1 * file_q[0.99]


@pytest.mark.redis
def test_the_detector_gives_analyze_s_alert_ids_with_the_same_profile(redis_url, key_prefix, tmp_path):
    # the whole day stays on the stream (610,758 events; the default cap trims it before the detector reads it)
    environment = redis_environment(
        redis_url, key_prefix, tmp_path, ORDER_FLOW_THRESHOLD_MODE="adaptive", ORDER_FLOW_STREAM_MAX_LENGTH="1000000"
    )
    calibrated = start_orderflow(
        "calibrate",
        "AIG",
        "--format",
        "algoseek",
        *[f"--file={p}" for p in aig(AIG_DAYS[0])],
        "--out",
        str(tmp_path / "profiles"),
        env=environment,
    )
    calibrated.expect_exit(0, timeout=180)
    profile = read_profiles([tmp_path / "profiles" / "AIG.json"])["AIG"]
    offline = tmp_path / "offline"
    analyze("algoseek", aig(AIG_DAYS[1]), offline, OrderFlowConfig(), profiles={"AIG": profile})
    expected_alerts = sorted(a["id"] for a in read_jsonl(offline / "alerts.jsonl"))
    expected_exits = sorted(e["id"] for e in read_jsonl(offline / "exits.jsonl"))
    assert expected_alerts and {
        a["evidence"].get("threshold_source") for a in read_jsonl(offline / "alerts.jsonl")
    } <= {
        "profile",
        "intraday_curve",
        "trailing_baseline",
    }
    replayed = start_orderflow("replay", "--format", "algoseek", *map(str, aig(AIG_DAYS[1])), env=environment)
    replayed.expect_exit(0, timeout=180)
    detector = start_orderflow("detect", "--symbol", "AIG", env=environment)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: caught_up(client, key_prefix, ["AIG"]), timeout=180, what="the detector to catch up")
        import urllib.request

        scraped = (
            urllib.request.urlopen(f"http://127.0.0.1:{environment['ORDER_FLOW_METRICS_PORT']}/metrics", timeout=5)
            .read()
            .decode()
        )
        large = dict(
            thresholds_line.split(" ")
            for thresholds_line in scraped.splitlines()
            if thresholds_line.startswith("orderflow_threshold_shares{")
        )
        assert 'orderflow_calibrated{symbol="AIG"} 1.0' in scraped
        assert float(large['orderflow_threshold_shares{kind="large_order",symbol="AIG"}']) == profile_threshold(profile)
        detector.send_signal(signal.SIGTERM)
        detector.expect_exit(0, timeout=30)
        live_alerts = sorted(alert_ids(client, f"{key_prefix}:alerts"))
        live_exits = sorted(alert_ids(client, f"{key_prefix}:exits"))
        statuses = [
            msgspec.msgpack.decode(next(iter(fields.values()))) for _id, fields in client.xrange(f"{key_prefix}:status")
        ]
    finally:
        detector.stop_if_running()
        client.close()
    assert live_alerts == expected_alerts and live_exits == expected_exits
    assert [(s["state"], s["code"]) for s in statuses if s["state"].startswith("calibrat")] == [
        ("calibrated", "profile")
    ]


def profile_threshold(profile) -> int:
    from services.detector.threshold_fit import FitRules, thresholds_for

    return thresholds_for(profile, FitRules(), source="profile", open_ns=None).large_order_size
