"""One instrument's limit order book rebuilt from Databento MBO records (order by order), keeping every order id.

Databento's MBO actions and what each does here (as in Databento's own order-book examples):

* ``A`` add — a new resting order ``order_id`` of ``size`` shares at ``price`` (nano-dollars) on ``side``
  (``B`` bid, ``A`` ask), last in its price level's queue;
* ``C`` cancel — ``size`` shares of the order removed (all of it: the order leaves the book);
* ``M`` modify — the order's new price and size; it loses its place in the queue when its price changes or its size
  grows (an unknown order is added, as Databento's examples do);
* ``R`` clear — every order of the instrument removed (the start of a snapshot);
* ``T`` trade, ``F`` fill, ``N`` none — the book is unchanged: a fill is always followed by the cancel that takes
  the shares off the book.

Top-of-book venues (IEX, NYSE National in Databento's consolidated equity datasets) send MBO records flagged
``F_TOB``: such an add (or modify) is the side's new best level and replaces the whole side; one at ``UNDEF_PRICE``
says the side is empty (:meth:`OrderBook.replace_side`; Databento's limit-order-book example does the same). Such a
level stands for no order: :meth:`OrderBook.queue` gives ``()`` for it. :func:`apply_order` applies one record,
flags included; the caller shows the book after ``F_LAST``.

Mistakes in the records (an add of an id already resting, a cancel of an unknown id, no side) change nothing and
return a reject code for the caller to count. The book answers with its best ``depth`` levels, best first, as
``((price, size), ...)`` per side, and keeps the orders for rules that need them: :attr:`OrderBook.orders` (id →
:class:`RestingOrder`) and :meth:`OrderBook.queue` (the ids at one price, in time priority). For example::

    book = OrderBook()
    book.add(11, "A", 220_300_000_000, 500)
    book.add(12, "A", 220_300_000_000, 200)
    book.cancel(11, 100)
    book.top(10) == ((), ((220_300_000_000, 600),))
    book.queue("A", 220_300_000_000) == (11, 12)
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Any

from databento_dbn import F_TOB, UNDEF_PRICE

_UNCHANGED = frozenset("TFN")  # trade, fill, none: the book does not change


@dataclass
class RestingOrder:
    """An order on the book: ``side`` ``"B"`` or ``"A"``, ``price`` nano-dollars, ``size`` shares left."""

    side: str
    price: int
    size: int


class _Side:
    """One side's levels: total size and the order queue per price, and the prices sorted best first (bids are kept
    negated so both sides sort ascending)."""

    def __init__(self, negate: bool) -> None:
        self.sign = -1 if negate else 1
        self.sizes: dict[int, int] = {}
        self.queues: dict[int, dict[int, None]] = {}
        self.keys: list[int] = []

    def put(self, order_id: int, price: int, size: int) -> None:
        if price in self.sizes:
            self.sizes[price] += size
            self.queues[price][order_id] = None
        else:
            self.sizes[price] = size
            self.queues[price] = {order_id: None}
            insort(self.keys, self.sign * price)

    def take(self, order_id: int, price: int, size: int, leaves: bool) -> None:
        remaining = self.sizes[price] - size
        if leaves:
            del self.queues[price][order_id]
        if remaining <= 0 and not self.queues[price]:
            del self.sizes[price]
            del self.queues[price]
            key = self.sign * price
            del self.keys[bisect_left(self.keys, key)]
        else:
            self.sizes[price] = remaining

    def best(self, depth: int) -> tuple[tuple[int, int], ...]:
        prices = self.keys[:depth] if self.sign == 1 else [-key for key in self.keys[:depth]]
        return tuple(zip(prices, map(self.sizes.__getitem__, prices), strict=True))

    def clear(self) -> None:
        self.sizes.clear()
        self.queues.clear()
        self.keys.clear()

    def only(self, price: int, size: int) -> None:
        """The side is one level of ``size`` shares at ``price`` that stands for no order (top of book)."""
        self.clear()
        self.sizes[price] = size
        self.queues[price] = {}
        self.keys.append(self.sign * price)


class OrderBook:
    """The book of one instrument (see the module docstring). Each method returns ``None`` when the record applied,
    else the reject code of what was wrong with it."""

    def __init__(self) -> None:
        self.orders: dict[int, RestingOrder] = {}
        self._sides = {"B": _Side(negate=True), "A": _Side(negate=False)}

    def add(self, order_id: int, side: str, price: int, size: int) -> str | None:
        levels = self._sides.get(side)
        if levels is None:
            return "order_without_side"
        if order_id in self.orders:
            return "duplicate_order"
        if size <= 0:
            return "invalid_size"
        self.orders[order_id] = RestingOrder(side, price, size)
        levels.put(order_id, price, size)
        return None

    def cancel(self, order_id: int, size: int) -> str | None:
        order = self.orders.get(order_id)
        if order is None:
            return "unknown_order"
        removed = min(size, order.size)
        order.size -= removed
        leaves = order.size == 0
        if leaves:
            del self.orders[order_id]
        self._sides[order.side].take(order_id, order.price, removed, leaves)
        return None

    def modify(self, order_id: int, side: str, price: int, size: int) -> str | None:
        order = self.orders.get(order_id)
        if order is None:
            return self.add(order_id, side, price, size)
        if size <= 0:
            return "invalid_size"
        if order.side != side:
            return "modify_changes_side"
        levels = self._sides[side]
        if price != order.price or size > order.size:  # loses its place in the queue
            levels.take(order_id, order.price, order.size, leaves=True)
            levels.put(order_id, price, size)
        else:
            levels.take(order_id, price, order.size - size, leaves=False)
        order.price, order.size = price, size
        return None

    def clear(self) -> None:
        self.orders.clear()
        for levels in self._sides.values():
            levels.clear()

    def replace_side(self, side: str, price: int, size: int) -> str | None:
        """A top-of-book venue's new best level on ``side``: the side becomes that level alone, or empty when
        ``price`` is ``UNDEF_PRICE`` or ``size`` 0. The side's orders, if any, leave the book."""
        levels = self._sides.get(side)
        if levels is None:
            return "order_without_side"
        for order_id in [order_id for order_id, order in self.orders.items() if order.side == side]:
            del self.orders[order_id]
        if price == UNDEF_PRICE or size <= 0:
            levels.clear()
        else:
            levels.only(price, size)
        return None

    def top(self, depth: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """``(bids, asks)``: the best ``depth`` levels of each side, best first, ``(price, size)`` each."""
        return self._sides["B"].best(depth), self._sides["A"].best(depth)

    def side(self, side: str, depth: int) -> tuple[tuple[int, int], ...]:
        """The best ``depth`` levels of ``side`` (``"B"`` or ``"A"``), best first."""
        return self._sides[side].best(depth)

    def queue(self, side: str, price: int) -> tuple[int, ...]:
        """The ids of the orders resting at ``price`` on ``side``, first in time priority first."""
        return tuple(self._sides[side].queues.get(price, ()))


def apply_order(book: OrderBook, record: Any) -> str | None:
    """Apply one MBO record (``databento_dbn.MBOMsg``: ``action``, ``side``, ``order_id``, ``price`` nano-dollars,
    ``size`` shares, ``flags``) to ``book``; ``None`` when it applied or changes nothing (``T``, ``F``, ``N``), else
    the reject code: ``undefined_price`` (an ordinary add or modify without a price), ``unknown_action`` and the
    book's own codes. For example ``action='A' side='A' order_id=11 price=220300000000 size=500 flags=0`` puts
    order 11 last at $220.30; the same with ``flags=F_TOB`` (64) makes $220.30 x 500 the whole ask side."""
    action = record.action
    if action == "A" or action == "M":
        price = record.price
        if record.flags & F_TOB:
            return book.replace_side(str(record.side), price, record.size)
        if price == UNDEF_PRICE:
            return "undefined_price"
        if action == "A":
            return book.add(record.order_id, str(record.side), price, record.size)
        return book.modify(record.order_id, str(record.side), price, record.size)
    if action == "C":
        if record.flags & F_TOB and record.price == UNDEF_PRICE:
            return book.replace_side(str(record.side), UNDEF_PRICE, 0)
        return book.cancel(record.order_id, record.size)
    if action == "R":
        book.clear()
        return None
    return None if action in _UNCHANGED else "unknown_action"
