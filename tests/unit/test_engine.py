"""The rules core on hand-made ticks with exact expected outcomes."""

from __future__ import annotations

import msgspec
import pytest

from orderflow_client.wire import BookUpdate, ExitRecommendation, FeedStatus, OrderFlowAlert, Quote
from services.detector.engine import Engine
from services.detector.integrity import ValidationIssue
from services.detector.outputs import ExpiredAlerts
from services.detector.rule_settings import RuleSettings
from shared.config import OrderFlowConfig
from tests.support.events import BID, MS, OPEN, T0, D, Feed, S, seconds_of_flow


def config(**overrides) -> OrderFlowConfig:
    """The default absolute thresholds: these hand-made cases are about the rules, not calibration
    (tests/unit/test_profiles.py covers the adaptive mode)."""
    return OrderFlowConfig(**{"threshold_mode": "absolute", **overrides})


def engine(**overrides) -> Engine:
    return Engine(RuleSettings.from_config(config(**overrides)))


def run(engine: Engine, events) -> list:
    outputs = []
    for event in events:
        outputs.extend(engine.process(event))
    return outputs


def alerts(outputs) -> list[OrderFlowAlert]:
    return [o for o in outputs if isinstance(o, OrderFlowAlert)]


def exits(outputs) -> list[ExitRecommendation]:
    return [o for o in outputs if isinstance(o, ExitRecommendation)]


# --- large seller, tape --------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "expected"), [(9_999, []), (10_000, ["warning"]), (19_999, ["warning"]), (20_000, ["critical"])]
)
def test_tape_threshold_exactly_at_the_boundary(size, expected):
    feed = Feed()
    outputs = run(engine(), [feed.quote(T0), feed.trade(T0 + S, BID, size), feed.quote(T0 + 2 * S)])
    assert [a.severity for a in alerts(outputs)] == expected


def test_a_sweep_at_and_below_the_bid_is_one_order():
    feed = Feed()
    sweep = [
        feed.trade(T0 + S, BID, 4000),
        feed.trade(T0 + S + 1 * MS, BID - D // 100, 3000),
        feed.trade(T0 + S + 3 * MS, BID - 2 * D // 100, 3000),
    ]
    (alert,) = alerts(run(engine(), [feed.quote(T0), *sweep, feed.quote(T0 + 2 * S)]))
    assert (alert.order_size, alert.price_level, alert.source) == (10_000, BID - 2 * D // 100, "tape")
    assert alert.evidence["prints"] == 3 and alert.evidence["vwap"] == "49.991"
    assert alert.id == f"X:large_seller:tape:{T0 + S}:{sweep[0].trade_id}"


def test_an_order_alerts_at_the_print_that_crosses_the_threshold_and_escalates_once():
    feed = Feed()
    prints = [feed.trade(T0 + S + i * MS, BID, 6000) for i in range(4)]  # 6,000 → 12,000 → 18,000 → 24,000 shares
    e = engine()
    assert not alerts(run(e, [feed.quote(T0), prints[0]]))
    crossing = run(e, [prints[1]])  # no later event needed: the alert is raised by the crossing print itself
    assert [(a.severity, a.order_size, a.ts_event) for a in alerts(crossing)] == [
        ("warning", 12_000, prints[1].ts_event)
    ]
    assert not alerts(run(e, [prints[2]]))
    (escalation,) = alerts(run(e, [prints[3]]))
    assert (escalation.severity, escalation.order_size) == ("critical", 24_000)
    assert escalation.id == crossing[0].id + ":critical" and escalation.evidence["escalates"] == crossing[0].id
    assert not alerts(run(e, [feed.quote(T0 + 2 * S)]))  # completing the order raises nothing more
    # the escalation is the same seller: two more sellers make the exit, not one
    later = [feed.trade(T0 + 10 * S, BID, 11_000), feed.quote(T0 + 11 * S)]
    assert not exits(run(e, later))
    (exit_,) = exits(run(e, [feed.trade(T0 + 20 * S, BID, 11_000), feed.quote(T0 + 21 * S)]))
    assert len(exit_.alert_ids) == 3 and crossing[0].id in exit_.alert_ids and escalation.id not in exit_.alert_ids


@pytest.mark.parametrize("breaker", ["late", "price_up", "buy_between", "above_bid"])
def test_what_splits_an_order(breaker):
    feed = Feed()
    first = feed.trade(T0 + S, BID, 6000)
    if breaker == "late":
        rest = [feed.trade(T0 + S + 6 * MS, BID, 6000)]  # beyond the 5 ms sweep window
    elif breaker == "price_up":
        rest = [feed.trade(T0 + S + 1 * MS, BID - D // 100, 1), feed.trade(T0 + S + 2 * MS, BID, 6000)]
    elif breaker == "buy_between":
        rest = [feed.trade(T0 + S + 1 * MS, BID + D // 100, 100, side="buy"), feed.trade(T0 + S + 2 * MS, BID, 6000)]
    else:  # a sell print above the bid is not hitting the bid
        rest = [feed.trade(T0 + S + 1 * MS, BID + D // 200, 6000)]
    assert alerts(run(engine(), [feed.quote(T0), first, *rest, feed.quote(T0 + 2 * S)])) == []


def test_prints_that_cannot_be_aggressive_neither_count_nor_split():
    feed = Feed()
    events = [
        feed.quote(T0),
        feed.trade(T0 + S, BID, 6000),
        feed.trade(T0 + S + 1 * MS, BID, 99, conditions=(37,)),  # an odd-lot child: ignored
        feed.trade(T0 + S + 2 * MS, BID, 4000),
        feed.quote(T0 + 2 * S),
    ]
    (alert,) = alerts(run(engine(), events))
    assert alert.order_size == 10_000


def test_auction_prints_are_never_sellers():
    feed = Feed()
    cross = feed.trade(T0 + S, BID, 500_000, conditions=(9,))  # cross trade
    closing = feed.trade(T0 + 2 * S, BID, 500_000, conditions=(8,))  # closing prints
    assert alerts(run(engine(), [feed.quote(T0), cross, closing, feed.quote(T0 + 3 * S)])) == []


def test_extended_hours_use_their_own_threshold():
    feed = Feed()
    pre_market = OPEN - 3600 * S
    events = [feed.quote(pre_market), feed.trade(pre_market + S, BID, 12_000), feed.quote(pre_market + 2 * S)]
    assert alerts(run(engine(), events))[0].session == "pre_market"
    assert alerts(run(engine(extended_hours_large_order_size=50_000), events)) == []


# --- large seller, book --------------------------------------------------------
def test_a_large_offer_must_rest_before_it_counts():
    feed = Feed()
    shown = [feed.quote(T0, ask_size=15_000)]
    flicker = run(
        engine(),
        [*shown, feed.quote(T0 + 1_500 * MS, ask_size=15_000), feed.quote(T0 + 1_999 * MS), feed.quote(T0 + 5 * S)],
    )
    assert alerts(flicker) == []  # cancelled after 1.999 s
    rested = run(engine(), [*shown, feed.quote(T0 + 2 * S, ask_size=15_000), feed.quote(T0 + 5 * S, ask_size=15_000)])
    (alert,) = alerts(rested)  # once per appearance
    assert (alert.source, alert.order_size, alert.price_level, alert.two_sided) == (
        "book",
        15_000,
        50 * D + D // 100,
        False,
    )


def _ask_sizes(feed: Feed, large_at: list[tuple[int, int]], until: int) -> list[Quote]:
    """A quote every second from T0 to ``until`` s; the ask shows 15,000 shares inside the ``large_at``
    spans (start and end in ms), else 500."""
    times = sorted({*range(0, until * 1000 + 1, 1000), *(edge for span in large_at for edge in span)})
    return [
        feed.quote(T0 + ms * MS, ask_size=15_000 if any(start <= ms < end for start, end in large_at) else 500)
        for ms in times
    ]


def test_a_reported_offer_that_returns_to_its_price_is_the_same_seller_until_the_return_window_ends():
    """Reported at 2 s; gone at 3 s and back at 63 s (60 s later: within the window, not reported again);
    gone at 66 s and back at 126.001 s (60.001 s later: a new appearance, reported once it rested 2 s)."""
    feed = Feed()
    quotes = _ask_sizes(feed, [(0, 3_000), (63_000, 66_000), (126_001, 130_000)], 131)
    assert [(a.ts_event - T0, a.evidence["rested_seconds"]) for a in alerts(run(engine(), quotes))] == [
        (2 * S, 2.0),
        (129 * S, 2.999),
    ]  # judged at the first event after it rested 2 s
    every_return = run(engine(book_return_seconds=0), quotes)  # 0: every return is a new appearance
    assert [a.ts_event - T0 for a in alerts(every_return)] == [2 * S, 65 * S, 129 * S]


def test_an_offer_that_flickered_before_it_was_reported_starts_its_rest_again():
    quotes = _ask_sizes(Feed(), [(0, 1_500), (1_600, 5_000)], 5)
    (alert,) = alerts(run(engine(), quotes))
    assert alert.ts_event == T0 + 4 * S and alert.evidence["rested_seconds"] == 2.4


def test_the_heartbeat_reports_a_rested_offer_between_events_with_the_id_the_next_event_gives():
    """Live, a quiet stock: the offer shows at T0 and nothing arrives for 10 s. Offline the alert waits for the
    next event (T0 + 10 s); live the heartbeat reports it at 2 s of receive time, with the same id."""
    feed = Feed()
    shown, next_event = feed.quote(T0, ask_size=15_000), feed.quote(T0 + 10 * S, ask_size=15_000)
    (offline,) = alerts(run(engine(), [shown, next_event]))
    live = engine()
    assert run(live, [shown]) == []
    assert live.next_due() == T0 + 2 * S  # ts_recv == ts_event in these ticks
    assert live.advance(T0 + 2 * S - 1) == []
    (heartbeat,) = alerts(live.advance(T0 + 2 * S + 7 * MS))  # a heartbeat 7 ms late: stamped when it became true
    assert (heartbeat.id, heartbeat.ts_event, heartbeat.ts_recv) == (offline.id, T0 + 2 * S, T0 + 2 * S)
    assert heartbeat.evidence["rested_seconds"] == 2.0
    assert live.next_due() is None and alerts(live.advance(T0 + 3 * S)) == [] and alerts(run(live, [next_event])) == []


def test_the_heartbeat_follows_the_feed_s_delay_and_never_reports_while_halted():
    feed = Feed()
    delayed = feed.quote(T0, ask_size=15_000)
    delayed = Quote(**{**{f: getattr(delayed, f) for f in delayed.__struct_fields__}, "ts_recv": T0 + 300 * MS})
    live = engine()
    run(live, [delayed])
    assert live.advance(T0 + 2 * S) == [] and live.next_due() == T0 + 2_300 * MS  # event time = receive time − 300 ms
    (alert,) = alerts(live.advance(T0 + 2_300 * MS))
    assert (alert.ts_event, alert.ts_recv) == (T0 + 2 * S, T0 + 2_300 * MS)
    halted = engine()
    run(halted, [feed.quote(T0, ask_size=15_000)])
    halted.symbols["X"].integrity.halted = True
    assert halted.advance(T0 + 5 * S) == []


def test_two_sided_size_lowers_severity_and_does_not_count_toward_an_exit():
    feed = Feed()
    events = []
    for index in range(3):
        start = T0 + index * 30 * S
        ask = 50 * D + (index + 1) * D // 100
        events += [
            feed.quote(start, ask=ask, bid_size=40_000, ask_size=45_000),
            feed.quote(start + 3 * S, ask=ask, bid_size=40_000, ask_size=45_000),
            feed.quote(start + 4 * S, ask=ask),
        ]
    outputs = run(engine(), events)
    assert [(a.severity, a.two_sided) for a in alerts(outputs)] == [
        ("warning", True)
    ] * 3  # 45,000 ≥ 2x would be critical
    assert exits(outputs) == []


def test_depth_books_alert_on_any_level():
    feed = Feed()
    asks = ((50_010_000_000, 300), (50_020_000_000, 400), (50_050_000_000, 18_000))
    book = [
        BookUpdate(symbol="X", ts_event=T0 + offset, ts_recv=T0, ts_arrival=T0 + offset, bids=((BID, 300),), asks=asks)
        for offset in (0, 2_500 * MS)
    ]
    (alert,) = alerts(run(engine(), book))
    assert (alert.price_level, alert.order_size) == (50_050_000_000, 18_000)
    assert feed  # the same rule serves NBBO and depth


# --- red burst -------------------------------------------------------------------
def test_red_burst_warning_then_critical_then_one_exit():
    feed = Feed()
    events = seconds_of_flow(feed, T0, 360, 1000, 0.5) + seconds_of_flow(feed, T0 + 360 * S, 60, 5000, 0.8)
    outputs = run(engine(), events)
    bursts = alerts(outputs)
    assert [a.severity for a in bursts] == ["warning", "critical"]
    assert bursts[0].volume_ratio >= 3.0 and bursts[1].volume_ratio >= 4.0 and bursts[1].sell_ratio >= 0.6
    assert [e.trigger for e in exits(outputs)] == ["red_burst"]


def test_no_burst_without_a_full_baseline_or_with_balanced_flow():
    feed = Feed()
    # only 200 s of history
    early = seconds_of_flow(feed, T0, 200, 1000, 0.5) + seconds_of_flow(feed, T0 + 200 * S, 60, 5000, 0.8)
    assert alerts(run(engine(), early)) == []
    balanced = seconds_of_flow(feed, T0, 360, 1000, 0.5) + seconds_of_flow(feed, T0 + 360 * S, 60, 5000, 0.55)
    assert alerts(run(engine(), balanced)) == []
    # a 3,000-share baseline
    thin = seconds_of_flow(feed, T0, 360, 10, 0.5) + seconds_of_flow(feed, T0 + 360 * S, 60, 50, 0.9)
    assert alerts(run(engine(), thin)) == []


def test_a_burst_at_the_session_open_needs_a_regular_session_baseline():
    feed = Feed()
    pre = seconds_of_flow(feed, OPEN - 400 * S, 400, 50, 0.5)  # thin pre-market
    opening = seconds_of_flow(feed, OPEN, 120, 5000, 0.8)  # heavy selling from 09:30
    outputs = run(engine(), pre + opening)
    assert alerts(outputs) == []  # windows reset at the open: no baseline yet


# --- exits and the window edge --------------------------------------------------
def _large_sell_at(feed: Feed, ts: int) -> list:
    return [feed.quote(ts - S), feed.trade(ts, BID, 12_000), feed.quote(ts + 10 * MS)]


def test_three_large_sellers_inside_the_window_trigger_one_exit():
    feed = Feed()
    events = _large_sell_at(feed, T0) + _large_sell_at(feed, T0 + 60 * S) + _large_sell_at(feed, T0 + 119 * S)
    events += _large_sell_at(feed, T0 + 150 * S)  # a fourth in the same episode: no second exit
    outputs = run(engine(), events)
    (recommendation,) = exits(outputs)
    assert recommendation.trigger == "large_sellers" and len(recommendation.alert_ids) == 3
    assert "3 large sellers within 119 s" in recommendation.reasoning


def test_alerts_spanning_the_window_edge_do_not_trigger():
    feed = Feed()
    events = _large_sell_at(feed, T0) + _large_sell_at(feed, T0 + 60 * S) + _large_sell_at(feed, T0 + 121 * S)
    outputs = run(engine(), events)
    assert len(alerts(outputs)) == 3 and exits(outputs) == []
    expired = [o for o in outputs if isinstance(o, ExpiredAlerts)]
    assert expired and expired[0][0].startswith("X:large_seller:tape:")


# --- integrity -------------------------------------------------------------------
def test_stale_ticks_halt_and_fresh_data_resumes():
    feed = Feed()
    events = [feed.quote(T0), feed.quote(T0 + S, arrival=T0 + 12 * S), feed.quote(T0 + 2 * S, arrival=T0 + 40 * S)]
    events += [feed.quote(T0 + 3 * S + second * S) for second in range(32)]
    outputs = run(engine(), events)
    issues = [o.code for o in outputs if isinstance(o, ValidationIssue)]
    assert issues == ["stale_data", "stale_data_failure"]
    states = [(o.state, o.code) for o in outputs if isinstance(o, FeedStatus)]
    assert states == [("monitoring_halted", "stale_data"), ("monitoring_resumed", "stale_data")]


def test_out_of_order_prints_halt_and_no_alert_while_halted():
    feed = Feed()
    events = [
        feed.quote(T0),
        feed.trade(T0 + 10 * S, BID, 100),
        feed.trade(T0 + 9 * S, BID, 100),
        feed.trade(T0 + 11 * S, BID, 50_000),
        feed.quote(T0 + 12 * S),
    ]
    outputs = run(engine(), events)
    assert [o.code for o in outputs if isinstance(o, ValidationIssue)] == ["out_of_order"]
    assert [o.state for o in outputs if isinstance(o, FeedStatus)] == ["monitoring_halted"]
    assert alerts(outputs) == []  # the 50,000-share sale came while halted: not trusted


def test_bad_prices_and_sizes_halt():
    feed = Feed()
    outputs = run(engine(), [feed.quote(T0), feed.trade(T0 + S, 0, 100), feed.trade(T0 + 2 * S, BID, 0)])
    assert [o.code for o in outputs if isinstance(o, ValidationIssue)] == ["invalid_price", "invalid_size"]


def test_a_gap_resets_the_windows():
    feed = Feed()
    baseline = seconds_of_flow(feed, T0, 360, 1000, 0.5)
    after_gap = seconds_of_flow(feed, T0 + 400 * S, 60, 5000, 0.8)  # 39 s of silence, then a spike
    outputs = run(engine(), baseline + after_gap)
    assert [o.state for o in outputs if isinstance(o, FeedStatus)] == ["gap"]
    assert alerts(outputs) == []  # the spike is measured against no trusted baseline
    fed_status = FeedStatus(source="polygon", state="gap", ts_event=T0, ts_recv=T0, symbols=("X",))
    assert run(engine(), [fed_status]) == []  # an ingest gap is accepted silently (windows reset)


def test_identical_input_gives_identical_alert_ids():
    def ids():
        feed = Feed()
        events = (
            _large_sell_at(feed, T0)
            + seconds_of_flow(feed, T0 + 10 * S, 360, 1000, 0.5)
            + seconds_of_flow(feed, T0 + 370 * S, 60, 5000, 0.8)
        )
        return [a.id for a in alerts(run(engine(), events))]

    assert ids() == ids() and len(ids()) == 3


def test_symbol_overrides_apply_to_their_symbol_only():
    overrides = config(symbol_overrides={"BIG": {"large_order_size": 50_000}})
    detector = Engine(RuleSettings.from_config(overrides), config=overrides)
    outputs = []
    for symbol in ("BIG", "SMALL"):
        feed = Feed(symbol)
        outputs += run(detector, [feed.quote(T0), feed.trade(T0 + S, BID, 30_000), feed.quote(T0 + 2 * S)])
    assert [(a.symbol, a.severity, a.evidence["threshold"]) for a in alerts(outputs)] == [("SMALL", "critical", 10_000)]


def test_one_block_is_not_a_red_burst():
    feed = Feed()
    baseline = seconds_of_flow(feed, T0, 360, 1000, 0.5)
    spike_start = T0 + 360 * S
    block = [
        feed.quote(spike_start),
        feed.trade(spike_start + 100 * MS, BID, 200_000, side="sell"),
    ]  # one 200k-share print
    after = seconds_of_flow(feed, spike_start + S, 30, 1000, 0.5)
    assert alerts(run(engine(large_order_size=500_000), baseline + block + after)) == []
    broad = seconds_of_flow(feed, spike_start, 60, 5000, 0.8)  # the same volume, from many sellers
    assert [a.alert_type for a in alerts(run(engine(), baseline + broad))] == ["red_burst", "red_burst"]


# --- which view judged it --------------------------------------------------------
def test_the_evidence_says_which_view_judged_a_large_seller():
    """A 15,000-share offer three levels deep in a ten-level book (the depth view) against the same offer at the
    inside of a quote (the NBBO view); a tape seller whose prints carry the feed's sides against one whose sides were
    inferred."""
    feed = Feed()
    asks = tuple((BID + (level + 1) * D // 100, 15_000 if level == 3 else 500) for level in range(10))

    def book(offset: int) -> BookUpdate:
        return BookUpdate(symbol="X", ts_event=T0 + offset, ts_recv=T0 + offset, ts_arrival=T0 + offset,
                          bids=((BID, 300),), asks=asks)  # fmt: skip

    (deep,) = alerts(run(engine(), [book(0), book(3 * S)]))
    assert (deep.source, deep.price_level) == ("book", asks[3][0])
    assert {key: deep.evidence[key] for key in ("view", "level", "levels_shown")} == {
        "view": "book",
        "level": 3,
        "levels_shown": 10,
    }
    (inside,) = alerts(run(engine(), [feed.quote(T0, ask_size=15_000), feed.quote(T0 + 3 * S, ask_size=15_000)]))
    assert (inside.evidence["view"], inside.evidence["level"], inside.evidence["levels_shown"]) == ("nbbo", 0, 1)

    def seller(side_source: str) -> OrderFlowAlert:
        prints = [msgspec.structs.replace(feed.trade(T0 + S + n * MS, BID, 5_000), side_source=side_source)
                  for n in range(2)]  # fmt: skip
        (alert,) = alerts(run(engine(), [feed.quote(T0), *prints, feed.quote(T0 + 2 * S)]))
        return alert

    assert seller("feed").evidence["sides"] == "feed"
    assert seller("quote").evidence["sides"] == "inferred"
