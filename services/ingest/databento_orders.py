"""Databento MBO records → :class:`~orderflow_client.wire.OrderUpdate` events: what happened to each resting offer.

The order-by-order view the rules need (a large seller as one order; an offer pulled before it traded; an offer
that refills like an iceberg) is the ask side's orders. Each MBO record on an ask order becomes one event, read
*before* the record is applied to the venue's :class:`~services.ingest.databento_book.OrderBook` (a cancel's
order is still there to say its price)::

    A add     side A                 → add     (price, size; remaining = size)
    F fill    of a resting ask order → fill    (size = shares traded; remaining = shares left)
    C cancel  after that fill        → nothing (Databento's MBO takes the filled shares off the book with a cancel
                                                 of the same order that follows the fill: part of the fill)
    C cancel  otherwise              → cancel  (size = shares taken off; remaining = shares left)
    M modify                         → modify  (the new price and size; of an order not on the book: add)
    R clear                          → clear   (order_id 0: every order of the venue is gone)

Bid orders, trades (``T``, the aggressor's record: a Trade event), ``N`` records, top-of-book records (``F_TOB``: a
level that stands for no order) and records on orders the book does not hold give nothing. For example, XNAS.ITCH
``action='F' side='A' order_id=16119403 price=223820000000 size=100`` on a resting 100-share offer at $223.82 is
``OrderUpdate(order_id=16119403, action="fill", price=223_820_000_000, size=100, remaining=0, venue="XNAS")``.
"""

from __future__ import annotations

from typing import Any

from databento_dbn import F_TOB

from orderflow_client.wire import OrderAction, OrderUpdate
from services.ingest.databento_book import OrderBook
from services.ingest.databento_records import times
from services.ingest.databento_venues import venue_of


class AskOrderEvents:
    """One venue's ask orders as events; remembers each fill until the cancel that takes its shares off."""

    __slots__ = ("filled",)

    def __init__(self) -> None:
        self.filled: dict[int, int] = {}  # order id → shares a fill record traded, not yet taken off by a cancel

    def update(self, record: Any, symbol: str, book: OrderBook) -> OrderUpdate | None:
        """The event of ``record`` (an ``MBOMsg``), read before ``book`` applies it; None when there is none."""
        action = record.action
        if record.flags & F_TOB or action == "T" or action == "N":
            return None
        if action == "R":
            self.filled.clear()
            return _event(record, symbol, "clear", 0, 0, 0, 0)
        order_id = record.order_id
        if action == "A":
            if record.side != "A" or order_id in book.orders:
                return None
            return _event(record, symbol, "add", order_id, record.price, record.size, record.size)
        order = book.orders.get(order_id)
        if order is None:  # a modify of an order the book does not hold adds it (as the book does)
            if action == "M" and record.side == "A":
                return _event(record, symbol, "add", order_id, record.price, record.size, record.size)
            return None
        if order.side != "A":
            return None
        if action == "F":
            traded = min(record.size, order.size)
            self.filled[order_id] = self.filled.get(order_id, 0) + traded
            return _event(record, symbol, "fill", order_id, order.price, traded, order.size - traded)
        if action == "C":
            removed = min(record.size, order.size)
            filled = self.filled.pop(order_id, 0)
            if filled >= removed:
                if filled > removed:
                    self.filled[order_id] = filled - removed
                return None
            return _event(record, symbol, "cancel", order_id, order.price, removed - filled, order.size - removed)
        if action == "M":
            return _event(record, symbol, "modify", order_id, record.price, record.size, record.size)
        return None


def _event(
    record: Any, symbol: str, action: OrderAction, order_id: int, price: int, size: int, remaining: int
) -> OrderUpdate:
    ts_event, ts_recv = times(record)
    return OrderUpdate(
        symbol=symbol,
        ts_event=ts_event,
        ts_recv=ts_recv,
        ts_arrival=ts_recv,
        order_id=order_id,
        action=action,
        price=price,
        size=size,
        remaining=remaining,
        venue=venue_of(record.publisher_id)[0],
    )
