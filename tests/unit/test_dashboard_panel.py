"""The order-flow panel of a bot's dashboard: the colour rule, each monitoring state, the data read from the bus
(the embedded one), the drawn text and colours, the market context (labels, a sell-off, a market exit), and the
renderer wrapper. The bot's real dashboard:
tests/system/test_bot_dashboard.py."""

from __future__ import annotations

import io
import re
import uuid
from decimal import Decimal

import pytest
from rich.console import Console
from rich.layout import Layout
from rich.panel import Panel

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, DecisionRecords
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.dashboard_panel import (
    OrderFlowPanelData,
    OrderFlowPanelProvider,
    SymbolOrderFlow,
    mark_key,
    read_panel_data,
    render_order_flow,
    with_order_flow,
)
from orderflow_client.exit_policy import position_id
from orderflow_client.positions import PositionRegistry
from orderflow_client.pressure import pressure_colour, worst_colour
from orderflow_client.threaded import OrderFlowClient
from orderflow_client.timestamps import now_ns, ns_to_new_york
from orderflow_client.wire import AlertType, FeedStatus, OrderFlowAlert, Trade
from tests.support.context_events import market_exit, market_selloff, seller_with_context
from tests.support.events import recommendation

S = 1_000_000_000
M = 1_000_000  # a thousandth of a dollar in nano-dollars
NOW = 1_795_545_591 * S
AT = ns_to_new_york(NOW)  # the time of NOW in New York, as shown
AT_MINUS_2 = ns_to_new_york(NOW - 2 * S)
AT_MINUS_30 = ns_to_new_york(NOW - 30 * S)


def alert(alert_type: AlertType, number: int = 1, symbol: str = "AAPL", size: int = 12_000, at: int = NOW):
    return OrderFlowAlert(
        id=f"{symbol}-{number}",
        symbol=symbol,
        alert_type=alert_type,
        severity="critical" if alert_type == "red_burst" else "warning",
        source="tape",
        ts_event=at,
        ts_recv=at,
        timestamp_utc="t",
        order_size=size if alert_type == "large_seller" else 0,
        price_level=187_430_000_000,
    )


def status(state, symbols=("AAPL",), code="", source="detector") -> FeedStatus:
    return FeedStatus(source=source, state=state, ts_event=NOW, ts_recv=NOW, symbols=symbols, code=code)


def test_the_colour_rule_yellow_orange_red():
    assert pressure_colour([], exit_recommended=False) == "green"
    assert pressure_colour([alert("large_seller")], exit_recommended=False) == "yellow"
    assert pressure_colour([alert("large_seller", 1), alert("large_seller", 2)], exit_recommended=False) == (
        "dark_orange"
    )
    assert pressure_colour([alert("red_burst")], exit_recommended=False) == "red"
    assert pressure_colour([], exit_recommended=True) == "red"
    assert worst_colour(["yellow", "green", "dark_orange"]) == "dark_orange"
    assert worst_colour(["red", "yellow"]) == "red" and worst_colour([]) == "green"


def test_the_row_counts_and_names_the_largest_seller():
    row = SymbolOrderFlow(
        "AAPL",
        "live",
        alerts=(alert("large_seller", 1, size=12_000), alert("large_seller", 2, size=30_000), alert("red_burst", 3)),
    )
    assert (row.large_sellers, row.red_bursts) == (2, 1)
    assert row.largest_seller is not None and row.largest_seller.order_size == 30_000
    assert SymbolOrderFlow("MSFT", "live").largest_seller is None


def draw(data: OrderFlowPanelData, width: int = 110) -> tuple[str, str]:
    console = Console(record=True, width=width, color_system="standard", file=io.StringIO())
    console.print(render_order_flow(data, now=NOW))
    return console.export_text(clear=False), console.export_text(styles=True)


def test_the_panel_shows_each_row_in_its_colour_with_new_york_times():
    rows = (
        SymbolOrderFlow(
            "AAPL",
            "live",
            alerts=(alert("large_seller", 1, size=12_000), alert("large_seller", 2, size=30_000)),
            colour="red",
            last_exit=recommendation(number=NOW - 2 * S),
            bot_decision="handled",
            last_event_ns=NOW - 3 * S,
        ),
        SymbolOrderFlow(
            "MSFT", "halted", "stale_data 15:59:40 ET", (alert("large_seller", symbol="MSFT", size=8_000),), "yellow"
        ),
        SymbolOrderFlow("TSLA", "calibrating", "no_profile", colour="green", last_event_ns=NOW - 300 * S),
    )
    text, styled = draw(OrderFlowPanelData(rows, NOW, 120.0))
    assert f"Order Flow · as of {AT}" in text and "Alerts 2 min" in text
    aapl = next(line for line in text.splitlines() if "AAPL" in line)
    assert "live" in aapl and "2 sellers" in aapl and "30,000 @ 187.43" in aapl
    assert f"sellers {AT_MINUS_2}" in aapl and "handled" in aapl and "3 s" in aapl
    msft = next(line for line in text.splitlines() if "MSFT" in line)
    assert "halted" in msft and "1 seller" in msft and "8,000 @ 187.43" in msft and msft.rstrip(" │").endswith("-")
    tsla = next(line for line in text.splitlines() if "TSLA" in line)
    assert "calibrating" in tsla and "none" in tsla and "5 min" in tsla
    assert "stale_data" in text and "15:59:40 ET" in text
    assert "\x1b[1;31mAAPL" in styled and "\x1b[1;33mMSFT" in styled and "\x1b[1;32mTSLA" in styled
    assert styled.startswith("\x1b[31m╭")  # the border takes the worst colour: red


def test_an_unreachable_orderflow_says_so_above_the_last_rows():
    rows = (SymbolOrderFlow("AAPL", "live", colour="yellow", alerts=(alert("large_seller"),)),)
    text, styled = draw(OrderFlowPanelData(rows, NOW - 30 * S, 120.0, error="BusUnavailableError: refused"))
    assert f"ORDERFLOW UNREACHABLE (data from {AT_MINUS_30}): BusUnavailableError: refused" in text
    assert "AAPL" in text and styled.startswith("\x1b[31m╭")
    empty, _ = draw(OrderFlowPanelData((), NOW, 120.0))
    assert "no open position" in empty


async def test_the_data_read_from_the_bus_states_colours_exits_and_the_bots_marks():
    bus = await Bus.connect(None, prefix=f"panel-{uuid.uuid4().hex[:8]}")
    now = now_ns()
    registry = PositionRegistry(bus)
    for symbol in ("AAPL", "MSFT", "TSLA", "NVDA", "AMD"):
        await registry.open(symbol, quantity=10, entry_price=Decimal("100"))
    trades = [
        (bus.keys.market(symbol), Trade(symbol=symbol, ts_event=now, ts_recv=now, ts_arrival=now, price=1, size=1))
        for symbol in ("AAPL", "MSFT", "TSLA", "AMD", "GONE")
    ]
    aapl_exit, msft_exit = (
        recommendation(symbol="AAPL", number=now),
        recommendation(symbol="MSFT", number=now - 600 * S),
    )
    await bus.publish(
        [
            *trades,
            (bus.keys.alerts, alert("large_seller", 1, at=now, size=12_000)),
            (bus.keys.alerts, alert("large_seller", 2, at=now, size=30_000)),
            (bus.keys.alerts, alert("large_seller", 3, symbol="MSFT", at=now)),
            (bus.keys.alerts, alert("large_seller", 4, symbol="AMD", at=now)),
            (bus.keys.alerts, alert("large_seller", 5, symbol="AMD", at=now)),
            (bus.keys.exits, msft_exit),
            (bus.keys.exits, aapl_exit),
            (bus.keys.status, status("calibrating", ("TSLA", "AAPL"), "no_profile")),
            (bus.keys.status, status("calibrated", ("AAPL",), "profile")),
            (bus.keys.status, status("monitoring_halted", ("MSFT",), "stale_data")),
            (bus.keys.status, status("gap", ("AMD",), "socket_disconnect")),
            (bus.keys.status, status("dead_letter", (), "wire_undecodable")),  # informational: changes nothing
        ]
    )
    await HandledMarks(bus, "my-bot").finish(aapl_exit.id, b"done", 60)
    data = await read_panel_data(
        bus, ["AAPL", "MSFT", "TSLA", "NVDA", "AMD", "GONE"], bot_name="my-bot", decisions={msft_exit.id: "hold"}
    )
    rows = {row.symbol: row for row in data.rows}
    assert [row.symbol for row in data.rows] == ["AAPL", "MSFT", "TSLA", "NVDA", "AMD", "GONE"]
    assert (rows["AAPL"].state, rows["AAPL"].colour, rows["AAPL"].bot_decision) == ("live", "red", "handled")
    assert rows["AAPL"].large_sellers == 2 and rows["AAPL"].last_exit == aapl_exit
    assert rows["MSFT"].state == "halted" and rows["MSFT"].reason.startswith("stale_data ")
    assert rows["MSFT"].reason.endswith(" ET")
    # an exit older than the alert window: shown with the bot's recorded decision, no longer red
    assert (rows["MSFT"].colour, rows["MSFT"].last_exit, rows["MSFT"].bot_decision) == ("yellow", msft_exit, "hold")
    assert (rows["TSLA"].state, rows["TSLA"].reason, rows["TSLA"].colour) == ("calibrating", "no_profile", "green")
    assert (rows["NVDA"].state, rows["NVDA"].last_event_ns) == ("waiting", 0)
    assert (rows["AMD"].state, rows["AMD"].colour) == ("gap", "dark_orange")
    assert rows["GONE"].state == "unmonitored" and rows["GONE"].last_event_ns > 0
    assert abs(rows["AAPL"].last_event_ns - now) < 2 * S and data.colour == "red"
    # a gap older than the alert window is over; a resume clears a halt; no symbols asked: the registry's
    later = await read_panel_data(bus, ["AMD"], alert_window_seconds=0.0)
    assert later.rows[0].state == "live"
    await bus.publish([(bus.keys.status, status("monitoring_resumed", ("MSFT",)))])
    every = await read_panel_data(bus)
    assert [row.symbol for row in every.rows] == ["AAPL", "AMD", "MSFT", "NVDA", "TSLA"]
    assert {row.symbol: row.state for row in every.rows}["MSFT"] == "live"
    assert {row.symbol: row.bot_decision for row in every.rows}["AAPL"] == ""  # no bot name: not known
    # what the bot recorded on the bus is shown, before what it told the provider and before its mark
    aapl_decision = DecisionRecord(action="tighten_stop", reasons=("tighten the stop to 186.49",), new_stop=186_490 * M)
    await DecisionRecords(bus, "my-bot").record(aapl_exit.id, aapl_decision, 60)
    await DecisionRecords(bus, "my-bot").record(msft_exit.id, DecisionRecord(action="exit"), 60)
    await DecisionRecords(bus, "other-bot").record(msft_exit.id, DecisionRecord(action="hold"), 60)
    recorded = await read_panel_data(
        bus, ["AAPL", "MSFT", "TSLA"], bot_name="my-bot", decisions={msft_exit.id: "hold", aapl_exit.id: "hold"}
    )
    rows = {row.symbol: row for row in recorded.rows}
    assert (rows["AAPL"].bot_decision, rows["AAPL"].decision) == ("tighten stop 186.49", aapl_decision)
    assert (rows["MSFT"].bot_decision, rows["MSFT"].decision) == ("exit", DecisionRecord(action="exit"))
    assert (rows["TSLA"].bot_decision, rows["TSLA"].decision) == ("", None)  # no exit
    text, _styled = draw(recorded)
    assert "tighten stop 186.49" in next(line for line in text.splitlines() if "AAPL" in line)
    await bus.close()


def test_the_provider_of_a_stopped_client_returns_the_last_data_with_the_error():
    client = OrderFlowClient("redis://127.0.0.1:1/0", name="bot", callbacks="queue")
    provider = OrderFlowPanelProvider(client)
    data = provider.data(["AAPL"])
    assert data.rows == () and "not running" in data.error and provider.bot_name == "bot"
    provider.record_decision("exit-1", "exit")
    assert provider.decisions == {"exit-1": "exit"}


class BotLikeRenderer:
    """The shape of the bot's DisplayRenderer (the real one: tests/system/test_bot_dashboard.py)."""

    colour_scheme = "bot's own"

    def __init__(self, with_positions: bool = True) -> None:
        self.with_positions = with_positions

    def render_full_dashboard(self, snapshot) -> Layout:
        layout = Layout()
        if self.with_positions:
            layout.split_column(Layout(Panel("header"), size=3, name="header"), Layout(name="main"))
            layout["main"].split_column(
                Layout(Panel("Open Positions"), name="positions", ratio=2),
                Layout(Panel("Metrics"), name="metrics", ratio=1),
            )
        else:
            layout.update(Panel("everything"))
        return layout


class Snapshot:
    def __init__(self) -> None:
        self.positions = [type("Position", (), {"symbol": "AAPL"})()]


@pytest.mark.parametrize("with_positions", [True, False])
def test_the_wrapper_puts_the_panel_under_the_positions(with_positions):
    asked: list[list[str]] = []

    def provider(symbols):
        asked.append(list(symbols))
        return OrderFlowPanelData((SymbolOrderFlow("AAPL", "live", colour="green"),), NOW, 120.0)

    renderer = with_order_flow(BotLikeRenderer(with_positions), provider)
    assert renderer.colour_scheme == "bot's own"  # the bot's renderer's own attributes pass through
    layout = renderer.render_full_dashboard(Snapshot())
    assert asked == [["AAPL"]]
    console = Console(record=True, width=100, height=30, file=io.StringIO())
    console.print(layout)
    lines = console.export_text().splitlines()
    panel = next(row for row, line in enumerate(lines) if f"Order Flow · as of {AT}" in line)
    assert any("AAPL" in line for line in lines[panel:])
    if with_positions:
        assert layout.get("orderflow") is not None and layout["positions"].get("orderflow") is not None
        positions = next(row for row, line in enumerate(lines) if "Open Positions" in line)
        metrics = next(row for row, line in enumerate(lines) if "Metrics" in line)
        assert positions < panel < metrics
    else:
        assert panel > next(row for row, line in enumerate(lines) if "everything" in line)
    assert re.fullmatch(r"\d\d:\d\d:\d\d ET", AT)


def test_a_reconnect_does_not_end_a_trading_halt_and_each_resume_clears_its_own():
    """States per source and condition, the worst shown: ingest's ``connected`` clears only a lost feed."""
    from orderflow_client.dashboard_panel import _monitoring

    window = 120 * S
    halted = [
        (NOW, status("trading_halted", code="LUDP")),
        (NOW + S, status("connected", symbols=(), source="polygon")),
    ]
    assert _monitoring("AAPL", halted, NOW, NOW + 2 * S, window)[0] == "halted"
    resumed = [*halted, (NOW + 3 * S, status("trading_resumed"))]
    assert _monitoring("AAPL", resumed, NOW, NOW + 4 * S, window) == ("live", "")
    lost = [(NOW, status("disconnected", symbols=(), source="polygon")), (NOW + S, status("calibrating"))]
    assert _monitoring("AAPL", lost, NOW, NOW + 2 * S, window)[0] == "halted"  # the worst of the two
    assert _monitoring("AAPL", [(NOW, status("gap", code="socket_disconnect"))], NOW, NOW + 2 * window, window) == (
        "live",
        "",
    )  # a gap shows for one alert window


def test_the_panel_shows_each_alerts_context_label_and_a_market_selloff_line():
    rows = (
        SymbolOrderFlow(
            "AAPL", "live", alerts=(seller_with_context("AAPL", 1, NOW, "stock_specific"),), colour="yellow"
        ),
        SymbolOrderFlow(
            "BAC",
            "live",
            alerts=(seller_with_context("BAC", 1, NOW, "market_wide"),),
            colour="red",
            last_exit=market_exit("SPY", ("BAC",), 1, NOW - 2 * S),
        ),
        SymbolOrderFlow(
            "AIG",
            "live",
            alerts=(seller_with_context("AIG", 1, NOW, "mixed"),),
            colour="yellow",
            last_exit=market_exit("SPY", ("AIG",), 2, NOW - 2 * S, action="watch", expected_fall_bps=0.8),
        ),
        SymbolOrderFlow("MSFT", "live", alerts=(seller_with_context("MSFT", 1, NOW, "unknown"),), colour="yellow"),
    )
    text, styled = draw(OrderFlowPanelData(rows, NOW, 120.0, selloffs=(market_selloff("SPY", 1, NOW - 30 * S),)))
    lines = text.splitlines()
    at = {
        symbol: next(n for n, row in enumerate(lines) if f" {symbol} " in row)
        for symbol in ("AAPL", "BAC", "AIG", "MSFT")
    }
    line = {symbol: lines[n] for symbol, n in at.items()}
    under = {symbol: lines[n + 1] for symbol, n in at.items()}  # the label sits under the alerts' count
    assert "1 seller" in line["AAPL"] and "stock-specific" in under["AAPL"]
    assert "market-wide" in under["BAC"] and f"market {AT_MINUS_2} (exit)" in line["BAC"]
    assert "mixed" in under["AIG"] and f"market {AT_MINUS_2} (watch)" in line["AIG"]
    assert "unknown" in under["MSFT"]
    assert f"MARKET SELL-OFF SPY fell 35.0 bps in 300 s, 72% sold · {AT_MINUS_30}" in text
    assert "\x1b[1;37;41mMARKET SELL-OFF" in styled  # bold white on red


async def test_a_market_exit_naming_a_position_makes_it_red_and_is_its_last_exit():
    bus = await Bus.connect(None, prefix=f"panel-{uuid.uuid4().hex[:8]}")
    now = now_ns()
    registry = PositionRegistry(bus)
    for symbol in ("AAPL", "BAC", "AIG"):
        await registry.open(symbol, quantity=10, entry_price=Decimal("50"))
    own = recommendation(symbol="AAPL", number=now - 5 * S)
    market = market_exit("SPY", ("AAPL", "BAC"), 1, now)
    await bus.publish(
        [
            (bus.keys.alerts, seller_with_context("AIG", 1, now, "mixed")),
            (bus.keys.alerts, market_selloff("SPY", 1, now - S)),
            (bus.keys.exits, own),
            (bus.keys.exits, market),
        ]
    )
    data = await read_panel_data(bus, ["AAPL", "BAC", "AIG"])
    rows = {row.symbol: row for row in data.rows}
    assert (rows["AAPL"].colour, rows["AAPL"].last_exit) == ("red", market)  # the newer of its own and the market's
    assert (rows["BAC"].colour, rows["BAC"].last_exit) == ("red", market)
    assert (rows["AIG"].colour, rows["AIG"].last_exit) == ("yellow", None)  # not named: its own seller only
    assert [alert.id for alert in data.selloffs] == ["SPY:market_selloff:1"] and data.colour == "red"
    text, _ = draw(data)
    assert "MARKET SELL-OFF SPY fell 35.0 bps" in text and "mixed" in text
    await bus.close()


def test_the_mark_key_of_a_market_exit_is_each_named_positions_id_and_else_the_exit_id():
    market = market_exit("SPY", ("AAPL", "BAC"), 1, NOW)
    assert mark_key(market, "AAPL") == "SPY:exit:market_selloff:1@AAPL" == position_id(market.id, "market", "AAPL")
    assert mark_key(market, "SPY") == "SPY:exit:market_selloff:1"  # the index: the whole exit's mark
    own = recommendation(symbol="AAPL", number=1)
    assert mark_key(own, "AAPL") == own.id


async def test_a_market_exit_row_shows_what_the_bot_did_with_that_position():
    """The market exit names AAPL, BAC and AIG. The bot recorded tighten_stop at ``…@AAPL`` (and exit at the exit's own
    id, which no row reads), told the provider ``hold`` for ``…@AIG``; while it holds the exit's lease BAC is ``in
    hand``; once it finished the exit without BAC, BAC is ``skipped (not held)``; another bot's record is not shown."""
    bus = await Bus.connect(None, prefix=f"panel-{uuid.uuid4().hex[:8]}")
    now = now_ns()
    registry = PositionRegistry(bus)
    for symbol in ("AAPL", "BAC", "AIG"):
        await registry.open(symbol, quantity=10, entry_price=Decimal("50"))
    market = market_exit("SPY", ("AAPL", "BAC", "AIG"), 1, now)
    await bus.publish([(bus.keys.exits, market)])
    marks, records = HandledMarks(bus, "my-bot"), DecisionRecords(bus, "my-bot")
    tighten = DecisionRecord(action="tighten_stop", new_stop=186_490 * M)
    await records.record(mark_key(market, "AAPL"), tighten, 60)
    await records.record(market.id, DecisionRecord(action="exit"), 60)
    await DecisionRecords(bus, "other-bot").record(mark_key(market, "BAC"), DecisionRecord(action="exit"), 60)
    await marks.finish(mark_key(market, "AAPL"), b"done", 60)
    assert await marks.take_lease(market.id, b"working:0123456789abcdef", 60)
    told = {mark_key(market, "AIG"): "hold"}

    async def decisions() -> dict[str, str]:
        data = await read_panel_data(bus, ["AAPL", "BAC", "AIG", "SPY"], bot_name="my-bot", decisions=told)
        return {row.symbol: row.bot_decision for row in data.rows}

    assert await decisions() == {"AAPL": "tighten stop 186.49", "BAC": "in hand", "AIG": "hold", "SPY": "exit"}
    await marks.finish(market.id, b"done", 60)
    assert (await decisions())["BAC"] == "skipped (not held)"
    await marks.finish(mark_key(market, "BAC"), b"parked", 60)
    assert (await decisions())["BAC"] == "parked: not acted on"
    data = await read_panel_data(bus, ["AAPL"], bot_name="my-bot")
    assert data.rows[0].decision == tighten
    await bus.close()
