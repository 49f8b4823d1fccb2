"""The exit cost rule with exact numbers (exit, watch, multiple 0, no volatility), on an engine's exits with a
profile's σ; minute mids, σ and beta in profiles; an old profile's JSON still decodes."""

from __future__ import annotations

import itertools
import json
import math
import statistics

from orderflow_client.wire import ExitRecommendation
from services.detector.day_recorder import DayRecorder
from services.detector.engine import Engine
from services.detector.exit_cost import decide, half_spread_bps, with_cost
from services.detector.profiles import (
    DayStatistics,
    SymbolProfile,
    beta_to_index,
    build_profile,
    decode_profile,
    encode_profile,
    minute_sigma_bps,
)
from services.detector.rule_settings import RuleSettings
from shared.config import OrderFlowConfig
from tests.support.events import BID, OPEN, T0, D, Feed, S, recommendation

RULE = {"horizon_seconds": 300, "expected_fall_sigmas": 0.5}


def test_half_the_spread_in_bps_of_the_mid():
    assert half_spread_bps(49_990_000_000, 50_010_000_000) == 2.0
    assert half_spread_bps(0, 50 * D) == 0.0 and half_spread_bps(51 * D, 50 * D) == 0.0  # one-sided, crossed


def test_the_expected_fall_against_the_cost_decides_exit_or_watch():
    expected = 0.5 * 4.0 * math.sqrt(5)  # 4.4721 bps
    assert decide(4.0, "profile", 2.0, cost_multiple=1.0, **RULE) == (round(expected, 4), 2.0, "exit", "profile", 4.0)
    assert decide(4.0, "profile", 4.5, cost_multiple=1.0, **RULE).action == "watch"  # 4.47 < 4.5
    assert decide(4.0, "profile", 2.0, cost_multiple=2.5, **RULE).action == "watch"  # 4.47 < 5.0
    assert decide(4.0, "profile", 50.0, cost_multiple=0.0, **RULE).action == "exit"  # the rule off
    unknown = decide(0.0, "session", 3.0, cost_multiple=1.0, **RULE)
    assert unknown == (0.0, 3.0, "exit", "none", 0.0)  # no volatility: not estimated, the rules' exit stands


def test_the_reasoning_and_evidence_state_the_numbers():
    watched = with_cost(
        recommendation(),
        decide(4.0, "profile", 4.5, cost_multiple=1.0, **RULE),
        cost_multiple=1.0,
        horizon_seconds=300,
        context=None,
    )
    assert (watched.action, watched.expected_fall_bps, watched.cost_bps) == ("watch", 4.4721, 4.5)
    assert watched.reasoning.endswith("Expected fall 4.5 bps over 300 s < 1 × cost 4.5 bps (half the spread): watch.")
    assert watched.evidence["sigma_source"] == "profile" and watched.evidence["minute_sigma_bps"] == 4.0
    assert watched.id == recommendation().id


def alternating_day(day: str, symbol: str = "X", high: int = 50 * D + 5 * D // 100) -> DayStatistics:
    """A session whose minute mids alternate $50.00 and ``high`` (31 minutes)."""
    return DayStatistics(symbol=symbol, day=day, minute_mids=tuple(50 * D if m % 2 == 0 else high for m in range(31)))


def sellers_exit(multiple: float) -> ExitRecommendation:
    """The large-sellers exit of X (quoted 50.00 × 50.01) with a profile whose minutes alternate ±10 bps."""
    history = alternating_day("2026-11-23")
    profile = build_profile("X", [history], source="files", built_utc="", profile_days=5)
    config = OrderFlowConfig(threshold_mode="absolute", exit_cost_multiple=multiple, market_symbols=())
    engine = Engine(RuleSettings.from_config(config), profiles={"X": profile})
    feed = Feed()
    outputs = []
    for event in [feed.quote(T0), *(feed.trade(T0 + i * 10 * S, BID, 10_000) for i in range(1, 4))]:
        outputs += engine.process(event)
    (found,) = [o for o in outputs if isinstance(o, ExitRecommendation)]
    return found


def test_an_engines_exit_carries_the_cost_rule_on_its_profiles_sigma():
    sigma = statistics.stdev(_returns(alternating_day("d").minute_mids))
    expected = round(0.5 * sigma * math.sqrt(5), 4)
    cost = round(D // 100 * 1e4 / (2 * BID + D // 100), 4)  # 0.9999 bps
    exited = sellers_exit(1.0)
    assert (exited.action, exited.expected_fall_bps, exited.cost_bps) == ("exit", expected, cost)
    assert exited.evidence["sigma_source"] == "profile" and exited.context is None
    watched = sellers_exit(20.0)  # 20 × 0.9999 > 11.2
    assert watched.action == "watch" and watched.id == exited.id


def test_minute_mids_sigma_and_beta():
    recorder = DayRecorder("X", "2026-11-24", OPEN)
    recorder.record_quote(OPEN + 10 * S, 50 * D, 50 * D + 2 * D // 100, 100)
    recorder.record_quote(OPEN + 3 * 60 * S + 5 * S, 51 * D, 51 * D + 2 * D // 100, 100)
    recorder.record_print(OPEN + 4 * 60 * S, 99 * D, 100)  # quoted: a print does not move the mids
    recorder.record_quote(OPEN - 60 * S, 1 * D, 2 * D, 100)  # before the open: not a minute of the session
    assert recorder.statistics().minute_mids == (50_010_000_000,) * 3 + (51_010_000_000,)
    trades_only = DayRecorder("SPY", "2026-11-24", OPEN)
    trades_only.record_print(OPEN + 61 * S, 170 * D, 100)
    assert trades_only.statistics().minute_mids == (0, 170 * D)

    index = DayStatistics(symbol="SPY", day="d", minute_mids=tuple(100 * D + (m % 3) * D // 10 for m in range(40)))
    index_returns = _returns(index.minute_mids)
    stock_mids = [100 * D]
    for r in index_returns:  # the stock moves exactly twice the index each minute
        stock_mids.append(round(stock_mids[-1] * (1 + 2 * r / 1e4)))
    stock = DayStatistics(symbol="X", day="d", minute_mids=tuple(stock_mids))
    assert math.isclose(beta_to_index([stock], [index]), 2.0, rel_tol=1e-6)
    assert beta_to_index([stock], []) == 0.0  # no index day: not known
    assert math.isclose(minute_sigma_bps([index]), statistics.stdev(index_returns))
    assert minute_sigma_bps([DayStatistics(symbol="X", day="d", minute_mids=(D,) * 5)]) == 0.0  # too few
    profile = build_profile(
        "X", [stock], source="files", built_utc="", profile_days=5, index="SPY", index_sessions=[index]
    )
    assert profile.beta_index == "SPY" and math.isclose(profile.beta, 2.0, rel_tol=1e-4)
    assert math.isclose(profile.sigma_bps(300), profile.minute_sigma_bps * math.sqrt(5))


def _returns(mids):
    return [(b - a) * 1e4 / a for a, b in itertools.pairwise(mids)]


def test_a_profile_stored_before_minute_mids_still_decodes():
    profile = build_profile("X", [alternating_day("2026-11-23")], source="files", built_utc="", profile_days=5)
    stored = json.loads(encode_profile(profile))
    for field in ("minute_sigma_bps", "beta", "beta_index"):
        del stored[field]
    for session in stored["sessions"]:
        del session["minute_mids"]
    old = decode_profile(json.dumps(stored))
    assert isinstance(old, SymbolProfile) and old.minute_sigma_bps == 0.0 and old.beta == 0.0
    assert old.sessions[0].minute_mids == () and old.sigma_bps(300) == 0.0


def test_no_expected_fall_means_watch_unless_the_cost_rule_is_off():
    zero = {"horizon_seconds": 300, "expected_fall_sigmas": 0.0}
    assert decide(4.0, "profile", 2.0, cost_multiple=1.0, **zero) == (0.0, 2.0, "watch", "profile", 4.0)
    assert decide(4.0, "profile", 2.0, cost_multiple=0.0, **zero).action == "exit"
    assert decide(4.0, "profile", 0.0, cost_multiple=1.0, **zero).action == "exit"  # cost unknown: 0 ≥ 0


def alternating_session(multiple: float) -> ExitRecommendation:
    """X, absolute mode and no profile, quoted 31 minutes from the open with mids alternating $50.005 and $50.055
    each minute, then three 10,000-share sells at the bid: its large-sellers exit."""
    config = OrderFlowConfig(threshold_mode="absolute", exit_cost_multiple=multiple, market_symbols=())
    engine = Engine(RuleSettings.from_config(config))
    feed = Feed()
    bids = [BID + (m % 2) * 5 * D // 100 for m in range(31)]
    events = [feed.quote(OPEN + m * 60 * S + 30 * S, bid, bid + D // 100) for m, bid in enumerate(bids)]
    at = OPEN + 31 * 60 * S
    events += [feed.quote(at, BID), *(feed.trade(at + i * 10 * S, BID, 10_000) for i in range(1, 4))]
    outputs = [output for event in events for output in engine.process(event)]
    (found,) = [o for o in outputs if isinstance(o, ExitRecommendation)]
    return found


def test_absolute_mode_takes_sigma_from_the_session_so_far():
    mids = [(2 * BID + D // 100 + (m % 2) * 10 * D // 100) // 2 for m in range(31)] + [(2 * BID + D // 100) // 2]
    sigma = statistics.stdev(_returns(mids))
    exited = alternating_session(1.0)
    assert exited.evidence["sigma_source"] == "session"
    assert exited.evidence["minute_sigma_bps"] == round(sigma, 4)
    assert (exited.action, exited.expected_fall_bps) == ("exit", round(0.5 * sigma * math.sqrt(5), 4))
    assert alternating_session(20.0).action == "watch"  # 20 × 0.9999 bps > 11.2 bps


def test_a_market_exit_costs_the_mean_half_spread_of_the_positions_quoted():
    config = OrderFlowConfig(threshold_mode="absolute")
    engine = Engine(RuleSettings.from_config(config))
    engine.set_open_positions(["AIG", "BAC", "C"])
    aig, bac, spy = Feed("AIG"), Feed("BAC"), Feed("SPY")
    events = [
        aig.quote(T0 - 400 * S, 49_990_000_000, 50_010_000_000),
        bac.quote(T0 - 400 * S, 9_990_000_000, 10_010_000_000),
    ]
    price = 170 * D
    events += [spy.trade(ts, price, 100, side="buy") for ts in range(T0 - 300 * S, T0, 10 * S)]
    events += [spy.trade(T0, price - price * 35 // 10_000, 100)]
    outputs = [output for event in sorted(events, key=lambda e: e.ts_event) for output in engine.process(event)]
    (market,) = [o for o in outputs if isinstance(o, ExitRecommendation)]
    assert market.scope == "market" and market.symbols == ("AIG", "BAC", "C")
    assert market.evidence["cost_bps:AIG"] == 2.0 and market.evidence["cost_bps:BAC"] == 10.0
    assert "cost_bps:C" not in market.evidence  # C has no quote in this detector: not counted
    assert market.cost_bps == 6.0 and market.action == "exit"


def test_an_adopted_profile_recomputes_the_cached_sigma():
    engine = Engine(RuleSettings.from_config(OrderFlowConfig(threshold_mode="absolute")))
    engine.process(Feed().quote(T0))
    symbol_engine, watch = engine.symbols["X"], engine.market
    assert watch is not None and watch.costs.profile_sigma(symbol_engine, "2026-11-24") == 0.0
    profile = build_profile("X", [alternating_day("2026-11-23")], source="files", built_utc="", profile_days=5)
    symbol_engine.lifecycle.adopt_profile(profile, T0 + S, [])
    expected = statistics.stdev(_returns(alternating_day("d").minute_mids))
    assert math.isclose(watch.costs.profile_sigma(symbol_engine, "2026-11-24"), expected)
