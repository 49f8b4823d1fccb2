"""Large sellers in the book: large offers that rest long enough to be real.

A level on the ask side (the inside, or any level the source gives: NBBO has
one, LOBSTER up to 50) with at least ``threshold`` shares starts an
*appearance* keyed by its price. About a third of Nasdaq limit orders are
cancelled within 2 s, so only an appearance still present after
``persistence_ns`` of event time is reported, once. It ends when that price
no longer shows the size; a later return is a new appearance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Appearance:
    price: int
    start_ts: int
    size: int
    alerted: bool = False


class LargeOffers:
    """Tracks large ask levels of one symbol."""

    def __init__(self, persistence_ns: int) -> None:
        self.persistence_ns = persistence_ns
        self.appearances: dict[int, Appearance] = {}
        self.bids: tuple[tuple[int, int], ...] = ()
        self._bid_size = 0  # the NBBO bid size when ``bids`` was not built

    def on_book(self, ts_event: int, bids: tuple[tuple[int, int], ...], asks: tuple[tuple[int, int], ...], threshold: int) -> None:
        """The book now (best first, (price, size) per level)."""
        self.bids = bids
        self._bid_size = 0
        large = {price: size for price, size in asks if size >= threshold}
        for price in [price for price in self.appearances if price not in large]:
            del self.appearances[price]
        for price, size in large.items():
            appearance = self.appearances.get(price)
            if appearance is None:
                self.appearances[price] = Appearance(price, ts_event, size)
            else:
                appearance.size = size

    def on_quote(self, ts_event: int, bid: int, bid_size: int, ask: int, ask_size: int, threshold: int) -> None:
        """An NBBO (one level a side); cheap when nothing is large."""
        if ask_size < threshold and not self.appearances:
            self._bid_size = bid_size if bid > 0 else 0
            self.bids = ()
            return
        self.on_book(ts_event, ((bid, bid_size),) if bid > 0 else (), ((ask, ask_size),) if ask > 0 else (), threshold)

    def due(self, ts_event: int) -> list[Appearance]:
        """Appearances that have now persisted long enough and were not reported."""
        ready = []
        for appearance in self.appearances.values():
            if not appearance.alerted and ts_event - appearance.start_ts >= self.persistence_ns:
                appearance.alerted = True
                ready.append(appearance)
        return ready

    def largest_bid(self) -> int:
        return max((size for _price, size in self.bids), default=self._bid_size)

    def reset(self) -> None:
        self.appearances.clear()
        self.bids = ()
        self._bid_size = 0
