"""The web dashboard's state model, fed hand-made bus messages: exact cards, colours, counts, charts and health;
its event hub (history, resume, reset) and its views; its readers on the embedded bus."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from orderflow_client.bus.connection import Bus
from orderflow_client.positions import Position
from orderflow_client.wire import BookUpdate, ExitRecommendation, FeedStatus, OrderFlowAlert, Trade
from services.dashboard.hub import RESET, Hub
from services.dashboard.market import SymbolMarket
from services.dashboard.readers import BLOCK_MS, Readers
from services.dashboard.state import DashboardState, percentile
from services.dashboard.views import market_changes, output_view, snapshot_view, summary_view
from tests.support.events import MS, T0, D, S

WINDOW = 120 * S


def alert(symbol: str, at: int, kind: str = "large_seller", size: int = 12_000, **fields: object) -> OrderFlowAlert:
    return OrderFlowAlert(
        id=f"{symbol}-{kind}-{at}",
        symbol=symbol,
        alert_type=kind,  # type: ignore[arg-type]
        severity=fields.pop("severity", "warning"),  # type: ignore[arg-type]
        source="tape",
        ts_event=at,
        ts_recv=at,
        timestamp_utc="",
        order_size=size if kind == "large_seller" else 0,
        price_level=50 * D if kind == "large_seller" else 0,
        volume_ratio=4.5 if kind == "red_burst" else 0.0,
        sell_ratio=0.8 if kind == "red_burst" else 0.0,
        latency_ms=fields.pop("latency_ms", 2.0),  # type: ignore[arg-type]
    )


def exit_of(symbol: str, at: int) -> ExitRecommendation:
    return ExitRecommendation(
        id=f"exit-{symbol}-{at}",
        symbol=symbol,
        trigger="large_sellers",
        ts_event=at,
        ts_recv=at,
        timestamp_utc="",
        alert_ids=(),
        reasoning="3 large sellers in 120 s",
        latency_ms=4.0,
    )


def status(state: str, symbols: tuple[str, ...], at: int, code: str = "", detail: str = "") -> FeedStatus:
    return FeedStatus(source="polygon", state=state, ts_event=at, ts_recv=at, symbols=symbols, code=code, detail=detail)  # type: ignore[arg-type]


def trade(symbol: str, at: int, price: float, size: int, side: str = "sell", recv: int | None = None) -> Trade:
    return Trade(
        symbol=symbol,
        ts_event=at,
        ts_recv=at if recv is None else recv,
        ts_arrival=at,
        price=round(price * D),
        size=size,
        side=side,  # type: ignore[arg-type]
    )


def state_with(*symbols: str) -> DashboardState:
    state = DashboardState(alert_window_ns=WINDOW)
    state.set_positions([Position(symbol=symbol, quantity=100, entry_price=50 * D) for symbol in symbols])
    return state


def test_the_colour_follows_the_sellers_in_the_alert_window():
    state = state_with("AAPL")
    assert state.colour("AAPL") == "green"
    state.apply_output(alert("AAPL", T0))
    assert state.colour("AAPL") == "yellow"
    state.apply_output(alert("AAPL", T0 + 10 * S))
    assert state.colour("AAPL") == "dark_orange"
    assert len(state.window_alerts("AAPL")) == 2
    state.apply_market(trade("AAPL", T0 + 200 * S, 50.0, 100), T0)  # the market clock moves past the window
    assert state.colour("AAPL") == "green"
    assert state.window_alerts("AAPL") == []
    state.apply_output(alert("AAPL", T0 + 201 * S, kind="red_burst"))
    assert state.colour("AAPL") == "red"


def test_an_exit_recommendation_makes_the_card_red_and_is_kept_as_the_last_exit():
    state = state_with("AAPL", "MSFT")
    state.apply_output(exit_of("AAPL", T0))
    card = summary_view(state, T0)["cards"][0]
    assert card["symbol"] == "AAPL"
    assert card["colour"] == "red"
    assert card["last_exit"]["trigger"] == "large sellers"
    assert card["last_exit"]["time"] == T0 // MS
    assert card["last_exit"]["bots"] == {}
    state.handled["exit-AAPL-" + str(T0)] = {"bot": "handled"}
    assert summary_view(state, T0)["cards"][0]["last_exit"]["bots"] == {"bot": "handled"}
    assert summary_view(state, T0)["cards"][1]["colour"] == "green"


def test_monitoring_states_with_their_reasons():
    state = state_with("AAPL", "MSFT", "TSLA")
    state.apply_output(status("calibrating", ("AAPL",), T0, code="no_profile"))
    state.apply_output(status("monitoring_halted", ("MSFT",), T0, code="stale_data", detail="12 s behind"))
    state.apply_output(status("gap", ("TSLA",), T0, code="socket_disconnect"))
    state.apply_output(status("dead_letter", ("AAPL",), T0, code="wire_undecodable"))  # says nothing of monitoring
    assert (state.monitoring_of("AAPL").state, state.monitoring_of("AAPL").reason) == ("calibrating", "no_profile")
    assert (state.monitoring_of("MSFT").state, state.monitoring_of("MSFT").reason) == (
        "halted",
        "stale_data: 12 s behind",
    )
    assert state.monitoring_of("TSLA").state == "gap"
    state.apply_output(status("monitoring_resumed", ("MSFT",), T0 + S))
    assert (state.monitoring_of("MSFT").state, state.monitoring_of("MSFT").reason) == ("waiting", "no market event yet")
    state.apply_market(trade("MSFT", T0 + S, 50.0, 100), T0)
    assert (state.monitoring_of("MSFT").state, state.monitoring_of("MSFT").reason) == ("live", "")
    # a gap stays on the card until data has flowed for a minute after it
    state.apply_market(trade("TSLA", T0 + 30 * S, 50.0, 100), T0)
    assert state.monitoring_of("TSLA").state == "gap"
    state.apply_market(trade("TSLA", T0 + 61 * S, 50.0, 100), T0)
    assert state.monitoring_of("TSLA").state == "live"


def test_a_feed_status_for_every_symbol_and_the_source_connection():
    state = state_with("AAPL", "MSFT")
    for symbol in ("AAPL", "MSFT"):
        state.apply_market(trade(symbol, T0, 50.0, 100), T0)
    state.apply_output(status("trading_halted", ("AAPL",), T0, code="LUDP"))
    state.apply_output(status("disconnected", (), T0, code="socket_closed"))
    assert [state.monitoring_of(symbol).state for symbol in ("AAPL", "MSFT")] == ["halted", "halted"]  # as the panel
    health = summary_view(state, T0)["health"]
    assert health["sources"] == {"polygon": {"connected": False, "since": T0 // MS, "code": "socket_closed"}}
    state.apply_output(status("connected", (), T0 + S))
    assert summary_view(state, T0)["health"]["sources"]["polygon"]["connected"] is True
    # a connection naming no symbol ends only the lost feed: the stock halt holds until trading resumes
    assert (state.monitoring_of("AAPL").state, state.monitoring_of("AAPL").reason) == ("halted", "LUDP")
    assert state.monitoring_of("MSFT").state == "live"
    state.apply_output(status("trading_resumed", ("AAPL",), T0 + 2 * S))
    assert state.monitoring_of("AAPL").state == "live"


def test_the_state_shown_is_the_worst_of_every_source_and_each_resume_ends_only_its_own_halt():
    state = state_with("AAPL")
    state.apply_market(trade("AAPL", T0, 50.0, 100), T0)
    state.apply_output(status("trading_halted", ("AAPL",), T0, code="LUDP"))
    detector = FeedStatus(
        source="detector", state="monitoring_halted", ts_event=T0 + S, ts_recv=T0 + S, symbols=("AAPL",), code="stale"
    )
    state.apply_output(detector)
    state.apply_output(status("calibrating", ("AAPL",), T0 + 2 * S, code="no_profile"))
    assert (state.monitoring_of("AAPL").state, state.monitoring_of("AAPL").reason) == ("halted", "stale")  # latest
    state.apply_output(status("monitoring_resumed", ("AAPL",), T0 + 3 * S))  # polygon's: not the detector's halt
    assert (state.monitoring_of("AAPL").state, state.monitoring_of("AAPL").reason) == ("halted", "stale")
    state.apply_output(status("connected", ("AAPL",), T0 + 3 * S))
    state.apply_output(status("trading_resumed", ("AAPL",), T0 + 4 * S))
    assert state.monitoring_of("AAPL").state == "halted"  # the detector's monitoring halt still holds
    resumed = FeedStatus(
        source="detector", state="monitoring_resumed", ts_event=T0 + 5 * S, ts_recv=T0, symbols=("AAPL",)
    )
    state.apply_output(resumed)
    assert (state.monitoring_of("AAPL").state, state.monitoring_of("AAPL").reason) == ("calibrating", "no_profile")
    state.apply_output(status("calibrated", ("AAPL",), T0 + 6 * S))
    assert state.monitoring_of("AAPL").state == "live"
    assert summary_view(state, T0)["cards"][0]["monitoring"] == {"state": "live", "reason": "", "since": None}


def test_a_symbol_without_status_or_data_is_waiting_not_live():
    state = state_with("AAPL")
    card = summary_view(state, T0)["cards"][0]
    assert card["monitoring"] == {"state": "waiting", "reason": "no market event yet", "since": None}
    state.apply_output(status("dead_letter", ("AAPL",), T0, code="wire_undecodable"))  # says nothing of monitoring
    assert state.monitoring_of("AAPL").state == "waiting"
    state.apply_market(trade("AAPL", T0, 50.0, 100), T0)
    assert state.monitoring_of("AAPL").state == "live"


def test_an_exit_recommendation_is_red_for_one_alert_window_and_log_lines_keep_their_colour():
    state = state_with("AAPL")
    state.apply_output(alert("AAPL", T0))
    state.apply_output(exit_of("AAPL", T0 + S))
    state.apply_output(alert("AAPL", T0 + 2 * S))  # arrives while the exit is red
    assert state.colour("AAPL") == "red"
    state.apply_market(trade("AAPL", T0 + S + WINDOW, 50.0, 100), T0)
    assert state.colour("AAPL") == "red"  # the exit's window: up to and including 120 s after it
    state.apply_market(trade("AAPL", T0 + S + WINDOW + 1, 50.0, 100), T0)
    assert state.colour("AAPL") == "yellow"  # the exit and the first seller have left the window
    state.apply_market(trade("AAPL", T0 + 2 * S + WINDOW + 1, 50.0, 100), T0)
    assert state.colour("AAPL") == "green"
    card = summary_view(state, T0)["cards"][0]
    assert (card["colour"], card["last_exit"]["trigger"]) == ("green", "large sellers")  # still the last exit
    assert [(line["kind"], line["colour"]) for line in snapshot_view(state, T0, "boot-1")["log"]] == [
        ("large_seller", "yellow"),
        ("exit", "red"),
        ("large_seller", "red"),
    ]


def test_statuses_and_times_far_ahead_of_the_wall_clock_do_not_move_the_market_clock():
    wall = T0 + 3 * 365 * 24 * 3600 * S  # replaying a session three years old
    state = DashboardState(alert_window_ns=WINDOW, extra_symbols=("AAPL",), wall_clock=lambda: wall)
    state.apply_output(alert("AAPL", T0, size=30_000))
    state.apply_output(status("gap", ("AAPL",), wall, code="socket_disconnect"))  # wall-clock stamped
    state.apply_output(status("dead_letter", (), wall, code="wire_undecodable"))
    assert state.clock_ns == T0
    state.apply_market(trade("AAPL", wall + 6 * 60 * S, 50.0, 100), wall)  # a bad stamp: 6 minutes in the future
    state.apply_output(alert("AAPL", wall + 3600 * S))
    assert state.clock_ns == T0
    state.apply_market(trade("AAPL", T0 + 10 * S, 50.0, 100), wall)
    assert state.clock_ns == T0 + 10 * S
    summary = summary_view(state, wall)
    assert (summary["alerts_5m"], summary["cards"][0]["colour"]) == (2, "orange")  # the badly stamped alert counts
    assert summary["largest_seller"]["shares"] == 30_000
    assert [line["time"] for line in snapshot_view(state, wall, "boot-1")["log"]] == [T0 // MS, (wall + 3600 * S) // MS]


def test_pnl_from_the_latest_trade_against_the_entry():
    state = state_with("AAPL")
    assert state.pnl("AAPL") is None
    state.apply_market(trade("AAPL", T0, 51.25, 100), T0)
    state.apply_market(trade("AAPL", T0 - S, 10.0, 100), T0)  # an older print does not move the last price
    assert state.pnl("AAPL") == pytest.approx((125.0, 2.5))
    card = summary_view(state, T0)["cards"][0]
    assert card["price"] == "51.25"
    assert card["pnl"] == {"dollars": 125.0, "percent": 2.5}


def test_pnl_of_a_short_position_gains_as_the_price_falls():
    state = DashboardState(alert_window_ns=WINDOW)
    state.set_positions([Position(symbol="TSLA", quantity=-200, entry_price=250 * D)])
    state.apply_market(trade("TSLA", T0, 245.0, 100), T0)
    assert state.pnl("TSLA") == pytest.approx((1000.0, 2.0))
    state.apply_market(trade("TSLA", T0 + S, 255.0, 100), T0)
    assert summary_view(state, T0)["cards"][0]["pnl"] == {"dollars": -1000.0, "percent": -2.0}


def test_the_alert_log_keeps_30_minutes_and_counts_the_last_5():
    state = state_with("AAPL")
    state.apply_output(alert("AAPL", T0, size=30_000))
    state.apply_output(alert("AAPL", T0 + 26 * 60 * S, size=12_000))
    state.apply_output(alert("AAPL", T0 + 29 * 60 * S, kind="red_burst", severity="critical"))
    assert state.recent_alerts() == 2
    assert len(state.log) == 3
    state.apply_output(alert("AAPL", T0 + 31 * 60 * S, size=11_000))
    assert [item.ts_event for item in state.log] == [T0 + 26 * 60 * S, T0 + 29 * 60 * S, T0 + 31 * 60 * S]
    assert state.recent_alerts() == 3
    largest = state.largest_seller_today()
    assert largest is not None and largest.order_size == 30_000  # the day's largest, though out of the log
    snapshot = snapshot_view(state, T0, "boot-7")
    assert [item["kind"] for item in snapshot["log"]] == ["large_seller", "red_burst", "large_seller"]
    assert snapshot["summary"]["largest_seller"] == {
        "symbol": "AAPL",
        "shares": 30_000,
        "price": "50.00",
        "time": T0 // MS,
    }


def test_the_largest_seller_is_of_the_new_york_day():
    state = state_with("AAPL")
    state.apply_output(alert("AAPL", T0, size=90_000))
    state.apply_output(alert("AAPL", T0 + 24 * 3600 * S, size=11_000))  # the next day
    largest = state.largest_seller_today()
    assert largest is not None and largest.order_size == 11_000


def test_log_lines_and_their_colours():
    state = state_with("AAPL")
    state.apply_output(alert("AAPL", T0))
    first = output_view(state.log[0], state, entry_ms=123)
    assert (first["colour"], first["what"], first["entry_ms"]) == (
        "yellow",
        "large seller 12,000 shares @ 50.00 (tape)",
        123,
    )
    state.apply_output(alert("AAPL", T0 + S, kind="red_burst", severity="critical"))
    burst = output_view(state.log[1], state)
    assert (burst["colour"], burst["severity"], burst["what"]) == (
        "red",
        "critical",
        "red burst: volume 4.5x normal, 80% sells",
    )
    state.apply_output(exit_of("AAPL", T0 + 2 * S))
    assert output_view(state.log[2], state)["kind"] == "exit"


def test_feed_health_latency_lag_and_frame_age():
    state = state_with("AAPL", "MSFT")
    for index, latency in enumerate([1.0, 2.0, 3.0, 100.0]):
        state.apply_output(alert("AAPL", T0 + index * S, latency_ms=latency))
    state.apply_market(trade("AAPL", T0, 50.0, 100, recv=T0), T0 + 40 * MS)
    state.apply_market(trade("MSFT", T0, 50.0, 100, recv=T0 + 2 * S), T0 + 2 * S + 10 * MS)
    state.lags = {"AAPL": 3, "MSFT": 4, "GONE": 100}
    health = summary_view(state, T0 + 5 * S)["health"]
    assert (health["latency_p50_ms"], health["latency_p99_ms"]) == (2.0, 100.0)
    assert (health["delay_p50_ms"], health["delay_p99_ms"]) == (10.0, 40.0)
    assert health["last_frame"] == (T0 + 2 * S) // MS
    assert health["last_frame_age_s"] == 3.0
    assert health["lag"] == 7


def test_percentile_is_the_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([float(value) for value in range(1, 101)], 0.5) == 50.0
    assert percentile([float(value) for value in range(1, 101)], 0.99) == 99.0


def test_the_chart_keeps_a_price_a_second_and_minute_bars_with_sell_share_and_volume_vs_normal():
    market = SymbolMarket("AAPL")
    minute = T0 - T0 % (60 * S)
    market.add(trade("AAPL", minute, 50.0, 100, side="buy"))
    market.add(trade("AAPL", minute + 500 * MS, 50.1, 300, side="sell"))  # same second: the later price
    market.add(trade("AAPL", minute + 61 * S, 49.9, 1200, side="sell"))
    market.add(trade("AAPL", minute + 62 * S, 49.8, 400, side="unknown"))
    second = minute // S
    assert list(market.prices) == [
        (second, round(50.1 * D)),
        (second + 61, round(49.9 * D)),
        (second + 62, 49_800_000_000),
    ]
    first, last = market.bars
    assert (first.minute, first.bought, first.sold, first.unclassified) == (second, 100, 300, 0)
    assert first.sell_share == 0.75
    assert (last.sold, last.unclassified, last.sell_share) == (1200, 400, 1.0)
    assert market.volume_ratio(first) is None
    assert market.volume_ratio(last) == 4.0
    # the window: 30 minutes
    market.add(trade("AAPL", minute + 32 * 60 * S, 49.0, 100, side="buy"))
    assert [point[0] for point in market.prices] == [second + 32 * 60]
    assert [bar.minute for bar in market.bars] == [second + 32 * 60]


def test_chart_changes_are_handed_out_once_and_carry_the_book():
    state = state_with("AAPL")
    state.apply_market(trade("AAPL", T0, 50.0, 100), T0)
    state.apply_market(
        BookUpdate(
            symbol="AAPL",
            ts_event=T0,
            ts_recv=T0,
            ts_arrival=T0,
            asks=tuple((50 * D + level * D // 100, 100 * (level + 1)) for level in range(1, 8)),
            bids=((50 * D, 300),),
            venue="XNAS",
        ),
        T0,
    )
    changes = market_changes(state)
    assert list(changes) == ["AAPL"]
    assert changes["AAPL"]["prices"] == [[T0 // S, 50.0]]
    assert changes["AAPL"]["book"]["asks"] == [
        ["50.01", 200],
        ["50.02", 300],
        ["50.03", 400],
        ["50.04", 500],
        ["50.05", 600],
    ]
    assert changes["AAPL"]["book"]["venue"] == "XNAS"
    assert market_changes(state) == {}  # nothing new
    state.apply_market(trade("AAPL", T0 + 2 * S, 50.5, 100), T0)
    again = market_changes(state)["AAPL"]
    assert again["prices"] == [[T0 // S, 50.0], [T0 // S + 2, 50.5]]  # from the last point handed out
    assert again["book"] is None


def test_detector_owners_are_shown_only_with_detectors_sharing_symbols():
    state = state_with("AAPL")
    assert summary_view(state, T0)["cards"][0]["detector"] is None
    state.detectors_alive, state.detectors = 2, {"AAPL": ""}
    assert summary_view(state, T0)["cards"][0]["detector"] == ""
    state.detectors = {"AAPL": "detector-b"}
    assert summary_view(state, T0)["cards"][0]["detector"] == "detector-b"


def test_symbols_shown_are_the_positions_and_the_ones_named():
    state = DashboardState(extra_symbols=("QUIET",))
    state.set_positions([Position(symbol="AAPL", quantity=1, entry_price=D)])
    assert state.symbols() == ["AAPL", "QUIET"]
    assert summary_view(state, T0)["cards"][1]["position"] is None


async def test_the_hub_resumes_after_an_id_and_resets_when_it_cannot():
    hub = Hub(history=3)
    early = hub.subscribe(None)
    for number in range(5):
        hub.publish("summary", {"n": number})
    assert early.qsize() == 5
    assert hub.last_id == f"{hub.boot}-5"
    resumed = hub.subscribe(f"{hub.boot}-3")
    assert [item.split(b"\n")[0] for item in _drain(resumed)] == [
        f"id: {hub.boot}-4".encode(),
        f"id: {hub.boot}-5".encode(),
    ]
    assert _drain(hub.subscribe(f"{hub.boot}-1")) == [RESET]  # 2 is no longer kept
    assert _drain(hub.subscribe("another-run-5")) == [RESET]
    assert _drain(hub.subscribe(f"{hub.boot}-5")) == []


async def test_a_page_too_slow_gets_a_reset_not_a_growing_queue():
    hub = Hub(queue_limit=3)
    slow = hub.subscribe(None)
    for number in range(4):
        hub.publish("market", {"n": number})
    assert _drain(slow) == [RESET]
    assert hub.dropped_pages == 1
    await asyncio.sleep(0)


async def test_the_readers_wait_in_redis_and_pass_an_alert_on_at_once(monkeypatch):
    """Idle, the two stream readers each send about one blocking read a second (not a poll every 50 ms); an alert
    published reaches the pages' queue as soon as it is in Redis."""
    bus = await Bus.connect(None, prefix=f"readers-{uuid.uuid4().hex[:8]}")
    reads: list[Any] = []
    read_after = bus.read_after

    async def counted(last_ids: Any, **options: Any) -> Any:
        reads.append(options.get("block_ms"))
        return await read_after(last_ids, **options)

    monkeypatch.setattr(bus, "read_after", counted)
    hub = Hub()
    readers = Readers(bus, DashboardState(alert_window_ns=WINDOW, extra_symbols=("AAPL",)), hub, consumer_group="d")
    await readers.start()
    page = hub.subscribe(None)
    stop = asyncio.Event()
    running = asyncio.ensure_future(readers.run(stop))
    try:
        await asyncio.sleep(2.0)
        assert 2 <= len(reads) <= 8, reads  # outputs and market: a read each, again after each second's wait
        assert set(reads) == {BLOCK_MS}
        published = time.perf_counter()
        await bus.publish([(bus.keys.alerts, alert("AAPL", time.time_ns()))])
        while b"event: output" not in await asyncio.wait_for(page.get(), 2.0):
            pass
        assert time.perf_counter() - published < 0.25
    finally:
        stop.set()
        await running
        await bus.close()


def _drain(queue: asyncio.Queue[bytes]) -> list[bytes]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def test_a_closed_position_is_forgotten_so_a_reopening_starts_clean():
    """Once a symbol is no longer shown, its window, last exit (and its bots' marks), lag, owner and states go:
    memory follows the symbols shown, and the same symbol reopened is not red with yesterday's exit."""
    state = state_with("AAPL")
    exit_recommendation = exit_of("AAPL", T0)
    state.apply_output(exit_recommendation)
    state.handled[exit_recommendation.id] = {"bot": "handled"}
    state.lags["AAPL"], state.detectors["AAPL"] = 3, "detector-a"
    state.forget("AAPL")
    assert "AAPL" not in state.last_exits and exit_recommendation.id not in state.handled
    assert "AAPL" not in state.lags and "AAPL" not in state.detectors and "AAPL" not in state.window
    assert not [key for key in state.conditions if key[1] == "AAPL"]
