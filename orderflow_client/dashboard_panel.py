"""Order flow in a bot's own Rich dashboard: a panel beside its positions and P&L with, per position, the monitoring
state (and why), the alerts of the alert window coloured as everywhere in orderflow, the largest seller, the last
exit recommendation and what the bot did with it, and how old the symbol's data is.

What the bot did: the decision it recorded on the bus (``OrderFlowClient.record_decision``; the robinhood adapters and
``orderflow risk-manager`` record theirs), e.g. ``exit`` or ``tighten stop 186.49``; else what it told the provider
(:meth:`OrderFlowPanelProvider.record_decision`); else its handled mark (``handled``, ``parked: not acted on``).

For robinhood-algo-trading-bot's ``trading_bot.dashboard``, with no change to the bot::

    from orderflow_client.dashboard_panel import OrderFlowPanelProvider, with_order_flow

    provider = OrderFlowPanelProvider(orderflow)              # the bot's started OrderFlowClient (attach_… too)
    renderer = with_order_flow(DisplayRenderer(), provider)   # the "positions" region gains an "orderflow" panel
    run_dashboard_loop(data_provider, renderer, exporter)     # as before

The provider reads the alerts, exits and status streams, the position registry and each symbol's market stream
through the client's bus, on the client's own event loop (so it is called from the bot's thread, like the rest of
:class:`~orderflow_client.threaded.OrderFlowClient`). An asyncio bot reads the same with
``await read_panel_data(bus, symbols)``. :func:`render_order_flow` draws the data as a Rich ``Panel``: Rich is the
bot's dependency, not orderflow_client's, so it is imported there, when drawing, and nowhere else.

States: **live**; **calibrating** (no profile yet: thresholds still being fitted); **gap** (data may be missing:
shown for one alert window after the gap, the windows that span it are not trusted); **halted** (monitoring halted,
the stock halted, or the feed down: the bot is on its own for the symbol); **waiting** (no event on its stream
yet); **unmonitored** (not in orderflow's position registry). Times are New York time, labelled ET.

Market context: under a row's alerts, the latest one's label (``market-wide``…); a ``market_selloff`` in the window
puts a ``MARKET SELL-OFF`` line on top; a market exit naming a position is its last exit (red; action exit / watch),
with what the bot did with that position (:func:`mark_key`; ``skipped (not held)``: the exit done without it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from orderflow_client import pressure
from orderflow_client.bus.connection import Bus
from orderflow_client.bus.decision_records import DecisionRecord, read_decisions
from orderflow_client.bus.marks import HandledMarks
from orderflow_client.bus.streams import BusEntry, as_text, stream_id
from orderflow_client.errors import WireDecodeError
from orderflow_client.exit_policy import named_positions, position_id
from orderflow_client.positions import PositionRegistry
from orderflow_client.pressure import NO_PRESSURE, STATUS_CONDITIONS, pressure_colour, worst_colour, worst_monitoring
from orderflow_client.prices import format_price
from orderflow_client.threaded import OrderFlowClient
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns, ns_to_new_york
from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert, decode

if TYPE_CHECKING:
    from rich.layout import Layout
    from rich.panel import Panel

PanelState = Literal["live", "calibrating", "gap", "halted", "waiting", "unmonitored"]
STATE_STYLES: dict[str, str] = {
    "live": "green",
    "calibrating": "cyan",
    "gap": "dark_orange",
    "halted": "bold red",
    "waiting": "yellow",
    "unmonitored": "bold red",
}
TRIGGER_WORDS = {"large_sellers": "sellers", "red_burst": "red burst", "market_selloff": "market"}
MARK_WORDS = {b"done": "handled", b"parked": "parked: not acted on"}
ACTION_WORDS = {"exit": "exit", "tighten_stop": "tighten stop", "hold": "hold"}


@dataclass(frozen=True)
class SymbolOrderFlow:
    """One position's order flow. Times in ns since the epoch (UTC); 0: none."""

    symbol: str
    state: PanelState
    reason: str = ""  # why it is not live: the status's code and when, e.g. "stale_data 10:01:02 ET"
    alerts: tuple[OrderFlowAlert, ...] = ()  # the alert window's, oldest first
    colour: str = NO_PRESSURE  # orderflow_client.pressure: green, yellow, dark_orange or red
    last_exit: ExitRecommendation | None = None
    bot_decision: str = ""  # what the bot did with the last exit ("": not known)
    last_event_ns: int = 0  # when its market stream last received an event
    decision: DecisionRecord | None = None  # the bot's record of its decision on the last exit, if it recorded one

    @property
    def large_sellers(self) -> int:
        return sum(alert.alert_type == "large_seller" for alert in self.alerts)

    @property
    def red_bursts(self) -> int:
        return sum(alert.alert_type == "red_burst" for alert in self.alerts)

    @property
    def largest_seller(self) -> OrderFlowAlert | None:
        sellers = [alert for alert in self.alerts if alert.alert_type == "large_seller"]
        return max(sellers, key=lambda alert: alert.order_size, default=None)


@dataclass(frozen=True)
class OrderFlowPanelData:
    """What the panel shows: a row per position, read at ``generated_ns``; ``error`` when orderflow could not be
    read then (the rows are the last ones read, as old as ``generated_ns`` says)."""

    rows: tuple[SymbolOrderFlow, ...]
    generated_ns: int
    alert_window_seconds: float
    error: str = ""
    selloffs: tuple[OrderFlowAlert, ...] = ()  # the market_selloff alerts of the alert window, newest per index

    @property
    def colour(self) -> str:
        return worst_colour(row.colour for row in self.rows)


def decision_words(record: DecisionRecord) -> str:
    """A recorded decision in a few words: ``exit``, ``hold``, ``tighten stop 186.49``, or the bot's own action."""
    words = ACTION_WORDS.get(record.action, record.action.replace("_", " "))
    return f"{words} {format_price(record.new_stop)}" if record.new_stop else words


def mark_key(recommendation: ExitRecommendation, symbol: str) -> str:
    """Where a bot's handled mark and decision on ``recommendation`` are for ``symbol``'s row: a market exit's position
    id for each position it names (``SPY:exit:market_selloff:1718900000000000000@AAPL``), else the exit's id."""
    named = symbol in named_positions(recommendation)
    return position_id(recommendation.id, recommendation.scope, symbol) if named else recommendation.id


def _entry_ns(entry: BusEntry) -> int:
    """When Redis took the entry (its id's milliseconds), in ns."""
    return stream_id(as_text(entry.entry_id))[0] * 1_000_000


def _decoded(entries: Iterable[BusEntry]) -> Iterable[tuple[int, Any]]:
    for entry in entries:
        with contextlib.suppress(WireDecodeError):
            yield _entry_ns(entry), decode(entry.payload)


def _monitoring(
    symbol: str, statuses: Sequence[tuple[int, FeedStatus]], last_event_ns: int, now: int, window_ns: int
) -> tuple[PanelState, str]:
    """A symbol's state from the statuses naming it (or every symbol), oldest first: each source's condition is
    set and cleared by its own statuses (:data:`~orderflow_client.pressure.STATUS_CONDITIONS`: a reconnect does not
    end a trading halt), the worst shown; a gap for one alert window."""
    held: dict[tuple[str, str], tuple[str, int, FeedStatus]] = {}  # (source, condition) → (state, when, status)
    for seen, status in statuses:
        if (status.symbols and symbol not in status.symbols) or status.state not in STATUS_CONDITIONS:
            continue
        condition, state = STATUS_CONDITIONS[status.state]
        if state is None:
            held.pop((status.source, condition), None)
        else:
            held[(status.source, condition)] = (state, seen, status)
    current = [item for item in held.values() if item[0] != "gap" or now - item[1] <= window_ns]
    if current:
        worst = worst_monitoring(state for state, _seen, _status in current)
        state, seen, status = next(item for item in reversed(current) if item[0] == worst)
        if state == "calibrating":
            return "calibrating", status.code or "fitting thresholds"
        return state, f"{status.code or status.state} {ns_to_new_york(seen)}"  # type: ignore[return-value]
    if not last_event_ns:
        return "waiting", "no event on its stream yet"
    return "live", ""


async def read_panel_data(
    bus: Bus,
    symbols: Sequence[str] | None = None,
    *,
    alert_window_seconds: float = 120.0,
    bot_name: str | None = None,
    decisions: Mapping[str, str] | None = None,
    look_back: int = 1000,
) -> OrderFlowPanelData:
    """The panel's data for ``symbols`` (None: every position in orderflow's registry).

    Alerts: those Redis took in the last ``alert_window_seconds``. Exits and statuses: the newest of the last
    ``look_back`` entries of their streams. ``bot_name``: the bot's client name, whose recorded decisions (read in
    one round trip) say what it decided on each last exit, and whose marks whether it handled those it recorded no
    decision for; ``decisions`` (recommendation id → what the bot decided, e.g. ``"exit"``) is used where the bus
    holds no record."""
    now = now_ns()
    window_ns = int(alert_window_seconds * NANOSECONDS_PER_SECOND)
    registered = set(await PositionRegistry(bus).symbols())
    wanted = list(dict.fromkeys(symbols)) if symbols is not None else sorted(registered)
    since_ms = max(0, (now - window_ns) // 1_000_000)
    recent = await bus.read_range(bus.keys.alerts, start=f"{since_ms}-0", count=10_000)
    alerts = [message for _seen, message in _decoded(recent) if isinstance(message, OrderFlowAlert)]
    exits: dict[str, ExitRecommendation] = {}
    for _seen, message in _decoded(await bus.read_range_reverse(bus.keys.exits, count=look_back)):
        if isinstance(message, ExitRecommendation):  # newest first; a market exit is the last of each it names
            for symbol in (message.symbol, *(message.symbols if message.scope == "market" else ())):
                exits.setdefault(symbol, message)
    newest_first = await bus.read_range_reverse(bus.keys.status, count=look_back)
    statuses = [
        (seen, message) for seen, message in _decoded(reversed(newest_first)) if isinstance(message, FeedStatus)
    ]
    marks = HandledMarks(bus, bot_name) if bot_name else None
    keys = {symbol: mark_key(exits[symbol], symbol) for symbol in wanted if symbol in exits}
    recorded = await read_decisions(bus, bot_name, keys.values()) if bot_name else {}
    rows = []
    for symbol in wanted:
        newest = await bus.read_range_reverse(bus.keys.market(symbol), count=1)
        last_event_ns = _entry_ns(newest[0]) if newest else 0
        state, reason = _monitoring(symbol, statuses, last_event_ns, now, window_ns)
        if symbol not in registered:
            state, reason = "unmonitored", "not in orderflow's position registry"
        in_window = tuple(alert for alert in alerts if alert.symbol == symbol)
        last_exit, key, decision = exits.get(symbol), keys.get(symbol, ""), ""
        record = recorded.get(key)
        if record is not None:
            decision = decision_words(record)
        elif last_exit is not None:
            decision = (decisions or {}).get(key) or (decisions or {}).get(last_exit.id, "")
            if not decision and marks is not None:  # the whole exit's mark first: a bot sets it after its positions'
                whole = await marks.holder(last_exit.id) if key != last_exit.id else None
                mark = await marks.holder(key)
                shown = whole if mark is None else mark
                decision = "not handled yet" if shown is None else MARK_WORDS.get(shown, "in hand")
                decision = "skipped (not held)" if mark is None and whole in MARK_WORDS else decision
        # red for one alert window after the event that triggered it reached orderflow
        recent_exit = last_exit is not None and now - last_exit.ts_recv <= window_ns
        rows.append(
            SymbolOrderFlow(
                symbol=symbol,
                state=state,
                reason=reason,
                alerts=in_window,
                colour=pressure_colour(in_window, recent_exit),
                last_exit=last_exit,
                bot_decision=decision,
                last_event_ns=last_event_ns,
                decision=record,
            )
        )
    selloffs = {alert.symbol: alert for alert in alerts if alert.alert_type == "market_selloff"}
    return OrderFlowPanelData(tuple(rows), now, alert_window_seconds, selloffs=tuple(selloffs.values()))


class OrderFlowPanelProvider:
    """The panel's data for a threaded bot, read through its started :class:`OrderFlowClient` (on the client's
    loop, waiting at most ``timeout_seconds``: a dashboard never hangs on Redis). When orderflow cannot be read the
    last data read is returned again, with ``error`` saying why."""

    def __init__(
        self,
        client: OrderFlowClient,
        *,
        alert_window_seconds: float = 120.0,
        bot_name: str | None = None,
        timeout_seconds: float = 2.0,
    ) -> None:
        self.client = client
        self.alert_window_seconds = alert_window_seconds
        self.bot_name = client.name if bot_name is None else bot_name
        self.timeout_seconds = timeout_seconds
        self.decisions: dict[str, str] = {}
        self._last = OrderFlowPanelData((), 0, alert_window_seconds)

    def record_decision(self, recommendation_id: str, decision: str) -> None:
        """What the bot decided on a recommendation (e.g. ``"exit"``, ``"tighten stop"``, ``"hold"``), to show in
        this process's panel when the bus holds no record of it. ``client.record_decision`` records it on the bus
        instead: readable by any process (:func:`~orderflow_client.bus.decision_records.read_decisions`), and after a
        restart."""
        self.decisions[recommendation_id] = decision

    def data(self, symbols: Sequence[str] | None = None) -> OrderFlowPanelData:
        try:
            if not self.client.running or self.client._loop is None:
                raise RuntimeError("the orderflow client is not running")
            future = asyncio.run_coroutine_threadsafe(
                read_panel_data(
                    self.client._connected(),
                    symbols,
                    alert_window_seconds=self.alert_window_seconds,
                    bot_name=self.bot_name,
                    decisions=dict(self.decisions),
                ),
                self.client._loop,
            )
            try:
                self._last = future.result(self.timeout_seconds)
            except BaseException:
                future.cancel()
                raise
        except Exception as error:
            reason = str(error)[:160] or "no answer within the timeout"
            return replace(self._last, error=f"{type(error).__name__}: {reason}")
        return self._last


def _age(ns: int) -> str:
    seconds = ns / NANOSECONDS_PER_SECOND
    if seconds < 1:
        return "<1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} h"


def render_order_flow(data: OrderFlowPanelData, *, now: int | None = None) -> Panel:
    """The panel: a table of the rows, its border in the most alarming colour; an error line on top when the data
    could not be read (then nothing shown is current)."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    now = now_ns() if now is None else now
    window = f"{data.alert_window_seconds / 60:g} min" if data.alert_window_seconds >= 60 else "window"
    table = Table(
        expand=True,
        header_style="bold cyan",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    table.add_column("Symbol", no_wrap=True)
    table.add_column("Monitoring", ratio=1, min_width=14)  # the one that wraps
    table.add_column(f"Alerts {window}", no_wrap=True)
    table.add_column("Largest seller", justify="right", no_wrap=True)
    table.add_column("Last exit", no_wrap=True)
    table.add_column("Bot", no_wrap=True)
    table.add_column("Age", justify="right", no_wrap=True)
    for row in data.rows:
        counts = [f"{row.large_sellers} seller{'s' * (row.large_sellers != 1)}"] if row.large_sellers else []
        counts += [f"{row.red_bursts} burst{'s' * (row.red_bursts != 1)}"] if row.red_bursts else []
        label = pressure.context_word(row.alerts[-1].context) if row.alerts else ""
        largest = row.largest_seller
        exit_text, last = "-", row.last_exit
        if last is not None:  # a market exit, or one not worth its cost, says what to do: "(exit)" / "(watch)"
            action = f" ({last.action})" if last.scope == "market" or last.action == "watch" else ""
            exit_text = f"{TRIGGER_WORDS[last.trigger]} {ns_to_new_york(last.ts_event)}{action}"
        table.add_row(
            Text(row.symbol, style=f"bold {row.colour}"),
            Text(row.state + (f"\n{row.reason}" if row.reason else ""), style=STATE_STYLES[row.state]),
            Text(", ".join(counts) + (f"\n{label}" if label else "") if counts else "none", style=row.colour),
            Text(f"{largest.order_size:,} @ {format_price(largest.price_level)}" if largest is not None else "-"),
            Text(exit_text, style="bold red" if row.last_exit is not None and row.colour == "red" else ""),
            Text(row.bot_decision or "-"),
            Text(_age(now - row.last_event_ns) if row.last_event_ns else "-"),
        )
    parts: list[Any] = []
    if data.error:
        since = f" (data from {ns_to_new_york(data.generated_ns)})" if data.generated_ns else ""
        parts.append(Text(f"ORDERFLOW UNREACHABLE{since}: {data.error}", style="bold white on red"))
    for selloff in data.selloffs:
        words = f"MARKET SELL-OFF {pressure.market_fall_words(selloff)} · {ns_to_new_york(selloff.ts_event)}"
        parts.append(Text(words, style="bold white on red"))
    parts.append(table if data.rows else Text("no open position", style="dim"))
    as_of = f" · as of {ns_to_new_york(data.generated_ns)}" if data.generated_ns else ""
    border = "red" if data.error else data.colour
    return Panel(Group(*parts), title=f"Order Flow{as_of}", title_align="left", border_style=border)


class OrderFlowRenderer:
    """A bot's dashboard renderer with the order-flow panel: its ``render_full_dashboard(snapshot)`` draws the bot's
    layout, then splits its ``positions`` region into the positions (above) and the panel (below, region
    ``orderflow``); without a ``positions`` region the panel goes at the bottom. Anything else is the bot's
    renderer's own (attributes pass through), so it goes wherever the bot's renderer went."""

    def __init__(self, renderer: Any, provider: Callable[[Sequence[str]], OrderFlowPanelData] | Any) -> None:
        self.renderer = renderer
        self.provider = provider

    def __getattr__(self, name: str) -> Any:
        return getattr(self.renderer, name)

    def panel_data(self, symbols: Sequence[str]) -> OrderFlowPanelData:
        provider = self.provider
        data: OrderFlowPanelData = provider.data(symbols) if hasattr(provider, "data") else provider(symbols)
        return data

    def render_full_dashboard(self, snapshot: Any) -> Layout:
        from rich.layout import Layout

        layout: Layout = self.renderer.render_full_dashboard(snapshot)
        symbols = [position.symbol for position in getattr(snapshot, "positions", [])]
        panel = Layout(render_order_flow(self.panel_data(symbols)), name="orderflow", ratio=1)
        positions = layout.get("positions")
        if positions is None:
            whole = Layout(name="dashboard_with_order_flow")
            whole.split_column(Layout(layout, name="dashboard", ratio=2), panel)
            return whole
        positions.split_column(Layout(positions.renderable, name="positions_table", ratio=1), panel)
        return layout


def with_order_flow(
    renderer: Any, provider: OrderFlowPanelProvider | Callable[[Sequence[str]], OrderFlowPanelData]
) -> OrderFlowRenderer:
    """The bot's ``renderer`` (e.g. ``trading_bot.dashboard.DisplayRenderer()``) with the order-flow panel beside its
    positions; ``provider``: an :class:`OrderFlowPanelProvider`, or any function of the symbols to the data."""
    return OrderFlowRenderer(renderer, provider)
