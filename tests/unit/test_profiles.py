"""Adaptive thresholds: quantiles, profiles of real days, walk-forward, calibration, REST, the detector."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from pathlib import Path

import msgspec
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow_client.bus import Bus
from orderflow_client.wire import FeedStatus, OrderFlowAlert, Quote, Trade
from services.detector.engine import Engine, RuleSettings
from services.detector.profile_store import ProfileStore
from services.detector.profiles import (
    PROFILE_VERSION,
    ProfileError,
    decode_profile,
    encode_profile,
    tail_quantile,
    weighted_quantile,
)
from services.ingest.lobster import read_lobster
from services.ingest.sources import read_events
from services.offline.analyze import analyze
from services.offline.calibrate import profiles_from_events, read_profiles, write_profile
from services.tools.simulator import PolygonSimulator, load_timeline
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock
from tests.support.paths import shared_data
from tests.test_detector_service import REPO, _alert_ids, _caught_up, _environment, _jsonl, _orderflow, _wait_for
from tests.support.events import OPEN, D, Feed, S

AIG_DAYS = ("20131007", "20131008")


def aig(*days: str) -> list[Path]:
    return [shared_data("algoseek", "aig", f"{day}_{kind}.zip") for day in days for kind in ("trade", "quote")]


# --- quantiles ---------------------------------------------------------------------------


@given(
    st.dictionaries(st.integers(1, 10**6), st.integers(1, 50), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.9, 0.99, 0.999]),
)
def test_weighted_quantile_is_the_smallest_value_reaching_q_of_the_sample(weights, q):
    sample = sorted(value for value, count in weights.items() for _ in range(count))
    assert weighted_quantile(weights, q) == sample[max(0, math.ceil(q * len(sample)) - 1)]


@settings(max_examples=200)
@given(st.dictionaries(st.integers(1, 10**6), st.integers(1, 30), min_size=2, max_size=80))
def test_a_small_sample_is_extrapolated_never_below_its_maximum(weights):
    total = sum(weights.values())
    result = tail_quantile(weights, 0.999)
    if total >= 1000:
        assert result == weighted_quantile(weights, 0.999)
    else:
        assert result >= max(weights)


@settings(max_examples=200)
@given(
    st.dictionaries(st.integers(1, 10**6), st.integers(1, 30), min_size=2, max_size=80),
    st.sampled_from([0.99, 0.999]),
    st.integers(1, 40),
)
def test_the_upper_bound_is_never_below_the_estimate_and_tightens_with_more_observations(weights, q, more):
    """The same sample seen ``more`` times over: the bound can only come down toward the estimate, which it never undercuts."""
    bound = tail_quantile(weights, q, 0.95)
    assert bound >= tail_quantile(weights, q)
    repeated = {value: count * more for value, count in weights.items()}
    assert tail_quantile(repeated, q) <= tail_quantile(repeated, q, 0.95) <= max(bound, max(weights))
    if sum(weights.values()) * (1 - q) >= 1:  # an order statistic: never beyond the sample
        assert bound <= max(weights)


def test_the_extrapolation_follows_a_log_normal_sample():
    # ~750 orders shaped like a log-normal with median 300 and sigma 1: its 0.999 quantile is 300·e^3.09 ≈ 6,600
    weights = {
        round(300 * math.exp(z / 10)): max(1, round(30 * math.exp(-((z / 10) ** 2) / 2))) for z in range(-30, 31)
    }
    assert sum(weights.values()) < 1000
    assert 6_000 < tail_quantile(weights, 0.999) < 8_500


# --- a profile of a real day -----------------------------------------------------------------


@pytest.fixture(scope="module")
def amzn_profile():
    path = shared_data("lobster", "LOBSTER_SampleFile_AMZN_2012-06-21_1.zip")
    return path, profiles_from_events(read_lobster(path), OrderFlowConfig(), source="files")["AMZN"]


def test_a_profile_sums_up_the_regular_session_of_a_real_day(amzn_profile):
    path, profile = amzn_profile
    conditions, clock = ConditionTable.bundled(), SessionClock()
    volume = 0
    book_times = []
    prices = []
    for event in read_lobster(path):
        if clock.session(event.ts_event) != "regular":
            continue
        if type(event) is Trade and conditions.classify(event.conditions, event.correction).aggressive:
            volume += event.size
            prices.append(event.price)
        elif type(event).__name__ == "BookUpdate" and event.asks:
            book_times.append(event.ts_event)
    session = profile.sessions[0]
    assert profile.days == ("2012-06-21",) and profile.version == PROFILE_VERSION and profile.source == "files"
    assert profile.daily_volume == session.volume == volume == sum(session.bucket_volumes)
    # one displayed level: every ns between the first and the last book update is credited to one ask size
    assert sum(session.offer_sizes.values()) == book_times[-1] - book_times[0]
    assert len(profile.volume_curve) == 78 and abs(sum(profile.volume_curve) - 1) < 1e-4
    assert min(prices) <= profile.vwap <= max(prices)
    quantiles = dict(profile.order_size_quantiles)
    assert profile.orders > 1000 and quantiles[0.5] <= quantiles[0.99] <= quantiles[0.999] <= max(session.order_sizes)
    assert 0 < profile.spread_bps < 20  # a $220 stock a cent or few wide
    assert decode_profile(encode_profile(profile)) == profile


def test_an_unreadable_or_foreign_profile_is_a_clear_error(amzn_profile):
    _path, profile = amzn_profile
    with pytest.raises(ProfileError, match="unreadable"):
        decode_profile(b"{not json")
    with pytest.raises(ProfileError, match="version 99"):
        decode_profile(encode_profile(msgspec.structs.replace(profile, version=99)))


# --- calibration of a stock with no history ------------------------------------------------


def test_a_stock_with_no_history_starts_on_absolute_thresholds_and_says_so_then_calibrates():
    feed = Feed("NEW")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    outputs = []
    start = OPEN + 60 * S
    outputs += engine.process(feed.quote(start))
    outputs += engine.process(feed.trade(start + S, 50 * D, 12_000))
    outputs += engine.process(feed.quote(start + 2 * S))  # completes the order
    sizes = {12_000: 1}
    for minute in range(1, 21):  # 20 minutes of small aggressive sells, one a minute
        ts = start + minute * 60 * S
        size = 100 + 10 * minute
        outputs += engine.process(feed.trade(ts, 50 * D, size))
        outputs += engine.process(feed.quote(ts + S))
        sizes[size] = sizes.get(size, 0) + 1
    statuses = [o for o in outputs if isinstance(o, FeedStatus)]
    first_alert = [o for o in outputs if isinstance(o, OrderFlowAlert)][0]
    assert (statuses[0].state, statuses[0].code) == ("calibrating", "no_profile") and "absolute" in statuses[0].detail
    assert first_alert.evidence["threshold"] == 10_000 and first_alert.evidence["threshold_source"] == "absolute"
    calibrated = [s for s in statuses if s.state == "calibrated"]
    assert len(calibrated) == 1 and calibrated[0].code == "session_start"
    assert calibrated[0].ts_event >= start + 15 * 60 * S  # not before 15 minutes of the regular session
    # from then on the session's own thresholds: the extrapolated quantile, the share and notional floors
    expected = max(tail_quantile(sizes, 0.999), 1_000, math.ceil(100_000 * D / (50 * D)))
    symbol = engine.symbols["NEW"]
    assert symbol.thresholds.source == "session_start" and symbol.thresholds.large_order_size == expected
    late = start + 30 * 60 * S
    after = engine.process(feed.trade(late, 50 * D, expected)) + engine.process(feed.quote(late + S))
    alert = [o for o in after if isinstance(o, OrderFlowAlert)][0]
    assert alert.evidence == {
        **alert.evidence,
        "threshold": expected,
        "threshold_source": "session_start",
        "profile_days": "2026-11-24",
    }


def test_absolute_mode_never_calibrates():
    feed = Feed("OLD")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig(threshold_mode="absolute")))
    outputs = engine.process(feed.quote(OPEN + S)) + engine.process(feed.trade(OPEN + 2 * S, 50 * D, 10_000))
    outputs += engine.process(feed.quote(OPEN + 3 * S))
    assert not [o for o in outputs if isinstance(o, FeedStatus)]
    assert [o.evidence["threshold_source"] for o in outputs if isinstance(o, OrderFlowAlert)] == ["absolute"]


# --- walk-forward over real days --------------------------------------------------------------


@pytest.fixture(scope="module")
def aig_two_days(tmp_path_factory):
    out = tmp_path_factory.mktemp("aig")
    analyze("algoseek", aig(*AIG_DAYS), out, OrderFlowConfig())
    return out


def _day(record: dict) -> str:
    return record["timestamp_utc"][:10] if "timestamp_utc" in record else ""


def test_each_day_is_judged_only_with_the_sessions_before_it(aig_two_days):
    statuses = [s for s in _jsonl(aig_two_days / "statuses.jsonl") if s["state"] in ("calibrating", "calibrated")]
    assert [(s["state"], s["code"]) for s in statuses] == [
        ("calibrating", "no_profile"),
        ("calibrated", "session_start"),
        ("calibrated", "profile"),
    ]
    assert "2013-10-07" in statuses[2]["detail"] and "2013-10-08" not in statuses[2]["detail"]
    profiles = [json.loads(line) for line in (aig_two_days / "profiles.jsonl").read_text().splitlines()]
    assert [p["days"] for p in profiles] == [["2013-10-07"]]
    day_two = [
        a
        for a in _jsonl(aig_two_days / "alerts.jsonl")
        if _day(a) == "2013-10-08" and a["alert_type"] == "large_seller"
    ]
    assert day_two and {a["evidence"]["profile_days"] for a in day_two} == {"2013-10-07"}
    assert {a["evidence"]["threshold_source"] for a in day_two} == {"profile"}


def test_a_day_s_thresholds_do_not_depend_on_anything_later_that_day(aig_two_days, tmp_path):
    """Inflate every print of the second day after 12:00 New York ten-fold: the second day's thresholds and
    every alert before noon stay exactly the same (nothing of the day judged leaks into its profile)."""
    noon = 1381248000 * S  # 2013-10-08 12:00 New York (16:00 UTC)

    def doctored():
        for event in read_events("algoseek", aig(*AIG_DAYS)):
            if type(event) is Trade and event.ts_event >= noon:
                yield msgspec.structs.replace(event, size=event.size * 10)
            else:
                yield event

    from services.offline import analyze as analyze_module

    original = analyze_module.read_events
    analyze_module.read_events = lambda *args, **kwargs: doctored()
    try:
        analyze("algoseek", [], tmp_path, OrderFlowConfig())
    finally:
        analyze_module.read_events = original

    def calibrated(folder: Path) -> list[str]:
        return [s["detail"] for s in _jsonl(folder / "statuses.jsonl") if s["state"] == "calibrated"]

    def before_noon(folder: Path) -> list[str]:
        return [a["id"] for a in _jsonl(folder / "alerts.jsonl") if a["ts_event"] < noon]

    assert calibrated(tmp_path) == calibrated(aig_two_days)
    assert before_noon(tmp_path) == before_noon(aig_two_days) and before_noon(tmp_path)
    after_noon = [a for a in _jsonl(tmp_path / "alerts.jsonl") if a["ts_event"] >= noon]
    assert len(after_noon) > len([a for a in _jsonl(aig_two_days / "alerts.jsonl") if a["ts_event"] >= noon])


def test_adaptive_thresholds_keep_real_days_in_the_engagement_band(aig_two_days, tmp_path):
    """AIG (a $48 stock) and BAC (a $14 stock trading 60–86M shares a day): every day, the first one with no
    history included, between 1 and 50 alerts and at most 15 exits; BAC far below the absolute mode."""
    bac = [shared_data("algoseek", "bac", f"{day}_{kind}.zip") for day in AIG_DAYS for kind in ("trade", "quote")]
    analyze("algoseek", bac, tmp_path / "adaptive", OrderFlowConfig())
    analyze("algoseek", bac[2:], tmp_path / "absolute", OrderFlowConfig(threshold_mode="absolute"))
    for folder in (aig_two_days, tmp_path / "adaptive"):
        alerts, exits = _jsonl(folder / "alerts.jsonl"), _jsonl(folder / "exits.jsonl")
        for day in ("2013-10-07", "2013-10-08"):
            per_day = [a for a in alerts if _day(a) == day]
            assert 1 <= len(per_day) <= 50 and len([e for e in exits if _day(e) == day]) <= 15
    adaptive_bac = len([a for a in _jsonl(tmp_path / "adaptive" / "alerts.jsonl") if _day(a) == "2013-10-08"])
    assert adaptive_bac * 10 < len(_jsonl(tmp_path / "absolute" / "alerts.jsonl"))


# --- REST calibration and the detector service ----------------------------------------------------


@pytest.mark.redis
async def test_calibration_from_polygon_rest_through_the_simulator(redis_url, key_prefix, amzn_profile, tmp_path):
    path, from_files = amzn_profile
    archive = load_timeline("lobster", [path])
    simulator = await PolygonSimulator(
        archive[:50], api_key="rest-key", speed=1000, loop_forever=False, archive=archive
    ).start()
    try:
        environment = _environment(
            redis_url,
            key_prefix,
            tmp_path,
            POLYGON_API_KEY="rest-key",
            ORDER_FLOW_POLYGON_REST_URL=f"http://127.0.0.1:{simulator.port}",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
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
    assert process.returncode == 0, stderr.decode()
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
    environment = _environment(
        redis_url, key_prefix, tmp_path, ORDER_FLOW_THRESHOLD_MODE="adaptive", ORDER_FLOW_STREAM_MAX_LENGTH="1000000"
    )
    calibrated = _orderflow(
        "calibrate",
        "AIG",
        "--format",
        "algoseek",
        *[f"--file={p}" for p in aig(AIG_DAYS[0])],
        "--out",
        str(tmp_path / "profiles"),
        env=environment,
    )
    assert calibrated.wait(timeout=180) == 0, calibrated.stderr.read()
    profile = read_profiles([tmp_path / "profiles" / "AIG.json"])["AIG"]
    offline = tmp_path / "offline"
    analyze("algoseek", aig(AIG_DAYS[1]), offline, OrderFlowConfig(), profiles={"AIG": profile})
    expected_alerts = sorted(a["id"] for a in _jsonl(offline / "alerts.jsonl"))
    expected_exits = sorted(e["id"] for e in _jsonl(offline / "exits.jsonl"))
    assert expected_alerts and {a["evidence"].get("threshold_source") for a in _jsonl(offline / "alerts.jsonl")} <= {
        "profile",
        "intraday_curve",
        "trailing_baseline",
    }
    replayed = _orderflow("replay", "--format", "algoseek", *map(str, aig(AIG_DAYS[1])), env=environment)
    assert replayed.wait(timeout=180) == 0, replayed.stderr.read()
    detector = _orderflow("detect", "--symbol", "AIG", env=environment)
    client = redis.Redis.from_url(redis_url)
    try:
        _wait_for(lambda: _caught_up(client, key_prefix, ["AIG"]), timeout=180, what="the detector to catch up")
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
        assert detector.wait(timeout=30) == 0, detector.stderr.read()
        live_alerts = sorted(_alert_ids(client, f"{key_prefix}:alerts"))
        live_exits = sorted(_alert_ids(client, f"{key_prefix}:exits"))
        statuses = [
            msgspec.msgpack.decode(next(iter(fields.values()))) for _id, fields in client.xrange(f"{key_prefix}:status")
        ]
    finally:
        if detector.poll() is None:
            detector.kill()
        client.close()
    assert live_alerts == expected_alerts and live_exits == expected_exits
    assert [(s["state"], s["code"]) for s in statuses if s["state"].startswith("calibrat")] == [
        ("calibrated", "profile")
    ]


def profile_threshold(profile) -> int:
    from services.detector.profiles import FitRules, thresholds_for

    return thresholds_for(profile, FitRules(), source="profile", open_ns=None).large_order_size


def test_profiles_written_and_read_back_are_equal(amzn_profile, tmp_path):
    _path, profile = amzn_profile
    written = write_profile(profile, tmp_path)
    assert written.name == "AMZN.json" and read_profiles([written]) == {"AMZN": profile}


def test_an_override_still_calibrates_and_keeps_its_own_size():
    feed = Feed("NEW")
    config = OrderFlowConfig(symbol_overrides={"NEW": {"large_order_size": 5_000}})
    engine = Engine(RuleSettings.from_config(config), config=config)
    outputs = []
    start = OPEN + 60 * S
    for minute in range(0, 25):
        ts = start + minute * 60 * S
        outputs += engine.process(feed.quote(ts))
        outputs += engine.process(feed.trade(ts + S, 50 * D, 5_000 if minute == 20 else 100 + minute))
        outputs += engine.process(feed.quote(ts + 2 * S))  # completes the order
    states = [(o.state, o.code) for o in outputs if isinstance(o, FeedStatus) and o.state.startswith("calibrat")]
    assert states == [("calibrating", "no_profile"), ("calibrated", "override")]
    alert = [o for o in outputs if isinstance(o, OrderFlowAlert)][0]
    assert (
        alert.order_size == 5_000
        and alert.evidence["threshold"] == 5_000
        and alert.evidence["threshold_source"] == "override"
    )


def test_an_invalid_event_from_the_future_does_not_start_a_new_day():
    feed = Feed("X")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    engine.process(feed.quote(OPEN + S))
    day_end = engine.symbols["X"].day_end
    bad = Quote(
        symbol="X",
        ts_event=OPEN + 3 * 86_400 * S,
        ts_recv=OPEN + 2 * S,
        ts_arrival=OPEN + 2 * S,
        bid_price=50 * D,
        bid_size=100,
        ask_price=50 * D + D // 100,
        ask_size=100,
    )
    engine.process(bad)  # stamped three days ahead of its arrival: a validation error, not a new trading day
    assert engine.symbols["X"].day_end == day_end and engine.symbols["X"].recorder.day == "2026-11-24"
