"""What the dashboard shows, folded from bus messages (pure: no I/O; the readers feed it, :mod:`.views` renders it).

- **cards**: one per open position (and per symbol asked for by name, e.g. the demo's): the monitoring state
  (``live`` / ``calibrating`` / ``halted`` / ``gap``, with the reason: the worst condition of any source, from the
  status stream, :data:`orderflow_client.pressure.STATUS_CONDITIONS`; ``waiting`` with no status and no market event
  yet), the alerts in the alert window and the card's colour (the rule of ``orderflow watch``: yellow one large
  seller, orange several, red a red burst or an exit recommendation in the alert window:
  :func:`orderflow_client.pressure.pressure_colour`, as every view), the last exit recommendation and what each bot
  made of it (its handled mark and recorded decision for that position:
  :func:`orderflow_client.dashboard_panel.mark_key`),
  P&L from the latest trade against the entry price, the detector holding the symbol's lease;
- **the market**: the latest ``market_selloff`` of each index and the latest market-scope exit recommendation (a
  sell-off is shown while it is inside the alert window: the page's banner); a market exit counts as the last exit of
  every position it names (so it colours them red, as their own exit would);
- **the alert log** of the last 30 minutes (alerts and exit recommendations), the alerts of the last 5 minutes, the
  largest seller of the day (New York);
- **feed health**: each source connected or not, the last frame's age, the detector's consumer lag, the alerts'
  end-to-end latency (``latency_ms``: ingest's publish to the detector's output) p50/p99, and how late market events
  reach the dashboard — so "no alerts" is never mistaken for "no data".

Time windows run on the **market clock**: the latest ``ts_event`` of the market events, alerts and exit
recommendations seen (live it is the wall clock; a replay keeps its own day). Statuses do not move it (they are
stamped on the wall clock), nor does a time more than ``FUTURE_LIMIT_NS`` ahead of the wall clock. Each log line keeps
the colour its symbol had when it arrived. Frame ages and delays are on the wall clock (``ts_recv`` is stamped when
ingest publishes).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from orderflow_client.dashboard_panel import mark_key
from orderflow_client.positions import Position
from orderflow_client.pressure import STATUS_CONDITIONS, pressure_colour, worst_monitoring
from orderflow_client.prices import PRICE_SCALE
from orderflow_client.timestamps import NANOSECONDS_PER_SECOND, NEW_YORK, now_ns
from orderflow_client.wire import ExitRecommendation, FeedStatus, OrderFlowAlert
from services.dashboard.market import SymbolMarket

LOG_WINDOW_NS = 30 * 60 * NANOSECONDS_PER_SECOND
RECENT_NS = 5 * 60 * NANOSECONDS_PER_SECOND
GAP_SHOWN_NS = 60 * NANOSECONDS_PER_SECOND  # a gap stays on the card this long (market time) once data flows again
DELAY_SAMPLES = 2000
FUTURE_LIMIT_NS = 5 * 60 * NANOSECONDS_PER_SECOND  # a time further ahead of the wall clock does not move the clock

CONNECTION_STATES = {"connected": True, "disconnected": False, "watchdog_silence": False, "auth_failed": False}
"""Statuses that say whether a source's feed is connected."""


@dataclass
class Monitoring:
    state: str = "live"
    reason: str = ""
    since_ns: int = 0  # ts_event of the status that set it (0: none seen)


ALL_SYMBOLS = ""
"""The symbol of a condition set by a status naming no symbol: it holds for every symbol of its source."""


@dataclass
class SourceHealth:
    connected: bool
    since_ns: int
    code: str = ""


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.5: the median); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def reason_of(status: FeedStatus) -> str:
    """What a card says about a status: its code and detail (``trading halted`` for a halt without either)."""
    text = ": ".join(part for part in (status.code, status.detail) if part)
    return text[:160] or status.state.replace("_", " ")


@dataclass
class DashboardState:
    alert_window_ns: int = 120 * NANOSECONDS_PER_SECOND
    extra_symbols: tuple[str, ...] = ()  # shown with or without a position (the demo's symbols)
    positions: dict[str, Position] = field(default_factory=dict)
    markets: dict[str, SymbolMarket] = field(default_factory=dict)
    conditions: dict[tuple[str, str, str], Monitoring] = field(default_factory=dict)  # (source, symbol, condition)
    window: dict[str, deque[OrderFlowAlert]] = field(default_factory=dict)  # symbol → its alerts, oldest first
    log: deque[OrderFlowAlert | ExitRecommendation] = field(default_factory=deque)
    log_colours: dict[str, str] = field(default_factory=dict)  # a logged alert's id → its symbol's colour then
    last_exits: dict[str, ExitRecommendation] = field(default_factory=dict)
    selloffs: dict[str, OrderFlowAlert] = field(default_factory=dict)  # index → its latest market_selloff alert
    market_exits: dict[str, ExitRecommendation] = field(default_factory=dict)  # index → its latest market exit
    handled: dict[str, dict[str, str]] = field(default_factory=dict)  # mark_key → bot name → its mark and decision
    largest_seller: OrderFlowAlert | None = None
    sources: dict[str, SourceHealth] = field(default_factory=dict)
    lags: dict[str, int | None] = field(default_factory=dict)  # symbol → the detector group's undelivered entries
    detectors: dict[str, str] = field(default_factory=dict)  # symbol → the detector holding its lease ("": none)
    detectors_alive: int = 0
    delays_ms: deque[float] = field(default_factory=lambda: deque(maxlen=DELAY_SAMPLES))  # ts_recv → dashboard
    clock_ns: int = 0  # the market clock: the latest ts_event seen
    unreachable_since_ns: int = 0  # wall ns Redis stopped answering (0: it answers)
    skipped: int = 0  # entries that are not orderflow messages
    wall_clock: Callable[[], int] = field(default_factory=lambda: now_ns)

    # --- the symbols shown ------------------------------------------------------------------------------------
    def symbols(self) -> list[str]:
        """The cards: the open positions and the symbols asked for, sorted."""
        return sorted(set(self.positions) | set(self.extra_symbols))

    def forget(self, symbol: str) -> None:
        """Drop what is kept of ``symbol`` once it is no longer shown (a position closed): a reopening starts clean,
        not red with the old exit, and memory stays bounded by the symbols shown."""
        self.markets.pop(symbol, None)
        self.window.pop(symbol, None)
        self.lags.pop(symbol, None)
        self.detectors.pop(symbol, None)
        last_exit = self.last_exits.pop(symbol, None)
        if last_exit is not None:  # (each position a market exit names has its own key: the others' stay)
            self.handled.pop(mark_key(last_exit, symbol), None)
        for key in [key for key in self.conditions if key[1] == symbol]:
            del self.conditions[key]

    def market(self, symbol: str) -> SymbolMarket:
        if symbol not in self.markets:
            self.markets[symbol] = SymbolMarket(symbol)
        return self.markets[symbol]

    def set_positions(self, positions: list[Position]) -> None:
        self.positions = {position.symbol: position for position in positions}

    # --- folding messages -------------------------------------------------------------------------------------
    def apply_market(self, event: object, seen_ns: int) -> None:
        """A market event of a symbol's stream (statuses there are ignored: the status stream has them too)."""
        symbol = getattr(event, "symbol", None)
        if symbol is None or isinstance(event, FeedStatus):
            return
        self.market(symbol).add(event)
        self._advance(getattr(event, "ts_event", 0))
        ts_recv = getattr(event, "ts_recv", 0)
        if ts_recv and seen_ns:  # 0: read from the history at start, not live
            self.delays_ms.append(max(0.0, (seen_ns - ts_recv) / 1e6))

    def apply_output(self, message: object) -> None:
        """An alert, exit recommendation or status from the output streams."""
        if isinstance(message, OrderFlowAlert):
            self._alert(message)
        elif isinstance(message, ExitRecommendation):
            self._advance(message.ts_event)
            self.log.append(message)
            self.last_exits[message.symbol] = message
            if message.scope == "market":
                self.market_exits[message.symbol] = message
                for named in message.symbols:
                    self.last_exits[named] = message
        elif isinstance(message, FeedStatus):
            self._status(message)
        self._trim()

    def _advance(self, ts_event: int) -> bool:
        """Move the market clock to ``ts_event`` if later, unless it is far ahead of the wall clock (a bad stamp:
        False)."""
        if ts_event - self.wall_clock() > FUTURE_LIMIT_NS:
            return False
        self.clock_ns = max(self.clock_ns, ts_event)
        return True

    def _alert(self, alert: OrderFlowAlert) -> None:
        plausible = self._advance(alert.ts_event)
        self.window.setdefault(alert.symbol, deque()).append(alert)
        self.log.append(alert)
        self.log_colours[alert.id] = self.colour(alert.symbol)
        if alert.alert_type == "market_selloff" and plausible:
            self.selloffs[alert.symbol] = alert
        if alert.alert_type == "large_seller" and plausible:
            best = self.largest_seller
            day, best_day = _new_york_day(alert.ts_event), _new_york_day(best.ts_event) if best else ""
            if best is None or day > best_day or (day == best_day and alert.order_size > best.order_size):
                self.largest_seller = alert

    def _status(self, status: FeedStatus) -> None:
        connected = CONNECTION_STATES.get(status.state)
        if connected is not None:
            self.sources[status.source] = SourceHealth(connected, status.ts_event, status.code)
        mapped = STATUS_CONDITIONS.get(status.state)
        if mapped is None:
            return
        condition, state = mapped
        if status.symbols:
            keys = [(status.source, symbol, condition) for symbol in status.symbols]
        else:  # none named: every symbol of the source, replacing what it said of single symbols
            for key in [key for key in self.conditions if key[0] == status.source and key[2] == condition]:
                del self.conditions[key]
            keys = [(status.source, ALL_SYMBOLS, condition)]
        for key in keys:
            if state is None:
                self.conditions.pop(key, None)
            else:
                self.conditions[key] = Monitoring(state, reason_of(status), status.ts_event)

    def _trim(self) -> None:
        while self.log and self.clock_ns - self.log[0].ts_event > LOG_WINDOW_NS:
            self.log_colours.pop(self.log.popleft().id, None)

    # --- what the cards and the header say --------------------------------------------------------------------
    def monitoring_of(self, symbol: str) -> Monitoring:
        """The symbol's monitoring state now: the worst condition any source holds for it (a gap ends once data
        has flowed for ``GAP_SHOWN_NS`` after it, market time); else ``waiting`` before any market event, ``live``
        after."""
        market = self.markets.get(symbol)
        held = []
        for (_source, named, _condition), current in self.conditions.items():
            if named not in (symbol, ALL_SYMBOLS):
                continue
            if current.state == "gap":
                flowing = market is not None and market.last_event_ns > current.since_ns
                if flowing and self.clock_ns - current.since_ns > GAP_SHOWN_NS:
                    continue
            held.append(current)
        if held:
            worst = worst_monitoring(current.state for current in held)
            return max((current for current in held if current.state == worst), key=lambda current: current.since_ns)
        if market is None or not market.last_event_ns:
            return Monitoring("waiting", "no market event yet")
        return Monitoring("live")

    def colour(self, symbol: str) -> str:
        """``green``, ``yellow``, ``dark_orange`` or ``red`` (the shared rule) on the market clock: an exit
        recommendation counts within the alert window, as the alerts do."""
        last_exit = self.last_exits.get(symbol)
        recent_exit = last_exit is not None and self.clock_ns - last_exit.ts_event <= self.alert_window_ns
        return pressure_colour(self.window_alerts(symbol), recent_exit)

    def window_alerts(self, symbol: str) -> list[OrderFlowAlert]:
        """The symbol's alerts inside the alert window of the market clock (older ones are dropped)."""
        alerts = self.window.get(symbol)
        if not alerts:
            return []
        while alerts and self.clock_ns - alerts[0].ts_event > self.alert_window_ns:
            alerts.popleft()
        return list(alerts)

    def pnl(self, symbol: str) -> tuple[float, float] | None:
        """Unrealised P&L of the position at the latest trade: (dollars, percent of the entry); None without a
        position, an entry price or a trade."""
        position = self.positions.get(symbol)
        market = self.markets.get(symbol)
        if position is None or not position.entry_price or not position.quantity or market is None:
            return None
        if not market.last_price:
            return None
        dollars = (market.last_price - position.entry_price) * position.quantity / PRICE_SCALE  # short: quantity < 0
        cost = abs(position.quantity) * position.entry_price / PRICE_SCALE
        return dollars, 100.0 * dollars / cost

    def active_selloffs(self) -> list[tuple[OrderFlowAlert, ExitRecommendation | None]]:
        """The market sell-offs inside the alert window of the market clock, newest first, each with the market
        exit recommendation its index raised since (None: none)."""
        active = []
        for index, alert in self.selloffs.items():
            if self.clock_ns - alert.ts_event > self.alert_window_ns:
                continue
            market_exit = self.market_exits.get(index)
            active.append((alert, market_exit if market_exit and market_exit.ts_event >= alert.ts_event else None))
        return sorted(active, key=lambda pair: -pair[0].ts_event)

    def largest_seller_today(self) -> OrderFlowAlert | None:
        """The largest seller of the market clock's day (New York)."""
        best = self.largest_seller
        if best is None or _new_york_day(best.ts_event) != _new_york_day(self.clock_ns):
            return None
        return best

    def recent_alerts(self) -> int:
        """Alerts (not exit recommendations) of the last 5 minutes of market time."""
        return sum(isinstance(item, OrderFlowAlert) and self.clock_ns - item.ts_event <= RECENT_NS for item in self.log)

    def latency_ms(self) -> tuple[float | None, float | None]:
        """p50 and p99 of the logged outputs' ``latency_ms`` (ingest's publish → the detector's output)."""
        values = [item.latency_ms for item in self.log if item.latency_ms > 0]
        return percentile(values, 0.5), percentile(values, 0.99)

    def delay_ms(self) -> tuple[float | None, float | None]:
        """p50 and p99 of how late market events reached the dashboard (ingest's publish → read here)."""
        values = list(self.delays_ms)
        return percentile(values, 0.5), percentile(values, 0.99)

    def last_frame_ns(self) -> int:
        """When ingest published the latest market event of any shown symbol (wall ns; 0: none seen)."""
        return max(
            (self.markets[symbol].last_recv_ns for symbol in self.symbols() if symbol in self.markets), default=0
        )

    def total_lag(self) -> int | None:
        """The detector group's undelivered entries over the shown symbols (None: unknown for all)."""
        known = [lag for symbol, lag in self.lags.items() if lag is not None and symbol in self.symbols()]
        return sum(known) if known else None


def _new_york_day(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / NANOSECONDS_PER_SECOND, tz=NEW_YORK).date().isoformat()
