"""One symbol's market picture for the dashboard, folded from its market stream (pure).

- **price**: the last trade price of each second (market time, ``ts_event``), for the last 30 minutes;
- **minute bars**: shares bought, sold and unclassified each minute; the sell share (sold over classified) and the
  volume versus normal (the minute's volume over the mean of the earlier minutes kept, up to 30);
- **book**: the latest :class:`~orderflow_client.wire.BookUpdate`'s top levels (only sources with depth send them);
- the last event's ``ts_event`` (the market clock) and ``ts_recv`` (when ingest published it: the frame age).

:meth:`SymbolMarket.changes` hands out what changed since the last call (the live updates); the whole picture is in
the snapshot (:mod:`.views`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from orderflow_client.wire import BookUpdate, Trade

WINDOW_SECONDS = 30 * 60
BOOK_LEVELS = 5


@dataclass
class MinuteBar:
    minute: int  # epoch seconds of the minute's start (UTC)
    bought: int = 0
    sold: int = 0
    unclassified: int = 0

    @property
    def volume(self) -> int:
        return self.bought + self.sold + self.unclassified

    @property
    def sell_share(self) -> float | None:
        """Sold over classified volume (0..1); None when nothing was classified."""
        classified = self.bought + self.sold
        return self.sold / classified if classified else None


@dataclass
class SymbolMarket:
    symbol: str
    prices: deque[tuple[int, int]] = field(default_factory=deque)  # (second, last price that second, nano-dollars)
    bars: deque[MinuteBar] = field(default_factory=deque)
    last_price: int = 0
    last_trade_ns: int = 0
    last_event_ns: int = 0  # ts_event of the latest market event (any kind)
    last_recv_ns: int = 0  # ts_recv of the latest market event: when ingest published it (wall clock)
    asks: tuple[tuple[int, int], ...] = ()
    bids: tuple[tuple[int, int], ...] = ()
    book_venue: str = ""
    book_ns: int = 0
    _sent_second: int = 0  # the changes handed out reach this second (price) / minute (bars) / book time
    _sent_minute: int = 0
    _sent_book_ns: int = 0
    _changed: bool = False  # a trade or a book update since the last changes()

    def add(self, event: object) -> None:
        """Fold one market event (trades and book updates count; quotes and orders only move the clocks)."""
        ts_event = getattr(event, "ts_event", 0)
        ts_recv = getattr(event, "ts_recv", 0)
        self.last_event_ns = max(self.last_event_ns, ts_event)
        self.last_recv_ns = max(self.last_recv_ns, ts_recv)
        if isinstance(event, Trade):
            self._trade(event)
            self._changed = True
        elif isinstance(event, BookUpdate) and event.ts_event >= self.book_ns:
            self._changed = True
            self.asks, self.bids = event.asks[:BOOK_LEVELS], event.bids[:BOOK_LEVELS]
            self.book_venue, self.book_ns = event.venue, event.ts_event

    def _trade(self, trade: Trade) -> None:
        second = trade.ts_event // NANOSECONDS_PER_SECOND
        if trade.ts_event >= self.last_trade_ns:
            self.last_price, self.last_trade_ns = trade.price, trade.ts_event
        if self.prices and self.prices[-1][0] == second:
            self.prices[-1] = (second, trade.price)
        elif not self.prices or second > self.prices[-1][0]:
            self.prices.append((second, trade.price))
        minute = second - second % 60
        bar = self._bar(minute)
        if bar is None:
            return  # older than the bars kept
        if trade.side == "sell":
            bar.sold += trade.size
        elif trade.side == "buy":
            bar.bought += trade.size
        else:
            bar.unclassified += trade.size
        self._trim(second)

    def _bar(self, minute: int) -> MinuteBar | None:
        if not self.bars or minute > self.bars[-1].minute:
            self.bars.append(MinuteBar(minute))
            return self.bars[-1]
        for bar in reversed(self.bars):  # a late print: its own minute's bar, when kept
            if bar.minute == minute:
                return bar
        return None

    def _trim(self, second: int) -> None:
        oldest = second - WINDOW_SECONDS
        while self.prices and self.prices[0][0] < oldest:
            self.prices.popleft()
        while self.bars and self.bars[0].minute < oldest - oldest % 60:
            self.bars.popleft()

    def volume_ratio(self, bar: MinuteBar) -> float | None:
        """The bar's volume over the mean volume of the earlier minutes kept; None with no earlier minute."""
        earlier = [other.volume for other in self.bars if other.minute < bar.minute]
        if not earlier or not sum(earlier):
            return None
        return bar.volume / (sum(earlier) / len(earlier))

    def changes(self) -> dict[str, object] | None:
        """What changed since the last call: price points from the last second handed out on (it may have moved),
        the bars from the last minute handed out on, the book when it changed; None when nothing did."""
        if not self._changed:
            return None
        self._changed = False
        prices = [point for point in self.prices if point[0] >= self._sent_second]
        bars = [bar for bar in self.bars if bar.minute >= self._sent_minute]
        changed: dict[str, object] = {"prices": prices, "bars": bars, "book": self.book_ns != self._sent_book_ns}
        if self.prices:
            self._sent_second = self.prices[-1][0]
        if self.bars:
            self._sent_minute = self.bars[-1].minute
        self._sent_book_ns = self.book_ns
        return changed
