"""Adaptive thresholds: quantiles, a profile of a real day, calibration (walk-forward over whole real days, REST and the
live detector: tests/integration/test_profiles_walk_forward.py and test_profiles_live.py)."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow_client.wire import FeedStatus, OrderFlowAlert, Quote, Trade
from services.detector.engine import Engine
from services.detector.profiles import PROFILE_VERSION, ProfileError, decode_profile, encode_profile
from services.detector.quantiles import tail_quantile, weighted_quantile
from services.detector.rule_settings import RuleSettings
from services.ingest.lobster import read_lobster
from services.offline.calibrate import read_profiles, write_profile
from shared.conditions import ConditionTable
from shared.config import OrderFlowConfig
from shared.sessions import SessionClock
from tests.support.events import OPEN, D, Feed, S
from tests.support.market_days import amzn_profile_from_files

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
    """The same sample seen ``more`` times over: the bound can only come down toward the estimate, which it
    never undercuts."""
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
    return amzn_profile_from_files()


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
    first_alert = next(o for o in outputs if isinstance(o, OrderFlowAlert))
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
    alert = next(o for o in after if isinstance(o, OrderFlowAlert))
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
    alert = next(o for o in outputs if isinstance(o, OrderFlowAlert))
    assert (
        alert.order_size == 5_000
        and alert.evidence["threshold"] == 5_000
        and alert.evidence["threshold_source"] == "override"
    )


def test_an_invalid_event_from_the_future_does_not_start_a_new_day():
    feed = Feed("X")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    engine.process(feed.quote(OPEN + S))
    day_end = engine.symbols["X"].lifecycle.day_end
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
    lifecycle = engine.symbols["X"].lifecycle
    assert (
        lifecycle.day_end == day_end
        and lifecycle.day_recorder is not None
        and lifecycle.day_recorder.day == "2026-11-24"
    )
