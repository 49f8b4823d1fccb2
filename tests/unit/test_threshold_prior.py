"""The first day of a symbol with no history: a profile adopted mid-session, and the prior fitted across stocks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderflow_client.wire import FeedStatus, OrderFlowAlert
from services.detector import threshold_lifecycle
from services.detector.engine import Engine
from services.detector.profiles import DayStatistics, build_profile
from services.detector.rule_settings import RuleSettings
from services.detector.threshold_fit import (
    FitRules,
    Thresholds,
    blend_thresholds,
    prior_thresholds,
    thresholds_for,
)
from services.detector.threshold_prior import (
    FirstDayPrior,
    PriorSample,
    bundled_prior,
    decode_prior,
    encode_prior,
    fit_prior,
    held_out_prior,
)
from shared.config import OrderFlowConfig
from tests.support.events import OPEN, D, Feed, S

# --- a profile adopted while a day with no history runs -------------------------------------------------------


def earlier_session(day: str, large: int) -> DayStatistics:
    """A hand-made regular session: 10,000 orders of 100–1,099 shares and 20 of ``large``; a $50 VWAP."""
    orders = {100 + size: 10 for size in range(1_000)}
    orders[large] = 20
    return DayStatistics(
        symbol="NEW",
        day=day,
        order_sizes=orders,
        offer_sizes={500: 20_000 * S, large * 3: 30 * S},
        volume=5_000_000,
        vwap=50 * D,
        observed_seconds=23_400,
    )


def test_a_profile_adopted_mid_session_replaces_the_first_day_thresholds_from_that_event_on():
    feed = Feed("NEW")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    outputs = []
    start = OPEN + 60 * S
    for minute in range(5):  # five minutes of small sells: still calibrating
        ts = start + minute * 60 * S
        outputs += engine.process(feed.quote(ts)) + engine.process(feed.trade(ts + S, 50 * D, 200))
    lifecycle = engine.symbols["NEW"].lifecycle
    before = lifecycle.thresholds
    assert before.source != "profile" and lifecycle.extended_recorder is not None
    calibrating = [(o.state, o.code) for o in outputs if isinstance(o, FeedStatus) and o.state.startswith("calibrat")]
    assert calibrating == [("calibrating", "no_profile"), ("calibrating", "first_day_prior")]

    profile = build_profile(
        "NEW",
        [earlier_session("2026-11-20", 30_000), earlier_session("2026-11-23", 30_000)],
        source="rest",
        built_utc="2026-11-24T14:36:00Z",
        profile_days=5,
    )
    adopted_at = start + 5 * 60 * S
    adopted: list = []
    lifecycle.adopt_profile(profile, adopted_at, adopted)

    expected = thresholds_for(profile, engine.symbols["NEW"].settings.fit, source="profile", open_ns=OPEN)
    assert lifecycle.thresholds.large_order_size == expected.large_order_size == 30_000
    assert lifecycle.thresholds.source == "profile" and lifecycle.thresholds.days == "2026-11-20..2026-11-23"
    assert lifecycle.extended_recorder is None  # the day stops calibrating itself
    assert sorted(lifecycle.history) == ["2026-11-20", "2026-11-23"]
    [status] = adopted
    assert isinstance(status, FeedStatus) and (status.state, status.code, status.ts_event) == (
        "calibrated",
        "profile",
        adopted_at,
    )
    assert status.detail.startswith("profile 2026-11-20..2026-11-23: large order 30,000 shares")

    # the day keeps recording, and an order judged against the profile: 29,999 shares is not large, 30,000 is
    later = adopted_at + 60 * S
    after = engine.process(feed.trade(later, 50 * D, 29_999)) + engine.process(feed.quote(later + S))
    after += engine.process(feed.trade(later + 2 * S, 50 * D, 30_000)) + engine.process(feed.quote(later + 3 * S))
    alerts = [o for o in after if isinstance(o, OrderFlowAlert)]
    assert [a.order_size for a in alerts] == [30_000]
    assert alerts[0].evidence["threshold_source"] == "profile"
    assert alerts[0].evidence["profile_days"] == "2026-11-20..2026-11-23"
    assert lifecycle.day_recorder is not None and lifecycle.day_recorder.order_sizes.get(29_999) == 1
    # no later self-calibration overwrites it
    engine.process(feed.quote(later + 30 * 60 * S))
    assert lifecycle.thresholds.source == "profile"
    assert not [o for o in after if isinstance(o, FeedStatus) and o.state.startswith("calibrat")]


def test_a_profile_holding_today_adopts_only_the_sessions_before_it():
    feed = Feed("NEW")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    engine.process(feed.quote(OPEN + S))
    lifecycle = engine.symbols["NEW"].lifecycle
    today = earlier_session("2026-11-24", 90_000)
    profile = build_profile(
        "NEW",
        [earlier_session("2026-11-23", 40_000), today],
        source="rest",
        built_utc="2026-11-24T14:40:00Z",
        profile_days=5,
    )
    outputs: list = []
    lifecycle.adopt_profile(profile, OPEN + 2 * S, outputs)
    assert lifecycle.thresholds.large_order_size == 40_000 and lifecycle.thresholds.days == "2026-11-23"
    assert sorted(lifecycle.history) == ["2026-11-23"]


def test_a_profile_with_nothing_before_today_or_in_absolute_mode_changes_no_threshold():
    feed = Feed("NEW")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    engine.process(feed.quote(OPEN + S))
    lifecycle = engine.symbols["NEW"].lifecycle
    before = lifecycle.thresholds
    only_today = build_profile(
        "NEW", [earlier_session("2026-11-24", 90_000)], source="rest", built_utc="", profile_days=5
    )
    outputs: list = []
    lifecycle.adopt_profile(only_today, OPEN + 2 * S, outputs)
    assert lifecycle.thresholds == before and outputs == [] and lifecycle.extended_recorder is not None

    absolute = Engine(RuleSettings.from_config(OrderFlowConfig(threshold_mode="absolute")))
    absolute.process(feed.quote(OPEN + S))
    kept = absolute.symbols["NEW"].lifecycle
    profile = build_profile("NEW", [earlier_session("2026-11-23", 40_000)], source="rest", built_utc="", profile_days=5)
    kept.adopt_profile(profile, OPEN + 2 * S, outputs)
    assert kept.thresholds.source == "absolute" and kept.thresholds.large_order_size == 10_000 and outputs == []


# --- the prior: fitted across stocks, read at a first day's start -----------------------------------------------


def sample(symbol: str, day: str, volume: int, large: int, offer: int, burst: float) -> PriorSample:
    return PriorSample(
        symbol=symbol,
        day=day,
        volume=volume,
        large_order_size=large,
        offer_size=offer,
        burst_ratio=burst,
        volume_curve=(0.5, 0.5),
    )


def test_the_prior_is_the_geometric_mean_over_stocks_each_stock_counting_once_with_its_held_out_error():
    samples = [
        sample("A", "2026-11-23", 1_000_000, 1_000, 2_000, 4.0),  # 0.1 % of its volume
        sample("A", "2026-11-24", 1_000_000, 4_000, 4_000, 4.0),  # 0.4 %: stock A's mean is 0.2 %
        sample("B", "2026-11-24", 10_000_000, 20_000, 20_000, 9.0),  # 0.2 %
    ]
    prior = fit_prior(samples)
    assert prior.volume_fraction == pytest.approx(0.002)
    assert prior.offer_multiple == pytest.approx(math.sqrt(2) ** 0.5, abs=1e-3)  # A: √2, B: 1
    assert prior.burst_ratio == pytest.approx(6.0)  # √(4 · 9)
    assert prior.days == ("A 2026-11-23", "A 2026-11-24", "B 2026-11-24")
    assert prior.volume_curve == (0.5, 0.5)
    without_a = next(entry for entry in prior.held_out if entry.symbol == "A")
    assert without_a.volume_fraction == pytest.approx(0.002)  # B alone
    assert without_a.errors == {
        "2026-11-23": pytest.approx(0.693, abs=1e-3),
        "2026-11-24": pytest.approx(-0.693, abs=1e-3),
    }
    assert prior.rms_error == pytest.approx(math.sqrt((2 * 0.693**2 + 0) / 3), abs=1e-3)
    held = held_out_prior(prior, "A")
    assert held.days == ("B 2026-11-24",) and held.burst_ratio == pytest.approx(9.0) and held.held_out == ()
    assert decode_prior(encode_prior(prior)) == prior


def test_the_expected_volume_scales_what_was_traded_by_the_curve_and_waits_a_minute():
    prior = FirstDayPrior(volume_fraction=0.001, offer_multiple=1.5, burst_ratio=5.0, volume_curve=(0.1, 0.1, 0.8))
    assert prior.expected_volume(50_000, 0, 150 * S) == 1_000_000  # 5 % of the day in 150 s
    assert prior.expected_volume(50_000, 300 * S, 450 * S) == 1_000_000  # a feed starting 5 minutes in
    assert prior.expected_volume(50_000, 0, 59 * S) == 0 and prior.expected_volume(0, 0, 600 * S) == 0
    assert prior.large_order_size(1_000_000) == 1_000 and prior.offer_size(1_000) == 1_500


def test_the_prior_thresholds_keep_the_share_and_notional_floors():
    prior = FirstDayPrior(volume_fraction=0.001, offer_multiple=1.5, burst_ratio=5.0, volume_curve=(1.0,))
    rules = FitRules()  # floors: 1,000 shares and $100,000
    assert prior_thresholds(rules, prior, 200_000, 500 * D, days="d").large_order_size == 1_000  # 200 → 1,000
    at_20 = prior_thresholds(rules, prior, 2_000_000, 20 * D, days="d")
    assert (at_20.large_order_size, at_20.offer_size, at_20.source) == (5_000, 7_500, "first_day_prior")
    assert prior_thresholds(rules, prior, 9_000_000, 20 * D, days="d").large_order_size == 9_000


def test_the_prior_moves_to_the_session_fit_geometrically():
    start = Thresholds(4_000, 6_000, "first_day_prior", "d", None, 6.0)
    session = Thresholds(16_000, 16_000, "session_start", "d", None, 0.0)
    half = blend_thresholds(start, session, 0.5)
    assert (half.large_order_size, half.offer_size, half.burst_ratio, half.source) == (
        8_000,
        9_798,
        6.0,  # the session knows no burst ratio yet
        "first_day_prior",
    )
    assert blend_thresholds(start, session, 0.0) == start and blend_thresholds(start, session, 1.0) == session
    assert blend_thresholds(start, None, 0.7) == start


def test_the_bundled_prior_holds_every_shared_stock_left_out_once():
    prior = bundled_prior()
    assert prior is not None and 0.0005 < prior.volume_fraction < 0.005
    assert sorted(entry.symbol for entry in prior.held_out) == ["AAPL", "AIG", "AMZN", "BAC"]
    assert abs(sum(prior.volume_curve) - 1) < 0.01 and prior.rms_error > 0


def test_a_first_day_on_the_prior_judges_its_first_minutes_against_its_expected_volume(monkeypatch):
    prior = FirstDayPrior(volume_fraction=0.002, offer_multiple=1.0, burst_ratio=0.0, volume_curve=(0.05,) * 20)
    monkeypatch.setattr(threshold_lifecycle, "bundled_prior", lambda: prior)
    feed = Feed("NEW")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    outputs = []
    for second in range(0, 90, 2):  # 500 shares every 2 s from the open: 15,000 shares in the first minute
        ts = OPEN + second * S
        outputs += engine.process(feed.quote(ts)) + engine.process(feed.trade(ts + S // 2, 50 * D, 500, side="buy"))
    # 20,000 shares in 80 s of a curve putting 5 % of the day in each 5 minutes: an expected 1,500,000 shares
    started = next(o for o in outputs if isinstance(o, FeedStatus) and o.code == "first_day_prior")
    assert "large order 3,000 shares (0.200 % of an expected 1,500,000 shares" in started.detail
    symbol = engine.symbols["NEW"]
    assert symbol.thresholds.source == "first_day_prior" and symbol.thresholds.large_order_size >= 3_000
    ts = OPEN + 95 * S
    after = engine.process(feed.trade(ts, 50 * D, 6_000)) + engine.process(feed.quote(ts + S))
    [alert] = [o for o in after if isinstance(o, OrderFlowAlert)]
    assert alert.evidence["threshold_source"] == "first_day_prior" and alert.evidence["threshold"] < 6_000


def test_without_a_prior_a_first_day_starts_on_the_absolute_thresholds_as_before(monkeypatch):
    monkeypatch.setattr(threshold_lifecycle, "bundled_prior", lambda: None)
    feed = Feed("NEW")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig()))
    outputs = []
    for second in range(0, 90, 2):
        ts = OPEN + second * S
        outputs += engine.process(feed.quote(ts)) + engine.process(feed.trade(ts + S // 2, 50 * D, 500, side="buy"))
    statuses = [o for o in outputs if isinstance(o, FeedStatus) and o.state.startswith("calibrat")]
    assert [(o.state, o.code) for o in statuses] == [("calibrating", "no_profile")]
    assert statuses[0].detail.endswith("until 15 minutes of the regular session are seen")
    assert engine.symbols["NEW"].thresholds.source == "absolute"


def test_first_day_thresholds_absolute_ignores_the_prior(monkeypatch):
    """``ORDER_FLOW_FIRST_DAY_THRESHOLDS=absolute``: the day of the test above, with its prior present, starts on
    ``large_order_size`` and never says first_day_prior."""
    prior = FirstDayPrior(volume_fraction=0.002, offer_multiple=1.0, burst_ratio=0.0, volume_curve=(0.05,) * 20)
    monkeypatch.setattr(threshold_lifecycle, "bundled_prior", lambda: prior)
    feed = Feed("NEW")
    engine = Engine(RuleSettings.from_config(OrderFlowConfig(first_day_thresholds="absolute")))
    outputs = []
    for second in range(0, 90, 2):
        ts = OPEN + second * S
        outputs += engine.process(feed.quote(ts)) + engine.process(feed.trade(ts + S // 2, 50 * D, 500, side="buy"))
    codes = [o.code for o in outputs if isinstance(o, FeedStatus) and o.state.startswith("calibrat")]
    assert codes == ["no_profile"]
    assert engine.symbols["NEW"].thresholds.source == "absolute"
    assert engine.symbols["NEW"].thresholds.large_order_size == 10_000


@given(
    st.integers(1_000, 10_000_000),
    st.integers(1_000, 10_000_000),
    st.floats(0.0, 1.0),
    st.floats(0.0, 20.0),
)
def test_a_blend_lies_between_the_prior_and_the_session_fit(prior_size, session_size, weight, burst):
    start = Thresholds(prior_size, prior_size, "first_day_prior", "d", None, 6.0)
    session = Thresholds(session_size, session_size, "session_start", "d", None, burst)
    blended = blend_thresholds(start, session, weight)
    low, high = sorted((prior_size, session_size))
    assert low <= blended.large_order_size <= high and blended.offer_size >= blended.large_order_size
    assert min(6.0, burst or 6.0) - 0.01 <= blended.burst_ratio <= max(6.0, burst) + 0.01


@given(st.integers(1, 10**9), st.integers(60, 23_400), st.integers(0, 20_000))
def test_the_expected_volume_is_never_below_what_was_traded(volume, seconds, start):
    prior = bundled_prior()
    assert prior is not None
    expected = prior.expected_volume(volume, start * S, (start + seconds) * S)
    assert expected >= volume  # the curve's share of a stretch is at most the whole day
