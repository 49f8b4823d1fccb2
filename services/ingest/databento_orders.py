"""Databento MBO records → :class:`~orderflow_client.wire.OrderUpdate` events: what happened to each resting offer.

The order-by-order view the rules need (a large seller as one order; an offer pulled before it traded; an offer
that refills like an iceberg) is the ask side's orders. :meth:`AskOrderEvents.apply` applies each MBO record to the
venue's :class:`~services.ingest.databento_book.OrderBook` and says what it did to an ask order, as one event (the
book's verdict decides: a record it refuses makes no event)::

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
from services.ingest.databento_book import OrderBook, apply_order
from services.ingest.databento_records import times
from services.ingest.databento_venues import venue_of


class AskOrderEvents:
    """One venue's ask orders as events; remembers each fill until the cancel that takes its shares off."""

    __slots__ = ("filled",)

    def __init__(self) -> None:
        self.filled: dict[int, int] = {}  # order id → shares a fill record traded, not yet taken off by a cancel

    def apply(self, record: Any, symbol: str, book: OrderBook) -> tuple[OrderUpdate | None, str | None]:
        """Apply ``record`` (an ``MBOMsg``) to ``book`` (:func:`~services.ingest.databento_book.apply_order`):
        its event, if it makes one, and the book's reject code, if the book refused it (then no event)."""
        action, order_id = record.action, record.order_id
        before = book.orders.get(order_id)
        was = (before.side, before.price, before.size) if before is not None else None
        code = apply_order(book, record)
        if code is not None or record.flags & F_TOB or action == "T" or action == "N":
            return None, code
        if action == "R":
            self.filled.clear()
            return _event(record, symbol, "clear", 0, 0, 0, 0), None
        after = book.orders.get(order_id)
        if was is None:  # an add, or a modify of an order the book did not hold (the book adds it)
            if after is None or after.side != "A" or not (action == "A" or action == "M"):
                return None, None
            return _event(record, symbol, "add", order_id, after.price, after.size, after.size), None
        side, price, size = was
        if side != "A":
            return None, None
        if action == "F":
            traded = min(record.size, size)
            self.filled[order_id] = self.filled.get(order_id, 0) + traded
            return _event(record, symbol, "fill", order_id, price, traded, size - traded), None
        left = after.size if after is not None else 0
        if action == "C":
            removed, filled = size - left, self.filled.pop(order_id, 0)
            if filled >= removed:  # the fill's own cancel: its shares were told with the fill
                if filled > removed:
                    self.filled[order_id] = filled - removed
                return None, None
            return _event(record, symbol, "cancel", order_id, price, removed - filled, left), None
        if after is not None and (after.price, after.size) != (price, size):  # a modify that changed it
            return _event(record, symbol, "modify", order_id, after.price, after.size, after.size), None
        return None, None


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
