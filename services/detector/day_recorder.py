"""Recording one regular session of one symbol while the rules run: its :class:`DayStatistics`.

The rules engine hands the recorder what it already computes (completed aggressive orders, quotes and
books, the prints that count toward volume, the red-burst rule's ratio once a second), so a session is
summed up without a second pass over the data and without I/O; :mod:`services.detector.profiles`
builds a profile from such sessions. It also keeps the price at the end of each minute of the regular session
(the NBBO's or book's mid; the last print's price while no quote was seen), the stock's minute mids.
"""

from __future__ import annotations

from orderflow_client.timestamps import NANOSECONDS_PER_SECOND
from services.detector.profiles import DayStatistics
from services.detector.volume_curve import BUCKET_SECONDS

REGULAR_MINUTES = 390
"""Minutes of a full regular session (09:30–16:00 ET): the minute mids recorded at most."""
MINUTE_NS = 60 * NANOSECONDS_PER_SECOND
RATIO_RESOLUTION = 10
"""Burst ratio readings are kept in tenths (a ratio of 3.47 counts as 34)."""

Levels = tuple[tuple[int, int], ...]
"""Book levels, best first: ``(price in nano-dollars, size in shares)`` each."""


class DayRecorder:
    """Sums up one regular session of one symbol while the rules run.

    The engine calls :meth:`record_order`, :meth:`record_quote`, :meth:`record_book`,
    :meth:`record_print` and :meth:`record_burst_ratio`; :meth:`statistics` returns the
    session so far.
    """

    __slots__ = (
        "_asks_displayed",
        "_asks_displayed_since",
        "_current_spread",
        "_current_spread_since",
        "bucket_volumes",
        "day",
        "first_ns",
        "last_ns",
        "minute_mids",
        "notional",
        "offer_sizes",
        "open_ns",
        "order_sizes",
        "quoted",
        "ratios",
        "spreads",
        "symbol",
        "volume_total",
    )

    def __init__(self, symbol: str, day: str, open_ns: int) -> None:
        self.symbol = symbol
        self.day = day
        self.open_ns = open_ns
        self.order_sizes: dict[int, int] = {}
        self.offer_sizes: dict[int, int] = {}
        self.spreads: dict[int, int] = {}
        self.ratios: dict[int, int] = {}
        self.bucket_volumes: list[int] = []
        self.volume_total = 0
        self.notional = 0
        self.first_ns = self.last_ns = 0
        self.minute_mids: list[int] = []  # nano-dollars at each minute's end from the open; 0 before the first
        self.quoted = False
        self._asks_displayed_since = 0
        self._asks_displayed: Levels = ()
        self._current_spread_since = 0
        self._current_spread = -1  # tenths of a basis point; -1: no spread (a side empty, or crossed)

    def _seen(self, ts: int) -> None:
        if not self.first_ns:
            self.first_ns = ts
        self.last_ns = ts

    def record_order(self, size: int) -> None:
        """A completed aggressive sell order of ``size`` shares."""
        self.order_sizes[size] = self.order_sizes.get(size, 0) + 1

    def record_quote(self, ts: int, bid: int, ask: int, ask_size: int) -> None:
        """An NBBO from ``ts`` on (nano-dollar prices, size in shares)."""
        self._display_asks(ts, ((ask, ask_size),) if ask > 0 else ())
        self._spread_from(ts, bid, ask)
        if 0 < bid <= ask:
            self.quoted = True
            self._minute_price(ts, (bid + ask) // 2)

    def record_book(self, ts: int, bids: Levels, asks: Levels) -> None:
        """A depth book from ``ts`` on: every ask level counts toward the displayed sizes."""
        self._display_asks(ts, asks)
        bid, ask = bids[0][0] if bids else 0, asks[0][0] if asks else 0
        self._spread_from(ts, bid, ask)
        if 0 < bid <= ask:
            self.quoted = True
            self._minute_price(ts, (bid + ask) // 2)

    def _minute_price(self, ts: int, price: int) -> None:
        """The price (nano-dollars) from ``ts`` on: its minute's value, the minutes before it since the last one
        carried forward."""
        minute = (ts - self.open_ns) // MINUTE_NS
        if not 0 <= minute < REGULAR_MINUTES:
            return
        mids = self.minute_mids
        if len(mids) <= minute:
            mids.extend([mids[-1] if mids else 0] * (minute + 1 - len(mids)))
        mids[minute] = price

    def _display_asks(self, ts: int, levels: Levels) -> None:
        """The previous ask levels are credited with the time they were displayed."""
        if self._asks_displayed_since:
            elapsed = ts - self._asks_displayed_since
            if elapsed > 0:
                book = self.offer_sizes
                for _price, size in self._asks_displayed:
                    book[size] = book.get(size, 0) + elapsed
        self._asks_displayed_since = ts
        self._asks_displayed = levels
        self._seen(ts)

    def _spread_from(self, ts: int, bid: int, ask: int) -> None:
        """The quoted spread from ``ts`` on (ignored while a side is empty or the market crossed)."""
        if self._current_spread >= 0 and ts > self._current_spread_since:
            spread = self._current_spread
            self.spreads[spread] = self.spreads.get(spread, 0) + ts - self._current_spread_since
        self._current_spread_since = ts
        self._current_spread = (ask - bid) * 200_000 // (ask + bid) if 0 < bid <= ask else -1

    def record_burst_ratio(self, ratio: float) -> None:
        """One second's red-burst volume ratio."""
        key = int(ratio * RATIO_RESOLUTION)
        self.ratios[key] = self.ratios.get(key, 0) + 1

    def record_print(self, ts: int, price: int, size: int) -> None:
        """A print that counts toward volume (nano-dollar price, size in shares)."""
        bucket = max(0, (ts - self.open_ns) // (BUCKET_SECONDS * NANOSECONDS_PER_SECOND))
        buckets = self.bucket_volumes
        while len(buckets) <= bucket:
            buckets.append(0)
        buckets[bucket] += size
        self.volume_total += size
        self.notional += price * size
        self._seen(ts)
        if not self.quoted:
            self._minute_price(ts, price)

    @property
    def vwap(self) -> int:
        """Volume-weighted average price so far (nano-dollars; 0 before any print)."""
        return self.notional // self.volume_total if self.volume_total else 0

    def statistics(self) -> DayStatistics:
        return DayStatistics(
            symbol=self.symbol,
            day=self.day,
            order_sizes=dict(self.order_sizes),
            offer_sizes=dict(self.offer_sizes),
            spread_tenth_bps=dict(self.spreads),
            bucket_volumes=tuple(self.bucket_volumes),
            burst_ratios=dict(self.ratios),
            volume=self.volume_total,
            vwap=self.vwap,
            observed_seconds=max(0, (self.last_ns - self.first_ns) // NANOSECONDS_PER_SECOND),
            minute_mids=tuple(self.minute_mids),
        )
