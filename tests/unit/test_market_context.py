"""Market context on hand-made events: each label exactly, the sector ETF, the rolling windows against a brute-force
recomputation, and the index's market_selloff (fall rule, exit rule, one per episode, severity, the positions)."""

from __future__ import annotations

import itertools

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from orderflow_client.wire import Trade
from services.detector.engine import Engine
from services.detector.exits import SelloffRule, SelloffStart
from services.detector.market_context import IndexState
from services.detector.profiles import DayStatistics, build_profile
from services.detector.rule_settings import RuleSettings
from services.ingest.normalise import Normaliser
from shared.config import OrderFlowConfig
from tests.support.events import BID, OPEN, T0, D, Feed, S
from tests.unit.test_engine import alerts, exits

SPY_PRICE = 170 * D


def engine(**overrides) -> Engine:
    return Engine(RuleSettings.from_config(OrderFlowConfig(**{"threshold_mode": "absolute", **overrides})))


def run(engine: Engine, events) -> list:
    outputs = []
    for event in sorted(events, key=lambda event: event.ts_event):
        outputs.extend(engine.process(event))
    return outputs


def index_path(symbol: str, start: int, fall_bps: int, *, last: int = T0 - 5 * S) -> list[Trade]:
    """An index traded at $170.00 every 100 s from ``start``, then ``fall_bps`` lower at ``last`` (trades only)."""
    feed = Feed(symbol)
    trades = [feed.trade(ts, SPY_PRICE, 100, side="buy") for ts in range(start, last, 100 * S)]
    return [*trades, feed.trade(last, SPY_PRICE - SPY_PRICE * fall_bps // 10_000, 100, side="sell")]


def stock_with_alert(symbol: str, fall_cents: int) -> tuple[list, float]:
    """A stock quoted 50.00 × 50.02 at T0 − 300 s, ``fall_cents`` lower (both sides) at T0 − 2 s, then a 10,000-share
    sell at the bid at T0 + 1 s (a large seller); and its exact return (bps) over the window ending at the alert."""
    feed = Feed(symbol)
    low = BID - fall_cents * D // 100
    events = [
        feed.quote(T0 - 300 * S, BID, BID + 2 * D // 100),
        feed.quote(T0 - 2 * S, low, low + 2 * D // 100),
        feed.trade(T0 + S, low, 10_000),
    ]
    start, now = 2 * BID + 2 * D // 100, 2 * low + 2 * D // 100
    return events, (now - start) * 10_000 / start


def context_of(outputs, symbol: str = "X"):
    (alert,) = [alert for alert in alerts(outputs) if alert.symbol == symbol]
    return alert.context


def test_a_flat_market_makes_the_stocks_fall_stock_specific():
    stock, stock_return = stock_with_alert("X", 25)  # −50 bps
    context = context_of(run(engine(), [*index_path("SPY", T0 - 300 * S, 0), *stock]))
    assert (context.label, context.index, context.window_seconds) == ("stock_specific", "SPY", 300)
    assert context.index_return_bps == 0.0 and context.stock_return_bps == round(stock_return, 2)
    assert context.beta == 1.0 and context.index_age_ms == 6000.0
    assert context.reason.startswith("SPY rose 0.0 bps in 300 s (no fall of 10 bps)")


def test_a_market_fall_that_explains_the_stock_is_market_wide():
    stock, stock_return = stock_with_alert("X", 12)  # −24 bps against SPY's −20 bps: 4 bps beyond, within 10
    context = context_of(run(engine(), [*index_path("SPY", T0 - 300 * S, 20), *stock]))
    assert context.label == "market_wide"
    assert context.index_return_bps == -20.0 and context.expected_return_bps == -20.0
    assert context.relative_return_bps == round(stock_return + 20.0, 2) and -10 < context.relative_return_bps < 0


def test_a_stock_falling_past_the_market_by_the_fall_is_mixed():
    stock, stock_return = stock_with_alert("X", 20)  # −40 bps against −20
    context = context_of(run(engine(), [*index_path("SPY", T0 - 300 * S, 20), *stock]))
    assert context.label == "mixed"
    assert context.relative_return_bps == round(stock_return + 20.0, 2) <= -10
    assert "below the -20.0 bps its beta 1.00 explains" in context.reason


def test_a_stale_index_a_short_one_and_none_give_unknown():
    stock, _ = stock_with_alert("X", 20)
    stale = context_of(run(engine(), [*index_path("SPY", T0 - 300 * S, 20, last=T0 - 100 * S), *stock]))
    assert stale.label == "unknown" and stale.index_age_ms == 101_000.0 and "stale" in stale.reason
    short = context_of(run(engine(), [*index_path("SPY", T0 - 100 * S, 20), *stock]))
    assert short.label == "unknown" and "less than half" in short.reason
    unseen = context_of(run(engine(), stock))
    assert (unseen.label, unseen.index) == ("unknown", "SPY")
    assert context_of(run(engine(market_symbols=()), stock)) is None  # market context off


def test_the_sector_etf_is_the_index_when_it_has_data_and_the_market_otherwise():
    stock, _ = stock_with_alert("X", 12)
    sector = engine(sector_etfs={"X": "XLF"})
    context = context_of(
        run(sector, [*index_path("SPY", T0 - 300 * S, 0), *index_path("XLF", T0 - 300 * S, 20), *stock])
    )
    assert (context.index, context.label, context.index_return_bps) == ("XLF", "market_wide", -20.0)
    without = context_of(run(engine(sector_etfs={"X": "XLF"}), [*index_path("SPY", T0 - 300 * S, 0), *stock]))
    assert (without.index, without.label) == ("SPY", "stock_specific")


def test_context_changes_no_alert_id():
    stock, _ = stock_with_alert("X", 20)
    events = [*index_path("SPY", T0 - 300 * S, 20), *stock]
    with_context = [a.id for a in alerts(run(engine(), events)) if a.symbol == "X"]
    assert with_context == [a.id for a in alerts(run(engine(market_symbols=()), events)) if a.symbol == "X"]
    assert with_context == [f"X:large_seller:tape:{T0 + S}:1"]


# --- the rolling windows against a brute force ------------------------------------------
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6_000),
            st.integers(1, 5),
            st.integers(1, 900),
            st.sampled_from(["buy", "sell", "unknown"]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 4_000),
)
def test_the_index_window_equals_a_brute_force_recomputation(steps, extra):
    window = 10_000
    state = IndexState(window)
    events, ts = [], 1_000_000
    for gap, price, size, side in steps:
        ts += gap
        state.on_trade(ts, price)
        state.on_print(ts, size, side)
        events.append((ts, price, size, side))
    query = ts + extra
    segment = [events[0]]
    for previous, event in itertools.pairwise(events):
        segment = [event] if event[0] - previous[0] > window else [*segment, event]
    start = query - window
    at_start = [event for event in segment if event[0] <= start]
    start_price = (at_start[-1] if at_start else segment[0])[1]
    assert state.return_bps(query) == (segment[-1][1] - start_price) * 10_000 / start_price
    sells = sum(size for t, _p, size, side in events if t > start and side == "sell")
    buys = sum(size for t, _p, size, side in events if t > start and side == "buy")
    assert state.sell_share(query) == (sells / (sells + buys) if sells + buys else 0.0)
    assert state.covered_ns(query) == min(window, query - segment[0][0])


def test_trades_only_index_prints_get_tick_test_sides_from_the_normaliser():
    feed = Feed("SPY")
    normaliser = Normaliser()
    prices = [SPY_PRICE, SPY_PRICE + D // 100, SPY_PRICE, SPY_PRICE]
    sides = [
        normaliser.process(feed.trade(T0 + i * S, price, 100, side="unknown")).side for i, price in enumerate(prices)
    ]
    assert sides[1:] == ["buy", "sell", "sell"]


# --- market_selloff -----------------------------------------------------------------------------
def falling_index(fall_bps: int, at: int, start: int) -> list[Trade]:
    feed = Feed("SPY")
    flat = [feed.trade(ts, SPY_PRICE, 100, side="buy") for ts in range(start, at, 10 * S)]
    return [*flat, feed.trade(at, SPY_PRICE - SPY_PRICE * fall_bps // 10_000, 100, side="sell")]


def test_an_index_falling_past_the_minimum_raises_one_market_selloff_naming_every_position():
    watch = engine()
    watch.set_open_positions(["BAC", "AIG"])
    events = falling_index(35, T0, T0 - 300 * S)
    feed = Feed("SPY")
    events += [feed.trade(T0 + i * S, SPY_PRICE - SPY_PRICE * 40 // 10_000, 100, side="sell") for i in (5, 50)]
    outputs = run(watch, events)
    (alert,) = alerts(outputs)
    assert (alert.id, alert.alert_type, alert.source, alert.severity) == (
        f"SPY:market_selloff:{T0}",
        "market_selloff",
        "index",
        "warning",
    )
    assert alert.evidence["index_return_bps"] == -35.0 and alert.evidence["threshold_bps"] == 30.0
    assert alert.evidence["fall"] is True and alert.evidence["exit_rule"] is False
    assert alert.context.label == "market_wide" and alert.context.index == "SPY"
    (recommendation,) = exits(outputs)
    assert recommendation.id == f"SPY:exit:market_selloff:SPY:market_selloff:{T0}"
    assert (recommendation.scope, recommendation.symbols, recommendation.trigger) == (
        "market",
        ("AIG", "BAC"),
        "market_selloff",
    )
    assert (recommendation.action, recommendation.cost_bps) == ("exit", 0.0)  # no quote: cost unknown, 0
    assert "Every open position (AIG, BAC)" in recommendation.reasoning


def test_a_new_episode_needs_a_whole_window_without_the_condition_and_a_double_fall_is_critical():
    feed = Feed("SPY")
    first = falling_index(35, T0, T0 - 300 * S)
    recovered = [feed.trade(T0 + i * 10 * S, SPY_PRICE, 100, side="buy") for i in range(1, 70)]
    second_at = T0 + 700 * S
    second = [feed.trade(second_at, SPY_PRICE - SPY_PRICE * 70 // 10_000, 100, side="sell")]
    outputs = run(engine(), [*first, *recovered, *second])
    found = [(alert.id, alert.severity) for alert in alerts(outputs)]
    assert found == [(f"SPY:market_selloff:{T0}", "warning"), (f"SPY:market_selloff:{second_at}", "critical")]


def index_sellers(fall_bps: int) -> list:
    """SPY quoted flat for 270 s, then (``fall_bps`` lower, both sides) three 10,000-share sells at the bid 10 s
    apart from T0: its own exit rule (three large sellers)."""
    feed = Feed("SPY")
    events = [feed.quote(T0 - 300 * S, SPY_PRICE, SPY_PRICE + D // 100)]
    events += [feed.trade(T0 - 300 * S + i * 10 * S, SPY_PRICE + D // 100, 100, side="buy") for i in range(1, 28)]
    low = SPY_PRICE - SPY_PRICE * fall_bps // 10_000
    events += [feed.quote(T0 - S, low, low + D // 100)]
    return [*events, *(feed.trade(T0 + i * 10 * S, low, 10_000) for i in range(3))]


def test_the_index_exit_rule_on_a_flat_index_raises_no_market_selloff():
    watch = engine()
    watch.set_open_positions(["AIG"])
    outputs = run(watch, index_sellers(0))
    found = alerts(outputs)
    assert [alert.alert_type for alert in found] == ["large_seller"] * 3  # the index's own alerts still out
    assert all(alert.context.label == "market_wide" and alert.context.index == "SPY" for alert in found)
    assert exits(outputs) == []  # SPY not held: its own exit is not published; no sell-off: no market exit


def test_the_index_exit_rule_on_an_index_down_past_the_context_fall_raises_a_warning_market_selloff():
    watch = engine()
    watch.set_open_positions(["AIG"])
    outputs = run(watch, index_sellers(12))
    found = alerts(outputs)
    assert [alert.alert_type for alert in found] == ["large_seller"] * 3 + ["market_selloff"]
    selloff = found[-1]
    assert selloff.id == f"SPY:market_selloff:{T0 + 20 * S}" and selloff.severity == "warning"
    assert selloff.evidence["exit_rule"] is True and selloff.evidence["fall"] is False
    assert -13 < selloff.evidence["index_return_bps"] <= -10
    assert selloff.evidence["index_exit"] == f"SPY:exit:large_sellers:{found[2].id}"
    (recommendation,) = exits(outputs)
    assert (recommendation.trigger, recommendation.scope, recommendation.symbols) == (
        "market_selloff",
        "market",
        ("AIG",),
    )
    assert recommendation.cost_bps == 0.0  # AIG has no quote here: its cost is not known


def test_an_index_held_as_a_position_gets_its_own_exit_and_is_named_by_the_market_exit():
    watch = engine()
    watch.set_open_positions(["SPY", "AIG"])
    outputs = run(watch, index_sellers(12))
    own, market = exits(outputs)
    sellers = [alert for alert in alerts(outputs) if alert.alert_type == "large_seller"]
    assert (own.id, own.scope, own.trigger) == (f"SPY:exit:large_sellers:{sellers[2].id}", "symbol", "large_sellers")
    assert own.cost_bps == round(D // 100 * 10_000 / (2 * (SPY_PRICE - SPY_PRICE * 12 // 10_000) + D // 100), 4)
    assert (market.scope, market.symbols) == ("market", ("AIG", "SPY"))


def test_a_halted_index_raises_no_selloff_and_gives_unknown_context():
    feed = Feed("SPY")
    flat = [feed.trade(ts, SPY_PRICE, 100, side="buy") for ts in range(T0 - 300 * S, T0 - 10 * S, 10 * S)]
    late = feed.trade(T0 - 10 * S, SPY_PRICE, 100, side="buy", arrival=T0 + 60 * S)
    low = SPY_PRICE - SPY_PRICE * 40 // 10_000
    falling = [feed.trade(T0 + i * S, low, 100) for i in range(5)]
    stock, _ = stock_with_alert("X", 20)
    outputs = run(engine(), [*flat, late, *falling, *stock])
    statuses = [o for o in outputs if getattr(o, "state", "") == "monitoring_halted"]
    assert [status.symbols for status in statuses] == [("SPY",)]
    assert [alert.alert_type for alert in alerts(outputs)] == ["large_seller"]  # no market_selloff
    context = context_of(outputs)
    assert context.label == "unknown" and "monitoring of SPY is halted" in context.reason


def test_an_index_fed_ahead_of_the_alert_gives_the_context_as_of_the_alert():
    stock, _ = stock_with_alert("X", 20)
    feed = Feed("SPY")
    index = [feed.trade(ts, SPY_PRICE, 100, side="buy") for ts in range(T0 - 400 * S, T0 - 5 * S, 7 * S)]
    low = SPY_PRICE - SPY_PRICE * 20 // 10_000
    index += [feed.trade(T0 - 5 * S, low, 300, side="sell")]
    after = [feed.trade(T0 + i * S, SPY_PRICE + i * D // 100, 50_000, side="buy") for i in range(2, 62)]
    in_order = context_of(run(engine(), [*index, *after, *stock]))
    ahead = engine()
    for event in [*index, *after]:  # the index read up to 60 s past the stock's alert before the stock's batch
        ahead.observe_index(event)
    assert context_of(run(ahead, stock)) == in_order
    assert in_order.label == "mixed" and in_order.index_return_bps == -20.0 and in_order.index_age_ms == 6000.0
    sold = 300 / (300 + 100 * len([t for t in index if t.ts_event > T0 + S - 300 * S and t.side == "buy"]))
    assert in_order.index_sell_share == round(sold, 4)


def test_an_index_read_further_ahead_than_it_keeps_gives_no_context_rather_than_a_wrong_one():
    stock, _ = stock_with_alert("X", 20)
    feed = Feed("SPY")
    index = [feed.trade(ts, SPY_PRICE, 100, side="buy") for ts in range(T0 - 400 * S, T0 + 200 * S, 7 * S)]
    ahead = engine()
    for event in index:  # 200 s past the alert: the price at the window's start (T − 300 s) is evicted by then
        ahead.observe_index(event)
    context = context_of(run(ahead, stock))
    assert context.label == "unknown" and "ahead of the alert, past the 360 s it keeps" in context.reason


def test_the_exit_rule_and_the_fall_together_are_critical_and_a_fall_inside_an_episode_raises_nothing():
    feed = Feed("SPY")
    events = [feed.quote(T0 - 300 * S, SPY_PRICE, SPY_PRICE + D // 100)]
    events += [feed.trade(T0 - 300 * S + i * 10 * S, SPY_PRICE + D // 100, 100, side="buy") for i in range(1, 28)]
    low = SPY_PRICE - SPY_PRICE * 35 // 10_000
    events += [feed.quote(T0 - S, low, low + D // 100)]
    sellers = [feed.trade(T0 + i * 10 * S, low, 10_000) for i in range(3)]
    outputs = run(engine(), [*events, *sellers])
    (selloff,) = [alert for alert in alerts(outputs) if alert.alert_type == "market_selloff"]
    assert selloff.id == f"SPY:market_selloff:{T0 - S}"  # the quote's fall started the episode
    assert selloff.severity == "warning" and selloff.evidence["exit_rule"] is False
    assert len(exits(outputs)) == 1  # the exit rule inside the episode raises nothing more

    rule = SelloffRule(300 * S)
    start = rule.observe(T0, exit_rule=True, fall_bps=35.0, threshold_bps=30.0)
    assert start == SelloffStart(T0, exit_rule=True, fall=True, severity="critical")
    assert rule.observe(T0 + 200 * S, exit_rule=False, fall_bps=70.0, threshold_bps=30.0) is None  # same episode
    assert rule.observe(T0 + 501 * S, exit_rule=False, fall_bps=60.0, threshold_bps=30.0) == SelloffStart(
        T0 + 501 * S, exit_rule=False, fall=True, severity="critical"
    )  # a whole window without the condition: a new episode, twice the threshold: critical


# --- the engine's API and beta from the histories ------------------------------------------------
def test_observe_index_moves_the_context_without_rules_and_is_index_names_the_indexes():
    watcher = engine(sector_etfs={"X": "XLF"})
    for trade in index_path("SPY", T0 - 300 * S, 20):
        assert watcher.observe_index(trade) is None
    assert "SPY" not in watcher.symbols  # no rules ran for it
    stock, _ = stock_with_alert("X", 12)
    assert context_of(run(watcher, stock)).label == "market_wide"
    assert [watcher.is_index(s) for s in ("SPY", "XLF", "X")] == [True, True, False]
    watcher.set_open_positions(["X", "SPY", "AIG", "X"])
    assert watcher.market.positions == ("AIG", "SPY", "X")  # an index held is a position too


def test_beta_comes_from_both_histories_before_the_day():
    index_mids = tuple(170 * D + (m % 3) * D // 10 for m in range(40))
    stock_mids = [50 * D]
    for before, after in itertools.pairwise(index_mids):  # the stock moves twice the index each minute
        stock_mids.append(round(stock_mids[-1] * (1 + 2 * (after - before) / before)))
    day = "2026-11-23"
    profiles = {
        symbol: build_profile(
            symbol,
            [DayStatistics(symbol=symbol, day=day, minute_mids=tuple(mids))],
            source="files",
            built_utc="",
            profile_days=5,
        )
        for symbol, mids in (("SPY", index_mids), ("X", stock_mids))
    }
    stock, stock_return = stock_with_alert("X", 12)  # −24 bps against SPY's −20 × beta 2 = −40
    beta_engine = Engine(RuleSettings.from_config(OrderFlowConfig(threshold_mode="absolute")), profiles=profiles)
    context = context_of(run(beta_engine, [*index_path("SPY", T0 - 300 * S, 20), *stock]))
    assert round(context.beta, 3) == 2.0 and round(context.expected_return_bps, 1) == -40.0
    assert context.label == "market_wide" and abs(context.relative_return_bps - (stock_return + 40.0)) < 0.01


def day_before_with_beta_two() -> tuple[list, list]:
    """The regular session before T0's day, 40 minutes: SPY traded once a minute, X quoted once a minute moving
    exactly twice SPY's one-minute return (a beta of 2)."""
    open_before = OPEN - 86_400 * S
    index_mids = [170 * D + (m % 3) * D // 10 for m in range(40)]
    stock_mids = [50 * D]
    for before, after in itertools.pairwise(index_mids):
        stock_mids.append(round(stock_mids[-1] * (1 + 2 * (after - before) / before)))
    spy, stock = Feed("SPY"), Feed("X")
    minute = [open_before + m * 60 * S + 30 * S for m in range(40)]
    index = [spy.trade(ts, mid, 100, side="buy") for ts, mid in zip(minute, index_mids, strict=True)]
    quotes = [stock.quote(ts, mid - D // 100, mid + D // 100) for ts, mid in zip(minute, stock_mids, strict=True)]
    return index, quotes


def test_a_tailing_detector_and_the_owner_give_the_same_beta_and_label():
    index_before, stock_before = day_before_with_beta_two()
    stock, _ = stock_with_alert("X", 12)  # −24 bps against SPY's −20 × beta 2 = −40: market_wide
    index_today = index_path("SPY", T0 - 300 * S, 20)
    owner = context_of(run(engine(), [*index_before, *stock_before, *index_today, *stock]))
    tailing = engine()
    index_events, stock_events = (
        sorted([*index_before, *index_today], key=lambda e: e.ts_event),
        [*stock_before, *stock],
    )
    outputs = []
    for event in sorted([*index_events, *stock_events], key=lambda e: e.ts_event):
        if event.symbol == "SPY":
            tailing.observe_index(event)
        else:
            outputs.extend(tailing.process(event))
    assert "SPY" not in tailing.symbols
    follower = context_of(outputs)
    assert round(owner.beta, 3) == 2.0 and (owner.label, owner.expected_return_bps) == ("market_wide", -40.0)
    assert follower == owner


def test_a_stored_profile_beta_to_the_index_is_used():
    stock, _ = stock_with_alert("X", 12)
    profile = build_profile(
        "X", [DayStatistics(symbol="X", day="2026-11-23")], source="files", built_utc="", profile_days=5
    )
    profiles = {"X": msgspec.structs.replace(profile, beta=1.5, beta_index="SPY")}
    stored = Engine(RuleSettings.from_config(OrderFlowConfig(threshold_mode="absolute")), profiles=profiles)
    context = context_of(run(stored, [*index_path("SPY", T0 - 300 * S, 20), *stock]))
    assert context.beta == 1.5 and context.expected_return_bps == -30.0


def test_a_print_older_than_the_last_quote_still_counts_and_volumes_are_as_of_the_moment():
    state = IndexState(10 * S, 20 * S)
    state.on_quote(10 * S, SPY_PRICE, SPY_PRICE + D // 100)
    state.on_print(5 * S, 300, "sell")  # a print reported after a later quote: its own clock, still counted
    state.on_print(12 * S, 100, "buy")
    state.on_print(11 * S, 50, "sell")  # older than the last print: ignored
    assert state.volumes(11 * S) == (300, 0) and state.volumes(12 * S) == (300, 100)
    assert state.volumes(16 * S) == (0, 100)  # the 5 s print left the 10 s window
    assert state.last_event_at(9 * S) == 0 and state.last_event_at(11 * S) == 10 * S
