"""Large sellers one order at a time, from an order-by-order source (Databento MBO: :class:`OrderUpdate` events of
the ask side).

What only orders show:

* **who makes a large offer.** When the book's rule (:mod:`services.detector.book`) reports a large offer, the
  orders resting at its price say whether it is one seller — one order of at least the threshold, named by its id —
  or many smaller offers (:meth:`SellOrders.resting_at`).
* **an offer pulled before it traded.** An order of at least the offer threshold cancelled to its last share
  without one share traded is pulled: when a large-seller alert named it, the rules report it
  (:class:`Pulled`), so a trader knows the seller behind that alert left without selling.
* **an iceberg.** A seller who shows a small order and refills it as it trades. An ask order traded to its last
  share, followed within ``refill_ns`` (:data:`REFILL_NS`, 10 ms) by a new order of the same size at the same price
  on the same venue, is the same seller refilling: on the shared Nasdaq days the refill follows in a median
  0.24 ms. A chain that has refilled at least :data:`MIN_REFILLS` times and traded at least the offer threshold
  is one large seller the levels never show (its shown size stays small), reported once (:class:`Iceberg`).

Sizes in shares, prices in nano-dollars, times in ns of event time. Orders are keyed by venue and order id (ids are
a venue's own). The state is per symbol; a gap or a halt forgets it, as the other windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from orderflow_client.timestamps import NANOSECONDS_PER_MILLISECOND
from orderflow_client.wire import OrderUpdate

REFILL_NS = 10 * NANOSECONDS_PER_MILLISECOND
MIN_REFILLS = 2
_EMPTIED_KEPT = 4_096  # prices whose last order traded out recently, at most (older ones are forgotten)


@dataclass
class RefillChain:
    """One seller's orders at one price, each refilled when the previous traded out: ``shown`` shares each, since
    ``first_ts`` (the first order's add), ``refills`` new orders after the first, ``traded`` shares in all."""

    venue: str
    price: int
    shown: int
    first_ts: int
    first_order_id: int
    refills: int = 0
    traded: int = 0
    last_ts: int = 0
    alerted: bool = False


@dataclass
class RestingOffer:
    """One ask order on the book: ``size`` shares left of ``shown`` (its size when added or last grown),
    ``traded`` shares of it traded; ``named_by``: the alert that named it as the seller of a large offer."""

    order_id: int
    venue: str
    price: int
    size: int
    shown: int
    added_ts: int
    traded: int = 0
    chain: RefillChain | None = None
    named_by: str = ""


class Iceberg(NamedTuple):
    """A refill chain that has become a large seller (as of the fill ``ts``, ns)."""

    chain: RefillChain
    ts: int
    ts_recv: int


class Pulled(NamedTuple):
    """A large order cancelled to its last share without trading, ``ts`` the cancel (ns)."""

    order: RestingOffer
    ts: int
    ts_recv: int


class PulledOrder(NamedTuple):
    """A large order that a large-seller alert named was cancelled to its last share without trading (for
    ``order_flow.large_order_pulled``): ``rested_ns`` from its add to the cancel, ``price`` nano-dollars."""

    symbol: str
    alert_id: str
    order_id: int
    venue: str
    price: int
    shares: int
    rested_ns: int
    ts_event: int


@dataclass
class SellOrders:
    """The ask orders of one symbol (all venues) and their refill chains."""

    refill_ns: int = REFILL_NS
    min_refills: int = MIN_REFILLS
    orders: dict[tuple[str, int], RestingOffer] = field(default_factory=dict)
    prices: dict[int, dict[tuple[str, int], None]] = field(default_factory=dict)  # price → its orders' keys
    emptied: dict[tuple[str, int], tuple[int, RefillChain]] = field(default_factory=dict)  # (venue, price) → when
    seen: bool = False  # order events arrived: large offers are judged order by order

    def on_order(self, update: OrderUpdate, threshold: int) -> Iceberg | Pulled | None:
        """Apply one order event; an iceberg that now trades ``threshold`` shares, or a pulled order of at least
        ``threshold`` shares, when the event makes one."""
        self.seen = True
        action = update.action
        if action == "add":
            self._add(update)
            return None
        if action == "clear":
            for key in [key for key in self.orders if key[0] == update.venue]:
                self._remove(key)
            return None
        key = (update.venue, update.order_id)
        order = self.orders.get(key)
        if order is None:
            return None
        if action == "fill":
            return self._fill(order, update, threshold)
        if action == "cancel":
            order.size = update.remaining
            if update.remaining <= 0:
                self._remove(key)
                if order.traded == 0 and order.shown >= threshold:
                    return Pulled(order, update.ts_event, update.ts_recv)
            return None
        if action == "modify":
            if update.price != order.price:
                self._remove(key)
                self.orders[key] = order
                self.prices.setdefault(update.price, {})[key] = None
                order.price = update.price
            if update.size > order.size:
                order.shown = update.size
            order.size = update.size
        return None

    def _add(self, update: OrderUpdate) -> None:
        key = (update.venue, update.order_id)
        if key in self.orders:
            return
        order = RestingOffer(update.order_id, update.venue, update.price, update.size, update.size, update.ts_event)
        emptied = self.emptied.pop((update.venue, update.price), None)
        if emptied is not None:
            when, chain = emptied
            if update.ts_event - when <= self.refill_ns and update.size == chain.shown:
                chain.refills += 1
                order.chain = chain
        self.orders[key] = order
        self.prices.setdefault(update.price, {})[key] = None

    def _fill(self, order: RestingOffer, update: OrderUpdate, threshold: int) -> Iceberg | None:
        order.traded += update.size
        order.size = update.remaining
        chain = order.chain
        if chain is not None:
            chain.traded += update.size
            chain.last_ts = update.ts_event
        if update.remaining <= 0:
            self._remove((order.venue, order.order_id))
            if chain is None:
                chain = RefillChain(order.venue, order.price, order.shown, order.added_ts, order.order_id)
                chain.traded, chain.last_ts = order.traded, update.ts_event
            if len(self.emptied) >= _EMPTIED_KEPT:
                self.emptied.clear()
            self.emptied[(order.venue, order.price)] = (update.ts_event, chain)
        if chain is not None and not chain.alerted and chain.refills >= self.min_refills and chain.traded >= threshold:
            chain.alerted = True
            return Iceberg(chain, update.ts_event, update.ts_recv)
        return None

    def _remove(self, key: tuple[str, int]) -> None:
        order = self.orders.pop(key)
        keys = self.prices.get(order.price)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self.prices[order.price]

    def resting_at(self, price: int) -> list[RestingOffer]:
        """The orders resting at ``price`` (every venue), largest first."""
        keys = self.prices.get(price, {})
        return sorted((self.orders[key] for key in keys), key=lambda order: order.size, reverse=True)

    def reset(self) -> None:
        """Forget every order and chain (a gap: what rested during it is unknown)."""
        self.orders.clear()
        self.prices.clear()
        self.emptied.clear()
