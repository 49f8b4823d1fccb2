"""Large sellers on the tape: aggressive sell orders rebuilt from prints.

One aggressor's order shows as consecutive seller-initiated prints executed
at or below the bid in force before them, at the same timestamp or as a
sweep within ``sweep_window_ns`` of the previous print at non-increasing
prices (``sweep_window_ms``, default 5 ms). A buy, or a sell above the bid, ends the order;
prints that cannot be aggressive (odd lots, auctions…) are ignored without
ending it. An order is complete when a later event arrives beyond the sweep
window; :meth:`TapeOrders.order_ended_by` reports it. The rules do not wait for that:
the print whose running size crosses the threshold raises the alert at once
(``alerted`` records the severity raised so far).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orderflow_client.wire import Trade


@dataclass
class AggressiveOrder:
    """One rebuilt aggressive sell order. Prices in nano-dollars, sizes in shares."""

    first_ts: int
    first_trade_id: str
    last_ts: int
    last_price: int
    worst_price: int
    size: int
    notional: int
    prints: int
    bid_before: int
    last_ts_recv: int
    alerted: Literal["", "warning", "critical"] = ""  # what the rules raised while the order was running
    inferred_prints: int = 0  # prints whose seller side was inferred (quote or tick rule), not given by the feed

    @property
    def vwap(self) -> int:
        """Volume-weighted average price (nano-dollars)."""
        return self.notional // self.size if self.size else 0


class TapeOrders:
    """Builds aggressive sell orders for one symbol."""

    def __init__(self, sweep_window_ns: int) -> None:
        self.sweep_window_ns = sweep_window_ns
        self.current: AggressiveOrder | None = None

    def on_sell(self, trade: Trade, bid_before: int) -> AggressiveOrder | None:
        """A seller-initiated print at or below the bid. Returns the previous
        order if this print starts a new one."""
        current = self.current
        if (
            current is not None
            and trade.ts_event - current.last_ts <= self.sweep_window_ns
            and trade.price <= current.last_price
        ):
            current.last_ts = trade.ts_event
            current.last_price = trade.price
            current.worst_price = min(current.worst_price, trade.price)
            current.size += trade.size
            current.notional += trade.price * trade.size
            current.prints += 1
            current.last_ts_recv = trade.ts_recv
            current.inferred_prints += trade.side_source != "feed"
            return None
        finished = self.current
        self.current = AggressiveOrder(
            first_ts=trade.ts_event,
            first_trade_id=trade.trade_id,
            last_ts=trade.ts_event,
            last_price=trade.price,
            worst_price=trade.price,
            size=trade.size,
            notional=trade.price * trade.size,
            prints=1,
            bid_before=bid_before,
            last_ts_recv=trade.ts_recv,
            inferred_prints=int(trade.side_source != "feed"),
        )
        return finished

    def end_order(self) -> AggressiveOrder | None:
        """The current order, ended now: a print broke the sequence (a buy, a sell above the bid), the
        windows were reset, or the input ended."""
        finished, self.current = self.current, None
        return finished

    def order_ended_by(self, ts_event: int) -> AggressiveOrder | None:
        """The current order if ``ts_event`` lies beyond its sweep window (it is then complete)."""
        current = self.current
        if current is not None and ts_event - current.last_ts > self.sweep_window_ns:
            self.current = None
            return current
        return None
