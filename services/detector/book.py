"""Large sellers in the book: large offers that rest long enough to be real.

A level on the ask side (the inside, or any level the source gives: NBBO has
one, LOBSTER up to 50) with at least ``threshold`` shares starts an
*appearance* keyed by its price. About a third of Nasdaq limit orders are
cancelled within 2 s, so only an appearance still present after
``persistence_ns`` of event time is reported, once. It ends when that price
no longer shows the size. A reported appearance that returns to the same
price within ``return_ns`` is the same seller refilling (an iceberg, or an
offer partly lifted and topped up) and is not reported again; any other
return is a new appearance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Appearance:
    """A large offer at one ask price: since ``start_ts`` (ns of event time), ``size`` shares now, at
    ``price`` nano-dollars; ``alerted`` once reported. Which view saw it start: ``level`` (0: the best ask) of
    ``levels_shown`` ask levels, in a ``view`` of ``book`` (a depth-of-book source) or ``nbbo`` (quotes)."""

    price: int
    start_ts: int
    size: int
    alerted: bool = False
    level: int = 0
    levels_shown: int = 1
    view: str = "nbbo"


class LargeOffers:
    """Tracks large ask levels of one symbol."""

    def __init__(self, persistence_ns: int, return_ns: int = 0) -> None:
        self.persistence_ns = persistence_ns
        self.return_ns = return_ns
        self.appearances: dict[int, Appearance] = {}
        self.ended: dict[int, tuple[int, Appearance]] = {}  # price -> (event ns it ended, the reported appearance)
        self.bids: tuple[tuple[int, int], ...] = ()
        self._bid_size = 0  # the NBBO bid size when ``bids`` was not built

    def on_book(
        self,
        ts_event: int,
        bids: tuple[tuple[int, int], ...],
        asks: tuple[tuple[int, int], ...],
        threshold: int,
        view: str = "book",
    ) -> None:
        """The book now (best first, (price, size) per level); ``view``: ``book``, or ``nbbo`` from a quote."""
        self.bids = bids
        self._bid_size = 0
        large = {price: size for price, size in asks if size >= threshold}
        for price in [price for price in self.appearances if price not in large]:
            gone = self.appearances.pop(price)
            if gone.alerted and self.return_ns:
                self.ended[price] = (ts_event, gone)
        if self.ended:
            self._forget_ended(ts_event)
        for price, size in large.items():
            appearance = self.appearances.get(price)
            if appearance is None:
                returned = self.ended.pop(price, None)
                if returned is not None:
                    appearance = returned[1]
                else:
                    level = next(index for index, (ask, _size) in enumerate(asks) if ask == price)
                    appearance = Appearance(price, ts_event, size, level=level, levels_shown=len(asks), view=view)
                self.appearances[price] = appearance
            appearance.size = size

    def on_quote(self, ts_event: int, bid: int, bid_size: int, ask: int, ask_size: int, threshold: int) -> None:
        """An NBBO (one level a side); cheap when nothing is large."""
        if ask_size < threshold and not self.appearances:
            self._bid_size = bid_size if bid > 0 else 0
            self.bids = ()
            return
        bids = ((bid, bid_size),) if bid > 0 else ()
        self.on_book(ts_event, bids, ((ask, ask_size),) if ask > 0 else (), threshold, "nbbo")

    def _forget_ended(self, ts_event: int) -> None:
        for price in [price for price, (ended_ts, _) in self.ended.items() if ts_event - ended_ts > self.return_ns]:
            del self.ended[price]

    def due(self, ts_event: int) -> list[Appearance]:
        """Appearances that have now persisted long enough and were not reported."""
        ready: list[Appearance] = []
        for appearance in self.appearances.values():
            if not appearance.alerted and ts_event - appearance.start_ts >= self.persistence_ns:
                appearance.alerted = True
                ready.append(appearance)
        return ready

    def largest_bid(self) -> int:
        """The largest displayed bid size (shares): of the book's levels, or the NBBO's."""
        return max((size for _price, size in self.bids), default=self._bid_size)

    def reset(self) -> None:
        self.appearances.clear()
        self.ended.clear()
        self.bids = ()
        self._bid_size = 0
