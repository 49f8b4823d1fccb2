"""Market context: each symbol's price path and each index's flow over a rolling window, and the label of an alert.

Pure and in event time. Every event of a monitored symbol moves its :class:`PricePath` (the mid of its NBBO or
book; its last aggressive trade price while it has no quote); every event of an index (``market_symbols``,
``sector_etfs``) moves its :class:`IndexState` (its path and the buy and sell volume of its classified prints).
Nothing is computed per event beyond deque appends, the evictions they cause and the minute's mid
(:class:`MinuteMids`); a context is computed only when an alert is built, as of the alert: from the events with
``ts_event`` ≤ the alert's, the paths keeping ``context_window_seconds`` + ``context_stale_seconds`` of history so
an index read ahead of a stock's alert gives the same context as in event order.

Prices are kept doubled (bid + ask, or 2 × the trade price), exact integers in nano-dollars, so a return is
``(doubled now − doubled at window start) × 1e4 / doubled at window start`` bps with no rounding before the
division. A window starts ``window_ns`` before the moment asked about; the price at its start is the one in force
then (the last change at or before it), or the path's first price when the path began later. A pause longer than
the window (overnight, a halt) starts the path afresh, so a return never spans it.

The label of an alert of ``stock`` at ``T`` (:func:`label_context`), ``fall`` = ``context_fall_bps``::

    unknown         no index, the index's last event at or before T older than context_stale_seconds, the index
                    observed for less than half the window before T, or its monitoring halted (MarketWatch)
    stock_specific  index_return_bps > −fall
    mixed           index_return_bps ≤ −fall and stock_return − beta × index_return ≤ −fall
    market_wide     index_return_bps ≤ −fall otherwise

The index's sell share is reported, not judged: a trades-only index's sides come from the tick test.
:class:`services.detector.market_watch.MarketWatch` ties it to the engine: it keeps the paths and index states,
puts the context on every alert, runs each index's sell-off rule (:class:`services.detector.exits.SelloffRule`)
and the exit cost rule (:mod:`services.detector.exit_cost`) on every exit recommendation.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND, NANOSECONDS_PER_SECOND
from orderflow_client.wire import ContextLabel, MarketContext
from services.detector.day_recorder import MINUTE_NS, REGULAR_MINUTES
from services.detector.profiles import DayStatistics

BASIS_POINTS = 10_000


class MinuteMids:
    """One symbol's price at the end of each minute of the regular session (nano-dollars, 0 before the first; at
    most 390), the day in progress and the last ``keep_days`` finished ones (:class:`DayStatistics`, kept as
    objects so a cache can tell them apart). What σ and beta need, recorded in any threshold mode."""

    __slots__ = ("day", "keep_days", "mids", "open_ns", "past", "symbol")

    def __init__(self, symbol: str, keep_days: int) -> None:
        self.symbol = symbol
        self.keep_days = keep_days
        self.day = ""
        self.open_ns = 0
        self.mids: list[int] = []
        self.past: dict[str, DayStatistics] = {}

    def record(self, ts: int, price: int, day: str, open_ns: int) -> None:
        """The price from ``ts`` (ns) on, on trading ``day`` whose regular session opens at ``open_ns``."""
        if day != self.day:
            if self.day and any(self.mids):
                self.past[self.day] = DayStatistics(symbol=self.symbol, day=self.day, minute_mids=tuple(self.mids))
                for old in sorted(self.past)[: -self.keep_days]:
                    del self.past[old]
            self.day, self.open_ns, self.mids = day, open_ns, []
        minute = (ts - self.open_ns) // MINUTE_NS
        if not 0 <= minute < REGULAR_MINUTES:
            return
        mids = self.mids
        if len(mids) <= minute:
            mids.extend([mids[-1] if mids else 0] * (minute + 1 - len(mids)))
        mids[minute] = price

    def session(self, day: str) -> DayStatistics | None:
        """``day``'s minute mids so far (None: not recorded)."""
        if day != self.day:
            return None
        return DayStatistics(symbol=self.symbol, day=day, minute_mids=tuple(self.mids))


class PricePath:
    """One symbol's price over the last ``keep_ns`` (ns) of event time (the window and the staleness limit: a
    context can be asked as of a moment before the last event), as exact doubled prices (nano-dollars).

    ``changes`` holds ``(ts, doubled price)`` at each change, the first one the price in force at ``last_ts −
    keep_ns``. ``first_ts`` is when the path (re)started; ``last_ts`` the last event that moved it. A sample: a quote
    500.00 × 500.02 at ts 1 gives ``changes == deque([(1, 1_000_020_000_000)])``.
    """

    __slots__ = ("changes", "first_ts", "keep_ns", "last_ts", "minutes", "quoted", "window_ns")
    is_index = False

    def __init__(self, window_ns: int, keep_ns: int = 0, minutes: MinuteMids | None = None) -> None:
        self.window_ns = window_ns
        self.keep_ns = max(keep_ns, window_ns)
        self.changes: deque[tuple[int, int]] = deque()
        self.first_ts = 0
        self.last_ts = 0
        self.quoted = False  # a quote or book was seen: trades no longer move the price
        self.minutes = minutes

    def update(self, ts: int, doubled: int) -> bool:
        """The price (doubled, nano-dollars) from ``ts`` (ns) on; an event older than the last is ignored (False)."""
        if ts < self.last_ts:
            return False
        changes = self.changes
        if ts - self.last_ts > self.window_ns or not changes:
            changes.clear()  # a pause longer than the window: the path starts again
            self.first_ts = ts
        self.last_ts = ts
        if not changes or changes[-1][1] != doubled:
            changes.append((ts, doubled))
        start = ts - self.keep_ns  # evicted at every update: the first change is the price in force at the start
        while len(changes) > 1 and changes[1][0] <= start:
            changes.popleft()
        return True

    def on_quote(self, ts: int, bid: int, ask: int) -> bool:
        if 0 < bid <= ask:
            self.quoted = True
            return self.update(ts, bid + ask)
        return False

    def on_trade(self, ts: int, price: int) -> bool:
        if price > 0 and not self.quoted:
            return self.update(ts, 2 * price)
        return False

    def doubled_at(self, ts: int) -> int:
        """The doubled price in force at ``ts`` (the path's first when it began later; 0 for an empty path)."""
        changes = self.changes
        if not changes:
            return 0
        if ts >= changes[-1][0]:
            return changes[-1][1]
        position = bisect_right(changes, ts, key=_first)
        return changes[max(0, position - 1)][1]

    def return_bps(self, ts: int) -> float:
        """The return (bps) over the window ending at ``ts``; 0.0 for an empty path or one begun after ``ts``."""
        if not self.changes or ts < self.first_ts:
            return 0.0
        start = self.doubled_at(ts - self.window_ns)
        now = self.doubled_at(ts)
        return (now - start) * BASIS_POINTS / start

    def covered_ns(self, ts: int) -> int:
        """How much of the window ending at ``ts`` the path has observed (ns)."""
        if not self.changes:
            return 0
        return max(0, min(self.window_ns, ts - self.first_ts))


def _first(entry: tuple[int, ...]) -> int:
    return entry[0]


class IndexState(PricePath):
    """An index's :class:`PricePath`, the time of each of its events (``times``) and its classified prints
    (``prints``: ``(ts, shares, is_sell)``) over the last ``keep_ns``; a window's volumes are summed as of the
    moment asked about (prints after it not counted, whatever arrived since)."""

    __slots__ = ("last_print_ts", "prints", "times")
    is_index = True

    def __init__(self, window_ns: int, keep_ns: int = 0, minutes: MinuteMids | None = None) -> None:
        super().__init__(window_ns, keep_ns, minutes)
        self.prints: deque[tuple[int, int, bool]] = deque()
        self.times: deque[int] = deque()
        self.last_print_ts = 0

    def update(self, ts: int, doubled: int) -> bool:
        if not super().update(ts, doubled):
            return False
        times = self.times
        times.append(ts)
        start = ts - self.keep_ns
        while times[0] < start:
            times.popleft()
        return True

    def last_event_at(self, ts: int) -> int:
        """The time (ns) of the last event at or before ``ts`` (0: none kept)."""
        times = self.times
        if not times:
            return 0
        if ts >= times[-1]:
            return times[-1]
        position = bisect_right(times, ts)
        return times[position - 1] if position else 0

    def on_print(self, ts: int, size: int, side: str) -> None:
        """A classified aggressive print (``side`` "buy" or "sell"; "unknown" is not counted); one older than the
        last print is ignored."""
        if side == "unknown" or ts < self.last_print_ts:
            return
        self.last_print_ts = ts
        prints = self.prints
        prints.append((ts, size, side == "sell"))
        start = ts - self.keep_ns
        while prints[0][0] <= start:
            prints.popleft()

    def volumes(self, ts: int) -> tuple[int, int]:
        """``(sell, buy)`` shares of the classified prints in the window ending at ``ts``."""
        sell = buy = 0
        start = ts - self.window_ns
        for print_ts, shares, sold in reversed(self.prints):
            if print_ts <= start:
                break
            if print_ts > ts:
                continue
            if sold:
                sell += shares
            else:
                buy += shares
        return sell, buy

    def sell_share(self, ts: int) -> float:
        """Sell volume over classified volume in the window ending at ``ts`` (0..1; 0.0 with none)."""
        sell, buy = self.volumes(ts)
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
    last_event = state.last_event_at(ts) if isinstance(state, IndexState) else min(state.last_ts, ts)
    if not last_event:
        return MarketContext(label="unknown", index=index, reason=f"no data of the index {index} before the alert.")
    age_ns = max(0, ts - last_event)
    window_seconds = state.window_ns // NANOSECONDS_PER_SECOND
    index_return = state.return_bps(ts)
    sell_share = state.sell_share(ts)
    stock_return = stock.return_bps(ts) if stock is not None else 0.0
    expected = beta * index_return
    relative = stock_return - expected
    covered = state.covered_ns(ts)
    moved = f"{index} {'fell' if index_return < 0 else 'rose'} {abs(index_return):.1f} bps in {window_seconds} s"
    label: ContextLabel
    ahead_ns = state.last_ts - ts
    if state.last_ts - state.keep_ns > ts - state.window_ns:  # what the window needs was evicted already
        label = "unknown"
        reason = (
            f"{index} was read {ahead_ns / NANOSECONDS_PER_SECOND:.0f} s ahead of the alert, past the "
            f"{state.keep_ns // NANOSECONDS_PER_SECOND} s it keeps: no market context."
        )
    elif age_ns > stale_ns:
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
