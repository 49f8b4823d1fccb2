"""The backtest: every metric on hand-made days with known answers, the held-out split (the browser: integration)."""

from __future__ import annotations

import math

import pytest

from services.offline.backtest.collect import Collected, PriceTape, Signal, collect
from services.offline.backtest.exits import follow_exits
from services.offline.backtest.models import BacktestSettings, ExitedTrade, HorizonSaving
from services.offline.backtest.positions import positions_from_open, read_positions
from services.offline.backtest.report import report
from services.offline.backtest.statistics import outcome, versus_chance, wilson
from services.offline.backtest.sweep import parse_sweep, split_days, sweep
from shared.config import OrderFlowConfig
from tests.support.events import OPEN, D, Feed, S, recommendation, seconds_of_flow

DAY = "2026-11-24"
CLOSE = OPEN + 23_400 * S
CENT = D // 100
SETTINGS = BacktestSettings(horizons=(30, 300), fall_bps=10.0, base_step=30, bootstrap=500)


def flat_then_fall(fall_at: int | None) -> PriceTape:
    """49.99 / 50.01 from the open; from ``fall_at`` on 49.49 / 49.51 (mid 50.00 → 49.50: −100 bps)."""
    tape = PriceTape("X", DAY, OPEN, CLOSE)
    tape.add(OPEN, 50 * D - CENT, 50 * D + CENT)
    if fall_at is not None:
        tape.add(fall_at, 49 * D + 49 * CENT, 49 * D + 51 * CENT)
    return tape


# --- a planted fall after a planted signal ----------------------------------------------------------


def test_a_planted_fall_after_a_signal_scores_exactly():
    tape = flat_then_fall(OPEN + 3720 * S)  # 10:32:00
    signal = Signal("exit", "X", OPEN + 3600 * S, "X:exit:1")  # 10:30:00
    result = outcome(tape, signal.ts, 300, 10.0)
    assert result.forward_bps == pytest.approx(-100.0) and result.hit and result.lead_seconds == 120.0
    table = versus_chance([signal], {("X", DAY): tape}, SETTINGS)
    row = table.by_kind["exit"]["300"]
    # base: every 30 s from 09:30:30 while t + 300 s ≤ close → 770 moments; the 10 in [10:27:00, 10:32:00) saw the fall
    assert table.base_samples["300"] == 770
    assert row.base_mean_forward_bps == round(-100 * 10 / 770, 2) and row.base_hit_rate == round(10 / 770, 4)
    assert row.signals == 1 and row.mean_forward_bps == -100.0 and row.hit_rate == 1.0
    assert row.lift == round(77.0, 3) and row.lead_seconds_median == 120.0
    assert row.hit_rate_ci95 == tuple(round(v, 4) for v in wilson(1, 1))
    assert row.difference_bps == round(-100 + 100 * 10 / 770, 2)
    assert row.difference_ci95_bps == (None, None)  # one signal: no interval to speak of
    # within 30 s nothing happened after the signal
    assert table.by_kind["exit"]["30"].mean_forward_bps == 0.0 and table.by_kind["exit"]["30"].hit_rate == 0.0


def test_signals_by_market_context_score_a_market_exit_on_each_position_it_names():
    x_falls, y_flat = flat_then_fall(OPEN + 3720 * S), flat_then_fall(None)
    y_flat.symbol = "Y"
    tapes = {("X", DAY): x_falls, ("Y", DAY): y_flat}
    at = OPEN + 3600 * S  # 10:30:00, two minutes before X falls 100 bps
    signals = [
        Signal("large_seller/tape", "X", at, "X:1", "warning", "stock_specific"),
        Signal("large_seller/tape", "Y", at, "Y:1", "warning", "market_wide"),
        Signal("exit", "X", at, "X:exit:1", "critical", "stock_specific"),
        Signal("market_selloff", "SPY", at, "SPY:market_selloff:1", "warning", "market_wide"),
        Signal("large_seller/tape", "SPY", at, "SPY:1", "warning", "market_wide"),
        Signal("exit", "SPY", at, "SPY:exit:market_selloff:1", "warning", "market_wide", ("X", "Y")),
    ]
    table = versus_chance(signals, tapes, SETTINGS).by_context
    # the index's own alerts are not a position's; the market exit counts once on X (−100 bps) and once on Y (0)
    assert sorted(table) == [
        "alerts, market_wide",
        "alerts, stock_specific",
        "exits, market scope",
        "exits, stock_specific",
    ]
    assert table["alerts, stock_specific"]["300"].signals == 1
    assert table["alerts, stock_specific"]["300"].mean_forward_bps == -100.0
    assert table["alerts, market_wide"]["300"].mean_forward_bps == 0.0
    market = table["exits, market scope"]["300"]
    assert market.signals == 2 and market.mean_forward_bps == -50.0 and market.hit_rate == 0.5


def test_following_the_planted_exit_saves_what_the_fall_cost():
    tape = flat_then_fall(OPEN + 3720 * S)
    tapes = {("X", DAY): tape}
    exit_signal = Signal("exit", "X", OPEN + 3600 * S, "X:exit:1")
    result = follow_exits(positions_from_open(tapes), [exit_signal], tapes, SETTINGS)
    trade = result.trades[0]
    assert isinstance(trade, ExitedTrade)
    entry = 50 * D + CENT  # bought at the ask of the first quote
    assert trade.entry_price == entry and trade.exit_bid == 50 * D - CENT and trade.held_exit_reason == "close"
    assert trade.exited_bps == round(((50 * D - CENT) / entry - 1) * 1e4, 2)
    assert trade.held_bps == round(((49 * D + 49 * CENT) / entry - 1) * 1e4, 2)
    assert trade.saved_vs_hold_bps == round(trade.exited_bps - trade.held_bps, 2) and trade.saved_vs_hold_bps > 99
    # versus holding 5 minutes, marked at the mid: the bid now (49.99) against the mid then (49.50), over the mid
    # now (50.00)
    assert trade.versus_holding["300"] == HorizonSaving(saved_net_bps=98.0, false_positive=False)
    # versus holding 30 s: nothing moved, so the exit cost exactly the half spread (1 cent of 50.00 = 2 bps)
    assert trade.versus_holding["30"] == HorizonSaving(saved_net_bps=-2.0, false_positive=False)
    assert trade.half_spread_bps == 2.0 and trade.profitable is False
    assert trade.drawdown_held_bps == round((entry - 49.5 * D) / entry * 1e4, 2)
    assert trade.drawdown_exited_bps == round((entry - 50 * D) / entry * 1e4, 2)
    assert result.summary.exited == 1 and result.summary.by_horizon["300"].saved_net_bps_mean == 98.0
    # chance: selling at a random moment of the session instead (every 30 s after entry): before 10:32 the bid is
    # 49.99, after 49.49
    before = len(range(30, 3720, 30))
    after = len(range(3720, 23_400, 30))
    expected = (before * (50 * D - CENT - (49 * D + 49 * CENT))) / (before + after) / entry * 1e4
    assert trade.chance_saved_vs_hold_bps == round(expected, 2)


def test_a_stop_ends_holding_at_the_first_bid_through_it(tmp_path):
    (tmp_path / "trades.csv").write_text(
        "symbol,entry_time,entry_price,quantity,stop\nx,2026-11-24T09:45:00,50.00,100,49.80\n"
    )
    positions = read_positions(tmp_path / "trades.csv")
    assert positions[0].entry_ns == OPEN + 900 * S and positions[0].stop == 49 * D + 80 * CENT  # naive time = New York
    tape = flat_then_fall(OPEN + 3720 * S)
    result = follow_exits(positions, [], {("X", DAY): tape}, SETTINGS)
    trade = result.trades[0]
    assert trade.held_exit_reason == "stop" and trade.held_exit_ns == OPEN + 3720 * S
    assert not isinstance(trade, ExitedTrade)
    assert result.summary.exited == 0 and result.summary.profitable_exits_share is None


def test_a_short_position_is_refused_with_its_line(tmp_path):
    (tmp_path / "trades.csv").write_text(
        "symbol,entry_time,entry_price,quantity,stop\nX,2026-11-24T09:45:00,50.00,100,49.80\n"
        "Y,2026-11-24T09:45:00,50.00,-100,50.50\n"
    )
    with pytest.raises(ValueError, match=r"trades.csv:3: quantity -100: only long positions"):
        read_positions(tmp_path / "trades.csv")


def test_a_false_positive_exit_is_one_the_price_rose_after():
    tape = PriceTape("X", DAY, OPEN, CLOSE)
    tape.add(OPEN, 50 * D - CENT, 50 * D + CENT)
    tape.add(OPEN + 3660 * S, 50 * D + 20 * CENT, 50 * D + 22 * CENT)  # +42 bps a minute after the exit
    tapes = {("X", DAY): tape}
    result = follow_exits(positions_from_open(tapes), [Signal("exit", "X", OPEN + 3600 * S, "e")], tapes, SETTINGS)
    trade = result.trades[0]
    assert isinstance(trade, ExitedTrade)
    saving = trade.versus_holding["300"]
    assert saving is not None and saving.false_positive is True
    assert result.summary.by_horizon["300"].false_positive_share == 1.0


# --- a day with no signal, a signal at the close ------------------------------------------------------


def test_a_day_with_no_signal_reports_no_signal_and_no_exit():
    tapes = {("X", DAY): flat_then_fall(OPEN + 3720 * S)}
    found = Collected(tapes=tapes)
    document = report(found, SETTINGS)
    assert document.versus_chance.by_kind == {} and document.versus_chance.base_samples["300"] == 770
    assert document.per_day == {}
    assert document.following_exits.summary.positions == 1 and document.following_exits.summary.exited == 0


def test_a_signal_at_the_close_is_censored_beyond_it_and_scored_within_it():
    tape = flat_then_fall(None)
    late = Signal("exit", "X", CLOSE - 60 * S, "late")
    table = versus_chance([late], {("X", DAY): tape}, SETTINGS).by_kind["exit"]
    assert table["30"].signals == 1 and table["30"].censored_past_close == 0
    assert table["300"].signals == 0 and table["300"].censored_past_close == 1 and table["300"].mean_forward_bps is None
    tapes = {("X", DAY): tape}
    trade = follow_exits(positions_from_open(tapes), [late], tapes, SETTINGS).trades[0]
    assert isinstance(trade, ExitedTrade)
    assert (
        trade.versus_holding["300"] is None and trade.saved_vs_hold_bps == 0.0
    )  # sold at the same bid as at the close


def test_wilson_interval_matches_the_formula():
    low, high = wilson(9, 770)
    assert low < 9 / 770 < high and (round(low, 4), round(high, 4)) == (0.0062, 0.0221)
    assert all(math.isnan(v) for v in wilson(0, 0))


# --- the engine's signals end to end --------------------------------------------------------------------


def test_a_planted_burst_then_a_planted_fall_through_the_rules():
    feed = Feed("X")
    start = OPEN + 3600 * S
    events = seconds_of_flow(feed, start, 400, 200, 0.5) + seconds_of_flow(feed, start + 400 * S, 60, 1000, 0.8)
    after = start + 460 * S
    events += [feed.quote(after + second * S, bid=49 * D + 49 * CENT, ask=49 * D + 50 * CENT) for second in range(400)]
    found = collect([events], OrderFlowConfig(threshold_mode="absolute"))
    exits = [s for s in found.signals if s.kind == "exit"]
    assert len(exits) == 1 and exits[0].id.startswith("X:exit:red_burst")
    tape = found.tapes[("X", DAY)]
    result = outcome(tape, exits[0].ts, 300, 10.0)
    before = (50 * D + 50 * D + CENT) / 2
    assert result.forward_bps == pytest.approx((49.495 * D / before - 1) * 1e4) and result.hit


# --- settings chosen on earlier days, scored on later ones ------------------------------------------------


def _found(day: str, exit_second: int, fall: bool) -> tuple[str, PriceTape, Signal]:
    open_ns = {"2026-11-23": OPEN - 86_400 * S, "2026-11-24": OPEN}[day]
    tape = PriceTape("X", day, open_ns, open_ns + 23_400 * S)
    tape.add(open_ns, 50 * D - CENT, 50 * D + CENT)
    if fall:
        tape.add(open_ns + (exit_second + 60) * S, 49 * D + 49 * CENT, 49 * D + 51 * CENT)
    return day, tape, Signal("exit", "X", open_ns + exit_second * S, f"{day}:exit")


def test_the_held_out_split_never_scores_a_day_it_ranked_on():
    train, test = split_days(["2013-10-08", "2012-06-21", "2013-10-07", "2013-10-08"], 1)
    assert train == ["2012-06-21", "2013-10-07"] and test == ["2013-10-08"] and not set(train) & set(test)
    with pytest.raises(ValueError, match="more than 1"):
        split_days(["2013-10-07"], 1)
    # "good" saves on the training day and loses on the held-out day; "bad" the other way round
    outcomes = {"good": {"2026-11-23": True, "2026-11-24": False}, "bad": {"2026-11-23": False, "2026-11-24": True}}

    def run(overrides: dict[str, str]) -> Collected:
        found = Collected()
        for day, fall in outcomes[overrides["choice"]].items():
            _day, tape, signal = _found(day, 3600, fall)
            found.tapes[("X", day)] = tape
            found.signals.append(signal)
            found.exits.append(recommendation(number=signal.ts, symbol="X"))
        return found

    result = sweep(parse_sweep(["choice=bad,good"]), run, test_days=1, horizon=300)
    assert result.train_days == ["2026-11-23"] and result.test_days == ["2026-11-24"]
    ranked = result.ranked_by_train
    assert [r.settings["choice"] for r in ranked] == ["good", "bad"]  # ranked on the training day only
    train_saved, test_saved = ranked[0].train.saved_net_bps_mean, ranked[0].test.saved_net_bps_mean
    assert train_saved is not None and test_saved is not None
    assert train_saved > 0 > test_saved  # and honestly scored after
    assert ranked[0].test.base_saved_net_bps_mean == -2.0  # chance: exit anywhere on a flat day, pay the half spread
    # walking forward, the held-out day is scored with what ranked first on the day before it
    assert [(step.test_day, step.ranked_on, step.chosen) for step in result.walk_forward] == [
        ("2026-11-24", ["2026-11-23"], {"choice": "good"})
    ]
    assert result.walk_forward_held_out == ranked[0].test and "action exit" in result.objective
    with pytest.raises(ValueError, match="key=value"):
        parse_sweep(["large_order_quantile"])
