"""What the simulated Polygon market remembers for its REST side: the trades it printed and the archive days.

Trades are kept per symbol as the WebSocket dicts that were sent (``t`` in ms), at most ``history_trades`` per symbol,
the newest (a simulator looping for days must not grow without bound). Archive days (``--history``, for calibration)
are served at their own times: each of their dicts carries ``t_ns``, its market time in ns. :meth:`MarketHistory.
minute_bars` rolls the trades up into Polygon's minute aggregates (``/v2/aggs``).
"""

from __future__ import annotations

from collections import defaultdict, deque

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND, NANOSECONDS_PER_SECOND
from shared.conditions import ConditionTable

MINUTE_NS = 60 * NANOSECONDS_PER_SECOND


class MarketHistory:
    """Printed trades (bounded per symbol) and archive quotes, by symbol, oldest first."""

    def __init__(self, history_trades: int, archive: list[tuple[int, dict]] | None = None) -> None:
        self.trades: dict[str, deque[dict]] = defaultdict(lambda: deque(maxlen=history_trades))
        self.quotes: dict[str, list[dict]] = defaultdict(list)  # REST quotes: the archive's
        for market_ns, event in archive or ():  # history days served by REST (calibration), at their own times
            (self.trades if event["ev"] == "T" else self.quotes)[event["sym"]].append({**event, "t_ns": market_ns})
        self.conditions = ConditionTable.bundled()  # what the served /v3/reference/conditions says

    def minute_bars(self, symbol: str, low_ns: int, high_ns: int) -> list[dict]:
        """``symbol``'s minute aggregates of the trades in ``[low_ns, high_ns)``, oldest first, as Polygon rolls them
        up: a trade counts toward ``v``/``vw``/``n`` when every sale condition updates volume, and sets ``o``, ``h``,
        ``l``, ``c`` when every one updates open/close too; a minute with no such trade has no bar. ``t``: the bar's
        start (UTC ms). Sample: ``{"v": 300, "vw": 50.0033, "o": 50.0, "c": 50.01, "h": 50.01, "l": 50.0,
        "t": 1381152600000, "n": 2}``."""
        bars: dict[int, dict] = {}
        for trade in self.trades.get(symbol, ()):
            ns = event_time_ns(trade)
            if not low_ns <= ns < high_ns:
                continue
            known = (self.conditions.by_id.get(condition_id) for condition_id in trade["c"])
            deciding = [condition for condition in known if condition is not None and condition.deciding]
            if not all(condition.updates_volume for condition in deciding):
                continue
            bar = bars.setdefault(ns - ns % MINUTE_NS, {"v": 0, "notional": 0.0, "n": 0})
            price, size = trade["p"], trade["s"]
            bar["v"] += size
            bar["notional"] += price * size
            bar["n"] += 1
            if all(condition.updates_open_close for condition in deciding):
                bar.setdefault("o", price)
                bar["h"] = max(bar.get("h", price), price)
                bar["l"] = min(bar.get("l", price), price)
                bar["c"] = price
        return [
            {
                "v": bar["v"],
                "vw": round(bar["notional"] / bar["v"], 4) if bar["v"] else 0.0,
                "o": bar["o"],
                "c": bar["c"],
                "h": bar["h"],
                "l": bar["l"],
                "t": start // NANOSECONDS_PER_MILLISECOND,
                "n": bar["n"],
            }
            for start, bar in sorted(bars.items())
            if "c" in bar
        ]


def event_time_ns(event: dict) -> int:
    """An event's time in ns: an archive event's own, a played one's WebSocket ms."""
    return event.get("t_ns", event["t"] * NANOSECONDS_PER_MILLISECOND)
