"""What the simulated Polygon market plays: trades and quotes of recorded or vendor files as Polygon WebSocket dicts.

``load_timeline("lobster", [path])`` → ``[(event time ns, dict), …]`` in time order, ready for
:class:`services.tools.simulator.PolygonSimulator`. A trade as it is sent (prices in dollars; ``t``, in ms, is filled
in when it goes out)::

    {"ev": "T", "sym": "AAPL", "x": 4, "i": "71675577320245", "z": 3, "p": 187.43, "s": 200,
     "c": [14, 41], "t": 0, "q": 1234, "trfi": 202}
"""

from __future__ import annotations

from pathlib import Path

from orderflow_client.prices import PRICE_SCALE
from orderflow_client.wire import BookUpdate, Quote, Trade
from services.ingest.sources import read_events


def inside_quote(book: BookUpdate) -> Quote:
    """The NBBO of a depth book update."""
    bid, bid_size = book.bids[0] if book.bids else (0, 0)
    ask, ask_size = book.asks[0] if book.asks else (0, 0)
    return Quote(
        symbol=book.symbol,
        ts_event=book.ts_event,
        ts_recv=book.ts_recv,
        ts_arrival=book.ts_arrival,
        bid_price=bid,
        bid_size=bid_size,
        ask_price=ask,
        ask_size=ask_size,
    )


def polygon_event(event: Trade | Quote) -> dict:
    """A normalised event as a Polygon WebSocket dict (``t`` filled in when sent)."""
    if isinstance(event, Trade):
        data = {
            "ev": "T",
            "sym": event.symbol,
            "x": event.exchange,
            "i": event.trade_id,
            "z": event.tape,
            "p": event.price / PRICE_SCALE,
            "s": event.size,
            "c": list(event.conditions),
            "t": 0,
            "q": event.sequence,
        }
        if event.trf_id:
            data["trfi"] = event.trf_id
        return data
    return {
        "ev": "Q",
        "sym": event.symbol,
        "bx": event.bid_exchange,
        "bp": event.bid_price / PRICE_SCALE,
        "bs": event.bid_size,
        "ax": event.ask_exchange,
        "ap": event.ask_price / PRICE_SCALE,
        "as": event.ask_size,
        "c": list(event.conditions),
        "i": [],
        "t": 0,
        "q": event.sequence,
        "z": event.tape,
    }


def load_timeline(format: str, paths: list[Path]) -> list[tuple[int, dict]]:
    """``(event time ns, Polygon dict)`` of trades and quotes, in time order. A depth book
    (LOBSTER) becomes the quotes of its inside level: all Polygon shows of a stock's book."""
    timeline = []
    for item in read_events(format, paths):
        if isinstance(item, BookUpdate):
            item = inside_quote(item)
        if isinstance(item, (Trade, Quote)):
            timeline.append((item.ts_event, polygon_event(item)))
    timeline.sort(key=lambda pair: pair[0])
    return timeline
