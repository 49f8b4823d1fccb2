"""What the simulated Polygon market remembers for its REST side: the trades it printed and the archive days.

Trades are kept per symbol as the WebSocket dicts that were sent (``t`` in ms), at most ``history_trades`` per symbol,
the newest (a simulator looping for days must not grow without bound). Archive days (``--history``, for calibration)
are served at their own times: each of their dicts carries ``t_ns``, its market time in ns.
"""

from __future__ import annotations

from collections import defaultdict, deque

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND


class MarketHistory:
    """Printed trades (bounded per symbol) and archive quotes, by symbol, oldest first."""

    def __init__(self, history_trades: int, archive: list[tuple[int, dict]] | None = None) -> None:
        self.trades: dict[str, deque[dict]] = defaultdict(lambda: deque(maxlen=history_trades))
        self.quotes: dict[str, list[dict]] = defaultdict(list)  # REST quotes: the archive's
        for market_ns, event in archive or ():  # history days served by REST (calibration), at their own times
            (self.trades if event["ev"] == "T" else self.quotes)[event["sym"]].append({**event, "t_ns": market_ns})


def event_time_ns(event: dict) -> int:
    """An event's time in ns: an archive event's own, a played one's WebSocket ms."""
    return event.get("t_ns", event["t"] * NANOSECONDS_PER_MILLISECOND)
