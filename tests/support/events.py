"""Hand-made market events for the rules tests (one symbol's quotes and trades on a fixed session day), and the exit
recommendations the risk-manager tests hand to the bot's side.

Prices are nano-dollars (``50 * D`` is $50.00), times ns since the epoch (``T0 + 2 * S`` is 10:30:02 New York).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from orderflow_client.wire import ExitRecommendation, OrderFlowAlert, Quote, Trade

D = 1_000_000_000  # a dollar in nano-dollars
S = 1_000_000_000  # a second in ns
MS = 1_000_000  # a millisecond in ns
NY = ZoneInfo("America/New_York")
OPEN = int(datetime(2026, 11, 24, 9, 30, tzinfo=NY).timestamp()) * S  # a Tuesday's regular open
T0 = OPEN + 3600 * S  # 10:30, mid-session
BID = 50 * D  # the bid of Feed.quote's default NBBO ($50.00 × $50.01)


class Feed:
    """Builds events for one symbol with fresh arrival times."""

    def __init__(self, symbol: str = "X") -> None:
        self.symbol = symbol
        self.next_id = 0

    def quote(
        self,
        ts: int,
        bid: int = 50 * D,
        ask: int = 50 * D + D // 100,
        bid_size: int = 500,
        ask_size: int = 500,
        **fields: Any,
    ) -> Quote:
        return Quote(
            symbol=self.symbol,
            ts_event=ts,
            ts_recv=ts,
            ts_arrival=fields.pop("arrival", ts),
            bid_price=bid,
            bid_size=bid_size,
            ask_price=ask,
            ask_size=ask_size,
            **fields,
        )

    def trade(
        self, ts: int, price: int, size: int, side: str = "sell", conditions: tuple[int, ...] = (), **fields: Any
    ) -> Trade:
        self.next_id += 1
        return Trade(
            symbol=self.symbol,
            ts_event=ts,
            ts_recv=ts,
            ts_arrival=fields.pop("arrival", ts),
            price=price,
            size=size,
            trade_id=str(self.next_id),
            conditions=conditions,
            side=side,
            side_source="quote",
            **fields,
        )


def seconds_of_flow(feed: Feed, start: int, seconds: int, per_second: int, sell_share: float) -> list[Quote | Trade]:
    """``seconds`` seconds from ``start`` (ns), each a quote, then ``per_second`` shares split into a sell at the
    bid (``sell_share`` of them, e.g. 0.8) and a buy at the ask, 100 ms and 300 ms into the second."""
    events: list[Quote | Trade] = []
    for second in range(seconds):
        ts = start + second * S
        events.append(feed.quote(ts))
        sells = round(per_second * sell_share)
        events.append(feed.trade(ts + 100 * MS, BID, sells, side="sell"))
        events.append(feed.trade(ts + 300 * MS, BID + D // 100, per_second - sells, side="buy"))
    return events


def recommendation(trigger: str = "large_sellers", number: int = 1, symbol: str = "AAPL") -> ExitRecommendation:
    """An exit recommendation as the detector sends it, e.g. id ``AAPL:exit:large_sellers:1``; ``number`` is also its
    event and receive time (ns)."""
    return ExitRecommendation(
        id=f"{symbol}:exit:{trigger}:{number}",
        symbol=symbol,
        trigger=trigger,
        ts_event=number,
        ts_recv=number,
        timestamp_utc="2026-11-24T15:00:00.000000000Z",
        alert_ids=("a", "b", "c"),
        reasoning="3 large sellers within 80 s",
    )


def large_seller(symbol: str, number: int, at: int, size: int = 10_000) -> OrderFlowAlert:
    """A large-seller alert as a view receives it, e.g. id ``RECO:large_seller:3``, at ``at`` (ns, event and receive
    time), ``size`` shares at $50.00."""
    return OrderFlowAlert(
        id=f"{symbol}:large_seller:{number}",
        symbol=symbol,
        alert_type="large_seller",
        severity="warning",
        source="tape",
        ts_event=at,
        ts_recv=at,
        timestamp_utc="",
        order_size=size,
        price_level=50_000_000_000,
    )
