"""Market context: each symbol's price path and each index's flow over a rolling window, and the label of an alert.

Pure and in event time. Every event of a monitored symbol moves its :class:`PricePath` (the mid of its NBBO or
book; its last aggressive trade price while it has no quote); every event of an index (``market_symbols``,
``sector_etfs``) moves its :class:`IndexState` (its path and the buy and sell volume of its classified prints).
Nothing is computed per event beyond a deque append and the evictions it causes; a context is computed only when
an alert is built, from the events with ``ts_event`` ≤ the alert's.

Prices are kept doubled (bid + ask, or 2 × the trade price), exact integers in nano-dollars, so a return is
``(doubled now − doubled at window start) × 1e4 / doubled at window start`` bps with no rounding before the
division. A window starts ``window_ns`` before the moment asked about; the price at its start is the one in force
then (the last change at or before it), or the path's first price when the path began later. A pause longer than
the window (overnight, a halt) starts the path afresh, so a return never spans it.

The label of an alert of ``stock`` at ``T`` (:func:`label_context`), ``fall`` = ``context_fall_bps``::

    unknown         no index, the index's last event older than context_stale_seconds at T, or the index
                    observed for less than half the window before T
    stock_specific  index_return_bps > −fall
    mixed           index_return_bps ≤ −fall and stock_return − beta × index_return ≤ −fall
    market_wide     index_return_bps ≤ −fall otherwise

The index's sell share is reported, not judged: a trades-only index's sides come from the tick test.
:class:`MarketWatch` ties it to the engine: it keeps the paths and index states, puts the context on every alert,
runs each index's sell-off rule (:class:`services.detector.exits.SelloffRule`) and the exit cost rule
(:mod:`services.detector.exit_cost`) on every exit recommendation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND, NANOSECONDS_PER_SECOND
from orderflow_client.wire import (
    BookUpdate,
    ContextLabel,
    MarketContext,
    OrderFlowAlert,
    Quote,
    Trade,
)
from services.detector.exit_cost import ExitCosts, past_sessions
from services.detector.exits import MarketSelloffs
from services.detector.integrity import MarketData
from services.detector.outputs import Output
from services.detector.profiles import beta_to_index
from services.detector.rule_settings import MarketSettings
from shared.conditions import ConditionTable
from shared.sessions import SessionClock

if TYPE_CHECKING:
    from services.detector.engine import SymbolEngine

BASIS_POINTS = 10_000


class PricePath:
    """One symbol's price over the last ``window_ns`` (ns) of event time, as exact doubled prices (nano-dollars).

    ``changes`` holds ``(ts, doubled price)`` at each change, the first one the price in force at the window's
    start. ``first_ts`` is when the path (re)started; ``last_ts`` the last event that moved it. A sample: a quote
    500.00 × 500.02 at ts 1 gives ``changes == deque([(1, 1_000_020_000_000)])``.
    """

    __slots__ = ("changes", "first_ts", "last_ts", "quoted", "window_ns")
    is_index = False

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.changes: deque[tuple[int, int]] = deque()
        self.first_ts = 0
        self.last_ts = 0
        self.quoted = False  # a quote or book was seen: trades no longer move the price

    def update(self, ts: int, doubled: int) -> None:
        """The price (doubled, nano-dollars) from ``ts`` (ns) on; an event older than the last is ignored."""
        if ts < self.last_ts:
            return
        changes = self.changes
        if ts - self.last_ts > self.window_ns or not changes:
            changes.clear()  # a pause longer than the window: the path starts again
            self.first_ts = ts
        self.last_ts = ts
        if not changes or changes[-1][1] != doubled:
            changes.append((ts, doubled))
        start = ts - self.window_ns  # evicted at every update: the first change is the price at the window's start
        while len(changes) > 1 and changes[1][0] <= start:
            changes.popleft()

    def on_quote(self, ts: int, bid: int, ask: int) -> None:
        if 0 < bid <= ask:
            self.quoted = True
            self.update(ts, bid + ask)

    def on_trade(self, ts: int, price: int) -> None:
        if price > 0 and not self.quoted:
            self.update(ts, 2 * price)

    def doubled_at(self, ts: int) -> int:
        """The doubled price in force at ``ts`` (the path's first when it began later; 0 for an empty path)."""
        changes = self.changes
        if changes and ts >= changes[-1][0]:
            return changes[-1][1]
        price = 0
        for change_ts, doubled in self.changes:
            if change_ts > ts and price:
                break
            price = doubled
        return price

    def return_bps(self, ts: int) -> float:
        """The return (bps) over the window ending at ``ts``; 0.0 for an empty path."""
        if not self.changes:
            return 0.0
        start = self.doubled_at(ts - self.window_ns)
        now = self.doubled_at(ts)
        return (now - start) * BASIS_POINTS / start

    def covered_ns(self, ts: int) -> int:
        """How much of the window ending at ``ts`` the path has observed (ns)."""
        if not self.changes:
            return 0
        return max(0, min(self.window_ns, ts - self.first_ts))


class IndexState(PricePath):
    """An index's :class:`PricePath` and the classified volume of its prints in the window: ``prints`` holds
    ``(ts, shares, is_sell)``, ``buy_volume``/``sell_volume`` their running sums (shares)."""

    __slots__ = ("buy_volume", "prints", "sell_volume")
    is_index = True

    def __init__(self, window_ns: int) -> None:
        super().__init__(window_ns)
        self.prints: deque[tuple[int, int, bool]] = deque()
        self.buy_volume = 0
        self.sell_volume = 0

    def on_print(self, ts: int, size: int, side: str) -> None:
        """A classified aggressive print (``side`` "buy" or "sell"; "unknown" is not counted)."""
        if side == "unknown" or ts < self.last_ts:
            return
        prints = self.prints
        if side == "sell":
            self.sell_volume += size
            prints.append((ts, size, True))
        else:
            self.buy_volume += size
            prints.append((ts, size, False))
        start = ts - self.window_ns
        while prints[0][0] <= start:
            _ts, shares, sold = prints.popleft()
            if sold:
                self.sell_volume -= shares
            else:
                self.buy_volume -= shares

    def sell_share(self, ts: int) -> float:
        """Sell volume over classified volume in the window ending at ``ts`` (0..1; 0.0 with none)."""
        sell, buy = self.sell_volume, self.buy_volume
        start = ts - self.window_ns
        for print_ts, shares, sold in self.prints:  # prints already out of the window at ts (not evicted yet)
            if print_ts > start:
                break
            if sold:
                sell -= shares
            else:
                buy -= shares
        total = sell + buy
        return sell / total if total else 0.0


def label_context(
    *,
    index: str,
    state: IndexState | None,
    stock: PricePath | None,
    ts: int,
    beta: float,
    fall_bps: float,
    stale_ns: int,
) -> MarketContext:
    """The :class:`MarketContext` of an alert at ``ts`` (ns) of a stock whose index is ``index`` (module doc)."""
    if state is None or not state.changes:
        reason = f"no data of the index {index}" if index else "no index configured"
        return MarketContext(label="unknown", index=index, reason=reason + ": the market's part cannot be told.")
    age_ns = max(0, ts - state.last_ts)
    window_seconds = state.window_ns // NANOSECONDS_PER_SECOND
    index_return = state.return_bps(ts)
    sell_share = state.sell_share(ts)
    stock_return = stock.return_bps(ts) if stock is not None else 0.0
    expected = beta * index_return
    relative = stock_return - expected
    covered = state.covered_ns(ts)
    moved = f"{index} {'fell' if index_return < 0 else 'rose'} {abs(index_return):.1f} bps in {window_seconds} s"
    label: ContextLabel
    if age_ns > stale_ns:
        label = "unknown"
        reason = f"{index}'s last event is {age_ns / NANOSECONDS_PER_SECOND:.1f} s old (stale): no market context."
    elif 2 * covered < state.window_ns:
        label = "unknown"
        reason = (
            f"{index} observed for {covered / NANOSECONDS_PER_SECOND:.0f} s of the {window_seconds} s window "
            f"(less than half): no market context."
        )
    elif index_return > -fall_bps:
        label = "stock_specific"
        reason = (
            f"{moved} (no fall of {fall_bps:g} bps) while the stock moved {stock_return:+.1f} bps: its own selling."
        )
    elif relative <= -fall_bps:
        label = "mixed"
        reason = (
            f"{moved}; the stock moved {stock_return:+.1f} bps, {-relative:.1f} bps below the {expected:+.1f} bps its "
            f"beta {beta:.2f} explains: the market's selling and its own."
        )
    else:
        label = "market_wide"
        reason = (
            f"{moved}; the stock moved {stock_return:+.1f} bps, within {fall_bps:g} bps of the {expected:+.1f} bps "
            f"its beta {beta:.2f} explains: the market's selling."
        )
    return MarketContext(
        label=label,
        index=index,
        window_seconds=window_seconds,
        index_return_bps=round(index_return, 2),
        index_sell_share=round(sell_share, 4),
        stock_return_bps=round(stock_return, 2),
        beta=round(beta, 4),
        expected_return_bps=round(expected, 2),
        relative_return_bps=round(relative, 2),
        index_age_ms=round(age_ns / NANOSECONDS_PER_MILLISECOND, 3),
        reason=reason,
    )


class MarketWatch:
    """The market beside every symbol of an :class:`~services.detector.engine.Engine` (``engines``: its
    symbols). ``positions`` are the open positions a market-scope exit names (sorted, no index)."""

    def __init__(
        self,
        settings: MarketSettings,
        conditions: ConditionTable,
        sessions: SessionClock,
        engines: dict[str, SymbolEngine],
    ) -> None:
        self.settings = settings
        self.conditions = conditions
        self.sessions = sessions
        self.engines = engines
        self.indexes = settings.indexes
        self.context_on = bool(self.indexes)  # no index configured: alerts carry no context (None)
        self.states: dict[str, IndexState] = {}
        self.paths: dict[str, PricePath] = {}  # every symbol's, the indexes' states too
        self.positions: tuple[str, ...] = ()
        self.costs = ExitCosts(settings, sessions)
        self.selloffs = MarketSelloffs(settings, sessions)
        self._betas: dict[tuple[str, str, str], float] = {}  # (symbol, index, day) → beta, 0.0 unknown

    def set_open_positions(self, symbols: Iterable[str]) -> None:
        self.positions = tuple(sorted({symbol for symbol in symbols if symbol not in self.indexes}))

    def observe(self, event: MarketData) -> None:
        """Move the symbol's path (and an index's flow) with ``event``; no rules, no outputs."""
        path = self.paths.get(event.symbol)
        if path is None:
            path = self._new_path(event.symbol)
            if path is None:
                return
        kind = type(event)
        if kind is Quote:
            quote: Quote = event  # type: ignore[assignment]
            path.on_quote(quote.ts_event, quote.bid_price, quote.ask_price)
        elif kind is Trade:
            trade: Trade = event  # type: ignore[assignment]
            if (path.is_index or not path.quoted) and self.conditions.classify(
                trade.conditions, trade.correction
            ).aggressive:
                path.on_trade(trade.ts_event, trade.price)
                if path.is_index:
                    path.on_print(trade.ts_event, trade.size, trade.side)  # type: ignore[attr-defined]
        elif kind is BookUpdate:
            book: BookUpdate = event  # type: ignore[assignment]
            if book.bids and book.asks:
                path.on_quote(book.ts_event, book.bids[0][0], book.asks[0][0])

    def _new_path(self, symbol: str) -> PricePath | None:
        """A new symbol's path: an index's state, a stock's path (None: no index configured, no context)."""
        if symbol in self.indexes:
            state = self.paths[symbol] = self.states[symbol] = IndexState(self.settings.window_ns)
            return state
        if not self.context_on:
            return None
        path = self.paths[symbol] = PricePath(self.settings.window_ns)
        return path

    def process(self, engine: SymbolEngine, event: MarketData) -> list[Output]:
        """``event`` through the market state, then ``engine``'s rules; an index's event checks its fall."""
        self.observe(event)
        outputs = engine.process(event)
        if event.symbol in self.states:
            self.selloffs.check(self, engine, event.ts_event, event.ts_recv, None, outputs)
        return outputs

    # --- alerts and exits ----------------------------------------------------------
    def emit(self, engine: SymbolEngine, alert: OrderFlowAlert, outputs: list[Output]) -> None:
        """``engine``'s alert with its context; its exit rule's recommendation with its cost (a stock) or as the
        trigger of a sell-off (an index: the index's own symbol-scope exits become the market-scope one)."""
        symbol = engine.symbol
        if self.context_on:
            alert = msgspec.structs.replace(alert, context=self.context(symbol, alert.ts_event))
        outputs.append(alert)
        recommendation = engine.exits.on_alert(alert)
        if recommendation is None:
            return
        if symbol in self.indexes:
            self.selloffs.check(self, engine, alert.ts_event, alert.ts_recv, recommendation, outputs)
        else:
            outputs.append(self.costs.costed(engine, recommendation, alert.context))

    def positions_of(self, index: str) -> tuple[str, ...]:
        """The open positions a market-scope exit of ``index`` names: all for a market symbol, else those whose
        index it is (a sector ETF)."""
        if index in self.settings.market_symbols:
            return self.positions
        return tuple(position for position in self.positions if self.index_of(position) == index)

    def index_of(self, symbol: str) -> str:
        """``symbol``'s index: its sector ETF when that has data, else the first market symbol."""
        etf = self.settings.sector_etf(symbol)
        if etf and etf in self.states:
            return etf
        return self.settings.market_symbols[0] if self.settings.market_symbols else etf

    def context(self, symbol: str, ts: int) -> MarketContext:
        """The context of an alert of ``symbol`` at ``ts`` (ns); an index's own: ``market_wide``."""
        settings = self.settings
        if symbol in self.indexes:  # the index's own alert: its selling is the market's
            state = self.states.get(symbol)
            own = label_context(
                index=symbol,
                state=state,
                stock=state,
                ts=ts,
                beta=1.0,
                fall_bps=settings.fall_bps,
                stale_ns=settings.stale_ns,
            )
            reason = f"{symbol} is an index: its selling is the market's ({own.index_return_bps:+.1f} bps in "
            return msgspec.structs.replace(own, label="market_wide", reason=f"{reason}{own.window_seconds} s).")
        index = self.index_of(symbol)
        return label_context(
            index=index,
            state=self.states.get(index),
            stock=self.paths.get(symbol),
            ts=ts,
            beta=self.beta(symbol, index, ts),
            fall_bps=settings.fall_bps,
            stale_ns=settings.stale_ns,
        )

    def beta(self, symbol: str, index: str, ts: int) -> float:
        """``symbol``'s beta to ``index`` from both histories' sessions before ``ts``'s day (1.0 when unknown)."""
        day = self.sessions.day_of(ts)[0]
        key = (symbol, index, day)
        beta = self._betas.get(key)
        if beta is None:
            stock, market = self.engines.get(symbol), self.engines.get(index)
            beta = 0.0
            if stock is not None and market is not None:
                days = self.settings.profile_days
                beta = beta_to_index(
                    past_sessions(stock.lifecycle.history.values(), day, days),
                    past_sessions(market.lifecycle.history.values(), day, days),
                )
            self._betas[key] = beta
        return beta or 1.0
