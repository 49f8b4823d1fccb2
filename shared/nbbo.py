"""The NBBO in force before a print, shared by side classification and the
rules so both judge a print against exactly the same quote.

``strict`` timing answers with the quote whose timestamp is strictly before
the print's (consolidated tape: same-instant quotes and trades arrive in no
reliable order); ``sequenced`` with the last quote seen (a single venue's
exactly ordered feed, e.g. LOBSTER). Prices are nano-dollars, 0 = empty side.
"""

from __future__ import annotations

from typing import Literal

from orderflow_client.wire import BookUpdate, Quote

QuoteTiming = Literal["strict", "sequenced"]


class PrevailingQuote:
    """Tracks the NBBO of one symbol."""

    __slots__ = ("ask", "before_ask", "before_bid", "before_ts", "bid", "sequenced", "ts")

    def __init__(self, timing: QuoteTiming = "strict") -> None:
        self.sequenced = timing == "sequenced"
        self.ts = -1
        self.bid = self.ask = 0
        self.before_ts = -1
        self.before_bid = self.before_ask = 0

    def update(self, ts_event: int, bid: int, ask: int) -> None:
        """A new NBBO at ``ts_event``."""
        if ts_event != self.ts:
            self.before_ts, self.before_bid, self.before_ask = self.ts, self.bid, self.ask
        self.ts, self.bid, self.ask = ts_event, bid, ask

    def update_from(self, event: Quote | BookUpdate) -> None:
        """The NBBO a quote or a book update shows (a book's best levels; 0 for an empty side)."""
        if isinstance(event, Quote):
            self.update(event.ts_event, event.bid_price, event.ask_price)
        else:
            self.update(event.ts_event, event.bids[0][0] if event.bids else 0, event.asks[0][0] if event.asks else 0)

    def before(self, ts_event: int) -> tuple[int, int]:
        """``(bid, ask)`` in force before ``ts_event``; ``(0, 0)`` when unknown."""
        if self.sequenced or self.ts < ts_event:
            return self.bid, self.ask
        if self.before_ts < ts_event:
            return self.before_bid, self.before_ask
        return 0, 0
