"""``orderflow watch``: a live terminal view of alerts, exits and monitoring state.

One row per open position: its monitoring state (monitored, halted, gap,
disconnected…), the large sellers and red bursts of the last
``alert_window``, its last exit recommendation and, when detectors share the
symbols through leases, which detector and which ingest own it (``NOBODY`` in
red: no detector holds its lease); below, the latest alerts. Colours: **yellow** one large seller,
**orange** several, **red** a red burst or an exit recommendation (each for one alert window after it was seen).

Market context: the ``context`` column says whether a position's latest alert is ``stock-specific``,
``market-wide``, ``mixed`` or ``unknown`` (the index beside it); a ``market_selloff`` seen within the alert window puts
a ``MARKET SELL-OFF`` line on top (the index, its fall, when in ET, the positions its market exit names); a market
exit is the last exit of each position it names (red, as its own would be), and exits show their action (``exit`` /
``watch``) with the expected fall against the cost in bps.

:class:`WatchState` folds bus messages (pure, tested); :func:`render` draws it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text

from orderflow_client.bus.connection import Bus
from orderflow_client.bus.leases import Leases, holder_of
from orderflow_client.bus.streams import as_text
from orderflow_client.errors import WireDecodeError
from orderflow_client.positions import PositionRegistry
from orderflow_client.pressure import context_word, exit_cost_words, market_fall_words, pressure_colour
from orderflow_client.prices import format_price
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, now_ns, ns_to_new_york
from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert, decode

INFORMATIONAL_STATES = frozenset({"dead_letter"})
"""Statuses that say something happened without changing whether a symbol is monitored."""
STATE_WORDS = {
    "monitoring_halted": "HALTED",
    "monitoring_resumed": "monitored",
    "gap": "gap",
    "disconnected": "DISCONNECTED",
    "watchdog_silence": "SILENT",
    "connected": "monitored",
    "trading_halted": "trading halted",
    "trading_resumed": "monitored",
    "calibrating": "calibrating",
    "calibrated": "monitored",
}


@dataclass
class SymbolView:
    state: str = "monitored"
    state_detail: str = ""
    alerts: deque = field(default_factory=deque)  # (wall ns, alert)
    last_exit: ExitRecommendation | None = None
    exit_seen_ns: int = 0  # wall ns the last exit recommendation was seen
    detector: str = ""  # the detector holding its lease ("": none)
    ingest: str = ""  # the ingest holding its lease ("": none, or ingest takes no leases)


@dataclass
class WatchState:
    window_ns: int = 120 * NANOSECONDS_PER_SECOND
    symbols: dict[str, SymbolView] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=12))
    unreachable_since: int = 0  # ns: Redis has not answered since then (0: it answers)
    skipped: int = 0  # entries that are not orderflow messages (undecodable or foreign)
    detectors_alive: int = 0  # detectors listed as members (sharing the symbols through leases); 0: no leases
    selloffs: dict[str, tuple[int, OrderFlowAlert]] = field(default_factory=dict)  # index → (wall ns seen, alert)
    market_exits: dict[str, ExitRecommendation] = field(default_factory=dict)  # index → its latest market exit

    def view(self, symbol: str) -> SymbolView:
        return self.symbols.setdefault(symbol, SymbolView())

    def apply(self, message, seen_ns: int) -> None:
        if isinstance(message, OrderFlowAlert):
            self.view(message.symbol).alerts.append((seen_ns, message))
            self.recent.appendleft(message)
            if message.alert_type == "market_selloff":
                self.selloffs[message.symbol] = (seen_ns, message)
        elif isinstance(message, ExitRecommendation):
            market = message.symbols if message.scope == "market" else ()
            for symbol in (message.symbol, *market):  # a market exit is the last exit of each position it names
                view = self.view(symbol)
                view.last_exit, view.exit_seen_ns = message, seen_ns
            if message.scope == "market":
                self.market_exits[message.symbol] = message
            self.recent.appendleft(message)
        elif isinstance(message, FeedStatus) and message.state not in INFORMATIONAL_STATES:
            for symbol in message.symbols:
                view = self.view(symbol)
                view.state = STATE_WORDS.get(message.state, message.state)
                view.state_detail = message.code

    def owners(self, detectors: dict[str, str], ingests: dict[str, str], detectors_alive: int) -> None:
        """Each symbol's lease holders (symbol → lease value, e.g. ``"detector-a#17"``; ``""``: none)."""
        self.detectors_alive = detectors_alive
        for symbol, value in detectors.items():
            self.view(symbol).detector = holder_of(value)
        for symbol, value in ingests.items():
            self.view(symbol).ingest = holder_of(value)

    def market_lines(self, now: int) -> list[str]:
        """A line per index sold off within the alert window (wall clock), e.g. ``MARKET SELL-OFF SPY fell 35.0 bps
        in 300 s, 72% sold · 10:31:20 ET · exit: AAPL, BAC (exit: expected fall 42.0 bps vs cost 1.5 bps)``."""
        lines = []
        for index, (seen, alert) in sorted(self.selloffs.items()):
            if now - seen > self.window_ns:
                continue
            line = f"MARKET SELL-OFF {market_fall_words(alert)} · {ns_to_new_york(alert.ts_event)}"
            market_exit = self.market_exits.get(index)
            if market_exit is not None and market_exit.ts_event >= alert.ts_event:
                named = ", ".join(market_exit.symbols) or "no position"
                line += f" · {market_exit.action}: {named} ({exit_cost_words(market_exit)})"
            lines.append(line)
        return lines

    def colour(self, symbol: str, now: int) -> str:
        view = self.view(symbol)
        while view.alerts and now - view.alerts[0][0] > self.window_ns:
            view.alerts.popleft()
        recent_exit = view.last_exit is not None and now - view.exit_seen_ns <= self.window_ns
        return pressure_colour((alert for _, alert in view.alerts), recent_exit)


def render(state: WatchState, held: list[str], now: int) -> Group:
    positions = Table(title="orderflow watch", title_justify="left", expand=False)
    owners = state.detectors_alive > 0
    columns = ["symbol", "monitoring", "large sellers", "red bursts", "context", "last exit recommendation"]
    for column in [*columns, "owner (detector / ingest)"] if owners else columns:
        positions.add_column(column)
    for symbol in held:
        view = state.view(symbol)
        colour = state.colour(symbol, now)
        sellers = sum(alert.alert_type == "large_seller" for _, alert in view.alerts)
        bursts = sum(alert.alert_type == "red_burst" for _, alert in view.alerts)
        monitoring = view.state + (f" ({view.state_detail})" if view.state_detail and view.state != "monitored" else "")
        exit_text = "-"
        if view.last_exit is not None:
            scope = f" ({view.last_exit.symbol}, market)" if view.last_exit.symbol != symbol else ""
            when = ns_to_new_york(view.last_exit.ts_event)
            exit_text = f"{view.last_exit.trigger}{scope} {when} · {exit_cost_words(view.last_exit)}"
        latest_alert = view.alerts[-1][1] if view.alerts else None
        cells = [
            Text(symbol, style=f"bold {colour}"),
            Text(monitoring, style="red" if view.state != "monitored" else ""),
            Text(str(sellers), style=colour),
            Text(str(bursts), style="red" if bursts else ""),
            Text((context_word(latest_alert.context) if latest_alert else "") or "-"),
            Text(exit_text, style="bold red" if view.last_exit else ""),
        ]
        if owners:
            cells.append(
                Text(f"{view.detector or 'NOBODY'} / {view.ingest or '-'}", style="" if view.detector else "bold red")
            )
        positions.add_row(*cells)
    latest = Table(title="latest", title_justify="left", show_header=False, box=None)
    latest.add_column("what")
    latest.add_column("context")
    for message in state.recent:
        if isinstance(message, ExitRecommendation):
            named = f" [market: {', '.join(message.symbols)}]" if message.scope == "market" else ""
            words = f"EXIT  {message.symbol} {message.trigger}{named} {exit_cost_words(message)}: {message.reasoning}"
            latest.add_row(Text(words[:160], style="bold red"), Text(context_word(message.context)))
        else:
            colour = "red" if message.alert_type == "red_burst" else state.colour(message.symbol, now)
            if message.alert_type == "large_seller":
                what = f"{message.order_size:,} @ {format_price(message.price_level)} ({message.source})"
            elif message.alert_type == "market_selloff":
                colour, what = "bold red", market_fall_words(message)
            else:
                what = f"volume {message.volume_ratio:.1f}x, sells {message.sell_ratio:.0%}"
            latest.add_row(
                Text(f"ALERT {message.symbol} {message.alert_type} {message.severity}: {what}", style=colour),
                Text(context_word(message.context), style=colour),
            )
    parts: list[Table | Text] = [Text(line, style="bold white on red") for line in state.market_lines(now)]
    if state.unreachable_since:
        banner = Text(
            f"REDIS UNREACHABLE since {ns_to_new_york(state.unreachable_since)}: nothing shown is current; retrying",
            style="bold white on red",
        )
        parts.insert(0, banner)
    return Group(*parts, positions, latest)


async def follow(bus: Bus, state: WatchState, positions: list[str], last_ids: dict[str, str]) -> None:
    """One poll: new messages on the alerts, exits and status streams; the open positions and their owners."""
    positions[:] = await PositionRegistry(bus).symbols()
    leases = Leases(bus)
    detectors_alive = len(await leases.members_seen("detector"))
    state.owners(
        await leases.holders("detector", positions), await leases.holders("ingest", positions), detectors_alive
    )
    entries = await bus.read_after(last_ids, count=500)
    seen = now_ns()
    for entry in entries:
        last_ids[entry.stream] = as_text(entry.entry_id)
        try:
            state.apply(decode(entry.payload), seen)
        except WireDecodeError:
            state.skipped += 1


async def starting_ids(bus: Bus, history: int = 20) -> dict[str, str]:
    """Start a little back in each stream so the view is not empty."""
    ids = {}
    for key in (bus.keys.alerts, bus.keys.exits, bus.keys.status):
        rows = await bus.read_range_reverse(key, count=history)
        ids[key] = _before(as_text(rows[-1].entry_id)) if rows else "0-0"
    return ids


def _before(entry_id: str) -> str:
    milliseconds, sequence = entry_id.split("-")
    return (
        f"{milliseconds}-{int(sequence) - 1}" if int(sequence) > 0 else f"{int(milliseconds) - 1}-18446744073709551615"
    )
