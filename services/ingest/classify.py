"""Trade-side classification: who was the aggressor of a print.

The consolidated tape carries no side, so it is inferred from the NBBO in
force *before* the print. Methods, all in exact integer
arithmetic (``2 × price`` against ``bid + ask`` instead of a float mid):

* ``lee_ready`` (default) — above the mid a buy, below a sell, at the mid the
  tick test (Lee & Ready 1991, without the 5-second delay: timestamps here
  are milliseconds or better);
* ``emo`` — at the ask a buy, at the bid a sell, anything else the tick test
  (Ellis, Michaely & O'Hara 2000);
* ``quote`` — the quote rule alone (mid prints stay ``unknown``);
* ``tick`` — the tick test alone: up from the last different price a buy,
  down a sell.

Quote timing: ``strict`` uses the NBBO whose timestamp is strictly before the
print's (the right choice for the consolidated tape, where trades and quotes
of the same instant arrive in no reliable order); ``sequenced`` uses the NBBO
just before the print in arrival order, for sources whose events are exactly
sequenced by one venue (LOBSTER/ITCH).

A print whose source knows the side (``side_source="feed"``) keeps it. A
locked, crossed or one-sided NBBO falls back to the tick test. The
``side_source`` of each result records what decided it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from orderflow_client.wire import BookUpdate, Quote, Trade
from shared.nbbo import PrevailingQuote, QuoteTiming

Method = Literal["lee_ready", "emo", "quote", "tick"]
METHODS: tuple[Method, ...] = ("lee_ready", "emo", "quote", "tick")

_replace = msgspec.structs.replace


class SideClassifier:
    """Incremental classifier for ONE symbol. Feed it every quote (or book
    update) and every trade in arrival order."""

    def __init__(
        self,
        method: Method = "lee_ready",
        timing: QuoteTiming = "strict",
        moves_last_price: Callable[[Trade], bool] | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        self.method = method
        self.moves_last_price = moves_last_price
        self.nbbo = PrevailingQuote(timing)
        # tick test state
        self.last_price = 0
        self.last_direction = 0

    def on_quote(self, ts_event: int, bid: int, ask: int) -> None:
        """A new NBBO (prices in nano-dollars; 0 for an empty side)."""
        self.nbbo.update(ts_event, bid, ask)

    def on_event(self, event: Quote | BookUpdate) -> None:
        self.nbbo.update_from(event)

    def classify(self, trade: Trade) -> Trade:
        """The trade with ``side`` and ``side_source`` set."""
        price = trade.price
        if trade.side_source == "feed":
            result = trade
        else:
            side, source = self._infer(trade.ts_event, price)
            result = _replace(trade, side=side, side_source=source)
        if self.moves_last_price is None or self.moves_last_price(trade):
            if self.last_price and price != self.last_price:
                self.last_direction = 1 if price > self.last_price else -1
            self.last_price = price
        return result

    def _tick(self, price: int) -> tuple[str, str]:
        if self.last_price:
            if price > self.last_price:
                return "buy", "tick"
            if price < self.last_price:
                return "sell", "tick"
            if self.last_direction:
                return ("buy" if self.last_direction > 0 else "sell"), "tick"
        return "unknown", "none"

    def _infer(self, ts_event: int, price: int) -> tuple[str, str]:
        method = self.method
        if method == "tick":
            return self._tick(price)
        bid, ask = self.nbbo.before(ts_event)
        if not (0 < bid < ask):
            return ("unknown", "none") if method == "quote" else self._tick(price)
        if method == "emo":
            if price == ask:
                return "buy", "quote"
            if price == bid:
                return "sell", "quote"
            return self._tick(price)
        doubled, mid_doubled = 2 * price, bid + ask
        if doubled > mid_doubled:
            return "buy", "quote"
        if doubled < mid_doubled:
            return "sell", "quote"
        return ("unknown", "none") if method == "quote" else self._tick(price)
