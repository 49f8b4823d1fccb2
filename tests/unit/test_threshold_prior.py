"""The first day of a symbol with no history: a profile adopted mid-session, and the prior fitted across stocks."""

from __future__ import annotations

from orderflow_client.wire import FeedStatus, OrderFlowAlert
from services.detector.engine import Engine
from services.detector.profiles import DayStatistics, build_profile
from services.detector.rule_settings import RuleSettings
from services.detector.threshold_fit import thresholds_for
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
